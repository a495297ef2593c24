"""`gpufleet deploy aws --check`: one line per finding, exit status 1 on an error.

The template is checked by cfn-lint; the account by read-only calls, here against moto in
server mode: the GPU AMI the SSM parameter names (moto serves SSM and EC2 images), the
instance types' vCPUs (moto serves DescribeInstanceTypes). moto has no EC2 service quotas,
and no Lambda account settings, so those lines are warnings naming what was not read, which
is what an account that refuses the call gets too; the quota verdict is checked on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3

from gpufleet.deploy.stack.check import quota_line
from tests.conftest import PYTHONPATH
from tests.servers import MotoServer


def _check(moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpufleet", "deploy", "aws", "--check", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**moto.env, "PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin",
                               "AWS_MAX_ATTEMPTS": "1"})


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return (result.stdout + result.stderr).splitlines()


def test_a_sound_template_and_an_existing_ami_pass_with_warnings_for_what_is_unread(
        aws_env: MotoServer) -> None:
    image = boto3.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    boto3.client("ssm").put_parameter(Name="/test/gpu-ami", Value=image, Type="String",
                                      Overwrite=True)
    result = _check(aws_env, "--set", "GpuAmiId=/test/gpu-ami")
    lines = _lines(result)
    assert result.returncode == 0, lines
    assert "ok: cfn-lint finds no error and no warning" in lines
    assert any(line.startswith(f"ok: GPU AMI {image}") for line in lines)
    # Every line is a finding with its level, and what could not be read says which quota
    assert all(line.split(":")[0] in ("ok", "warning", "error") for line in lines)
    assert any(line.startswith("warning: could not read the on-demand G quota (L-DB2E81BA)")
               for line in lines)
    assert any(line.startswith("warning: WorkerImageUri has no default") for line in lines)
    assert any(line.startswith("warning: could not read the Lambda concurrency limit")
               for line in lines)  # moto has no GetAccountSettings


def test_a_missing_ami_is_an_error(aws_env: MotoServer) -> None:
    boto3.client("ssm").put_parameter(Name="/test/gone-ami", Value="ami-0123456789abcdef0",
                                      Type="String", Overwrite=True)
    result = _check(aws_env, "--set", "GpuAmiId=/test/gone-ami")
    assert result.returncode == 1
    assert "error: the GPU AMI ami-0123456789abcdef0 (/test/gone-ami) does not exist in " \
        "this region" in result.stderr.splitlines()


def test_a_broken_template_is_reported_by_line(aws_env: MotoServer, tmp_path: Path) -> None:
    broken = tmp_path / "stack.yaml"
    broken.write_text("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n"
                      "      VisibilityTimeout: forever\n")
    result = _check(aws_env, "--template", str(broken))
    assert result.returncode == 1
    assert sorted(_lines(result)) == [
        "error: E3012 line 5: 'forever' is not of type 'integer'",
        "warning: not a gpufleet template (no GpuAmiId parameter): the account was not checked"]


def test_the_quota_verdict() -> None:
    assert quota_line("spot G", have=64, need=40, machines=10).startswith("ok: ")
    assert quota_line("spot G", have=16, need=40, machines=10).startswith("warning: ")
    assert quota_line("spot G", have=0, need=40, machines=10) == (
        "error: spot G instances: quota 0 vCPUs, 40 needed for 10 machine(s)")
