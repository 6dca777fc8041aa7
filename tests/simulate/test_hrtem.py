"""HRTEM: plane-wave exit waves against abTEM and closed forms, imaging, labels."""

from __future__ import annotations

import math
from collections.abc import Callable

import abtem
import numpy as np
import pytest
import torch
from abtem.core.energy import energy2sigma
from ase import Atoms
from ase.cluster import Icosahedron
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import Delaunay, cKDTree

from hpcbench.optics import wavelength
from hpcbench.simulate._multislice import antialias_aperture
from hpcbench.simulate.hrtem import (
    ExitWaves,
    clean_image,
    exit_waves,
    focal_samples_for,
    frozen_phonon_configurations,
    image_from_exit_waves,
    particle_mask,
    plane_wave_multislice,
    poisson_counts,
    projected_potential,
)
from hpcbench.simulate.stem import configure_threads
from hpcbench.structures import amorphous_slab

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ENERGY = 300e3  # seed 001 [eV]


def small_cell() -> Atoms:
    """A few light and heavy atoms at different depths in an 8 Å cell (a 63 × 64 grid)."""
    return Atoms(
        "CAuCO",
        positions=[(2.0, 3.0, 1.0), (5.0, 5.0, 3.0), (6.0, 2.0, 4.5), (3.0, 6.0, 6.0)],
        cell=(8.1, 8.3, 8.0),
    )


def abtem_exit_wave(atoms: Atoms, gpts: tuple[int, int], slice_thickness: float) -> NDArray:
    """``abtem.PlaneWave.multislice`` of a static structure, transposed to ``[y, x]``."""
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=slice_thickness)
    waves = abtem.PlaneWave(energy=ENERGY).multislice(potential, lazy=False)
    return np.asarray(waves.array).T


def test_exit_waves_equal_abtem_plane_wave_multislice_per_configuration() -> None:
    atoms = small_cell()
    with configure_threads(1):
        waves = exit_waves(
            atoms, energy=ENERGY, sampling=0.13, slice_thickness=1.0, frozen_phonons=3, seed=5
        )
        configurations = frozen_phonon_configurations(atoms, count=3, sigmas=0.1, seed=5)
        gpts = waves.metadata["gpts"]
        assert gpts == (63, 64) and waves.array.shape == (3, 64, 63)
        assert waves.metadata["slices"] == 8 and waves.metadata["fft_count"] == 30
        for index, configuration in enumerate(configurations):
            reference = abtem_exit_wave(configuration, gpts, 1.0)
            error = np.abs(waves.array[index] - reference).max() / np.abs(reference).max()
            # Measured: 8.7e-7 to 1.2e-6 (float32 rounding).
            assert error <= 1e-5
    # Not a trivial wave: the gold atom shifts the phase by more than 0.5 rad, and the
    # three configurations differ.
    assert np.abs(np.angle(waves.array)).max() > 0.5
    assert np.abs(waves.array[0] - waves.array[1]).max() > 1e-2


def test_batching_configurations_does_not_change_the_waves() -> None:
    atoms = small_cell()
    with configure_threads(1):
        together = exit_waves(
            atoms, energy=ENERGY, sampling=0.13, slice_thickness=1.0, frozen_phonons=3, seed=2
        )
        one_by_one = exit_waves(
            atoms,
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=3,
            seed=2,
            batch=1,
        )
    np.testing.assert_allclose(together.array, one_by_one.array, rtol=0, atol=1e-6)


def test_weak_phase_atom_phase_is_interaction_constant_times_projected_potential() -> None:
    # One carbon atom in a 1 Å slice at 300 keV: a weak phase object (peak 0.19 rad).
    atoms = Atoms("C", positions=[(5.0, 5.0, 0.5)], cell=(10.0, 10.0, 1.0))
    with configure_threads(1):
        waves = exit_waves(
            atoms, energy=ENERGY, sampling=0.1, slice_thickness=1.0, frozen_phonons=1, seed=0
        )
        gpts = waves.metadata["gpts"]
        potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=1.0).build(lazy=False)
    # abTEM's projected potential [V Å], band-limited as the multislice sees it.
    projected = np.asarray(potential.array, dtype=np.float64).sum(axis=0).T
    aperture = antialias_aperture(gpts, (10.0, 10.0)).T
    projected = np.fft.ifft2(np.fft.fft2(projected) * aperture).real
    sigma = energy2sigma(ENERGY)  # [rad / (V Å)]
    assert sigma == pytest.approx(6.526e-4, rel=1e-3)  # Kirkland's σ at 300 kV
    phase = np.angle(waves.array[0]).astype(np.float64)
    slope = float((phase * projected).sum() / (projected**2).sum())
    r = float(np.corrcoef(phase.ravel(), projected.ravel())[0, 1])
    # Measured: slope 0.9935 σ, r 0.99988 (the 1 Å propagation after the slice and the
    # second-order terms of exp(iσV) take the rest).
    assert slope == pytest.approx(sigma, rel=0.01)
    assert r >= 0.9995
    assert 0.15 < phase.max() < 0.25


