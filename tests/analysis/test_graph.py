from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from hpcbench.analysis import (
    CLASS_OF_LABEL,
    DEFECT_CLASSES,
    VACANCY,
    AtomSites,
    Defect,
    DefectAnalysis,
    classify_defects,
    sites_from_atoms,
)
from hpcbench.defects import DEFECT_CODES
from hpcbench.structures import build_structure, graphene
from hpcbench.study.data import GrapheneStructure

A = 2.46  # graphene lattice constant [Å]
BOND = float(A / np.sqrt(3.0))  # C-C bond [Å], 1.42
FOURFOLD = float(np.sqrt(7.0) / 2.0 * BOND)  # Si-C of the builder's 4-fold Si [Å], 1.878
THREEFOLD_CODE = DEFECT_CODES["silicon_threefold"]
FOURFOLD_CODE = DEFECT_CODES["silicon_fourfold"]
VACANCY_CODE = DEFECT_CODES["carbon_vacancy"]


def honeycomb(nx: int = 4, ny: int = 3) -> np.ndarray:
    """An open (non-periodic) graphene patch [Å], written out by hand."""
    h = A * np.sqrt(3.0)
    basis = np.array([[0.0, 0.0], [0.0, BOND], [A / 2, h / 2], [A / 2, h / 2 + BOND]])
    cells = np.array([[ix * A, iy * h] for ix in range(nx) for iy in range(ny)])
    out: np.ndarray = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 2)
    return out


def centre_and_neighbours(xy: np.ndarray) -> tuple[int, list[int]]:
    """The atom nearest the patch centre and its three bonded neighbours (by azimuth)."""
    centre = int(np.argmin(np.linalg.norm(xy - xy.mean(axis=0), axis=1)))
    d = np.linalg.norm(xy - xy[centre], axis=1)
    near = [int(k) for k in np.flatnonzero(np.isclose(d, BOND))]
    assert len(near) == 3
    delta = xy[near] - xy[centre]
    return centre, [near[k] for k in np.argsort(np.arctan2(delta[:, 1], delta[:, 0]))]


def only_defect(result: DefectAnalysis) -> Defect:
    assert len(result.defects) == 1, [d.defect_class for d in result.defects]
    return result.defects[0]


# --- hand-built coordinates ------------------------------------------------------------


def test_perfect_hexagon_patch_has_no_defects() -> None:
    xy = honeycomb()
    result = classify_defects(xy, ["C"] * len(xy))
    assert result.defects == ()
    assert np.allclose(result.bond_lengths, BOND)
    coordination = result.coordination()
    assert coordination.max() == 3 and coordination.min() >= 1
    # Each interior hexagon has 6 bonds, the patch as a whole (nx=4, ny=3): 3·48/2 minus
    # the dangling bonds at the open edges; count them exactly from the coordination.
    assert len(result.bonds) == coordination.sum() // 2
    interior = np.flatnonzero(coordination == 3)
    assert len(interior) >= 20
    for index in interior:
        geometry = result.geometry(int(index))
        assert geometry.bond_lengths_pm == pytest.approx([100 * BOND] * 3, abs=1e-9)
        assert geometry.bond_angles_deg == pytest.approx([120.0] * 3, abs=1e-9)
    assert all(v == 0 for v in result.class_counts().values())


def test_periodic_sheet_every_carbon_threefold() -> None:
    # The builder's pristine sheet, periodic: no edges, so every C has exactly 3 bonds.
    sites = sites_from_atoms(graphene(supercell=(3, 2)))
    result = classify_defects(sites)
    assert np.all(result.coordination() == 3)
    assert len(result.bonds) == 3 * len(sites) // 2 and result.defects == ()


def test_threefold_si_at_seed_004_apparent_length() -> None:
    xy = honeycomb()
    si, neighbours = centre_and_neighbours(xy)
    # Seed 004: apparent d(Si-C) ≈ 150 pm, C-Si-C ≈ 120° (push the three C out radially).
    for k in neighbours:
        xy[k] = xy[si] + (xy[k] - xy[si]) * 1.50 / BOND
    species = ["C"] * len(xy)
    species[si] = "Si"
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "silicon_threefold"
    assert defect.foreign == (si,) and defect.vacancies == ()
    (geometry,) = defect.geometry
    assert geometry.coordination == 3 and set(geometry.neighbours) == set(neighbours)
    assert geometry.bond_lengths_pm == pytest.approx([150.0] * 3, abs=1e-6)
    assert geometry.bond_angles_deg == pytest.approx([120.0] * 3, abs=1e-6)
    assert set(defect.members) == {si, *neighbours}
    assert defect.centre == pytest.approx(tuple(xy[si]), abs=1e-9)


