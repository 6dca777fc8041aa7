"""Nanoparticles (seed 001): stacking measured from layer positions, bonds, sizes, supports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES
from hpcbench.structures.amorphous import amorphous_slab
from hpcbench.structures.nanoparticle import (
    PARTICLE_CODE,
    PARTICLE_NAME,
    cdse_particle,
    faceted_particle,
    particle_on_support,
    random_rotation,
    spherical_particle,
    stacking_steps,
)

SUPPORT = DEFECT_CODES["support"]
AU_A = 4.08  # ase.data.reference_states for Au
AU_BOND = AU_A / math.sqrt(2.0)  # 2.885 Å
CDSE_BOND = 0.375 * 7.0152  # u·c = 2.6307 Å


def _letters(seq: np.ndarray) -> str:
    return "".join("ABC"[int(s)] for s in seq)


def _stacking_frame(atoms: Atoms) -> np.ndarray:
    """Positions [Å] with the build's stacking axis along z (undo the stored rotation)."""
    return np.asarray((atoms.positions - atoms.info["center"]) @ atoms.info["rotation"])


def _measure_stacking(
    frame: np.ndarray, spacing: float, layer_height: float, origin: np.ndarray | None = None
) -> str:
    """Letters of the close-packed layers, from positions in the stacking frame.

    Layers are clusters of heights (gaps > half the layer spacing); each layer's in-plane
    offset from the lowest layer's first atom, in fractional coordinates of the
    triangular lattice (a1 = d x̂, a2 = d (x̂/2 + ŷ√3/2)), is (s/3, s/3) + integers for
    s = 0 (A), 1 (B), 2 (C). ``origin`` [Å] replaces that first atom as the in-plane A.
    """
    order = np.argsort(frame[:, 2])
    z = frame[order, 2]
    layer = np.concatenate([[0], np.cumsum(np.diff(z) > 0.5 * layer_height)])
    lattice = np.array([[spacing, 0.0], [0.5 * spacing, 0.5 * math.sqrt(3.0) * spacing]])
    frac = np.linalg.solve(
        lattice.T, (frame[order, :2] - (frame[order[0], :2] if origin is None else origin)).T
    ).T
    third = 3.0 * frac
    # every atom on a lattice site: thirds are integers, equal offsets along a1 and a2
    np.testing.assert_allclose(third, np.round(third), atol=1e-6)
    np.testing.assert_allclose(
        frac[:, 0] - frac[:, 1], np.round(frac[:, 0] - frac[:, 1]), atol=1e-6
    )
    offset = np.round(third[:, 0]).astype(int) % 3
    letters = []
    for k in range(layer[-1] + 1):
        values = np.unique(offset[layer == k])
        assert len(values) == 1, f"layer {k} mixes in-plane positions {values}"
        letters.append(int(values[0]))
    # layer heights are evenly spaced
    heights = np.array([z[layer == k].mean() for k in range(layer[-1] + 1)])
    np.testing.assert_allclose(np.diff(heights), layer_height, atol=1e-6)
    return _letters(np.array(letters))


def _steps(letters: str) -> np.ndarray:
    """+1 for A→B→C→A, −1 for the reverse, between consecutive layers."""
    values = np.array(["ABC".index(c) for c in letters])
    diff = np.diff(values) % 3
    assert np.all(diff != 0), f"two equal consecutive layers in {letters}"
    return np.where(diff == 1, 1, -1)


def _relabel(letters: str) -> str:
    """The same stacking with its first layer called A (a cyclic shift of A, B, C)."""
    first = "ABC".index(letters[0])
    return "".join("ABC"[("ABC".index(c) - first) % 3] for c in letters)


def test_stacking_sequences_are_the_textbook_ones() -> None:
    assert _letters(stacking_steps(9, hexagonal=False)) == "ABCABCABC"
    assert _letters(stacking_steps(9, hexagonal=False, defect="twin", planes=[4])) == "ABCABACBA"
    assert _letters(stacking_steps(8, hexagonal=False, defect="stacking_fault", planes=[4])) == (
        "ABCABABC"
    )
    assert _letters(stacking_steps(8, hexagonal=True)) == "ABABABAB"
    # wurtzite I1 fault: one cubic layer, ABAB|CBCB
    assert _letters(stacking_steps(8, hexagonal=True, defect="stacking_fault", planes=[3])) == (
        "ABABCBCB"
    )
    with pytest.raises(ValueError, match="outside"):
        stacking_steps(5, hexagonal=False, defect="twin", planes=[4])


