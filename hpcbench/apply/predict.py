"""``hpcbench predict``: find atoms in experimental images and, given labels, score them.

For each image this writes ``<stem>.csv`` (one row per atom: ``x``, ``y`` [px], ``x_A``,
``y_A`` [Å], ``class``, ``score``) and ``<stem>.png`` (the image with the atoms circled;
with labels, matched atoms green, false positives red and missed labels yellow), and with
labels ``scores.csv`` (per image and pooled: TP, FP, FN, precision, recall, F1 and the
localisation error [pm] at every matching radius) and ``summary.json``.

Scoring follows the usual convention for hand-labelled experimental images: every
prediction and every label counts wherever it is (no edge band, unlike the trainer's
scores on simulated crops, whose labels stop at the frame), matched one-to-one within
the radius by the Hungarian algorithm (:func:`hpcbench.metrics.detection_counts`), and
counts are pooled over images before the ratios are taken.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from hpcbench.apply.inference import AtomFinder, Sites
from hpcbench.metrics import DetectionCounts, detection_counts, match_points

__all__ = [
    "ImageResult",
    "MatchRadius",
    "PredictResult",
    "label_files",
    "parse_radius",
    "predict_images",
]


@dataclass(frozen=True)
class MatchRadius:
    """A matching radius given in Å or in pixels of the scored image."""

    value: float
    unit: str  # "Å" or "px"

    def pixels(self, pixel_size: float) -> float:
        """The radius in pixels of an image of ``pixel_size`` [Å]."""
        return self.value if self.unit == "px" else self.value / pixel_size

    def __str__(self) -> str:
        return f"{self.value:g}{'px' if self.unit == 'px' else ' Å'}"


def parse_radius(text: str) -> MatchRadius:
    """``"1.5"`` or ``"1.5A"`` (Å) or ``"5px"`` (pixels) as a :class:`MatchRadius`."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|Å|A)?\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"match radius {text!r} is not a positive number of Å or px (e.g. 5px)")
    unit = "px" if match.group(2) == "px" else "Å"
    return MatchRadius(float(match.group(1)), unit)


@dataclass
class ImageResult:
    """One image's atoms and, with labels, its counts per matching radius."""

    path: Path
    sites: Sites
    labels: NDArray[np.float64] | None = None
    counts: dict[str, DetectionCounts] = field(default_factory=dict)


@dataclass
class PredictResult:
    """What :func:`predict_images` found and wrote."""

    images: list[ImageResult]
    radii: list[MatchRadius]
    out_dir: Path
    seconds: float

    def pooled(self) -> dict[str, DetectionCounts]:
        """Counts summed over the labelled images, per radius."""
        return {
            str(radius): sum(
                (r.counts[str(radius)] for r in self.images if r.labels is not None),
                DetectionCounts(),
            )
            for radius in self.radii
        }

    def summary_lines(self) -> list[str]:
        """Human-readable result: atoms found, and pooled scores with labels."""
        found = sum(len(r.sites) for r in self.images)
        lines = [
            f"{found} atoms in {len(self.images)} images ({self.seconds:.1f} s): {self.out_dir}"
        ]
        labelled = [r for r in self.images if r.labels is not None]
        if labelled:
            pixel = labelled[0].sites.pixel_size
            n_labels = sum(0 if r.labels is None else len(r.labels) for r in labelled)
            for radius, counts in self.pooled().items():
                s = counts.scores(pixel)
                lines.append(
                    f"pooled @ {radius}: P {s['detection_precision']:.3f}  "
                    f"R {s['detection_recall']:.3f}  F1 {s['detection_f1']:.3f}  "
                    f"(TP {counts.tp}, FP {counts.fp}, FN {counts.fn}; "
                    f"{len(labelled)} images, {n_labels} labels)"
                )
        return lines


