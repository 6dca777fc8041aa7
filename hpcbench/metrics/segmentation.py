"""Confusion matrix and per-class / macro / micro scores of semantic segmentation.

Inputs are integer label maps as numpy arrays (a CPU ``torch.Tensor`` also works,
since it is read with :func:`numpy.asarray`; move GPU tensors to the CPU first).

Undefined ratios
----------------
Every score is a ratio of counts taken from the confusion matrix. A ratio whose
denominator is zero (0/0) is **NaN**, never 0 or 1:

- ``precision/<c>`` = TP / (TP + FP) is NaN when class ``c`` is never predicted;
- ``recall/<c>`` = TP / (TP + FN) is NaN when class ``c`` is absent from the target;
- ``f1/<c>`` = 2 TP / (2 TP + FP + FN) and ``intersection_over_union/<c>``
  = TP / (TP + FP + FN) are NaN only when class ``c`` is absent from both; a class that
  is predicted but absent from the target (or vice versa) has F1 = IoU = 0.

Macro averages are the mean over the averaged classes where the per-class value is
defined (NaN classes are left out); NaN if none is defined. Micro scores pool TP, FP
and FN over the averaged classes first, and are NaN only if the pooled denominator is 0.

This is exactly scikit-learn's ``precision_score`` / ``recall_score`` / ``f1_score``
with ``zero_division=np.nan`` and ``labels=<averaged classes>`` for ``average=None``,
``"macro"`` and ``"micro"``. ``sklearn.metrics.jaccard_score`` does not accept
``zero_division=np.nan``; where no 0/0 occurs it agrees with
``intersection_over_union`` as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["confusion_matrix", "segmentation_scores"]

_NAMES = ("precision", "recall", "f1", "intersection_over_union")


def confusion_matrix(
    prediction: ArrayLike, target: ArrayLike, num_classes: int
) -> NDArray[np.int64]:
    """Pixel counts of (true class, predicted class) pairs.

    Parameters
    ----------
    prediction : array_like of int, any shape
        Predicted class label of each pixel.
    target : array_like of int, same shape as ``prediction``
        True class label of each pixel.
    num_classes : int
        Number of classes ``C``; labels must lie in ``[0, C)``.

    Returns
    -------
    ndarray of int64, shape (C, C)
        ``matrix[i, j]`` = number of pixels of true class ``i`` predicted as ``j``
        (rows = truth, columns = prediction, as in ``sklearn.metrics.confusion_matrix``).

    Raises
    ------
    ValueError
        If the shapes differ, the labels are not integers, or a label is outside
        ``[0, num_classes)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pred = np.asarray(prediction)
    true = np.asarray(target)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs target {true.shape}")
    for name, labels in (("prediction", pred), ("target", true)):
        if labels.dtype.kind not in "iub":
            raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}), "
                f"got range [{labels.min()}, {labels.max()}]"
            )
    # intp arithmetic: uint8 labels would overflow in num_classes * target.
    flat = num_classes * true.reshape(-1).astype(np.intp) + pred.reshape(-1).astype(np.intp)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.astype(np.int64, copy=False).reshape(num_classes, num_classes)


def _ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """Elementwise ratio, NaN where the denominator is zero."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: NDArray[np.float64]) -> float:
    """Mean of the non-NaN values; NaN if there are none (no RuntimeWarning)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def segmentation_scores(
    confusion: ArrayLike,
    *,
    ignore_background: bool = True,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Precision, recall, F1 and IoU per class, macro- and micro-averaged.

    See the module docstring for the 0/0 (NaN) rules and the correspondence with
    scikit-learn.

    Parameters
    ----------
    confusion : array_like of int, shape (C, C)
        Confusion matrix, rows = true class, columns = predicted class
        (:func:`confusion_matrix`; sum it over batches to accumulate a data set).
    ignore_background : bool
        Leave class 0 (background) out of the macro and micro averages. With a single
        class it is always kept.
    class_names : sequence of str, optional
        ``C`` names used in the per-class keys instead of the class indices.

    Returns
    -------
    dict of str to float
        ``precision/<c>``, ``recall/<c>``, ``f1/<c>``, ``intersection_over_union/<c>``
        for every class ``c``; macro averages ``precision``, ``recall``, ``f1``,
        ``intersection_over_union``; micro averages ``micro_precision``,
        ``micro_recall``, ``micro_f1``, ``micro_intersection_over_union``. All
        dimensionless, in [0, 1] or NaN.

    Raises
    ------
    ValueError
        If ``confusion`` is not square or ``class_names`` has the wrong length.
    """
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"confusion must be a non-empty square matrix, got shape {matrix.shape}")
    num_classes = matrix.shape[0]
    if class_names is None:
        names = [str(c) for c in range(num_classes)]
    else:
        names = [str(name) for name in class_names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")

    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp  # predicted as c, truly another class
    fn = matrix.sum(axis=1) - tp  # truly c, predicted as another class
    per_class = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "intersection_over_union": _ratio(tp, tp + fp + fn),
    }
    averaged = slice(1, None) if ignore_background and num_classes > 1 else slice(None)
    tp_sum, fp_sum, fn_sum = (np.array([v[averaged].sum()]) for v in (tp, fp, fn))
    micro = {
        "precision": _ratio(tp_sum, tp_sum + fp_sum),
        "recall": _ratio(tp_sum, tp_sum + fn_sum),
        "f1": _ratio(2 * tp_sum, 2 * tp_sum + fp_sum + fn_sum),
        "intersection_over_union": _ratio(tp_sum, tp_sum + fp_sum + fn_sum),
    }

    scores: dict[str, float] = {}
    for metric in _NAMES:
        for name, value in zip(names, per_class[metric], strict=True):
            scores[f"{metric}/{name}"] = float(value)
    for metric in _NAMES:
        scores[metric] = _nanmean(per_class[metric][averaged])
    for metric in _NAMES:
        scores[f"micro_{metric}"] = float(micro[metric][0])
    return scores
