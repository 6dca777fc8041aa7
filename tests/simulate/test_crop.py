"""Crops of the periodic tiling: geometry round trips and accuracy against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hpcbench.simulate._spline import affine_cubic_periodic
from hpcbench.simulate.crop import CropGeometry, crop, prepare, random_geometry
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.study import ImageSpec, Range

LX, LY = 8.0, 6.0
# (amplitude, cycles along x, cycles along y, phase): wavelengths from 8 Å down to 0.8 Å
WAVES = [(1.0, 1, 0, 0.3), (0.5, 2, 3, 1.1), (0.3, -5, 4, 2.0), (0.2, 10, -3, 0.7)]


def _field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = 2.0 + np.zeros(np.broadcast(x, y).shape)
    for amp, kx, ky, phase in WAVES:
        total += amp * np.cos(2 * np.pi * (kx * x / LX + ky * y / LY) + phase)
    return total


def _cell(sampling: float = 0.05, *, periodic: bool = True, margin: float = 0.0) -> PeriodicImage:
    nx, ny = round(LX / sampling), round(LY / sampling)
    x = np.arange(nx) * LX / nx
    y = np.arange(ny) * LY / ny
    return PeriodicImage(_field(x[None, :], y[:, None]), (LX, LY), periodic, margin)


def test_pixel_world_round_trip() -> None:
    geometry = CropGeometry(rotation=33.0, offset=(1.5, -2.0), shape=(10, 20), pixel_size=0.2)
    world = geometry.pixel_to_world([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    theta = np.radians(33.0)
    np.testing.assert_allclose(world[0], [1.5, -2.0])
    np.testing.assert_allclose(world[1], [1.5 + 0.2 * np.cos(theta), -2.0 + 0.2 * np.sin(theta)])
    np.testing.assert_allclose(world[2], [1.5 - 0.2 * np.sin(theta), -2.0 + 0.2 * np.cos(theta)])
    points = np.random.default_rng(0).uniform(-30, 30, (50, 2))
    np.testing.assert_allclose(geometry.pixel_to_world(geometry.world_to_pixel(points)), points)


def test_padded_shares_pixels() -> None:
    geometry = CropGeometry(rotation=71.0, offset=(3.0, 4.0), shape=(12, 9), pixel_size=0.1)
    padded = geometry.padded(3)
    assert padded.shape == (18, 15)
    np.testing.assert_allclose(padded.pixel_to_world([3.0, 3.0]), geometry.offset, atol=1e-12)


@pytest.mark.parametrize("rotation", [0.0, 17.0, 90.0, 241.3])
def test_crop_matches_closed_form(rotation: float) -> None:
    prepared = prepare(_cell())
    rng = np.random.default_rng(1)
    for _ in range(3):
        # offsets far outside the cell check the periodic wrap
        offset = (float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)))
        geometry = CropGeometry(rotation, offset, (64, 48), 0.1)
        out = crop(prepared, geometry)
        assert out.dtype == np.float32
        assert out.shape == (64, 48)
        rows, cols = np.mgrid[0:64, 0:48]
        world = geometry.pixel_to_world(np.stack([cols, rows], axis=-1))
        expected = _field(world[..., 0], world[..., 1])
        error = np.abs(out - expected).max() / np.abs(expected).max()
        assert error < 1e-3


def test_crop_reproduces_samples_exactly() -> None:
    image = _cell(0.1)
    out = crop(image, CropGeometry(0.0, (0.0, 0.0), (60, 80), 0.1))
    np.testing.assert_allclose(out, image.array, rtol=2e-6)


def test_random_geometry_periodic() -> None:
    spec = ImageSpec(shape=(32, 16), pixel_size=0.1, rotation=Range(min=0.0, max=360.0))
    geometries = [random_geometry(_cell(), spec, seed) for seed in range(200)]
    offsets = np.array([g.offset for g in geometries])
    assert offsets.min() >= 0.0
    assert offsets[:, 0].max() < LX
    assert offsets[:, 1].max() < LY
    assert offsets[:, 0].max() > 0.9 * LX  # covers the cell
    rotations = np.array([g.rotation for g in geometries])
    assert rotations.min() >= 0.0
    assert rotations.max() > 300.0
    assert geometries[0].shape == (32, 16)
    assert random_geometry(_cell(), spec, 7) == random_geometry(_cell(), spec, 7)


def test_random_geometry_non_periodic_stays_inside_margin() -> None:
    image = _cell(periodic=False, margin=1.0)
    spec = ImageSpec(shape=(20, 20), pixel_size=0.1, rotation=Range(min=0.0, max=360.0))
    for seed in range(100):
        geometry = random_geometry(image, spec, seed)
        corners = geometry.corners()
        assert corners.min() >= 1.0 - 1e-9
        assert np.all(corners.max(axis=0) <= np.array([LX, LY]) - 1.0 + 1e-9)
        crop(image, geometry)  # accepted


def test_random_geometry_non_periodic_too_big() -> None:
    image = _cell(periodic=False, margin=1.0)
    spec = ImageSpec(shape=(50, 50), pixel_size=0.1, rotation=45.0)
    with pytest.raises(ValueError, match="does not fit"):
        random_geometry(image, spec, 0)


def test_crop_non_periodic_outside_raises() -> None:
    image = _cell(periodic=False, margin=1.0)
    with pytest.raises(ValueError, match="trusted region"):
        crop(image, CropGeometry(0.0, (0.5, 1.0), (10, 10), 0.1))


def test_compiled_kernel_matches_scipy() -> None:
    coefficients = prepare(_cell()).coefficients
    rng = np.random.default_rng(5)
    for _ in range(5):
        matrix = rng.uniform(-3, 3, (2, 2))
        offset = (float(rng.uniform(-500, 500)), float(rng.uniform(-500, 500)))
        out = np.empty((20, 30), np.float32)
        if not affine_cubic_periodic(coefficients, matrix, offset, out):
            pytest.skip("numba not available")
        expected = ndimage.affine_transform(
            coefficients,
            matrix,
            offset=offset,
            output_shape=(20, 30),
            order=3,
            mode="grid-wrap",
            prefilter=False,
        )
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
