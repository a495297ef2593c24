"""A job's export as a few files in a location (a folder or an s3:// prefix), split into
parts of at most ``part_rows`` rows: ``<job>-00000.<format>``, ``<job>-00001...``.

Each part is written to a local temporary file first and then uploaded from it
(S3: a multipart upload from the file), so memory stays one batch whatever the
part's size. Names are deterministic: exporting again replaces the parts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gpufleet.export.formats import FORMATS, check_format, open_writer
from gpufleet.export.rows import BATCH_ROWS, Row, read_batches
from gpufleet.index import Index
from gpufleet.store import Location
from gpufleet.store.base import FileUploads

PART_ROWS = 1_000_000


def export_job(index: Index, job_id: str, output: Location, *, fmt: str,
               part_rows: int = PART_ROWS, batch_rows: int = BATCH_ROWS) -> list[str]:
    """Write the job's rows to output; returns the parts' URIs (at least one, perhaps
    of no rows). JobNotFound, NotExportable, StoreUnavailable."""
    check_format(fmt)
    if part_rows < 1:
        raise ValueError("part_rows must be at least 1")
    batches = read_batches(index, job_id, batch_rows=min(batch_rows, part_rows))
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpufleet-export-") as spool:
        for number, part in enumerate(_parts(batches, part_rows)):
            name = f"{job_id}-{number:05d}.{fmt}"
            path = Path(spool, name)
            with path.open("wb") as sink:
                writer = open_writer(fmt, sink)
                for batch in part:
                    writer.write(batch)
                writer.close()
            upload(output, name, path, content_type=FORMATS[fmt])
            os.unlink(path)
            written.append(output.uri + name)
    return written


def _parts(batches: Iterator[list[Row]], part_rows: int) -> Iterator[Iterator[list[Row]]]:
    """The batches cut into parts of at most part_rows rows; one part if there are none.
    Each part is consumed before the next is asked for."""
    carry: list[Row] = []
    done = False

    def part() -> Iterator[list[Row]]:
        nonlocal carry, done
        room = part_rows
        while room:
            if not carry:
                batch = next(batches, None)
                if batch is None:
                    done = True
                    return
                carry = batch
            take, carry = carry[:room], carry[room:]
            room -= len(take)
            yield take

    first = True
    while first or not done:
        first = False
        yield part()
        if not carry and not done:  # the part ended exactly on a batch boundary: any more?
            following = next(batches, None)
            if following is None:
                return
            carry = following


def upload(output: Location, name: str, path: Path, *, content_type: str) -> None:
    """Put a local file at output/name without reading it into memory where the store
    can (local and S3 stores); whole otherwise."""
    store = output.store
    if isinstance(store, FileUploads):
        store.put_file(output.key(name), path, content_type=content_type)
    else:
        store.put(output.key(name), path.read_bytes(), content_type=content_type)
