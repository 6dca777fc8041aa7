"""Batched multislice engine for HAADF-STEM scans, at the FFT floor, on CPU or CUDA.

It computes what ``abtem.Probe.scan`` with an ``AnnularDetector`` computes, from
abTEM's own potential slices and probe, with fewer passes over memory:

* **Probes** are built once in Fourier space (abTEM's probe at the origin) and shifted
  to each scan position by a separable phase ramp ``exp(-2πi (kx x + ky y))``; one
  inverse FFT per probe, as abTEM's ``Probe.build``.
* **Slices**: transmission ``t = exp(iσV)``, band-limited by abTEM's anti-aliasing
  aperture (2/3 of Nyquist with its cosine taper), then the Fresnel propagator
  ``exp(-iπλΔz k²)`` times the same aperture; abTEM's order (transmit, then propagate).
* **Detector**: the exit wave is never transformed back to real space: after the last
  slice's forward FFT the detector sums ``|Ψ(k)|²`` over abTEM's annular pixel
  selection (``k² >= inner²`` and ``k² < outer²`` in mrad on the full grid) weighted by
  the propagator's ``|aperture|²``. So a probe costs exactly ``2 × slices`` FFTs, the
  FFT floor, where abTEM spends ``2 × slices + 1`` plus its bookkeeping.
* **FFTs** are batched complex64 transforms by torch (MKL), ping-ponging between two
  64-byte-aligned buffers; normalisations are folded into the propagator and the probe.
  Measured for one 224 × 288 transform on one thread (2-core machine, loaded): torch
  0.18 ms, pyfftw ``FFTW_MEASURE`` 0.25–0.48 ms, scipy.fft 0.40–0.53 ms, pyfftw
  ``FFTW_ESTIMATE`` 0.81–0.89 ms. ``FFTW_MEASURE`` picks its algorithm by timing, so its
  bits depend on the load; torch's are the same run to run, for 1 or 2 threads and
  whatever the batch (checked byte for byte), and so are the images; on another CPU
  (the H200 machine's host) MKL gave other bits for the same test cell.
* **Denormals**: abTEM normalises a probe to ``Σ|ψ|² = 1/N`` over ``N`` pixels, which
  puts its Fourier tails among float32 denormals: every complex product then took 15×
  longer (3.6 ms instead of 0.25 ms for 8 probes). The engine scales the probe to a mean
  real-space intensity of 1; the scale cancels in the ratio to the incident intensity.
* **CUDA**: the same loop on the GPU (cuFFT through torch). Slices, propagators, probe,
  phase ramps and detector pixels are copied once; a batch holds as many probes as
  :func:`gpu_batch` allows (656 for the quickstart's 224 × 288 grid and 1312 probes,
  two equal batches); the FFTs return new tensors from torch's caching allocator, as
  ``out=`` on CUDA is a transform into a fresh tensor plus a copy (0.93 µs a probe
  against 0.65 µs on an H200). The detector sums in float64 on the GPU and one vector
  comes back. Measured on an H200 (``benchmarks/gpu_stem_check.py``), quickstart case
  (14 slices): 37.2 ms a scan, uploads included, against a 24.0 ms FFT floor (1.55×;
  batches of 256 and 1024 within 1 %, peak 741 MiB at 656); the rest is mostly the 27
  complex products (0.27 µs a probe each). A 35 × 60 grid with 112 probes is
  launch-bound (1.1 ms, 3.4×). cuFFT and MKL round differently: the image agrees with
  the CPU's to 2.7e-5 of its mean (max relative error 6.8e-6), not bit for bit.

The work is split in two: :func:`prepare_scan` (NumPy, with abTEM's aperture and
interaction constant) turns the potential and the probe into the arrays the loop reads,
a :class:`PreparedScan`; :func:`scan` (NumPy and torch only) runs the loop on a device.

The image is the fraction of the incident probe intensity reaching the detector, as
abTEM reports it (its probes are normalised to unit intensity).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import NDArray

from hpcbench.optics import wavelength

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_BATCH",
    "GPU_BATCH_ELEMENTS",
    "GPU_MAX_BATCH",
    "PreparedScan",
    "antialias_aperture",
    "gpu_batch",
    "multislice_haadf",
    "prepare_scan",
    "scan",
]

# Probes per batch: two buffers of 8 probes of a 224 × 288 complex64 grid are 8.3 MB.
# Quickstart grid, 1312 probes, one thread: batch 4 and 8 within 10 % of each other,
# 16 and 32 about 25 % slower (the buffers leave the cache).
DEFAULT_BATCH = 8

# On a GPU every elementwise step and FFT is one pass over the whole batch in device
# memory, so a batch only has to be large enough to fill the GPU: 2**26 complex64
# values (512 MiB, 1040 grids of 224 × 288) a buffer, at most GPU_MAX_BATCH probes.
GPU_BATCH_ELEMENTS = 2**26
GPU_MAX_BATCH = 1024
# Grids of complex64 alive per probe at once: the wave, the transform being written,
# cuFFT's work area and the detector's gathered copy; only this fraction of the free
# memory is planned for.
_GPU_GRIDS_PER_PROBE = 4
_GPU_MEMORY_FRACTION = 0.5


class PreparedScan(NamedTuple):
    """The arrays the multislice loop reads, ready for any device.

    Attributes
    ----------
    transmission : ndarray of complex64, shape (slices, nx, ny)
        Band-limited transmission function of each slice.
    propagators : ndarray of complex64, shape (m, nx, ny)
        Fresnel propagators of the ``m`` distinct slice thicknesses (before the last
        slice), times the aperture and the inverse FFT's ``1 / (nx ny)``.
    propagator_index : ndarray of int64, shape (slices - 1,)
        Which propagator follows each slice but the last.
    probe : ndarray of complex64, shape (nx, ny)
        The probe at the origin in Fourier space (FFT order), scaled so an unnormalised
        inverse FFT gives a mean real-space intensity of 1.
    ramp_x : ndarray of complex64, shape (sx, nx, 1)
        ``exp(-2πi kx x)`` for each scan column ``x``.
    ramp_y : ndarray of complex64, shape (sy, 1, ny)
        ``exp(-2πi ky y)`` for each scan row ``y``.
    pixels : ndarray of int64, shape (n,)
        Flat indices of the detector's pixels on the ``(nx, ny)`` grid.
    weights : ndarray of float64, shape (n,)
        ``|aperture|²`` at those pixels over the incident intensity ``Σ|Ψ₀(k)|²``.
    """

    transmission: NDArray[np.complex64]
    propagators: NDArray[np.complex64]
    propagator_index: NDArray[np.int64]
    probe: NDArray[np.complex64]
    ramp_x: NDArray[np.complex64]
    ramp_y: NDArray[np.complex64]
    pixels: NDArray[np.int64]
    weights: NDArray[np.float64]

    @property
    def scan_gpts(self) -> tuple[int, int]:
        """Scan ``(sx, sy)``."""
        return int(self.ramp_x.shape[0]), int(self.ramp_y.shape[0])


def _frequencies(
    gpts: tuple[int, int], extent: tuple[float, float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Spatial frequencies ``kx (nx, 1)``, ``ky (1, ny)`` [1/Å] in FFT order."""
    kx = np.fft.fftfreq(gpts[0], extent[0] / gpts[0]).astype(np.float64)
    ky = np.fft.fftfreq(gpts[1], extent[1] / gpts[1]).astype(np.float64)
    return kx[:, None], ky[None, :]


