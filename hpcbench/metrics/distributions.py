"""Distances between image sets: intensity-histogram KL divergence and power spectra.

These compare *sets* of images (e.g. simulated or CycleGAN-translated images against
experimental ones, as in Khan et al. 2023), not images pixel by pixel.

Intensity normalisation
-----------------------
Histograms are computed per *set*: every image of a set is normalised with the same
statistics, computed over all pixels of the set. The default,
:func:`saturate_normalize`, follows Khan et al. 2023: intensities are saturated at
the set mean +/- 3.5 standard deviations and then mapped to [-1, 1] by the set's
minimum and maximum. Per-set normalisation keeps intensity differences between the
images of one set (e.g. thickness contrast) in the histogram, while removing the
arbitrary global scale and offset of each set.

Power spectra
-------------
:func:`radial_power_spectrum` subtracts each image's mean, optionally applies a 2-D
Hann window, and averages ``|FFT|^2 / (H W)`` (divided by the mean squared window
when windowed) over rings of equal spatial frequency; white noise of variance
``s^2`` thus has the flat spectrum ``s^2``. Frequencies are in cycles per pixel
[1/px], between 0 (excluded: the mean is removed) and the Nyquist frequency 0.5.
Without a window the image is treated as periodic, so a discontinuity at opposite
edges leaks power to high frequencies (a streak along the axes); the window removes
that leakage at the cost of smoothing the spectrum over ~2 frequency bins.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FRAME_STATISTICS",
    "frame_statistics",
    "histogram_kl",
    "intensity_histogram",
    "kl_divergence",
    "power_spectrum_distance",
    "radial_power_spectrum",
    "saturate_normalize",
]

Normalization = Literal["saturate", "minmax", "none"]


def _image_stack(images: ArrayLike, name: str = "images") -> NDArray[np.float64]:
    """Validate and convert images to a float64 stack of shape (N, H, W)."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] < 2 or array.shape[2] < 2:
        raise ValueError(f"{name} must have shape (N, H, W) with N >= 1, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold non-finite values")
    return array


def saturate_normalize(images: ArrayLike, sigma: float = 3.5) -> NDArray[np.float64]:
    """Saturate a set of images at mean +/- ``sigma`` std and map it to [-1, 1].

    Statistics are computed over all pixels of the set (per set, not per image), as in
    Khan et al. 2023.

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (H, W)
        Image set [arbitrary intensity units].
    sigma : float
        Saturation level in standard deviations of the set's pixel values [1].

    Returns
    -------
    numpy.ndarray, shape (N, H, W)
        Normalised images in [-1, 1] [1]; all zeros for a constant set.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    stack = _image_stack(images)
    mean, std = float(stack.mean()), float(stack.std())
    clipped = np.clip(stack, mean - sigma * std, mean + sigma * std)
    low, high = float(clipped.min()), float(clipped.max())
    if high <= low:
        return np.zeros_like(stack)
    out: NDArray[np.float64] = 2.0 * (clipped - low) / (high - low) - 1.0
    return out


def _minmax(stack: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map a set to [0, 1] by its minimum and maximum (zeros for a constant set)."""
    low, high = float(stack.min()), float(stack.max())
    if high <= low:
        return np.zeros_like(stack)
    out: NDArray[np.float64] = (stack - low) / (high - low)
    return out


def intensity_histogram(
    images: ArrayLike,
    *,
    bins: int = 256,
    range: tuple[float, float] | None = None,
    normalize: Normalization = "saturate",
) -> NDArray[np.float64]:
    """Histogram of the pixel intensities of an image set as a probability vector.

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (H, W)
        Image set [arbitrary intensity units].
    bins : int
        Number of equal-width bins.
    range : tuple of float, optional
        Histogram range [normalised intensity]. Default (-1, 1) for
        ``normalize="saturate"`` and (0, 1) otherwise. Values outside are dropped.
    normalize : {"saturate", "minmax", "none"}
        Per-set normalisation before binning: :func:`saturate_normalize` (default,
        to [-1, 1]), min/max of the set to [0, 1], or none.

    Returns
    -------
    numpy.ndarray, shape (bins,)
        Bin probabilities [1], summing to 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    stack = _image_stack(images)
    if normalize == "saturate":
        values = saturate_normalize(stack)
        default = (-1.0, 1.0)
    elif normalize == "minmax":
        values, default = _minmax(stack), (0.0, 1.0)
    elif normalize == "none":
        values, default = stack, (0.0, 1.0)
    else:
        raise ValueError(f"unknown normalize {normalize!r}")
    low, high = default if range is None else range
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    total = counts.sum()
    if total == 0:
        raise ValueError(f"no pixel value lies in the histogram range {(low, high)}")
    hist: NDArray[np.float64] = counts.astype(np.float64) / float(total)
    return hist


def _probabilities(x: ArrayLike, name: str, eps: float) -> NDArray[np.float64]:
    """Normalise, add ``eps`` and renormalise a non-negative vector."""
    array = np.asarray(x, dtype=np.float64).ravel()
    if array.size == 0 or not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{name} must be a non-empty, finite, non-negative vector")
    total = float(array.sum())
    if total <= 0:
        raise ValueError(f"{name} sums to zero")
    smoothed = array / total + eps
    out: NDArray[np.float64] = smoothed / smoothed.sum()
    return out


def kl_divergence(p: ArrayLike, q: ArrayLike, *, eps: float = 1e-10) -> float:
    """Kullback-Leibler divergence D_KL(P || Q) = sum P log(P / Q) in nats.

    Both vectors are normalised to sum 1, ``eps`` is added to every bin (so that empty
    bins of Q give a finite value) and they are renormalised.

    Parameters
    ----------
    p, q : array_like, shape (K,)
        Non-negative (unnormalised) probabilities or counts [1].
    eps : float
        Smoothing added to every bin after normalisation [1].

    Returns
    -------
    float
        D_KL(P || Q) [nat], >= 0; 0 for P == Q. Not symmetric.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    pp, qq = _probabilities(p, "p", eps), _probabilities(q, "q", eps)
    if pp.shape != qq.shape:
        raise ValueError(f"p and q differ in size: {pp.size} != {qq.size}")
    if eps == 0 and ((qq == 0) & (pp > 0)).any():
        return float("inf")
    mask = pp > 0
    return float(max(np.sum(pp[mask] * np.log(pp[mask] / qq[mask])), 0.0))


