"""Arrow schema of a dataset shard: one row per image, tensors as fixed-shape columns.

Images, clean images and masks are stored with Arrow's canonical
``arrow.fixed_shape_tensor`` extension type (:func:`pyarrow.fixed_shape_tensor`), not
Ray's ``ray.data.arrow_tensor_v2``: plain pyarrow, pandas, Ray Data and torch then all
read them as ``(N, H, W)`` arrays, and reading needs no copy when a column is one chunk.

Columns every shard has: ``sample_id`` (``int64``, contiguous within a shard; the
shard's file is named after its first one). Tensor columns: ``image`` (the corrupted
image), optionally ``clean`` and ``mask``. Atom positions, when a builder records them,
go in ``coordinates``: a ``list<struct<x, y, label>>`` column with ``x`` (column) and
``y`` (row) in pixels and ``label`` the mask class of the site.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "COORDINATES",
    "DATA_FORMAT_VERSION",
    "SAMPLE_ID",
    "TENSOR_COLUMNS",
    "coordinates_type",
    "images_to_numpy",
    "is_tensor_column",
    "tensor_column",
]

# Bumped whenever generation code changes the bytes a given spec produces, so old
# datasets are not mistaken for current ones (it enters every dataset hash).
DATA_FORMAT_VERSION = 2

SAMPLE_ID = "sample_id"
TENSOR_COLUMNS = ("image", "clean", "mask")
COORDINATES = "coordinates"


def coordinates_type() -> pa.DataType:
    """Arrow type of the ``coordinates`` column: ``list<struct<x, y, label>>`` [px]."""
    return pa.list_(
        pa.struct(
            [
                pa.field("x", pa.float32()),
                pa.field("y", pa.float32()),
                pa.field("label", pa.int16()),
            ]
        )
    )


def tensor_column(array: npt.ArrayLike) -> pa.ExtensionArray:
    """Wrap a stack of images as a fixed-shape tensor column.

    Parameters
    ----------
    array : array_like, shape (N, H, W)
        ``N`` images of ``H × W`` pixels, any numeric dtype. A C-contiguous array is
        wrapped without a copy.

    Returns
    -------
    pyarrow.FixedShapeTensorArray
        ``N`` rows of type ``fixed_shape_tensor(dtype, (H, W))``.
    """
    data = np.ascontiguousarray(array)
    if data.ndim != 3:
        raise ValueError(f"expected an (N, H, W) stack of images, got shape {data.shape}")
    result: pa.ExtensionArray = pa.FixedShapeTensorArray.from_numpy_ndarray(data)
    return result


def is_tensor_column(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether a column has the canonical fixed-shape tensor type."""
    return isinstance(column.type, pa.FixedShapeTensorType)


def images_to_numpy(table: pa.Table, column: str = "image") -> npt.NDArray[np.generic]:
    """A tensor column of ``table`` as one ``(N, H, W)`` array.

    Parameters
    ----------
    table : pyarrow.Table
        A shard, or several shards read together.
    column : str
        Name of a fixed-shape tensor column.

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        A read-only view of the Arrow buffer when the column is a single chunk without
        nulls; otherwise the chunks are concatenated (one copy).
    """
    data = table.column(column)
    if not is_tensor_column(data):
        raise TypeError(f"column {column!r} has type {data.type}, not a fixed_shape_tensor")
    tensor_type: pa.FixedShapeTensorType = data.type
    if data.num_chunks == 0:
        return np.empty((0, *tensor_type.shape), dtype=tensor_type.value_type.to_pandas_dtype())
    chunk = data.chunk(0) if data.num_chunks == 1 else data.combine_chunks()
    result: npt.NDArray[np.generic] = chunk.to_numpy_ndarray()
    return result
