"""Lattice spacing of an image from its power spectrum, and pixel sizes calibrated by it.

The image minus its (window-weighted) mean is multiplied by a 2-D Hann window,
zero-padded and Fourier transformed. A microscope image's spectrum falls steeply with
frequency (thickness, contamination, scan and probe tails: a smooth "1/f" background),
so the strongest peaks of the raw spectrum are often low-frequency features, not
reflections: before this module whitened the spectrum, :func:`lattice_spacing` without
``expected`` took such a feature for the lattice on 4 of 5 real graphene images. Now a
reflection must stand out from the *radial background* by a stated factor
(``contrast``, 40× by default), and frequencies below a floor (``min_periods`` periods
across the shorter side of the field) are never searched. The radial background is the
median power of each annulus, robust to the few reflections an annulus holds, opened
over 7 annuli so that a ring which covers most of its annuli (a few periods across the
field) does not raise it; on the two frequency axes, where scan-line offsets put a
streak, it is raised to the streak's running median. Whitened by it, pure noise is
exponential with median 1: its strongest bin in a 512² to 2048² px image was 21–23×
here, and 40× has a chance of about 1e-5 per image. Candidates are grouped by ``|q|``
into rings (within 10 %; a single pair on a frequency axis is no ring); the
first-order ring is the ring of smallest ``|q|`` whose strongest reflection has at
least ``threshold`` times the power of the strongest ring's. Each reflection of that
ring is refined to sub-bin precision by a parabola through the log power along each
axis (a Gaussian fit of the separable window's main lobe), and the spacing is
``1 / mean(|q|)``.

For a hexagonal lattice of constant ``a`` the first-order lattice planes are the
{10-10} at ``d = a·√3/2`` (graphene: 2.13 Å, the strongest ring of HAADF images of its
honeycomb; the {11-20} at ``a/2`` = 1.23 Å is weaker). :func:`calibrate_pixel_size`
measures that ring in pixels on an image whose pixel size is unknown and returns
``d / spacing`` [Å/px]; it requires the ring to hold at least two Friedel pairs of
reflections (a hexagonal ring has three), so one sharp pair of scan interference or a
single fringe is never taken for the lattice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import fft, ndimage
from scipy.spatial import cKDTree

__all__ = [
    "LATTICES",
    "Calibration",
    "Lattice",
    "calibrate_pixel_size",
    "lattice_spacing",
    "parse_lattice",
]

# Hexagonal lattice constants a [Å] (room-temperature experimental values; the MX2 ones
# as in hpcbench.structures.mx2.MX2_PARAMETERS).
LATTICES: Final[dict[str, float]] = {
    "graphene": 2.46,
    "hBN": 2.50,
    "MoS2": 3.16,
    "MoSe2": 3.29,
    "WS2": 3.15,
    "WSe2": 3.28,
}
_CUSTOM = re.compile(r"^\s*a\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
# Reflections whose |q| are within this fraction of a ring's smallest belong to it (scan
# distortion makes real rings elliptical by a few per cent).
_RING_WIDTH: Final = 0.10
# Largest padded grid [bins per side]: more padding than 2048² bins hold moves a
# refined spacing by under 0.05 % (measured on 512² px honeycombs) at 4× the time.
_MAX_GRID: Final = 2048


@dataclass(frozen=True)
class Lattice:
    """A hexagonal lattice, by name or constant.

    Attributes
    ----------
    name : str
        A name of :data:`LATTICES` or ``a=<value>``.
    a : float
        Lattice constant [Å].
    """

    name: str
    a: float

    @property
    def first_order(self) -> float:
        """Spacing of the first-order {10-10} lattice planes, ``a·√3/2`` [Å]."""
        return self.a * float(np.sqrt(3.0)) / 2.0


def parse_lattice(text: str) -> Lattice:
    """The hexagonal lattice ``text`` names: a key of :data:`LATTICES` or ``a=<Å>``.

    Raises
    ------
    ValueError
        If ``text`` is neither (one line, listing the names).
    """
    for name, a in LATTICES.items():
        if text.strip().lower() == name.lower():
            return Lattice(name, a)
    match = _CUSTOM.match(text)
    if match is not None and 0.0 < float(match.group(1)) < 1e3:
        return Lattice(f"a={float(match.group(1)):g}", float(match.group(1)))
    raise ValueError(
        f"lattice {text!r}: not one of {', '.join(LATTICES)} or a=<lattice constant [Å]>"
    )


@dataclass(frozen=True)
class Calibration:
    """A pixel size measured from a lattice of known constant.

    Attributes
    ----------
    lattice : Lattice
        The lattice assumed.
    spacing : float
        Measured first-order lattice-plane spacing [px].
    pixel_size : float
        ``lattice.first_order / spacing`` [Å/px].
    reflections : int
        Reflections fitted (both members of each Friedel pair).
    contrast : float
        Power of the ring's strongest reflection over the radial background.
    """

    lattice: Lattice
    spacing: float
    pixel_size: float
    reflections: int
    contrast: float


@dataclass(frozen=True)
class _Ring:
    moduli: NDArray[np.float64]  # refined |q| of each reflection [1/length]
    contrast: float


def _refine(power: NDArray[np.float64], i: int, j: int) -> tuple[float, float]:
    """Sub-bin offsets (rows, cols) of a peak by a parabola through 3 log-power values per axis."""
    shifts = []
    floor = power[i, j] * 1e-300
    for values in (power[i - 1 : i + 2, j], power[i, j - 1 : j + 2]):
        a, b, c = np.log(np.maximum(values, floor))
        curvature = a - 2.0 * b + c
        shifts.append(0.0 if curvature >= 0 else float(np.clip(0.5 * (a - c) / curvature, -1, 1)))
    return shifts[0], shifts[1]


def _radial_background(
    power: NDArray[np.float64], radius: NDArray[np.float64], stride: int
) -> NDArray[np.float64]:
    """The spectrum's smooth radial background at every bin.

    The median power of each annulus one unpadded bin wide (sampled every ``stride``
    padded bins), then a grey opening of that profile over 7 annuli: a ring of
    reflections raises the median of its annuli (at a few periods across the field the
    Hann main lobes of six reflections cover most of an annulus) over at most 5 annuli,
    which the opening removes, while a monotone 1/f background or a broad halo passes
    unchanged. Annuli within 2 bins of the origin (the window's main lobe around the
    removed mean) do not count.
    """
    sample = power[::stride, ::stride].ravel()
    rings = np.rint(radius[::stride, ::stride].ravel() / stride).astype(np.int64)
    order = np.lexsort((sample, rings))
    sorted_rings, sorted_power = rings[order], sample[order]
    edges = np.searchsorted(sorted_rings, np.arange(sorted_rings[-1] + 2))
    counts = np.diff(edges)
    medians = np.where(
        counts > 0, sorted_power[np.minimum(edges[:-1] + counts // 2, len(order) - 1)], 0.0
    )
    medians[:2] = medians.max()
    opened = ndimage.grey_opening(medians, size=7, mode="nearest")
    centres = np.arange(len(opened)) * float(stride)
    background: NDArray[np.float64] = np.interp(radius, centres, opened)
    return background


def _raise_to_scan_streaks(
    background: NDArray[np.float64], power: NDArray[np.float64], stride: int
) -> None:
    """Raise ``background`` on the two frequency axes to the running median along them.

    Scan-line offsets and jitter put broadband power on the axis across the fast-scan
    direction (a streak through the origin, as wide as the window's main lobe, ±2
    bins): on 11 of the 21 Pt HAADF images of data/ (amorphous support, no lattice)
    such streaks made single "reflections" 43–128x over the radial background. A
    reflection on an axis must stand out from the streak's running median over ±8 bins
    instead (it covers at most ±2); the strongest left is 40x, a periodic scan
    artefact, which as a single pair on an axis is not taken for a ring.
    """
    n = power.shape[0]
    centre, half = n // 2, 2 * stride
    size = (16 * stride + 1, 1)
    strip = slice(centre - half, centre + half + 1)
    along_rows = ndimage.median_filter(power[:, strip], size=size, mode="nearest")
    background[:, strip] = np.maximum(background[:, strip], along_rows)
    along_cols = ndimage.median_filter(power[strip, :].T, size=size, mode="nearest").T
    background[strip, :] = np.maximum(background[strip, :], along_cols)


def _find_ring(
    data: NDArray[np.float64],
    *,
    pixel_size: float,
    band: tuple[float, float] | None,
    padding: int,
    threshold: float,
    contrast: float,
    min_periods: float,
    min_pairs: int,
) -> _Ring:
    rows, cols = data.shape
    if min(rows, cols) < 8:
        raise ValueError(f"image of {rows}x{cols} px is too small for a lattice spacing")
    window = np.outer(np.hanning(rows), np.hanning(cols))
    centred = (data - (data * window).sum() / window.sum()) * window
    largest = max(rows, cols)
    n = fft.next_fast_len(max(largest, min(padding * largest, _MAX_GRID)), real=False)
    stride = max(1, n // largest)  # bins per unpadded frequency step
    power = np.abs(fft.fftshift(fft.fft2(centred, s=(n, n)))) ** 2
    freq = fft.fftshift(fft.fftfreq(n, d=pixel_size))  # [1/length]
    q = np.hypot(freq[:, None], freq[None, :])
    step = 1.0 / (n * pixel_size)
    floor = min_periods / (min(rows, cols) * pixel_size)
    low, high = (floor, 0.5 / pixel_size) if band is None else band
    low = max(low, floor)
    where = (
        f"between {low * pixel_size:.3g} and {high * pixel_size:.3g} cycles/px"
        if band is not None
        else f"between {min_periods:g} periods across the field and Nyquist"
    )
    strongest_power = float(power.max())
    if strongest_power <= 0.0:
        raise ValueError(f"no spectral peak {where}: the image is flat")
    background = _radial_background(power, q / step, stride)
    _raise_to_scan_streaks(background, power, stride)
    whitened = power / np.maximum(background, strongest_power * 1e-30)
    in_band = (q >= low) & (q <= high)
    in_band[[0, -1], :] = False  # peaks need neighbours on both sides for the fit
    in_band[:, [0, -1]] = False
    candidate = np.where(in_band, whitened, 0.0)
    local = ndimage.maximum_filter(candidate, size=2 * stride + 1, mode="constant")
    peaks = np.argwhere((candidate == local) & (candidate >= contrast))
    if len(peaks) == 0:
        best = float(candidate.max())
        raise ValueError(
            f"no spectral peak stands out from the radial background by {contrast:g}x "
            f"{where} (strongest {best:.3g}x): is the image crystalline at this sampling?"
        )
    peaks = _without_side_lobes(peaks, power[peaks[:, 0], peaks[:, 1]], 8 * stride)
    q_peaks = q[peaks[:, 0], peaks[:, 1]]
    order = np.argsort(q_peaks)
    peaks, q_peaks = peaks[order], q_peaks[order]
    peak_power = power[peaks[:, 0], peaks[:, 1]]
    rings: list[NDArray[np.intp]] = []
    start = 0
    for k in range(1, len(peaks) + 1):
        if k == len(peaks) or q_peaks[k] > q_peaks[start] * (1 + _RING_WIDTH):
            members = np.arange(start, k)
            # One pair on a frequency axis is as likely a scan artefact as a fringe.
            on_axis = np.abs(peaks[members] - n // 2).min(axis=1) <= 2 * stride
            needed = max(min_pairs, 2 if on_axis.all() else 1)
            if _pairs(freq, peaks[members]) >= needed:
                rings.append(members)
            start = k
    if not rings and min_pairs > 1:
        raise ValueError(
            f"no ring of at least {min_pairs} pairs of reflections stands out from the "
            f"radial background by {contrast:g}x {where}: is the lattice hexagonal?"
        )
    if not rings:
        raise ValueError(
            f"no spectral peak stands out from the radial background by {contrast:g}x "
            f"{where} but single pairs on a frequency axis (scan artefacts?)"
        )
    strongest_ring = max(float(peak_power[m].max()) for m in rings)
    ring = next(m for m in rings if peak_power[m].max() >= threshold * strongest_ring)
    moduli = []
    for i, j in peaks[ring]:
        di, dj = _refine(power, int(i), int(j))
        moduli.append(np.hypot(freq[i] + di * step, freq[j] + dj * step))
    best = float(whitened[peaks[ring, 0], peaks[ring, 1]].max())
    return _Ring(np.asarray(moduli, np.float64), best)


def _without_side_lobes(
    peaks: NDArray[np.intp], peak_power: NDArray[np.float64], reach: int
) -> NDArray[np.intp]:
    """Peaks less than 1 % as strong as another within ``reach`` bins removed.

    The Hann window's side lobes (-31 dB at 2.5 bins, -61 dB at 8) of a strong
    reflection stand out from a low background as peaks of their own.
    """
    tree = cKDTree(peaks)
    keep = np.ones(len(peaks), bool)
    for k, neighbours in enumerate(tree.query_ball_point(peaks, r=reach)):
        keep[k] = peak_power[neighbours].max() <= 100.0 * peak_power[k]
    return peaks[keep]


def _pairs(freq: NDArray[np.float64], peaks: NDArray[np.intp]) -> int:
    """Distinct Friedel pairs among reflections: orientations mod 180° over 15° apart."""
    angles = np.sort(np.mod(np.arctan2(freq[peaks[:, 0]], freq[peaks[:, 1]]), np.pi))
    if len(angles) == 0:
        return 0
    gaps = np.diff(np.concatenate([angles, [angles[0] + np.pi]]))
    return max(1, int(np.count_nonzero(gaps > np.radians(15.0))))


def lattice_spacing(
    image: NDArray[np.floating],
    *,
    pixel_size: float,
    expected: float | None = None,
    padding: int = 4,
    threshold: float = 0.25,
    contrast: float = 40.0,
    min_periods: float = 4.0,
) -> float:
    """First-order lattice-plane spacing of a crystalline image.

    See the module docstring for the method: Hann window, zero-padding, power spectrum
    whitened by its radial median, reflections ``contrast``-fold above it grouped into
    rings, the first-order ring's reflections refined to sub-bin precision.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Intensity; the field need not hold an integer number of periods.
    pixel_size : float
        [Å].
    expected : float, optional
        Approximate spacing [Å]; the search is then restricted to ``|q|`` within
        ``[0.8, 1.25] / expected``. Otherwise from ``min_periods`` periods across the
        shorter side of the field to Nyquist.
    padding : int
        Zero-padding factor (finer spectral sampling for the peak fit; the padded grid
        is capped at 2048 bins a side, or the image size).
    threshold : float
        Minimum power of the first-order ring's strongest reflection relative to the
        strongest ring's.
    contrast : float
        Minimum power of a reflection over the median power at its ``|q|``.
    min_periods : float
        Frequencies below this many periods across the shorter side are not searched.

    Returns
    -------
    float
        Spacing [Å] of the first-order reflections.

    Raises
    ------
    ValueError
        If no reflection stands out from the background in the band (a featureless
        or amorphous image, or a lattice finer than the sampling resolves).
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    band = None if expected is None else (0.8 / expected, 1.25 / expected)
    ring = _find_ring(
        data,
        pixel_size=pixel_size,
        band=band,
        padding=padding,
        threshold=threshold,
        contrast=contrast,
        min_periods=min_periods,
        min_pairs=1,
    )
    return float(1.0 / np.mean(ring.moduli))


