"""Metrics on images, masks and detections (plain functions, no Ray or MLflow)."""

from __future__ import annotations

from hpcbench.metrics.detection import (
    DetectionCounts,
    detection_counts,
    find_atoms,
    find_class_atoms,
    match_points,
    site_scores,
)
from hpcbench.metrics.distributions import (
    FRAME_STATISTICS,
    frame_statistics,
    histogram_kl,
    intensity_histogram,
    kl_divergence,
    power_spectrum_distance,
    radial_power_spectrum,
    saturate_normalize,
)
from hpcbench.metrics.fid import (
    FeatureExtractor,
    FIDResult,
    InceptionFeatures,
    SpectralFeatures,
    feature_statistics,
    fid,
    frechet_distance,
)
from hpcbench.metrics.lattice import (
    Calibration,
    Lattice,
    calibrate_pixel_size,
    lattice_spacing,
    parse_lattice,
)
from hpcbench.metrics.segmentation import confusion_matrix, segmentation_scores

__all__ = [
    "FRAME_STATISTICS",
    "Calibration",
    "DetectionCounts",
    "FIDResult",
    "FeatureExtractor",
    "InceptionFeatures",
    "Lattice",
    "SpectralFeatures",
    "calibrate_pixel_size",
    "confusion_matrix",
    "detection_counts",
    "feature_statistics",
    "fid",
    "find_atoms",
    "find_class_atoms",
    "frame_statistics",
    "frechet_distance",
    "histogram_kl",
    "intensity_histogram",
    "kl_divergence",
    "lattice_spacing",
    "match_points",
    "parse_lattice",
    "power_spectrum_distance",
    "radial_power_spectrum",
    "saturate_normalize",
    "segmentation_scores",
    "site_scores",
]
