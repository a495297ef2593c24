"""`gpufleet deploy aws`: the CloudFormation template, linted by cfn-lint and read back.

cfn-lint (the AWS CloudFormation linter, with the resource schemas of every region) must
find no error and no warning, with the default parameters and with every "use an
existing one" parameter given, since it resolves each parameter's default when it
checks patterns and references. The rest reads the template as CloudFormation would
and checks what the README promises of it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str

from gpufleet.autoscale.providers.aws import HOOK
from gpufleet.config import Settings
from gpufleet.deploy.stack.names import Names
from gpufleet.deploy.stack.template import INLINE_LIMIT_BYTES, build, to_json, to_yaml
from gpufleet.errors import ConfigError
from gpufleet.manifest import FORMATS
from gpufleet.queue.sqs_setup import queue_name
from tests.conftest import PYTHONPATH

EXISTING = {"KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abcd",
            "VpcId": "vpc-0123456789abcdef0",
            "PrivateSubnetIds": "subnet-01234567,subnet-89abcdef",
            "PublicSubnetIds": "subnet-11234567,subnet-99abcdef",
            "DatabaseUrl": "postgresql://gpufleet@db.example.com/gpufleet",
            "DatabaseSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
            "CacheUrl": "rediss://cache.example.com:6379/0",
            "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
            "WarmPoolSize": "2", "AlarmEmail": "ops@example.com",
            "WorkerImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpufleet:cuda",
            "ServiceImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpufleet:cpu"}


def _template(**defaults: str) -> tuple[str, dict[str, Any]]:
    text = to_yaml(build(Names("acme", "synthetic?item_ms=5"), defaults=defaults))
    doc, problems = decode_str(text)
    assert not problems and doc is not None
    return text, doc


@pytest.mark.parametrize("defaults", [{}, EXISTING], ids=["make-everything", "use-existing"])
def test_cfn_lint_finds_no_error_and_no_warning(defaults: dict[str, str]) -> None:
    text, _ = _template(**defaults)
    matches = lint(text, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def _resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == kind}


def test_buckets_are_encrypted_private_tls_only_and_results_outlive_the_stack() -> None:
    _, doc = _template()
    buckets = _resources(doc, "AWS::S3::Bucket")
    assert set(buckets) == {"InputBucket", "ResultsBucket", "ManifestBucket"}
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
    policies = _resources(doc, "AWS::S3::BucketPolicy").values()
    assert len(policies) == 3 and all(
        p["Properties"]["PolicyDocument"]["Statement"][0]["Condition"] ==
        {"Bool": {"aws:SecureTransport": "false"}} for p in policies)
    results = buckets["ResultsBucket"]
    assert results["DeletionPolicy"] == "Retain"
    assert results["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_the_manifest_bucket_invokes_the_trigger_for_each_manifest_suffix() -> None:
    _, doc = _template()
    bucket = doc["Resources"]["ManifestBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}  # events name versions
    configs = bucket["NotificationConfiguration"]["LambdaConfigurations"]
    suffixes = [{r["Name"]: r["Value"] for r in c["Filter"]["S3Key"]["Rules"]}["suffix"]
                for c in configs]
    assert sorted(suffixes) == sorted([*FORMATS, *(f"{f}.gz" for f in FORMATS)])
    function = doc["Resources"]["TriggerFunction"]["Properties"]
    assert function["ImageConfig"]["Command"] == ["gpufleet.deploy.trigger.handler"]
    assert function["ReservedConcurrentExecutions"] == 1
    rule = doc["Resources"]["ControllerTickRule"]["Properties"]
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(1 minute)", "DISABLED")


def test_queues_are_the_family_gpufleet_opens_with_dead_letters_and_alarms() -> None:
    _, doc = _template()
    queues = {q["Properties"]["QueueName"]: q["Properties"]
              for q in _resources(doc, "AWS::SQS::Queue").values()}
    model_queue = queue_name("acme-tasks", "synthetic?item_ms=5")
    assert set(queues) == {"acme-tasks", "acme-tasks-dlq", model_queue, model_queue + "-dlq"}
    for name in ("acme-tasks", model_queue):
        assert "deadLetterTargetArn" in queues[name]["RedrivePolicy"]
        assert queues[name]["MessageRetentionPeriod"] == 1_209_600
    alarms = [a["Properties"]["MetricName"]
              for a in _resources(doc, "AWS::CloudWatch::Alarm").values()]
    assert sorted(alarms) == sorted(["ApproximateNumberOfMessagesVisible"] * 2
                                    + ["ApproximateAgeOfOldestMessage"] * 2)


def test_the_worker_group_starts_empty_spot_first_in_two_zones_with_the_drain_hook() -> None:
    _, doc = _template()
    group = doc["Resources"]["WorkerGroup"]["Properties"]
    assert group["MinSize"] == "0" and "DesiredCapacity" not in group  # the controller's
    assert group["NewInstancesProtectedFromScaleIn"] is True
    [hook] = group["LifecycleHookSpecificationList"]
    assert (hook["LifecycleHookName"], hook["LifecycleTransition"]) == (
        HOOK, "autoscaling:EC2_INSTANCE_TERMINATING")
    mixed = group["MixedInstancesPolicy"]["Fn::If"][1]
    assert mixed["InstancesDistribution"]["SpotAllocationStrategy"] == \
        "price-capacity-optimized"
    zones = {doc["Resources"][f"PrivateSubnet{z}"]["Properties"]["AvailabilityZone"][
        "Fn::Select"][0] for z in "AB"}
    assert zones == {0, 1}


def test_a_parameter_out_of_range_is_one_clear_line() -> None:
    # In the library: the range CloudFormation would enforce, checked before writing
    with pytest.raises(ConfigError, match=r"MaxWorkers=5000: out of range, expected 1 to 1000"):
        build(Names(), defaults={"MaxWorkers": "5000"})
    with pytest.raises(ConfigError, match="no such parameter"):
        build(Names(), defaults={"MaxWorker": "5"})
    # And on the command line: one line, exit status 1, no template written
    result = subprocess.run([sys.executable, "-m", "gpufleet", "deploy", "aws", "--set",
                             "WarmPoolSize=-1"], capture_output=True, text=True,
                            env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "error: WarmPoolSize=-1: out of range, expected 0 to 100"


def test_the_json_form_is_the_same_template_within_the_inline_limit() -> None:
    template = build(Names("acme", "synthetic?item_ms=5"))
    text = to_json(template)
    # Small enough for `aws cloudformation deploy` without --s3-bucket, and lint-clean too
    assert len(text.encode()) < INLINE_LIMIT_BYTES
    assert json.loads(text) == _template()[1]
    assert list(lint(text, config=ManualArgs(regions=["us-east-1"]))) == []


def test_the_cli_writes_the_template_it_builds(tmp_path: Any) -> None:
    out = tmp_path / "stack.yaml"
    subprocess.run([sys.executable, "-m", "gpufleet", "deploy", "aws", "--name", "acme",
                    "--model", "synthetic?item_ms=5", "--out", str(out)], check=True,
                   env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.read_text() == _template()[0]


def test_a_bad_name_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="3 to 20"):
        Names("Acme_Photos")


def _actions(statements: list[Any]) -> set[str]:
    """Every action of the statements, conditional ones included, as CloudFormation has them."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "Action" in value:
                action = value["Action"]
                found.update(action if isinstance(action, list) else [action])
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(statements)
    return found


