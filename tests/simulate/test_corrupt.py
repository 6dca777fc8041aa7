"""Corruption: counting statistics, determinism, exact simple cases, distortion of labels."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from hpcbench.simulate.corrupt import (
    CorruptionParams,
    add_noise,
    correlated_noise,
    corrupt,
    distort,
    distort_sites,
    distortion_border,
    sample_corruption,
    scan_distortion,
)
from hpcbench.simulate.labels import Sites
from hpcbench.study import Corruption, Range

PS = 0.1


def _blob(shape: tuple[int, int], x: float, y: float, sigma: float = 2.0) -> np.ndarray:
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((c - x) ** 2 + (r - y) ** 2) / (2 * sigma**2))


def _site(x: float, y: float) -> Sites:
    return Sites(
        np.array([x], np.float32),
        np.array([y], np.float32),
        np.array([1], np.int16),
        np.array([74], np.int16),
        np.zeros(1, bool),
    )


def _texture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.uniform(0.5, 1.5, (64, 48)), 1.5)


def test_identity() -> None:
    clean = _texture().astype(np.float32)
    out = corrupt(clean, CorruptionParams(), pixel_size=PS, seed=1)
    assert out.dtype == np.float32
    assert out.tobytes() == clean.tobytes()


def test_dose_preserves_mean_and_variance_scales_inverse() -> None:
    value = 0.5
    clean = np.full((128, 128), value)
    products = []
    for dose in [1e2, 1e3, 1e4, 1e5, 1e6]:
        out = corrupt(clean, CorruptionParams(dose=dose), pixel_size=PS, seed=7).astype(np.float64)
        variance = value / (dose * PS**2)
        standard_error = np.sqrt(variance / out.size)
        assert abs(out.mean() - value) < 4 * standard_error
        products.append(out.var() * dose)
    expected = value / PS**2
    np.testing.assert_allclose(products, expected, rtol=0.05)


def test_deterministic_and_seed_dependent() -> None:
    clean = _texture()
    params = CorruptionParams(
        dose=1e4,
        read_noise=0.05,
        blur=0.1,
        jitter=0.05,
        drift=0.5,
        background=0.3,
        background_scale=5.0,
        contrast=1.2,
        brightness=0.1,
    )
    a = corrupt(clean, params, pixel_size=PS, seed=11)
    b = corrupt(clean, params, pixel_size=PS, seed=11)
    c = corrupt(clean, params, pixel_size=PS, seed=12)
    sequence = np.random.SeedSequence(11)
    d = corrupt(clean, params, pixel_size=PS, seed=sequence)
    e = corrupt(clean, params, pixel_size=PS, seed=sequence)  # the sequence is not consumed
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert d.tobytes() == e.tobytes()


def test_blur_is_gaussian_filter() -> None:
    clean = _texture()
    out = corrupt(clean, CorruptionParams(blur=0.25), pixel_size=PS, seed=0)
    expected = ndimage.gaussian_filter(clean, 2.5, mode="reflect").astype(np.float32)
    np.testing.assert_array_equal(out, expected)


def test_contrast_brightness_exact() -> None:
    clean = _texture()
    out = corrupt(clean, CorruptionParams(contrast=2.5, brightness=-0.75), pixel_size=PS, seed=0)
    # The noise-free frame is float32 (the dtype a dataset stores it in), then mapped.
    frame = clean.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(out, (2.5 * frame - 0.75).astype(np.float32))


def test_corrupt_is_add_noise_of_distort_bit_for_bit() -> None:
    clean = np.pad(_texture(), 6, mode="wrap") + 1.0
    params = CorruptionParams(
        dose=3e4,
        read_noise=0.02,
        blur=0.2,
        jitter=0.1,
        drift=0.5,
        background=0.3,
        contrast=1.3,
        brightness=0.1,
    )
    full = corrupt(clean, params, pixel_size=PS, seed=11, border=6)
    frame = distort(clean, params, pixel_size=PS, seed=11, border=6)
    assert frame.dtype == np.float32
    np.testing.assert_array_equal(full, add_noise(frame, params, pixel_size=PS, seed=11))
    # A dose ablation re-noises the same frame: the counting noise shrinks as 1/sqrt(dose).
    counting = replace(params, read_noise=0.0, background=0.0)
    expected = 1.3 * frame.astype(np.float64) + 0.1
    low = add_noise(frame, counting, pixel_size=PS, seed=11) - expected
    high = add_noise(frame, replace(counting, dose=3e6), pixel_size=PS, seed=11) - expected
    assert high.std() / low.std() == pytest.approx(0.1, rel=0.1)


def test_read_noise_std() -> None:
    clean = np.full((128, 128), 2.0)
    out = corrupt(clean, CorruptionParams(read_noise=0.1), pixel_size=PS, seed=3)
    assert out.std() == pytest.approx(0.2, rel=0.03)
    assert out.mean() == pytest.approx(2.0, abs=4 * 0.2 / 128)


def test_background_non_negative_smooth_and_mean() -> None:
    clean = np.full((128, 128), 2.0)
    gradients = []
    for scale, n_seeds in [(2.0, 100), (8.0, 20)]:
        params = CorruptionParams(background=0.5, background_scale=scale)
        means, grads = [], []
        for seed in range(n_seeds):
            added = corrupt(clean, params, pixel_size=PS, seed=seed).astype(np.float64) - 2.0
            assert added.min() > 0.0
            means.append(added.mean())
            grads.append(np.abs(np.diff(added, axis=1)).mean())
        gradients.append(np.mean(grads))
        if scale == 2.0:
            # ensemble mean = background x image mean (frame means scatter by ~18 %)
            assert np.mean(means) == pytest.approx(0.5 * 2.0, rel=0.08)
    # a stationary field: gradients scale as 1 / correlation length
    assert gradients[0] / gradients[1] == pytest.approx(4.0, rel=0.25)


def test_scan_distortion_drift_spans_frame() -> None:
    shape = (64, 32)
    dy, dx = scan_distortion(shape, CorruptionParams(drift=2.0), pixel_size=PS, seed=4)
    span = np.hypot(dy[-1, -1] - dy[0, 0], dx[-1, -1] - dx[0, 0])
    assert span == pytest.approx(20.0 * (64 * 32 - 1) / (64 * 32))
    # the pixel acquired at mid-frame (row 32, column 0) does not move
    assert dy[32, 0] == 0.0
    assert dx[32, 0] == 0.0
    jy, jx = scan_distortion(shape, CorruptionParams(jitter=0.05), pixel_size=PS, seed=4)
    assert np.all(jy == 0)
    assert np.all(jx == jx[:, :1])  # one shift per scan line
    assert jx[:, 0].std() == pytest.approx(0.5, rel=0.3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drifted_blob_peak_matches_distorted_site(seed: int) -> None:
    shape = (96, 96)
    params = CorruptionParams(drift=1.5)
    border = distortion_border(params, pixel_size=PS)
    x, y = 40.3, 55.6
    clean = _blob((shape[0] + 2 * border, shape[1] + 2 * border), x + border, y + border)
    out = corrupt(clean, params, pixel_size=PS, seed=seed, border=border).astype(np.float64)
    moved = distort_sites(_site(x, y), params, shape=shape, pixel_size=PS, seed=seed)
    assert len(moved) == 1
    assert np.hypot(moved.x[0] - x, moved.y[0] - y) > 1.0  # it did move
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]]
    window = np.hypot(c - moved.x[0], r - moved.y[0]) < 10
    weight = out * window
    cx = (weight * c).sum() / weight.sum()
    cy = (weight * r).sum() / weight.sum()
    assert abs(cx - moved.x[0]) < 0.1
    assert abs(cy - moved.y[0]) < 0.1


def test_jittered_blob_row_peak_matches_distorted_site() -> None:
    shape = (64, 64)
    params = CorruptionParams(jitter=0.1)
    border = distortion_border(params, pixel_size=PS)
    x, y = 30.2, 33.0
    clean = _blob((shape[0] + 2 * border, shape[1] + 2 * border), x + border, y + border)
    out = corrupt(clean, params, pixel_size=PS, seed=9, border=border).astype(np.float64)
    moved = distort_sites(_site(x, y), params, shape=shape, pixel_size=PS, seed=9)
    row = out[33]
    c = np.arange(shape[1])
    cx = (row * c).sum() / row.sum()
    assert abs(moved.y[0] - 33.0) < 1e-6  # jitter is horizontal only
    assert abs(cx - moved.x[0]) < 0.1
    assert abs(moved.x[0] - x) > 0.05  # it did move


def test_distort_sites_drops_sites_leaving_frame() -> None:
    params = CorruptionParams(drift=3.0)
    sites = Sites(
        np.array([-0.4, 20.0, 39.4], np.float32),
        np.array([-0.4, 20.0, 39.4], np.float32),
        np.zeros(3, np.int16),
        np.zeros(3, np.int16),
        np.zeros(3, bool),
    )
    kept = [
        len(distort_sites(sites, params, shape=(40, 40), pixel_size=PS, seed=s)) for s in range(8)
    ]
    assert max(kept) <= 3
    assert min(kept) < 3  # 30 px of drift pushes a corner site out for some direction
    assert all(k >= 1 for k in kept)  # the centre site stays


def test_sample_corruption_order_and_columns() -> None:
    spec = Corruption(dose=Range(min=1e2, max=1e5, log=True), blur=[0.0, 0.5], brightness=0.2)
    a = sample_corruption(spec, 3)
    assert a == sample_corruption(spec, np.random.default_rng(3))
    assert a.dose is not None
    assert 1e2 <= a.dose <= 1e5
    assert a.blur in (0.0, 0.5)
    assert a.brightness == 0.2
    columns = a.as_columns()
    assert list(columns) == [
        "dose",
        "read_noise",
        "blur",
        "jitter",
        "drift",
        "background",
        "background_scale",
        "correlated_noise",
        "noise_correlation",
        "contrast",
        "brightness",
    ]
    assert sample_corruption(Corruption(), 0).as_columns()["dose"] is None


# ------------------------------------------------------------------ correlated noise

# corrupt(_PINNED_CLEAN, _PINNED_PARAMS, ...) before correlated noise existed (sha256 of
# the float32 bytes). Blur and background are left out: they go through numpy's
# vectorised exp/cos, whose last bit may differ between CPUs.
_PINNED_SHA = "12a0e0a7710324b5fa70a7ab27e29d62c4f9a91a59cce3d22a9c78aa0215cad2"
_PINNED_PARAMS = CorruptionParams(
    dose=1e4, read_noise=0.05, jitter=0.1, drift=0.5, contrast=1.3, brightness=0.1
)


def _pinned_clean() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.5, 2.0, (40, 36))


def test_zero_correlated_noise_is_byte_identical_to_before() -> None:
    for params in [
        _PINNED_PARAMS,
        replace(_PINNED_PARAMS, correlated_noise=0.0, noise_correlation=2.0),
    ]:
        out = corrupt(_pinned_clean(), params, pixel_size=PS, seed=1234, border=4)
        assert hashlib.sha256(out.tobytes()).hexdigest() == _PINNED_SHA


def test_sample_corruption_draws_other_params_as_before() -> None:
    """Values drawn before correlated noise existed; adding a range for it keeps them."""
    old = Corruption(
        dose=[1e3, 1e4], read_noise=Range(min=0, max=0.1), brightness=Range(min=-0.1, max=0.1)
    )
    new = old.model_copy(update={"correlated_noise": Range(min=0.1, max=0.3)})
    for spec in [old, new]:
        params = sample_corruption(spec, 5)
        assert params.dose == 1e4
        assert params.read_noise == 0.08079407897364937
        assert params.brightness == 0.0030651122084283944
    assert sample_corruption(old, 5).correlated_noise == 0.0
    assert 0.1 <= sample_corruption(new, 5).correlated_noise <= 0.3
    assert sample_corruption(new, 5).noise_correlation == 0.5


def _noise_of(params: CorruptionParams, seed: int, value: float = 0.8) -> np.ndarray:
    clean = np.full((256, 256), value)
    return corrupt(clean, params, pixel_size=PS, seed=seed).astype(np.float64) - value


def test_correlated_noise_std_is_amplitude_times_mean() -> None:
    amplitude, value = 0.2, 0.8
    params = CorruptionParams(correlated_noise=amplitude, noise_correlation=0.3)
    noise = np.stack([_noise_of(params, seed, value) for seed in range(8)])
    # 8 frames of 256² px with s = 3 px hold ~8 · 256² / (4π s²) ≈ 4600 independent
    # patches: the std is known to ~1 %, the mean to ~0.015 std.
    assert noise.std() == pytest.approx(amplitude * value, rel=0.03)
    assert abs(noise.mean()) < 0.05 * amplitude * value


@pytest.mark.parametrize("correlation", [0.2, 0.4])
def test_correlated_noise_autocorrelation_is_gaussian(correlation: float) -> None:
    s = correlation / PS  # [px]
    params = CorruptionParams(correlated_noise=0.1, noise_correlation=correlation)
    noise = np.stack([_noise_of(params, seed) for seed in range(8)])
    noise -= noise.mean()
    variance = np.mean(noise**2)
    for lag in [1, 2, 4, 8]:
        along_x = np.mean(noise[:, :, :-lag] * noise[:, :, lag:]) / variance
        along_y = np.mean(noise[:, :-lag, :] * noise[:, lag:, :]) / variance
        # A Gaussian filter of std s correlates white noise with exp(-ℓ² / (4 s²)).
        expected = np.exp(-(lag**2) / (4 * s**2))
        assert along_x == pytest.approx(expected, abs=0.03), lag
        assert along_y == pytest.approx(expected, abs=0.03), lag


def test_correlated_noise_is_filtered_white_noise_of_its_own_stream() -> None:
    """scipy's Gaussian filter on the white noise of child stream 4, over the padded frame."""
    shape, correlation, seed = (48, 40), 0.25, 99
    s = correlation / PS
    radius = int(4 * s + 0.5)
    white = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,))).standard_normal(
        (shape[0] + 2 * radius, shape[1] + 2 * radius)
    )
    filtered = ndimage.gaussian_filter(white, s, mode="constant", truncate=4.0)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-(x**2) / (2 * s**2))
    gain = np.sum((weights / weights.sum()) ** 2)  # std of the filtered white noise
    expected = filtered[radius:-radius, radius:-radius] / gain
    field = correlated_noise(shape, correlation, pixel_size=PS, seed=seed)
    np.testing.assert_allclose(field, expected, rtol=1e-12, atol=1e-12)


