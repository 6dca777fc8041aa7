from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from hpcbench.structures import DEFECT_CODES, add_graphene_defects, graphene, graphene_site_count

SQRT3 = np.sqrt(3.0)


def distances(atoms: Atoms, points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Minimum-image 3-D distances [Å] (periodic in x, y)."""
    lengths = atoms.cell.lengths()[:2]
    delta = points[:, None, :] - others[None, :, :]
    delta[..., :2] -= lengths * np.rint(delta[..., :2] / lengths)
    return np.linalg.norm(delta, axis=-1)


@pytest.fixture(scope="module")
def sheet() -> Atoms:
    return graphene(supercell=(4, 3))


def test_lattice(sheet: Atoms) -> None:
    assert len(sheet) == 48 and set(sheet.symbols) == {"C"}
    assert np.allclose(np.asarray(sheet.cell[:]), np.diag([4 * 2.46, 3 * 2.46 * SQRT3, 10.0]))
    d = distances(sheet, sheet.positions, sheet.positions)
    np.fill_diagonal(d, np.inf)
    bond = 2.46 / SQRT3
    assert np.allclose(d.min(axis=1), bond)
    assert np.all(np.sum(np.isclose(d, bond), axis=1) == 3)  # threefold coordination
    assert np.all(np.sum(np.isclose(d, 2.46), axis=1) == 6)  # second shell at a
    assert sheet.info["periodic"] is True and np.all(sheet.arrays["label"] == 0)
    assert graphene_site_count(sheet, "carbon_vacancy") == 48


def test_vacancies_and_threefold_si(sheet: Atoms) -> None:
    out = add_graphene_defects(sheet, {"carbon_vacancy": 3, "silicon_threefold": 2}, rng=0)
    assert len(out) == 45
    assert out.get_chemical_formula() == "C43Si2"
    si = np.flatnonzero(out.arrays["label"] == DEFECT_CODES["silicon_threefold"])
    assert np.all(out.symbols[si] == "Si") and len(si) == 2
    assert np.count_nonzero(out.arrays["label"]) == 2
    # Si exactly on a lattice site, vacancy sites exactly on removed ones.
    assert np.allclose(distances(out, out.positions[si], sheet.positions).min(axis=1), 0.0)
    sites = out.info["vacancy_sites"]
    assert np.all(out.info["vacancy_labels"] == DEFECT_CODES["carbon_vacancy"])
    assert np.allclose(distances(out, sites, sheet.positions).min(axis=1), 0.0)
    assert np.all(distances(out, sites, out.positions).min(axis=1) > 1.0)  # really empty
    assert out.info["defect_counts"] == {"carbon_vacancy": 3, "silicon_threefold": 2}


def test_fourfold_si_geometry(sheet: Atoms) -> None:
    out = add_graphene_defects(sheet, {"silicon_fourfold": 2}, rng=3)
    assert len(out) == 48 - 2 * 2 + 2
    si = np.flatnonzero(out.arrays["label"] == DEFECT_CODES["silicon_fourfold"])
    assert np.all(out.symbols[si] == "Si") and len(si) == 2
    assert len(out.info["vacancy_sites"]) == 0  # the Si marks the divacancy
    carbon = out.positions[out.symbols == "C"]
    d = np.sort(distances(out, out.positions[si], carbon), axis=1)
    # Planar divacancy: four C at √7/2 · a/√3 = 1.879 Å from the bond midpoint.
    expected = np.sqrt(7) / 2 * 2.46 / SQRT3
    assert np.allclose(d[:, :4], expected)
    assert np.all((d[:, :4] > 1.7) & (d[:, :4] < 1.9))
    assert np.all(d[:, 4] > 2.4)
    # The Si sits at the midpoint of a removed C-C bond (a/(2√3) from two lattice sites).
    to_lattice = np.sort(distances(out, out.positions[si], sheet.positions), axis=1)
    assert np.allclose(to_lattice[:, :2], 2.46 / SQRT3 / 2)


def test_reproducible_and_seed_dependent(sheet: Atoms) -> None:
    counts = {"carbon_vacancy": 2, "silicon_fourfold": 1}
    first = add_graphene_defects(sheet, counts, rng=5)
    again = add_graphene_defects(sheet, counts, rng=5)
    other = add_graphene_defects(sheet, counts, rng=6)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.info["vacancy_sites"], again.info["vacancy_sites"])
    assert not np.array_equal(first.positions, other.positions)


def test_distinct_sites_and_errors(sheet: Atoms) -> None:
    out = add_graphene_defects(
        sheet, {"carbon_vacancy": 20, "silicon_threefold": 12, "silicon_fourfold": 8}, rng=1
    )
    assert len(out) == 48 - 20 - 16 + 8
    # Every carbon site used exactly once: only the 20 Si remain, all labelled.
    assert out.get_chemical_formula() == "Si20"
    assert np.count_nonzero(out.arrays["label"]) == 20
    assert len(out.info["vacancy_sites"]) == 20
    with pytest.raises(ValueError, match="cannot place 49 carbon_vacancy") as info:
        add_graphene_defects(sheet, {"carbon_vacancy": 49})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown defect"):
        add_graphene_defects(sheet, {"dopant": 1})
