"""Fréchet distance between image sets in a feature space (FID-style).

The Fréchet distance between two Gaussians fitted to the features of two image sets
is ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Heusel et al. 2017), computed as
in pytorch-fid's ``calculate_frechet_distance``.

Feature extractors
------------------
The published FID uses Inception-v3 pool features (:class:`InceptionFeatures`,
pytorch-fid's network); its weights need a download, which hpcbench never does at run
time, so it needs a local copy of the weights file. The default is
:class:`SpectralFeatures`, hand-crafted features that need no weights. **FID values
computed with SpectralFeatures are not comparable to published FIDs** (nor between
extractors); they only rank image sets by their distance to a reference set under the
same extractor.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, ndimage

from hpcbench.metrics.distributions import _image_stack, _ring_sums

__all__ = [
    "FIDResult",
    "FeatureExtractor",
    "InceptionFeatures",
    "SpectralFeatures",
    "feature_statistics",
    "fid",
    "frechet_distance",
]

INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def frechet_distance(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    *,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``, as pytorch-fid:
    if the matrix square root is not finite, ``eps * I`` is added to both covariances;
    a negligible imaginary part of the square root (numerical error) is dropped.
    Recent SciPy returns a finite but possibly inaccurate root of a singular or
    ill-conditioned product (with a ``LinAlgWarning``) where older SciPy returned
    non-finite values; that case also takes the ``eps * I`` path, silently.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (D,)
        Feature means [feature units].
    sigma1, sigma2 : array_like, shape (D, D)
        Feature covariances [feature units^2].
    eps : float
        Diagonal offset for a singular product [feature units^2].

    Returns
    -------
    float
        Squared Fréchet distance [feature units^2].

    Raises
    ------
    ValueError
        On mismatched shapes, or a large imaginary part of the matrix square root
        (a diagonal element's imaginary part above 1e-3).
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if m1.shape != m2.shape or m1.ndim != 1:
        raise ValueError(f"mean vectors differ in shape: {m1.shape} != {m2.shape}")
    if s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(f"covariances {s1.shape}, {s2.shape} do not match means {m1.shape}")
    diff = m1 - m2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = np.asarray(linalg.sqrtm(s1 @ s2))
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = np.asarray(linalg.sqrtm((s1 + offset) @ (s2 + offset)))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = float(np.max(np.abs(covmean.imag)))
            raise ValueError(f"matrix square root has a large imaginary part: {largest:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_statistics(features: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and covariance of a feature matrix (rows are samples).

    Parameters
    ----------
    features : array_like, shape (N, D)
        Features of N images [feature units]; N >= 2.

    Returns
    -------
    mu : numpy.ndarray, shape (D,)
        Mean [feature units], float64.
    sigma : numpy.ndarray, shape (D, D)
        Unbiased covariance (``rowvar=False``) [feature units^2], float64.
    """
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {array.shape}")
    mu: NDArray[np.float64] = array.mean(axis=0)
    sigma: NDArray[np.float64] = np.atleast_2d(np.cov(array, rowvar=False))
    return mu, sigma


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a batch of images to feature vectors.

    Attributes
    ----------
    name : str
        Identifier recorded with every FID value (values from different extractors
        are not comparable).
    dimension : int
        Feature dimension D.
    """

    name: str
    dimension: int

    def __call__(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        """Features of shape (N, D) of images of shape (N, H, W)."""
        ...


class SpectralFeatures:
    """Offline hand-crafted image features (``"spectral-v1"``), the default extractor.

    Deterministic, no weights, no randomness. Each image is min-max normalised to
    [0, 1] on its own, then described by:

    * the log10 radially averaged power spectrum (mean removed) in ``spectrum_bins``
      equal rings between 0 and 0.5 [1/px] (sensitive to noise, blur, lattice
      periodicities and slow background variations);
    * intensity quantiles at 5 %, 15 %, ..., 95 % (sensitive to background level,
      contrast and saturation);
    * mean and standard deviation over the image of the local standard deviation in
      windows of 3, 5, 9 and 17 px (texture and noise at several scales).

    This is **not** Inception-v3: FIDs computed with it are not comparable to
    published FIDs; use them only to rank image sets against a common reference.
    The features are unscaled, so the distance is dominated by the features with
    the largest spread (usually the log spectrum, in decades).

    Parameters
    ----------
    spectrum_bins : int
        Number of frequency rings of the spectrum part.
    """

    QUANTILES = tuple(np.linspace(0.05, 0.95, 10).tolist())
    WINDOWS = (3, 5, 9, 17)

    def __init__(self, spectrum_bins: int = 16) -> None:
        if spectrum_bins < 1:
            raise ValueError(f"spectrum_bins must be positive, got {spectrum_bins}")
        self.spectrum_bins = spectrum_bins
        self.name = "spectral-v1"
        self.dimension = spectrum_bins + len(self.QUANTILES) + 2 * len(self.WINDOWS)

    def __call__(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        """Features of shape (N, D) of images of shape (N, H, W) [mixed units]."""
        stack = _image_stack(images)
        if min(stack.shape[1:]) < 2 * self.spectrum_bins:
            raise ValueError(
                f"images of shape {stack.shape[1:]} are too small for "
                f"{self.spectrum_bins} spectrum rings"
            )
        low = stack.min(axis=(1, 2), keepdims=True)
        span = stack.max(axis=(1, 2), keepdims=True) - low
        norm = (stack - low) / np.where(span > 0, span, 1.0)
        out = np.empty((stack.shape[0], self.dimension))
        tiny = 1e-12
        for i, image in enumerate(norm):
            count, _, p_sum = _ring_sums(image[np.newaxis], self.spectrum_bins, False)
            spectrum = np.log10(p_sum / np.maximum(count, 1.0) + tiny)
            quantiles = np.quantile(image, self.QUANTILES)
            local = []
            for size in self.WINDOWS:
                mean = ndimage.uniform_filter(image, size, mode="reflect")
                mean_sq = ndimage.uniform_filter(image**2, size, mode="reflect")
                std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
                local += [float(std.mean()), float(std.std())]
            out[i] = np.concatenate([spectrum, quantiles, local])
        return out


class InceptionFeatures:
    """Inception-v3 pool3 features of pytorch-fid (the standard FID network), 2048-d.

    The network (:mod:`hpcbench.metrics._inception`) reproduces pytorch-fid's
    ``InceptionV3([3])`` with the FID-specific Inception blocks, loaded from a local
    copy of pytorch-fid's weights file (hpcbench never downloads at run time); the
    ``fc`` classifier weights in the file are dropped. PyTorch is imported only when
    an instance is created.

    Input pipeline: each float image is min-max normalised to [0, 1] **on its own**
    (a constant image becomes all zeros) -- our images have arbitrary intensity units,
    whereas pytorch-fid expects RGB images already in [0, 1] -- then replicated to 3
    channels, resized to 299x299 (bilinear, ``align_corners=False``) and scaled to
    [-1, 1], as pytorch-fid. FIDs are therefore comparable to pytorch-fid's on the
    same [0, 1] grayscale images, but per-image normalisation discards absolute
    intensity differences between the sets. The network runs in eval mode under
    ``torch.inference_mode()`` and uses no random numbers.

    Parameters
    ----------
    weights : str or pathlib.Path
        Path of ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid).
    device : str
        Torch device to run on (``"cpu"``, ``"cuda"``, ...).
    batch_size : int
        Images per forward pass.

    Attributes
    ----------
    name : str
        ``"inception-v3-<file stem without the hash suffix>"``, e.g.
        ``"inception-v3-pt_inception-2015-12-05"``.
    dimension : int
        2048.

    Raises
    ------
    FileNotFoundError
        If ``weights`` does not exist.
    ValueError
        If the file lacks keys of the network, has unexpected keys, or tensors of the
        wrong shape (all listed in one message naming the file).
    """

    dimension = 2048

    def __init__(self, weights: str | Path, *, device: str = "cpu", batch_size: int = 32) -> None:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(
                f"Inception-v3 FID weights not found at {path}: download {INCEPTION_WEIGHTS} "
                "(pytorch-fid) on a machine with internet and pass its path; hpcbench never "
                "downloads at run time"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        # lazy: start-up time; the spectral extractor and the FID formula need no torch
        import torch

        from hpcbench.metrics._inception import FIDInceptionV3

        stem = path.name.split(".")[0]
        stem = re.sub(r"-[0-9a-f]{8}$", "", stem)
        self.name = f"inception-v3-{stem}"
        self.batch_size = batch_size
        self._device = torch.device(device)
        try:
            loaded = torch.load(path, map_location=self._device, weights_only=True)
        except Exception as error:
            raise ValueError(f"{path}: cannot be read as a PyTorch state dict: {error}") from error
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(loaded).__name__}")
        state = {k: v for k, v in loaded.items() if not str(k).startswith("fc.")}
        network = FIDInceptionV3()
        expected = network.state_dict()
        optional = {k for k in expected if k.endswith(".num_batches_tracked")}
        missing = sorted(set(expected) - set(state) - optional)
        unexpected = sorted(set(state) - set(expected))
        mismatched = sorted(
            f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(expected[k].shape)}"
            for k in set(state) & set(expected)
            if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape
        )
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append(f"shape mismatches {mismatched}")
        if problems:
            raise ValueError(f"{path}: not pytorch-fid Inception weights: " + "; ".join(problems))
        network.load_state_dict(state, strict=False)
        self._network = network.to(self._device).eval()

    def __call__(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        """Pool3 features of shape (N, 2048) of images of shape (N, H, W) [1]."""
        import torch  # lazy: start-up time; the spectral extractor needs no torch

        stack = _image_stack(images)
        low = stack.min(axis=(1, 2), keepdims=True)
        span = stack.max(axis=(1, 2), keepdims=True) - low
        norm = (stack - low) / np.where(span > 0, span, 1.0)
        parts = []
        with torch.inference_mode():
            for start in range(0, norm.shape[0], self.batch_size):
                batch = torch.as_tensor(
                    norm[start : start + self.batch_size], dtype=torch.float32
                ).to(self._device)
                batch = batch.unsqueeze(1).expand(-1, 3, -1, -1)
                parts.append(self._network(batch).double().cpu().numpy())
        out: NDArray[np.float64] = np.concatenate(parts, axis=0)
        return out


@dataclass(frozen=True)
class FIDResult:
    """Fréchet distance between two image sets.

    Attributes
    ----------
    value : float
        Squared Fréchet distance [feature units^2].
    extractor : str
        Name of the feature extractor (values of different extractors differ in scale).
    n_a, n_b : int
        Number of images in each set.
    """

    value: float
    extractor: str
    n_a: int
    n_b: int


def _features(
    images: NDArray[np.float64], extractor: FeatureExtractor, batch_size: int
) -> NDArray[np.float64]:
    """Run the extractor over the images in batches."""
    parts = [extractor(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return np.concatenate(parts, axis=0)


def fid(
    images_a: ArrayLike,
    images_b: ArrayLike,
    *,
    extractor: FeatureExtractor | None = None,
    batch_size: int = 64,
) -> FIDResult:
    """Fréchet distance between two image sets in the feature space of ``extractor``.

    Parameters
    ----------
    images_a, images_b : array_like, shape (N, H, W)
        The two image sets [intensity units]; each set needs N >= 2 (and many more
        images than feature dimensions for a stable covariance).
    extractor : FeatureExtractor, optional
        Feature extractor; default :class:`SpectralFeatures` (not comparable to
        published Inception FIDs).
    batch_size : int
        Images per extractor call.

    Returns
    -------
    FIDResult
        The distance [feature units^2], extractor name and set sizes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chosen: FeatureExtractor = SpectralFeatures() if extractor is None else extractor
    a, b = _image_stack(images_a, "images_a"), _image_stack(images_b, "images_b")
    mu_a, sigma_a = feature_statistics(_features(a, chosen, batch_size))
    mu_b, sigma_b = feature_statistics(_features(b, chosen, batch_size))
    value = frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    return FIDResult(value=value, extractor=chosen.name, n_a=a.shape[0], n_b=b.shape[0])
