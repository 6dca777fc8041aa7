"""Labels follow the crop: every defect column inside appears exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from skimage.measure import label as connected

from hpcbench.simulate.crop import CropGeometry, crop, prepare
from hpcbench.simulate.labels import (
    Coordinates,
    Sites,
    class_map,
    labelled_coordinates,
    merge_columns,
    render_mask,
    site_table,
)
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.study import LabelSpec

LX, LY = 10.0, 8.0
# (x, y, code) of each projected column of the hand-built cell, and how it is made
COLUMNS = [
    (1.0, 7.0, 0),  # two lattice Se atoms, one column
    (3.0, 1.5, 0),  # a lattice metal
    (2.0, 3.0, 3),  # metal antisite: one labelled atom
    (5.0, 6.0, 1),  # anion vacancy: remaining Se (code 0) + a vacancy site (code 1)
    (7.0, 2.0, 9),  # M_2A: labelled metal + labelled vacancy site at the same x, y
    (9.95, 0.03, 7),  # dopant next to the cell corner (its images wrap)
    (6.0, 4.0, 1),  # both anions gone: two vacancy sites (code 1), no atom
    (8.5, 6.5, 0),  # lattice
]
SPEC = LabelSpec(
    classes=["anion_vacancy", "metal_antisite", "dopant", "metal_antisite_anion_vacancy"],
    radius=0.3,
)


def _cell() -> Atoms:
    positions = [
        (1.0, 7.0, 1.5),
        (1.02, 6.99, -1.5),
        (3.0, 1.5, 0.0),
        (2.0, 3.0, 1.5),
        (5.0, 6.0, 1.5),
        (7.0, 2.0, 1.5),
        (9.95, 0.03, 0.0),
        (8.5, 6.5, 0.0),
    ]
    atoms = Atoms(
        "Se2WMoSeMoNbW", positions=positions, cell=[LX, LY, 10.0], pbc=[True, True, False]
    )
    atoms.arrays["label"] = np.array([0, 0, 0, 3, 0, 9, 7, 0], np.int64)
    atoms.info["vacancy_sites"] = np.array(
        [[5.0, 6.0, -1.5], [7.0, 2.0, -1.5], [6.0, 4.0, 1.5], [6.0, 4.0, -1.5]]
    )
    atoms.info["vacancy_labels"] = np.array([1, 9, 1, 1], np.int64)
    return atoms


def _expected(geometry: CropGeometry) -> list[tuple[float, float, int]]:
    """Brute force: every periodic image of every column, kept if inside the crop."""
    rows, cols = geometry.shape
    found = []
    for x, y, code in COLUMNS:
        for i in range(-6, 7):
            for j in range(-6, 7):
                col, row = geometry.world_to_pixel([x + i * LX, y + j * LY])
                if -0.5 <= col < cols - 0.5 and -0.5 <= row < rows - 0.5:
                    found.append((float(col), float(row), code))
    return found


def test_class_map() -> None:
    assert class_map(SPEC) == {1: 1, 3: 2, 7: 3, 9: 4}
    with_lattice = LabelSpec(classes=["dopant", "anion_vacancy"], lattice=True)
    assert class_map(with_lattice) == {0: 1, 7: 2, 1: 3}


def test_every_defect_inside_appears_once() -> None:
    atoms = _cell()
    mapping = class_map(SPEC)
    rng = np.random.default_rng(3)
    n_checked = 0
    for _ in range(60):
        shape = (int(rng.integers(40, 140)), int(rng.integers(40, 140)))
        geometry = CropGeometry(
            rotation=float(rng.uniform(0, 360)),
            offset=(float(rng.uniform(-LX, 2 * LX)), float(rng.uniform(-LY, 2 * LY))),
            shape=shape,
            pixel_size=0.1,
        )
        sites = site_table(atoms, geometry)
        coords = labelled_coordinates(sites, mapping)
        expected = [e for e in _expected(geometry) if mapping.get(e[2], 0) > 0]
        assert len(coords) == len(expected)
        # each expected column matched by exactly one coordinate of the right class
        for col, row, code in expected:
            d = np.hypot(coords.x - col, coords.y - row)
            assert np.sum(d < 0.5) == 1
            assert coords.cls[np.argmin(d)] == mapping[code]
        assert np.all((coords.x >= -0.5) & (coords.x < shape[1] - 0.5))
        assert np.all((coords.y >= -0.5) & (coords.y < shape[0] - 0.5))
        mask = render_mask(sites, mapping, shape, radius=3.0)
        for value in range(1, 5):
            components, n = connected(mask == value, return_num=True, connectivity=1)
            assert n == int(np.sum(coords.cls == value))
            rr = np.floor(coords.y[coords.cls == value] + 0.5).astype(int)
            cc = np.floor(coords.x[coords.cls == value] + 0.5).astype(int)
            # each component holds exactly one coordinate
            assert sorted(components[rr, cc].tolist()) == list(range(1, n + 1))
        n_checked += len(expected)
    assert n_checked > 100


def _at(sites: Sites, x: float, y: float) -> int:
    d = np.hypot(sites.x - x, sites.y - y)
    assert d.min() < 0.2
    return int(np.argmin(d))


def test_projection_merges_columns_and_carries_defect_code() -> None:
    geometry = CropGeometry(rotation=0.0, offset=(-0.2, -0.2), shape=(80, 100), pixel_size=0.1)
    sites = site_table(_cell(), geometry)
    # one entry per column; the dopant at x = 9.95 is out, its image at x = -0.05 is in
    assert len(sites) == 8
    dopant = _at(sites, 1.5, 2.3)
    assert sites.code[dopant] == 7
    anion_vacancy = _at(sites, 52.0, 62.0)
    assert sites.code[anion_vacancy] == 1  # the column carries the defect, not lattice
    assert sites.z_number[anion_vacancy] == 34
    assert not sites.vacancy[anion_vacancy]
    m2a = _at(sites, 72.0, 22.0)
    assert sites.code[m2a] == 9
    assert sites.z_number[m2a] == 42
    empty = _at(sites, 62.0, 42.0)
    assert sites.code[empty] == 1
    assert sites.vacancy[empty]
    assert sites.z_number[empty] == 0
    se2 = _at(sites, 12.1, 71.95)
    assert sites.code[se2] == 0
    assert sites.z_number[se2] == 68
    assert sites.x[se2] == pytest.approx(12.1, abs=1e-4)
    raw = site_table(_cell(), geometry, merge_distance=None)
    assert len(raw) == 8 + 4  # every atom and vacancy site


def test_border_inclusion_is_half_open() -> None:
    atoms = _cell()
    ps = 0.1
    # the lattice metal at x = 3.0: pixel x = (3.0 - x0) / ps
    for x_pixel, inside in [(-0.45, True), (-0.55, False), (49.45, True), (49.55, False)]:
        geometry = CropGeometry(0.0, (3.0 - x_pixel * ps, 1.0), (10, 50), ps)
        sites = site_table(atoms, geometry)
        hits = np.abs(sites.y - 5.0) < 0.01
        assert hits.sum() == int(inside)
        if inside:
            assert sites.x[hits][0] == pytest.approx(x_pixel, abs=1e-4)


def test_wrap_counts_each_image_once() -> None:
    atoms = _cell()
    # a crop exactly one cell wide, aligned with the cell: each column appears once
    geometry = CropGeometry(0.0, (-0.05, -0.05), (80, 100), 0.1)
    sites = site_table(atoms, geometry)
    assert len(sites) == len(COLUMNS)
    assert sorted(sites.code.tolist()) == sorted(c for *_, c in COLUMNS)
    # a crop two cells wide: each column exactly twice
    wide = CropGeometry(0.0, (-0.05, -0.05), (80, 200), 0.1)
    assert len(site_table(atoms, wide)) == 2 * len(COLUMNS)


def test_lattice_labels_and_overlap_priority() -> None:
    spec = LabelSpec(classes=["dopant"], lattice=True)
    mapping = class_map(spec)
    geometry = CropGeometry(0.0, (-0.05, -0.05), (80, 100), 0.1)
    coords = labelled_coordinates(site_table(_cell(), geometry), mapping)
    # lattice columns are those with atoms and code 0; the dopant is class 2
    assert sorted(coords.cls.tolist()) == [1, 1, 1, 2]
    records = coords.as_records()
    assert len(records) == 4
    assert records[0] == {"x": coords.x[0], "y": coords.y[0], "label": int(coords.cls[0])}
    overlap = Coordinates(
        np.array([5.0, 7.0], np.float32),
        np.array([5.0, 5.0], np.float32),
        np.array([3, 1], np.uint8),
    )
    mask = render_mask(overlap, None, (11, 13), radius=2.0)
    assert mask[5, 6] == 3  # inside both disks: the higher class
    assert mask[5, 9] == 1
    assert mask[5, 2] == 0
    assert np.sum(mask == 3) == 13  # pixels within 2 px of the centre


def test_small_radius_still_marks_the_site() -> None:
    coords = Coordinates(
        np.array([3.4], np.float32), np.array([2.6], np.float32), np.array([1], np.uint8)
    )
    mask = render_mask(coords, None, (6, 6), radius=0.1)
    assert mask.sum() == 1
    assert mask[3, 3] == 1


def test_merge_columns_chains_and_ties() -> None:
    sites = Sites(
        x=np.array([0.0, 0.3, 10.0, 10.2], np.float32),
        y=np.zeros(4, np.float32),
        code=np.array([3, 7, 0, 0], np.int16),
        z_number=np.array([42, 41, 34, 34], np.int16),
        vacancy=np.zeros(4, bool),
    )
    merged = merge_columns(sites, distance=0.5)
    assert len(merged) == 2
    assert merged.code.tolist() == [7, 0]
    np.testing.assert_allclose(merged.x, [0.15, 10.1], atol=1e-6)
    assert merged.z_number.tolist() == [83, 68]


def test_sites_sit_on_the_cropped_image_peaks() -> None:
    """crop() and site_table() share one geometry: atom columns are the image's peaks."""
    atoms = _cell()
    sigma, step = 0.25, 0.05
    x = np.arange(round(LX / step)) * step
    y = np.arange(round(LY / step)) * step
    image = np.zeros((len(y), len(x)))
    for px, py, _ in atoms.positions:  # the Se2 column peaks at its atoms' mean
        gx = sum(np.exp(-((x - px - s * LX) ** 2) / (2 * sigma**2)) for s in (-1, 0, 1))
        gy = sum(np.exp(-((y - py - s * LY) ** 2) / (2 * sigma**2)) for s in (-1, 0, 1))
        image += np.outer(gy, gx)
    prepared = prepare(PeriodicImage(image, (LX, LY)))
    rng = np.random.default_rng(8)
    n_checked = 0
    for _ in range(5):
        geometry = CropGeometry(
            float(rng.uniform(0, 360)),
            (float(rng.uniform(0, LX)), float(rng.uniform(0, LY))),
            (96, 96),
            0.1,
        )
        out = np.log(np.maximum(crop(prepared, geometry).astype(np.float64), 1e-30))
        sites = site_table(atoms, geometry)
        for sx, sy, empty in zip(sites.x, sites.y, sites.vacancy, strict=True):
            r, c = round(float(sy)), round(float(sx))
            if empty or not (2 <= r < 94 and 2 <= c < 94):
                continue
            # log of a Gaussian is a parabola: a 3-point fit gives the peak exactly
            dr = (
                0.5
                * (out[r - 1, c] - out[r + 1, c])
                / (out[r - 1, c] - 2 * out[r, c] + out[r + 1, c])
            )
            dc = (
                0.5
                * (out[r, c - 1] - out[r, c + 1])
                / (out[r, c - 1] - 2 * out[r, c] + out[r, c + 1])
            )
            assert abs(c + dc - sx) < 0.05
            assert abs(r + dr - sy) < 0.05
            n_checked += 1
    assert n_checked > 20
