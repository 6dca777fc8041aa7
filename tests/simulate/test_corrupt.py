"""Corruption: counting statistics, determinism, exact simple cases, distortion of labels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from hpcbench.simulate.corrupt import (
    CorruptionParams,
    add_noise,
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
        "contrast",
        "brightness",
    ]
    assert sample_corruption(Corruption(), 0).as_columns()["dose"] is None
