"""Atom detection on probability maps and point-matching detection scores.

Coordinates
-----------
Points are ``(x, y)`` pairs in pixels with pixel centres at integer coordinates:
``x`` is the column index and ``y`` the row index, so the centre of pixel
``probability[row, col]`` is ``(col, row)``.

Undefined ratios
----------------
:meth:`DetectionCounts.scores` returns NaN for a 0/0 ratio: precision with no
predictions, recall with no true points, F1 with neither, and the localisation
error with no matched pair. An image with true points but no prediction thus has
precision NaN, recall 0 and F1 0; one with predictions but no true point has
precision 0, recall NaN and F1 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, optimize, sparse, spatial
from skimage import feature

__all__ = [
    "DetectionCounts",
    "detection_counts",
    "find_atoms",
    "find_class_atoms",
    "match_points",
    "site_scores",
]


def _points(points: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate and convert an (n, 2) array of points (empty input gives shape (0, 2))."""
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds non-finite coordinates")
    return array


def _refine(
    image: NDArray[np.float64], rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Sub-pixel (row, col) positions of peaks by a 3-point Gaussian fit per axis.

    Along each axis the offset of a Gaussian through the three values ``a, b, c``
    (centre pixel ``b``) is ``(ln a - ln c) / (2 (ln a - 2 ln b + ln c))``; it is exact
    for Gaussian blobs of any width, whereas a 3x3 intensity-weighted centroid is
    pulled towards the centre pixel (by ~0.3 px at sigma = 1.5 px). Where a value is
    not positive or the log-curvature is not negative (a plateau, e.g. a saturated
    probability), the 3x3 intensity-weighted centroid is used along that axis instead.
    Offsets are clipped to [-0.5, 0.5]; at the image border the edge is replicated
    (offset towards the outside 0 unless the blob decreases inwards).
    """
    padded = np.pad(image, 1, mode="edge")
    r, c = rows + 1, cols + 1
    out = np.empty((rows.size, 2))
    for axis, (step_r, step_c) in enumerate(((1, 0), (0, 1))):
        a = padded[r - step_r, c - step_c]
        b = padded[r, c]
        d = padded[r + step_r, c + step_c]
        # Sum over the orthogonal direction: the 3x3 neighbourhood's marginal.
        if axis == 0:
            lines = [
                padded[r + k, c - 1] + padded[r + k, c] + padded[r + k, c + 1] for k in (-1, 0, 1)
            ]
        else:
            lines = [
                padded[r - 1, c + k] + padded[r, c + k] + padded[r + 1, c + k] for k in (-1, 0, 1)
            ]
        total = lines[0] + lines[1] + lines[2]
        centroid = np.divide(lines[2] - lines[0], total, out=np.zeros_like(total), where=total > 0)
        positive = (a > 0) & (b > 0) & (d > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            la, lb, ld = (np.log(np.where(positive, v, 1.0)) for v in (a, b, d))
            curvature = la - 2.0 * lb + ld
            gaussian = 0.5 * (la - ld) / curvature
        use_gaussian = positive & (curvature < 0) & np.isfinite(gaussian)
        offset = np.clip(np.where(use_gaussian, gaussian, centroid), -0.5, 0.5)
        out[:, axis] = (rows if axis == 0 else cols) + offset
    return out


def _merge_plateaus(
    image: NDArray[np.float64],
    peaks: NDArray[np.intp],
    refined: NDArray[np.float64],
    threshold: float,
) -> NDArray[np.float64]:
    """Replace the peaks on each flat plateau of local maxima by the plateau's centroid.

    A plateau is a connected (8-neighbour) set of more than one pixel that each equal
    the maximum of their 3x3 neighbourhood and are positive and at least ``threshold``,
    as where probabilities saturate at 1. All peaks on one plateau become a single
    point at the mean position of its pixels; other peaks keep their ``refined``
    (row, col) positions.
    """
    is_max = image == ndimage.maximum_filter(image, size=3, mode="nearest")
    is_max &= (image >= threshold) & (image > 0)
    labels, count = ndimage.label(is_max, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return refined
    peak_labels = labels[peaks[:, 0], peaks[:, 1]]
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    on_plateau = (peak_labels > 0) & (sizes[peak_labels] > 1)
    if not on_plateau.any():
        return refined
    plateaus = np.unique(peak_labels[on_plateau])
    rows, cols = np.indices(image.shape)
    centre_row = ndimage.mean(rows, labels, plateaus)
    centre_col = ndimage.mean(cols, labels, plateaus)
    centres = np.column_stack([centre_row, centre_col]).astype(np.float64)
    return np.concatenate([refined[~on_plateau], centres])


def find_atoms(
    probability: ArrayLike,
    *,
    method: Literal["log", "peaks"] = "log",
    threshold: float = 0.5,
    min_sigma: float = 1.0,
    max_sigma: float = 4.0,
    min_distance: int = 2,
    log_threshold: float = 0.05,
) -> NDArray[np.float64]:
    """Atom centres on a class probability map.

    ``method="log"``: pixels with probability below ``threshold`` are set to 0 and
    the Laplacian of Gaussian blob detector (:func:`skimage.feature.blob_log`, scales
    ``min_sigma`` to ``max_sigma``) runs on the result with ``log_threshold`` on its
    scale-normalised response. That response is about ``A / 2`` at the centre of a
    Gaussian blob of peak ``A`` at the matched scale, so the default 0.05 keeps any blob
    that survives the probability threshold and only rejects flat noise.

    ``method="peaks"``: local maxima of the probability map at least ``min_distance``
    pixels apart (Chebyshev) and at least ``threshold``
    (:func:`skimage.feature.peak_local_max`).

    Both methods keep peaks on the image border and refine each integer peak to
    sub-pixel precision on the (unthresholded) probability map by a 3-point Gaussian
    fit per axis, exact for Gaussian blobs, with the 3x3 intensity-weighted centroid
    as fallback where the fit is undefined (see ``_refine``). Peaks on a flat plateau
    of local maxima (probabilities saturated at one value over several pixels) are
    merged into one atom at the plateau's centroid.

    Parameters
    ----------
    probability : array_like of float, shape (rows, cols)
        Probability [0, 1] of the atom class per pixel.
    method : {"log", "peaks"}
        Detector.
    threshold : float
        Minimum probability of an atom centre.
    min_sigma, max_sigma : float
        Range of blob standard deviations [px] searched by ``"log"``.
    min_distance : int
        Minimum peak separation [px] for ``"peaks"`` (unused by ``"log"``, whose
        overlapping blobs are pruned by :func:`~skimage.feature.blob_log`).
    log_threshold : float
        Minimum scale-normalised LoG response for ``"log"``.

    Returns
    -------
    ndarray of float64, shape (n, 2)
        ``(x, y)`` [px] of the atoms (x = column, pixel centres at integers), sorted
        by ``y`` then ``x``.

    Raises
    ------
    ValueError
        If ``probability`` is not 2-D or ``method`` is unknown.
    """
    image = np.asarray(probability, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"probability must be 2-D, got shape {image.shape}")
    if method == "log":
        masked = np.where(image >= threshold, image, 0.0)
        if not masked.any():
            return np.empty((0, 2))
        blobs = feature.blob_log(  # type: ignore[no-untyped-call]
            masked,
            min_sigma=min_sigma,
            max_sigma=max_sigma,
            threshold=log_threshold,
            exclude_border=False,
        )
        peaks = np.asarray(blobs[:, :2]).round().astype(np.intp)
    elif method == "peaks":
        peaks = feature.peak_local_max(  # type: ignore[no-untyped-call]
            image, min_distance=min_distance, threshold_abs=threshold, exclude_border=False
        ).astype(np.intp)
    else:
        raise ValueError(f"unknown method {method!r}; expected 'log' or 'peaks'")
    if peaks.shape[0] == 0:
        return np.empty((0, 2))
    refined = _merge_plateaus(image, peaks, _refine(image, peaks[:, 0], peaks[:, 1]), threshold)
    xy = refined[:, ::-1].copy()
    return xy[np.lexsort((xy[:, 0], xy[:, 1]))]


def find_class_atoms(
    probabilities: ArrayLike,
    *,
    method: Literal["log", "peaks"] = "log",
    threshold: float = 0.0,
    max_sigma: float = 2.0,
) -> list[NDArray[np.float64]]:
    """Atoms of every foreground class on a softmax output: the detector of record.

    Training's test metrics, ``hpcbench predict`` and ``hpcbench evaluate`` all find
    atoms with this function, so a score printed by one is the score of the others.
    Class ``c``'s probability is kept where ``c`` is the most probable class (so
    detections agree with the pixel scores: for two classes that is ``p >= 0.5``, the
    seed-004 rule) and :func:`find_atoms` runs on it with ``threshold`` (at least
    1e-6, so background never counts), ``min_sigma`` 1 px and ``max_sigma``.

    Parameters
    ----------
    probabilities : array_like of float, shape (classes, rows, cols)
        Class probabilities; class 0 is background.
    method : {"log", "peaks"}
        Detector (:func:`find_atoms`).
    threshold : float
        Minimum probability of an atom centre.
    max_sigma : float
        Largest blob standard deviation searched [px]; the trainer uses the label
        disk's radius in pixels (at least 2).

    Returns
    -------
    list of ndarray, shape (n_c, 2)
        ``(x, y)`` [px] of the atoms of classes 1, 2, ... in that order.
    """
    stack = np.asarray(probabilities, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise ValueError(
            f"probabilities must have shape (classes >= 2, rows, cols), got {stack.shape}"
        )
    winner = stack.argmax(axis=0)
    found = []
    for label in range(1, stack.shape[0]):
        owned = np.where(winner == label, stack[label], 0.0)
        found.append(
            find_atoms(
                owned,
                method=method,
                threshold=max(threshold, 1e-6),
                min_sigma=1.0,
                max_sigma=max(2.0, max_sigma),
            )
        )
    return found


def site_scores(probability: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """A probability map's value at the pixel nearest each ``(x, y)`` point [px]."""
    image = np.asarray(probability, dtype=np.float64)
    xy = _points(points, "points")
    if image.ndim != 2:
        raise ValueError(f"probability must be 2-D, got shape {image.shape}")
    cols = np.clip(np.rint(xy[:, 0]).astype(np.intp), 0, image.shape[1] - 1)
    rows = np.clip(np.rint(xy[:, 1]).astype(np.intp), 0, image.shape[0] - 1)
    return image[rows, cols]