def histogram_kl(images_p: ArrayLike, images_q: ArrayLike, *, bins: int = 256) -> float:
    """KL divergence between the intensity histograms of two image sets.

    Each set is normalised on its own with :func:`saturate_normalize` (Khan et al.
    2023), binned into ``bins`` bins over [-1, 1], and D_KL(P || Q) is returned.

    Parameters
    ----------
    images_p, images_q : array_like, shape (N, H, W)
        The two image sets [arbitrary intensity units]; P is usually the reference
        (experimental) set.
    bins : int
        Number of histogram bins.

    Returns
    -------
    float
        D_KL(P || Q) [nat].
    """
    return kl_divergence(
        intensity_histogram(images_p, bins=bins), intensity_histogram(images_q, bins=bins)
    )


def radial_power_spectrum(
    images: ArrayLike, *, bins: int | None = None, window: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Radially averaged power spectrum, averaged over an image set.

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (H, W)
        Image set [intensity units]; all images of one size.
    bins : int, optional
        Number of frequency rings between 0 and the Nyquist frequency 0.5 [1/px];
        ring ``k`` (1-based) covers ``(k - 1/2, k + 1/2) * 0.5 / bins``. Default
        ``min(H, W) // 2`` (rings one frequency sample wide).
    window : bool
        Apply a 2-D Hann window (see the module docstring).

    Returns
    -------
    frequency : numpy.ndarray, shape (M,)
        Mean radial frequency of the samples in each non-empty ring [1/px].
    power : numpy.ndarray, shape (M,)
        Mean of ``|FFT|^2 / (H W)`` over the ring and the images
        [intensity^2]; white noise of variance ``s^2`` gives ``s^2``.
    """
    count, f_sum, p_sum = _ring_sums(_image_stack(images), bins, window)
    nonempty = count > 0
    frequency: NDArray[np.float64] = f_sum[nonempty] / count[nonempty]
    power: NDArray[np.float64] = p_sum[nonempty] / count[nonempty]
    return frequency, power


def _ring_sums(
    stack: NDArray[np.float64], bins: int | None, window: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-ring sample count, sum of radial frequency and sum of set-mean power."""
    _, height, width = stack.shape
    n_bins = min(height, width) // 2 if bins is None else bins
    if n_bins < 1:
        raise ValueError(f"bins must be positive, got {n_bins}")
    data = stack - stack.mean(axis=(1, 2), keepdims=True)
    norm = float(height * width)
    if window:
        hann = np.outer(np.hanning(height), np.hanning(width))
        data = data * hann
        norm *= float(np.mean(hann**2))
    power2d = np.mean(np.abs(np.fft.fft2(data)) ** 2, axis=0) / norm
    fy = np.fft.fftfreq(height)[:, np.newaxis]
    fx = np.fft.fftfreq(width)[np.newaxis, :]
    radius = np.hypot(fy, fx).ravel()
    index = np.floor(radius * (2 * n_bins) + 0.5).astype(np.intp)
    keep = (index >= 1) & (index <= n_bins)
    idx = index[keep]
    count = np.bincount(idx, minlength=n_bins + 1)[1:].astype(np.float64)
    f_sum = np.bincount(idx, weights=radius[keep], minlength=n_bins + 1)[1:].astype(np.float64)
    p_all = np.bincount(idx, weights=power2d.ravel()[keep], minlength=n_bins + 1)
    p_sum = p_all[1:].astype(np.float64)
    return count, f_sum, p_sum


def power_spectrum_distance(
    images_a: ArrayLike, images_b: ArrayLike, *, window: bool = False
) -> float:
    """RMS difference of the log10 radial power spectra of two image sets.

    Both spectra use the same rings, ``min(H, W) // 2`` over the smaller of the two
    image sizes, so sets of different image sizes are compared over their shared
    frequency range. Each set is normalised with :func:`saturate_normalize` first,
    so the distance ignores the sets' intensity scale and offset.

    Parameters
    ----------
    images_a, images_b : array_like, shape (N, H, W)
        The two image sets [intensity units].
    window : bool
        Apply a Hann window (see :func:`radial_power_spectrum`).

    Returns
    -------
    float
        sqrt(mean_f (log10 P_a(f) - log10 P_b(f))^2) [decades]; 0 for identical sets.
    """
    a, b = saturate_normalize(images_a), saturate_normalize(images_b)
    n_bins = min(a.shape[1], a.shape[2], b.shape[1], b.shape[2]) // 2
    count_a, _, sum_a = _ring_sums(a, n_bins, window)
    count_b, _, sum_b = _ring_sums(b, n_bins, window)
    shared = (count_a > 0) & (count_b > 0)
    pa, pb = sum_a[shared] / count_a[shared], sum_b[shared] / count_b[shared]
    tiny = np.finfo(np.float64).tiny
    diff = np.log10(np.maximum(pa, tiny)) - np.log10(np.maximum(pb, tiny))
    return float(np.sqrt(np.mean(diff**2)))


FRAME_STATISTICS = ("peak_contrast", "peak_snr", "low_frequency", "counts")
"""Names of :func:`frame_statistics`' statistics, in order."""


def frame_statistics(
    images: ArrayLike,
    *,
    pixel_size: float,
    feature: float = 0.6,
    background: float = 6.0,
    low_frequency: float = 10.0,
    peaks: int = 5,
) -> dict[str, NDArray[np.float64]]:
    """Label-free statistics of HAADF frames, to set a simulation's ranges from real ones.

    What makes atoms hard to see, measured without labels so that real frames (their
    training split, never a test label) can calibrate a simulation's corruption ranges:
    compare the percentiles of each statistic between a simulated and a real set
    (``hpcbench compare-sets`` prints them) and widen the ranges that do not cover the
    real values. Per frame, with ``m`` its mean:

    - ``peak_contrast``: median of the ``peaks`` highest local maxima (3 Å apart) of
      the frame smoothed at ``feature`` [Å], above its local background (median over
      ``background`` [Å]), divided by ``m``: how bright the brightest features are;
    - ``peak_snr``: the same heights divided by the std of the frame minus its
      1-px smoothed self (the pixel noise): how far they rise out of the noise;
    - ``low_frequency``: std of the frame smoothed at ``low_frequency`` [Å], over ``m``:
      the slow background (contamination, thickness);
    - ``counts``: ``m² / var``: the counts-equivalent per pixel, all variance included.

    Parameters
    ----------
    images : array_like, shape (n, rows, cols)
        Frames (raw intensities, non-negative mean).
    pixel_size : float
        [Å].
    feature, background, low_frequency : float
        Length scales [Å] (defaults: an atom, a few atoms, a contamination patch).
    peaks : int
        Brightest maxima per frame.

    Returns
    -------
    dict of str to ndarray, shape (n,)
        The statistics named in :data:`FRAME_STATISTICS`.
    """
    from scipy import ndimage  # lazy: start-up time

    stack = _image_stack(images)
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be > 0 [Å], got {pixel_size}")
    size = max(3, round(3.0 / pixel_size))
    window = max(3, round(background / pixel_size))
    out = {name: np.empty(len(stack)) for name in FRAME_STATISTICS}
    for i, frame in enumerate(stack):
        mean = float(frame.mean())
        if not mean > 0:
            raise ValueError(f"image {i}: mean {mean:g} is not positive (HAADF intensities)")
        smooth = ndimage.gaussian_filter(frame, feature / pixel_size)
        local = ndimage.median_filter(ndimage.gaussian_filter(frame, 1.0 / pixel_size), window)
        excess = smooth - local
        maxima = excess[smooth == ndimage.maximum_filter(smooth, size)]
        top = float(np.median(np.sort(maxima)[::-1][:peaks])) if maxima.size else 0.0
        noise = float(np.std(frame - ndimage.gaussian_filter(frame, 1.0)))
        out["peak_contrast"][i] = top / mean
        out["peak_snr"][i] = top / noise if noise > 0 else np.inf
        slow = ndimage.gaussian_filter(frame, low_frequency / pixel_size)
        out["low_frequency"][i] = float(slow.std()) / mean
        variance = float(frame.var())
        out["counts"][i] = mean**2 / variance if variance > 0 else np.inf
    return out