def antialias_aperture(gpts: tuple[int, int], extent: tuple[float, float]) -> NDArray[np.float64]:
    """The anti-aliasing aperture abTEM applies, on the grid, in FFT order.

    Parameters
    ----------
    gpts : tuple of int
        Grid ``(nx, ny)``.
    extent : tuple of float
        Cell ``(Lx, Ly)`` [Å].

    Returns
    -------
    ndarray of float64, shape (nx, ny)
        1 inside ``cutoff - taper``, a raised cosine to 0 at ``cutoff``, 0 beyond, with
        ``cutoff = c / (2 max(dx, dy))`` and ``taper = τ / max(dx, dy)`` [1/Å] from
        abTEM's ``antialias.cutoff`` ``c`` (2/3) and ``antialias.taper`` ``τ`` settings.
    """
    import abtem

    sampling = max(extent[0] / gpts[0], extent[1] / gpts[1])
    cutoff = float(abtem.config.get("antialias.cutoff")) / sampling / 2
    taper = float(abtem.config.get("antialias.taper")) / sampling
    kx, ky = _frequencies(gpts, extent)
    k = np.sqrt(kx**2 + ky**2)
    if taper <= 0.0:
        return (k < cutoff).astype(np.float64)
    array = 0.5 * (1 + np.cos(np.pi * (k - cutoff + taper) / taper))
    array[k > cutoff] = 0.0
    result: NDArray[np.float64] = np.where(k > cutoff - taper, array, 1.0)
    return result


