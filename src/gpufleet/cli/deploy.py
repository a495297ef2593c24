"""`gpufleet deploy aws`: the CloudFormation template of a whole deployment, or a check of one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpufleet.cli.common import err, out
from gpufleet.errors import ConfigError

app = typer.Typer(help="Deploy gpufleet: the AWS CloudFormation template.",
                  no_args_is_help=True)


@app.command("aws")
def aws(
    output: Annotated[Path | None, typer.Option(
        "--out", help="Write the template here (default: standard output).")] = None,
    name: Annotated[str, typer.Option(
        help="Prefix of bucket, queue, group and function names (3 to 20 of a-z 0-9 -).")
    ] = "gpufleet",
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The model the fleet runs (default: GPUFLEET_MODEL).")] = None,
    defaults: Annotated[list[str] | None, typer.Option(
        "--set", help="A parameter's default, NAME=VALUE, checked against its range "
        "(repeatable).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help="yaml (readable; over CloudFormation's 51,200-byte inline limit, so "
        "deploy with --s3-bucket) or json (compact, within it).")] = "yaml",
    check: Annotated[bool, typer.Option(
        "--check", help="Do not write: lint the template (or --template) and report what "
        "the account of the current AWS credentials needs, one line each.")] = False,
    template: Annotated[Path | None, typer.Option(
        help="With --check: the template file to check instead of a fresh one.")] = None,
) -> None:
    """Write the CloudFormation template: buckets, queues, GPU workers, trigger, API, alarms."""
    try:
        from gpufleet.deploy.stack.names import Names
        from gpufleet.deploy.stack.template import build, to_json, to_yaml
    except ImportError as exc:
        raise ConfigError(f"deploy needs its extra: pip install 'gpufleet[deploy]' ({exc})"
                          ) from None
    from gpufleet.config import Settings

    if fmt not in ("yaml", "json"):
        raise ConfigError(f"--format {fmt!r}: expected yaml or json")
    if template is not None and not check:
        raise ConfigError("--template is read only with --check")
    pairs = {}
    for item in defaults or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        pairs[key.strip()] = value.strip()
    names = Names(name, model or Settings.from_env().model)
    write = to_json if fmt == "json" else to_yaml
    text = template.read_text() if template is not None else \
        write(build(names, defaults=pairs))
    if check:
        from gpufleet.deploy.stack.check import check_account, lint

        findings = lint(text) + check_account(text)
        for finding in findings:  # one line each, never wrapped: read by people and grep
            typer.echo(finding, err=finding.startswith("error"))
        if any(f.startswith("error") for f in findings):
            raise typer.Exit(1)
        return
    if output is None:
        out.file.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {output} ({len(text.splitlines())} lines)", markup=False)
