"""Trained models applied to new images: ``hpcbench predict`` and ``hpcbench evaluate``.

:mod:`~hpcbench.apply.inference` feeds a ``best.pt`` any image as training fed it
(resampling, tiles, normalisation) and finds atoms with the trainer's detector;
:mod:`~hpcbench.apply.predict` writes the sites and overlays and scores them against
labels.
"""

from hpcbench.apply.inference import AtomFinder, Sites, resample
from hpcbench.apply.predict import (
    ImageResult,
    MatchRadius,
    PredictResult,
    label_files,
    parse_radius,
    predict_images,
)

__all__ = [
    "AtomFinder",
    "ImageResult",
    "MatchRadius",
    "PredictResult",
    "Sites",
    "label_files",
    "parse_radius",
    "predict_images",
    "resample",
]
