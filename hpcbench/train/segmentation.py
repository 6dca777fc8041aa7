"""The segmentation trainer: data, model, optimiser, epochs, validation, test, artifacts.

:class:`SegmentationTrainer` runs one :class:`~hpcbench.plan.SegmentationTrial` on the
shared skeleton of :class:`~hpcbench.train.trainer.Trainer`. Its randomness:

- the training subset: the first ``train_size`` images of a permutation of the
  training split drawn from the seed (so subsets of one repeat are nested);
- initialisation: ``torch.manual_seed(seed)`` inside a forked RNG (global state is
  left alone);
- epoch ``e``: the image order, each image's fresh noise (with a trial dose) and its
  augmentation come from ``SeedSequence([seed, stream, e, ...])``.

Recipe (seed 001 defaults, all from the study): Adam, learning rate decayed by
``lr_decay`` after every epoch, batch ``batch_size``, ``epochs`` epochs, no early
stopping, the model state with the best validation loss (or F1) kept.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import TypeAdapter

from hpcbench.metrics import (
    DetectionCounts,
    confusion_matrix,
    detection_counts,
    find_class_atoms,
    segmentation_scores,
)
from hpcbench.models import build_model, output_stride
from hpcbench.plan import SegmentationTrial
from hpcbench.study import DetectionSpec, ModelSpec
from hpcbench.train.data import ImageSet, augment, normalize
from hpcbench.train.losses import SegmentationLoss, balanced_class_weights
from hpcbench.train.trainer import BEST, SUBSET, Trainer, is_imported

__all__ = [
    "SegmentationTrainer",
    "load_checkpoint",
    "predict",
    "predict_tiled",
    "prediction_figure",
    "score_image_set",
    "tile_starts",
    "tile_weight",
]

_MODEL_SPEC: TypeAdapter[Any] = TypeAdapter(ModelSpec)


_AUTOCAST: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class Stream(IntEnum):
    """Streams of the trial's randomness (children of the trial seed)."""

    SUBSET = SUBSET
    ORDER = 1
    NOISE = 2
    AUGMENT = 3


def predict(
    model: torch.nn.Module, images: NDArray[np.float32], *, stride: int, batch_size: int = 16
) -> NDArray[np.float32]:
    """Class probabilities of whole images (padded by reflection to ``stride``).

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation network returning logits (N, C, H, W).
    images : ndarray, shape (N, H, W)
        Normalised frames.
    stride : int
        The model's output stride; inputs are padded up to a multiple of it.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray of float32, shape (N, C, H, W)
        Softmax probabilities.
    """
    device = next(model.parameters()).device
    rows, cols = images.shape[1:]
    pad_rows, pad_cols = (-rows) % stride, (-cols) % stride
    outputs = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            chunk = chunk[:, None].to(device)
            if pad_rows or pad_cols:
                mode = "reflect" if pad_rows < rows and pad_cols < cols else "replicate"
                chunk = F.pad(chunk, (0, pad_cols, 0, pad_rows), mode=mode)
            logits = model(chunk)[..., :rows, :cols]
            outputs.append(logits.softmax(dim=1).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outputs)


