"""The gpufleet command line: submit jobs, run workers, read results, run the fleet.

Each command group is a module with its own Typer app; this package only
assembles them, in the order `--help` lists them, so arrows point down:
``cli`` imports its command modules, never the other way round.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from rich.markup import escape

from gpufleet import logs, tracing
from gpufleet.cli import (
    api,
    control,
    demo,
    deploy,
    dlq,
    export,
    initialize,
    jobs,
    notify,
    plan,
    stream,
    worker,
)
from gpufleet.cli.common import err, out
from gpufleet.errors import GpufleetError

app = typer.Typer(help=__doc__.splitlines()[0], no_args_is_help=True,
                  pretty_exceptions_enable=False)
for commands in (jobs.app, export.app, worker.app, demo.app, control.app, stream.app, plan.app,
                 api.app,
                 initialize.app):
    app.add_typer(commands)
app.add_typer(dlq.app, name="dlq")
app.add_typer(api.keys_app, name="keys")
app.add_typer(deploy.app, name="deploy")
app.add_typer(notify.app, name="notify")


def _version(show: bool) -> None:
    if show:
        try:
            out.print(f"gpufleet {version('gpufleet')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            out.print("gpufleet (not installed)")
        raise typer.Exit()


@app.callback()
def _root(context: typer.Context, version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the installed version and exit.")] = False,
          log_level: Annotated[str | None, typer.Option(
              "--log-level", help="debug, info, warning or error (GPUFLEET_LOG_LEVEL); "
              "default: info for workers, the controller and the API, warning elsewhere.")
          ] = None,
          log_format: Annotated[str | None, typer.Option(
              "--log-format", help="auto (Rich on a terminal, one JSON object per line "
              "otherwise), json or text (GPUFLEET_LOG_FORMAT).")] = None) -> None:
    role = context.invoked_subcommand or "gpufleet"
    logs.bind(role=role)  # on every line it logs
    tracing.configure(role)  # spans exported only if the OTEL_* environment asks
    # Through the environment: checked with every other setting, and inherited by the
    # workers a command starts.
    for name, value in (("GPUFLEET_LOG_LEVEL", log_level), ("GPUFLEET_LOG_FORMAT", log_format)):
        if value is not None:
            os.environ[name] = value


def main() -> None:
    try:
        app()
    except GpufleetError as exc:
        # One line whatever the terminal's width: a log or a script reads it whole.
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