def test_threefold_si_from_pixels_matches_angstrom() -> None:
    xy = honeycomb()
    si, _ = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[si] = "Si"
    in_angstrom = classify_defects(xy, species)
    in_pixels = classify_defects(xy / 0.125, species, pixel_size=0.125)
    assert np.array_equal(in_pixels.bonds, in_angstrom.bonds)
    (a,), (b,) = in_angstrom.defects, in_pixels.defects
    assert a.defect_class == b.defect_class == "silicon_threefold"
    assert b.geometry[0].bond_lengths_pm == pytest.approx([100 * BOND] * 3, abs=1e-9)
    assert b.centre == pytest.approx(a.centre, abs=1e-9)


def test_fourfold_si_builder_geometry() -> None:
    # The builder's 4-fold Si: two bonded C removed, Si at their midpoint.
    xy = honeycomb()
    first, _ = centre_and_neighbours(xy)
    d = np.linalg.norm(xy - xy[first], axis=1)
    second = int(np.flatnonzero(np.isclose(d, BOND) & np.isclose(xy[:, 0], xy[first, 0]))[0])
    midpoint = (xy[first] + xy[second]) / 2
    keep = [k for k in range(len(xy)) if k not in (first, second)]
    xy = np.vstack([xy[keep], midpoint])
    species = ["C"] * (len(xy) - 1) + ["Si"]
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "silicon_fourfold"
    (geometry,) = defect.geometry
    assert geometry.coordination == 4
    assert geometry.bond_lengths_pm == pytest.approx([100 * FOURFOLD] * 4, abs=1e-6)
    narrow = np.degrees(2 * np.arctan(np.sqrt(3.0) / 2))  # 81.8°
    assert sorted(geometry.bond_angles_deg) == pytest.approx(
        [narrow, narrow, 180 - narrow, 180 - narrow], abs=1e-6
    )
    assert np.mean(geometry.bond_angles_deg) == pytest.approx(90.0)
    assert defect.centre == pytest.approx(tuple(midpoint), abs=1e-9)


def test_fourfold_si_at_seed_004_apparent_geometry() -> None:
    # Seed 004: d(Si-C) ≈ 172 pm and C-Si-C ≈ 90°.
    azimuth = np.radians([45.0, 135.0, 225.0, 315.0])
    xy = np.vstack([[0.0, 0.0], 1.72 * np.stack([np.cos(azimuth), np.sin(azimuth)], axis=1)])
    defect = only_defect(classify_defects(xy, ["Si", "C", "C", "C", "C"]))
    assert defect.defect_class == "silicon_fourfold"
    assert defect.geometry[0].bond_lengths_pm == pytest.approx([172.0] * 4, abs=1e-6)
    assert defect.geometry[0].bond_angles_deg == pytest.approx([90.0] * 4, abs=1e-6)


def test_si_next_to_vacancy() -> None:
    xy = honeycomb()
    si, neighbours = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[si] = "Si"
    species[neighbours[0]] = VACANCY
    result = classify_defects(xy, species)
    defect = only_defect(result)
    assert defect.defect_class == "silicon_vacancy"
    assert defect.foreign == (si,) and defect.vacancies == (neighbours[0],)
    (geometry,) = defect.geometry
    assert geometry.coordination == 2 and set(geometry.neighbours) == set(neighbours[1:])
    assert geometry.bond_lengths_pm == pytest.approx([100 * BOND] * 2, abs=1e-6)
    assert sorted(geometry.bond_angles_deg) == pytest.approx([120.0, 240.0], abs=1e-6)
    assert result.coordination()[neighbours[0]] == 0  # a vacancy is never bonded


