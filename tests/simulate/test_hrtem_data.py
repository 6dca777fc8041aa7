"""HRTEM of a dataset spec: exit waves once, fidelity levels, conditions, label map."""

from __future__ import annotations

import numpy as np
import pytest

from hpcbench.simulate.hrtem import clean_image, exit_waves, particle_mask
from hpcbench.simulate.hrtem_data import (
    StructureWaves,
    _needs,
    draw_conditions,
    fidelity_image,
    simulate_structure_waves,
    wrap_crop,
)
from hpcbench.structures import build_structure
from hpcbench.study import HRTEMSimulation, NanoparticleStructure

PIXEL = 0.2


def _spec(**changes: object) -> HRTEMSimulation:
    base: dict[str, object] = {
        "method": "hrtem",
        "sampling": 0.1,
        "slice_thickness": 2.0,
        "frozen_phonons": {"count": 2, "sigmas": 0.1},
        "fidelity": "all",
        "fidelities": ["baseline", "thermal", "aberrations", "plasmons"],
    }
    return HRTEMSimulation.model_validate({**base, **changes})


@pytest.fixture(scope="module")
def structure() -> tuple[object, HRTEMSimulation, StructureWaves]:
    spec = NanoparticleStructure(
        kind="nanoparticle", diameter=12.0, cell=(16.0, 16.0), support_thickness=6.0
    )
    atoms = build_structure(spec, rng=4)
    simulation = _spec()
    waves = simulate_structure_waves(atoms, simulation, pixel_size=PIXEL, seed=11)
    return atoms, simulation, waves


def test_levels_need_one_or_two_multislice_runs() -> None:
    assert _needs(["all"], 8) == (False, True)
    assert _needs(["all", "baseline"], 8) == (True, True)
    assert _needs(["baseline", "plasmons", "aberrations"], 8) == (True, False)
    # one configuration is the static lattice: no second run for "all"
    assert _needs(["all", "baseline"], 1) == (True, False)


def test_structure_waves_are_the_engine_runs_with_one_seed(structure: tuple) -> None:
    atoms, simulation, waves = structure
    assert waves.static is not None and waves.thermal is not None
    assert waves.static.configurations == 1 and waves.thermal.configurations == 2
    common = {"energy": 300e3, "sampling": 0.1, "slice_thickness": 2.0, "sigmas": 0.1}
    static = exit_waves(atoms, frozen_phonons=1, seed=np.random.SeedSequence(11), **common)
    np.testing.assert_array_equal(waves.static.array, static.array)
    # frozen phonons move atoms: the configurations differ from the static lattice
    assert np.abs(waves.thermal.array[0] - static.array[0]).max() > 0.05
    assert waves.thickness == pytest.approx(float(atoms.cell[2, 2]))
    # the label map is particle_mask's: the particle alone, same displacements
    alone = exit_waves(
        atoms,
        frozen_phonons=2,
        seed=np.random.SeedSequence(11),
        select=atoms.arrays["label"] == 16,
        **common,
    )
    mask = particle_mask(alone, pixel_size=PIXEL, threshold=simulation.mask_threshold)
    np.testing.assert_array_equal(waves.phase.array > simulation.mask_threshold, mask)
    assert waves.phase.array.shape == (80, 80)
    # about the projected disk of a 1.2 nm particle (113 Å2 of 256 Å2)
    assert 0.2 < mask.mean() < 0.5


def test_fidelity_levels_switch_their_effect_only(structure: tuple) -> None:
    _, simulation, waves = structure
    conditions = draw_conditions(simulation, np.random.default_rng(3))
    images = {
        level: fidelity_image(waves, simulation, conditions, level, pixel_size=PIXEL).array
        for level in ("baseline", "thermal", "aberrations", "plasmons", "all")
    }
    base = images["baseline"]
    assert base.shape == (80, 80)
    # baseline = the static wave through the lens at focus on the model's centre
    assert waves.static is not None
    expected = clean_image(
        waves.static,
        defocus=waves.thickness / 2 + conditions.defocus,
        Cs=conditions.Cs,
        focal_spread=conditions.focal_spread,
        pixel_size=PIXEL,
    ).array
    np.testing.assert_allclose(base, expected, rtol=0, atol=1e-12)
    # plasmons: the seed-001 contrast reduction of the same image, mean kept
    r = conditions.plasmon
    np.testing.assert_allclose(
        images["plasmons"], (1 - r) * base + r * base.mean(), rtol=0, atol=1e-9
    )
    # every level changes the image, and "all" holds the three effects
    for level in ("thermal", "aberrations", "plasmons", "all"):
        assert np.abs(images[level] - base).max() > 1e-3, level
    assert np.std(images["all"]) < np.std(images["thermal"])  # plasmon loss
    # no residual aberrations drawn: the aberrations level is the baseline
    quiet = _spec(aberrations={"astigmatism": 0.0, "coma": 0.0, "trefoil": 0.0})
    still = draw_conditions(quiet, np.random.default_rng(3))
    np.testing.assert_allclose(
        fidelity_image(waves, quiet, still, "aberrations", pixel_size=PIXEL).array,
        fidelity_image(waves, quiet, still, "baseline", pixel_size=PIXEL).array,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="unknown fidelity"):
        fidelity_image(waves, simulation, conditions, "perfect", pixel_size=PIXEL)


def test_conditions_are_seeded_draws_within_the_spec() -> None:
    spec = _spec(defocus={"min": -50.0, "max": 50.0}, plasmon={"min": 0.1, "max": 0.2})
    first = draw_conditions(spec, np.random.default_rng(5))
    assert first == draw_conditions(spec, np.random.default_rng(5))
    draws = [draw_conditions(spec, np.random.default_rng(seed)) for seed in range(200)]
    defocus = np.array([c.defocus for c in draws])
    assert -50 <= defocus.min() < -40 and 40 < defocus.max() <= 50
    assert all(0.1 <= c.plasmon <= 0.2 and c.focal_spread == 30.0 for c in draws)
    trefoil = np.array([c.aberrations["phi23"] for c in draws])
    assert trefoil.min() >= 0 and trefoil.max() < 2 * np.pi / 3  # 3-fold: 120° covers it
    assert set(first.as_columns()) == {
        "hrtem_defocus",
        "hrtem_Cs",
        "hrtem_C12",
        "hrtem_phi12",
        "hrtem_C21",
        "hrtem_phi21",
        "hrtem_C23",
        "hrtem_phi23",
        "hrtem_focal_spread",
        "hrtem_plasmon",
    }


def test_wrap_crop_reads_the_periodic_image() -> None:
    image = np.arange(30.0).reshape(5, 6)
    crop = wrap_crop(image, (3, 4), (4, 3))
    np.testing.assert_array_equal(crop, np.roll(image, (-3, -4), axis=(0, 1))[:4, :3])