def test_correlated_noise_leaves_the_other_draws_alone() -> None:
    """With it on, the image is the old one plus the field: dose, read noise, background
    and distortion realisations are unchanged, in corrupt and in a dose re-noising."""
    clean = _texture()
    base = CorruptionParams(
        dose=1e4, read_noise=0.03, blur=0.2, jitter=0.05, drift=0.3, background=0.2, contrast=1.3
    )
    on = replace(base, correlated_noise=0.1, noise_correlation=0.3)
    border = distortion_border(base, pixel_size=PS)
    frame = distort(clean, base, pixel_size=PS, seed=5, border=border)
    field = correlated_noise(frame.shape, 0.3, pixel_size=PS, seed=5)
    added = 1.3 * 0.1 * float(frame.astype(np.float64).mean()) * field
    for params_off, params_on in [(base, on), (replace(base, dose=1e3), replace(on, dose=1e3))]:
        off = corrupt(clean, params_off, pixel_size=PS, seed=5, border=border)
        with_it = corrupt(clean, params_on, pixel_size=PS, seed=5, border=border)
        renoised = add_noise(frame, params_on, pixel_size=PS, seed=5)
        np.testing.assert_array_equal(renoised, with_it)
        # float32 rounding of values ~1: a few 1e-7
        np.testing.assert_allclose(with_it - off, added, atol=1e-5)
        assert np.abs(with_it - off).max() > 0.01