def test_lone_vacancy_and_divacancy() -> None:
    xy = honeycomb()
    centre, neighbours = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[centre] = VACANCY
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "vacancy"
    assert defect.vacancies == (centre,) and defect.foreign == () and defect.geometry == ()
    assert set(defect.members) == {centre, *neighbours}  # the three edge C
    assert defect.centre == pytest.approx(tuple(xy[centre]), abs=1e-9)

    species[neighbours[1]] = VACANCY  # two neighbouring vacancies: one defect
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "vacancy"
    assert defect.vacancies == tuple(sorted((centre, neighbours[1])))


def test_si_dimer_and_cluster() -> None:
    xy = honeycomb()
    si, neighbours = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[si] = species[neighbours[0]] = "Si"
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "silicon_dimer"
    assert defect.foreign == tuple(sorted((si, neighbours[0])))
    for geometry in defect.geometry:
        assert geometry.coordination == 3  # two C and the other Si
        assert geometry.bond_lengths_pm == pytest.approx([100 * BOND] * 3, abs=1e-6)

    species[neighbours[1]] = "Si"
    defect = only_defect(classify_defects(xy, species))
    assert defect.defect_class == "cluster" and len(defect.foreign) == 3


def test_second_neighbours_stay_separate_defects() -> None:
    # At 2.46 Å (the second shell) nothing joins: a Si and a vacancy, and two Si that
    # share a C neighbour, are separate defects (the shared C is an edge atom of both).
    xy = honeycomb()
    si, neighbours = centre_and_neighbours(xy)
    d = np.linalg.norm(xy - xy[si], axis=1)
    second = [int(k) for k in np.flatnonzero(np.isclose(d, A))]
    species = ["C"] * len(xy)
    species[si] = "Si"
    species[second[0]] = VACANCY
    result = classify_defects(xy, species)
    assert sorted(x.defect_class for x in result.defects) == ["silicon_threefold", "vacancy"]

    species[second[0]] = "Si"
    result = classify_defects(xy, species)
    assert [x.defect_class for x in result.defects] == ["silicon_threefold"] * 2
    shared = set(result.defects[0].members) & set(result.defects[1].members)
    assert len(shared) == 1 and shared <= set(neighbours)


def test_bond_pruning_keeps_shortest_and_overrides() -> None:
    # A C with four C neighbours within the (overridden) maximum keeps its 3 shortest.
    radii = [1.30, 1.40, 1.50, 1.60]
    azimuth = np.radians([0.0, 90.0, 180.0, 270.0])
    xy = np.vstack([[0.0, 0.0], np.stack([radii * np.cos(azimuth), radii * np.sin(azimuth)], 1)])
    result = classify_defects(xy, ["C"] * 5, max_length={("C", "C"): 1.7})
    assert result.geometry(0).bond_lengths_pm == pytest.approx([130.0, 140.0, 150.0])
    assert result.coordination().tolist() == [3, 1, 1, 1, 0]
    # With 2 bonds allowed per C, only the two shortest remain.
    result = classify_defects(xy, ["C"] * 5, max_length={("C", "C"): 1.7}, max_bonds={"C": 2})
    assert result.coordination().tolist() == [2, 1, 1, 0, 0]
    # The default table (C-C 1.94 Å) also bonds the neighbours to each other (1.91 Å).
    assert classify_defects(xy, ["C"] * 5).coordination()[0] == 3


def test_periodic_boundary() -> None:
    # The builder's atom 0 sits at the cell corner: its bonds cross the boundary.
    atoms = graphene(supercell=(3, 2))
    atoms.symbols[0] = "Si"
    sites = sites_from_atoms(atoms)
    defect = only_defect(classify_defects(sites))
    assert defect.defect_class == "silicon_threefold"
    assert defect.geometry[0].bond_lengths_pm == pytest.approx([100 * BOND] * 3, abs=1e-6)
    assert sites.cell is not None
    assert 0 <= defect.centre[0] < sites.cell[0] and 0 <= defect.centre[1] < sites.cell[1]
    # Without the cell the corner Si sees one neighbour only.
    open_patch = classify_defects(sites.positions, sites.species)
    assert open_patch.defects[0].defect_class == "unknown"
    assert open_patch.defects[0].geometry[0].coordination == 1


