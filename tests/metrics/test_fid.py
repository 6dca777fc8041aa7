"""Fréchet distance against pytorch-fid's formula, closed forms and the offline extractor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg, ndimage

from hpcbench.metrics.fid import (
    FeatureExtractor,
    FIDResult,
    InceptionFeatures,
    SpectralFeatures,
    feature_statistics,
    fid,
    frechet_distance,
)


def _reference_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):  # type: ignore[no-untyped-def]
    """pytorch-fid's calculate_frechet_distance (scipy based), reimplemented."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component")
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def test_matches_pytorch_fid_reference_on_random_features() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 12))
    b = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    assert mu_a.dtype == sigma_a.dtype == np.float64
    np.testing.assert_allclose(sigma_a, np.cov(a, rowvar=False))
    ours = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert ours == pytest.approx(_reference_frechet(mu_a, sigma_a, mu_b, sigma_b), abs=1e-6)


def test_closed_form_for_diagonal_and_commuting_covariances() -> None:
    rng = np.random.default_rng(1)
    a_diag, b_diag = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((np.sqrt(a_diag) - np.sqrt(b_diag)) ** 2) + np.sum((mu1 - mu2) ** 2)
    value = frechet_distance(mu1, np.diag(a_diag), mu2, np.diag(b_diag))
    assert value == pytest.approx(expected, abs=1e-9)
    # commuting: same eigenvectors, different eigenvalues
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    s1, s2 = q @ np.diag(a_diag) @ q.T, q @ np.diag(b_diag) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-8)


def test_a_set_against_itself_is_zero() -> None:
    rng = np.random.default_rng(2)
    mu, sigma = feature_statistics(rng.normal(size=(100, 8)) @ rng.normal(size=(8, 8)))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    images = rng.normal(size=(40, 32, 32))
    assert fid(images, images).value == pytest.approx(0.0, abs=1e-6)


def test_singular_covariance_uses_the_eps_offset_and_shape_errors() -> None:
    sigma = np.zeros((3, 3))
    assert frechet_distance(np.zeros(3), sigma, np.ones(3), sigma) == pytest.approx(3.0, abs=1e-5)
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def _clean(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:48]
    images = []
    for _ in range(n):
        px, py = rng.uniform(0, 2 * np.pi, 2)
        period = rng.uniform(6.0, 8.0)
        images.append(
            np.cos(2 * np.pi * x / period + px) * np.cos(2 * np.pi * y / period + py)
            + 0.05 * rng.normal(size=x.shape)
        )
    return np.asarray(images)


def test_spectral_features_are_deterministic_with_the_declared_shape() -> None:
    extractor = SpectralFeatures()
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "spectral-v1"
    images = _clean(5, seed=3)
    features = extractor(images)
    assert features.shape == (5, extractor.dimension)
    np.testing.assert_array_equal(features, extractor(images))
    # per-image min-max normalisation: invariant to scale and offset
    np.testing.assert_allclose(extractor(3.0 * images - 2.0), features, atol=1e-9)


def test_spectral_fid_is_monotone_in_noise_and_blur() -> None:
    reference = _clean(60, seed=4)
    other = _clean(60, seed=5)
    rng = np.random.default_rng(6)
    noisy = [
        fid(reference, other + s * rng.normal(size=other.shape)).value for s in (0.0, 0.2, 0.6)
    ]
    assert noisy[0] < noisy[1] < noisy[2]
    blurred = [
        fid(reference, np.stack([ndimage.gaussian_filter(im, s) for im in other])).value
        for s in (0.5, 1.5, 3.0)
    ]
    assert blurred[0] < blurred[1] < blurred[2]


def test_fid_result_fields_and_batching() -> None:
    a, b = _clean(12, seed=7), _clean(9, seed=8)
    result = fid(a, b, batch_size=5)
    assert isinstance(result, FIDResult)
    assert (result.extractor, result.n_a, result.n_b) == ("spectral-v1", 12, 9)
    assert result.value == pytest.approx(fid(a, b, batch_size=64).value, rel=1e-12)


def test_inception_features_need_a_readable_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionFeatures(missing)
    present = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    present.write_bytes(b"")
    with pytest.raises(ValueError, match=r"pt_inception-2015-12-05-6726825d\.pth"):
        InceptionFeatures(present)


def test_importing_fid_does_not_import_torch() -> None:
    code = "import sys, hpcbench.metrics.fid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_spectral_fid_is_monotone_in_background_gradient() -> None:
    reference, other = _clean(60, seed=9), _clean(60, seed=10)
    ramp = np.linspace(0.0, 1.0, 48)[np.newaxis, np.newaxis, :]
    values = [fid(reference, other + g * ramp).value for g in (0.0, 1.0, 4.0)]
    assert values[0] < values[1] < values[2]
