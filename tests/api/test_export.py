"""GET /v1/jobs/{id}/export: a job's results streamed as JSONL, CSV or Parquet, scoped to
the key's tenant."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import ITEMS, World


def _rows(body: bytes, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in body.decode().splitlines()]
    if fmt == "csv":
        return [{**r, "tags": json.loads(r["tags"])}
                for r in csv.DictReader(io.StringIO(body.decode(), newline=""))]
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_tenant_exports_its_job_as_the_items_endpoint_shows_it(world: World,
                                                                fmt: str) -> None:
    # Given tenant a's processed job
    job = world.jobs["a"]
    with world.client("a-read") as http:
        # When it is exported through the API
        response = http.get(f"/v1/jobs/{job}/export", params={"format": fmt})
        listed = http.get(f"/v1/jobs/{job}/items", params={"limit": 1000}).json()["items"]
    # Then it is an attachment of one row per item, as the items endpoint has them
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="{job}.{fmt}"'
    rows = _rows(response.content, fmt)
    assert len(rows) == ITEMS + 1
    assert [(r["key"], r["status"], r["tags"]) for r in rows] == [
        (i["key"], i["status"], i["tags"]) for i in listed]
    # And each result object is named relative to the tenant's output root, as job views do
    done = next(r for r in rows if r["status"] == "done")
    assert done["result"] == f"{job}/{done['key']}.json"


def test_another_tenants_job_and_a_bad_format_are_refused(world: World) -> None:
    with world.client("a") as http:
        other = http.get(f"/v1/jobs/{world.jobs['b']}/export")
        bad = http.get(f"/v1/jobs/{world.jobs['a']}/export", params={"format": "xlsx"})
    assert other.status_code == 404
    assert bad.status_code == 422
