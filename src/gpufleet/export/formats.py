"""Export rows as bytes: JSONL (one object a line), CSV (a header, tags as JSON) and
Parquet (pyarrow's ParquetWriter, one row group per batch).

A writer takes batches and writes to a binary sink; ``stream`` drains an in-memory
sink after each batch, so an HTTP response streams a file of any length in the
memory of one batch.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, Protocol

from gpufleet.errors import ConfigError
from gpufleet.export.rows import COLUMNS, Row

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv",
           "parquet": "application/vnd.apache.parquet"}


class Writer(Protocol):
    def write(self, batch: list[Row]) -> None: ...

    def close(self) -> None:
        """Finish the file (Parquet's footer); the sink stays open."""
        ...


class JsonlWriter:
    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink

    def write(self, batch: list[Row]) -> None:
        self.sink.write("".join(json.dumps(dict(zip(COLUMNS, row, strict=True))) + "\n"
                                for row in batch).encode())

    def close(self) -> None:
        self.sink.flush()


class CsvWriter:
    def __init__(self, sink: IO[bytes]) -> None:
        self.text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        self.csv = csv.writer(self.text)
        self.csv.writerow(COLUMNS)

    def write(self, batch: list[Row]) -> None:
        # A cell holds one value: the tags are a JSON array in theirs.
        self.csv.writerows((*row[:-1], json.dumps(row[-1])) for row in batch)

    def close(self) -> None:
        self.text.flush()
        self.text.detach()  # the sink is the caller's: do not close it with the wrapper


class ParquetWriter:
    def __init__(self, sink: IO[bytes]) -> None:
        pa, pq = _pyarrow()
        self.pa = pa
        self.schema = pa.schema([
            ("job", pa.string()), ("key", pa.string()), ("status", pa.string()),
            ("attempts", pa.int32()), ("error", pa.string()), ("finished_at", pa.float64()),
            ("result", pa.string()),
            ("tags", pa.list_(pa.struct([("id", pa.string()), ("label", pa.string()),
                                         ("score", pa.float64())])))])
        self.writer = pq.ParquetWriter(sink, self.schema, compression="zstd")

    def write(self, batch: list[Row]) -> None:
        columns = list(zip(*batch, strict=True))
        arrays = [self.pa.array(values, type=field.type)
                  for values, field in zip(columns, self.schema, strict=True)]
        self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


_WRITERS: dict[str, type[JsonlWriter | CsvWriter | ParquetWriter]] = {
    "jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter}


def open_writer(fmt: str, sink: IO[bytes]) -> Writer:
    return _WRITERS[check_format(fmt)](sink)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def stream(batches: Iterable[list[Row]], fmt: str) -> Iterator[bytes]:
    """One file of the batches, as chunks: at most one batch's bytes held at a time."""
    sink = io.BytesIO()
    writer = open_writer(fmt, sink)
    for batch in batches:
        writer.write(batch)
        if chunk := _drain(sink):
            yield chunk
    writer.close()
    if chunk := _drain(sink):
        yield chunk


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def _pyarrow() -> tuple[Any, Any]:
    try:
        pa = importlib.import_module("pyarrow")  # untyped: Any, not an ignore
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'gpufleet[export]'"
                          ) from None
    return pa, pq