def match_points(
    predicted: ArrayLike, true: ArrayLike, radius: float
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """One-to-one matching of predicted to true points within a radius.

    Only pairs at most ``radius`` apart can match. Among them the matching has the
    largest possible number of pairs and, among those, the smallest total distance
    (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`, with a cost
    larger than any total distance for pairs out of range). The assignment is solved
    separately on each connected component of the graph of in-range pairs, so the
    cost is small for the usual well-separated atoms.

    Parameters
    ----------
    predicted : array_like, shape (n, 2)
        Predicted points [px] (any consistent coordinates).
    true : array_like, shape (m, 2)
        True points [px].
    radius : float
        Largest matching distance [px] (inclusive).

    Returns
    -------
    pred_index, true_index : ndarray of intp, shape (k,)
        Indices of the matched pairs, sorted by ``pred_index``.
    distance : ndarray of float64, shape (k,)
        Euclidean distance of each pair [px].

    Raises
    ------
    ValueError
        If an input is not of shape (n, 2), is not finite, or ``radius`` is negative.
    """
    pred = _points(predicted, "predicted")
    ref = _points(true, "true")
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    empty = (np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0))
    if pred.shape[0] == 0 or ref.shape[0] == 0:
        return empty
    # Structured array output keeps zero distances (a sparse matrix would drop them).
    pairs = spatial.cKDTree(pred).sparse_distance_matrix(
        spatial.cKDTree(ref), radius, output_type="ndarray"
    )
    if pairs.size == 0:
        return empty
    i = pairs["i"].astype(np.intp)
    j = pairs["j"].astype(np.intp)
    dist = pairs["v"].astype(np.float64)
    n, m = pred.shape[0], ref.shape[0]
    graph = sparse.coo_matrix((np.ones(i.size), (i, n + j)), shape=(n + m, n + m))
    _, component = sparse.csgraph.connected_components(graph, directed=False)
    edge_component = component[i]
    # Components with a single edge (the common case) match directly.
    edges_per_component = np.bincount(edge_component, minlength=n + m)
    single = edges_per_component[edge_component] == 1
    pred_index = [i[single]]
    true_index = [j[single]]
    distance = [dist[single]]
    multi = ~single
    if multi.any():
        order = np.argsort(edge_component[multi], kind="stable")
        mi, mj, md, mc = (v[multi][order] for v in (i, j, dist, edge_component))
        bounds = np.flatnonzero(np.diff(mc)) + 1
        for ci, cj, cd in zip(
            np.split(mi, bounds), np.split(mj, bounds), np.split(md, bounds), strict=True
        ):
            rows, local_i = np.unique(ci, return_inverse=True)
            cols, local_j = np.unique(cj, return_inverse=True)
            big = (radius + 1.0) * (min(rows.size, cols.size) + 1)
            cost = np.full((rows.size, cols.size), big)
            cost[local_i, local_j] = cd
            r, c = optimize.linear_sum_assignment(cost)
            keep = cost[r, c] < big
            pred_index.append(rows[r[keep]])
            true_index.append(cols[c[keep]])
            distance.append(cost[r, c][keep])
    pi = np.concatenate(pred_index)
    order = np.argsort(pi, kind="stable")
    return pi[order], np.concatenate(true_index)[order], np.concatenate(distance)[order]


