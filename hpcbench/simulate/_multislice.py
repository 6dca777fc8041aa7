"""Batched multislice engine for HAADF-STEM scans, at the FFT floor.

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
  whatever the batch (checked byte for byte), and so are the images.
* **Denormals**: abTEM normalises a probe to ``Σ|ψ|² = 1/N`` over ``N`` pixels, which
  puts its Fourier tails among float32 denormals: every complex product then took 15×
  longer (3.6 ms instead of 0.25 ms for 8 probes). The engine scales the probe to a mean
  real-space intensity of 1; the scale cancels in the ratio to the incident intensity.

The image is the fraction of the incident probe intensity reaching the detector, as
abTEM reports it (its probes are normalised to unit intensity).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hpcbench.optics import wavelength

__all__ = ["DEFAULT_BATCH", "antialias_aperture", "multislice_haadf"]

# Probes per batch: two buffers of 8 probes of a 224 × 288 complex64 grid are 8.3 MB.
# Quickstart grid, 1312 probes, one thread: batch 4 and 8 within 10 % of each other,
# 16 and 32 about 25 % slower (the buffers leave the cache).
DEFAULT_BATCH = 8


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
    batch: int = DEFAULT_BATCH,
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
    batch : int
        Probes transformed together (the work buffer holds ``batch`` grids).

    Returns
    -------
    ndarray of float64, shape (sx, sy)
        Fraction of the incident intensity on the detector at each position.
    """
    import torch
    from abtem.core.energy import energy2sigma

    slices, nx, ny = potential.shape
    gpts = (nx, ny)
    if probe.shape != gpts or len(slice_thickness) != slices or slices < 1:
        raise ValueError(
            f"probe {probe.shape}, {len(slice_thickness)} thicknesses and potential "
            f"{potential.shape} do not match"
        )
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
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
    propagators: dict[float, NDArray[np.complex64]] = {}
    for dz in {float(d) for d in slice_thickness[:-1]}:
        phase = -np.pi * dz * lam * (kx**2 + ky**2)
        propagators[dz] = (np.exp(1j * phase) * aperture / size).astype(np.complex64)
    # The last propagator only scales |Ψ|² by aperture²: detector weights, normalised to
    # the incident intensity Σ|Ψ₀(k)|².
    # Scaled to a mean real-space intensity of 1, away from float32 denormals.
    spectrum = np.fft.fft2(probe.astype(np.complex128))
    spectrum *= np.sqrt(size / float(np.sum(np.abs(probe.astype(np.complex128)) ** 2)))
    incident = float(np.sum(np.abs(spectrum) ** 2))
    mask = _annular_mask(gpts, extent, energy, inner, outer)
    flat = np.flatnonzero(mask)
    weights = (aperture.ravel()[flat] ** 2 / incident).astype(np.float64)
    probe_k = (spectrum / size).astype(np.complex64)

    sx, sy = scan_gpts
    xs = np.arange(sx) * (extent[0] / sx)
    ys = np.arange(sy) * (extent[1] / sy)
    ramp_x = torch.from_numpy(
        np.exp(-2j * np.pi * kx[None, :, :] * xs[:, None, None]).astype(np.complex64)
    )
    ramp_y = torch.from_numpy(
        np.exp(-2j * np.pi * ky[None, :, :] * ys[:, None, None]).astype(np.complex64)
    )
    index_x, index_y = np.divmod(np.arange(sx * sy), sy)
    transmission_t = torch.from_numpy(transmission)
    propagators_t = {dz: torch.from_numpy(array) for dz, array in propagators.items()}
    probe_t = torch.from_numpy(probe_k)
    flat_t = torch.from_numpy(flat)

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
                there.mul_(propagators_t[float(slice_thickness[index])])
                torch.fft.ifft2(there, out=here, norm="forward")
            detected = there.reshape(count, size)[:, flat_t].numpy().astype(np.complex128)
            # NumPy's pairwise sum, one thread: the same bits whatever the thread count.
            result[start:stop] = np.sum((detected.real**2 + detected.imag**2) * weights, axis=1)
    return result.reshape(sx, sy)
