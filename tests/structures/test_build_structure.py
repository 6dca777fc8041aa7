from __future__ import annotations

import numpy as np
import pytest

from hpcbench.structures import DEFECT_CODES, build_structure, concentration_to_count
from hpcbench.study import GrapheneStructure, Messy, MX2Structure


def mx2_spec(**overrides: object) -> MX2Structure:
    data: dict[str, object] = {
        "formula": "MoS2",
        "supercell": (5, 3),
        "defects": {
            "anion_vacancy": {"count": {"min": 2, "max": 4}},
            "dopant": {"concentration": 0.1},
        },
        "vacancy_arrangement": "pairs",
        "dopants": ["W"],
    }
    return MX2Structure.model_validate(data | overrides)


def test_concentration_to_count() -> None:
    assert concentration_to_count(0.1, 30) == 3
    assert concentration_to_count(0.05, 30) == 2  # 1.5 rounds up, not to even
    assert concentration_to_count(0.0, 30) == 0
    assert concentration_to_count(1.0, 30) == 30
    with pytest.raises(ValueError, match="concentration"):
        concentration_to_count(1.5, 30)


def test_mx2_counts_and_noise() -> None:
    clean = build_structure(mx2_spec(position_noise=0.0), rng=4)
    noisy = build_structure(mx2_spec(), rng=4)
    counts = clean.info["defect_counts"]
    assert 2 <= counts["anion_vacancy"] <= 4
    assert counts["dopant"] == 3  # round(0.1 · 30 metal sites)
    assert list(counts) == ["anion_vacancy", "dopant"]
    assert len(clean) == 90 - counts["anion_vacancy"]
    assert np.count_nonzero(clean.arrays["label"] == DEFECT_CODES["dopant"]) == 3
    assert np.all(clean.symbols[clean.arrays["label"] == DEFECT_CODES["dopant"]] == "W")
    assert clean.info["periodic"] is True and "messy" not in clean.info
    # Noise is the last draw: the same seed gives the same structure plus N(0, 0.01 Å).
    noise = noisy.positions - clean.positions
    assert 0.008 < noise.std() < 0.012 and abs(noise.mean()) < 0.002
    assert np.array_equal(noisy.info["vacancy_sites"], clean.info["vacancy_sites"])


def test_reproducible_from_seed() -> None:
    spec = mx2_spec(messy=Messy())
    first = build_structure(spec, rng=11)
    again = build_structure(spec, rng=np.random.default_rng(11))
    other = build_structure(spec, rng=12)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.arrays["label"], again.arrays["label"])
    assert repr(first.info["messy"]) == repr(again.info["messy"])  # NaN-safe equality
    assert first.positions.shape != other.positions.shape or not np.allclose(
        first.positions, other.positions
    )


def test_messy_spec_applied() -> None:
    spec = mx2_spec(
        messy=Messy(grain_boundary_probability=0.0, rotation=[45.0], beam_damage_probability=0.0)
    )
    atoms = build_structure(spec, rng=0)
    assert atoms.info["periodic"] is False
    assert atoms.info["messy"]["rotation"] == 45.0
    labels = atoms.arrays["label"]
    assert atoms.info["defect_counts"]["dopant"] == np.count_nonzero(
        labels == DEFECT_CODES["dopant"]
    )


def test_graphene_spec() -> None:
    spec = GrapheneStructure.model_validate(
        {
            "kind": "graphene",
            "supercell": (4, 3),
            "position_noise": 0.0,
            "defects": {
                "carbon_vacancy": {"count": 2},
                "silicon_threefold": {"count": [1]},
                "silicon_fourfold": {"concentration": 0.05},
            },
        }
    )
    atoms = build_structure(spec, rng=1)
    assert atoms.info["defect_counts"] == {
        "carbon_vacancy": 2,
        "silicon_threefold": 1,
        "silicon_fourfold": 2,  # round(0.05 · 48) = 2
    }
    assert len(atoms) == 48 - 2 - 2 * 2 + 2
    assert atoms.get_chemical_formula() == "C41Si3"


def test_too_many_defects() -> None:
    spec = mx2_spec(defects={"metal_vacancy": {"count": 31}})
    with pytest.raises(ValueError, match=r"cannot place 31 metal_vacancy .* 30 free") as info:
        build_structure(spec, rng=0)
    assert "\n" not in str(info.value)


def test_nanoparticle_specs_draw_material_shape_size_and_support() -> None:
    from hpcbench.study import NanoparticleStructure

    spec = NanoparticleStructure(
        kind="nanoparticle",
        material=["Au", "CdSe"],
        shape=["sphere", "icosahedron"],
        diameter={"min": 12.0, "max": 16.0},  # type: ignore[arg-type]
        planar_defects=1,
        cell=(24.0, 24.0),
        support_thickness={"min": 6.0, "max": 10.0},  # type: ignore[arg-type]
    )
    seen = set()
    for seed in range(12):
        atoms = build_structure(spec, rng=seed)
        info = atoms.info
        particle = atoms.arrays["label"] == 16
        support = atoms.arrays["label"] == 15
        assert particle.sum() > 20 and (particle | support).all()
        assert 12.0 <= info["diameter"] <= 16.0 and 6.0 <= info["support_thickness"] <= 10.0
        symbols = set(np.asarray(atoms.get_chemical_symbols())[particle])
        assert symbols == ({"Cd", "Se"} if info["material"] == "CdSe" else {"Au"})
        assert set(np.asarray(atoms.get_chemical_symbols())[support]) == {"C"}
        # the particle sits on the support: its lowest atom near the local top surface
        assert atoms.positions[particle, 2].min() > atoms.positions[support, 2].min() + 4.0
        if info["material"] == "CdSe":
            assert info["shape"] == "sphere" and info["planar_defect"] == "stacking_fault"
        elif info["shape"] == "sphere":
            assert info["planar_defect"] in ("twin", "stacking_fault")
        else:
            assert info["planar_defect"] == "none" and info["planar_defects"] == 0
        seen.add((info["material"], info["shape"]))
        again = build_structure(spec, rng=seed)
        np.testing.assert_array_equal(again.positions, atoms.positions)
    assert ("Au", "sphere") in seen and ("CdSe", "sphere") in seen and len(seen) >= 3
