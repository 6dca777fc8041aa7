"""Metrics on images, masks and detections (plain functions, no Ray or MLflow)."""

from __future__ import annotations

from hpcbench.metrics.detection import DetectionCounts, detection_counts, find_atoms, match_points
from hpcbench.metrics.lattice import lattice_spacing
from hpcbench.metrics.segmentation import confusion_matrix, segmentation_scores

__all__ = [
    "DetectionCounts",
    "confusion_matrix",
    "detection_counts",
    "find_atoms",
    "lattice_spacing",
    "match_points",
    "segmentation_scores",
]
