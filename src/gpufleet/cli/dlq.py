"""`gpufleet dlq`: dead-lettered tasks, listed and put back."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet.cli.common import JsonOpt, out
from gpufleet.cli.common import setup as _setup
from gpufleet.queue import open_queue
from gpufleet.redrive import redrive

app = typer.Typer(help="Dead-lettered tasks: list them, put them back.", no_args_is_help=True)


@app.command("list")
def dlq_list(as_json: JsonOpt = False) -> None:
    """Dead-lettered tasks with their last error."""
    settings, index = _setup()
    letters = []
    for model in index.models():
        queue = open_queue(settings.queue, name=model)
        letters += [(model, d) for d in queue.dead_letters()]
        queue.close()
    if as_json:
        out.print(json.dumps([_letter(m, d) for m, d in letters], indent=2))
        return
    table = Table("task", "job", "items", "receives", "model", "last error")
    for model, d in letters:
        doc = _letter(model, d)
        table.add_row(d.id, doc["job"], str(doc["items"]), str(d.receives), escape(model),
                      escape(d.error))
    out.print(table if letters else "no dead-lettered tasks")


def _letter(model: str, d: Any) -> dict[str, Any]:
    try:
        body = json.loads(d.body)
        job, items = body.get("job"), len(body.get("keys", []))
    except (ValueError, AttributeError):
        job, items = None, 0
    return {"id": d.id, "job": job, "items": items, "receives": d.receives, "model": model,
            "error": d.error, "died_at": d.died_at}


@app.command("redrive")
def dlq_redrive() -> None:
    """Put every dead-lettered task back on its queue; its failed items are pending again."""
    settings, index = _setup()
    total = 0
    for model in index.models():
        queue = open_queue(settings.queue, name=model)
        total += redrive(queue, index)
        queue.close()
    out.print(f"redrove {total} task(s)")
