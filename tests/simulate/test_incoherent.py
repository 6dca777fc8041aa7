"""The incoherent model: closed forms, abTEM's probe, and calibration against multislice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms

from hpcbench.simulate._grid import fft_size
from hpcbench.simulate.incoherent import (
    calibrate_gamma,
    default_scale,
    probe_intensity,
    simulate_incoherent,
)
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.simulate.stem import configure_threads, simulate_haadf
from hpcbench.structures.mx2 import mx2
from hpcbench.study import Detector, FrozenPhononSpec, IncoherentSimulation, MultisliceSimulation

# 80 keV, 25 mrad, 40 Å, Cs 4e5 Å; gamma spelled out (textbook 1.7) so tests do not follow
# the schema default.
SEED003 = IncoherentSimulation(method="incoherent", gamma=1.7)
CORRECTED = IncoherentSimulation(method="incoherent", defocus=0.0, Cs=0.0)


def _cell(symbols: str, xy: list[tuple[float, float]], extent: tuple[float, float]) -> Atoms:
    positions = [(x, y, 1.0) for x, y in xy]
    return Atoms(symbols, positions=positions, cell=[extent[0], extent[1], 2.0], pbc=True)


def _wse2() -> Atoms:
    """Monolayer 2H-WSe2 (a = 3.28 Å) in its orthogonal a × a√3 cell, six atoms."""
    return mx2("WSe2", a=3.28, supercell=(1, 1), vacuum=2.0)


def _abtem_probe(spec: IncoherentSimulation, extent: tuple[float, float], gpts: tuple[int, int]):
    import abtem

    probe = abtem.Probe(
        semiangle_cutoff=spec.semiangle_cutoff,
        energy=spec.energy,
        extent=extent,
        gpts=gpts,
        aberrations={"C10": -spec.defocus, "C30": spec.Cs},
    )
    with abtem.config.set({"progress_bar": False}):
        array = probe.build([(0.0, 0.0)]).intensity().compute(scheduler="synchronous").array
    return np.asarray(array, dtype=np.float64).reshape(gpts).T  # abTEM is [x, y]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ------------------------------------------------------------------- closed forms


def test_single_atom_is_the_probe_scaled_by_z_gamma() -> None:
    extent = (10.0, 12.0)
    atoms = _cell("W", [(3.0, 4.8)], extent)  # on pixel (60, 96) at 0.05 Å
    image = simulate_incoherent(atoms, SEED003, scale=2e-3)
    assert image.array.shape == (240, 200)
    assert image.sampling == pytest.approx((0.05, 0.05))
    probe = probe_intensity(SEED003, extent=extent, gpts=(200, 240))
    expected = 2e-3 * 74**1.7 * np.roll(probe, (96, 60), axis=(0, 1))
    assert _pearson(image.array, expected) >= 0.9999
    np.testing.assert_allclose(image.array, expected, rtol=0, atol=1e-12 * expected.max())
    # Pixel-area convention: sum · dx · dy = scale · Z^γ.
    assert image.array.sum() * 0.05 * 0.05 == pytest.approx(2e-3 * 74**1.7, rel=1e-10)
    assert image.metadata["gamma"] == 1.7
    assert image.periodic
    assert image.margin == 0.0


def test_peak_ratio_of_two_elements_is_z_ratio_to_gamma() -> None:
    spec = CORRECTED.model_copy(update={"gamma": 1.4})
    atoms = _cell("WSe", [(5.0, 5.0), (15.0, 15.0)], (20.0, 20.0))
    image = simulate_incoherent(atoms, spec, scale=1.0).array
    w, se = image[100, 100], image[300, 300]
    assert w == pytest.approx(image.max())
    assert w / se == pytest.approx((74 / 34) ** 1.4, rel=2e-3)


def test_half_pixel_shift_moves_centroid_by_half_a_pixel() -> None:
    extent = (8.0, 8.0)
    first = simulate_incoherent(_cell("Mo", [(3.0, 4.0)], extent), CORRECTED, scale=1.0)
    shifted = simulate_incoherent(_cell("Mo", [(3.025, 4.0)], extent), CORRECTED, scale=1.0)
    nx = first.array.shape[1]
    assert first.sampling[0] == pytest.approx(0.05)

    def circular_centroid(image: np.ndarray) -> float:
        # The phase of the first Fourier coefficient along x gives the position exactly.
        profile = image.sum(axis=0)
        coefficient = np.sum(profile * np.exp(-2j * np.pi * np.arange(nx) / nx))
        return float((-np.angle(coefficient) / (2 * np.pi) * nx) % nx)

    assert circular_centroid(first.array) == pytest.approx(60.0, abs=1e-9)
    assert circular_centroid(shifted.array) == pytest.approx(60.5, abs=1e-9)
    # The whole image is the exact half-pixel Fourier shift of the first one.
    ramp = np.exp(-2j * np.pi * np.fft.fftfreq(nx) * 0.5)
    expected = np.fft.ifft(np.fft.fft(first.array, axis=1) * ramp, axis=1).real
    np.testing.assert_allclose(shifted.array, expected, atol=1e-10 * expected.max())


def test_grid_is_smooth_and_no_coarser_than_asked() -> None:
    spec = SEED003.model_copy(update={"sampling": 0.07})
    image = simulate_incoherent(_cell("W", [(1.0, 1.0)], (32.2, 10.3)), spec, scale=1.0)
    ny, nx = image.array.shape
    assert (nx, ny) == (fft_size(math.ceil(32.2 / 0.07)), fft_size(math.ceil(10.3 / 0.07)))
    assert max(image.sampling) <= 0.07


def test_atoms_outside_the_cell_wrap_periodically() -> None:
    inside = simulate_incoherent(_cell("W", [(1.3, 2.1)], (6.0, 7.0)), SEED003, scale=1.0)
    outside = simulate_incoherent(_cell("W", [(7.3, -4.9)], (6.0, 7.0)), SEED003, scale=1.0)
    np.testing.assert_allclose(outside.array, inside.array, atol=1e-9 * inside.array.max())


def test_non_periodic_structure_gets_probe_margin() -> None:
    atoms = _cell("W", [(5.0, 5.0)], (20.0, 20.0))
    atoms.info["periodic"] = False
    image = simulate_incoherent(atoms, SEED003, scale=1.0)
    assert not image.periodic
    # 95 % of this aberrated probe lies within ~6 Å (geometric blur radius 5.25 Å).
    assert image.margin == pytest.approx(6.1, abs=0.3)


def test_bad_inputs_are_clear_errors() -> None:
    coarse = SEED003.model_copy(update={"sampling": 0.5})  # Nyquist needs < 0.42 Å
    with pytest.raises(ValueError, match=r"sampling finer than 0\.418"):
        simulate_incoherent(_cell("W", [(1.0, 1.0)], (10.0, 10.0)), coarse, scale=1.0)
    skewed = Atoms("W", positions=[(1, 1, 1)], cell=[[10, 0, 0], [5, 8.66, 0], [0, 0, 2]])
    with pytest.raises(ValueError, match="orthogonal"):
        simulate_incoherent(skewed, SEED003, scale=1.0)


def test_default_scale_follows_the_detector_and_gamma() -> None:
    base = default_scale(SEED003)
    assert 0 < base < 1
    # Mean WSe2 multislice signal relative to 50–200 mrad, measured with abTEM.
    for inner, outer, measured in ((90.0, 200.0, 0.3305), (30.0, 120.0, 1.887)):
        other = SEED003.model_copy(update={"detector": Detector(inner=inner, outer=outer)})
        assert default_scale(other) / base == pytest.approx(measured, rel=1e-3)
    wider = SEED003.model_copy(update={"detector": Detector(inner=30.0, outer=200.0)})
    assert default_scale(wider) > base
    steeper = SEED003.model_copy(update={"gamma": 2.0})
    # Keeps a WSe2 formula unit's signal: scale · (74^γ + 2·34^γ) is the same.
    assert default_scale(steeper) * (74**2.0 + 2 * 34**2.0) == pytest.approx(
        base * (74**SEED003.gamma + 2 * 34**SEED003.gamma)
    )


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize("spec", [SEED003, CORRECTED], ids=["seed003", "corrected"])
def test_probe_matches_abtem(spec: IncoherentSimulation) -> None:
    extent, gpts = (20.0, 16.0), (400, 320)
    reference = _abtem_probe(spec, extent, gpts)
    same_box = probe_intensity(spec, extent=extent, gpts=gpts, isolated=False)
    isolated = probe_intensity(spec, extent=extent, gpts=gpts)
    assert _pearson(same_box, reference) >= 0.999999
    assert _pearson(isolated, reference) >= 0.999
    assert same_box.sum() * 0.05 * 0.05 == pytest.approx(1.0)
    assert isolated.sum() * 0.05 * 0.05 == pytest.approx(1.0)
    assert isolated.argmax() == 0  # centred at the origin


def test_defocus_sign_is_abtems() -> None:
    """Defocus +40 Å partly balances Cs (abTEM: defocus = −C10); −40 Å does not."""
    extent, gpts = (20.0, 16.0), (400, 320)
    reference = _abtem_probe(SEED003, extent, gpts)
    flipped = SEED003.model_copy(update={"defocus": -40.0})
    mine = probe_intensity(flipped, extent=extent, gpts=gpts, isolated=False)
    assert _pearson(mine, reference) < 0.95
    assert mine.max() < probe_intensity(SEED003, extent=extent, gpts=gpts).max()


# --------------------------------------------------------------------- calibration


def test_calibration_recovers_a_synthetic_model() -> None:
    atoms = _wse2() * (2, 1, 1)
    truth = SEED003.model_copy(update={"gamma": 1.3, "sampling": 0.2})
    image = simulate_incoherent(atoms, truth, scale=3e-3)
    reference = PeriodicImage(array=image.array + 1e-3, extent=image.extent)
    fit = calibrate_gamma(atoms, reference, SEED003)
    assert fit.gamma == pytest.approx(1.3)
    assert fit.scale == pytest.approx(3e-3, rel=1e-8)
    assert fit.offset == pytest.approx(1e-3, rel=1e-6)
    assert fit.r == pytest.approx(1.0, abs=1e-12)
    assert fit.rms < 1e-12


def test_calibration_rejects_a_different_cell() -> None:
    atoms = _wse2()
    reference = PeriodicImage(array=np.ones((28, 16)), extent=(3.0, 5.0))
    with pytest.raises(ValueError, match="differs from the cell"):
        calibrate_gamma(atoms, reference, SEED003)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [SEED003, CORRECTED], ids=["seed003", "corrected"])
def test_calibration_against_multislice(spec: IncoherentSimulation) -> None:
    # A 2 × 2 supercell (6.6 × 11.4 Å): in the bare 3.3 × 5.7 Å cell abTEM's probe is
    # periodic in that box, a few interfering plane waves, and r drops to 0.83. The scan
    # at 0.4 Å is near Nyquist for 2α/λ; the model is point-sampled at the same
    # positions, so even an aliased scan compares exactly. 40–60 s per optics on 1 core.
    atoms = mx2("WSe2", a=3.28, supercell=(2, 2), vacuum=2.0)
    multislice = MultisliceSimulation(
        method="multislice",
        defocus=spec.defocus,
        Cs=spec.Cs,
        scan_sampling=0.4,
        frozen_phonons=FrozenPhononSpec(count=8, sigmas=0.1),
    )
    with configure_threads(1):
        reference = simulate_haadf(atoms, multislice, seed=3)
    fit = calibrate_gamma(atoms, reference, spec)
    textbook = calibrate_gamma(atoms, reference, spec, gammas=[1.7])
    print(f"best γ {fit.gamma:.2f} r {fit.r:.4f} scale {fit.scale:.3g}; γ 1.7: r {textbook.r:.4f}")
    assert fit.r >= 0.95
    assert 0.5 <= fit.gamma <= 1.5
    assert fit.r > textbook.r + 0.02
    # The default scale puts the model's mean within 10 % of multislice's.
    model = simulate_incoherent(atoms, spec.model_copy(update={"gamma": fit.gamma}))
    assert model.array.mean() == pytest.approx(reference.array.mean(), rel=0.1)