def test_potentials_of_substrate_and_particle_add_to_the_full_potential() -> None:
    structure, particle = particle_on_carbon(shells=3, extent=24.0)
    gpts = (120, 120)
    full = projected_potential(structure, gpts=gpts, slice_thickness=2.0).array
    parts = [
        projected_potential(structure[select], gpts=gpts, slice_thickness=2.0).array
        for select in (particle, ~particle)
    ]
    difference = np.abs(full - parts[0] - parts[1]).max()
    # float32 rounding of the sums: measured ~1e-7 of the largest value.
    assert difference <= 1e-5 * np.abs(full).max()
    assert np.abs(parts[0]).max() > 4 * np.abs(parts[1]).max() > 0  # gold over carbon


def test_phonon_configurations_are_seeded_and_shared_with_the_particle() -> None:
    structure, particle = particle_on_carbon(shells=3, extent=24.0)
    sigmas = {"Au": 0.08, "C": 0.12}
    first = frozen_phonon_configurations(structure, count=4, sigmas=sigmas, seed=11)
    again = frozen_phonon_configurations(structure, count=4, sigmas=sigmas, seed=11)
    other = frozen_phonon_configurations(structure, count=4, sigmas=sigmas, seed=12)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.positions.tobytes() == b.positions.tobytes()
        assert not np.array_equal(a.positions, c.positions)
    shifts = np.stack([c.positions - structure.positions for c in first])
    for symbol, sigma in sigmas.items():
        mine = structure.symbols == symbol
        rms = float(np.sqrt((shifts[:, mine] ** 2).mean()))
        count = shifts[:, mine].size
        assert rms == pytest.approx(sigma, rel=5 / math.sqrt(2 * count))
    static = frozen_phonon_configurations(structure, count=1, sigmas=0.1, seed=3)[0]
    assert np.array_equal(static.positions, structure.positions)

    # The particle's exit waves see the displacements the whole structure gets.
    with configure_threads(1):
        waves = exit_waves(
            structure,
            energy=ENERGY,
            sampling=0.3,
            slice_thickness=4.0,
            frozen_phonons=2,
            sigmas=sigmas,
            seed=11,
            select=particle,
        )
        repeat = exit_waves(
            structure,
            energy=ENERGY,
            sampling=0.3,
            slice_thickness=4.0,
            frozen_phonons=2,
            sigmas=sigmas,
            seed=11,
            select=particle,
        )
        for index in range(2):
            alone = exit_waves(
                first[index][particle],
                energy=ENERGY,
                sampling=0.3,
                slice_thickness=4.0,
                frozen_phonons=1,
                seed=0,
            )
            assert alone.array[0].tobytes() == waves.array[index].tobytes()
    assert waves.array.tobytes() == repeat.array.tobytes()
    assert waves.metadata["atoms"] == int(particle.sum())


def weak_phase_waves(amplitude: float = 1e-4) -> tuple[ExitWaves, NDArray, NDArray]:
    """``exp(iεφ)`` with ``φ = Σ_m cos(2π m x / L + θ_m)``, m = 1..120, on a 100 Å cell.

    Returns the waves, the frequencies ``k_m`` [1/Å] and ``ε Φ(k_m)`` (FFT of εφ).
    """
    nx, ny, length = 256, 4, 100.0
    x = np.arange(nx) * length / nx
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, 120)
    m = np.arange(1, 121)
    phi = np.cos(2 * np.pi * m[:, None] * x[None, :] / length + theta[:, None]).sum(axis=0)
    psi = np.exp(1j * amplitude * phi)
    array = np.broadcast_to(psi, (1, ny, nx)).astype(np.complex64)
    waves = ExitWaves(array, (length, ny * length / nx), ENERGY)
    return waves, m / length, np.fft.fft(amplitude * phi)[m]


