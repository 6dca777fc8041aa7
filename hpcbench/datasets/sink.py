"""Writing one shard: deterministic Parquet bytes, named by sample id, committed atomically.

A shard holding samples ``[first, first + rows)`` is the file
``shard-<first:08d>.parquet``. It is written under a temporary name that starts with
``.`` (pyarrow and Ray Data skip such files when reading a directory) and moved into
place with :func:`os.replace`, so a reader or a crash never sees half a file, and two
nodes that regenerate the same shard write the same bytes to the same name. Nothing
else in the directory is touched.

The bytes depend only on the table and :data:`PARQUET_OPTIONS` (and the pyarrow
version, which Parquet records in its footer): no timestamps, fixed compression and
row-group size.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hpcbench.datasets.schema import SAMPLE_ID

__all__ = [
    "PARQUET_OPTIONS",
    "SHARD_PREFIX",
    "ShardRecord",
    "file_sha256",
    "shard_name",
    "shard_parquet_bytes",
    "write_atomic",
    "write_shard",
]

SHARD_PREFIX: Final = "shard-"

# zstd level 3 compresses noisy float32 images ~10 % and costs ~5 % of an incoherent
# shard's build time; row groups of 256 rows (16 MiB of 128² float32) read in one go.
PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 256,
    "use_dictionary": False,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
}


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records about one written shard.

    Attributes
    ----------
    file : str
        File name inside the dataset directory.
    first_sample_id : int
        Sample id of the shard's first row.
    rows : int
        Number of rows (images).
    sha256 : str
        Hex SHA-256 of the file's bytes.
    bytes : int
        File size [bytes].
    seconds : float
        Wall time to build and write the shard [s].
    """

    file: str
    first_sample_id: int
    rows: int
    sha256: str
    bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ShardRecord:
        """Parse a record written by :meth:`to_json`; raise ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError("a shard record must be a mapping")
        try:
            record = cls(
                file=str(data["file"]),
                first_sample_id=int(data["first_sample_id"]),
                rows=int(data["rows"]),
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed shard record: {exc}") from None
        if record.file != shard_name(record.first_sample_id):
            raise ValueError(
                f"shard record names {record.file!r} for sample {record.first_sample_id}"
            )
        return record


def shard_name(first_sample_id: int) -> str:
    """File name of the shard whose first sample id is ``first_sample_id``."""
    return f"{SHARD_PREFIX}{first_sample_id:08d}.parquet"


def _first_sample_id(table: pa.Table) -> int:
    if SAMPLE_ID not in table.column_names:
        raise ValueError(f"a shard needs a {SAMPLE_ID!r} column")
    if table.num_rows == 0:
        raise ValueError("a shard must have at least one row")
    ids = table.column(SAMPLE_ID).to_numpy()
    first = int(ids[0])
    if first < 0 or not np.array_equal(ids, np.arange(first, first + len(ids))):
        raise ValueError(f"{SAMPLE_ID} of a shard must be contiguous and increasing from {first}")
    return first


def shard_parquet_bytes(table: pa.Table) -> bytes:
    """The exact bytes of ``table`` written as Parquet with :data:`PARQUET_OPTIONS`."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    return bytes(sink.getvalue())


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so a reader sees the old file or the new, never half.

    The bytes go to a hidden temporary file beside it (a leading ``.``, so pyarrow and Ray
    skip it), are fsynced, and are renamed over ``path``; on any failure the temporary
    file is removed and ``path`` is untouched.
    """
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_shard(table: pa.Table, directory: str | os.PathLike[str]) -> ShardRecord:
    """Write one shard atomically into ``directory``.

    Parameters
    ----------
    table : pyarrow.Table
        The shard's rows; ``sample_id`` must be contiguous and increasing.
    directory : path
        Dataset directory (created if missing).

    Returns
    -------
    ShardRecord
        Name, first sample id, rows, checksum and size of the file; ``seconds`` is the
        time spent serialising and writing.
    """
    start = time.perf_counter()
    first = _first_sample_id(table)
    payload = shard_parquet_bytes(table)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = shard_name(first)
    write_atomic(directory / name, payload)
    return ShardRecord(
        file=name,
        first_sample_id=first,
        rows=table.num_rows,
        sha256=hashlib.sha256(payload).hexdigest(),
        bytes=len(payload),
        seconds=time.perf_counter() - start,
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()