@pytest.mark.parametrize("defect", ["none", "twin", "stacking_fault"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_au_stacking_measured_from_layer_positions(defect: str, seed: int) -> None:
    atoms = spherical_particle("Au", 50.0, rng=seed, defect=defect)  # type: ignore[arg-type]
    measured = _measure_stacking(_stacking_frame(atoms), AU_BOND, AU_A / math.sqrt(3.0))
    assert measured == _relabel(atoms.info["stacking"])
    assert len(measured) in (21, 22)  # 50 Å / 2.356 Å layers
    steps = _steps(measured)
    changed = np.flatnonzero(steps != steps[0])
    planes = atoms.info["defect_planes"]
    if defect == "none":
        assert len(changed) == 0 and len(planes) == 0
        return
    assert len(planes) == 1
    plane = int(planes[0])
    # the defect sits within half a radius of the centre: layers on both sides
    assert 5 <= plane <= len(measured) - 6
    if defect == "twin":
        # all steps after the mirror plane reversed: ABCAB|ACBA, the stacking mirrored
        np.testing.assert_array_equal(changed, np.arange(plane, len(steps)))
        span = min(plane, len(measured) - 1 - plane)
        assert measured[plane - span : plane] == measured[plane + span : plane : -1]
    else:
        # one step reversed: ABCAB|ABC, i.e. one layer missing from the perfect sequence
        np.testing.assert_array_equal(changed, [plane])
        perfect = "ABC" * 10
        start = perfect.index(measured[: plane + 1])
        assert (
            measured
            == (perfect[start : start + plane + 1] + perfect[start + plane + 2 :])[: len(measured)]
        )


def test_two_twins_and_unrotated_build() -> None:
    atoms = spherical_particle("Au", 50.0, rng=5, defect="twin", defect_count=2, rotate=False)
    np.testing.assert_array_equal(atoms.info["rotation"], np.eye(3))
    frame = atoms.positions - atoms.info["center"]
    measured = _measure_stacking(frame, AU_BOND, AU_A / math.sqrt(3.0))
    steps = _steps(measured)
    first, second = (int(p) for p in atoms.info["defect_planes"])
    expected = np.ones(len(steps), dtype=int) * steps[0]
    expected[first:second] *= -1
    np.testing.assert_array_equal(steps, expected)


@pytest.mark.parametrize("defect", ["none", "twin", "stacking_fault"])
def test_au_nearest_neighbours_are_a_over_sqrt2_with_twelve_in_the_bulk(defect: str) -> None:
    atoms = spherical_particle("Au", 50.0, rng=3, defect=defect)  # type: ignore[arg-type]
    tree = cKDTree(atoms.positions)
    distance, _ = tree.query(atoms.positions, k=2)
    np.testing.assert_allclose(distance[:, 1], AU_BOND, rtol=1e-9)  # 2.885 Å
    # atoms more than a bond inside the surface have the fcc (and hcp) coordination 12
    r = np.linalg.norm(atoms.positions - atoms.info["center"], axis=1)
    inner = r < 25.0 - 1.5 * AU_BOND
    coordination = tree.query_ball_point(atoms.positions[inner], 1.1 * AU_BOND, return_length=True)
    assert np.all(np.asarray(coordination) - 1 == 12)
    # no pair closer than the bond (no duplicated site at the defect plane)
    assert tree.query_pairs(0.95 * AU_BOND) == set()


@pytest.mark.parametrize("diameter", [22.0, 50.0])
def test_au_diameter_is_within_one_bond_of_the_request(diameter: float) -> None:
    atoms = spherical_particle("Au", diameter, rng=11)
    r = np.linalg.norm(atoms.positions - atoms.info["center"], axis=1)
    assert r.max() <= diameter / 2 + 1e-9
    assert 2 * r.max() >= diameter - AU_BOND
    pairwise = max(np.ptp(atoms.positions @ u) for u in np.eye(3))
    assert diameter - 2 * AU_BOND <= pairwise <= diameter
    # atom count = sphere volume / (a³/4) to a few percent (3855 at 5 nm)
    expected = math.pi * diameter**3 / 6 / (AU_A**3 / 4)
    assert abs(len(atoms) / expected - 1) < (0.02 if diameter > 40 else 0.06)
    assert np.all(atoms.arrays["label"] == PARTICLE_CODE)
    assert atoms.info["defect_counts"] == {PARTICLE_NAME: len(atoms)}
    # the particle sits inside its cell with the requested vacuum
    assert atoms.positions.min() == pytest.approx(5.0)
    np.testing.assert_allclose(atoms.cell.lengths() - atoms.positions.max(axis=0), 5.0)


def test_rotation_is_seeded_and_uniform() -> None:
    a = spherical_particle("Au", 22.0, rng=7, defect="twin")
    b = spherical_particle("Au", 22.0, rng=7, defect="twin")
    c = spherical_particle("Au", 22.0, rng=8, defect="twin")
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a) != len(c) or not np.allclose(a.positions, c.positions)
    assert not np.allclose(a.info["rotation"], c.info["rotation"])
    gen = np.random.default_rng(0)
    rotations = np.stack([random_rotation(gen) for _ in range(4000)])
    np.testing.assert_allclose(
        rotations @ rotations.transpose(0, 2, 1),
        np.broadcast_to(np.eye(3), (4000, 3, 3)),
        atol=1e-12,
    )
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    # Haar measure: E[R] = 0, and the image of z is uniform on the sphere (E[zz] = 1/3)
    assert np.abs(rotations.mean(axis=0)).max() < 0.03
    axis = rotations[:, :, 2]
    np.testing.assert_allclose((axis**2).mean(axis=0), 1 / 3, atol=0.02)


def test_other_fcc_elements_and_errors() -> None:
    pt = spherical_particle("Pt", 20.0, rng=0)
    distance, _ = cKDTree(pt.positions).query(pt.positions, k=2)
    np.testing.assert_allclose(distance[:, 1], 3.92 / math.sqrt(2), rtol=1e-9)
    with pytest.raises(ValueError, match="not fcc"):
        spherical_particle("Fe", 20.0, rng=0)
    # any element as fcc with an explicit lattice constant
    assert len(spherical_particle("Fe", 20.0, rng=0, lattice_constant=3.6)) > 0
    with pytest.raises(ValueError, match="diameter"):
        spherical_particle("Au", -1.0, rng=0)
    with pytest.raises(ValueError, match="planar defects"):
        spherical_particle("Au", 10.0, rng=0, defect="twin", defect_count=5)
    with pytest.raises(ValueError, match="defect must be"):
        spherical_particle("Au", 10.0, rng=0, defect="dislocation")  # type: ignore[arg-type]


def _unlike_bonds(atoms: Atoms, cutoff: float = 3.0) -> np.ndarray:
    pairs = cKDTree(atoms.positions).query_pairs(cutoff, output_type="ndarray")
    numbers = atoms.numbers
    unlike = pairs[numbers[pairs[:, 0]] != numbers[pairs[:, 1]]]
    like = pairs[numbers[pairs[:, 0]] == numbers[pairs[:, 1]]]
    assert len(like) == 0  # Cd–Cd and Se–Se are second neighbours (4.30 Å)
    return np.asarray(
        np.linalg.norm(atoms.positions[unlike[:, 0]] - atoms.positions[unlike[:, 1]], axis=1)
    )


@pytest.mark.parametrize("phase", ["wurtzite", "zincblende"])
@pytest.mark.parametrize("fault", [False, True])
def test_cdse_bonds_and_stoichiometry(phase: str, fault: bool) -> None:
    for seed in range(5):
        atoms = cdse_particle(20.0, phase=phase, stacking_fault=fault, rng=seed)  # type: ignore[arg-type]
        n_cd = int(np.count_nonzero(atoms.numbers == 48))
        n_se = int(np.count_nonzero(atoms.numbers == 34))
        assert n_cd + n_se == len(atoms) and 120 < len(atoms) < 180
        assert abs(n_cd / n_se - 1) <= 0.1
        assert atoms.info["cd_se_ratio"] == pytest.approx(n_cd / n_se)
        bonds = _unlike_bonds(atoms)
        # every Cd–Se bond is 2.63 Å (wurtzite: u·c = 2.6307 and √(a²/3 + (c/8)²) = 2.6319)
        np.testing.assert_allclose(bonds, 2.63, atol=0.003)
        # interior atoms are tetrahedral: 4 bonds
        r = np.linalg.norm(atoms.positions - atoms.info["center"], axis=1)
        tree = cKDTree(atoms.positions)
        inner = r < 10.0 - 3.0
        counts = np.asarray(tree.query_ball_point(atoms.positions[inner], 3.0, return_length=True))
        assert np.all(counts - 1 == 4)


def test_cdse_raw_cut_is_off_stoichiometry_and_balance_zero_is_exact() -> None:
    raw = [cdse_particle(20.0, rng=s, balance=None).info["cd_se_ratio"] for s in range(40)]
    assert max(abs(r - 1) for r in raw) > 0.1  # why balancing exists
    exact = cdse_particle(20.0, rng=0, balance=0.0)
    assert np.count_nonzero(exact.numbers == 48) == np.count_nonzero(exact.numbers == 34)


@pytest.mark.parametrize(
    ("phase", "fault", "expected_steps"),
    [
        ("wurtzite", False, "alternating"),
        ("wurtzite", True, "alternating, then reversed (I1: ABAB|CBCB)"),
        ("zincblende", False, "constant"),
        ("zincblende", True, "constant but one (ABCAB|ABC)"),
    ],
)
def test_cdse_bilayer_stacking_measured(phase: str, fault: bool, expected_steps: str) -> None:
    atoms = cdse_particle(
        40.0,
        phase=phase,  # type: ignore[arg-type]
        stacking_fault=fault,
        rng=4,
        balance=None,
    )
    frame = _stacking_frame(atoms)
    cd = atoms.numbers == 48
    if phase == "wurtzite":
        spacing, height = 4.2985, 7.0152 / 2
    else:
        spacing, height = 6.077 / math.sqrt(2), 6.077 / math.sqrt(3)
    origin = frame[cd][np.argmin(frame[cd, 2]), :2]
    measured = _measure_stacking(frame[cd], spacing, height, origin)
    # each Se sits one bond straight above a Cd site of its bilayer: moved down by the
    # bond, Se and Cd share every layer's in-plane position (a Se whose Cd was cut off
    # may add a layer below)
    bond = 0.375 * 7.0152 if phase == "wurtzite" else 6.077 * math.sqrt(3) / 4
    both = np.concatenate([frame[cd], frame[~cd] - [0.0, 0.0, bond]])
    combined = _measure_stacking(both, spacing, height, origin)
    assert measured in (combined, combined[1:], combined[:-1], combined[1:-1])
    # info["stacking"] lists every occupied bilayer, Se-only ones included
    assert _relabel(combined) == _relabel(atoms.info["stacking"])
    measured = combined
    s = _steps(measured)
    plane = int(atoms.info["defect_planes"][0]) if fault else len(s)
    if phase == "wurtzite":
        alternating = s[0] * (-1) ** np.arange(len(s))
        expected = np.where(np.arange(len(s)) < plane, alternating, -alternating)
    else:
        expected = np.full(len(s), s[0])
        if fault:
            expected[plane] *= -1
    np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("kind", ["wulff", "decahedron", "icosahedron"])
def test_faceted_particles_have_the_volume_equivalent_size(kind: str) -> None:
    atoms = faceted_particle("Au", kind, 30.0, rng=2)  # type: ignore[arg-type]
    volume_diameter = (6 * len(atoms) * AU_A**3 / 4 / math.pi) ** (1 / 3)
    assert volume_diameter == pytest.approx(30.0, rel=0.05)
    distance, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
    # Wulff: bulk fcc; twinned decahedra and icosahedra are strained a few percent
    tolerance = 1e-6 if kind == "wulff" else 0.06
    np.testing.assert_allclose(np.median(distance[:, 1]), AU_BOND, rtol=tolerance)
    assert np.all(atoms.arrays["label"] == PARTICLE_CODE)
    again = faceted_particle("Au", kind, 30.0, rng=2)  # type: ignore[arg-type]
    other = faceted_particle("Au", kind, 30.0, rng=3)  # type: ignore[arg-type]
    np.testing.assert_array_equal(atoms.positions, again.positions)
    assert not np.allclose(atoms.positions, other.positions)
    with pytest.raises(ValueError, match="kind must be"):
        faceted_particle("Au", "cube", 30.0, rng=0)  # type: ignore[arg-type]


def _periodic_min_distance(a: np.ndarray, b: np.ndarray, extent: tuple[float, float]) -> float:
    z0 = min(a[:, 2].min(), b[:, 2].min())
    box = [extent[0], extent[1], 1e4]
    shift = np.array([0.0, 0.0, -z0])
    distance, _ = cKDTree(a + shift, boxsize=box).query(b + shift)
    return float(distance.min())


@pytest.mark.parametrize("height", [0.0, -3.0])
def test_particle_on_support_clears_the_support_and_wraps(height: float) -> None:
    extent = (40.0, 40.0)
    slab = amorphous_slab(extent, 15.0, roughness=1.5, rng=1)
    particle = spherical_particle("Au", 22.0, rng=2, defect="stacking_fault")
    scene = particle_on_support(particle, slab, rng=3, height=height)
    labels = scene.arrays["label"]
    is_particle = labels == PARTICLE_CODE
    assert np.count_nonzero(is_particle) == len(particle)
    removed = scene.info["removed_support"]
    assert np.count_nonzero(labels == SUPPORT) == len(slab) - removed == len(scene) - len(particle)
    assert removed >= 1 if height == 0.0 else removed > 20
    assert scene.info["defect_counts"] == {PARTICLE_NAME: len(particle)}
    # nothing of the support within 2 Å of the particle, periodic images included
    pos = scene.positions
    assert _periodic_min_distance(pos[is_particle], pos[~is_particle], extent) >= 2.0
    # everything inside the cell in x and y; periodic like the slab
    assert pos[:, :2].min() >= 0.0
    assert np.all(pos[:, :2].max(axis=0) < extent)
    assert list(scene.pbc) == [True, True, False]
    np.testing.assert_allclose(scene.cell.lengths()[:2], extent)
    assert scene.cell.lengths()[2] >= pos[:, 2].max() + 5.0 - 1e-9
    # the particle is intact: its bonds are a/√2 across the wrapped boundary
    box = [extent[0], extent[1], 1e4]
    distance, _ = cKDTree(pos[is_particle], boxsize=box).query(pos[is_particle], k=2)
    np.testing.assert_allclose(distance[:, 1], AU_BOND, rtol=1e-9)
    # its lowest point relative to the local support surface is `height`
    k, phase, amp = slab.info["surface"]
    xy = pos[is_particle, :2]
    top = 15.0 + (amp * np.cos(2 * np.pi * (xy @ k.T) + phase)).sum(-1)
    assert (pos[is_particle, 2] - top).min() == pytest.approx(height)
    # the particle's in-plane position is seeded
    again = particle_on_support(particle, slab, rng=3, height=height)
    np.testing.assert_array_equal(again.positions, scene.positions)
    other = particle_on_support(particle, slab, rng=4, height=height)
    assert not np.allclose(other.info["particle_center"], scene.info["particle_center"])


def test_particle_must_fit_the_support_cell() -> None:
    slab = amorphous_slab((20.0, 20.0), 5.0, rng=0)
    particle = spherical_particle("Au", 22.0, rng=0)
    with pytest.raises(ValueError, match="does not fit"):
        particle_on_support(particle, slab, rng=0)
