"""Seeded corruption of clean crops: scan distortion, blur, background, dose, noise.

:func:`corrupt` is a pure function of ``(clean, params, seed)`` (DESIGN.md, rule 1):
the same inputs give the same bytes, so a dose or noise ablation reuses one clean
simulation. Its randomness comes from five independent child streams of ``seed``
(scan distortion, background, counting noise, read noise, correlated noise), so
switching one effect off never changes the draws of another.

Scan distortion convention
--------------------------
:func:`scan_distortion` returns displacement fields ``(dy, dx)`` [px]: output pixel
``(r, c)`` shows the clean image at row ``r + dy[r, c]`` and column ``c + dx[r, c]``
(plus ``border`` when the clean crop is padded). A feature at clean pixel coordinates
``(x, y)`` therefore appears where ``(x', y') + (dx, dy)(x', y') = (x, y)``;
:func:`distort_sites` solves this for label coordinates, so masks drawn from the moved
sites line up with the distorted image.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.random import Generator, SeedSequence
from numpy.typing import NDArray
from scipy import ndimage

from hpcbench.simulate.labels import Sites
from hpcbench.study import Corruption, sample_param

__all__ = [
    "CorruptionParams",
    "add_noise",
    "correlated_noise",
    "corrupt",
    "distort",
    "distort_sites",
    "distortion_border",
    "sample_corruption",
    "scan_distortion",
]

# Child streams of a corruption seed; fixed so one effect's draws never shift another's.
# New effects get new keys at the end: reusing or reordering one would change the
# images of every existing dataset.
_DISTORTION, _BACKGROUND, _COUNTS, _READ, _CORRELATED = range(5)
# Random Fourier modes of the background field: a stationary Gaussian field with a
# squared-exponential covariance; 32 modes give a field whose one-point distribution is
# close to Gaussian at the cost of one (rows × 64) · (64 × cols) product (einsum, not BLAS:
# measured here, a multithreaded BLAS on a loaded node took 20-60 ms for it, einsum ~1 ms).
_BACKGROUND_MODES = 32
# Log-std of the log-normal background: contamination varies by about ±50 % over a
# correlation length.
_BACKGROUND_LOG_STD = 0.5


@dataclass(frozen=True)
class CorruptionParams:
    """The corruption of one image (fixed values drawn from a :class:`Corruption`).

    Attributes
    ----------
    dose : float or None
        Electron dose [e/Å²]; ``None`` for no counting noise.
    read_noise : float
        Gaussian detector noise std, in units of the clean image's mean.
    blur : float
        Source-size Gaussian std [Å].
    jitter : float
        Std of the per-scan-line horizontal shifts [Å].
    drift : float
        Sample drift over the frame [Å], in a random direction.
    background : float
        Mean of the contamination-like background, in units of the clean image's mean.
    background_scale : float
        Correlation length of the background [Å].
    correlated_noise : float
        Std of the additive, spatially correlated Gaussian noise, in units of the clean
        image's mean.
    noise_correlation : float
        Std of the Gaussian that correlates that noise [Å].
    contrast, brightness : float
        Final linear map ``contrast · I + brightness``.
    """

    dose: float | None = None
    read_noise: float = 0.0
    blur: float = 0.0
    jitter: float = 0.0
    drift: float = 0.0
    background: float = 0.0
    background_scale: float = 20.0
    correlated_noise: float = 0.0
    noise_correlation: float = 0.5
    contrast: float = 1.0
    brightness: float = 0.0

    def as_columns(self) -> dict[str, float | None]:
        """The parameters as ``{name: value}`` for table columns (``dose`` may be None)."""
        return asdict(self)


def sample_corruption(spec: Corruption, rng: Generator | int | SeedSequence) -> CorruptionParams:
    """Draw one image's corruption parameters.

    Parameters
    ----------
    spec : Corruption
        The dataset's corruption (fixed values, choices or ranges).
    rng : Generator, int or SeedSequence
        Randomness; parameters are drawn in the fixed order dose, read_noise, blur,
        jitter, drift, background, contrast, brightness, correlated_noise,
        background_scale (fixed values draw nothing). The later ones come last so a
        spec that leaves them fixed draws the same values as before they could vary.
    """
    generator = np.random.default_rng(rng)
    dose = None if spec.dose is None else sample_param(spec.dose, generator)
    read_noise = sample_param(spec.read_noise, generator)
    blur = sample_param(spec.blur, generator)
    jitter = sample_param(spec.jitter, generator)
    drift = sample_param(spec.drift, generator)
    background = sample_param(spec.background, generator)
    contrast = sample_param(spec.contrast, generator)
    brightness = sample_param(spec.brightness, generator)
    return CorruptionParams(
        dose=dose,
        read_noise=read_noise,
        blur=blur,
        jitter=jitter,
        drift=drift,
        background=background,
        correlated_noise=sample_param(spec.correlated_noise, generator),
        background_scale=sample_param(spec.background_scale, generator),
        noise_correlation=float(spec.noise_correlation),
        contrast=contrast,
        brightness=brightness,
    )


def _child(seed: int | SeedSequence, key: int) -> SeedSequence:
    """Child ``key`` of ``seed`` without mutating it (``SeedSequence.spawn`` does)."""
    if isinstance(seed, SeedSequence):
        return SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, key))
    return SeedSequence(seed, spawn_key=(key,))


def _scan_model(
    shape: tuple[int, int], params: CorruptionParams, pixel_size: float, seed: int | SeedSequence
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Drift vector over the frame ``(Dx, Dy)`` [px] and per-line shifts (rows,) [px]."""
    rng = np.random.default_rng(_child(seed, _DISTORTION))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    lines = rng.standard_normal(shape[0])
    total = params.drift / pixel_size
    drift = np.array([total * math.cos(angle), total * math.sin(angle)])
    return drift, lines * (params.jitter / pixel_size)