# Overlap of neighbouring tiles in predict_tiled, as a fraction of the tile.
OVERLAP = 0.25


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px, ``overlap`` px shared.

    The last tile ends at the image's edge (it may overlap its neighbour by more); an
    image no longer than a tile is one tile.
    """
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_weight(tile: int, overlap: int) -> NDArray[np.float32]:
    """1-D blending weight of a tile: 1 inside, falling linearly over ``overlap`` px.

    Never zero (the outermost pixel weighs ``1 / (overlap + 1)``), so a pixel only one
    tile covers keeps that tile's prediction.
    """
    index = np.arange(tile, dtype=np.float32)
    distance = np.minimum(index, tile - 1 - index) + 1
    return np.minimum(distance / np.float32(max(overlap, 0) + 1), 1.0).astype(np.float32)


def predict_tiled(
    model: torch.nn.Module,
    image: NDArray[np.floating[Any]],
    *,
    tile: tuple[int, int],
    stride: int,
    batch_size: int = 16,
) -> NDArray[np.float32]:
    """Class probabilities of one image of any size, predicted tile by tile.

    The image is cut into tiles of ``tile`` (the training crop: the field of view the
    network was trained on) overlapping by :data:`OVERLAP` of a tile; each is
    normalised on its own (:func:`~hpcbench.train.data.normalize`, as training
    normalised each crop); the softmax outputs are blended with :func:`tile_weight`, so
    a tile's edge, where the network lacks context, never decides a pixel another tile
    sees from inside. An image no larger than ``tile`` is one tile (the whole frame).

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation network returning logits.
    image : ndarray, shape (rows, cols)
        Raw or normalised intensities (min-max normalisation is affine-invariant).
    tile : (int, int)
        Tile shape [px].
    stride : int
        The model's output stride.
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    ndarray of float32, shape (classes, rows, cols)
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError("image holds NaN or infinite values")
    rows, cols = data.shape
    tile_rows, tile_cols = min(tile[0], rows), min(tile[1], cols)
    overlap_rows, overlap_cols = round(OVERLAP * tile_rows), round(OVERLAP * tile_cols)
    origins = [
        (r, c)
        for r in tile_starts(rows, tile_rows, overlap_rows)
        for c in tile_starts(cols, tile_cols, overlap_cols)
    ]
    if len(origins) == 1:
        whole: NDArray[np.float32] = predict(
            model, normalize(data)[None], stride=stride, batch_size=1
        )[0]
        return whole
    weight = np.outer(tile_weight(tile_rows, overlap_rows), tile_weight(tile_cols, overlap_cols))
    total: NDArray[np.float32] | None = None
    norm = np.zeros((rows, cols), dtype=np.float32)
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        tiles = np.stack([normalize(data[r : r + tile_rows, c : c + tile_cols]) for r, c in chunk])
        probabilities = predict(model, tiles, stride=stride, batch_size=batch_size)
        if total is None:
            total = np.zeros((probabilities.shape[1], rows, cols), dtype=np.float32)
        for (r, c), p in zip(chunk, probabilities, strict=True):
            total[:, r : r + tile_rows, c : c + tile_cols] += p * weight
            norm[r : r + tile_rows, c : c + tile_cols] += weight
    assert total is not None
    result: NDArray[np.float32] = total / norm
    return result