def _annular_mask(
    gpts: tuple[int, int], extent: tuple[float, float], energy: float, inner: float, outer: float
) -> NDArray[np.bool_]:
    """Pixels of abTEM's ``AnnularDetector`` on the full grid (FFT order), inner <= θ < outer."""
    scale = wavelength(energy) * 1e3  # [mrad per 1/Å]
    theta_x = np.fft.fftfreq(gpts[0]) * gpts[0] * (scale / extent[0])
    theta_y = np.fft.fftfreq(gpts[1]) * gpts[1] * (scale / extent[1])
    theta2 = theta_x[:, None] ** 2 + theta_y[None, :] ** 2
    mask: NDArray[np.bool_] = (theta2 >= inner**2) & (theta2 < outer**2)
    return mask


def gpu_batch(gpts: tuple[int, int], probes: int, *, free_bytes: int) -> int:
    """Probes per batch on a GPU: enough to fill it, within its free memory.

    Parameters
    ----------
    gpts : tuple of int
        Grid ``(nx, ny)``.
    probes : int
        Probes in the scan, ``>= 1``.
    free_bytes : int
        Free device memory [bytes] (``torch.cuda.mem_get_info()[0]``).

    Returns
    -------
    int
        ``min(GPU_BATCH_ELEMENTS // (nx ny), GPU_MAX_BATCH, what half the free memory
        holds at 4 complex64 grids a probe, probes)``, at least 1, then evened out over
        the batches the scan needs: 1312 probes of 224 × 288 give 2 batches of 656, not
        1024 + 288.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    size = gpts[0] * gpts[1]
    per_probe = _GPU_GRIDS_PER_PROBE * np.dtype(np.complex64).itemsize * size
    by_memory = int(free_bytes * _GPU_MEMORY_FRACTION) // per_probe
    batch = max(1, min(GPU_BATCH_ELEMENTS // size, GPU_MAX_BATCH, by_memory, probes))
    batches = math.ceil(probes / batch)
    return math.ceil(probes / batches)


def prepare_scan(
    potential: NDArray[np.float32],
    slice_thickness: NDArray[np.float64],
    extent: tuple[float, float],
    probe: NDArray[np.complex64],
    *,
    energy: float,
    inner: float,
    outer: float,
    scan_gpts: tuple[int, int],
) -> PreparedScan:
    """The arrays :func:`scan` reads, from abTEM's potential and probe (NumPy, float64).

    Parameters are those of :func:`multislice_haadf`.

    Returns
    -------
    PreparedScan
        Transmission functions, propagators, probe, phase ramps and detector weights.
    """
    from abtem.core.energy import energy2sigma

    slices, nx, ny = potential.shape
    gpts = (nx, ny)
    if probe.shape != gpts or len(slice_thickness) != slices or slices < 1:
        raise ValueError(
            f"probe {probe.shape}, {len(slice_thickness)} thicknesses and potential "
            f"{potential.shape} do not match"
        )
    size = nx * ny
    aperture = antialias_aperture(gpts, extent)
    kx, ky = _frequencies(gpts, extent)
    lam = wavelength(energy)

    # Band-limited transmission functions, as abTEM's AntialiasAperture.bandlimit.
    sigma = energy2sigma(energy)
    transmission = np.empty((slices, nx, ny), dtype=np.complex64)
    for index in range(slices):
        t = np.exp(1j * sigma * potential[index].astype(np.float64))
        transmission[index] = np.fft.ifft2(np.fft.fft2(t) * aperture)
    # Propagators with the aperture and the inverse FFT's 1 / size folded in.
    thicknesses = sorted({float(d) for d in slice_thickness[:-1]})
    propagators = np.empty((len(thicknesses), nx, ny), dtype=np.complex64)
    for index, dz in enumerate(thicknesses):
        phase = -np.pi * dz * lam * (kx**2 + ky**2)
        propagators[index] = (np.exp(1j * phase) * aperture / size).astype(np.complex64)
    propagator_index = np.array(
        [thicknesses.index(float(d)) for d in slice_thickness[:-1]], dtype=np.int64
    )
    # The last propagator only scales |Ψ|² by aperture²: detector weights, normalised to
    # the incident intensity Σ|Ψ₀(k)|².
    # Scaled to a mean real-space intensity of 1, away from float32 denormals.
    spectrum = np.fft.fft2(probe.astype(np.complex128))
    spectrum *= np.sqrt(size / float(np.sum(np.abs(probe.astype(np.complex128)) ** 2)))
    incident = float(np.sum(np.abs(spectrum) ** 2))
    mask = _annular_mask(gpts, extent, energy, inner, outer)
    pixels = np.flatnonzero(mask).astype(np.int64)
    weights = (aperture.ravel()[pixels] ** 2 / incident).astype(np.float64)
    probe_k = (spectrum / size).astype(np.complex64)

    sx, sy = scan_gpts
    xs = np.arange(sx) * (extent[0] / sx)
    ys = np.arange(sy) * (extent[1] / sy)
    ramp_x = np.exp(-2j * np.pi * kx[None, :, :] * xs[:, None, None]).astype(np.complex64)
    ramp_y = np.exp(-2j * np.pi * ky[None, :, :] * ys[:, None, None]).astype(np.complex64)
    return PreparedScan(
        transmission, propagators, propagator_index, probe_k, ramp_x, ramp_y, pixels, weights
    )


def scan(
    prepared: PreparedScan, *, batch: int | None = None, device: str = "cpu"
) -> NDArray[np.float64]:
    """Run the multislice loop over every probe position (NumPy and torch only).

    Parameters
    ----------
    prepared : PreparedScan
        From :func:`prepare_scan`.
    batch : int or None
        Probes transformed together; ``None``: :data:`DEFAULT_BATCH` on the CPU,
        :func:`gpu_batch` on a GPU.
    device : str
        Torch device: ``"cpu"`` (MKL, bit-reproducible) or ``"cuda"`` / ``"cuda:N"``.

    Returns
    -------
    ndarray of float64, shape (sx, sy)
        Fraction of the incident intensity on the detector at each position.
    """
    import torch

    target = torch.device(device)
    if target.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    _, nx, ny = prepared.transmission.shape
    sx, sy = prepared.scan_gpts
    if batch is None:
        if target.type == "cpu":
            batch = DEFAULT_BATCH
        else:
            free, _ = torch.cuda.mem_get_info(target)
            batch = gpu_batch((nx, ny), sx * sy, free_bytes=free)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if target.type == "cpu":
        return _scan_cpu(prepared, batch)
    return _scan_gpu(prepared, batch, target)


def _scan_cpu(prepared: PreparedScan, batch: int) -> NDArray[np.float64]:
    """The loop on the CPU: in-place FFTs between two buffers, NumPy's detector sum."""
    import torch

    slices, nx, ny = prepared.transmission.shape
    sx, sy = prepared.scan_gpts
    size = nx * ny
    index_x, index_y = np.divmod(np.arange(sx * sy), sy)
    ramp_x = torch.from_numpy(prepared.ramp_x)
    ramp_y = torch.from_numpy(prepared.ramp_y)
    transmission_t = torch.from_numpy(prepared.transmission)
    propagators_t = torch.from_numpy(prepared.propagators)
    probe_t = torch.from_numpy(prepared.probe)
    flat_t = torch.from_numpy(prepared.pixels)
    weights = prepared.weights
    following = [int(i) for i in prepared.propagator_index]

    result = np.empty(sx * sy, dtype=np.float64)
    # Two 64-byte-aligned buffers: each FFT reads one and writes the other.
    real_space = torch.empty((batch, nx, ny), dtype=torch.complex64)
    fourier = torch.empty((batch, nx, ny), dtype=torch.complex64)
    with torch.inference_mode():
        for start in range(0, sx * sy, batch):
            stop = min(start + batch, sx * sy)
            count = stop - start
            here, there = real_space[:count], fourier[:count]
            rows = torch.from_numpy(index_x[start:stop])
            columns = torch.from_numpy(index_y[start:stop])
            torch.mul(ramp_x[rows], ramp_y[columns], out=there)
            there.mul_(probe_t)
            torch.fft.ifft2(there, out=here, norm="forward")
            for index in range(slices):
                here.mul_(transmission_t[index])
                torch.fft.fft2(here, out=there)
                if index == slices - 1:
                    break
                there.mul_(propagators_t[following[index]])
                torch.fft.ifft2(there, out=here, norm="forward")
            detected = there.reshape(count, size)[:, flat_t].numpy().astype(np.complex128)
            # NumPy's pairwise sum, one thread: the same bits whatever the thread count.
            result[start:stop] = np.sum((detected.real**2 + detected.imag**2) * weights, axis=1)
    return result.reshape(sx, sy)


