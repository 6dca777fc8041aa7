"""Confusion matrix and segmentation scores: hand-computed cases and scikit-learn agreement."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from hpcbench.metrics.segmentation import confusion_matrix, segmentation_scores

METRICS = ("precision", "recall", "f1", "intersection_over_union")


def test_confusion_matrix_by_hand() -> None:
    target = np.array([[0, 1, 2], [2, 1, 0]])
    prediction = np.array([[0, 1, 1], [2, 2, 0]])
    # pixel pairs (true, pred): (0,0) (1,1) (2,1) (2,2) (1,2) (0,0)
    expected = np.array(
        [
            [2, 0, 0],  # true 0: both predicted 0
            [0, 1, 1],  # true 1: once 1, once 2
            [0, 1, 1],  # true 2: once 1, once 2
        ]
    )
    matrix = confusion_matrix(prediction, target, 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, expected)


def test_scores_by_hand() -> None:
    # Same example: class 1 has TP 1, FP 1 (true 2 predicted 1), FN 1 (true 1 predicted 2);
    # class 2 likewise; class 0 is perfect.
    target = np.array([[0, 1, 2], [2, 1, 0]])
    prediction = np.array([[0, 1, 1], [2, 2, 0]])
    scores = segmentation_scores(confusion_matrix(prediction, target, 3))
    for c in (1, 2):
        assert scores[f"precision/{c}"] == pytest.approx(1 / 2)  # 1 / (1 + 1)
        assert scores[f"recall/{c}"] == pytest.approx(1 / 2)  # 1 / (1 + 1)
        assert scores[f"f1/{c}"] == pytest.approx(2 / 4)  # 2 / (2 + 1 + 1)
        assert scores[f"intersection_over_union/{c}"] == pytest.approx(1 / 3)  # 1 / (1 + 1 + 1)
    for metric in METRICS:
        assert scores[f"{metric}/0"] == 1.0
    # Macro and micro over {1, 2}: micro pools TP = 2, FP = 2, FN = 2.
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["intersection_over_union"] == pytest.approx(1 / 3)
    assert scores["micro_f1"] == pytest.approx(4 / 8)
    assert scores["micro_intersection_over_union"] == pytest.approx(2 / 6)
    # With background: macro over {0, 1, 2}.
    with_bg = segmentation_scores(confusion_matrix(prediction, target, 3), ignore_background=False)
    assert with_bg["f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert with_bg["micro_f1"] == pytest.approx(4 / 6)  # accuracy: 4 of 6 pixels


def test_key_names_and_class_names() -> None:
    matrix = np.array([[3, 1], [0, 2]])
    scores = segmentation_scores(matrix, class_names=["vacuum", "atom"])
    expected = {f"{m}/{n}" for m in METRICS for n in ("vacuum", "atom")}
    expected |= set(METRICS) | {f"micro_{m}" for m in METRICS}
    assert set(scores) == expected
    assert all(type(v) is float for v in scores.values())
    with pytest.raises(ValueError, match="class names"):
        segmentation_scores(matrix, class_names=["only one"])


def test_perfect_prediction() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 16, 16))
    scores = segmentation_scores(confusion_matrix(labels, labels, 4))
    assert all(v == 1.0 for v in scores.values())


def test_all_background_prediction_with_foreground_truth() -> None:
    target = np.array([[0, 1], [1, 0]])
    prediction = np.zeros_like(target)
    scores = segmentation_scores(confusion_matrix(prediction, target, 2))
    assert math.isnan(scores["precision/1"])  # never predicted: 0 / 0
    assert scores["recall/1"] == 0.0
    assert scores["f1/1"] == 0.0
    assert scores["intersection_over_union/1"] == 0.0
    assert math.isnan(scores["precision"])  # no defined class
    assert scores["recall"] == 0.0
    assert scores["f1"] == 0.0
    assert math.isnan(scores["micro_precision"])
    assert scores["micro_f1"] == 0.0


def test_class_absent_everywhere_is_nan_and_left_out_of_macro() -> None:
    target = np.array([0, 1, 1, 2, 0])
    prediction = np.array([0, 1, 0, 2, 0])
    scores = segmentation_scores(confusion_matrix(prediction, target, 4))
    for metric in METRICS:
        assert math.isnan(scores[f"{metric}/3"])
    # Class 1: TP 1, FN 1 -> F1 2/3; class 2: perfect; macro over {1, 2} only.
    assert scores["f1/1"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["recall"] == pytest.approx((0.5 + 1) / 2)


def test_only_background_class_is_averaged() -> None:
    scores = segmentation_scores(np.array([[5]]))
    assert scores["f1"] == 1.0
    assert scores["micro_f1"] == 1.0


def test_micro_differs_from_macro_on_imbalanced_case_like_sklearn() -> None:
    # Class 1 is large and well predicted, class 2 small and poorly predicted.
    target = np.array([0] * 10 + [1] * 80 + [2] * 10)
    prediction = np.array([0] * 10 + [1] * 78 + [0] * 2 + [2] * 2 + [1] * 8)
    scores = segmentation_scores(confusion_matrix(prediction, target, 3))
    labels = [1, 2]
    macro = f1_score(target, prediction, labels=labels, average="macro", zero_division=np.nan)
    micro = f1_score(target, prediction, labels=labels, average="micro", zero_division=np.nan)
    assert scores["f1"] == pytest.approx(macro)
    assert scores["micro_f1"] == pytest.approx(micro)
    assert scores["micro_f1"] - scores["f1"] > 0.2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_sklearn_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 4
    target = rng.integers(0, num_classes, size=(3, 12, 12))
    # Mostly correct, with random errors; never predict class 3 for some 0/0 cases.
    correct = (rng.random(target.shape) < 0.6) & (target != 3)
    prediction = np.where(correct, target, rng.integers(0, 3, target.shape))
    scores = segmentation_scores(confusion_matrix(prediction, target, num_classes))
    y_true, y_pred = target.ravel(), prediction.ravel()
    labels = list(range(1, num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn may warn about the undefined precision
        for name, fn in (
            ("precision", precision_score),
            ("recall", recall_score),
            ("f1", f1_score),
        ):
            per_class = fn(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
            ours = [scores[f"{name}/{c}"] for c in labels]
            np.testing.assert_allclose(ours, per_class, equal_nan=True)
            for average in ("macro", "micro"):
                ref = fn(y_true, y_pred, labels=labels, average=average, zero_division=np.nan)
                key = name if average == "macro" else f"micro_{name}"
                assert scores[key] == pytest.approx(ref, nan_ok=True)
    # jaccard_score has no zero_division=nan; IoU has no 0/0 here (every class is in the target).
    per_class = jaccard_score(y_true, y_pred, labels=labels, average=None)
    ours = [scores[f"intersection_over_union/{c}"] for c in labels]
    np.testing.assert_allclose(ours, per_class)
    for average in ("macro", "micro"):
        ref = jaccard_score(y_true, y_pred, labels=labels, average=average)
        key = "intersection_over_union" if average == "macro" else "micro_intersection_over_union"
        assert scores[key] == pytest.approx(ref)
    assert math.isnan(scores["precision/3"])  # class 3 is never predicted


def test_confusion_matrix_matches_sklearn_and_accepts_small_dtypes() -> None:
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(7)
    target = rng.integers(0, 5, size=(4, 32, 32)).astype(np.uint8)
    prediction = rng.integers(0, 5, size=(4, 32, 32)).astype(np.uint8)
    np.testing.assert_array_equal(
        confusion_matrix(prediction, target, 5),
        sk_confusion(target.ravel(), prediction.ravel(), labels=range(5)),
    )


def test_confusion_matrix_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="range"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="range"):
        confusion_matrix(np.array([0, 1]), np.array([-1, 1]), 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3)))
