"""HAADF-STEM images of a periodic cell with abTEM (multislice or PRISM).

The probe, potential and detector follow the study's :class:`MultisliceSimulation`;
the result is a :class:`PeriodicImage` holding, at each probe position, the fraction of
the incident probe intensity that reaches the annular detector.

Choices made here, with the numbers that motivated them (2-core development machine):

* **Grids** are set explicitly and rounded up to 2,3,5,7-smooth sizes
  (:func:`~hpcbench.simulate._grid.grid_shape`): an abTEM-chosen 532×461 grid made the
  scan 2.8× slower.
* **Anti-aliasing**: abTEM keeps only 2/3 of the Nyquist frequency and drops larger
  angles silently (at 0.1 Å and 80 keV the limit is 139 mrad; a 50–200 mrad HAADF image
  came out 11 % low), so a grid too coarse for ``detector.outer`` is a ``ValueError``.
* **Threads**: computations run on dask's synchronous scheduler, with FFT threads from
  :func:`configure_threads`; dask threads on top of 2-thread FFTW were 15–30× slower.
* **Multislice** scans run on :mod:`hpcbench.simulate._multislice` (abTEM's potential,
  probe, anti-aliasing and detector pixels; torch FFTs; 2 × slices FFTs a probe) unless
  ``engine="abtem"``: the quickstart's 1312-probe scan on one thread (loaded machine,
  FFT floor 13.7 s) took 13.2 s, against 48.9 s with abTEM and 20.2 s with PRISM.
* **CUDA** (``device="cuda"``): the same engine runs its FFT loop on the GPU with
  torch (H200, quickstart's 1312 probes: 37 ms, 1.55× the GPU FFT floor); the
  potential is still built by abTEM on the CPU (1.4 s for the quickstart cell on 2
  cores, now most of an image's time), so the GPU image starts from the CPU image's
  potential and differs only by cuFFT's rounding (2.7e-5 of the image mean). abTEM on
  a GPU (``engine="abtem"`` or PRISM) gets :data:`GPU_MAX_BATCH` probes a batch: on an
  H200 its scan was 34× the FFT floor with 32 probes and 4.1× with 512.
* **Aberrations** use abTEM's convention: ``defocus`` is ``-C10`` (positive defocus is
  underfocus, the probe focused above the entrance surface) and ``Cs`` is ``C30``.
  The seed-003 optics (80 keV, 25 mrad, defocus 40 Å, Cs 4·10⁵ Å = 40 µm) are
  heavily aberrated: at 25 mrad the Cs phase is ``2π/λ · Cs α⁴/4 ≈ 5.9 rad``, and the
  probe's peak intensity is only ~22 % of an aberration-free probe's; its intensity
  spreads over several Å (99.5 % within a radius of ~6 Å), which is what limits PRISM's
  interpolation (:func:`safe_prism_interpolation`).
* **PRISM**: interpolation ``f`` crops every probe to a window of ``extent / f``
  (:func:`probe_window`), folding its tails back coherently; a factor is rejected when
  the image error :func:`prism_error` predicts is too large, and every image made with
  one is checked against multislice at 64 of its positions (:func:`check_prism`).
  Measured on the 192-atom WSe2 cell: ``f = 2`` (window 13 × 11.5 Å) cut 3.7 % of this
  probe and gave peaks 12 % too high (r = 0.991 vs multislice), while ``f = 1`` equals
  multislice at 0.46× its CPU time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from hpcbench.optics import max_scattering_angle, wavelength
from hpcbench.simulate._grid import _is_smooth, grid_shape
from hpcbench.simulate._multislice import multislice_haadf
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.study import MultisliceSimulation

__all__ = [
    "GPU_MAX_BATCH",
    "NONPERIODIC_MARGIN",
    "PRISM_CHECK_MAX_NRMS",
    "PRISM_CHECK_MIN_R",
    "PRISM_CHECK_POSITIONS",
    "PRISM_MAX_NRMS",
    "PRISM_MIN_R",
    "PrismCheck",
    "PrismError",
    "ProbeWindow",
    "check_prism",
    "configure_threads",
    "prism_error",
    "probe_window",
    "safe_prism_interpolation",
    "simulate_haadf",
]

# Fraction of the probe's intensity inside a PRISM window is reported for information
# only: PRISM folds the probe's tails back into the window *coherently*, so the image
# error grows like the square root of what is cut, and a window holding 99.67 % of the
# seed-003 probe still gave r = 0.9926 against multislice. A factor is accepted when the
# error it *predicts* (:func:`prism_error`) is below these; checked against abTEM on
# WSe2 (corrected optics, 26 × 23 Å cell): f = 2 predicted r 0.99996 / nRMS 0.013,
# actual 0.99999 / 0.017; f = 3 predicted 0.9995 / 0.031, actual 0.99995 / 0.052.
# Predicted r is conservative, predicted nRMS about 0.6-0.8x the actual one, hence 0.05
# for an actual nRMS well under 0.1.
PRISM_MIN_R = 0.999
PRISM_MAX_NRMS = 0.05

# The prediction misses something that grows with the cell (measured on WSe2, seed-003
# optics, f = 2: predicted r 0.99987 but actual 0.9985 on a 39 × 34 Å cell, predicted
# 0.99996 but actual 0.9926 on 79 × 68 Å), so every PRISM image with f > 1 is also
# checked against plain multislice at PRISM_CHECK_POSITIONS of its own scan positions
# (one potential, a few dozen probes: about a second) and rejected beyond these.
PRISM_CHECK_POSITIONS = 64
PRISM_CHECK_MIN_R = 0.997
PRISM_CHECK_MAX_NRMS = 0.05

# Distance from the edges of a non-periodic cell [Å] within which the image is not
# trusted: the seam of the periodic simulation is seen by the probe's central lobe and
# first rings (the seed-003 probe holds ~90 % of its intensity within ~3 Å).
NONPERIODIC_MARGIN = 3.0

# Probes per multislice batch. benchmarks/bench_stem.py, 270×240 grid, 896 probes, on a
# loaded 2-core machine: batch 8 took 148 s, 32 took 36 s, 128 took 38 s, "auto" 54 s.
MAX_BATCH: int | str = 32
# abTEM's probes per batch on a GPU (the H200 figures in the module docstring).
GPU_MAX_BATCH = 512


def _device(device: str) -> Literal["cpu", "cuda"]:
    """``"cpu"`` or ``"cuda"`` for a device name (``"gpu"`` is abTEM's name for CUDA)."""
    if device == "cpu":
        return "cpu"
    if device in ("cuda", "gpu"):
        return "cuda"
    raise ValueError(f"device must be 'cpu' or 'cuda' (or abTEM's 'gpu'), got {device!r}")


def _abtem_device(device: Literal["cpu", "cuda"]) -> str:
    return "gpu" if device == "cuda" else "cpu"


@contextmanager
def configure_threads(n: int) -> Iterator[None]:
    """Run abTEM, dask, FFTW, BLAS and torch on ``n`` threads inside the block.

    Inside a Ray task ``n`` is the task's CPU count, so nothing oversubscribes the node:
    dask runs synchronously (no thread pool of its own) and the FFTs, BLAS and torch
    use ``n`` threads each. Previous settings are restored on exit.

    Parameters
    ----------
    n : int
        Number of threads, ``>= 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    import abtem
    import dask
    import torch
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with (
            abtem.config.set({"fftw.threads": n, "mkl.threads": n}),
            dask.config.set(scheduler="synchronous"),
            threadpool_limits(limits=n),
        ):
            yield
    finally:
        torch.set_num_threads(torch_threads)


class ProbeWindow(NamedTuple):
    """A PRISM cropping window and how much of the probe it holds.

    Attributes
    ----------
    extent : tuple of float
        Window size ``(wx, wy)`` [Å], the cell extent divided by the interpolation.
    fraction : float
        Fraction of the intensity of the probe, as it exists in the periodic cell, that
        lies inside the window centred on the probe.
    """

    extent: tuple[float, float]
    fraction: float


def _probe(spec: MultisliceSimulation, **grid: Any) -> Any:
    import abtem

    return abtem.Probe(
        semiangle_cutoff=spec.semiangle_cutoff,
        energy=spec.energy,
        aberrations={"C10": -spec.defocus, "C30": spec.Cs},
        **grid,
    )


def _centred_probe_intensity(
    spec: MultisliceSimulation, extent: tuple[float, float], gpts: tuple[int, int]
) -> NDArray[np.float64]:
    """Probe intensity (abTEM's) on a periodic cell, centred, normalised to sum 1, ``[x, y]``."""
    probe = _probe(spec, gpts=gpts, extent=extent)
    centre = (gpts[0] // 2 * extent[0] / gpts[0], gpts[1] // 2 * extent[1] / gpts[1])
    with configure_threads(1):
        waves = probe.build(centre, lazy=False)
    intensity: NDArray[np.float64] = np.abs(np.asarray(waves.array, dtype=np.complex128)) ** 2
    normalised: NDArray[np.float64] = intensity / float(intensity.sum())
    return normalised


def probe_window(
    spec: MultisliceSimulation, extent: tuple[float, float], interpolation: int
) -> ProbeWindow:
    """PRISM's cropping window for a cell and the fraction of the probe it holds.

    The probe is the one the simulation uses: abTEM's, band-limited, on the periodic
    cell (its tails wrap around the cell as they do in multislice). The seed-003 probe
    keeps 96.1 % of its intensity in the 13.1 × 11.4 Å window of ``f = 2`` on a
    26.2 × 22.7 Å cell (measured peak error there: +12 %).

    Parameters
    ----------
    spec : MultisliceSimulation
        Probe optics (``energy``, ``semiangle_cutoff``, ``defocus``, ``Cs``) and
        ``sampling`` [Å].
    extent : tuple of float
        Cell lengths ``(Lx, Ly)`` [Å].
    interpolation : int
        PRISM interpolation factor ``>= 1``; 1 means no cropping (fraction 1).

    Returns
    -------
    ProbeWindow
        Window extent [Å] and the fraction of the probe's intensity inside it.
    """
    if interpolation < 1:
        raise ValueError(f"interpolation must be >= 1, got {interpolation}")
    window = (extent[0] / interpolation, extent[1] / interpolation)
    if interpolation == 1:
        return ProbeWindow(window, 1.0)
    gpts = grid_shape(extent, spec.sampling)
    intensity = _centred_probe_intensity(spec, extent, gpts)
    x, y = ((np.arange(n) - n // 2) * length / n for n, length in zip(gpts, extent, strict=True))
    inside = np.outer(np.abs(x) <= window[0] / 2, np.abs(y) <= window[1] / 2)
    return ProbeWindow(window, float(intensity[inside].sum()))


class PrismError(NamedTuple):
    """Predicted error of a PRISM interpolation factor against multislice."""

    interpolation: int
    r: float
    nrms: float
    window: ProbeWindow

    @property
    def acceptable(self) -> bool:
        """Whether it meets :data:`PRISM_MIN_R` and :data:`PRISM_MAX_NRMS`."""
        return self.r >= PRISM_MIN_R and self.nrms <= PRISM_MAX_NRMS


def prism_error(atoms: Atoms, spec: MultisliceSimulation, interpolation: int) -> PrismError:
    """Predict how far a PRISM image with ``interpolation`` will be from multislice.

    PRISM with factor ``f`` samples the plane-wave basis ``f`` times more coarsely, so the
    probe it reconstructs is periodic with period ``L / f`` (its tails fold back
    coherently) and is cropped to one such window around each position. For a thin
    specimen the HAADF image is close to incoherent, ``|ψ|² ⊛ O`` with ``O`` the
    projected atoms weighted by ``Z``; this compares that image made with the true probe
    and with the folded, cropped one, on the structure's own cell. It costs one probe
    and a few FFTs, against minutes for the multislice it predicts.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (orthogonal cell).
    spec : MultisliceSimulation
        Probe optics and ``sampling`` [Å].
    interpolation : int
        PRISM factor ``>= 1``.

    Returns
    -------
    PrismError
        Pearson ``r`` and normalised RMS ``‖a − b‖ / ‖a‖`` between the two images, and
        the window. ``f = 1`` is exact (r = 1, nRMS = 0).
    """
    extent = _cell_extent(atoms)
    window = probe_window(spec, extent, interpolation)
    if interpolation == 1:
        return PrismError(1, 1.0, 0.0, window)
    gpts = grid_shape(extent, spec.sampling, multiple_of=interpolation)
    probe = _probe(spec, gpts=gpts, extent=extent)
    with configure_threads(1):
        psi = np.asarray(probe.build((0.0, 0.0), lazy=False).array, dtype=np.complex128)
    nx, ny = gpts
    wx, wy = nx // interpolation, ny // interpolation
    folded = psi.reshape(interpolation, wx, interpolation, wy).sum(axis=(0, 2))
    # The window is centred on the probe (at the origin, so it wraps around the cell).
    keep_x = (np.arange(nx) + wx // 2) % nx < wx
    keep_y = (np.arange(ny) + wy // 2) % ny < wy
    cropped = np.zeros_like(psi)
    tiled = np.tile(folded, (interpolation, interpolation))
    cropped[np.ix_(keep_x, keep_y)] = tiled[np.ix_(keep_x, keep_y)]

    projected = np.zeros(gpts, dtype=np.float64)
    pixel = atoms.positions[:, :2] / np.asarray(extent) * np.asarray(gpts)
    index = np.round(pixel).astype(np.int64) % np.asarray(gpts)
    np.add.at(projected, (index[:, 0], index[:, 1]), atoms.numbers.astype(np.float64))
    spectrum = np.fft.fft2(projected)
    exact = np.fft.ifft2(spectrum * np.fft.fft2(np.abs(psi) ** 2)).real
    approximate = np.fft.ifft2(spectrum * np.fft.fft2(np.abs(cropped) ** 2)).real
    r = float(np.corrcoef(exact.ravel(), approximate.ravel())[0, 1])
    nrms = float(np.linalg.norm(exact - approximate) / np.linalg.norm(exact))
    return PrismError(interpolation, r, nrms, window)


def safe_prism_interpolation(
    atoms: Atoms, spec: MultisliceSimulation, *, max_interpolation: int = 16
) -> int:
    """Largest PRISM interpolation whose predicted error is acceptable (:func:`prism_error`).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (orthogonal cell).
    spec : MultisliceSimulation
        Probe optics.
    max_interpolation : int
        Largest factor considered.

    Returns
    -------
    int
        The factor (1, exact, if no larger one is safe). The seed-003 probe (Cs 40 µm)
        spreads so far that on cells below ~80 Å only 1 is safe.
    """
    best = 1
    for factor in range(2, max_interpolation + 1):
        if not _is_smooth(factor):
            continue  # grids must be multiples of it and 2,3,5,7-smooth: 11, 13 cannot
        if not prism_error(atoms, spec, factor).acceptable:
            break  # the error only grows with the factor
        best = factor
    return best


def _cell_extent(atoms: Atoms) -> tuple[float, float]:
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    lengths = np.linalg.norm(cell, axis=1)
    if np.any(lengths == 0):
        raise ValueError("atoms need a full 3-D cell (the z length is the potential's depth)")
    off_diagonal = cell - np.diag(np.diag(cell))
    if np.abs(off_diagonal).max() > 1e-6 * lengths.max():
        raise ValueError("the cell must be orthogonal and axis-aligned (an x, y, z box)")
    return float(cell[0, 0]), float(cell[1, 1])


def _configurations(atoms: Atoms, spec: MultisliceSimulation, seed: int) -> list[Atoms]:
    """The frozen-phonon configurations: the static lattice for a count of 1.

    Each atom moves by an independent Gaussian displacement in x, y and z with its
    element's ``sigma`` [Å] (the Einstein model abTEM's ``FrozenPhonons`` uses), drawn
    from ``numpy.random.default_rng(seed)``.
    """
    phonons = spec.frozen_phonons
    if phonons.count == 1:
        # One configuration is the static lattice: a single random displacement adds
        # noise without the thermal-diffuse average that needs many configurations.
        return [atoms]
    symbols: list[str] = atoms.get_chemical_symbols()  # type: ignore[no-untyped-call]
    if isinstance(phonons.sigmas, dict):
        missing = sorted(set(symbols) - set(phonons.sigmas))
        if missing:
            raise ValueError(f"frozen_phonons.sigmas has no value for {', '.join(missing)}")
        sigma = np.array([phonons.sigmas[symbol] for symbol in symbols], dtype=np.float64)
    else:
        sigma = np.full(len(atoms), float(phonons.sigmas))
    rng = np.random.default_rng(seed)
    configurations = []
    for _ in range(phonons.count):
        displaced: Atoms = atoms.copy()  # type: ignore[no-untyped-call]
        displaced.positions = atoms.positions + rng.normal(size=(len(atoms), 3)) * sigma[:, None]
        configurations.append(displaced)
    return configurations


class PrismCheck(NamedTuple):
    """PRISM against multislice at a sample of the scan's own positions."""

    positions: int
    r: float
    nrms: float

    @property
    def passed(self) -> bool:
        """Whether it meets :data:`PRISM_CHECK_MIN_R` and :data:`PRISM_CHECK_MAX_NRMS`."""
        return self.r >= PRISM_CHECK_MIN_R and self.nrms <= PRISM_CHECK_MAX_NRMS


def check_prism(
    prism: NDArray[np.float64],
    reference: NDArray[np.float64],
) -> PrismCheck:
    """Compare PRISM values with multislice ones at the same probe positions.

    Parameters
    ----------
    prism, reference : ndarray of float64, shape (n,)
        Detector signal at ``n`` positions from PRISM and from multislice.

    Returns
    -------
    PrismCheck
        Pearson ``r`` and ``‖prism − reference‖ / ‖reference‖``.
    """
    if prism.shape != reference.shape or prism.ndim != 1 or prism.size < 3:
        raise ValueError(f"need two equal 1-D samples of >= 3 values, got {prism.shape}")
    r = float(np.corrcoef(prism, reference)[0, 1])
    nrms = float(np.linalg.norm(prism - reference) / np.linalg.norm(reference))
    return PrismCheck(int(prism.size), r, nrms)


def _check_positions(
    scan_gpts: tuple[int, int], extent: tuple[float, float], seed: int
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Seeded scan-grid indices (n, 2) and their positions (n, 2) [Å] for the check."""
    total = scan_gpts[0] * scan_gpts[1]
    count = min(PRISM_CHECK_POSITIONS, total)
    # Its own stream: the check never shifts the frozen-phonon draws.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    flat = np.sort(rng.choice(total, size=count, replace=False))
    index = np.stack(np.unravel_index(flat, scan_gpts), axis=1)
    step = np.asarray(extent) / np.asarray(scan_gpts)
    return index, index * step


def _verify_prism(
    values: NDArray[np.float64],
    potential: Any,
    spec: MultisliceSimulation,
    detector: Any,
    scan_gpts: tuple[int, int],
    extent: tuple[float, float],
    seed: int,
    device: str,
) -> PrismCheck:
    """Multislice at a seeded sample of the PRISM scan's positions; raise if they differ."""
    import abtem

    index, positions = _check_positions(scan_gpts, extent, seed)
    probe = _probe(spec, device=device)
    reference = probe.scan(
        potential, scan=abtem.CustomScan(positions), detectors=detector, lazy=False
    )
    if device == "gpu":
        reference = reference.to_cpu()
    check = check_prism(
        values[index[:, 0], index[:, 1]],
        np.asarray(reference.array, dtype=np.float64).reshape(-1),
    )
    if not check.passed:
        raise ValueError(
            f"prism_interpolation {spec.prism_interpolation} disagrees with multislice at "
            f"{check.positions} scan positions: r = {check.r:.4f}, nRMS = {check.nrms:.3f} "
            f"(need r >= {PRISM_CHECK_MIN_R}, nRMS <= {PRISM_CHECK_MAX_NRMS}); use a "
            "smaller prism_interpolation"
        )
    return check


def simulate_haadf(
    atoms: Atoms,
    spec: MultisliceSimulation,
    *,
    seed: int,
    device: str = "cpu",
    engine: Literal["hpcbench", "abtem"] = "hpcbench",
) -> PeriodicImage:
    """HAADF-STEM image of a periodic cell, scanned over the whole cell.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure in an orthogonal, axis-aligned cell; the z length is the potential's
        depth. ``atoms.info["periodic"]`` (default True) says whether the cell tiles.
    spec : MultisliceSimulation
        Optics, detector, grid ``sampling`` [Å] (rounded finer to an FFT-friendly
        grid), ``scan_sampling`` [Å] (``None``: the probe's Nyquist step
        ``λ / (4 α)``; either way reduced to ``Lx / nx`` so the scan tiles the cell),
        ``slice_thickness`` [Å], frozen phonons and method.
    seed : int
        Seed of the frozen-phonon displacements (ignored for one configuration, which
        is the static lattice).
    device : str
        ``"cpu"`` or ``"cuda"`` (``"gpu"``, abTEM's name, is taken for ``"cuda"``).
    engine : {"hpcbench", "abtem"}
        Who scans the probe for ``method: multislice``: the batched engine
        (:func:`~hpcbench.simulate._multislice.multislice_haadf`: abTEM's potential and
        probe; r = 1 - 3e-13 and at most 6e-6 relative difference against abTEM on the
        test cells; about 1x the FFT floor at the quickstart settings on the CPU; on
        CUDA its FFT loop runs on the GPU, the potential is built on the CPU) or
        ``abtem.Probe.scan`` (about 5x the floor). PRISM always uses abTEM.

    Returns
    -------
    PeriodicImage
        ``array[y, x]`` (float64): fraction of the incident intensity reaching the
        detector at probe position ``(x, y) = (c · Lx / nx, r · Ly / ny)`` [Å], averaged
        over frozen phonons; ``metadata`` has the method, grid and scan sizes, the
        interpolation, ``engine`` (``"hpcbench"`` or ``"abtem"``), ``device``
        (``"cpu"`` or ``"cuda"``) and timings [s].

    Raises
    ------
    ValueError
        If the grid cannot represent ``detector.outer`` after abTEM's anti-aliasing, the
        device is neither CPU nor CUDA, the cell is not orthogonal, a PRISM image with
        ``f > 1`` disagrees with multislice at :data:`PRISM_CHECK_POSITIONS` of its
        positions (:func:`check_prism`), or
        :func:`prism_error` predicts beyond :data:`PRISM_MIN_R` / :data:`PRISM_MAX_NRMS`.
    """
    import abtem

    # FFTW_MEASURE (abTEM's default) picks FFT algorithms by timing them, so the bits of
    # an image could depend on the machine's load; FFTW_ESTIMATE plans deterministically
    # (and was as fast here), so a shard rebuilt anywhere has the same bytes.
    with abtem.config.set({"fftw.planning_effort": "FFTW_ESTIMATE"}):
        return _simulate_haadf(atoms, spec, seed=seed, device=_device(device), engine=engine)


def _simulate_haadf(
    atoms: Atoms,
    spec: MultisliceSimulation,
    *,
    seed: int,
    device: Literal["cpu", "cuda"],
    engine: Literal["hpcbench", "abtem"],
) -> PeriodicImage:
    import abtem

    started = time.perf_counter()
    extent = _cell_extent(atoms)
    limit = max_scattering_angle(spec.energy, spec.sampling)
    if spec.detector.outer > limit:
        raise ValueError(
            f"sampling {spec.sampling:g} Å keeps only {limit:.0f} mrad after anti-aliasing, "
            f"below detector.outer {spec.detector.outer:g} mrad"
        )
    interpolation = spec.prism_interpolation if spec.method == "prism" else 1
    if interpolation > 1:
        error = prism_error(atoms, spec, interpolation)
        if not error.acceptable:
            window = error.window
            raise ValueError(
                f"prism_interpolation {interpolation} crops the probe to "
                f"{window.extent[0]:.1f} × {window.extent[1]:.1f} Å ({window.fraction:.1%} "
                f"of its intensity), predicted r = {error.r:.4f}, nRMS = {error.nrms:.3f} "
                f"against multislice (need r >= {PRISM_MIN_R}, nRMS <= {PRISM_MAX_NRMS}); "
                f"use {safe_prism_interpolation(atoms, spec)} or a larger cell"
            )
    gpts = grid_shape(extent, spec.sampling, multiple_of=interpolation)
    scan_step = spec.scan_sampling
    if scan_step is None:
        scan_step = wavelength(spec.energy) / (4 * spec.semiangle_cutoff * 1e-3)
    nx, ny = (max(1, math.ceil(length / scan_step - 1e-9)) for length in extent)
    scan_gpts = (nx, ny)

    scan = abtem.GridScan(start=(0.0, 0.0), end=extent, gpts=scan_gpts, endpoint=False)
    detector = abtem.AnnularDetector(inner=spec.detector.inner, outer=spec.detector.outer)
    aberrations = {"C10": -spec.defocus, "C30": spec.Cs}
    optics: dict[str, Any] = {"semiangle_cutoff": spec.semiangle_cutoff, "energy": spec.energy}
    time_potential = time_scan = 0.0
    check: PrismCheck | None = None
    total = np.zeros(scan_gpts, dtype=np.float64)
    configurations = _configurations(atoms, spec, seed)
    own_engine = spec.method == "multislice" and engine == "hpcbench"
    # The own engine reads the potential from host memory (its prepare step is NumPy).
    potential_device = "cpu" if own_engine else _abtem_device(device)
    probe_array: NDArray[np.complex64] | None = None
    if own_engine:
        probe_waves = _probe(spec, gpts=gpts, extent=extent).build((0.0, 0.0), lazy=False)
        probe_array = np.asarray(probe_waves.array, dtype=np.complex64)
    for configuration in configurations:
        tick = time.perf_counter()
        # Built once per configuration up front: a lazy potential is rebuilt for every
        # batch of probes.
        potential: Any = abtem.Potential(
            configuration, gpts=gpts, slice_thickness=spec.slice_thickness, device=potential_device
        ).build(lazy=False)
        tock = time.perf_counter()
        measurement: Any
        if probe_array is not None:
            values = multislice_haadf(
                np.asarray(potential.array, dtype=np.float32),
                np.asarray(potential.slice_thickness, dtype=np.float64),
                extent,
                probe_array,
                energy=spec.energy,
                inner=spec.detector.inner,
                outer=spec.detector.outer,
                scan_gpts=scan_gpts,
                device=device,
            )
            total += values
            time_potential += tock - tick
            time_scan += time.perf_counter() - tock
            continue
        if spec.method == "multislice":
            probe = abtem.Probe(**optics, aberrations=aberrations, device=_abtem_device(device))
            max_batch = GPU_MAX_BATCH if device == "cuda" else MAX_BATCH
            measurement = probe.scan(
                potential, scan=scan, detectors=detector, max_batch=max_batch, lazy=True
            )
        else:
            s_matrix = abtem.SMatrix(
                **optics,
                potential=potential,
                interpolation=interpolation,
                device=_abtem_device(device),
            )
            ctf = abtem.CTF(**optics, aberration_coefficients=aberrations)
            measurement = s_matrix.scan(scan=scan, detectors=detector, ctf=ctf, lazy=True)
        measurement = measurement.compute(scheduler="synchronous", progress_bar=False)
        if device == "cuda":
            measurement = measurement.to_cpu()
        values = np.asarray(measurement.array, dtype=np.float64)
        if interpolation > 1 and check is None:
            check = _verify_prism(
                values, potential, spec, detector, scan_gpts, extent, seed, _abtem_device(device)
            )
        total += values
        time_potential += tock - tick
        time_scan += time.perf_counter() - tock
    array = total / len(configurations)
    if array.shape != scan_gpts:
        raise RuntimeError(f"abTEM returned shape {array.shape}, expected {scan_gpts}")
    periodic = bool(atoms.info.get("periodic", True))
    return PeriodicImage(
        array=np.ascontiguousarray(array.T),
        extent=extent,
        periodic=periodic,
        margin=0.0 if periodic else NONPERIODIC_MARGIN,
        metadata={
            "method": spec.method,
            "engine": "hpcbench" if own_engine else "abtem",
            "gpts": gpts,
            "scan_gpts": scan_gpts,
            "prism_interpolation": interpolation,
            "prism_check": None if check is None else check._asdict(),
            "frozen_phonons": spec.frozen_phonons.count,
            "seed": seed,
            "device": device,
            "time_potential": time_potential,
            "time_scan": time_scan,
            "time_total": time.perf_counter() - started,
        },
    )
