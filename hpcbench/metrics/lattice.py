"""Lattice spacing of an image from the first-order peaks of its power spectrum."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import fft, ndimage

__all__ = ["lattice_spacing"]


def _refine(log_power: NDArray[np.float64], i: int, j: int) -> tuple[float, float]:
    """Sub-bin offsets (rows, cols) of a peak by a parabola through 3 log-power values per axis."""
    shifts = []
    for a, b, c in (
        (log_power[i - 1, j], log_power[i, j], log_power[i + 1, j]),
        (log_power[i, j - 1], log_power[i, j], log_power[i, j + 1]),
    ):
        curvature = a - 2.0 * b + c
        shifts.append(0.0 if curvature >= 0 else float(np.clip(0.5 * (a - c) / curvature, -1, 1)))
    return shifts[0], shifts[1]


def lattice_spacing(
    image: NDArray[np.floating],
    *,
    pixel_size: float,
    expected: float | None = None,
    padding: int = 4,
    threshold: float = 0.25,
) -> float:
    """First-order lattice-plane spacing of a crystalline image.

    The image minus its (window-weighted) mean is multiplied by a 2-D Hann window,
    zero-padded ``padding``-fold to a square grid and Fourier transformed. In the
    search band, local maxima of the power spectrum stronger than ``threshold`` times
    the strongest are the candidate reflections; the first-order ring is the one of
    smallest ``|q|`` (within 10 %). Each of its peaks is refined to sub-bin precision by
    a parabola through the log power along each axis (the separable window makes the
    peak separable), and the spacing is ``1 / mean(|q|)``.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Intensity; the field need not hold an integer number of periods.
    pixel_size : float
        [Å].
    expected : float, optional
        Approximate spacing [Å]; the search is then restricted to ``|q|`` within
        ``[0.8, 1.25] / expected``. Otherwise the band is from 3 periods across the
        shorter side of the field to Nyquist.
    padding : int
        Zero-padding factor (finer spectral sampling for the peak fit).
    threshold : float
        Minimum power of a reflection relative to the strongest in the band.

    Returns
    -------
    float
        Spacing [Å] of the first-order reflections.

    Raises
    ------
    ValueError
        If the band holds no peak (a featureless image).
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    rows, cols = data.shape
    window = np.outer(np.hanning(rows), np.hanning(cols))
    centred = (data - (data * window).sum() / window.sum()) * window
    n = padding * max(rows, cols)
    n = fft.next_fast_len(n, real=False)
    power = np.abs(fft.fftshift(fft.fft2(centred, s=(n, n)))) ** 2
    freq = fft.fftshift(fft.fftfreq(n, d=pixel_size))  # [1/Å]
    q = np.hypot(freq[:, None], freq[None, :])
    if expected is not None:
        band = (q >= 0.8 / expected) & (q <= 1.25 / expected)
    else:
        band = (q >= 3.0 / (min(rows, cols) * pixel_size)) & (q < 0.5 / pixel_size)
    band[[0, -1], :] = False  # peaks need neighbours on both sides for the fit
    band[:, [0, -1]] = False
    in_band = np.where(band, power, 0.0)
    strongest = in_band.max()
    if strongest <= 0.0:
        raise ValueError("no spectral peak in the search band: is the image crystalline?")
    local = ndimage.maximum_filter(in_band, size=2 * padding + 1, mode="constant")
    peaks = np.argwhere((in_band == local) & (in_band >= threshold * strongest))
    q_peaks = q[peaks[:, 0], peaks[:, 1]]
    ring = peaks[q_peaks <= 1.1 * q_peaks.min()]
    log_power = np.log(np.maximum(power, strongest * 1e-300))
    step = 1.0 / (n * pixel_size)
    moduli = []
    for i, j in ring:
        di, dj = _refine(log_power, int(i), int(j))
        moduli.append(np.hypot(freq[i] + di * step, freq[j] + dj * step))
    return float(1.0 / np.mean(moduli))