def transfer(image: NDArray, object_spectrum: NDArray) -> NDArray:
    """Measured phase-contrast transfer ``FT(I - 1) / (ε Φ)`` along x."""
    row = image[0] - 1.0
    return np.real(np.fft.fft(row)[1 : len(object_spectrum) + 1] / object_spectrum)


def test_ctf_first_zero_at_the_scherzer_frequency() -> None:
    waves, k, spectrum = weak_phase_waves()
    lam = wavelength(ENERGY)
    cs = 1.2e7  # 1.2 mm [Å], an uncorrected 300 kV objective
    defocus = math.sqrt(1.5 * cs * lam)  # Scherzer (extended) defocus
    assert defocus == pytest.approx(abtem.transfer.scherzer_defocus(cs, ENERGY))
    image = clean_image(waves, defocus=defocus, Cs=cs).array
    measured = transfer(image, spectrum)
    # Weak-phase object: I(k) = 2 ε Φ(k) sin χ(k), χ = π λ k² (Cs λ² k² / 2 - Δf).
    chi = np.pi * lam * k**2 * (cs * lam**2 * k**2 / 2 - defocus)
    np.testing.assert_allclose(measured, 2 * np.sin(chi), atol=5e-3)
    # First zero: χ = 0 at k⁴ = 6 / (Cs λ³), 1 / k = abTEM's point resolution (1.98 Å).
    k_zero = (6 / (cs * lam**3)) ** 0.25
    assert 1 / k_zero == pytest.approx(abtem.transfer.point_resolution(cs, ENERGY))
    assert 1 / k_zero == pytest.approx(1.977, abs=0.01)
    sign_change = int(np.flatnonzero(np.diff(np.sign(measured)) != 0)[0])
    assert measured[: sign_change + 1].max() < 0  # negative phase contrast up to it
    k0, k1 = k[sign_change], k[sign_change + 1]
    crossing = k0 - measured[sign_change] * (k1 - k0) / (
        measured[sign_change + 1] - measured[sign_change]
    )
    assert crossing == pytest.approx(k_zero, abs=0.002)  # measured 0.50582 vs 0.50594 /Å


def test_focal_spread_average_equals_a_hand_loop_and_abtems_gaussian_ensemble() -> None:
    with configure_threads(1):
        waves = exit_waves(
            small_cell(),
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=2,
            seed=0,
        )
    defocus, spread, samples = 60.0, 30.0, 9
    settings = {"Cs": 1e4, "semiangle_cutoff": 30.0}
    averaged = clean_image(
        waves, defocus=defocus, focal_spread=spread, focal_samples=samples, **settings
    ).array
    # Nine defoci evenly spaced over ±4σ, Gaussian weights normalised to 1.
    t = np.linspace(-4, 4, samples)
    weights = np.exp(-(t**2) / 2) / np.exp(-(t**2) / 2).sum()
    hand = sum(
        w * clean_image(waves, defocus=defocus + spread * x, **settings).array
        for x, w in zip(t, weights, strict=True)
    )
    np.testing.assert_allclose(averaged, hand, rtol=0, atol=1e-12)
    # abTEM's ensemble of the same defoci, reduced with its probability weights.
    distribution = abtem.distributions.gaussian(spread, samples, center=defocus, sampling_limit=4.0)
    ctf = abtem.CTF(semiangle_cutoff=30.0, energy=ENERGY, defocus=distribution, Cs=1e4)
    reference = np.zeros_like(averaged)
    for index in range(2):
        theirs = abtem.Waves(waves.array[index].T, energy=ENERGY, extent=waves.extent)
        reference += np.asarray(theirs.apply_ctf(ctf).intensity().reduce_ensemble().array).T / 2
    assert np.abs(averaged - reference).max() <= 1e-5 * reference.max()
    single = clean_image(waves, defocus=defocus, **settings).array
    assert np.abs(single - averaged).max() > 0.05 * np.ptp(single)  # the spread matters


