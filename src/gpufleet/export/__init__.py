"""Bulk exports of a job's results: a few consolidated JSONL, CSV or Parquet files.

``rows`` reads the index in keyset-paginated batches, ``formats`` turns batches
into bytes, ``files`` splits them into parts written to a location. Memory is
one batch (and, for Parquet, one row group) however many items the job has.
"""

from gpufleet.export.files import export_job
from gpufleet.export.formats import FORMATS, stream
from gpufleet.export.rows import COLUMNS, NotExportable, read_batches

__all__ = ["COLUMNS", "FORMATS", "NotExportable", "export_job", "read_batches", "stream"]