def test_foreign_species_with_table_entry_is_unknown_class() -> None:
    xy = honeycomb()
    si, _ = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[si] = "N"
    result = classify_defects(
        xy, species, max_bonds={"N": 3}, max_length={("N", "C"): 1.6, ("N", "N"): 1.6}
    )
    assert only_defect(result).defect_class == "unknown"
    assert result.geometry(si).coordination == 3


def test_to_table_rows_write_as_csv() -> None:
    xy = honeycomb()
    si, neighbours = centre_and_neighbours(xy)
    species = ["C"] * len(xy)
    species[si] = "Si"
    species[neighbours[2]] = VACANCY
    rows = classify_defects(xy, species).to_table()
    assert len(rows) == 1
    row = rows[0]
    assert row["class"] == "silicon_vacancy" and row["coordination"] == "2"
    assert row["n_vacancies"] == 1 and row["n_foreign"] == 1 and row["species"] == "Si"
    assert row["bond_lengths_pm"] == "142.0;142.0"
    assert row["mean_bond_length_pm"] == pytest.approx(100 * BOND)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerows(rows)
    assert out.getvalue().splitlines()[0].startswith("defect,class,x_A,y_A")


# --- bad input --------------------------------------------------------------------------


def test_bad_input_raises() -> None:
    xy = honeycomb(2, 2)
    species = ["C"] * len(xy)
    with pytest.raises(ValueError, match="species has 15 entries but positions has 16 rows"):
        classify_defects(xy, species[:-1])
    with pytest.raises(ValueError, match="no bond-table entry for species 'N'"):
        classify_defects(xy, ["N", *species[1:]])
    with pytest.raises(ValueError, match="no maximum bond length for species pair"):
        classify_defects(xy, ["N", *species[1:]], max_bonds={"N": 3})
    bad = xy.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite: 1 row"):
        classify_defects(bad, species)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        classify_defects(np.zeros((4, 3)), ["C"] * 4)
    with pytest.raises(ValueError, match="pixel_size"):
        classify_defects(xy, species, pixel_size=0.0)
    with pytest.raises(ValueError, match="twice the longest bond"):
        classify_defects(xy, species, cell=(3.0, 30.0))
    with pytest.raises(ValueError, match="species is required"):
        classify_defects(xy)
    with pytest.raises(ValueError, match="max_bonds"):
        classify_defects(xy, species, max_bonds={"C": -1})


# --- ground truth from the builders -----------------------------------------------------

# Periodic distances: sites_from_atoms passes the builder's cell, and the analysis uses
# a periodic cKDTree (boxsize) and the minimum image, so defects at the cell edge count
# like any other (see test_periodic_boundary for what an open patch would do instead).
SPEC = {
    "kind": "graphene",
    "supercell": (8, 5),
    "defects": {
        "silicon_threefold": {"count": 2},
        "silicon_fourfold": {"count": 1},
        "carbon_vacancy": {"count": 1},
    },
}
SEEDS = range(100)
MARGIN = 0.3  # [Å] around the builder's nominal shells; the next shell is ≥ 0.58 Å away


def builder_defects(sites: AtomSites) -> list[tuple[frozenset[int], str]]:
    """The defects the builder made, with their classes, from labels and nominal shells.

    Independent of the classifier's table: a Si labelled 3-fold has its first shell at
    1.42 Å, one labelled 4-fold at 1.878 Å (the builder's construction). The builder
    places defects on random distinct sites, so it sometimes puts a vacancy on a Si's
    neighbour site (a Si-vacancy complex, seed 004 Fig. 6f) or two Si within a first
    shell (a dimer): those overlaps are what the builder made, and are expected as such.
    """
    assert sites.labels is not None
    labels = sites.labels
    si = [int(k) for k in np.flatnonzero(np.isin(labels, [THREEFOLD_CODE, FOURFOLD_CODE]))]
    vac = [int(k) for k in np.flatnonzero(np.array(sites.species) == VACANCY)]
    assert all(labels[k] == VACANCY_CODE for k in vac)
    box = np.array(sites.cell)

    def dist(p: int, q: int) -> float:
        delta = sites.positions[p] - sites.positions[q]
        return float(np.linalg.norm(delta - box * np.rint(delta / box)))

    def shell(k: int) -> float:
        return FOURFOLD if labels[k] == FOURFOLD_CODE else BOND

    nodes = si + vac
    parent = {k: k for k in nodes}

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    bonded_si: set[frozenset[int]] = set()
    for x, p in enumerate(nodes):
        for q in nodes[x + 1 :]:
            if p in si and q in si:
                near = dist(p, q) <= max(shell(p), shell(q)) + MARGIN
                if near:
                    bonded_si.add(frozenset((p, q)))
            elif p in si or q in si:
                near = dist(p, q) <= shell(p if p in si else q) + MARGIN
            else:
                near = dist(p, q) <= BOND + MARGIN
            if near:
                parent[root(p)] = root(q)
    groups: dict[int, set[int]] = {}
    for k in nodes:
        groups.setdefault(root(k), set()).add(k)
    out: list[tuple[frozenset[int], str]] = []
    for group in groups.values():
        dopants = sorted(group & set(si))
        if not dopants:
            expected = "vacancy"
        elif len(dopants) >= 3:
            expected = "cluster"
        elif len(dopants) == 2:
            expected = "silicon_dimer" if frozenset(dopants) in bonded_si else "unknown"
        elif len(group) > 1:
            expected = "silicon_vacancy"
        else:
            expected = CLASS_OF_LABEL[int(labels[dopants[0]])]
        out.append((frozenset(group), expected))
    return out