def calibrate_pixel_size(
    image: NDArray[np.floating],
    lattice: Lattice | str,
    *,
    padding: int = 4,
    threshold: float = 0.25,
    contrast: float = 40.0,
    min_periods: float = 4.0,
) -> Calibration:
    """Pixel size of an image of a hexagonal lattice of known constant.

    Measures the first-order {10-10} ring in pixels (as :func:`lattice_spacing`, with a
    ring of at least two Friedel pairs required) and divides the lattice's first-order
    spacing ``a·√3/2`` [Å] by it.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        Intensity.
    lattice : Lattice or str
        The lattice, or its name for :func:`parse_lattice` (``graphene``, ``WSe2``,
        ``MoS2``, ... or ``a=2.46``).
    padding, threshold, contrast, min_periods
        As for :func:`lattice_spacing`.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError
        If the lattice name is unknown or no hexagonal ring stands out (one line).
    """
    chosen = parse_lattice(lattice) if isinstance(lattice, str) else lattice
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    ring = _find_ring(
        data,
        pixel_size=1.0,
        band=None,
        padding=padding,
        threshold=threshold,
        contrast=contrast,
        min_periods=min_periods,
        min_pairs=2,
    )
    spacing = float(1.0 / np.mean(ring.moduli))
    return Calibration(
        lattice=chosen,
        spacing=spacing,
        pixel_size=chosen.first_order / spacing,
        reflections=len(ring.moduli),
        contrast=ring.contrast,
    )
