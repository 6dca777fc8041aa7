"""Atom finding on probability maps, Hungarian point matching and detection counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcbench.metrics.detection import DetectionCounts, detection_counts, find_atoms, match_points


def _grid(n: int = 10, spacing: float = 8.0) -> np.ndarray:
    ii, jj = np.meshgrid(np.arange(n), np.arange(n))
    return np.stack([ii.ravel(), jj.ravel()], axis=1) * spacing + 4.0


def _blobs(shape: tuple[int, int], centres: np.ndarray, sigma: float, peak: float) -> np.ndarray:
    """Probability-like map: Gaussian blobs at (x, y) centres, pixel centres at integers."""
    y, x = np.indices(shape, dtype=np.float64)
    image = np.zeros(shape)
    for cx, cy in centres:
        image += peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    return np.clip(image, 0.0, 1.0)


def test_jittered_grid_all_matched_with_mean_jitter() -> None:
    rng = np.random.default_rng(3)
    true = _grid()
    jitter = rng.uniform(-0.5, 0.5, size=true.shape)
    order = rng.permutation(len(true))
    predicted = (true + jitter)[order]
    pred_index, true_index, distance = match_points(predicted, true, radius=2.0)
    assert len(pred_index) == len(true)
    np.testing.assert_array_equal(pred_index, np.arange(len(true)))
    np.testing.assert_array_equal(true_index, order)
    np.testing.assert_allclose(distance, np.hypot(*jitter[order].T))
    counts = detection_counts(predicted, true, radius=2.0)
    assert (counts.tp, counts.fp, counts.fn) == (100, 0, 0)
    pixel_size = 0.2  # [Å]
    scores = counts.scores(pixel_size)
    mean_jitter = np.hypot(*jitter.T).mean()  # [px]
    assert scores["localisation_error"] == pytest.approx(mean_jitter * pixel_size * 100)  # [pm]
    assert scores["detection_precision"] == scores["detection_recall"] == 1.0
    assert scores["detection_f1"] == 1.0


def test_one_point_outside_radius_is_fp_and_fn() -> None:
    rng = np.random.default_rng(4)
    true = _grid(5)
    predicted = true + rng.uniform(-0.3, 0.3, size=true.shape)
    predicted[7] += [2.5, 0.0]  # 2.2 to 2.8 px away from its atom, > 5 px from the others
    counts = detection_counts(predicted, true, radius=2.0)
    assert (counts.tp, counts.fp, counts.fn) == (24, 1, 1)
    scores = counts.scores(1.0)
    assert scores["detection_precision"] == pytest.approx(24 / 25)
    assert scores["detection_recall"] == pytest.approx(24 / 25)
    assert scores["detection_f1"] == pytest.approx(48 / 50)


def test_hungarian_minimises_total_distance_where_greedy_does_not() -> None:
    true = np.array([[0.0, 0.0], [1.0, 0.0]])
    predicted = np.array([[0.6, 0.0], [1.9, 0.0]])
    # Greedy from prediction 0 takes its nearest truth 1 (0.4), leaving 1.9 for prediction 1:
    # total 2.3. The optimum pairs 0-0 (0.6) and 1-1 (0.9): total 1.5.
    pred_index, true_index, distance = match_points(predicted, true, radius=2.0)
    np.testing.assert_array_equal(pred_index, [0, 1])
    np.testing.assert_array_equal(true_index, [0, 1])
    assert distance.sum() == pytest.approx(1.5)


def test_matching_maximises_pairs_within_radius() -> None:
    true = np.array([[0.0, 0.0], [2.0, 0.0]])
    predicted = np.array([[1.2, 0.0], [3.2, 0.0]])
    # Closest-pair-first would take (0, 1) at 0.8 and leave prediction 1 with nothing in range;
    # the matching pairs 0-0 (1.2) and 1-1 (1.2) instead.
    pred_index, true_index, distance = match_points(predicted, true, radius=1.5)
    np.testing.assert_array_equal(pred_index, [0, 1])
    np.testing.assert_array_equal(true_index, [0, 1])
    np.testing.assert_allclose(distance, [1.2, 1.2])
    # Out of range pairs never match, even when a large cost would be "cheap" enough.
    pred_index, true_index, _ = match_points(predicted, true, radius=1.0)
    np.testing.assert_array_equal(pred_index, [0])
    np.testing.assert_array_equal(true_index, [1])


def test_coincident_points_match_at_zero_distance() -> None:
    points = np.array([[1.0, 2.0], [5.0, 5.0]])
    pred_index, true_index, distance = match_points(points, points, radius=0.5)
    np.testing.assert_array_equal(pred_index, [0, 1])
    np.testing.assert_array_equal(true_index, [0, 1])
    np.testing.assert_array_equal(distance, [0.0, 0.0])


def test_empty_inputs() -> None:
    true = np.array([[1.0, 1.0], [4.0, 4.0]])
    for predicted, reference in (([], true), (true, np.empty((0, 2))), ([], [])):
        pred_index, true_index, distance = match_points(predicted, reference, radius=1.0)
        assert pred_index.size == true_index.size == distance.size == 0
    none_found = detection_counts(np.empty((0, 2)), true, radius=1.0).scores(0.1)
    assert math.isnan(none_found["detection_precision"])
    assert none_found["detection_recall"] == 0.0
    assert none_found["detection_f1"] == 0.0
    assert math.isnan(none_found["localisation_error"])
    nothing_there = detection_counts(true, [], radius=1.0).scores(0.1)
    assert nothing_there["detection_precision"] == 0.0
    assert math.isnan(nothing_there["detection_recall"])
    assert nothing_there["detection_f1"] == 0.0
    both_empty = detection_counts([], [], radius=1.0)
    assert both_empty == DetectionCounts()
    assert all(math.isnan(v) for v in both_empty.scores(0.1).values())


def test_counts_add_up_over_images() -> None:
    rng = np.random.default_rng(5)
    per_image = []
    for _ in range(3):
        true = _grid(4) + rng.uniform(-1, 1, size=(16, 2))
        predicted = np.concatenate([true[:-2] + rng.normal(0, 0.2, (14, 2)), [[100.0, 100.0]]])
        per_image.append(detection_counts(predicted, true, radius=1.5))
    total = sum(per_image)
    assert isinstance(total, DetectionCounts)
    assert total == per_image[0] + per_image[1] + per_image[2]
    assert (total.tp, total.fp, total.fn) == (42, 3, 6)
    assert total.distance_sum == pytest.approx(sum(c.distance_sum for c in per_image))
    # 2 matched pairs, 3 px together, at 0.1 Å/px: 1.5 px = 0.15 Å = 15 pm.
    assert DetectionCounts(2, 0, 0, 3.0).scores(0.1)["localisation_error"] == pytest.approx(15.0)


def test_match_points_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        match_points(np.zeros((3, 3)), np.zeros((2, 2)), 1.0)
    with pytest.raises(ValueError, match="radius"):
        match_points(np.zeros((1, 2)), np.zeros((1, 2)), -1.0)


@pytest.mark.parametrize("method", ["log", "peaks"])
@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_find_atoms_on_gaussian_blobs(method: str, sigma: float) -> None:
    rng = np.random.default_rng(11)
    true = _grid(6, spacing=10.0) + rng.uniform(-0.5, 0.5, size=(36, 2))
    probability = _blobs((64, 64), true, sigma=sigma, peak=0.95)
    found = find_atoms(probability, method=method)  # type: ignore[arg-type]
    assert found.dtype == np.float64
    assert found.shape == true.shape
    _, true_index, distance = match_points(found, true, radius=1.0)
    assert len(true_index) == len(true)
    assert distance.max() < 0.3


@pytest.mark.parametrize("method", ["log", "peaks"])
def test_find_atoms_one_atom_per_saturated_plateau(method: str) -> None:
    rng = np.random.default_rng(13)
    true = _grid(6, spacing=10.0) + rng.uniform(-0.5, 0.5, size=(36, 2))
    probability = _blobs((64, 64), true, sigma=1.5, peak=3.0)  # flat at 1 for r < 2.2 px
    found = find_atoms(probability, method=method)  # type: ignore[arg-type]
    assert found.shape == true.shape
    _, true_index, distance = match_points(found, true, radius=1.0)
    assert len(true_index) == len(true)
    assert distance.max() < 0.5  # centroid of a pixelated disc


@pytest.mark.parametrize("method", ["log", "peaks"])
def test_find_atoms_coordinates_are_column_row(method: str) -> None:
    probability = _blobs((30, 50), np.array([[37.3, 12.6], [8.0, 20.0]]), sigma=1.5, peak=0.9)
    found = find_atoms(probability, method=method)  # type: ignore[arg-type]
    # Sorted by y then x.
    np.testing.assert_allclose(found, [[37.3, 12.6], [8.0, 20.0]], atol=0.05)


@pytest.mark.parametrize("method", ["log", "peaks"])
def test_find_atoms_nothing_below_threshold(method: str) -> None:
    rng = np.random.default_rng(12)
    true = _grid(6, spacing=10.0) + rng.uniform(-0.5, 0.5, size=(36, 2))
    probability = _blobs((64, 64), true, sigma=1.5, peak=0.45)
    found = find_atoms(probability, method=method, threshold=0.5)  # type: ignore[arg-type]
    assert found.shape == (0, 2)


def test_find_atoms_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        find_atoms(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="method"):
        find_atoms(np.zeros((8, 8)), method="watershed")  # type: ignore[arg-type]


def test_unmatched_detections_at_the_frame_edge_can_be_ignored() -> None:
    true = np.array([[10.0, 10.0], [0.2, 5.0]])
    # One match, one partial atom at the left edge, one at the bottom edge, one inside.
    predicted = np.array([[10.3, 10.0], [-0.3, 20.0], [15.0, 31.2], [16.0, 16.0]])
    plain = detection_counts(predicted, true, 1.0)
    assert (plain.tp, plain.fp, plain.fn) == (1, 3, 1)
    edge = detection_counts(predicted, true, 1.0, shape=(32, 32), border=1.0)
    assert (edge.tp, edge.fp, edge.fn) == (1, 1, 1)  # the inner one still counts
    # Unmatched true points near the edge still count as misses.
    assert detection_counts(np.empty((0, 2)), true, 1.0, shape=(32, 32), border=2.0).fn == 2