def label_files(
    images: Sequence[Path], labels: Path, *, pairs: Path | None = None
) -> dict[Path, Path]:
    """The label file of every image: named in ``pairs`` or found by name in ``labels``.

    Raises
    ------
    ValueError
        Naming the first image without a label file.
    """
    from hpcbench.datasets.importer import label_file_for, read_pairs

    if not labels.is_dir():
        raise ValueError(f"labels {labels} is not a folder")
    table = read_pairs(pairs) if pairs is not None else None
    found: dict[Path, Path] = {}
    for image in images:
        if table is not None:
            entry = table.get(image.name)
            path = labels / entry[0] if entry else None
        else:
            path = label_file_for(image, labels)
        if path is None or not path.is_file():
            where = f"in {pairs}" if pairs is not None else f"in {labels}"
            raise ValueError(f"no label file for {image.name} {where}")
        found[image] = path
    return found


def _read_points(path: Path) -> NDArray[np.float64]:
    from hpcbench.datasets.importer import read_label_csv

    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: predict reads CSV labels (X, Y columns) only")
    try:
        labels = read_label_csv(path, ["atom"])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return np.column_stack([labels.x, labels.y]).astype(np.float64)


def _write_sites(path: Path, sites: Sites, classes: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["x", "y", "x_A", "y_A", "class", "score"])
    for (x, y), label, score in zip(sites.xy, sites.classes, sites.scores, strict=True):
        writer.writerow(
            [
                f"{x:.3f}",
                f"{y:.3f}",
                f"{x * sites.pixel_size:.4f}",
                f"{y * sites.pixel_size:.4f}",
                classes[int(label) - 1],
                f"{score:.4f}",
            ]
        )
    _atomic_write(path, buffer.getvalue().encode())


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def overlay_png(
    image: NDArray[np.floating[Any]],
    sites: Sites,
    labels: NDArray[np.float64] | None,
    radius_px: float,
    *,
    title: str = "",
) -> bytes:
    """PNG of an image with its atoms circled (and, with labels, matched/missed marks)."""
    from matplotlib.figure import Figure  # lazy: start-up time

    data = np.asarray(image, dtype=np.float64)
    low, high = np.percentile(data, [0.5, 99.5])
    rows, cols = data.shape
    figure = Figure(figsize=(6.0, 6.0 * rows / cols), layout="constrained")
    axis = figure.subplots()
    axis.imshow(data, cmap="gray", vmin=low, vmax=high if high > low else low + 1)
    size = max(4.0, 3 * radius_px) ** 2 / 4
    if labels is None:
        axis.scatter(
            sites.xy[:, 0],
            sites.xy[:, 1],
            s=size,
            facecolors="none",
            edgecolors="red",
            linewidths=0.7,
        )
    else:
        pred, true, _ = match_points(sites.xy, labels, radius_px)
        hit = np.zeros(len(sites), dtype=bool)
        hit[pred] = True
        found = np.zeros(len(labels), dtype=bool)
        found[true] = True
        axis.scatter(
            sites.xy[hit, 0],
            sites.xy[hit, 1],
            s=size,
            facecolors="none",
            edgecolors="lime",
            linewidths=0.7,
        )
        axis.scatter(
            sites.xy[~hit, 0],
            sites.xy[~hit, 1],
            s=size,
            facecolors="none",
            edgecolors="red",
            linewidths=0.7,
        )
        axis.scatter(
            labels[~found, 0], labels[~found, 1], s=size, marker="x", c="yellow", linewidths=0.8
        )
        title += f"  green: matched {hit.sum()}, red: false {(~hit).sum()}, "
        title += f"yellow x: missed {(~found).sum()}"
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _progress(done: int, total: int, began: float, stream: TextIO) -> None:
    elapsed = time.perf_counter() - began
    eta = elapsed / done * (total - done) if done else math.nan
    width = 24
    bar = "#" * round(width * done / total) + "." * (width - round(width * done / total))
    end = "\n" if done == total else "\r"
    stream.write(f"\rpredict [{bar}] {done}/{total} images, ETA {eta:4.0f} s{end}")
    stream.flush()