def test_each_role_has_exactly_the_actions_the_readme_lists() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| role | actions |"):]
    listed = {}
    for row in table.splitlines()[2:]:
        if not row.startswith("|"):
            break
        role, actions = row.strip("|").split("|")
        listed[role.strip()] = set(re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", actions))
    _, doc = _template(**EXISTING)  # a given database secret: its statement is there too
    roles = {name: doc["Resources"][logical]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"] for name, logical in (
        ("worker (EC2)", "WorkerRole"), ("trigger (Lambda)", "TriggerRole"),
        ("API task (ECS)", "ApiTaskRole"), ("API task execution (ECS)", "ApiExecutionRole"))}
    assert {name: _actions(s) for name, s in roles.items()} == listed
    # No wildcard action anywhere, and "*" resources only for calls AWS cannot scope
    unscoped = {"ecr:GetAuthorizationToken", "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeScalingActivities", "ec2:DescribeInstances",
                "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses"}
    for statements in roles.values():
        assert not any("*" in a for a in _actions(statements))
        for statement in statements:
            if isinstance(statement, dict) and statement.get("Resource") == ["*"]:
                assert set(statement["Action"]) <= unscoped, statement


def test_the_worker_boot_script_is_valid_bash_with_the_worker_command() -> None:
    _, doc = _template()
    data = doc["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    parts = data["UserData"]["Fn::Base64"]["Fn::Join"][1]
    # Each expression stands in for what CloudFormation puts there: a word without spaces
    # (a number, so the numeric settings read as numbers too)
    script = "".join(p if isinstance(p, str) else "1" for p in parts)
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "worker --gpus all" in script and "GPUFLEET_AWS_LIFECYCLE_HOOK=" + HOOK in script
    # The settings file names only settings gpufleet knows (an unknown GPUFLEET_* is refused)
    env = dict(line.split("=", 1) for line in script.split("<<'ENV'\n", 1)[1].split(
        "\nENV\n", 1)[0].splitlines())
    settings = Settings.from_env(env)
    assert settings.fleet.aws_asg == "acme-workers"
