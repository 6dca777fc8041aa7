from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms

from hpcbench.structures import DEFECT_CODES, MX2_DEFECTS, MX2_PARAMETERS, add_mx2_defects, mx2
from hpcbench.structures.mx2 import mx2_site_count

SQRT3 = np.sqrt(3.0)


def xy_distances(atoms: Atoms, points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Minimum-image in-plane distances between two point sets [Å]."""
    lengths = atoms.cell.lengths()[:2]
    delta = points[:, None, :2] - others[None, :, :2]
    delta -= lengths * np.rint(delta / lengths)
    return np.linalg.norm(delta, axis=-1)


def lattice_match(pristine: Atoms, points: np.ndarray) -> np.ndarray:
    """Index of the pristine atom at each point (3-D), asserting an exact match."""
    distance = np.linalg.norm(points[:, None, :] - pristine.positions[None], axis=-1)
    assert np.allclose(distance.min(axis=1), 0.0, atol=1e-9)
    return distance.argmin(axis=1)


@pytest.mark.parametrize(
    ("formula", "phase"), list(itertools.product(MX2_PARAMETERS, ["2H", "1T"]))
)
def test_all_formulas_build(formula: str, phase: str) -> None:
    atoms = mx2(formula, phase=phase, supercell=(2, 1))  # type: ignore[arg-type]
    a, thickness = MX2_PARAMETERS[formula]
    assert len(atoms) == 12
    assert atoms.get_chemical_formula(mode="metal", empirical=True) == formula
    assert np.allclose(atoms.cell.lengths()[:2], [2 * a, a * SQRT3])
    metal = atoms.positions[atoms.numbers == atoms.numbers[0]]
    anion_z = np.unique(np.round(atoms.positions[atoms.numbers != atoms.numbers[0], 2], 9))
    assert np.allclose(np.diff(anion_z), thickness)
    assert np.allclose(anion_z.mean(), metal[0, 2])


@pytest.mark.parametrize("phase", ["2H", "1T"])
def test_orthogonal_cell_spacing_and_counts(phase: str) -> None:
    atoms = mx2("MoS2", phase=phase, a=3.2, supercell=(4, 3), vacuum=6.0)  # type: ignore[arg-type]
    assert len(atoms) == 6 * 4 * 3
    assert atoms.get_chemical_formula() == "Mo24S48"
    cell = np.asarray(atoms.cell[:])
    assert np.allclose(cell, np.diag([4 * 3.2, 3 * 3.2 * SQRT3, 3.17 + 12.0]))
    assert list(atoms.pbc) == [True, True, False]
    assert np.all(atoms.arrays["label"] == 0) and atoms.arrays["label"].dtype == np.int64
    assert atoms.info["periodic"] is True
    assert atoms.info["vacancy_sites"].shape == (0, 3)
    metal = atoms.positions[atoms.symbols == "Mo"]
    d = xy_distances(atoms, metal, metal)
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(axis=1), 3.2)  # nearest-neighbour M-M == a
    assert np.all(np.sum(np.isclose(d, 3.2), axis=1) == 6)  # triangular lattice
    # Everything inside [0, L) in x and y.
    assert np.all(atoms.positions[:, :2] >= 0)
    assert np.all(atoms.positions[:, :2] < atoms.cell.lengths()[:2])


def test_2h_and_1t_stacking() -> None:
    for phase, coincide in (("2H", True), ("1T", False)):
        atoms = mx2("WSe2", phase=phase, supercell=(2, 2))  # type: ignore[arg-type]
        se = atoms.positions[atoms.symbols == "Se"]
        z_mid = atoms.positions[atoms.symbols == "W", 2][0]
        top, bottom = se[se[:, 2] > z_mid], se[se[:, 2] < z_mid]
        nearest = xy_distances(atoms, top, bottom).min(axis=1)
        # 2H: each top anion sits exactly above a bottom one; 1T: offset by a/√3.
        expected = 0.0 if coincide else 3.28 / SQRT3
        assert np.allclose(nearest, expected, atol=1e-9)


def test_a_overrides_table() -> None:
    assert np.isclose(mx2("WSe2", supercell=(1, 1)).cell[0, 0], 3.28)
    assert np.isclose(mx2("WSe2", a=3.3, supercell=(1, 1)).cell[0, 0], 3.3)
    with pytest.raises(ValueError, match="not MX2"):
        mx2("MoO2")


def label_consistency(atoms: Atoms, code: int, n: int) -> np.ndarray:
    labels = atoms.arrays["label"]
    assert len(labels) == len(atoms)
    assert set(np.unique(labels)) <= {0, code}
    assert np.count_nonzero(labels == code) == n
    return np.flatnonzero(labels == code)


@pytest.fixture(scope="module")
def pristine() -> Atoms:
    return mx2("WSe2", supercell=(4, 3))


def test_anion_vacancy(pristine: Atoms) -> None:
    out = add_mx2_defects(pristine, {"anion_vacancy": 5}, rng=1)
    assert len(out) == len(pristine) - 5
    assert out.get_chemical_formula() == "Se43W24"
    label_consistency(out, 1, 0)
    sites = out.info["vacancy_sites"]
    assert np.all(out.info["vacancy_labels"] == DEFECT_CODES["anion_vacancy"])
    removed = lattice_match(pristine, sites)
    assert np.all(pristine.symbols[removed] == "Se")
    # The remaining atoms are exactly the pristine ones minus the removed.
    keep = np.setdiff1d(np.arange(len(pristine)), removed)
    assert np.allclose(out.positions, pristine.positions[keep])
    # Distinct columns: no two vacancies share an (x, y).
    assert np.all(xy_distances(out, sites, sites)[np.triu_indices(5, 1)] > 1.0)
    assert out.info["defect_counts"] == {"anion_vacancy": 5}
    assert len(pristine) == 72 and np.all(pristine.arrays["label"] == 0)  # input untouched


@pytest.mark.parametrize(("arrangement", "size"), [("pairs", 2), ("triplets", 3)])
def test_clustered_vacancies(pristine: Atoms, arrangement: str, size: int) -> None:
    n = 2 * size
    out = add_mx2_defects(pristine, {"anion_vacancy": n}, arrangement=arrangement, rng=3)  # type: ignore[arg-type]
    sites = out.info["vacancy_sites"]  # in cluster order
    a = 3.28
    for start in range(0, n, size):
        cluster = sites[start : start + size]
        d = xy_distances(out, cluster, cluster)[np.triu_indices(size, 1)]
        assert np.allclose(d, a)  # neighbouring anion columns, mutually at distance a
    assert np.all(xy_distances(out, sites, sites)[np.triu_indices(n, 1)] > 1.0)


def test_mixed_vacancies_clusters_are_neighbours(pristine: Atoms) -> None:
    out = add_mx2_defects(pristine, {"anion_vacancy": 9}, arrangement="mixed", rng=7)
    assert len(out.info["vacancy_sites"]) == 9
    sites = out.info["vacancy_sites"]
    d = xy_distances(out, sites, sites)
    np.fill_diagonal(d, np.inf)
    assert np.all(d > 1.0)


@pytest.mark.parametrize(
    ("name", "delta", "element", "site"),
    [
        ("metal_vacancy", -1, None, "W"),
        ("metal_antisite", 0, "W", "Se"),
        ("anion_antisite", 0, "Se", "W"),
        ("dopant", 0, "Mo", "W"),
    ],
)
def test_site_defects(
    pristine: Atoms, name: str, delta: int, element: str | None, site: str
) -> None:
    out = add_mx2_defects(pristine, {name: 3}, rng=11)
    code = DEFECT_CODES[name]
    assert len(out) == len(pristine) + 3 * delta
    if element is None:
        label_consistency(out, code, 0)
        removed = lattice_match(pristine, out.info["vacancy_sites"])
        assert np.all(pristine.symbols[removed] == site)
        assert np.all(out.info["vacancy_labels"] == code)
    else:
        labelled = label_consistency(out, code, 3)
        assert np.all(out.symbols[labelled] == element)
        # The new atom sits exactly on a pristine site of the replaced element.
        replaced = lattice_match(pristine, out.positions[labelled])
        assert np.all(pristine.symbols[replaced] == site)
        assert len(out.info["vacancy_sites"]) == 0
    assert out.info["defect_counts"] == {name: 3}


@pytest.mark.parametrize(
    ("name", "element"), [("metal_interstitial", "W"), ("anion_interstitial", "Se")]
)
def test_interstitials_at_hollow_sites(pristine: Atoms, name: str, element: str) -> None:
    out = add_mx2_defects(pristine, {name: 4}, rng=5)
    labelled = label_consistency(out, DEFECT_CODES[name], 4)
    assert len(out) == len(pristine) + 4
    assert np.all(out.symbols[labelled] == element)
    new = out.positions[labelled]
    z_metal = pristine.positions[pristine.symbols == "W", 2][0]
    assert np.allclose(new[:, 2], z_metal)
    # Hexagon centre: a/√3 from three metals and from three anion columns, no atom above.
    a = 3.28
    metals = pristine.positions[pristine.symbols == "W"]
    anions = pristine.positions[pristine.symbols == "Se"]
    assert np.all(np.sum(np.isclose(xy_distances(out, new, metals), a / SQRT3), axis=1) == 3)
    assert np.all(np.sum(np.isclose(xy_distances(out, new, anions), a / SQRT3), axis=1) == 6)
    assert np.all(xy_distances(out, new, pristine.positions).min(axis=1) > 1.0)


def test_adatom_on_top_of_metal(pristine: Atoms) -> None:
    out = add_mx2_defects(pristine, {"adatom": 2}, dopants=["Nb"], rng=2)
    labelled = label_consistency(out, DEFECT_CODES["adatom"], 2)
    assert np.all(out.symbols[labelled] == "Nb")
    metals = pristine.positions[pristine.symbols == "W"]
    assert np.allclose(xy_distances(out, out.positions[labelled], metals).min(axis=1), 0.0)
    z_top = pristine.positions[:, 2].max()
    assert np.allclose(out.positions[labelled, 2], z_top + 3.34 / 2)
    # Its three nearest anions sit at the W-Se bond length sqrt(a²/3 + t²/4).
    bond = np.sqrt(3.28**2 / 3 + 3.34**2 / 4)
    se = pristine.positions[pristine.symbols == "Se"]
    d = np.sort(np.linalg.norm(se[None] - out.positions[labelled][:, None], axis=-1), axis=1)
    assert np.allclose(d[:, :3], bond)


@pytest.mark.parametrize("phase", ["2H", "1T"])
def test_metal_antisite_anion_vacancy(phase: str) -> None:
    pristine = mx2("MoS2", phase=phase, supercell=(4, 3))  # type: ignore[arg-type]
    out = add_mx2_defects(pristine, {"metal_antisite_anion_vacancy": 3}, rng=4)
    code = DEFECT_CODES["metal_antisite_anion_vacancy"]
    labelled = label_consistency(out, code, 3)
    assert len(out) == len(pristine) - 3
    assert out.get_chemical_formula() == "Mo27S42"
    assert np.all(out.symbols[labelled] == "Mo")
    assert np.all(pristine.symbols[lattice_match(pristine, out.positions[labelled])] == "S")
    sites = out.info["vacancy_sites"]
    assert np.all(out.info["vacancy_labels"] == code)
    assert np.all(pristine.symbols[lattice_match(pristine, sites)] == "S")
    # The vacancy is the other anion of the same column (2H) or an adjacent one (1T).
    d = xy_distances(out, out.positions[labelled], sites)
    assert np.allclose(d.min(axis=1), 0.0 if phase == "2H" else 3.16 / SQRT3)
    partner = sites[d.argmin(axis=1)]
    # And the removed anion is in the other plane from the replaced one.
    z_metal = pristine.positions[pristine.symbols == "Mo", 2][0]
    above = out.positions[labelled, 2] > z_metal
    assert np.array_equal(above, partner[:, 2] < z_metal)


def test_all_classes_on_distinct_sites(pristine: Atoms) -> None:
    counts = dict.fromkeys(MX2_DEFECTS, 2) | {"anion_vacancy": 6}
    out = add_mx2_defects(pristine, counts, arrangement="triplets", dopants=["Mo"], rng=9)
    # 72 - 6 V_A - 2 V_M + 2 M_i + 2 A_i + 2 adatoms - 2 (M_2A) = 68
    assert len(out) == 68
    assert out.info["defect_counts"] == counts
    labels = out.arrays["label"]
    for name in MX2_DEFECTS:
        code = DEFECT_CODES[name]
        n_atoms = np.count_nonzero(labels == code)
        n_sites = np.count_nonzero(out.info["vacancy_labels"] == code)
        expected = {
            "anion_vacancy": (0, 6),
            "metal_vacancy": (0, 2),
            "metal_antisite_anion_vacancy": (2, 2),
        }.get(name, (2, 0))
        assert (n_atoms, n_sites) == expected, name
    # Every defect occupies its own projected column.
    centres = np.concatenate(
        [out.positions[labels != 0], out.info["vacancy_sites"][out.info["vacancy_labels"] != 9]]
    )
    d = xy_distances(out, centres, centres)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.0


def test_reproducible(pristine: Atoms) -> None:
    counts = {"anion_vacancy": 4, "dopant": 2, "adatom": 1}
    first = add_mx2_defects(pristine, counts, rng=42)
    again = add_mx2_defects(pristine, counts, rng=np.random.default_rng(42))
    other = add_mx2_defects(pristine, counts, rng=43)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.arrays["label"], again.arrays["label"])
    assert np.array_equal(first.info["vacancy_sites"], again.info["vacancy_sites"])
    assert not np.array_equal(first.info["vacancy_sites"], other.info["vacancy_sites"])


def test_too_many_defects_is_one_line_error(pristine: Atoms) -> None:
    with pytest.raises(ValueError, match=r"cannot place 25 metal_vacancy") as info:
        add_mx2_defects(pristine, {"metal_vacancy": 25})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="only 4 free"):
        add_mx2_defects(pristine, {"dopant": 20, "adatom": 5}, dopants=["Mo"])
    with pytest.raises(ValueError, match="no element other than W"):
        add_mx2_defects(pristine, {"dopant": 1}, dopants=["W"])
    with pytest.raises(ValueError, match="unknown defect"):
        add_mx2_defects(pristine, {"carbon_vacancy": 1})
    with pytest.raises(ValueError, match="defect-free"):
        add_mx2_defects(add_mx2_defects(pristine, {"dopant": 1}), {"dopant": 1})


def test_site_counts() -> None:
    two_h = mx2("MoS2", supercell=(3, 2))
    one_t = mx2("MoS2", phase="1T", supercell=(3, 2))
    assert mx2_site_count(two_h, "anion_vacancy") == 12  # one column per formula unit
    assert mx2_site_count(one_t, "anion_vacancy") == 24
    assert mx2_site_count(two_h, "dopant") == 12
    assert mx2_site_count(two_h, "metal_interstitial") == 12
    # Every anion column can take one vacancy.
    out = add_mx2_defects(two_h, {"anion_vacancy": 12}, rng=0)
    assert out.get_chemical_formula() == "Mo12S12"
