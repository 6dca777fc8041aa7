"""Lattice spacing from power-spectrum peaks, on crops that do not fit the lattice."""

from __future__ import annotations

import numpy as np
import pytest

from hpcbench.metrics.lattice import lattice_spacing
from hpcbench.simulate.corrupt import CorruptionParams, corrupt
from hpcbench.simulate.crop import CropGeometry, crop, prepare
from hpcbench.simulate.periodic import PeriodicImage

A = 3.28  # hexagonal lattice constant [Å]


def _hexagonal_cell(sampling: float = 0.05, sigma: float = 0.35) -> PeriodicImage:
    """Gaussian atoms on a hexagonal lattice, orthogonal 4 x 2 supercell, periodic images."""
    lx, ly = 4 * A, 2 * A * np.sqrt(3)
    nx, ny = round(lx / sampling), round(ly / sampling)
    x = np.arange(nx) * lx / nx
    y = np.arange(ny) * ly / ny
    image = np.zeros((ny, nx))
    for i in range(4):
        for j in range(2):
            for bx, by in [(0.0, 0.0), (0.5, 0.5)]:
                ax, ay = (i + bx) * A, (j + by) * A * np.sqrt(3)
                gx = sum(np.exp(-((x - ax - s * lx) ** 2) / (2 * sigma**2)) for s in (-1, 0, 1))
                gy = sum(np.exp(-((y - ay - s * ly) ** 2) / (2 * sigma**2)) for s in (-1, 0, 1))
                image += np.outer(gy, gx)
    return PeriodicImage(image, (lx, ly))


@pytest.fixture(scope="module")
def cell() -> PeriodicImage:
    return _hexagonal_cell()


@pytest.mark.parametrize(("rotation", "offset"), [(17.0, (1.234, 2.345)), (-41.3, (7.7, 0.4))])
def test_hexagonal_spacing_through_crop(
    cell: PeriodicImage, rotation: float, offset: tuple[float, float]
) -> None:
    image = crop(prepare(cell), CropGeometry(rotation, offset, (128, 128), 0.1))
    d100 = A * np.sqrt(3) / 2
    assert 12.8 / d100 % 1 > 0.2  # the field holds a non-integer number of periods
    assert lattice_spacing(image, pixel_size=0.1) == pytest.approx(d100, rel=0.01)
    assert lattice_spacing(image, pixel_size=0.1, expected=2.9) == pytest.approx(d100, rel=0.01)


def test_spacing_survives_counting_noise(cell: PeriodicImage) -> None:
    clean = crop(cell, CropGeometry(17.0, (3.0, 1.0), (128, 128), 0.1))
    noisy = corrupt(clean, CorruptionParams(dose=2e3), pixel_size=0.1, seed=0)
    assert lattice_spacing(noisy, pixel_size=0.1) == pytest.approx(A * np.sqrt(3) / 2, rel=0.01)


def test_plane_wave_spacing() -> None:
    r, c = np.mgrid[0:100, 0:140] * 0.08
    theta = np.radians(23.0)
    period = 1.37
    image = 1 + np.cos(2 * np.pi * (c * np.cos(theta) + r * np.sin(theta)) / period + 0.4)
    assert lattice_spacing(image, pixel_size=0.08) == pytest.approx(period, rel=0.005)


def test_featureless_image_raises() -> None:
    with pytest.raises(ValueError, match="no spectral peak"):
        lattice_spacing(np.ones((32, 32)), pixel_size=0.1)
