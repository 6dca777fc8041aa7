"""The clean image of one structure's cell, before it is cropped into samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["PeriodicImage"]


@dataclass(frozen=True)
class PeriodicImage:
    """A clean image sampled on a regular grid over a structure's cell.

    Indexing is ``array[row, column] = array[y, x]`` (abTEM measurements are indexed
    ``[x, y]`` and must be transposed). Sample ``[r, c]`` sits at the Cartesian position
    ``(x, y) = (c · sampling[0], r · sampling[1])`` [Å]: the grid starts at the cell
    origin and, for a periodic image, covers ``[0, extent)`` without repeating the
    end point, so tiling the array tiles the structure.

    Attributes
    ----------
    array : ndarray of float64, shape (ny, nx)
        Intensity; for HAADF, the fraction of the incident probe current reaching the
        detector (dimensionless, so dose [e/Å²] scales it to counts).
    extent : tuple of float
        ``(Lx, Ly)`` [Å], the cell's lengths along x and y.
    periodic : bool
        True if the image tiles (a periodic cell); False for structures that are not
        periodic in their cell (rotated lattices, grain boundaries), where crops must
        stay inside ``[margin, extent - margin]``.
    margin : float
        Distance from the cell edges [Å] within which a non-periodic image is not to be
        trusted (edge artefacts of the periodic simulation); 0 for periodic images.
    metadata : dict
        How it was made (method, parameters, timings).
    """

    array: NDArray[np.float64]
    extent: tuple[float, float]
    periodic: bool = True
    margin: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 2:
            raise ValueError(f"array must be 2-D, got shape {self.array.shape}")
        if min(self.extent) <= 0:
            raise ValueError(f"extent must be positive, got {self.extent}")

    @property
    def sampling(self) -> tuple[float, float]:
        """Grid spacing ``(dx, dy)`` [Å]."""
        ny, nx = self.array.shape
        return self.extent[0] / nx, self.extent[1] / ny
