"""Compiled cubic B-spline sampling of a periodic image along an affine map.

scipy's ``affine_transform(order=3, mode="grid-wrap", prefilter=False)`` computes the
same values; this loop, compiled with numba (a dependency of abTEM) when it is
available, is about 3x faster on a 128² crop (measured here: 500 vs 160 crops/s on a
loaded 2-core node), which matters because every dataset image is one crop.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["affine_cubic_periodic"]


def _affine_cubic_periodic(
    coef: NDArray[np.float64],
    m00: float,
    m01: float,
    m10: float,
    m11: float,
    o0: float,
    o1: float,
    out: NDArray[np.float32],
) -> None:
    """``out[r, c]`` = spline with coefficients ``coef`` (periodic) at ``M (r, c) + o``."""
    ny, nx = coef.shape
    rows, cols = out.shape
    # Scalars instead of 4-element scratch arrays, and the wrap of the first index by
    # adding or subtracting periods instead of an integer modulo (the offsets are within
    # a few cells): 1.6x faster, same operations in the same order, so the same bits.
    for r in range(rows):
        for c in range(cols):
            y = o0 + m00 * r + m01 * c
            x = o1 + m10 * r + m11 * c
            fy = math.floor(y)
            fx = math.floor(x)
            ty = y - fy
            tx = x - fx
            # cubic B-spline weights of the 4 nearest coefficients
            s = 1.0 - ty
            wy0 = s * s * s / 6.0
            wy1 = (3.0 * ty * ty * ty - 6.0 * ty * ty + 4.0) / 6.0
            wy3 = ty * ty * ty / 6.0
            wy2 = 1.0 - wy0 - wy1 - wy3
            s = 1.0 - tx
            wx0 = s * s * s / 6.0
            wx1 = (3.0 * tx * tx * tx - 6.0 * tx * tx + 4.0) / 6.0
            wx3 = tx * tx * tx / 6.0
            wx2 = 1.0 - wx0 - wx1 - wx3
            iy0 = int(fy) - 1
            while iy0 < 0:
                iy0 += ny
            while iy0 >= ny:
                iy0 -= ny
            ix0 = int(fx) - 1
            while ix0 < 0:
                ix0 += nx
            while ix0 >= nx:
                ix0 -= nx
            # the 3 following indices wrap by a comparison
            iy1 = iy0 + 1 if iy0 + 1 < ny else 0
            iy2 = iy1 + 1 if iy1 + 1 < ny else 0
            iy3 = iy2 + 1 if iy2 + 1 < ny else 0
            ix1 = ix0 + 1 if ix0 + 1 < nx else 0
            ix2 = ix1 + 1 if ix1 + 1 < nx else 0
            ix3 = ix2 + 1 if ix2 + 1 < nx else 0
            total = 0.0
            for a in range(4):
                if a == 0:
                    iy, wy = iy0, wy0
                elif a == 1:
                    iy, wy = iy1, wy1
                elif a == 2:
                    iy, wy = iy2, wy2
                else:
                    iy, wy = iy3, wy3
                line = 0.0
                line += wx0 * coef[iy, ix0]
                line += wx1 * coef[iy, ix1]
                line += wx2 * coef[iy, ix2]
                line += wx3 * coef[iy, ix3]
                total += wy * line
            out[r, c] = total


_compiled: list[Callable[..., Any] | None] = []


def _kernel() -> Callable[..., Any] | None:
    """The compiled kernel, or None without numba (compiled once per process)."""
    if not _compiled:
        try:
            numba = importlib.import_module("numba")
        except ImportError:
            _compiled.append(None)
        else:
            _compiled.append(numba.njit(nogil=True, cache=False)(_affine_cubic_periodic))
    return _compiled[0]


def affine_cubic_periodic(
    coef: NDArray[np.float64],
    matrix: NDArray[np.float64],
    offset: tuple[float, float],
    out: NDArray[np.float32],
) -> bool:
    """Fill ``out`` with the periodic spline at ``matrix @ (r, c) + offset``, if compiled.

    Parameters
    ----------
    coef : ndarray of float64, shape (ny, nx)
        Cubic B-spline coefficients (``scipy.ndimage.spline_filter(mode="grid-wrap")``).
    matrix : ndarray, shape (2, 2)
        Output index ``(r, c)`` → input index ``(row, col)``.
    offset : tuple of float
        Input index of output ``(0, 0)``.
    out : ndarray of float32
        Output, written in place.

    Returns
    -------
    bool
        False if numba is not available (``out`` untouched); the caller then uses scipy.
    """
    kernel = _kernel()
    if kernel is None:
        return False
    kernel(
        np.ascontiguousarray(coef, dtype=np.float64),
        float(matrix[0, 0]),
        float(matrix[0, 1]),
        float(matrix[1, 0]),
        float(matrix[1, 1]),
        float(offset[0]),
        float(offset[1]),
        out,
    )
    return True
