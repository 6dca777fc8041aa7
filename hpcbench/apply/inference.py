"""A trained segmentation network applied to an image of any size, as training fed it.

:class:`AtomFinder` wraps a ``best.pt`` (:meth:`SegmentationTrainer.save_artifacts
<hpcbench.train.segmentation.SegmentationTrainer.save_artifacts>`) with what the trainer
knew about its input: the training pixel size [Å], the training crop [px] and the
per-image min-max normalisation of :func:`hpcbench.train.data.normalize`. An image is

1. resampled from its own pixel size to the training one (bilinear, anti-aliased when
   shrinking, as :mod:`hpcbench.datasets.importer` resamples imports);
2. cut into tiles of the training crop that overlap by a quarter of a tile, each
   normalised on its own (the network never saw a frame larger than the crop, so a tile
   is normalised over the field of view the network was trained on);
3. predicted tile by tile; the softmax outputs are blended with a weight that falls
   linearly to near zero over the overlap, so no tile edge (where the network lacks
   context) decides a pixel another tile sees from inside;
4. searched for atoms with :func:`hpcbench.metrics.find_class_atoms`, the detector the
   trainer's test metrics use, with the trial's settings; coordinates are mapped back to
   the input image's pixels.

Plain stage: torch, numpy and scikit-image only (no Ray, no MLflow).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from hpcbench.metrics import find_class_atoms, site_scores
from hpcbench.models import output_stride
from hpcbench.train.segmentation import load_checkpoint, predict_tiled

__all__ = ["AtomFinder", "Sites", "resample"]


def resample(image: NDArray[np.floating[Any]], scale: float) -> NDArray[np.float32]:
    """An image resampled by ``scale`` (output pixels per input pixel along each axis).

    Bilinear, with a Gaussian anti-aliasing filter when shrinking (``scale < 1``), edges
    reflected: the importer's resampling. ``scale == 1`` returns a float32 copy.
    """
    data = np.asarray(image, dtype=np.float32)
    if scale == 1.0:
        return data.copy()
    from skimage.transform import rescale  # lazy: start-up time (~1 s)

    out: NDArray[np.float32] = np.ascontiguousarray(
        rescale(data, scale, order=1, anti_aliasing=scale < 1, preserve_range=True, mode="reflect"),
        dtype=np.float32,
    )
    return out


@dataclass(frozen=True)
class Sites:
    """Atoms found on one image.

    Attributes
    ----------
    xy : ndarray, shape (n, 2)
        ``(x, y)`` [px] in the input image (x = column, pixel centres at integers).
    classes : ndarray of int, shape (n,)
        Class index 1, 2, ... (``AtomFinder.classes[c - 1]`` names it).
    scores : ndarray, shape (n,)
        The class probability at each site.
    pixel_size : float
        The input image's pixel size [Å].
    """

    xy: NDArray[np.float64]
    classes: NDArray[np.int64]
    scores: NDArray[np.float64]
    pixel_size: float

    def __len__(self) -> int:
        return int(self.classes.size)

    def of_class(self, label: int) -> NDArray[np.float64]:
        """``(x, y)`` [px] of the sites of class ``label``."""
        points: NDArray[np.float64] = self.xy[self.classes == label]
        return points


@dataclass(frozen=True)
class AtomFinder:
    """A trained segmentation network with the settings training fed it with.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode.
    classes : tuple of str
        Foreground class names (mask values 1, 2, ...).
    pixel_size : float
        Pixel size of the training images [Å].
    tile : tuple of int
        Training crop (rows, cols) [px]: the field of view one tile covers.
    stride : int
        The network's output stride.
    method : {"log", "peaks"}
        Atom finder (the trial's ``detection.method``).
    threshold : float
        Minimum class probability of an atom (the trial's ``detection.threshold``).
    match_radius : float
        The trial's matching radius [Å].
    label_radius : float
        Radius of the training label disks [Å].
    source : str
        Where the network came from (a path, a run), for messages.
    """

    model: torch.nn.Module
    classes: tuple[str, ...]
    pixel_size: float
    tile: tuple[int, int]
    stride: int
    method: Literal["log", "peaks"]
    threshold: float
    match_radius: float
    label_radius: float
    source: str

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        pixel_size: float | None = None,
        source: str | None = None,
    ) -> AtomFinder:
        """Read a segmentation ``best.pt``.

        Parameters
        ----------
        path : path
            The checkpoint.
        device : str
            Torch device.
        pixel_size : float, optional
            Training pixel size [Å] for a checkpoint that predates its recording.
        source : str, optional
            How to name the network in messages (default: the path).

        Raises
        ------
        ValueError
            If the file is not a segmentation checkpoint or lacks the training pixel
            size and none is given.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no model file {path}")
        try:
            model, content = load_checkpoint(path, device=device)
        except (KeyError, RuntimeError, OSError) as exc:
            raise ValueError(
                f"{path} is not a segmentation best.pt ({type(exc).__name__}: {exc})"
            ) from None
        config = content.get("config", {})
        trained = content.get("pixel_size", pixel_size)
        if trained is None:
            raise ValueError(
                f"{path} does not record its training pixel size (made before hpcbench "
                "0.x recorded it): pass --model-pixel-size"
            )
        crop = (config.get("augment") or {}).get("crop")
        tile = content.get("tile") or crop
        if tile is None:
            raise ValueError(f"{path} records no training crop or image shape")
        detection = config.get("detection") or {}
        dataset = config.get("dataset")
        radius = float(((config.get("datasets") or {}).get(dataset) or {}).get("radius", 0.6))
        spec_model = content["model"]
        return cls(
            model=model,
            classes=tuple(content["classes"]),
            pixel_size=float(trained),
            tile=(int(tile[0]), int(tile[1])),
            stride=_stride(spec_model),
            method=detection.get("method", "log"),
            threshold=float(detection.get("threshold", 0.0)),
            match_radius=float(detection.get("match_radius", 0.5)),
            label_radius=radius,
            source=source or str(path),
        )

    def probabilities(
        self, image: NDArray[np.floating[Any]], *, batch_size: int = 8
    ) -> NDArray[np.float32]:
        """Class probabilities of an image already at the training pixel size.

        Parameters
        ----------
        image : ndarray, shape (rows, cols)
            Raw intensities (normalised here, tile by tile).
        batch_size : int
            Tiles per forward pass.

        Returns
        -------
        ndarray of float32, shape (classes + 1, rows, cols)
            Blended softmax probabilities (class 0 is background).
        """
        data = np.asarray(image, dtype=np.float32)
        if data.ndim != 2:
            raise ValueError(f"image must be 2-D, got shape {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError("image holds NaN or infinite values")
        return predict_tiled(
            self.model, data, tile=self.tile, stride=self.stride, batch_size=batch_size
        )

    def find(
        self, image: NDArray[np.floating[Any]], *, pixel_size: float, batch_size: int = 8
    ) -> tuple[Sites, NDArray[np.float32]]:
        """Atoms in an image of any size and pixel size.

        Parameters
        ----------
        image : ndarray, shape (rows, cols)
            Raw intensities.
        pixel_size : float
            The image's pixel size [Å].
        batch_size : int
            Tiles per forward pass.

        Returns
        -------
        sites : Sites
            The atoms, in the input image's pixels.
        probabilities : ndarray, shape (classes + 1, rows', cols')
            The probabilities at the training pixel size.
        """
        if not (math.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"pixel size must be a positive number of Å, got {pixel_size}")
        data = np.asarray(image, dtype=np.float32)
        scale = pixel_size / self.pixel_size
        resampled = resample(data, scale)
        probabilities = self.probabilities(resampled, batch_size=batch_size)
        found = find_class_atoms(
            probabilities,
            method=self.method,
            threshold=self.threshold,
            max_sigma=self.label_radius / self.pixel_size,
        )
        xy_parts, class_parts, score_parts = [], [], []
        sy = resampled.shape[0] / data.shape[0]
        sx = resampled.shape[1] / data.shape[1]
        for label, points in enumerate(found, start=1):
            score_parts.append(site_scores(probabilities[label], points))
            back = np.empty_like(points)
            back[:, 0] = (points[:, 0] + 0.5) / sx - 0.5
            back[:, 1] = (points[:, 1] + 0.5) / sy - 0.5
            xy_parts.append(back)
            class_parts.append(np.full(len(points), label, dtype=np.int64))
        sites = Sites(
            xy=np.concatenate(xy_parts) if xy_parts else np.empty((0, 2)),
            classes=np.concatenate(class_parts) if class_parts else np.empty(0, np.int64),
            scores=np.concatenate(score_parts) if score_parts else np.empty(0),
            pixel_size=pixel_size,
        )
        return sites, probabilities


def _stride(model_spec: Any) -> int:
    from pydantic import TypeAdapter

    from hpcbench.study import ModelSpec

    spec = TypeAdapter(ModelSpec).validate_python(model_spec)
    return output_stride(spec)