class SegmentationTrainer(Trainer[SegmentationTrial]):
    """Train and evaluate one segmentation trial.

    Parameters
    ----------
    trial : SegmentationTrial
        What to run.
    data_dirs : mapping of str to path
        Directory of each dataset the trial names.
    key : str, optional
        The trial's key, recorded in checkpoints and artifacts.
    device : str
        Torch device (``"cpu"``, ``"cuda"``).

    Raises
    ------
    ValueError
        For a crop the model or the images cannot take (one line naming the problem).
    """

    def __init__(
        self,
        trial: SegmentationTrial,
        data_dirs: Mapping[str, str | os.PathLike[str]],
        *,
        key: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(trial, data_dirs, key=key, device=device)
        self.classes: list[str] = list(trial.classes)
        self.num_classes = len(self.classes) + 1
        self.stride = output_stride(trial.model)
        self.crop = trial.augment.crop
        if self.crop is not None and any(size % self.stride for size in self.crop):
            raise ValueError(
                f"augment.crop {list(self.crop)} must be a multiple of {self.stride} for "
                f"model {trial.model_name} (its output stride)"
            )
        split = self.split(trial.dataset)
        subset = self.rng(Stream.SUBSET).permutation(split.train)[: trial.train_size]
        # The trial's fidelity is its training data (and the validation that picks the
        # checkpoint); test sets are scored as stored (seed 001: on "all effects").
        self.train_set = self._image_set(trial.dataset, subset, fidelity=trial.fidelity)
        self.val_set = self._image_set(trial.dataset, split.validation, fidelity=trial.fidelity)
        # The field of view the network is trained on: larger test frames go by tiles.
        self.tile: tuple[int, int] = tuple(self.crop or self.train_set.shape)  # type: ignore[assignment]
        if self.crop is not None and any(
            c > s for c, s in zip(self.crop, self.train_set.shape, strict=True)
        ):
            raise ValueError(
                f"augment.crop {list(self.crop)} exceeds the images {self.train_set.shape}"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = build_model(trial.model, in_channels=1, num_classes=self.num_classes)
        self.model.to(self.device)
        weights = None
        if trial.loss.class_weights == "balanced":
            counts = np.zeros(self.num_classes, dtype=np.int64)
            for index in range(len(self.train_set)):
                counts += np.bincount(self.train_set.mask(index).ravel(), minlength=counts.size)
            weights = balanced_class_weights(torch.from_numpy(counts))
        self.loss = SegmentationLoss(
            cross_entropy=trial.loss.cross_entropy,
            soft_f1=trial.loss.soft_f1,
            class_weights=weights,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=trial.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, gamma=trial.lr_decay
        )
        self.best_state: dict[str, torch.Tensor] = copy.deepcopy(self.model.state_dict())
        # Mixed precision: autocast for the training passes, a gradient scaler for fp16
        # (bf16 has fp32's range and needs none). Channels-last feeds cuDNN's fastest
        # convolutions on a GPU; on the CPU the layout stays as it was (same bytes).
        self.autocast_dtype = _AUTOCAST[trial.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=trial.precision == "fp16")
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ data

    def _image_set(
        self, name: str, ids: NDArray[np.int64], *, fidelity: str | None = None
    ) -> ImageSet:
        return self.image_set(
            name, ids, classes=self.classes, dose=self.trial.dose, fidelity=fidelity
        )

    def _training_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        """Augmented batches of this epoch and the seconds spent making each."""
        epoch = self.epoch
        order = self.rng(Stream.ORDER, epoch).permutation(len(self.train_set))
        size = self.trial.batch_size
        spec = self.trial.augment
        for start in range(0, order.size, size):
            began = time.perf_counter()
            images, masks = [], []
            for index in order[start : start + size].tolist():
                sample = int(self.train_set.sample_ids[index])
                noise = np.random.SeedSequence([self.seed, int(Stream.NOISE), epoch, sample])
                frame = normalize(self.train_set.frame(index, seed=noise))
                image, mask = augment(
                    frame,
                    self.train_set.mask(index),
                    self.rng(Stream.AUGMENT, epoch, sample),
                    crop=self.crop,
                    rot90=spec.rot90,
                    flips=spec.flips,
                )
                images.append(image)
                masks.append(mask)
            x = torch.from_numpy(np.stack(images))[:, None].to(self.device)
            y = torch.from_numpy(np.stack(masks)).to(self.device)
            yield x, y, time.perf_counter() - began

    # --------------------------------------------------------------- training

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training subset, then the learning-rate decay step.

        Returns
        -------
        dict
            ``train/loss`` (mean over images), ``train/learning_rate`` (used this
            epoch), ``train/images_per_second`` and ``train/data_fraction`` (share of
            the epoch's time spent making batches).
        """
        self.model.train()
        began = time.perf_counter()
        data_time = 0.0
        # The loss is summed on the device (float64, as a host sum would be): reading it
        # each step would make the host wait for the GPU once per batch.
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        learning_rate = float(self.optimizer.param_groups[0]["lr"])
        mixed = self.autocast_dtype is not None
        for x, y, seconds in self._training_batches():
            data_time += seconds
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=mixed):
                loss = self.loss(self.model(x), y)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.detach().double() * x.shape[0]
            count += x.shape[0]
        self.scheduler.step()
        total_loss = float(total)  # one synchronisation per epoch
        elapsed = time.perf_counter() - began
        self.epoch += 1
        return {
            "train/loss": total_loss / max(count, 1),
            "train/learning_rate": learning_rate,
            "train/images_per_second": count / elapsed if elapsed > 0 else math.nan,
            "train/data_fraction": data_time / elapsed if elapsed > 0 else math.nan,
        }

    def validate(self) -> dict[str, float]:
        """Loss and pixel scores on the validation split; keeps the best state.

        Returns
        -------
        dict
            ``val/loss``, ``val/f1``, ``val/intersection_over_union``,
            ``val/precision``, ``val/recall`` (macro over the trial's classes),
            ``val/foreground_fraction`` (pixels predicted as any class but background)
            and ``val/collapsed`` (1 when the network predicts background everywhere
            though the labels hold atoms: an all-background optimum, not physics).
        """
        batch = self.val_set.batch(np.arange(len(self.val_set)))
        probabilities = predict(
            self.model, batch.images, stride=self.stride, batch_size=self.trial.batch_size
        )
        target = torch.from_numpy(batch.masks)
        logits = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, None)))
        loss = float(self.loss(logits, target))
        prediction = probabilities.argmax(axis=1)
        confusion = confusion_matrix(prediction, batch.masks, self.num_classes)
        scores = segmentation_scores(confusion)
        metrics = {"val/loss": loss, **_collapse_metrics("val", prediction, batch.masks)}
        for name in ("f1", "intersection_over_union", "precision", "recall"):
            metrics[f"val/{name}"] = float(scores[name])
        score = loss if self.trial.select == "loss" else -_nan_to(metrics["val/f1"], 0.0)
        if score < self.best_score:
            self.best_score = score
            self.best_epoch = self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        metrics["val/best_epoch"] = float(self.best_epoch)
        return metrics

    # ----------------------------------------------------------- checkpoints

    def _training_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_state": self.best_state,
        }

    def _load_training_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_state = dict(state["best_state"])

    # ---------------------------------------------------------------- testing

    def best_model(self) -> torch.nn.Module:
        """A copy of the model with the best validation state."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_state)
        return model.eval()

    def test(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Score the best model on every test set (its test split, or all of it).

        Returns
        -------
        metrics : dict
            ``test/<set>/<name>`` for the pixel scores (``f1``,
            ``intersection_over_union``, ``precision``, ``recall``, macro over the
            trial's classes, and per class ``f1/<class>``) and the detection scores
            (``detection_f1``, ``detection_precision``, ``detection_recall``,
            ``localisation_error`` [pm]) pooled over classes; unmatched detections
            within the matching radius of the frame edge are not false positives
            (see :func:`hpcbench.metrics.detection_counts`).
        examples : dict
            A few test images, masks, predictions and detections per set, for figures.
        """
        model = self.best_model()
        metrics: dict[str, float] = {}
        examples: dict[str, Any] = {}
        for name in self.trial.test_sets:
            images = self._image_set(name, self.test_ids(name))
            scores, details = score_image_set(
                model,
                images,
                classes=self.classes,
                detection=self.trial.detection,
                label_radius=self.trial.datasets[name].radius,
                stride=self.stride,
                batch_size=self.trial.batch_size,
                tile=self.tile,
                edge=not is_imported(self.data_dirs[name]),
            )
            details.pop("image_counts")
            metrics.update({f"test/{name}/{key}": value for key, value in scores.items()})
            examples[name] = details
        return metrics, examples

    def save_artifacts(
        self, directory: str | os.PathLike[str], examples: Mapping[str, Any] | None = None
    ) -> list[Path]:
        """Write ``best.pt``, ``trial.json`` and ``predictions.png`` to ``directory``.

        ``best.pt`` holds ``state_dict`` (the best validation state), ``model`` (the
        model config), ``num_classes``, ``classes``, ``data_hashes``, ``config``,
        ``pixel_size`` [Å] (of the training images) and ``tile`` [px] (the training
        crop, or the image shape); see :func:`load_checkpoint`.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config
        hashes = {name: info.hash for name, info in self.trial.datasets.items()}
        torch.save(
            {
                "state_dict": self.best_state,
                "model": config["model"],
                "num_classes": self.num_classes,
                "classes": self.classes,
                "data_hashes": hashes,
                "best_epoch": self.best_epoch,
                "config": config,
                # What hpcbench predict needs to feed the network as training did:
                # resample to this pixel size [Å], normalise tiles of this shape [px].
                "pixel_size": self.train_set.pixel_size(0),
                "tile": list(self.tile),
            },
            directory / BEST,
        )
        (directory / "trial.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        written = [directory / BEST, directory / "trial.json"]
        if examples:
            png = directory / "predictions.png"
            png.write_bytes(prediction_figure(examples, self.classes))
            written.append(png)
        return written


def score_image_set(
    model: torch.nn.Module,
    images: ImageSet,
    *,
    classes: Sequence[str],
    detection: DetectionSpec,
    label_radius: float,
    stride: int,
    batch_size: int = 16,
    tile: tuple[int, int] | None = None,
    edge: bool = True,
    examples: int = 3,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Pixel and detection scores of a model on one image set (a trial's test metrics).

    Parameters
    ----------
    model : torch.nn.Module
        The segmentation network, in eval mode.
    images : ImageSet
        The images, masks and labelled coordinates, in the trial's classes.
    classes : sequence of str
        The trial's classes (mask values 1, 2, ...).
    detection : DetectionSpec
        The trial's atom finding and matching settings.
    label_radius : float
        Radius of the label disks [Å] (sets the largest blob searched).
    stride : int
        The model's output stride.
    batch_size : int
        Images per forward pass.
    tile : (int, int), optional
        The training crop [px]: frames larger than it (experimental images) are
        predicted tile by tile (:func:`predict_tiled`), as ``hpcbench predict`` does;
        ``None`` predicts whole frames.
    edge : bool
        Leave unmatched detections within the matching radius of the frame edge out of
        the false positives (simulated crops, whose labels stop at the frame; an atom
        just outside shows as a partial blob). ``False`` for hand-labelled real
        images, where every prediction counts.
    examples : int
        Images kept for figures.

    Returns
    -------
    scores : dict
        ``f1``, ``intersection_over_union``, ``precision``, ``recall`` (pixel scores,
        macro over classes), ``f1/<class>``, ``foreground_fraction``, ``collapsed`` and
        the pooled detection scores (:meth:`DetectionCounts.scores`).
    details : dict
        ``image_counts`` (a :class:`DetectionCounts` per image) and, for figures, the
        images, masks, predictions, detections and true sites of the first images.
    """
    num_classes = len(classes) + 1
    batch = images.batch(np.arange(len(images)))
    if tile is not None and any(s > t for s, t in zip(images.shape, tile, strict=True)):
        probabilities = np.stack(
            [
                predict_tiled(model, image, tile=tile, stride=stride, batch_size=batch_size)
                for image in batch.images
            ]
        )
    else:
        probabilities = predict(model, batch.images, stride=stride, batch_size=batch_size)
    prediction = probabilities.argmax(axis=1)
    confusion = confusion_matrix(prediction, batch.masks, num_classes)
    pixel = segmentation_scores(confusion, class_names=["background", *classes])
    metrics = _collapse_metrics("", prediction, batch.masks)
    metrics = {key.lstrip("/"): value for key, value in metrics.items()}
    for key in ("f1", "intersection_over_union", "precision", "recall"):
        metrics[key] = float(pixel[key])
    for cls in classes:
        metrics[f"f1/{cls}"] = float(pixel[f"f1/{cls}"])
    counts = DetectionCounts()
    found_all = []
    per_image: list[DetectionCounts] = []
    for index in range(len(images)):
        pixel_size = images.pixel_size(index)
        xy, labels = images.coordinates(index)
        found_image = find_class_atoms(
            probabilities[index],
            method=detection.method,
            threshold=detection.threshold,
            max_sigma=label_radius / pixel_size,
        )
        match = detection.match_radius / pixel_size
        image_counts = DetectionCounts()
        for label, found in enumerate(found_image, start=1):
            image_counts = image_counts + detection_counts(
                found, xy[labels == label], match, shape=images.shape, border=match if edge else 0.0
            )
        per_image.append(image_counts)
        counts = counts + image_counts
        found_all.append(found_image)
    pixel_size = images.pixel_size(0) if len(images) else math.nan
    metrics.update({key: float(value) for key, value in counts.scores(pixel_size).items()})
    shown = min(examples, len(images))
    example = {
        "images": batch.images[:shown],
        "masks": batch.masks[:shown],
        "predictions": prediction[:shown],
        "detections": found_all[:shown],
        "truth": [images.coordinates(i) for i in range(shown)],
        "image_counts": per_image,
    }
    return metrics, example


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trained model from a ``best.pt`` file, in eval mode, and the file's contents."""
    content: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
    spec = _MODEL_SPEC.validate_python(content["model"])
    model = build_model(spec, in_channels=1, num_classes=int(content["num_classes"]))
    model.load_state_dict(content["state_dict"])
    return model.to(device).eval(), content


def _collapse_metrics(
    prefix: str, prediction: NDArray[np.integer[Any]], masks: NDArray[np.integer[Any]]
) -> dict[str, float]:
    """``<prefix>/foreground_fraction`` and ``<prefix>/collapsed`` (1.0 or 0.0)."""
    predicted = float(np.count_nonzero(prediction)) / max(prediction.size, 1)
    labelled = np.count_nonzero(masks) > 0
    collapsed = predicted == 0.0 and labelled
    return {f"{prefix}/foreground_fraction": predicted, f"{prefix}/collapsed": float(collapsed)}


def _nan_to(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def prediction_figure(examples: Mapping[str, Any], classes: list[str]) -> bytes:
    """PNG of test images, labels and predictions (with detections) per test set."""
    rows = sum(len(e["images"]) for e in examples.values())
    figure = Figure(figsize=(9, 3 * max(rows, 1)), layout="constrained")
    axes = figure.subplots(max(rows, 1), 3, squeeze=False)
    vmax = len(classes)
    row = 0
    for name, example in examples.items():
        for i, image in enumerate(example["images"]):
            left, middle, right = axes[row]
            left.imshow(image, cmap="gray")
            left.set_title(f"{name} #{i}")
            middle.imshow(
                example["masks"][i], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest"
            )
            xy, _ = example["truth"][i]
            middle.scatter(xy[:, 0], xy[:, 1], s=6, c="white", marker="+", linewidths=0.5)
            middle.set_title("label")
            right.imshow(
                example["predictions"][i],
                cmap="viridis",
                vmin=0,
                vmax=vmax,
                interpolation="nearest",
            )
            for found in example["detections"][i]:
                if len(found):
                    right.scatter(
                        found[:, 0],
                        found[:, 1],
                        s=10,
                        facecolors="none",
                        edgecolors="red",
                        linewidths=0.6,
                    )
            right.set_title("prediction, detections")
            for axis in axes[row]:
                axis.set_axis_off()
            row += 1
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