def _scan_gpu(prepared: PreparedScan, batch: int, device: torch.device) -> NDArray[np.float64]:
    """The loop on a GPU: FFTs into fresh tensors, the detector summed on the device."""
    import torch

    slices, nx, ny = prepared.transmission.shape
    sx, sy = prepared.scan_gpts
    size = nx * ny
    probes = sx * sy

    def upload(array: NDArray[np.generic]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    ramp_x, ramp_y = upload(prepared.ramp_x), upload(prepared.ramp_y)
    transmission_t = upload(prepared.transmission)
    propagators_t = upload(prepared.propagators)
    probe_t = upload(prepared.probe)
    flat_t = upload(prepared.pixels)
    weights_t = upload(prepared.weights)
    index_x, index_y = np.divmod(np.arange(probes), sy)
    rows_t, columns_t = upload(index_x), upload(index_y)
    following = [int(i) for i in prepared.propagator_index]

    result = torch.empty(probes, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for start in range(0, probes, batch):
            stop = min(start + batch, probes)
            wave = ramp_x[rows_t[start:stop]] * ramp_y[columns_t[start:stop]]
            wave.mul_(probe_t)
            wave = torch.fft.ifft2(wave, norm="forward")
            for index in range(slices):
                wave.mul_(transmission_t[index])
                wave = torch.fft.fft2(wave)
                if index == slices - 1:
                    break
                wave.mul_(propagators_t[following[index]])
                wave = torch.fft.ifft2(wave, norm="forward")
            detected = torch.view_as_real(wave.reshape(stop - start, size)[:, flat_t]).double()
            result[start:stop] = torch.mv(detected.square().sum(dim=-1), weights_t)
            del wave, detected
    values: NDArray[np.float64] = result.cpu().numpy()
    return values.reshape(sx, sy)


def multislice_haadf(
    potential: NDArray[np.float32],
    slice_thickness: NDArray[np.float64],
    extent: tuple[float, float],
    probe: NDArray[np.complex64],
    *,
    energy: float,
    inner: float,
    outer: float,
    scan_gpts: tuple[int, int],
    batch: int | None = None,
    device: str = "cpu",
) -> NDArray[np.float64]:
    """Annular-detector signal of a probe scanned over a periodic cell.

    Parameters
    ----------
    potential : ndarray of float32, shape (slices, nx, ny)
        Projected potential of each slice [eV Å] (abTEM's built ``Potential.array``).
    slice_thickness : ndarray of float, shape (slices,)
        Thickness of each slice [Å].
    extent : tuple of float
        Cell ``(Lx, Ly)`` [Å].
    probe : ndarray of complex64, shape (nx, ny)
        Real-space probe centred at the origin (abTEM's ``Probe.build((0, 0))``),
        normalised as abTEM normalises it.
    energy : float
        Electron energy [eV].
    inner, outer : float
        Detector angles [mrad].
    scan_gpts : tuple of int
        Scan ``(sx, sy)``; the probe visits ``(i Lx / sx, j Ly / sy)`` [Å].
    batch : int or None
        Probes transformed together (the work buffers hold ``batch`` grids); ``None``:
        :data:`DEFAULT_BATCH` on the CPU, :func:`gpu_batch` on a GPU.
    device : str
        Torch device of the loop: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``).

    Returns
    -------
    ndarray of float64, shape (sx, sy)
        Fraction of the incident intensity on the detector at each position.
    """
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    prepared = prepare_scan(
        potential,
        slice_thickness,
        extent,
        probe,
        energy=energy,
        inner=inner,
        outer=outer,
        scan_gpts=scan_gpts,
    )
    return scan(prepared, batch=batch, device=device)
