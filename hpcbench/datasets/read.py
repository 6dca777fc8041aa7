"""Reading generated datasets back: one Arrow table, shards in sample order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hpcbench.datasets.manifest import ManifestError, read_manifest
from hpcbench.datasets.sink import SHARD_PREFIX

__all__ = ["read_dataset", "shard_files"]


def shard_files(dataset_dir: str | os.PathLike[str]) -> list[Path]:
    """Shard files of a dataset in sample order.

    The manifest's shards when it can be read (so an unrecorded file is not read),
    otherwise every ``shard-*.parquet`` file; zero-padded names sort by sample id.
    """
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such dataset directory")
    try:
        manifest = read_manifest(directory)
    except ManifestError:
        return sorted(directory.glob(f"{SHARD_PREFIX}*.parquet"))
    return [directory / manifest.shards[first].file for first in sorted(manifest.shards)]


def read_dataset(
    dataset_dir: str | os.PathLike[str], *, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read a dataset directory into one table, rows in sample-id order.

    ``pyarrow.parquet.read_table(dataset_dir)`` and ``ray.data.read_parquet`` also read
    the directory (the manifest and temporary files start with ``_`` or ``.``, which
    both skip); this function adds the sample order and the manifest's file list.

    Parameters
    ----------
    dataset_dir : path
        A directory written by :func:`hpcbench.datasets.generate`.
    columns : sequence of str, optional
        Read only these columns.

    Returns
    -------
    pyarrow.Table
        Tensor columns keep their ``fixed_shape_tensor`` type; see
        :func:`hpcbench.datasets.schema.images_to_numpy`.
    """
    files = shard_files(dataset_dir)
    if not files:
        raise FileNotFoundError(f"{dataset_dir}: no shards")
    selected = None if columns is None else list(columns)
    tables = [pq.read_table(path, columns=selected) for path in files]
    return pa.concat_tables(tables)