def predict_images(
    finder: AtomFinder,
    images: Sequence[str | os.PathLike[str]],
    *,
    pixel_size: float | Callable[[Path], float],
    out_dir: str | os.PathLike[str],
    labels: dict[Path, Path] | None = None,
    radii: Iterable[MatchRadius] = (),
    figures: bool = True,
    progress: TextIO | None = sys.stderr,
) -> PredictResult:
    """Find atoms in every image, write CSVs (and overlays), score against labels.

    Parameters
    ----------
    finder : AtomFinder
        The trained network.
    images : sequence of path
        Image files (any format :func:`hpcbench.datasets.importer.read_image` reads).
    pixel_size : float or callable
        Pixel size of the images [Å], or a function of the path giving it per image.
    out_dir : path
        Folder for the outputs (created).
    labels : dict of path to path, optional
        Label CSV (``X``, ``Y`` [px]) of every image (:func:`label_files`).
    radii : iterable of MatchRadius
        Matching radii (default: the trial's ``detection.match_radius``); the first is
        the one circles are drawn with.
    figures : bool
        Write the overlay PNGs.
    progress : text stream, optional
        Where the progress bar goes (``None``: nowhere).

    Returns
    -------
    PredictResult
    """
    from hpcbench.datasets.importer import read_image

    paths = [Path(p) for p in images]
    if not paths:
        raise ValueError("no images to predict")
    chosen = list(radii) or [MatchRadius(finder.match_radius, "Å")]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = []
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError("two images share a file name stem; their outputs would collide")
    for number, path in enumerate(paths, start=1):
        size = pixel_size(path) if callable(pixel_size) else pixel_size
        image = read_image(path)
        sites, _ = finder.find(image, pixel_size=size)
        result = ImageResult(path, sites)
        if labels is not None:
            truth = _read_points(labels[path])
            result.labels = truth
            for radius in chosen:
                result.counts[str(radius)] = detection_counts(sites.xy, truth, radius.pixels(size))
        _write_sites(out / f"{path.stem}.csv", sites, finder.classes)
        if figures:
            png = overlay_png(image, sites, result.labels, chosen[0].pixels(size), title=path.name)
            _atomic_write(out / f"{path.stem}.png", png)
        results.append(result)
        if progress is not None:
            _progress(number, len(paths), began, progress)
    outcome = PredictResult(results, chosen, out, time.perf_counter() - began)
    if labels is not None:
        _write_scores(outcome)
    return outcome


def _score_row(name: str, counts: DetectionCounts, pixel_size: float) -> dict[str, Any]:
    s = counts.scores(pixel_size)
    return {
        "image": name,
        "tp": counts.tp,
        "fp": counts.fp,
        "fn": counts.fn,
        "precision": s["detection_precision"],
        "recall": s["detection_recall"],
        "f1": s["detection_f1"],
        "localisation_error_pm": s["localisation_error"],
    }


def _write_scores(result: PredictResult) -> None:
    rows = []
    summary: dict[str, Any] = {"model": None, "radii": {}, "images": {}}
    for radius in result.radii:
        key = str(radius)
        for image in result.images:
            row = _score_row(image.path.name, image.counts[key], image.sites.pixel_size)
            rows.append({"radius": key, **row})
            summary["images"].setdefault(image.path.name, {})[key] = row
        pooled = result.pooled()[key]
        row = _score_row("pooled", pooled, result.images[0].sites.pixel_size)
        rows.append({"radius": key, **row})
        summary["radii"][key] = row
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    _atomic_write(result.out_dir / "scores.csv", buffer.getvalue().encode())
    summary.pop("model")
    _atomic_write(
        result.out_dir / "summary.json",
        json.dumps(summary, indent=2, sort_keys=True, allow_nan=True).encode(),
    )
