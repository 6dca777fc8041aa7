from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial import cKDTree

from hpcbench.structures import (
    DEFECT_CODES,
    add_mx2_defects,
    apply_messy,
    beam_damage,
    grain_boundary,
    mx2,
    rotate_lattice,
)
from hpcbench.study import Messy, Range

A = 3.28  # WSe2


@pytest.fixture(scope="module")
def defected() -> Atoms:
    pristine = mx2("WSe2", supercell=(4, 3))
    return add_mx2_defects(pristine, {"metal_vacancy": 3, "dopant": 2}, dopants=["Mo"], rng=0)


def unrotate(points: np.ndarray, angle: float, lengths: np.ndarray) -> np.ndarray:
    """Undo rotate_lattice's map and fold into the original cell: (x, y) mod L."""
    t = math.radians(angle)
    inverse = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    xy = (points[:, :2] - lengths / 2) @ inverse.T + lengths / 2
    return np.asarray(xy % lengths)


def on_sites(points: np.ndarray, sites: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Minimum-image in-plane distance from each point to the nearest of ``sites``."""
    delta = points[:, None, :2] - sites[None, :, :2]
    delta -= lengths * np.rint(delta / lengths)
    return np.asarray(np.linalg.norm(delta, axis=-1).min(axis=1))


def interior(points: np.ndarray, lengths: np.ndarray, margin: float) -> np.ndarray:
    xy = points[:, :2]
    return np.asarray(np.all((xy > margin) & (xy < lengths - margin), axis=1))


def test_rotation_by_zero_is_identity(defected: Atoms) -> None:
    same = rotate_lattice(defected, 0.0)
    assert np.array_equal(same.positions, defected.positions)
    assert same.info["periodic"] is True


@pytest.mark.parametrize("angle", [30.0, 45.0, 17.0])
def test_rotation_preserves_lattice_and_moves_defects(defected: Atoms, angle: float) -> None:
    out = rotate_lattice(defected, angle)
    lengths = defected.cell.lengths()[:2]
    assert out.info["periodic"] is False and not any(out.pbc)
    assert np.allclose(out.cell.lengths(), defected.cell.lengths())
    assert np.all((out.positions[:, :2] >= 0) & (out.positions[:, :2] < lengths))
    # Same areal density: the count differs from the cell's only by edge atoms.
    assert abs(len(out) - len(defected)) < 0.25 * len(defected)
    # Nearest-neighbour W-W distance stays a inside the crop.
    metals = out.positions[out.symbols == "W"]
    d, _ = cKDTree(metals[:, :2]).query(metals[:, :2], k=2)
    keep = interior(metals, lengths, A + 0.1)
    assert np.allclose(d[keep, 1], A)
    # Every atom maps back exactly onto an atom of the original cell (same element and
    # label), and every vacancy site onto an original vacancy site.
    back = unrotate(out.positions, angle, lengths)
    tree = cKDTree(defected.positions[:, :2], boxsize=lengths)
    dist, index = tree.query(back)
    assert np.allclose(dist, 0.0, atol=1e-6)
    assert np.array_equal(out.numbers, defected.numbers[index])
    assert np.array_equal(out.arrays["label"], defected.arrays["label"][index])
    sites = out.info["vacancy_sites"]
    assert len(sites) >= 1
    assert np.allclose(
        on_sites(unrotate(sites, angle, lengths), defected.info["vacancy_sites"], lengths),
        0.0,
        atol=1e-6,
    )
    assert np.all(out.info["vacancy_labels"] == DEFECT_CODES["metal_vacancy"])
    # The vacancy sites are empty, and recounted defect numbers match the labels.
    assert np.all(np.linalg.norm(sites[:, None] - out.positions[None], axis=-1).min(axis=1) > 1.5)
    assert out.info["defect_counts"] == {
        "metal_vacancy": len(sites),
        "dopant": int(np.count_nonzero(out.arrays["label"] == DEFECT_CODES["dopant"])),
    }
    assert np.all(out.symbols[out.arrays["label"] == DEFECT_CODES["dopant"]] == "Mo")


def bond_angles(points: np.ndarray) -> np.ndarray:
    """Directions of nearest-neighbour bonds [deg]."""
    tree = cKDTree(points[:, :2])
    pairs = np.array(sorted(tree.query_pairs(A + 0.05)))
    delta = points[pairs[:, 1], :2] - points[pairs[:, 0], :2]
    return np.asarray(np.degrees(np.arctan2(delta[:, 1], delta[:, 0])))


def off_by(angles: np.ndarray, target: float) -> np.ndarray:
    """Signed difference of bond directions from ``target`` modulo 60 degrees."""
    return np.asarray((angles - target + 30.0) % 60.0 - 30.0)


@pytest.mark.parametrize("separation", [2.0, -3.0])
def test_grain_boundary(separation: float) -> None:
    pristine = mx2("WSe2", supercell=(8, 4))
    out = grain_boundary(pristine, rotation_deg=10.0, separation=separation, rng=1)
    lengths = pristine.cell.lengths()[:2]
    boundary = lengths[0] / 2
    x = out.positions[:, 0]
    assert out.info["periodic"] is False
    assert np.all((out.positions[:, :2] >= 0) & (out.positions[:, :2] < lengths))
    metals = out.positions[out.symbols == "W"]
    left = metals[metals[:, 0] < boundary - abs(separation) / 2 - A]
    right = metals[metals[:, 0] >= boundary + abs(separation) / 2 + A]
    # Left grain unrotated (bond directions 0 mod 60), right grain 10 degrees off.
    assert len(left) > 10 and len(right) > 10
    assert np.allclose(off_by(bond_angles(left), 0.0), 0.0, atol=1e-6)
    assert np.allclose(off_by(bond_angles(right), 10.0), 0.0, atol=1e-6)
    strip = (x >= boundary - abs(separation) / 2) & (x < boundary + abs(separation) / 2)
    if separation > 0:
        assert not np.any(strip)  # a gap
    else:
        # Overlap: both grains present, so about twice the lattice's areal density.
        density = len(pristine) / (lengths[0] * lengths[1])
        in_strip = np.count_nonzero(strip) / (abs(separation) * lengths[1])
        assert 1.4 * density < in_strip < 2.6 * density


def test_grain_boundary_reproducible() -> None:
    pristine = mx2("MoS2", supercell=(4, 3))
    first = grain_boundary(pristine, rotation_deg=30.0, separation=0.5, rng=7)
    again = grain_boundary(pristine, rotation_deg=30.0, separation=0.5, rng=7)
    other = grain_boundary(pristine, rotation_deg=30.0, separation=0.5, rng=8)
    assert np.array_equal(first.positions, again.positions)
    assert first.positions.shape != other.positions.shape or not np.allclose(
        first.positions, other.positions
    )
    with pytest.raises(ValueError, match="grain separation"):
        grain_boundary(pristine, rotation_deg=0.0, separation=100.0)


@pytest.mark.parametrize("n_atoms", [1, 5, 30])
def test_beam_damage_removes_nearest(defected: Atoms, n_atoms: int) -> None:
    out = beam_damage(defected, n_atoms, rng=3)
    assert len(out) == len(defected) - n_atoms
    code = DEFECT_CODES["beam_damage"]
    is_damage = out.info["vacancy_labels"] == code
    removed = out.info["vacancy_sites"][is_damage]
    assert len(removed) == n_atoms
    lengths = defected.cell.lengths()[:2]
    # Removed positions are original atoms, and none of them is left.
    assert np.allclose(on_sites(removed, defected.positions, lengths), 0.0)
    gap = np.linalg.norm(removed[:, None] - out.positions[None], axis=-1).min(axis=1)
    assert np.all(gap > 0.5)
    # The first removed atom is the centre: all removed are nearer to it than any kept.
    centre = removed[0]

    def mic(points: np.ndarray) -> np.ndarray:
        delta = points - centre
        delta[:, :2] -= lengths * np.rint(delta[:, :2] / lengths)
        return np.asarray(np.linalg.norm(delta, axis=1))

    assert mic(removed).max() <= mic(out.positions).min() + 1e-9
    # Labels stay attached to their atoms; earlier vacancy sites are kept.
    assert np.all(out.symbols[out.arrays["label"] == DEFECT_CODES["dopant"]] == "Mo")
    assert np.count_nonzero(~is_damage) == 3
    assert out.info["defect_counts"]["dopant"] == np.count_nonzero(
        out.arrays["label"] == DEFECT_CODES["dopant"]
    )
    with pytest.raises(ValueError, match="beam damage must remove"):
        beam_damage(defected, len(defected) + 1)


def test_apply_messy_rotation_branch(defected: Atoms) -> None:
    spec = Messy(rotation=[30.0], grain_boundary_probability=0.0, beam_damage_probability=0.0)
    out = apply_messy(defected, spec, rng=0)
    record = out.info["messy"]
    assert record["grain_boundary"] == 0 and record["rotation"] == 30.0
    assert math.isnan(record["grain_rotation"]) and math.isnan(record["grain_separation"])
    assert record["beam_damage_atoms"] == 0
    expected = rotate_lattice(defected, 30.0)
    assert np.array_equal(out.positions, expected.positions)


def test_apply_messy_grain_boundary_and_damage(defected: Atoms) -> None:
    spec = Messy(
        grain_boundary_probability=1.0,
        grain_rotation=[45.0],
        grain_separation=Range(min=-3.0, max=3.0),
        beam_damage_probability=1.0,
        beam_damage_atoms=7,
    )
    out = apply_messy(defected, spec, rng=2)
    record = out.info["messy"]
    assert record["grain_boundary"] == 1 and record["grain_rotation"] == 45.0
    assert -3.0 <= record["grain_separation"] <= 3.0 and math.isnan(record["rotation"])
    assert record["beam_damage_atoms"] == 7
    assert np.count_nonzero(out.info["vacancy_labels"] == DEFECT_CODES["beam_damage"]) == 7
    assert out.info["periodic"] is False


def test_apply_messy_follows_the_supplementary_procedure(defected: Atoms) -> None:
    spec = Messy()  # GB 0.5, beam damage 0.5, rotation 0/30/45, 5-30 atoms
    for seed in range(6):
        out = apply_messy(defected, spec, rng=seed)
        record = out.info["messy"]
        # Replay the draws: branch, its parameters, (GB shift), damage choice, its size.
        gen = np.random.default_rng(seed)
        if gen.random() < 0.5:
            assert record["grain_boundary"] == 1
            assert record["grain_rotation"] == [0.0, 10.0, 30.0, 45.0][gen.integers(4)]
            assert record["grain_separation"] == gen.uniform(-3.0, 3.0)
            gen.uniform(0.0, 1.0, size=2)
        else:
            assert record["grain_boundary"] == 0
            assert record["rotation"] == [0.0, 30.0, 45.0][gen.integers(3)]
        if gen.random() < 0.5:
            n = int(gen.integers(5, 30, endpoint=True))
            assert record["beam_damage_atoms"] == n
        else:
            assert record["beam_damage_atoms"] == 0
    again = apply_messy(defected, spec, rng=5)
    assert np.array_equal(apply_messy(defected, spec, rng=5).positions, again.positions)
