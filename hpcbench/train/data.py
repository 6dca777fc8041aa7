"""Training data from Parquet datasets: views of the Arrow buffers, on-the-fly noise.

:class:`ImageSet` reads the shards of one dataset with pyarrow and keeps, per shard, a
read-only numpy view of the ``image``, ``clean`` and ``mask`` tensor columns (no copy
of the image data is made on load). An item is produced when asked for:

- the frame: the stored noisy ``image``, or — when the trial sets a ``dose`` — the
  stored ``clean`` frame re-noised by :func:`hpcbench.simulate.corrupt.add_noise` with
  the image's own corruption parameters and that dose (dose is a trial parameter, not
  a dataset). Training frames get fresh noise every epoch (seed from trial seed, epoch
  and sample id); validation and test frames use the image's stored corruption seed,
  so every trial with the same dose is scored on the same frames;
- normalised per image to [0, 1] (seed 001);
- the mask mapped from the dataset's classes to the trial's (classes the trial does
  not train on become background 0);
- for training, augmented by :func:`augment` (random crop, rot90, flips).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from hpcbench.datasets.read import shard_files
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.simulate.corrupt import CorruptionParams, add_noise

__all__ = ["Batch", "ImageSet", "augment", "class_lookup", "normalize"]

_CORRUPTION_FIELDS = tuple(CorruptionParams.__dataclass_fields__)


def normalize(image: NDArray[np.floating]) -> NDArray[np.float32]:
    """Scale an image linearly to [0, 1] (a constant image becomes zeros)."""
    data = np.asarray(image, dtype=np.float32)
    low = float(data.min())
    span = float(data.max()) - low
    if span <= 0 or not np.isfinite(span):
        return np.zeros_like(data)
    result: NDArray[np.float32] = (data - np.float32(low)) * np.float32(1.0 / span)
    return result


def class_lookup(dataset_classes: Sequence[str], classes: Sequence[str]) -> NDArray[np.int64]:
    """Dataset mask value → trial class index.

    Parameters
    ----------
    dataset_classes : sequence of str
        Names of the dataset's mask values 1, 2, ... (see
        :func:`hpcbench.study.dataset_classes`).
    classes : sequence of str
        The trial's classes; ``classes[i]`` becomes ``i + 1``.

    Returns
    -------
    ndarray of int64, shape (len(dataset_classes) + 1,)
        ``lut[v]`` is the trial class of mask value ``v`` (0 for background and for
        dataset classes the trial does not use).
    """
    lut = np.zeros(len(dataset_classes) + 1, dtype=np.int64)
    for value, name in enumerate(dataset_classes, start=1):
        if name in classes:
            lut[value] = list(classes).index(name) + 1
    return lut


def augment(
    image: NDArray[np.float32],
    mask: NDArray[np.int64],
    rng: np.random.Generator,
    *,
    crop: tuple[int, int] | None,
    rot90: bool,
    flips: bool,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Random crop, then a random multiple of 90° and random flips, applied to both.

    Draws, in order: the crop corner (rows, cols), the rotation (0-3 quarter turns; 0
    or 2 for a non-square crop, which a quarter turn would reshape), a left-right and
    an up-down flip. Returns contiguous arrays.
    """
    if crop is not None:
        rows, cols = crop
        if rows > image.shape[0] or cols > image.shape[1]:
            raise ValueError(f"crop {crop} is larger than the image {image.shape}")
        top = int(rng.integers(0, image.shape[0] - rows + 1))
        left = int(rng.integers(0, image.shape[1] - cols + 1))
        image = image[top : top + rows, left : left + cols]
        mask = mask[top : top + rows, left : left + cols]
    if rot90:
        square = image.shape[0] == image.shape[1]
        turns = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
        image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    if flips:
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            image, mask = image[::-1], mask[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


@dataclass(frozen=True)
class Batch:
    """A stack of frames (N, H, W) float32 in [0, 1] and masks (N, H, W) int64."""

    images: NDArray[np.float32]
    masks: NDArray[np.int64]
    sample_ids: NDArray[np.int64]


class ImageSet:
    """Some samples of one dataset, with the trial's classes and dose.

    Parameters
    ----------
    dataset_dir : path
        A generated dataset directory.
    sample_ids : sequence of int
        Which samples (e.g. one split, or a training subset of it).
    dataset_classes : sequence of str
        Names of the dataset's mask values 1, 2, ...
    classes : sequence of str
        The trial's classes.
    dose : float or None
        Re-noise the clean frames at this dose [e/Å²]; ``None`` uses the stored frames.
    fidelity : str or None
        Take the frames from the ``clean_<fidelity>`` column (an HRTEM dataset's other
        simulation fidelities; its own is ``clean``), re-noised like a trial dose with
        each image's own corruption (and ``dose`` if given).

    Raises
    ------
    ValueError
        If a sample id is not in the dataset, or ``dose`` is set and the dataset has no
        ``clean`` column.
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        sample_ids: Sequence[int] | NDArray[np.integer],
        *,
        dataset_classes: Sequence[str],
        classes: Sequence[str],
        dose: float | None = None,
        fidelity: str | None = None,
    ) -> None:
        self.directory = Path(dataset_dir)
        self.dose = dose
        self.fidelity = fidelity
        self._renoise = dose is not None or fidelity is not None
        self.lut = class_lookup(dataset_classes, classes)
        wanted = np.asarray(sample_ids, dtype=np.int64)
        self._images: list[NDArray[np.float32]] = []
        self._clean: list[NDArray[np.float32]] = []
        self._masks: list[NDArray[np.uint8]] = []
        self._coordinates: list[pa.ListArray] = []
        self._params: list[list[CorruptionParams]] = []
        self._seeds: list[NDArray[np.int64]] = []
        self._pixel: list[NDArray[np.float64]] = []
        where: dict[int, tuple[int, int]] = {}
        wanted_set = set(wanted.tolist())
        for path in shard_files(self.directory):
            ids = pq.read_table(path, columns=["sample_id"]).column(0).to_numpy()
            if not wanted_set.intersection(ids.tolist()):
                continue
            table = pq.read_table(path)
            shard = len(self._images)
            for row, sid in enumerate(ids.tolist()):
                if sid in wanted_set:
                    where[int(sid)] = (shard, row)
            self._images.append(images_to_numpy(table, "image"))  # type: ignore[arg-type]
            own = _own_fidelity(table)
            if fidelity is not None and fidelity != own:
                column = f"clean_{fidelity}"
                if column not in table.column_names:
                    raise ValueError(
                        f"{self.directory}: no images of fidelity {fidelity!r} (column "
                        f"{column}; the dataset's own is {own or 'none'})"
                    )
                self._clean.append(images_to_numpy(table, column))  # type: ignore[arg-type]
            elif "clean" in table.column_names:
                self._clean.append(images_to_numpy(table, "clean"))  # type: ignore[arg-type]
            elif self._renoise:
                self._clean.append(self._images[-1])  # uncorrupted dataset: image is clean
            self._masks.append(images_to_numpy(table, "mask"))  # type: ignore[arg-type]
            coords = table.column("coordinates")
            self._coordinates.append(coords.combine_chunks())
            self._params.append(_corruption_params(table))
            self._seeds.append(_int_column(table, "corruption_seed"))
            self._pixel.append(table.column("pixel_size").to_numpy())
        missing = sorted(set(wanted.tolist()) - where.keys())
        if missing:
            raise ValueError(
                f"{self.directory}: samples {missing[:5]}{'...' if len(missing) > 5 else ''} "
                "are not in the dataset"
            )
        self.sample_ids = wanted
        self._where = np.array([where[int(s)] for s in wanted], dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return int(self.sample_ids.size)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (rows, cols) [px]."""
        return (int(self._images[0].shape[1]), int(self._images[0].shape[2]))

    def pixel_size(self, index: int) -> float:
        """Pixel size [Å] of item ``index``."""
        shard, row = self._where[index]
        return float(self._pixel[shard][row])

    def frame(
        self, index: int, *, seed: int | np.random.SeedSequence | None = None
    ) -> NDArray[np.float32]:
        """The unnormalised frame of item ``index``.

        With a trial dose the clean frame is re-noised with ``seed`` (default: the
        image's stored corruption seed); otherwise the stored frame (a read-only view).
        """
        shard, row = self._where[index]
        if not self._renoise:
            stored: NDArray[np.float32] = self._images[shard][row]
            return stored
        params = self._params[shard][row]
        if self.dose is not None:
            params = replace(params, dose=self.dose)
        noise_seed = int(self._seeds[shard][row]) if seed is None else seed
        return add_noise(
            self._clean[shard][row],
            params,
            pixel_size=float(self._pixel[shard][row]),
            seed=noise_seed,
        )

    def mask(self, index: int) -> NDArray[np.int64]:
        """The trial-class mask of item ``index``."""
        shard, row = self._where[index]
        result: NDArray[np.int64] = self.lut[self._masks[shard][row]]
        return result

    def coordinates(self, index: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Labelled sites of item ``index``: (n, 2) ``(x, y)`` [px] and trial classes.

        Sites of classes the trial does not use are dropped.
        """
        shard, row = self._where[index]
        entry = self._coordinates[shard][int(row)].values
        xy = np.stack([entry.field("x").to_numpy(), entry.field("y").to_numpy()], axis=1).astype(
            np.float64
        )
        labels = self.lut[entry.field("label").to_numpy().astype(np.int64)]
        keep = labels > 0
        return xy[keep].reshape(-1, 2), labels[keep]

    def item(
        self, index: int, *, seed: int | np.random.SeedSequence | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Normalised frame and mask of item ``index`` (no augmentation)."""
        return normalize(self.frame(index, seed=seed)), self.mask(index)

    def batch(self, indices: Sequence[int] | NDArray[np.integer]) -> Batch:
        """Validation/test batch: stored (or stored-seed re-noised) frames, unaugmented."""
        items = [self.item(int(i)) for i in indices]
        return Batch(
            images=np.stack([image for image, _ in items]),
            masks=np.stack([mask for _, mask in items]),
            sample_ids=self.sample_ids[np.asarray(indices, dtype=np.int64)],
        )


def _own_fidelity(table: pa.Table) -> str | None:
    """The fidelity of a shard's ``clean``/``image`` columns (HRTEM), else ``None``."""
    if "fidelity" not in table.column_names or table.num_rows == 0:
        return None
    return str(table.column("fidelity")[0].as_py())


def _int_column(table: pa.Table, name: str) -> NDArray[np.int64]:
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    column = table.column(name)
    return np.asarray(column.fill_null(0).to_numpy(), dtype=np.int64)


def _corruption_params(table: pa.Table) -> list[CorruptionParams]:
    """Each row's :class:`CorruptionParams` from its ``corruption_*`` columns.

    A missing column, or a null outside ``dose``, takes the parameter's default: shards
    written before a parameter existed (``correlated_noise``, ``noise_correlation``),
    or whose spec left it unset, have no column for it (or nulls where such shards are
    read together with newer ones), and mean "no such effect".
    """
    names = [n for n in _CORRUPTION_FIELDS if f"corruption_{n}" in table.column_names]
    if not names:
        return [CorruptionParams()] * table.num_rows
    columns: Mapping[str, list[float | None]] = {
        n: table.column(f"corruption_{n}").to_pylist() for n in names
    }
    return [
        CorruptionParams(
            **{  # type: ignore[arg-type]
                n: columns[n][row] for n in names if n == "dose" or columns[n][row] is not None
            }
        )
        for row in range(table.num_rows)
    ]
