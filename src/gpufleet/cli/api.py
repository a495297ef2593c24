"""`gpufleet api` serves the HTTP API; `gpufleet keys` creates, lists and revokes API keys."""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gpufleet.api.keys import SCOPES, KeyStore
from gpufleet.cli.common import JsonOpt, err, out
from gpufleet.cli.common import setup as _setup
from gpufleet.errors import ConfigError

app = typer.Typer()

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)



@app.command("api")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json, docs at /docs)."""
    try:
        import uvicorn

        from gpufleet.api.app import create_app
        from gpufleet.api.server import server_config
    except ImportError as exc:
        raise ConfigError(f"the API needs its extra: pip install 'gpufleet[api]' ({exc})"
                          ) from None
    settings, index = _setup(logging.INFO)
    index.close()
    application = create_app(settings)
    config = server_config(application, settings, host=host, port=port)
    # Handlers that read the index run in threads; hand the GIL back to the event loop
    # sooner than every 5 ms, so one slow read does not hold up every other answer.
    sys.setswitchinterval(0.0005)
    # What exists now lives as long as the server: keep it out of the collector's full
    # passes, which otherwise stall every request for tens of milliseconds now and then.
    gc.collect()
    gc.freeze()
    err.print(f"gpufleet API on http://{host}:{port}/  (docs: /docs, dashboard: /dashboard/)")
    uvicorn.Server(config).run()


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant whose jobs the key reaches.")],
    scope: Annotated[str, typer.Option(
        help=f"Comma-separated scopes: {', '.join(SCOPES)}.")] = "submit,read",
    as_json: JsonOpt = False,
) -> None:
    """Create a key. It is printed once and never stored: keep it now."""
    _, index = _setup()
    record, key = KeyStore(index).create(tenant=tenant, scopes=scope)
    if as_json:
        doc = {"id": record.id, "key": key, "tenant": record.tenant,
               "scopes": list(record.scopes)}
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    sys.stdout.write(key + "\n")
    err.print(f"key {record.id} for tenant {escape(record.tenant)}, scopes "
              f"{','.join(record.scopes)}: shown once, store it now "
              "(send it as Authorization: Bearer KEY)")


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """Every key's id, tenant, scopes and state (never the key itself)."""
    _, index = _setup()
    records = KeyStore(index).list()
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in records], indent=2) + "\n")
        return
    table = Table("id", "tenant", "scopes", "created", "revoked")
    for r in records:
        table.add_row(r.id, escape(r.tenant), ",".join(r.scopes), _when(r.created_at),
                      _when(r.revoked_at) if r.revoked_at else "")
    out.print(table if records else "no API keys; create one with gpufleet keys create")


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (gpufleet keys list).")]
           ) -> None:
    """Revoke a key: it is refused from now on."""
    _, index = _setup()
    record = KeyStore(index).revoke(key_id)
    out.print(f"revoked {record.id} (tenant {escape(record.tenant)})")


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