def test_focal_spread_damps_weak_phase_transfer_by_the_temporal_envelope() -> None:
    waves, k, spectrum = weak_phase_waves()
    lam = wavelength(ENERGY)
    cs, defocus, spread = 1.2e7, 600.0, 40.0
    # 25 mrad passes every frequency of the object (1.2 /Å); the number of defoci is
    # chosen for it: π λ σ k² = 4.0 at the aperture needs 11 for 1e-3.
    assert focal_samples_for(spread, energy=ENERGY, max_frequency=0.025 / lam) == 11
    averaged = clean_image(
        waves, defocus=defocus, Cs=cs, focal_spread=spread, semiangle_cutoff=25.0
    )
    assert averaged.metadata["focal_samples"] >= 11  # the soft edge reaches further
    # For a weak phase object the Gaussian average of sin χ over defocus is sin χ times
    # exp(-(π λ σ k²)² / 2): abTEM's temporal envelope with its 1/e width √2 σ.
    chi = np.pi * lam * k**2 * (cs * lam**2 * k**2 / 2 - defocus)
    envelope = np.exp(-0.5 * (np.pi * lam * spread * k**2) ** 2)
    measured = transfer(averaged.array, spectrum)
    np.testing.assert_allclose(measured, 2 * np.sin(chi) * envelope, atol=3e-3)
    assert envelope[-1] < 0.01  # the spread matters over the frequencies tested
    temporal = abtem.transfer.TemporalEnvelope(focal_spread=math.sqrt(2) * spread, energy=ENERGY)
    alpha = lam * k
    np.testing.assert_allclose(
        temporal._evaluate_from_angular_grid(alpha, np.zeros_like(alpha)), envelope, rtol=1e-4
    )
    # Too few defoci alias: 5 of them put back transfer the spread has damped away.
    few = clean_image(
        waves, defocus=defocus, Cs=cs, focal_spread=spread, semiangle_cutoff=25.0, focal_samples=5
    )
    assert np.abs(transfer(few.array, spectrum) - 2 * np.sin(chi) * envelope).max() > 0.05


def test_image_equals_abtem_ctf_with_aberrations_and_aperture() -> None:
    with configure_threads(1):
        waves = exit_waves(
            small_cell(),
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=1,
            seed=0,
        )
    aberrations = {
        "C12": 20.0,
        "phi12": 0.3,
        "C21": 300.0,
        "phi21": 1.1,
        "C23": 150.0,
        "phi23": -0.4,
    }
    ours = clean_image(
        waves, defocus=80.0, Cs=-2e4, aberrations=aberrations, semiangle_cutoff=30.0
    ).array
    ctf = abtem.CTF(
        semiangle_cutoff=30.0,
        energy=ENERGY,
        aberration_coefficients={"C10": -80.0, "C30": -2e4, **aberrations},
    )
    theirs = abtem.Waves(waves.array[0].T, energy=ENERGY, extent=waves.extent)
    reference = np.asarray(theirs.apply_ctf(ctf).intensity().array).T
    assert np.abs(ours - reference).max() <= 1e-5 * reference.max()
    without = clean_image(waves, defocus=80.0, Cs=-2e4, semiangle_cutoff=30.0).array
    assert np.abs(without - reference).max() > 1e-2  # the extra aberrations matter


def test_plasmon_is_seed_001_weighted_mean_with_a_renormalised_background() -> None:
    with configure_threads(1):
        waves = exit_waves(
            small_cell(),
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=2,
            seed=0,
        )
    plain = clean_image(waves, defocus=50.0).array
    mean = plain.mean()
    weight, background = 0.5, mean  # seed 001's two numbers: r = w c / (⟨I⟩ + c) = 0.25
    by_hand = (1 - weight) * plain + weight * (plain + background) * mean / (mean + background)
    reduced = clean_image(waves, defocus=50.0, plasmon=0.25).array
    np.testing.assert_allclose(reduced, by_hand, rtol=1e-12)
    assert reduced.mean() == pytest.approx(mean, rel=1e-12)
    assert reduced.std() == pytest.approx(0.75 * plain.std(), rel=1e-12)
    # Applied to each configuration before the frozen-phonon average (seed 001's order)
    # it gives the same image.
    single = [
        clean_image(ExitWaves(waves.array[i : i + 1], waves.extent, ENERGY), defocus=50.0).array
        for i in range(2)
    ]
    per_configuration = np.mean([0.75 * s + 0.25 * s.mean() for s in single], axis=0)
    np.testing.assert_allclose(reduced, per_configuration, rtol=1e-6)


