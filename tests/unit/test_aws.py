"""AWS clients built from the standard configuration, as boto3 users expect (gpufleet.aws).

Nothing here talks to AWS: building a client resolves its region and retry
settings from the environment and the profile, which is what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpufleet import aws
from gpufleet.autoscale.providers.aws import AwsProvider
from gpufleet.config import Settings
from gpufleet.errors import ConfigError
from gpufleet.intake.s3 import S3Inbox
from gpufleet.queue.sqs_setup import client as sqs_client
from gpufleet.store.s3 import S3Store


@pytest.fixture
def profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS setting but test keys; returns the (empty) config file a test may write."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return config


def test_aws_region_is_the_region_of_every_component(
        profile: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given only AWS_REGION, as the AWS CLI v2, ECS and Lambda set it (boto3 alone ignores it)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    # Then every client gpufleet makes is in that region: the controller's Auto Scaling
    # group, the S3 inbox, the store, the queue
    settings = Settings(home=tmp_path)
    provider = AwsProvider(settings, model="synthetic", group="workers")
    inbox = S3Inbox("photos", "manifests/", queue="https://sqs.eu-west-1.amazonaws.com/1/inbox")
    clients = [provider.autoscaling, provider.ec2, inbox.s3, inbox.sqs,
               S3Store("photos").client, sqs_client(None)]
    assert {c.meta.region_name for c in clients} == {"eu-west-1"}
    # And it comes before AWS_DEFAULT_REGION, as in the other SDKs; a queue URL's before both
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert aws.client("sqs").meta.region_name == "eu-west-1"
    assert sqs_client("ap-south-1").meta.region_name == "ap-south-1"


def test_without_aws_region_the_standard_chain_decides(
        profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile.write_text("[default]\nregion = eu-central-1\n")
    assert aws.client("autoscaling").meta.region_name == "eu-central-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert aws.client("autoscaling").meta.region_name == "us-west-2"


def test_no_region_at_all_is_one_clear_line(profile: Path) -> None:
    with pytest.raises(ConfigError, match=r"^no AWS region for autoscaling: set AWS_REGION"):
        aws.client("autoscaling")


def test_a_missing_profile_is_a_config_error(profile: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ConfigError, match=r"AWS configuration for s3: .*\(nope\)"):
        aws.client("s3")


def test_retries_default_to_standard_mode(profile: Path) -> None:
    # Given no retry settings anywhere, then standard mode with the component's attempts
    assert S3Store("b", max_attempts=5).client.meta.config.retries == {
        "mode": "standard", "total_max_attempts": 5}
    assert sqs_client("us-east-1").meta.config.retries == {
        "mode": "standard", "total_max_attempts": 4}


def test_the_users_retry_settings_win(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given retry settings in the profile
    profile.write_text("[default]\nregion = us-east-1\nretry_mode = legacy\nmax_attempts = 2\n")
    # Then every component follows them
    for client in (S3Store("b").client, sqs_client(None), aws.client("autoscaling")):
        assert client.meta.config.retries == {"mode": "legacy", "total_max_attempts": 2}
    # And the environment wins over the profile, as everywhere in AWS
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    for client in (S3Store("b").client, sqs_client(None), aws.client("autoscaling")):
        assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 7}
