"""``gpufleet deploy aws --check``: what is wrong with a template, and what the account lacks.

Each finding is one line, ``error: ...``, ``warning: ...`` or ``ok: ...``:

- the template, through cfn-lint (errors and warnings, with the line);
- the account of the current AWS credentials, read only: the GPU AMI the template's
  GpuAmiId default names exists in the region; the EC2 service quotas (in vCPUs) for
  on-demand and spot G and P instances cover MaxWorkers machines of the largest type;
  the Lambda concurrency limit leaves room for the trigger's reserved execution;
  the image parameters have a value to give at deploy time. What cannot be read (no
  credentials, no permission) is a warning naming the call, never a crash.
"""

from __future__ import annotations

from typing import Any

from gpufleet.errors import ConfigError

# EC2 quota codes (vCPUs of running instances / spot requests), by instance family letter.
QUOTAS = {"g": {"on-demand": "L-DB2E81BA", "spot": "L-3819A6DF"},
          "p": {"on-demand": "L-417A185B", "spot": "L-7212CCBC"}}


def lint(text: str) -> list[str]:
    try:
        from cfnlint.api import ManualArgs
        from cfnlint.api import lint as cfn_lint
    except ImportError:
        return ["warning: cfn-lint is not installed (pip install 'gpufleet[deploy]'): "
                "the template was not linted"]
    found = []
    for match in cfn_lint(text, config=ManualArgs(regions=["us-east-1"])):
        level = {"E": "error", "W": "warning"}.get(match.rule.id[0], "info")
        found.append(f"{level}: {match.rule.id} line {match.linenumber}: {match.message}")
    return found or ["ok: cfn-lint finds no error and no warning"]


def parameters(text: str) -> dict[str, dict[str, Any]]:
    from cfnlint.decode import decode_str

    template, problems = decode_str(text)
    if template is None or problems:
        raise ConfigError("the template cannot be read as YAML or JSON")
    return dict(template.get("Parameters", {}))


def check_account(text: str) -> list[str]:
    try:
        params = parameters(text)
    except (ConfigError, ImportError) as exc:
        return [f"error: {exc}"]
    if "GpuAmiId" not in params:
        return ["warning: not a gpufleet template (no GpuAmiId parameter): the account was "
                "not checked"]
    found = [f"warning: {name} has no default: give it at deploy time "
             f"(--parameter-overrides {name}=...)"
             for name in ("WorkerImageUri", "ServiceImageUri") if not params.get(
                 name, {}).get("Default")]
    found += _ami(params)
    found += _quotas(params)
    found += _concurrency()
    return found


def _concurrency() -> list[str]:
    """The trigger reserves one concurrent execution; AWS keeps 10 unreserved, so an account
    at the new-account limit of 10 cannot create the function."""
    from gpufleet import aws

    try:
        limit = int(aws.client("lambda").get_account_settings()["AccountLimit"][
            "ConcurrentExecutions"])
    except Exception as exc:
        return [f"warning: could not read the Lambda concurrency limit: {_reason(exc)}"]
    if limit < 11:
        return [f"error: Lambda concurrency limit {limit}: the trigger reserves 1 and AWS "
                "keeps 10 unreserved; ask for more in Service Quotas"]
    return [f"ok: Lambda concurrency limit {limit}"]


def _default(params: dict[str, dict[str, Any]], name: str) -> str:
    return str(params.get(name, {}).get("Default", ""))


def _ami(params: dict[str, dict[str, Any]]) -> list[str]:
    from gpufleet import aws

    name = _default(params, "GpuAmiId")
    try:
        if name.startswith("/"):
            image = aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        else:
            image = name
        images = aws.client("ec2").describe_images(ImageIds=[image])["Images"]
    except Exception as exc:  # any failure to look is a finding, not a crash
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code.startswith("InvalidAMIID"):  # NotFound, or not an AMI id at all
            return [f"error: the GPU AMI {image} ({name}) does not exist in this region"]
        return [f"warning: could not look up the GPU AMI {name}: {_reason(exc)}"]
    if not images:
        return [f"error: the GPU AMI {image} ({name}) does not exist in this region"]
    return [f"ok: GPU AMI {image}: {images[0].get('Name', '(no name)')}"]


def _quotas(params: dict[str, dict[str, Any]]) -> list[str]:
    from gpufleet import aws

    types = [t for n in range(1, 5) if (t := _default(params, f"InstanceType{n}"))]
    machines = int(_default(params, "MaxWorkers") or 1)
    try:
        described = aws.client("ec2").describe_instance_types(InstanceTypes=types)
        vcpus = {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
                 for t in described["InstanceTypes"]}
        quotas = aws.client("service-quotas")
    except Exception as exc:
        return [f"warning: could not read the instance types {', '.join(types)}: "
                f"{_reason(exc)}"]
    found = []
    for family in sorted({t[0] for t in types if t[0] in QUOTAS}):
        need = machines * max(v for t, v in vcpus.items() if t[0] == family)
        for capacity, code in QUOTAS[family].items():
            try:
                have = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)[
                    "Quota"]["Value"]
            except Exception as exc:
                found.append(f"warning: could not read the {capacity} {family.upper()} "
                             f"quota ({code}): {_reason(exc)}")
                continue
            found.append(quota_line(f"{capacity} {family.upper()}", have=have, need=need,
                                    machines=machines))
    return found


def quota_line(what: str, *, have: float, need: int, machines: int) -> str:
    """ok when the quota covers MaxWorkers machines; error at 0 (none can start); else a
    warning (fewer than MaxWorkers can run: ask for more in Service Quotas)."""
    level = "ok" if have >= need else "error" if have == 0 else "warning"
    return (f"{level}: {what} instances: quota {have:g} vCPUs, {need} needed for "
            f"{machines} machine(s)")


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