def test_resampling_keeps_the_band_limited_image() -> None:
    atoms = small_cell()
    atoms.set_cell((12.8, 12.8, 8.0))
    with configure_threads(1):
        waves = exit_waves(
            atoms, energy=ENERGY, sampling=0.1, slice_thickness=2.0, frozen_phonons=1, seed=0
        )
    assert waves.array.shape == (1, 128, 128)
    # 20 mrad at 300 kV: |k| <= 1.02 /Å, the intensity <= 2.03 /Å, below 0.2 Å's Nyquist.
    fine = clean_image(waves, defocus=30.0, semiangle_cutoff=20.0)
    coarse = clean_image(waves, defocus=30.0, semiangle_cutoff=20.0, pixel_size=0.2)
    assert coarse.array.shape == (64, 64) and coarse.sampling == (0.2, 0.2)
    np.testing.assert_allclose(coarse.array, fine.array[::2, ::2], rtol=0, atol=1e-6)
    assert fine.array.std() > 0.02  # four atoms in 12.8 Å: a faint image
    odd = clean_image(waves, defocus=30.0, semiangle_cutoff=20.0, pixel_size=0.27)
    assert odd.array.shape == (47, 47)
    assert odd.array.mean() == pytest.approx(fine.array.mean(), rel=1e-12)


def test_poisson_counts_mean_and_variance() -> None:
    with configure_threads(1):
        waves = exit_waves(
            small_cell(),
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=1,
            seed=0,
        )
    clean = clean_image(waves, defocus=100.0, pixel_size=0.13)
    intensity = clean.array
    area = clean.sampling[0] * clean.sampling[1]
    relative_variance = {}
    for dose in (400.0, 1600.0):
        expected = intensity * dose * area
        draws = np.stack([poisson_counts(clean, dose=dose, seed=seed).array for seed in range(16)])
        assert np.all(draws == np.round(draws)) and draws.min() >= 0
        n = draws.size
        # Mean = I × dose × pixel area, variance = mean (Poisson), within 5 σ.
        excess = (draws - expected).sum() / math.sqrt(16 * expected.sum())
        assert abs(excess) < 5
        dispersion = ((draws - expected) ** 2).sum() / (16 * expected.sum())
        assert dispersion == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))
        normalised = draws / (dose * area)
        relative_variance[dose] = float(((normalised - intensity) ** 2 / intensity).mean())
    # The variance of the normalised image goes as 1 / dose: 4x dose, 1/4 variance.
    assert relative_variance[400.0] / relative_variance[1600.0] == pytest.approx(4.0, rel=0.05)
    assert relative_variance[400.0] * 400.0 * area == pytest.approx(1.0, rel=0.05)


def test_image_is_a_pure_seeded_function_of_the_exit_waves() -> None:
    with configure_threads(1):
        waves = exit_waves(
            small_cell(),
            energy=ENERGY,
            sampling=0.13,
            slice_thickness=1.0,
            frozen_phonons=2,
            seed=0,
        )
    settings = {
        "defocus": 40.0,
        "Cs": 1e4,
        "focal_spread": 20.0,
        "plasmon": 0.2,
        "dose": 500.0,
        "pixel_size": 0.2,
    }
    a = image_from_exit_waves(waves, **settings, seed=3)
    b = image_from_exit_waves(waves, **settings, seed=3)
    c = image_from_exit_waves(waves, **settings, seed=4)
    assert a.array.tobytes() == b.array.tobytes()
    assert not np.array_equal(a.array, c.array)
    # Vacuum is 1: the mean count is close to dose × pixel area.
    assert a.array.mean() == pytest.approx(500.0 * a.sampling[0] * a.sampling[1], rel=0.05)
    with pytest.raises(ValueError, match="needs a seed"):
        image_from_exit_waves(waves, dose=500.0)


def particle_on_carbon(
    shells: int, extent: float, rotation: float = 37.0
) -> tuple[Atoms, NDArray[np.bool_]]:
    """An Au icosahedron on a 6 Å amorphous carbon slab, and which atoms are gold."""
    particle = Icosahedron("Au", shells)
    particle.positions -= particle.positions.mean(axis=0)
    particle.rotate(rotation, (1, 2, 3), center=(0, 0, 0))
    substrate = amorphous_slab((extent, extent), 6.0, rng=3)
    particle.positions += (extent / 2, extent / 2, 8.0 - particle.positions[:, 2].min())
    structure = substrate.copy()
    structure.extend(particle)
    structure.set_cell((extent, extent, particle.positions[:, 2].max() + 2.0))
    select = np.zeros(len(structure), dtype=bool)
    select[len(substrate) :] = True
    return structure, select


