"""Intensity-histogram KL divergence and radial power spectra on self-made image sets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from hpcbench.metrics.distributions import (
    histogram_kl,
    intensity_histogram,
    kl_divergence,
    power_spectrum_distance,
    radial_power_spectrum,
    saturate_normalize,
)


def _lattice(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Sharp periodic atom-like images with a random phase each."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        px, py = rng.uniform(0, 2 * np.pi, 2)
        out.append(np.cos(2 * np.pi * x / 8 + px) * np.cos(2 * np.pi * y / 8 + py))
    return np.asarray(out) + 0.05 * rng.normal(size=(n, size, size))


def test_saturate_normalize_clips_at_sigma_and_maps_to_unit_interval() -> None:
    rng = np.random.default_rng(1)
    images = rng.normal(5.0, 2.0, size=(4, 32, 32))
    images[0, 0, 0] = 1000.0  # outlier is saturated
    out = saturate_normalize(images)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    mean, std = images.mean(), images.std()
    expected = np.clip(images, mean - 3.5 * std, mean + 3.5 * std)
    expected = 2 * (expected - expected.min()) / (expected.max() - expected.min()) - 1
    np.testing.assert_allclose(out, expected)
    assert np.all(saturate_normalize(np.full((2, 4, 4), 3.0)) == 0)


def test_intensity_histogram_is_a_probability_vector() -> None:
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(3, 16, 16))
    for normalize in ("saturate", "minmax", "none"):
        hist = intensity_histogram(images, bins=32, normalize=normalize)
        assert hist.shape == (32,)
        assert hist.sum() == pytest.approx(1.0)
        assert (hist >= 0).all()
    counts, _ = np.histogram(images, bins=8, range=(0, 1))
    np.testing.assert_allclose(
        intensity_histogram(images, bins=8, normalize="none"), counts / counts.sum()
    )


def test_kl_matches_scipy_entropy_on_smoothed_inputs() -> None:
    rng = np.random.default_rng(3)
    p, q = rng.uniform(size=50), rng.uniform(size=50)
    p[:5] = 0.0
    q[10:15] = 0.0
    eps = 1e-10
    ps = p / p.sum() + eps
    qs = q / q.sum() + eps
    assert kl_divergence(p, q, eps=eps) == pytest.approx(stats.entropy(ps, qs), rel=1e-12)


def test_kl_self_zero_asymmetric_and_two_bin_case() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert kl_divergence(p, q, eps=0.0) == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-8)
    assert kl_divergence(q, p) == pytest.approx(0.9 * np.log(1.8) + 0.1 * np.log(0.2), rel=1e-8)
    assert kl_divergence(p, q) != pytest.approx(kl_divergence(q, p))
    assert kl_divergence([1.0, 0.0], [0.0, 1.0], eps=0.0) == np.inf
    with pytest.raises(ValueError):
        kl_divergence([1.0, -1.0], [1.0, 1.0])


def test_histogram_kl_is_zero_for_a_scaled_copy_and_grows_with_noise() -> None:
    images = _lattice(4)
    assert histogram_kl(images, 3.0 * images + 7.0, bins=64) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(4)
    kls = [
        histogram_kl(images, images + s * rng.normal(size=images.shape), bins=64)
        for s in (0.1, 0.3, 1.0)
    ]
    assert kls[0] < kls[1] < kls[2]


def test_white_noise_spectrum_is_flat_at_its_variance() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 2.0, size=(8, 64, 64))
    freq, power = radial_power_spectrum(noise)
    assert freq.shape == power.shape == (32,)
    assert 0 < freq[0] < freq[-1] <= 0.5 * np.sqrt(2)
    slope = np.polyfit(np.log10(freq), np.log10(power), 1)[0]
    assert abs(slope) < 0.05
    assert np.mean(power) == pytest.approx(4.0, rel=0.05)
    _, windowed = radial_power_spectrum(noise, window=True)
    assert np.mean(windowed) == pytest.approx(4.0, rel=0.05)


def test_gaussian_blur_spectrum_decays_like_the_closed_form() -> None:
    rng = np.random.default_rng(6)
    sigma = 1.5
    noise = rng.normal(size=(8, 128, 128))
    blurred = np.stack(
        [ndimage.gaussian_filter(im, sigma, mode="wrap", truncate=8) for im in noise]
    )
    freq, p_white = radial_power_spectrum(noise)
    freq_b, p_blur = radial_power_spectrum(blurred)
    np.testing.assert_allclose(freq, freq_b)
    transfer = p_blur / p_white  # |H(f)|^2 averaged over each ring, noise cancels
    i, j = np.searchsorted(freq, [0.05, 0.15])
    measured = transfer[j] / transfer[i]
    closed = np.exp(-((2 * np.pi * sigma * freq[j]) ** 2)) / np.exp(
        -((2 * np.pi * sigma * freq[i]) ** 2)
    )
    assert measured == pytest.approx(closed, rel=0.03)


def test_power_spectrum_distance_zero_to_self_and_monotone_in_blur() -> None:
    sharp = _lattice(6, seed=7)
    assert power_spectrum_distance(sharp, sharp) == 0.0
    assert power_spectrum_distance(sharp, 2.0 * sharp - 1.0) == pytest.approx(0.0, abs=1e-9)
    distances = [
        power_spectrum_distance(
            sharp, np.stack([ndimage.gaussian_filter(im, s, mode="wrap") for im in sharp])
        )
        for s in (0.5, 1.0, 2.0)
    ]
    assert 0 < distances[0] < distances[1] < distances[2]
    # different image sizes compare over the shared frequency range
    assert np.isfinite(power_spectrum_distance(sharp, _lattice(3, size=48, seed=8)))


def test_frame_statistics_measure_counts_background_and_peaks() -> None:
    """Known Poisson counts, slow background and blob heights are read back."""
    from hpcbench.metrics import frame_statistics

    rng = np.random.default_rng(0)
    shape, pixel = (128, 128), 0.3
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    flat = rng.poisson(50.0, size=(4, *shape)).astype(float)
    stats = frame_statistics(flat, pixel_size=pixel)
    np.testing.assert_allclose(stats["counts"], 50.0, rtol=0.05)
    assert np.all(stats["low_frequency"] < 0.01)
    # a slow cosine background of relative amplitude 0.3 (std 0.3 / √2), attenuated by
    # the 10 Å (33 px) smoothing by exp(-2π² σ² / period²)
    slow = 100.0 * (1.0 + 0.3 * np.cos(2 * np.pi * xx / 128.0))
    sloped = frame_statistics(slow[None], pixel_size=pixel)
    gain = np.exp(-2 * np.pi**2 * (10.0 / pixel) ** 2 / 128.0**2)
    np.testing.assert_allclose(sloped["low_frequency"], 0.3 / np.sqrt(2) * gain, rtol=0.1)
    # five Gaussian blobs (σ 2 px) of height 40 on a flat 100: smoothing at 0.6 Å (2 px)
    # halves them (σ² / (σ² + σ_s²)), and the median background is the flat level
    blobs = np.full(shape, 100.0)
    for x, y in [(20, 20), (60, 30), (100, 100), (30, 90), (90, 60)]:
        blobs += 40.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    peaks = frame_statistics(blobs[None], pixel_size=pixel)
    np.testing.assert_allclose(peaks["peak_contrast"], 20.0 / blobs.mean(), rtol=0.1)
    with pytest.raises(ValueError, match="not positive"):
        frame_statistics(-flat[:1], pixel_size=pixel)