def test_builder_ground_truth_classes() -> None:
    spec = GrapheneStructure.model_validate(SPEC)
    total = correct = overlaps = nodes = 0
    confusion: dict[tuple[str, str], int] = {}
    for seed in SEEDS:
        sites = sites_from_atoms(build_structure(spec, rng=seed))
        result = classify_defects(sites)
        found = {frozenset(d.foreign + d.vacancies): d.defect_class for d in result.defects}
        expected = builder_defects(sites)
        assert len(found) == len(expected)
        for group, name in expected:
            total += 1
            nodes += len(group)
            overlaps += len(group) > 1
            got = found.get(group, "missing")
            confusion[(name, got)] = confusion.get((name, got), 0) + 1
            correct += got == name
    # Every placed Si and vacancy (4 a structure) is in exactly one expected defect; at
    # seeds 0-99 the builder made 384 defects, 16 of them overlaps (Si-vacancy, dimers).
    assert nodes == 4 * len(SEEDS)
    assert overlaps >= 5  # the builder's overlaps are exercised, not avoided
    assert correct / total >= 0.99, confusion
    assert {name for name, _ in confusion} <= set(DEFECT_CLASSES)


def _nominal_pm(sites: AtomSites, p: int, q: int) -> float:
    """The builder's Si bond [pm]: 187.8 if either end is a 4-fold Si, else 142.0."""
    assert sites.labels is not None
    fourfold = FOURFOLD_CODE in (sites.labels[p], sites.labels[q])
    return 100 * (FOURFOLD if fourfold else BOND)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_builder_ground_truth_bond_lengths(noise: float) -> None:
    # The builder adds Gaussian noise of std `position_noise` (default 0.01 Å) to x, y, z;
    # a projected bond then deviates from the nominal geometry by N(0, 1.41 pm). So:
    # noise-free, every Si bond is nominal to 1e-6 pm; with the default noise, the mean
    # bond of each defect is within 5 pm (std 0.7-0.8 pm) and the rms per bond is the
    # noise's 1.41 pm (measured max per bond 4.9 pm over ~990 bonds).
    spec = GrapheneStructure.model_validate({**SPEC, "position_noise": noise})
    errors: list[float] = []
    for seed in SEEDS:
        sites = sites_from_atoms(build_structure(spec, rng=seed))
        for defect in classify_defects(sites).defects:
            per_defect = [
                length - _nominal_pm(sites, g.index, nb)
                for g in defect.geometry
                for nb, length in zip(g.neighbours, g.bond_lengths_pm, strict=True)
            ]
            if per_defect:
                assert abs(np.mean(per_defect)) < 5.0
            errors += per_defect
    errors_pm = np.abs(errors)
    assert len(errors_pm) >= 900
    if noise == 0.0:
        assert errors_pm.max() < 1e-6
    else:
        rms = float(np.sqrt(np.mean(errors_pm**2)))
        assert 100 * noise * np.sqrt(2) * 0.8 < rms < 100 * noise * np.sqrt(2) * 1.2
