"""Lattice spacing from power-spectrum peaks, and pixel sizes calibrated by a lattice.

Crops that do not fit the lattice; honeycombs rendered at a known pixel size under a
strong low-frequency background and counting noise, which must not fool the search;
the real graphene images of ../shared/data where present.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hpcbench.metrics.lattice import (
    LATTICES,
    Lattice,
    calibrate_pixel_size,
    lattice_spacing,
    parse_lattice,
)
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


# ----------------------------------------------------- hexagonal lattices, calibration

GRAPHENE_D100 = 2.46 * np.sqrt(3) / 2  # {10-10} spacing of graphene [Å]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _honeycomb(
    shape: tuple[int, int],
    pixel_size: float,
    a: float,
    *,
    rotation: float,
    offset: tuple[float, float] = (0.3, 0.7),
    sigma: float = 0.45,
    weights: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Gaussian atoms [Å wide] on a honeycomb of constant ``a`` [Å], rendered at ``pixel_size``."""
    rows, cols = shape
    theta = np.radians(rotation)
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    a1, a2 = turn @ np.array([a, 0.0]), turn @ np.array([a / 2, a * np.sqrt(3) / 2])
    m = int(np.hypot(rows, cols) * pixel_size / a * 1.3) + 2
    i, j = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1), indexing="ij")
    cells = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2 + np.asarray(offset)
    y, x = (np.arange(rows) + 0.5) * pixel_size, (np.arange(cols) + 0.5) * pixel_size
    image = np.zeros(shape)
    for basis, weight in zip(((0.0, 0.0), (1 / 3, 1 / 3)), weights, strict=True):
        sites = cells + basis[0] * a1 + basis[1] * a2
        inside = (sites > -4 * sigma).all(axis=1) & (sites[:, 0] < x[-1] + 4 * sigma)
        for sx, sy in sites[inside & (sites[:, 1] < y[-1] + 4 * sigma)]:
            gx = np.exp(-((x - sx) ** 2) / (2 * sigma**2))
            gy = np.exp(-((y - sy) ** 2) / (2 * sigma**2))
            image += weight * np.outer(gy, gx)
    return image


def _background(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Strong smooth low-frequency background: broad blobs (up to 30x an atom) and a ramp."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    background = 0.05 * cols + 1.0
    for _ in range(6):
        r0, c0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        width = rng.uniform(10, 40)
        blob = np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * width**2))
        background += rng.uniform(5, 30) * blob
    return background