@dataclass(frozen=True)
class DetectionCounts:
    """Detection outcome counts, summable over images with ``+`` (or ``sum``).

    Attributes
    ----------
    tp : int
        Matched predictions (true positives).
    fp : int
        Unmatched predictions (false positives).
    fn : int
        Unmatched true points (false negatives).
    distance_sum : float
        Sum of the matched pairs' distances [px].
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    distance_sum: float = 0.0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        if not isinstance(other, DetectionCounts):
            return NotImplemented
        return DetectionCounts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.distance_sum + other.distance_sum,
        )

    def __radd__(self, other: object) -> DetectionCounts:
        # Lets the built-in sum() start from 0.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def scores(self, pixel_size: float) -> dict[str, float]:
        """Precision, recall, F1 and mean localisation error.

        Parameters
        ----------
        pixel_size : float
            [Å/px].

        Returns
        -------
        dict of str to float
            ``detection_precision`` = TP / (TP + FP), ``detection_recall``
            = TP / (TP + FN), ``detection_f1`` = 2 TP / (2 TP + FP + FN) (all
            dimensionless) and ``localisation_error`` = mean matched distance [pm]
            (px × ``pixel_size`` [Å] × 100). A 0/0 ratio is NaN (see module notes).
        """

        def ratio(numerator: float, denominator: float) -> float:
            return numerator / denominator if denominator > 0 else float("nan")

        return {
            "detection_precision": ratio(self.tp, self.tp + self.fp),
            "detection_recall": ratio(self.tp, self.tp + self.fn),
            "detection_f1": ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
            "localisation_error": ratio(self.distance_sum * pixel_size * 100.0, self.tp),
        }


def detection_counts(
    predicted: ArrayLike,
    true: ArrayLike,
    radius: float,
    *,
    shape: tuple[int, int] | None = None,
    border: float = 0.0,
) -> DetectionCounts:
    """Match predicted to true points (:func:`match_points`) and count the outcome.

    Parameters
    ----------
    predicted : array_like, shape (n, 2)
        Predicted points ``(x, y)`` [px].
    true : array_like, shape (m, 2)
        True points [px].
    radius : float
        Largest matching distance [px].
    shape : (rows, cols), optional
        The image's shape; with ``border`` > 0, unmatched predictions closer than
        ``border`` [px] to the frame's edge are not counted as false positives. Labels
        hold only sites inside the frame, while an atom just outside it shows as a
        partial blob a network rightly finds; scoring those as errors penalises small
        images for their edge-to-area ratio. Matched predictions count wherever they
        are, and so do unmatched true points.
    border : float
        Width of that edge band [px] (e.g. the matching radius).

    Returns
    -------
    DetectionCounts
        ``tp`` matched pairs, ``fp`` = unmatched predictions (outside the edge band),
        ``fn = m - tp``, and the matched distance sum [px].
    """
    pred = _points(predicted, "predicted")
    ref = _points(true, "true")
    pred_index, _, distance = match_points(pred, ref, radius)
    tp = int(pred_index.size)
    unmatched = np.ones(pred.shape[0], dtype=bool)
    unmatched[pred_index] = False
    if shape is not None and border > 0 and unmatched.any():
        rows, cols = shape
        x, y = pred[unmatched, 0], pred[unmatched, 1]
        # Pixel centres at integer coordinates: the frame spans [-0.5, size - 0.5].
        edge = np.minimum.reduce([x + 0.5, cols - 0.5 - x, y + 0.5, rows - 0.5 - y])
        fp = int(np.count_nonzero(edge >= border))
    else:
        fp = int(np.count_nonzero(unmatched))
    return DetectionCounts(tp, fp, ref.shape[0] - tp, float(distance.sum()))
