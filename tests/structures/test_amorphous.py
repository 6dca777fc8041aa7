"""Amorphous supports by random sequential insertion, and heavy atoms on them."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES
from hpcbench.simulate.crop import CropGeometry
from hpcbench.simulate.labels import site_table
from hpcbench.structures import amorphous_slab, build_structure, supported_atoms
from hpcbench.study import DatasetSpec, SupportedAtomsStructure

HEAVY = DEFECT_CODES["heavy_atom"]
SUPPORT = DEFECT_CODES["support"]


def _nearest(positions: np.ndarray, extent: tuple[float, float]) -> np.ndarray:
    """Distance of every atom to its nearest neighbour, periodic in x and y [Å]."""
    box = [extent[0], extent[1], 1e4]
    distance, _ = cKDTree(positions, boxsize=box).query(positions, k=2)
    return np.asarray(distance[:, 1])


def test_slab_has_the_density_and_min_distance_across_the_periodic_boundary() -> None:
    slab = amorphous_slab((30.0, 24.0), 25.0, rng=7)
    assert len(slab) == round(0.1103 * 30 * 24 * 25)
    # min distance holds between periodic images too (the boxsize query wraps x, y)
    assert _nearest(slab.positions, (30.0, 24.0)).min() >= 1.4
    assert slab.positions[:, :2].min() >= 0.0
    assert slab.positions[:, 0].max() < 30.0 and slab.positions[:, 1].max() < 24.0
    assert slab.positions[:, 2].min() >= 0.0 and slab.positions[:, 2].max() <= 25.0
    assert set(slab.get_chemical_symbols()) == {"C"}
    assert np.all(slab.arrays["label"] == SUPPORT)
    # uniform in depth: each quarter of the slab holds a quarter of the atoms (±10 %)
    quarters = np.histogram(slab.positions[:, 2], bins=4, range=(0, 25))[0]
    assert np.all(np.abs(quarters / len(slab) - 0.25) < 0.025)


def test_slab_is_a_pure_function_of_the_seed() -> None:
    a = amorphous_slab((20.0, 20.0), 10.0, roughness=2.0, rng=3)
    b = amorphous_slab((20.0, 20.0), 10.0, roughness=2.0, rng=3)
    c = amorphous_slab((20.0, 20.0), 10.0, roughness=2.0, rng=4)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert len(a) != len(c) or not np.array_equal(a.positions, c.positions)


def test_rough_top_surface_keeps_the_mean_thickness() -> None:
    slab = amorphous_slab((60.0, 60.0), 30.0, roughness=4.0, roughness_scale=8.0, rng=11)
    z = slab.positions[:, 2]
    # the top varies: the highest atoms are well above the mean thickness
    assert z.max() > 33.0
    assert abs(len(slab) / (0.1103 * 60 * 60) - 30.0) < 1.5
    assert _nearest(slab.positions, (60.0, 60.0)).min() >= 1.4


def test_slab_rejects_a_density_random_insertion_cannot_reach() -> None:
    with pytest.raises(ValueError, match="jams"):
        amorphous_slab((20.0, 20.0), 10.0, density=0.3, min_distance=1.4)


def test_heavy_atoms_sit_on_either_surface_labelled_and_apart() -> None:
    slab = amorphous_slab((40.0, 40.0), 20.0, rng=1)
    atoms = supported_atoms(
        slab, element="Pt", atoms=6, clusters=2, cluster_size=(4,), separation=8.0, rng=2
    )
    heavy = atoms.arrays["label"] == HEAVY
    assert heavy.sum() == 6 + 2 * 4 == atoms.info["defect_counts"]["heavy_atom"]
    assert set(np.asarray(atoms.get_chemical_symbols())[heavy]) == {"Pt"}
    assert np.count_nonzero(atoms.arrays["label"] == SUPPORT) == len(slab)
    z_support = atoms.positions[~heavy, 2]
    z_heavy = atoms.positions[heavy, 2]
    # every heavy atom is outside the support (2 Å above the top or below the bottom)
    outside = (z_heavy >= z_support.max() - 1.0) | (z_heavy <= z_support.min() - 1.9)
    assert outside.all()
    # clusters are compact: each cluster atom has a heavy neighbour at a bond length
    nearest = _nearest(atoms.positions[heavy], (40.0, 40.0))
    assert np.sort(nearest)[-6:].min() >= 3.0  # isolated atoms stand apart
    assert np.isclose(np.sort(nearest)[:8], 2.75, atol=0.05).all()
    # the slab passed in is untouched
    assert len(slab) == np.count_nonzero(slab.arrays["label"] == SUPPORT)


def test_labels_are_the_heavy_atoms_projected_positions_and_never_the_support() -> None:
    spec = SupportedAtomsStructure(kind="supported_atoms", element="Au", atoms=5, thickness=15.0)
    atoms = build_structure(spec, rng=5)
    geometry = CropGeometry(rotation=0.0, offset=(0.0, 0.0), shape=(96, 96), pixel_size=0.5)
    sites = site_table(atoms, geometry)
    heavy = atoms.positions[atoms.arrays["label"] == HEAVY, :2]
    assert len(sites) == 5  # 48 Å cell at 0.5 Å/px: each atom once, no support column
    assert np.all(sites.code == HEAVY)
    found = (np.stack([sites.x, sites.y], axis=1) * 0.5) % 48.0
    distance, _ = cKDTree(heavy % 48.0, boxsize=48.0).query(found)
    assert distance.max() < 1e-4


def test_schema_checks_elements_counts_and_labels() -> None:
    base = {
        "structure": {"kind": "supported_atoms", "element": "Pt"},
        "simulation": {"method": "incoherent", "energy": 300e3, "sampling": 0.1},
        "labels": {"classes": ["heavy_atom"]},
        "size": 4,
        "images_per_structure": 1,
    }
    DatasetSpec.model_validate(base)
    with pytest.raises(ValidationError, match="'Xx' is not a chemical symbol"):
        DatasetSpec.model_validate(
            {**base, "structure": {"kind": "supported_atoms", "element": "Xx"}}
        )
    with pytest.raises(ValidationError, match="no lattice"):
        DatasetSpec.model_validate({**base, "labels": {"classes": ["heavy_atom"], "lattice": True}})
    with pytest.raises(ValidationError, match="do not exist in a supported_atoms"):
        DatasetSpec.model_validate({**base, "labels": {"classes": ["dopant"]}})
    with pytest.raises(ValidationError, match="jams"):
        DatasetSpec.model_validate(
            {**base, "structure": {"kind": "supported_atoms", "support_density": 0.4}}
        )