def test_particle_mask_covers_the_projected_particle_and_no_substrate() -> None:
    # An Au icosahedron of 8 shells (1415 atoms, 3.6 × 4.0 nm in projection) on carbon.
    structure, particle = particle_on_carbon(shells=8, extent=52.0)
    with configure_threads(1):
        waves = exit_waves(
            structure,
            energy=ENERGY,
            sampling=0.2,
            slice_thickness=4.0,
            frozen_phonons=2,
            seed=0,
            select=particle,
        )
    mask = particle_mask(waves)
    ny, nx = mask.shape
    dx, dy = waves.sampling
    rows, columns = np.mgrid[0:ny, 0:nx]
    pixels = np.stack([columns.ravel() * dx, rows.ravel() * dy], axis=1)
    projected = structure.positions[particle, :2]
    hull = (Delaunay(projected).find_simplex(pixels) >= 0).reshape(ny, nx)
    distance = cKDTree(projected).query(pixels)[0].reshape(ny, nx)
    coverage = (mask & hull).sum() / hull.sum()
    # Measured: 0.922 of the convex hull of the projected atom centres, one blob, nothing
    # beyond 3 Å of an atom (the bare carbon around it).
    assert coverage >= 0.9
    assert (mask & ~hull).sum() <= 0.02 * hull.sum()
    assert not (mask & (distance > 3.0)).any()
    assert ndimage.label(mask)[1] == 1
    # The same labels at the output pixel size of the images.
    coarse = particle_mask(waves, pixel_size=0.4)
    assert coarse.shape == (130, 130)
    assert coarse.mean() == pytest.approx(mask.mean(), rel=0.05)


@CUDA
def test_cuda_exit_waves_and_image_match_the_cpu() -> None:
    atoms = small_cell()
    kwargs = {"energy": ENERGY, "sampling": 0.13, "slice_thickness": 1.0, "frozen_phonons": 3}
    cpu = exit_waves(atoms, **kwargs, seed=1)
    gpu = exit_waves(atoms, **kwargs, seed=1, device="cuda")
    assert np.abs(gpu.array - cpu.array).max() <= 1e-5 * np.abs(cpu.array).max()
    settings = {"defocus": 50.0, "Cs": 1e4, "focal_spread": 20.0, "semiangle_cutoff": 30.0}
    a = clean_image(cpu, **settings).array
    b = clean_image(cpu, **settings, device="cuda").array
    assert np.abs(a - b).max() <= 1e-5 * a.max()


def test_plane_wave_multislice_of_vacuum_is_one() -> None:
    potential = np.zeros((2, 3, 30, 32), dtype=np.float32)
    waves = plane_wave_multislice(potential, np.array([2.0, 2.0, 1.0]), (6.0, 6.4), energy=ENERGY)
    assert waves.shape == (2, 30, 32)
    np.testing.assert_allclose(waves, 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: clean_image(w, plasmon=1.5), "plasmon must be in"),
        (lambda w: clean_image(w, aberrations={"C10": 5.0}), "give C10 as defocus"),
        (lambda w: clean_image(w, aberrations={"coma": 5.0}), "unknown aberration symbol"),
        (lambda w: clean_image(w, focal_spread=-1.0), "focal_spread must be"),
        (lambda w: clean_image(w, semiangle_cutoff=0.0), "semiangle_cutoff must be"),
        (lambda w: clean_image(w, pixel_size=0.0), "pixel_size must be"),
        (lambda w: poisson_counts(clean_image(w), dose=0.0, seed=0), "dose must be"),
        (lambda w: particle_mask(w, threshold=0.0), "threshold must be"),
        (lambda w: clean_image(w, device="mps"), "device must be cpu or cuda"),
    ],
)
def test_bad_imaging_input_is_a_one_line_error(
    call: Callable[[ExitWaves], object], message: str
) -> None:
    waves = ExitWaves(np.ones((1, 8, 8), dtype=np.complex64), (4.0, 4.0), ENERGY)
    with pytest.raises(ValueError, match=message) as error:
        call(waves)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frozen_phonons": 0}, "frozen_phonons must be >= 1"),
        ({"sigmas": {"Au": 0.1}}, "sigmas has no value for C, O"),
        ({"select": np.ones(3, dtype=bool)}, "select must be a boolean array of 4 atoms"),
        ({"sampling": 0.0}, "sampling must be > 0"),
        ({"seed": 1.5}, "seed must be an int"),
    ],
)
def test_bad_exit_wave_input_is_a_one_line_error(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "energy": ENERGY,
        "sampling": 0.2,
        "slice_thickness": 2.0,
        "frozen_phonons": 2,
        "seed": 0,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message) as error:
        exit_waves(small_cell(), **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)
