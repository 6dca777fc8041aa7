"""A PNG contact sheet of a dataset: images, mask overlay per class, labelled sites."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from hpcbench.datasets.manifest import ManifestError, read_manifest
from hpcbench.datasets.read import shard_files
from hpcbench.datasets.schema import COORDINATES, SAMPLE_ID, images_to_numpy

__all__ = ["class_names", "show_dataset"]

# Mask classes in tab10 order, skipping its grey; alpha of the mask overlay.
# One distinct colour per mask value up to 13 (lattice + the nine MX2 classes fit).
_COLOURS = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
)
_MASK_ALPHA = 0.35


def class_names(dataset_dir: str | os.PathLike[str]) -> dict[int, str]:
    """Mask value → class name from the dataset's manifest (empty if unreadable).

    A translated dataset has its source's labels (``spec.source.spec.labels``).
    """
    try:
        spec = read_manifest(dataset_dir).spec
        if spec.get("kind") == "translated":
            spec = spec["source"]["spec"]
        labels = spec["labels"]
    except (ManifestError, KeyError, TypeError):
        return {}
    offset = 2 if labels.get("lattice") else 1
    names = {value + offset: str(name) for value, name in enumerate(labels["classes"])}
    if labels.get("lattice"):
        names[1] = "lattice"
    return names


def _first_rows(dataset_dir: Path, n: int) -> pa.Table:
    tables: list[pa.Table] = []
    rows = 0
    for path in shard_files(dataset_dir):
        if rows >= n:
            break
        table = pq.read_table(path)
        tables.append(table.slice(0, n - rows))
        rows += tables[-1].num_rows
    if not tables:
        raise FileNotFoundError(f"{dataset_dir}: no shards")
    return pa.concat_tables(tables).combine_chunks()


def _overlay(mask: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    from matplotlib.colors import to_rgba  # lazy: start-up time of every CLI command

    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    for value in np.unique(mask[mask > 0]):
        colour = to_rgba(_COLOURS[(int(value) - 1) % len(_COLOURS)], _MASK_ALPHA)
        rgba[mask == value] = colour
    return rgba


def show_dataset(
    dataset_dir: str | os.PathLike[str], *, n: int = 16, out: str | os.PathLike[str]
) -> Path:
    """Draw the first ``n`` images of a dataset as a grid and save it as a PNG.

    Each panel shows the ``image`` column in grey with the ``mask`` column (if present)
    overlaid in one transparent colour per class, and the ``coordinates`` sites (if
    present) as rings in their class colour; a legend names the classes (from the
    manifest's label spec).

    Parameters
    ----------
    dataset_dir : path
        A dataset directory.
    n : int
        Number of images (the first ``n`` by sample id).
    out : path
        PNG file to write.

    Returns
    -------
    Path
        ``out``.
    """
    # lazy: start-up time of every CLI command (verify, generate import this package)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    directory = Path(dataset_dir)
    table = _first_rows(directory, n)
    images = images_to_numpy(table, "image")
    masks = images_to_numpy(table, "mask") if "mask" in table.column_names else None
    sites = table.column(COORDINATES).to_pylist() if COORDINATES in table.column_names else None
    ids = table.column(SAMPLE_ID).to_pylist()
    names = class_names(directory)

    count = len(images)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(2.2 * columns, 2.2 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    seen: set[int] = set()
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= count:
            continue
        ax.imshow(images[index], cmap="gray", interpolation="nearest")
        if masks is not None:
            ax.imshow(_overlay(masks[index]), interpolation="nearest")
            seen.update(int(v) for v in np.unique(masks[index]) if v > 0)
        for site in sites[index] if sites is not None else []:
            label = int(site.get("label", 1))
            seen.add(label)
            colour = _COLOURS[(label - 1) % len(_COLOURS)]
            ax.plot(site["x"], site["y"], "o", ms=5, mfc="none", mec=colour, mew=1.0)
        ax.set_title(f"sample {ids[index]}", fontsize=8)
    handles: list[Any] = [
        Patch(
            facecolor=_COLOURS[(value - 1) % len(_COLOURS)],
            alpha=max(_MASK_ALPHA, 0.6),
            label=names.get(value, f"class {value}"),
        )
        for value in sorted(seen)
    ]
    if sites is not None:
        handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="labelled site")
        )
    if handles:
        # At most three entries per row, so nine MX2 classes fit even a 3-panel width.
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))
    figure.suptitle(directory.name, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    return out
