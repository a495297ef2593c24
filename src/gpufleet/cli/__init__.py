"""The gpufleet command line: submit jobs, run workers, read results, run the fleet.

Each command group is a module with its own Typer app; this package only
assembles them, in the order `--help` lists them, so arrows point down:
``cli`` imports its command modules, never the other way round.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from rich.markup import escape

from gpufleet.cli import api, control, demo, dlq, initialize, jobs, plan, worker
from gpufleet.cli.common import err, out
from gpufleet.errors import GpufleetError

app = typer.Typer(help=__doc__.splitlines()[0], no_args_is_help=True,
                  pretty_exceptions_enable=False)
for commands in (jobs.app, worker.app, demo.app, control.app, plan.app, api.app,
                 initialize.app):
    app.add_typer(commands)
app.add_typer(dlq.app, name="dlq")
app.add_typer(api.keys_app, name="keys")


def _version(show: bool) -> None:
    if show:
        try:
            out.print(f"gpufleet {version('gpufleet')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            out.print("gpufleet (not installed)")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the installed version and exit.")] = False) -> None:
    pass


def main() -> None:
    try:
        app()
    except GpufleetError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