def _frame_time(
    x: NDArray[np.float64], y: NDArray[np.float64], shape: tuple[int, int]
) -> NDArray[np.float64]:
    """Acquisition time of position ``(x, y)`` [px] in a raster scan, in frames, centred.

    The fast scan runs along x; time is 0 at the centre of the frame and spans
    ``[-0.5, 0.5)`` over it, so drift distorts the frame without shifting its centre.
    """
    rows, cols = shape
    t: NDArray[np.float64] = (y * cols + x) / (rows * cols) - 0.5
    return t


def scan_distortion(
    shape: tuple[int, int],
    params: CorruptionParams,
    *,
    pixel_size: float,
    seed: int | SeedSequence,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Displacement fields of drift and scan-line jitter.

    Drift: the sample moves by ``drift`` [Å] in a random direction at constant speed
    over the raster scan, so the probe at pixel ``p`` acquired at time ``t`` sees the
    material at ``p - D · t`` (an affine shear/stretch of the frame). Jitter: each scan
    line is shifted along x by an independent Gaussian of std ``jitter`` [Å].

    Parameters
    ----------
    shape : tuple of int
        Output ``(rows, cols)`` [px].
    params : CorruptionParams
        Uses ``drift`` and ``jitter``.
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed (the same one given to :func:`corrupt`).

    Returns
    -------
    dy, dx : ndarray of float64, shape ``shape``
        Output pixel ``(r, c)`` shows the clean image at ``(r + dy, c + dx)`` [px].
    """
    drift, lines = _scan_model(shape, params, pixel_size, seed)
    rows, cols = shape
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    t = _frame_time(c, r, shape)
    dy = -drift[1] * t
    dx = -drift[0] * t + lines[:, None]
    return dy, dx


def distortion_border(params: CorruptionParams, *, pixel_size: float) -> int:
    """Padding [px] a clean crop needs so the distorted frame samples real image content.

    Covers half the drift plus four standard deviations of jitter, plus two pixels for
    the cubic interpolation. Crop ``geometry.padded(border)`` and pass ``border`` to
    :func:`corrupt`.
    """
    reach = 0.5 * params.drift / pixel_size + 4.0 * params.jitter / pixel_size
    return math.ceil(reach) + 2 if reach > 0 else 0


def distort_sites(
    sites: Sites,
    params: CorruptionParams,
    *,
    shape: tuple[int, int],
    pixel_size: float,
    seed: int | SeedSequence,
) -> Sites:
    """Move sites to where they appear in the distorted image, and keep those inside.

    Solves ``p' + d(p') = p`` for each site ``p`` (fixed-point iteration; the drift part
    contracts by ``|D| / rows`` per step). The jitter of the scan line nearest to ``y'``
    is used: the site's row is exactly where the image shows it.

    Parameters
    ----------
    sites : Sites
        Sites in the undistorted crop's pixel frame [px], e.g. from
        :func:`~hpcbench.simulate.labels.site_table` with ``pad=distortion_border(...)``.
    params : CorruptionParams
        Uses ``drift`` and ``jitter``.
    shape : tuple of int
        Output ``(rows, cols)`` [px].
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed (the same one given to :func:`corrupt`).

    Returns
    -------
    Sites
        Moved sites inside ``[-0.5, cols - 0.5) × [-0.5, rows - 0.5)``.
    """
    x0 = sites.x.astype(np.float64)
    y0 = sites.y.astype(np.float64)
    if params.drift == 0 and params.jitter == 0 and np.all(x0 != 0) and np.all(y0 != 0):
        # No distortion: the iteration below adds only signed zeros, which leave a
        # non-zero coordinate unchanged, and stops after one step.
        return sites.select(sites.inside(shape))
    drift, lines = _scan_model(shape, params, pixel_size, seed)
    x, y = x0.copy(), y0.copy()
    for _ in range(50):
        t = _frame_time(x, y, shape)
        row = np.clip(np.floor(y + 0.5), 0, shape[0] - 1).astype(np.intp)
        x_new = x0 + drift[0] * t - lines[row]
        y_new = y0 + drift[1] * t
        done = max(np.abs(x_new - x).max(initial=0.0), np.abs(y_new - y).max(initial=0.0))
        x, y = x_new, y_new
        if done < 1e-6:
            break
    moved = Sites(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        code=sites.code,
        z_number=sites.z_number,
        vacancy=sites.vacancy,
    )
    return moved.select(moved.inside(shape))


def _background(
    shape: tuple[int, int], scale: float, pixel_size: float, seed: int | SeedSequence
) -> NDArray[np.float64]:
    """Smooth, non-negative, stationary random field of ensemble mean 1.

    ``n``, a sum of random Fourier modes with wavevectors ``k ~ N(0, 1/scale²)``
    [rad/Å] and amplitude ``√(2/K)``, is a unit-variance field with covariance
    ``exp(-|Δ|² / (2 scale²))``; the background is the log-normal
    ``exp(σ n - σ²/2)`` with ``σ`` = :data:`_BACKGROUND_LOG_STD`, so its statistics do
    not depend on the frame it is evaluated on.
    """
    rng = np.random.default_rng(_child(seed, _BACKGROUND))
    k = rng.standard_normal((2, _BACKGROUND_MODES)) / scale
    phase = rng.uniform(0.0, 2.0 * math.pi, _BACKGROUND_MODES)
    rows, cols = shape
    x = np.arange(cols)[:, None] * pixel_size
    y = np.arange(rows)[:, None] * pixel_size
    # cos(kx x + φ + ky y) = cos(kx x + φ) cos(ky y) − sin(kx x + φ) sin(ky y)
    ax = k[0] * x + phase
    by = k[1] * y
    rows_part = np.concatenate([np.cos(by), -np.sin(by)], axis=1)
    cols_part = np.concatenate([np.cos(ax), np.sin(ax)], axis=1)
    field = np.einsum("rk,ck->rc", rows_part, cols_part, optimize=False)
    field *= math.sqrt(2.0 / _BACKGROUND_MODES)
    sigma = _BACKGROUND_LOG_STD
    background: NDArray[np.float64] = np.exp(sigma * field - 0.5 * sigma**2)
    return background


def correlated_noise(
    shape: tuple[int, int], correlation: float, *, pixel_size: float, seed: int | SeedSequence
) -> NDArray[np.float64]:
    """Stationary Gaussian noise field of zero mean, unit std and Gaussian correlation.

    White noise filtered by a Gaussian of std ``s = correlation / pixel_size`` [px]
    (scipy's kernel, truncated at ``4 s``), divided by the filter's exact noise gain
    ``Σ w²`` so its ensemble std is 1. Its autocorrelation at lag ``ℓ`` [px] is
    ``exp(-ℓ² / (4 s²))`` (the kernel's self-convolution). The white noise is drawn
    on a frame padded by the kernel radius and cropped after filtering, so every pixel
    sees real noise and the field is stationary up to the edges; the normalisation is
    the ensemble one, not the frame's sample std, so a frame only a few correlation
    lengths wide keeps its natural fluctuation of the amplitude.

    Parameters
    ----------
    shape : tuple of int
        Output ``(rows, cols)`` [px].
    correlation : float
        Correlation length (std of the Gaussian filter) [Å].
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed (the field uses its own child stream).

    Returns
    -------
    ndarray of float64, shape ``shape``
    """
    sd = correlation / pixel_size
    radius = int(4.0 * sd + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sd * sd) * x**2)
    weights /= weights.sum()
    rng = np.random.default_rng(_child(seed, _CORRELATED))
    white = rng.standard_normal((shape[0] + 2 * radius, shape[1] + 2 * radius))
    field = ndimage.correlate1d(white, weights, axis=0, mode="constant")
    field = ndimage.correlate1d(field, weights, axis=1, mode="constant")
    # Separable filter: variance of the filtered unit white noise is (Σ w²)².
    gain = float(np.sum(weights**2))
    cropped: NDArray[np.float64] = field[radius : radius + shape[0], radius : radius + shape[1]]
    return cropped / gain


def corrupt(
    clean: NDArray[np.floating],
    params: CorruptionParams,
    *,
    pixel_size: float,
    seed: int | SeedSequence,
    border: int = 0,
) -> NDArray[np.float32]:
    """Apply one image's corruption to a clean crop.

    In physical order: source-size blur (a Gaussian of std ``blur`` acting on the
    object, i.e. in sample coordinates, so it is applied before the scan distortion
    and leaves scan-line tears sharp, as in real images), scan distortion (drift and
    jitter, see :func:`scan_distortion`; cubic-spline resampling), background
    (``background · mean · g`` with ``g > 0`` a smooth log-normal random field of
    correlation length ``background_scale`` and ensemble mean 1), counting noise
    (``Poisson(dose · pixel_size² · I) / (dose · pixel_size²)``: mean preserved,
    variance ``I / (dose · pixel_size²)``),
    Gaussian read noise (std ``read_noise · mean``), spatially correlated Gaussian
    noise (std ``correlated_noise · mean``, see :func:`correlated_noise`), then
    ``contrast · I + brightness``.
    ``mean`` is the mean of the frame after blur and distortion (without the border).
    Equal to ``add_noise(distort(clean, ...), ...)``, bit for bit.

    Parameters
    ----------
    clean : ndarray, shape (rows + 2 border, cols + 2 border)
        Clean crop, non-negative (HAADF intensity).
    params : CorruptionParams
        What to apply; all-default parameters return ``clean`` unchanged (as float32).
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed; the result is a pure function of
        ``(clean, params, seed)``.
    border : int
        Pixels of extra clean image on every side (see :func:`distortion_border`); the
        output is the interior ``(rows, cols)``. Beyond it the image is mirrored.

    Returns
    -------
    ndarray of float32, shape (rows, cols)
    """
    return add_noise(
        distort(clean, params, pixel_size=pixel_size, seed=seed, border=border),
        params,
        pixel_size=pixel_size,
        seed=seed,
    )


def _gaussian_rows_cols(
    image: NDArray[np.float64],
    weights: NDArray[np.float64],
    tmp: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:
    """Symmetric correlation with ``weights`` along axis 0, then 1, "reflect" ends.

    Every output value is summed in scipy's order for a symmetric kernel
    (``x[i]·w[r]``, then ``(x[i-j] + x[i+j])·w[r-j]`` for ``j = r … 1``), so the result
    equals ``ndimage.gaussian_filter(image, sigma, mode="reflect")`` bit for bit; axis 0
    runs over whole rows at a time instead of through a line buffer per column.
    """
    rows, cols = image.shape
    r = (weights.shape[0] - 1) // 2
    for i in range(rows):
        centre = weights[r]
        for k in range(cols):
            tmp[i, k] = image[i, k] * centre
        for j in range(r, 0, -1):
            a = i - j
            if a < 0:
                a = -a - 1
            b = i + j
            if b >= rows:
                b = 2 * rows - 1 - b
            w = weights[r - j]
            for k in range(cols):
                tmp[i, k] += (image[a, k] + image[b, k]) * w
    line = np.empty(cols + 2 * r)
    for i in range(rows):
        for k in range(cols):
            line[r + k] = tmp[i, k]
        for k in range(r):
            line[r - 1 - k] = tmp[i, k]
            line[r + cols + k] = tmp[i, cols - 1 - k]
        for k in range(cols):
            c = k + r
            total = line[c] * weights[r]
            for j in range(r, 0, -1):
                total += (line[c - j] + line[c + j]) * weights[r - j]
            out[i, k] = total


_compiled_gaussian: list[Callable[..., Any] | None] = []


def _gaussian_reflect(image: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """``ndimage.gaussian_filter(image, sigma, mode="reflect")``, compiled with numba.

    Same kernel (``truncate=4``), same summation order, same bits; about 1.5-2x faster
    on a 128² frame. Falls back to scipy without numba or for a kernel wider than the
    image.
    """
    if not _compiled_gaussian:
        try:
            numba = importlib.import_module("numba")
        except ImportError:
            _compiled_gaussian.append(None)
        else:
            _compiled_gaussian.append(numba.njit(nogil=True, cache=False)(_gaussian_rows_cols))
    kernel = _compiled_gaussian[0]
    sd = float(sigma)
    radius = int(4.0 * sd + 0.5)
    if kernel is None or sd <= 1e-15 or radius >= min(image.shape):
        filtered: NDArray[np.float64] = ndimage.gaussian_filter(image, sigma, mode="reflect")
        return filtered
    # scipy's _gaussian_kernel1d (order 0), reversed for correlation as scipy does
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sd * sd) * x**2)
    weights = np.ascontiguousarray((phi / phi.sum())[::-1])
    source = np.ascontiguousarray(image, dtype=np.float64)
    tmp = np.empty_like(source)
    out = np.empty_like(source)
    kernel(source, weights, tmp, out)
    return out


def distort(
    clean: NDArray[np.floating],
    params: CorruptionParams,
    *,
    pixel_size: float,
    seed: int | SeedSequence,
    border: int = 0,
) -> NDArray[np.float32]:
    """The geometric and optical part of :func:`corrupt`: source-size blur, scan distortion.

    The result is the noise-free image the detector would see: stored as a dataset's
    ``clean`` column, it is aligned with the (equally distorted) labels, and
    ``add_noise(distort(x, ...), ...) == corrupt(x, ...)`` bit for bit.

    Parameters
    ----------
    clean : ndarray, shape (rows + 2 border, cols + 2 border)
        Clean crop.
    params : CorruptionParams
        Only ``blur``, ``drift`` and ``jitter`` are used.
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed (the distortion uses its own child stream).
    border : int
        Pixels of extra clean image on every side; the output is the interior.

    Returns
    -------
    ndarray of float32, shape (rows, cols)
    """
    image = np.asarray(clean, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) <= 2 * border:
        raise ValueError(f"clean must be 2-D and larger than 2·border, got {image.shape}")
    shape = (image.shape[0] - 2 * border, image.shape[1] - 2 * border)
    interior = (slice(border, border + shape[0]), slice(border, border + shape[1]))
    if params.blur > 0:
        image = _gaussian_reflect(image, params.blur / pixel_size)
    if params.drift > 0 or params.jitter > 0:
        dy, dx = scan_distortion(shape, params, pixel_size=pixel_size, seed=seed)
        r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        coordinates = np.stack([r + border + dy, c + border + dx])
        image = ndimage.map_coordinates(image, coordinates, order=3, mode="mirror")
    else:
        image = image[interior]
    return image.astype(np.float32)


def add_noise(
    image: NDArray[np.floating],
    params: CorruptionParams,
    *,
    pixel_size: float,
    seed: int | SeedSequence,
) -> NDArray[np.float32]:
    """The intensity part of :func:`corrupt`: background, noise, gain.

    ``mean`` below is the mean of ``image`` (the noise-free frame). This is the step a
    dose ablation repeats on a stored ``clean`` image with another ``dose``: nothing is
    re-simulated and the labels stay valid.

    The correlated noise is added after the counting noise, next to the read noise: it
    stands for signal-independent noise of the detector chain (amplifier bandwidth,
    probe-position and pickup noise) that spans neighbouring pixels, so it neither
    depends on the dose nor is Poisson-distributed. Its std is ``correlated_noise ·
    mean`` and its correlation length ``noise_correlation`` [Å]; with
    ``correlated_noise = 0`` it draws nothing and the output is as without it.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Noise-free image (the output of :func:`distort`), non-negative.
    params : CorruptionParams
        ``background``, ``background_scale``, ``dose``, ``read_noise``,
        ``correlated_noise``, ``noise_correlation``, ``contrast`` and ``brightness`` are
        used.
    pixel_size : float
        [Å].
    seed : int or SeedSequence
        The image's corruption seed (each effect uses its own child stream).

    Returns
    -------
    ndarray of float32, shape (rows, cols)
    """
    noisy = np.asarray(image, dtype=np.float64)
    if noisy.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {noisy.shape}")
    shape = (int(noisy.shape[0]), int(noisy.shape[1]))
    mean = float(noisy.mean())
    if params.background > 0:
        field = _background(shape, params.background_scale, pixel_size, seed)
        noisy = noisy + params.background * mean * field
    if params.dose is not None:
        scale = params.dose * pixel_size**2
        rng = np.random.default_rng(_child(seed, _COUNTS))
        noisy = rng.poisson(np.clip(noisy, 0.0, None) * scale) / scale
    if params.read_noise > 0:
        rng = np.random.default_rng(_child(seed, _READ))
        noisy = noisy + rng.normal(0.0, params.read_noise * mean, shape)
    if params.correlated_noise > 0:
        field = correlated_noise(shape, params.noise_correlation, pixel_size=pixel_size, seed=seed)
        noisy = noisy + params.correlated_noise * mean * field
    if params.contrast != 1.0 or params.brightness != 0.0:
        noisy = params.contrast * noisy + params.brightness
    return noisy.astype(np.float32)