def _strongest_frequency(image: np.ndarray) -> float:
    """|q| [cycles/px] of the strongest bin of the Hann-windowed spectrum beyond 3 periods."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1]),
                              indexing="ij"))  # fmt: skip
    power[q < 3.0 / min(image.shape)] = 0.0
    return float(q.flat[np.argmax(power)])


@pytest.mark.parametrize(
    ("pixel_size", "rotation", "shape"),
    [
        (0.15, 13.0, (256, 256)),
        (0.11, -37.0, (300, 220)),
        (0.25, 71.0, (256, 256)),
        (0.2, 0.0, (256, 256)),  # a pair of reflections on the rows' frequency axis
        (0.13, 30.0, (256, 240)),  # and on the columns'
    ],
)
def test_spacing_ignores_strong_low_frequency_background(
    pixel_size: float, rotation: float, shape: tuple[int, int]
) -> None:
    rng = np.random.default_rng(round(pixel_size * 100))
    lattice = _honeycomb(shape, pixel_size, 2.46, rotation=rotation)
    image = rng.poisson(10 * (lattice + _background(shape, rng))).astype(float)
    image += rng.normal(0.0, 5.0, (shape[0], 1))  # scan-line offsets: a streak on an axis
    # The background, not the lattice, holds the strongest spectral bin.
    assert _strongest_frequency(image) < 0.5 * pixel_size / GRAPHENE_D100
    spacing = lattice_spacing(image, pixel_size=pixel_size)
    assert spacing == pytest.approx(GRAPHENE_D100, rel=0.01)
    calibration = calibrate_pixel_size(image, "graphene")
    assert calibration.pixel_size == pytest.approx(pixel_size, rel=0.01)
    assert calibration.spacing == pytest.approx(GRAPHENE_D100 / pixel_size, rel=0.01)
    # The {10-10} ring of one crystal; at 0° one pair lies in the scan-line streak.
    assert calibration.reflections == (4 if rotation == 0.0 else 6)
    assert calibration.contrast >= 40


def test_calibration_ignores_a_low_frequency_fringe() -> None:
    """A sharp fringe (one Friedel pair, 5 periods across) stronger than the lattice."""
    rng = np.random.default_rng(7)
    shape, pixel_size = (256, 256), 0.18
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    fringe = 3.0 + 3.0 * np.cos(2 * np.pi * (5 * rows + 2 * cols) / 256)
    lattice = _honeycomb(shape, pixel_size, 2.46, rotation=-8.0)
    image = rng.poisson(10 * (lattice + fringe + _background(shape, rng))).astype(float)
    # The fringe holds the strongest bin; a single fringe is no hexagonal ring.
    assert _strongest_frequency(image) == pytest.approx(np.hypot(5, 2) / 256, abs=1.5 / 256)
    assert calibrate_pixel_size(image, "graphene").pixel_size == pytest.approx(pixel_size, rel=0.01)


def test_calibrate_wse2_by_name_and_constant() -> None:
    rng = np.random.default_rng(3)
    # 2H-WSe2 in projection: W and Se2 columns on the two honeycomb sites, ~Z^1.7.
    lattice = _honeycomb((240, 256), 0.21, 3.28, rotation=24.0, weights=(1.0, 0.53))
    image = rng.poisson(20 * (lattice + _background((240, 256), rng))).astype(float)
    by_name = calibrate_pixel_size(image, "WSe2")
    by_constant = calibrate_pixel_size(image, "a=3.28")
    assert by_name.pixel_size == pytest.approx(0.21, rel=0.01)
    assert by_constant.pixel_size == by_name.pixel_size
    assert by_name.lattice.first_order == pytest.approx(3.28 * np.sqrt(3) / 2)


def test_amorphous_image_raises_one_line() -> None:
    rng = np.random.default_rng(11)
    from scipy import ndimage

    speckle = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 1.5)
    image = rng.poisson(20 * (1 + 0.3 * speckle + _background((256, 256), rng))).astype(float)
    with pytest.raises(ValueError, match="stands out from the radial background") as info:
        calibrate_pixel_size(image, "graphene")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="stands out from the radial background"):
        lattice_spacing(image, pixel_size=0.1)


def test_single_fringe_is_not_a_hexagonal_ring() -> None:
    r, c = np.mgrid[0:128, 0:128]
    fringe = 1 + np.cos(2 * np.pi * (c * np.cos(0.3) + r * np.sin(0.3)) / 9.0)
    image = np.random.default_rng(5).poisson(50 * fringe).astype(float)
    assert lattice_spacing(image, pixel_size=1.0) == pytest.approx(9.0, rel=0.01)
    with pytest.raises(ValueError, match="at least 2 pairs of reflections"):
        calibrate_pixel_size(image, "graphene")


@pytest.mark.parametrize("number", ["025", "049", "066", "083"])
def test_amorphous_real_images_raise(number: str) -> None:
    """Pt atoms on amorphous carbon (data/): scan streaks and hum are no lattice."""
    from hpcbench.datasets.importer import read_image

    folder = Path(__file__).resolve().parents[2] / "data" / "pt-single-atoms-haadf" / "tif_data"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    (path,) = folder.glob(f"{number}_*.tif")
    image = read_image(path)
    with pytest.raises(ValueError, match="stands out from the radial background"):
        lattice_spacing(image, pixel_size=0.293)
    with pytest.raises(ValueError, match="stands out from the radial background"):
        calibrate_pixel_size(image, "graphene")


def test_parse_lattice() -> None:
    assert parse_lattice("graphene") == Lattice("graphene", 2.46)
    assert parse_lattice("wse2") == Lattice("WSe2", LATTICES["WSe2"])
    assert parse_lattice("a=2.5").a == 2.5
    assert parse_lattice("a = 3.16").first_order == pytest.approx(3.16 * np.sqrt(3) / 2)
    for bad in ("gold", "a=", "a=-1", "a=x"):
        with pytest.raises(ValueError, match="not one of graphene, hBN, MoS2") as info:
            parse_lattice(bad)
        assert "\n" not in str(info.value)


def _graphene_sets() -> list[Path]:
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.iterdir() if p.is_dir() and "graphene" in p.name.lower())


def _stated_pixel_size(folder: Path) -> float | None:
    """The pixel size [Å] a set's README states (``0.0293 nm per pixel``, ``0.14 Å/px``)."""
    readme = folder / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    match = re.search(
        r"([0-9]*\.?[0-9]+)\s*(nm|Å|A|pm)\s*(?:/|per)\s*(?:px|pixel)", text.replace("*", "")
    )
    if match is None:
        return None
    scale = {"nm": 10.0, "Å": 1.0, "A": 1.0, "pm": 0.01}[match.group(2)]
    return float(match.group(1)) * scale


def test_real_graphene_images_find_the_lattice_ring() -> None:
    """The real graphene images of ../shared/data (absent from user clones: skipped)."""
    sets = _graphene_sets()
    if not sets:
        pytest.skip(f"no graphene images under {SHARED}")
    from hpcbench.datasets.importer import IMAGE_SUFFIXES, read_image

    for folder in sets:
        stated = _stated_pixel_size(folder)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        assert files, f"{folder}: no images"
        for path in files:
            image = read_image(path)
            calibration = calibrate_pixel_size(image, "graphene")
            assert calibration.spacing > 2.0  # the lattice resolved, not a low-q feature
            if stated is not None:
                assert calibration.pixel_size == pytest.approx(stated, rel=0.02), path.name
                spacing = lattice_spacing(image, pixel_size=stated)
                assert spacing == pytest.approx(GRAPHENE_D100, rel=0.02), path.name
