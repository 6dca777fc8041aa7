"""Importing experimental images (TIFF, PNG, NPY, HDF5, DM3/DM4/EMD) as an hpcbench dataset.

:func:`import_images` reads every image under a folder (sorted by file name), converts
it to float32, optionally resamples it to a target pixel size and cuts it into
non-overlapping patches, attaches labelled atom positions (from CSV files or mask
images; a labels folder or pairs file must label every image) and writes the rows with
the schema of simulated datasets (``sample_id``, ``image``, ``mask``, ``coordinates``,
``pixel_size``) plus ``source_file``, ``split``, ``origin_row`` and ``origin_col`` (the
patch's top-left pixel in the source image after resampling).

The dataset is written to ``OUT/NAME-HASH/`` with a ``_manifest.json`` whose ``spec``
is the import record: ``kind: imported``, the parameters, and the relative path and
SHA-256 of every source, label, pairs and pixel-size file. ``HASH`` is
:func:`hpcbench.datasets.manifest.imported_hash` of that spec, so ``hpcbench verify``
checks an imported dataset like a simulated one, and the same files imported with the
same parameters always land in the same directory.

The pixel size of the sources is one number, a CSV of one per image (columns ``image``
and ``pixel_size`` [Å]) or ``auto``: measured on each image from the first-order ring
of a hexagonal lattice of known constant (:func:`hpcbench.metrics.lattice.calibrate_pixel_size`).
Images of different pixel sizes are resampled to ``target_pixel_size``.

Coordinates use the pixel-centre convention of the simulated datasets: ``x`` (column)
and ``y`` (row) in pixels, pixel ``c`` spanning ``[c - 0.5, c + 0.5)``. Resampling by
``s = new / old`` pixels maps ``x`` to ``(x + 0.5) * s - 0.5``; a patch whose first
column is ``c0`` holds the sites with ``c0 - 0.5 <= x < c0 + w - 0.5``, so patches that
tile an image exactly keep every site inside it.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from hpcbench.datasets.manifest import IMPORTED_KIND, Manifest, imported_hash, write_manifest
from hpcbench.datasets.schema import DATA_FORMAT_VERSION, coordinates_type, tensor_column
from hpcbench.datasets.sink import ShardRecord, file_sha256, write_shard
from hpcbench.simulate.labels import Coordinates, render_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageImportError",
    "ImportRecord",
    "ImportResult",
    "LabelledSites",
    "import_images",
    "import_record",
    "label_file_for",
    "read_image",
    "read_label_csv",
    "read_pairs",
]

IMAGE_SUFFIXES: Final = (".tif", ".tiff", ".png", ".npy", ".h5", ".hdf5", ".dm3", ".dm4", ".emd")
_RSCIIO_SUFFIXES: Final = (".dm3", ".dm4", ".emd")
_HDF5_SUFFIXES: Final = (".h5", ".hdf5")
# pycroscopy's USID: a main dataset of (positions, spectral values) names these
# ancillary datasets in its attributes; they are 2-D and numeric but never images.
_USID_ANCILLARY: Final = (
    "Position_Indices",
    "Position_Values",
    "Spectroscopic_Indices",
    "Spectroscopic_Values",
)
_MIN_IMAGE_SIDE: Final = 8  # [px] a smaller 2-D dataset in an HDF5 file is metadata
SHARD_SIZE: Final = 256
AUTO: Final = "auto"  # pixel size measured on each image from a lattice
# A pixel size [Å], "auto", or the path of a CSV of one per image.
PixelSize = float | str | os.PathLike[str]
_LABEL_SUFFIXES: Final = ("_Results", "_results", "_labels", "_coordinates", "_mask", "")


class ImageImportError(ValueError):
    """Files or parameters that cannot be imported; one line per problem.

    Attributes
    ----------
    problems : list of str
        ``file: what is wrong`` for every bad file (all of them, not just the first).
    """

    def __init__(self, headline: str, problems: Sequence[str] = ()) -> None:
        self.headline = headline
        self.problems = list(problems)
        super().__init__("\n".join([headline, *self.problems]))

    @property
    def lines(self) -> list[str]:
        """The headline, then one line per problem."""
        return [self.headline, *self.problems]


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_images` wrote.

    Attributes
    ----------
    directory : Path
        The dataset directory ``OUT/NAME-HASH``.
    hash : str
        Hash of the import spec (12 hex digits).
    images : int
        Source images read.
    rows : int
        Rows written (patches, or images when not tiled).
    coordinates : int
        Labelled sites over all rows.
    shape : tuple of int
        ``(rows, cols)`` of every stored frame [px].
    pixel_size : float
        Pixel size of the stored frames [Å].
    seconds : float
        Wall time of the import [s].
    """

    directory: Path
    hash: str
    images: int
    rows: int
    coordinates: int
    shape: tuple[int, int]
    pixel_size: float
    seconds: float
    shards: list[ShardRecord] = field(default_factory=list)

    def summary(self) -> str:
        """One line: images, patches, coordinates, frame size, directory."""
        return (
            f"imported {self.images} images -> {self.rows} patches "
            f"{self.shape[0]}x{self.shape[1]} px at {self.pixel_size:.4g} Å/px, "
            f"{self.coordinates} coordinates: {self.directory}"
        )


@dataclass(frozen=True)
class ImportRecord:
    """What an import of some files with some parameters records, before writing.

    Attributes
    ----------
    spec : dict
        The manifest's ``spec`` (``kind: imported``, parameters, file hashes).
    hash : str
        :func:`hpcbench.datasets.manifest.imported_hash` of ``spec`` (12 hex digits).
    rows_per_image : tuple of int
        Rows (patches) cut from each source image, in row order: the rows of one image
        are consecutive.
    """

    spec: dict[str, Any]
    hash: str
    rows_per_image: tuple[int, ...]

    @property
    def name(self) -> str:
        """The dataset name."""
        return str(self.spec["name"])

    @property
    def size(self) -> int:
        """Rows of the dataset."""
        return int(self.spec["size"])

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of every stored frame [px]."""
        rows, cols = self.spec["image"]["shape"]
        return (int(rows), int(cols))


@dataclass
class _Prepared:
    """The rows of an import, ready to write, and their record."""

    record: ImportRecord
    frames: list[NDArray[np.float32]]
    masks: list[NDArray[np.uint8]]
    coordinates: list[list[dict[str, float | int]]]
    pixel_sizes: list[float]
    files: list[str]
    splits: list[str]
    origins: list[tuple[int, int]]


@dataclass
class LabelledSites:
    """Labelled sites of one image, and the label mask they came from, if any.

    Attributes
    ----------
    x, y : ndarray of float64
        Site centres [px]: column and row, pixel ``c`` spanning ``[c - 0.5, c + 0.5)``.
    cls : ndarray of int64
        Label value of each site (1 for the first class name).
    mask : ndarray of uint8, optional
        The label mask when the labels were a mask image.
    """

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    cls: NDArray[np.int64]
    mask: NDArray[np.uint8] | None = None


@dataclass
class _Source:
    path: Path
    image: NDArray[np.float32]
    labels: LabelledSites | None
    split: str
    pixel_size: float  # [Å]


# ------------------------------------------------------------------------ reading


def _to_2d(data: NDArray[Any], path: Path) -> NDArray[np.float32]:
    array = np.asarray(data)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] > 4:
        array = array[..., :3].astype(np.float64).mean(axis=-1)  # RGB(A) → grey
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"not a 2-D image (shape {tuple(np.shape(data))})")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"not a numeric image (dtype {array.dtype})")
    result = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(result)):
        raise ValueError("image has NaN or infinite pixels")
    return result


def _read_rsciio(path: Path) -> NDArray[Any]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".emd":
            from rsciio.emd import file_reader  # type: ignore[import-not-found,unused-ignore]
        else:
            from rsciio.digitalmicrograph import (  # type: ignore[import-not-found,unused-ignore]
                file_reader,
            )
    except ImportError:
        raise ValueError(
            f"reading {suffix} files needs rosettasciio (pip install rosettasciio)"
        ) from None
    signals = file_reader(str(path))
    images = [s["data"] for s in signals if np.ndim(s["data"]) >= 2]
    if not images:
        raise ValueError("no image signal in the file")
    data: NDArray[Any] = np.asarray(images[0])
    return data


def _hdf5_datasets(handle: Any) -> list[tuple[str, Any]]:
    """Every dataset in an open HDF5 file, as (path, dataset), in file order."""
    import h5py

    found: list[tuple[str, Any]] = []

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            found.append((f"/{name}", node))

    handle.visititems(visit)
    return found


def _is_usid_main(node: Any) -> bool:
    return "Position_Indices" in node.attrs and len(node.shape) == 2


def _is_hdf5_image(path: str, node: Any) -> bool:
    """Whether a dataset holds one image: numeric, 2-D once squeezed, at least 8 px a side.

    A USID main dataset (positions x spectral values) is an image when it has one
    spectral value; its ancillary datasets never are.
    """
    if node.dtype.kind not in "biuf" or path.rsplit("/", 1)[-1] in _USID_ANCILLARY:
        return False
    if _is_usid_main(node):
        return int(node.shape[1]) == 1
    sides = [int(side) for side in node.shape if side != 1]
    return len(sides) == 2 and min(sides) >= _MIN_IMAGE_SIDE


def _usid_image(node: Any) -> NDArray[Any]:
    """A USID main dataset of one spectral value as a 2-D image on its position grid.

    The position index that changes fastest from row to row of the main dataset is the
    image column (x), the other the image row (y).
    """
    positions = np.asarray(node.file[node.attrs["Position_Indices"]])
    values = np.asarray(node[()])
    if values.ndim != 2 or values.shape[1] != 1:
        raise ValueError(f"USID dataset {node.name} has {values.shape[1]} spectral values, not 1")
    if positions.shape != (values.shape[0], 2):
        raise ValueError(
            f"USID dataset {node.name}: positions of shape {positions.shape} are not a 2-D "
            f"scan of its {values.shape[0]} values"
        )
    fast = int(np.argmax(np.count_nonzero(np.diff(positions, axis=0), axis=0)))
    _, cols = np.unique(positions[:, fast], return_inverse=True)
    _, rows = np.unique(positions[:, 1 - fast], return_inverse=True)
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    filled = np.zeros(shape, bool)
    filled[rows, cols] = True
    if shape[0] * shape[1] != len(values) or not filled.all():
        raise ValueError(f"USID dataset {node.name}: its positions are not a full grid")
    image = np.empty(shape, values.dtype)
    image[rows, cols] = values[:, 0]
    return image


def _read_hdf5(path: Path, dataset: str | None) -> NDArray[Any]:
    import h5py  # lazy: start-up time

    with h5py.File(path, "r") as handle:
        images = [name for name, node in _hdf5_datasets(handle) if _is_hdf5_image(name, node)]
        if dataset is None:
            if not images:
                raise ValueError(
                    f"no image in the file (a numeric dataset of at least "
                    f"{_MIN_IMAGE_SIDE}x{_MIN_IMAGE_SIDE} px, 2-D once squeezed)"
                )
            if len(images) > 1:
                shown = ", ".join(images[:5]) + (", ..." if len(images) > 5 else "")
                raise ValueError(
                    f"{len(images)} images in the file ({shown}): pass --dataset / dataset: "
                    "with the path of one"
                )
            dataset = images[0]
        node = handle.get(dataset)
        if not isinstance(node, h5py.Dataset):
            what = "is a group, not a dataset" if node is not None else "not found"
            listed = ", ".join(images[:5]) if images else "none"
            raise ValueError(f"dataset {dataset!r} {what} (images in the file: {listed})")
        if _is_usid_main(node):
            return _usid_image(node)
        data: NDArray[Any] = np.asarray(node[()])
        return data


def read_image(path: str | os.PathLike[str], dataset: str | None = None) -> NDArray[np.float32]:
    """Read one image file as a 2-D float32 array.

    Parameters
    ----------
    path : path
        A ``.tif``/``.tiff`` (tifffile), ``.png`` (imageio), ``.npy`` (numpy),
        ``.h5``/``.hdf5`` (h5py) or, when rosettasciio is installed,
        ``.dm3``/``.dm4``/``.emd`` file. RGB(A) images are averaged to grey.
    dataset : str, optional
        HDF5 only: the path of the dataset to read (``/Measurement_000/Channel_000/
        Raw_Data``). Without it the file must hold exactly one image: a numeric dataset
        2-D once squeezed and at least 8 px a side, or a USID (pycroscopy) main dataset
        of one spectral value, which is laid out on its 2-D position grid.

    Raises
    ------
    ValueError
        If the file cannot be read or is not a finite 2-D numeric image; for an HDF5
        file without ``dataset`` that holds several images, listing up to 5 of them.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if dataset is not None and suffix not in _HDF5_SUFFIXES:
        raise ValueError(f"a dataset path ({dataset!r}) applies to HDF5 files (.h5, .hdf5) only")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            data: NDArray[Any] = tifffile.imread(path)
        elif suffix == ".png":
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif suffix in _HDF5_SUFFIXES:
            data = _read_hdf5(path, dataset)
        elif suffix in _RSCIIO_SUFFIXES:
            data = _read_rsciio(path)
        else:
            raise ValueError(f"unsupported file type {suffix!r}")
    except ValueError:
        raise
    except Exception as exc:  # every reader has its own exceptions for a bad file
        raise ValueError(f"unreadable {suffix} file ({type(exc).__name__}: {exc})") from None
    return _to_2d(data, path)


def _find_images(source_dir: Path, exclude: Sequence[Path]) -> list[Path]:
    found = []
    for path in source_dir.rglob("*"):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        relative = path.relative_to(source_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if any(path.is_relative_to(other) for other in exclude):
            continue
        found.append(path)
    return sorted(found, key=lambda p: (p.name, str(p)))


def _column(fieldnames: Sequence[str], *names: str) -> str | None:
    lowered = {name.strip().lower(): name for name in fieldnames if name is not None}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def read_pairs(path: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """Image file name → (label file name, split) from a pairs CSV.

    Parameters
    ----------
    path : path
        CSV with an image-name column (``Filename``, ``image``, ``file``), a label-file
        column (``Coords``, ``labels``, ``label_file``, ``coordinates``) and optionally
        ``Split``; column names are matched case-insensitively.

    Returns
    -------
    dict
        Image file name → (label file name, or ``""`` if the row gives none; split, or
        ``""``).

    Raises
    ------
    ValueError
        If the image or label column is missing.
    OSError, UnicodeDecodeError
        If the file cannot be read as UTF-8 text.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        image_col = _column(fields, "filename", "image", "image_file", "file")
        label_col = _column(fields, "coords", "labels", "label", "label_file", "coordinates")
        split_col = _column(fields, "split")
        if image_col is None or label_col is None:
            raise ValueError(
                f"needs an image column (Filename) and a label column (Coords), has {fields}"
            )
        pairs = {}
        for row in reader:
            image = (row.get(image_col) or "").strip()
            if image:
                split = (row.get(split_col) or "").strip() if split_col else ""
                pairs[image] = ((row.get(label_col) or "").strip(), split)
    return pairs


def read_label_csv(path: str | os.PathLike[str], class_names: Sequence[str]) -> LabelledSites:
    """Labelled sites from a CSV of ``X``/``Y`` [px] and an optional class column.

    Parameters
    ----------
    path : path
        CSV with ``X`` and ``Y`` columns (column ``x``, row ``y``, in pixels, any case)
        and optionally ``class`` (``label``, ``type``, ``class_name``): a name of
        ``class_names`` or its 1-based index; without it every site has label 1.
    class_names : sequence of str
        Names of the label values 1, 2, ...

    Returns
    -------
    LabelledSites

    Raises
    ------
    ValueError
        If a column is missing or a value is not a number or a known class (one line
        naming the CSV line).
    OSError, UnicodeDecodeError
        If the file cannot be read as UTF-8 text.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        x_col, y_col = _column(fields, "x"), _column(fields, "y")
        class_col = _column(fields, "class", "label", "type", "class_name")
        if x_col is None or y_col is None:
            raise ValueError(f"needs X and Y columns, has {[f.strip() for f in fields]}")
        xs, ys, classes = [], [], []
        for number, row in enumerate(reader, start=2):
            try:
                xs.append(float(row[x_col]))
                ys.append(float(row[y_col]))
            except (TypeError, ValueError):
                raise ValueError(f"line {number}: X/Y are not numbers") from None
            value = 1
            if class_col is not None and (row.get(class_col) or "").strip():
                text = str(row[class_col]).strip()
                if text in class_names:
                    value = list(class_names).index(text) + 1
                elif text.isdigit() and 1 <= int(text) <= len(class_names):
                    value = int(text)
                else:
                    raise ValueError(
                        f"line {number}: class {text!r} is not one of {list(class_names)}"
                    )
            classes.append(value)
    x = np.asarray(xs, np.float64)
    y = np.asarray(ys, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("X/Y have NaN or infinite values")
    return LabelledSites(x, y, np.asarray(classes, np.int64))


def _read_pixel_sizes(path: Path) -> dict[str, float]:
    """Image file name or stem → pixel size [Å] from a CSV (``image``, ``pixel_size``)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        image_col = _column(fields, "image", "filename", "file")
        size_col = _column(fields, "pixel_size", "pixel size", "pixel_size_a")
        if image_col is None or size_col is None:
            raise ValueError(
                f"needs columns image and pixel_size [Å], has {[f.strip() for f in fields]}"
            )
        sizes: dict[str, float] = {}
        for number, row in enumerate(reader, start=2):
            image = (row.get(image_col) or "").strip()
            if not image:
                continue
            try:
                value = float(row.get(size_col) or "")
            except ValueError:
                raise ValueError(f"line {number}: pixel_size of {image} is not a number") from None
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"line {number}: pixel_size of {image} must be > 0 [Å]")
            if image in sizes:
                raise ValueError(f"line {number}: {image} is listed twice")
            sizes[image] = value
    return sizes


def _pixel_size_of(image: Path, source: Path, sizes: dict[str, float]) -> float | None:
    """An image's entry in a pixel-size table: by relative path, file name or stem."""
    for key in (_relative(image, source), image.name, image.stem):
        if key in sizes:
            return sizes[key]
    return None


def _labels_from_mask(mask_data: NDArray[np.float32], n_classes: int) -> LabelledSites:
    from scipy import ndimage  # lazy: start-up time, only label masks need it

    values = np.rint(mask_data).astype(np.int64)
    if values.min() < 0 or values.max() > n_classes:
        raise ValueError(
            f"mask values must be 0..{n_classes}, found {values.min()}..{values.max()}"
        )
    xs, ys, cls = [], [], []
    for value in range(1, n_classes + 1):
        blobs, count = ndimage.label(values == value)
        if count:
            centres = ndimage.center_of_mass(values == value, blobs, range(1, count + 1))
            for row, col in centres:
                xs.append(col)
                ys.append(row)
                cls.append(value)
    return LabelledSites(
        np.asarray(xs, np.float64),
        np.asarray(ys, np.float64),
        np.asarray(cls, np.int64),
        mask=values.astype(np.uint8),
    )


def label_file_for(
    image: str | os.PathLike[str], labels_dir: str | os.PathLike[str]
) -> Path | None:
    """The label file of ``image`` in ``labels_dir``, found by the image's stem.

    Tries ``STEM{suffix}{extension}`` for the suffixes ``_Results``, ``_results``,
    ``_labels``, ``_coordinates``, ``_mask`` and none, and the extensions ``.csv``,
    ``.png``, ``.tif``, ``.tiff``, ``.npy``, in that order.

    Returns
    -------
    Path or None
        The first that exists (never ``image`` itself), or None.
    """
    image, labels_dir = Path(image), Path(labels_dir)
    for suffix in _LABEL_SUFFIXES:
        for extension in (".csv", ".png", ".tif", ".tiff", ".npy"):
            candidate = labels_dir / f"{image.stem}{suffix}{extension}"
            if candidate.is_file() and candidate != image:
                return candidate
    return None


def _read_labels(path: Path, class_names: Sequence[str], shape: tuple[int, int]) -> LabelledSites:
    if path.suffix.lower() == ".csv":
        return read_label_csv(path, class_names)
    mask = read_image(path)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {shape}")
    return _labels_from_mask(mask, len(class_names))


# ------------------------------------------------------------------ transforming


def _resample(
    image: NDArray[np.float32], labels: LabelledSites | None, scale: float
) -> tuple[NDArray[np.float32], LabelledSites | None]:
    from skimage.transform import rescale, resize  # lazy: start-up time (~1 s)

    out: NDArray[np.float32] = np.ascontiguousarray(
        rescale(
            image,
            scale,
            order=1,
            anti_aliasing=scale < 1,
            preserve_range=True,
            mode="reflect",
        ),
        dtype=np.float32,
    )
    if labels is None:
        return out, None
    sy = out.shape[0] / image.shape[0]
    sx = out.shape[1] / image.shape[1]
    mask = labels.mask
    if mask is not None:
        mask = np.ascontiguousarray(
            resize(mask, out.shape, order=0, preserve_range=True, anti_aliasing=False),  # type: ignore[no-untyped-call,unused-ignore]
            dtype=np.uint8,
        )
    moved = LabelledSites(
        (labels.x + 0.5) * sx - 0.5, (labels.y + 0.5) * sy - 0.5, labels.cls.copy(), mask
    )
    return out, moved


def _patch_origins(shape: tuple[int, int], patch: tuple[int, int] | None) -> list[tuple[int, int]]:
    if patch is None:
        return [(0, 0)]
    rows, cols = shape
    return [
        (r, c)
        for r in range(0, rows - patch[0] + 1, patch[0])
        for c in range(0, cols - patch[1] + 1, patch[1])
    ]


# ------------------------------------------------------------------------- import


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def import_images(
    source_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    pixel_size: PixelSize,
    target_pixel_size: float | None = None,
    labels_dir: str | os.PathLike[str] | None = None,
    label_radius: float = 0.6,
    patch: tuple[int, int] | None = None,
    pairs_csv: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] = ("atom",),
    dataset: str | None = None,
    lattice: str | None = None,
    split: str | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Import a folder of microscope images as a Parquet dataset ``out_dir/NAME-HASH``.

    Parameters
    ----------
    source_dir : path
        Folder searched recursively for ``.tif``, ``.tiff``, ``.png``, ``.npy``,
        ``.h5``, ``.hdf5`` (and, with rosettasciio, ``.dm3``, ``.dm4``, ``.emd``)
        images, imported in order of file name. Files under ``labels_dir`` and hidden
        files are skipped.
    out_dir : path
        Parent folder; the dataset goes to ``out_dir/NAME-HASH/``.
    name : str
        Dataset name.
    pixel_size : float, path or "auto"
        Pixel size of the source images [Å]; or a CSV with columns ``image`` (file
        name, relative path or stem) and ``pixel_size`` [Å] that lists every image; or
        ``"auto"``: measured on each image from the first-order ring of ``lattice``
        (:func:`hpcbench.metrics.lattice.calibrate_pixel_size`). A number given as a
        string is a number.
    target_pixel_size : float, optional
        Resample to this pixel size [Å] (linear interpolation, anti-aliased when
        shrinking); coordinates are scaled alike. Required when the images' pixel sizes
        differ.
    labels_dir : path, optional
        Folder of label files: CSVs with ``X``/``Y`` (or ``x``/``y``) columns in pixels
        and an optional ``class`` column (a name from ``class_names`` or 1-based index),
        or mask images (values 0..len(class_names); sites are the blobs' centroids).
        Matched by ``pairs_csv`` or by the image's stem (:func:`label_file_for`). Every
        image must have one (an image without atoms: a CSV with a header only).
    label_radius : float
        Radius of the mask disk drawn around each labelled site [Å].
    patch : (int, int), optional
        Cut each image into non-overlapping ``(rows, cols)`` patches (the remainder at
        the bottom and right is dropped); sites go with the patch that holds them.
    pairs_csv : path, optional
        CSV with an image-name column (``Filename``), a label-file column (``Coords``)
        and optionally ``Split``; then exactly the images it lists are imported, and
        each must name a label file.
    class_names : sequence of str
        Names of the label values 1, 2, ...
    dataset : str, optional
        Path of the dataset to read in every HDF5 file (see :func:`read_image`); without
        it each HDF5 file must hold exactly one image.
    lattice : str, optional
        With ``pixel_size="auto"`` only: the hexagonal lattice imaged (``graphene``,
        ``WSe2``, ``MoS2``, ... or ``a=<Å>``, :func:`hpcbench.metrics.lattice.parse_lattice`).
    split : str, optional
        Import only the images ``pairs_csv`` puts in this split (e.g. ``test``).
    overwrite : bool
        Replace an existing non-empty dataset directory (otherwise an error).

    Returns
    -------
    ImportResult

    Raises
    ------
    ImageImportError
        Listing every unreadable or inconsistent file, or a bad parameter; nothing is
        written then.
    FileNotFoundError
        If ``source_dir`` (or ``labels_dir``/``pairs_csv``/the pixel-size CSV) does not
        exist.
    """
    began = time.perf_counter()
    request = _Request.of(
        source_dir,
        name=name,
        pixel_size=pixel_size,
        target_pixel_size=target_pixel_size,
        labels_dir=labels_dir,
        label_radius=label_radius,
        patch=patch,
        pairs_csv=pairs_csv,
        class_names=class_names,
        dataset=dataset,
        lattice=lattice,
        split=split,
    )
    return _store(_prepare(request), Path(out_dir), overwrite=overwrite, began=began)


def import_record(
    source_dir: str | os.PathLike[str],
    *,
    name: str,
    pixel_size: PixelSize,
    target_pixel_size: float | None = None,
    labels_dir: str | os.PathLike[str] | None = None,
    label_radius: float = 0.6,
    patch: tuple[int, int] | None = None,
    pairs_csv: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] = ("atom",),
    dataset: str | None = None,
    lattice: str | None = None,
    split: str | None = None,
) -> ImportRecord:
    """What :func:`import_images` would record for these files, without writing anything.

    Reads, resamples and tiles the images exactly as :func:`import_images` does (the
    same code), so the spec and hash cannot disagree with an import's manifest. The
    result is cached per parameters and per (path, size, mtime) of every file under
    ``source_dir``/``labels_dir`` and of ``pairs_csv`` and the pixel-size CSV: asking
    again is a directory listing, and an edited file gives a fresh record.

    Parameters
    ----------
    source_dir, name, pixel_size, target_pixel_size, labels_dir, label_radius, patch, \
pairs_csv, class_names, dataset, lattice, split
        As for :func:`import_images` [Å for sizes and radius, px for ``patch``].

    Returns
    -------
    ImportRecord

    Raises
    ------
    ImageImportError, FileNotFoundError
        As :func:`import_images`.
    """
    request = _Request.of(
        source_dir,
        name=name,
        pixel_size=pixel_size,
        target_pixel_size=target_pixel_size,
        labels_dir=labels_dir,
        label_radius=label_radius,
        patch=patch,
        pairs_csv=pairs_csv,
        class_names=class_names,
        dataset=dataset,
        lattice=lattice,
        split=split,
    )
    key = request.cache_key()
    cached = _RECORDS.get(key)
    if cached is not None:
        return cached
    record = _prepare(request).record
    if len(_RECORDS) >= _RECORD_CACHE_SIZE:
        _RECORDS.pop(next(iter(_RECORDS)))
    _RECORDS[key] = record
    return record


# Import records by parameters and file stamps; a study asks for its imports' hashes
# many times (every dataset directory, every trial's config), each a full read.
_RECORD_CACHE_SIZE: Final = 32
_RECORDS: dict[tuple[Any, ...], ImportRecord] = {}


def _file_stamps(*roots: str | os.PathLike[str] | None) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for root in roots:
        if root is None:
            continue
        path = Path(root)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for item in files:
            try:
                stat = item.stat()
            except OSError:
                continue
            stamps.append((str(item), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


@dataclass(frozen=True)
class _Request:
    """The parameters of one import, normalised (paths as :class:`Path`)."""

    source: Path
    name: str
    pixel_size: float | str  # [Å], or "auto", or the path of a pixel-size CSV
    target_pixel_size: float | None
    labels_dir: Path | None
    label_radius: float
    patch: tuple[int, int] | None
    pairs_csv: Path | None
    class_names: tuple[str, ...]
    dataset: str | None
    lattice: str | None
    split: str | None

    @classmethod
    def of(
        cls,
        source_dir: str | os.PathLike[str],
        *,
        name: str,
        pixel_size: PixelSize,
        target_pixel_size: float | None,
        labels_dir: str | os.PathLike[str] | None,
        label_radius: float,
        patch: tuple[int, int] | None,
        pairs_csv: str | os.PathLike[str] | None,
        class_names: Sequence[str],
        dataset: str | None,
        lattice: str | None,
        split: str | None = None,
    ) -> _Request:
        return cls(
            source=Path(source_dir),
            name=name,
            pixel_size=_pixel_size_argument(pixel_size),
            target_pixel_size=None if target_pixel_size is None else float(target_pixel_size),
            labels_dir=None if labels_dir is None else Path(labels_dir),
            label_radius=float(label_radius),
            patch=None if patch is None else (int(patch[0]), int(patch[1])),
            pairs_csv=None if pairs_csv is None else Path(pairs_csv),
            class_names=tuple(class_names),
            dataset=dataset,
            lattice=lattice,
            split=split,
        )

    @property
    def pixel_table(self) -> Path | None:
        """The pixel-size CSV, if the pixel sizes come from one."""
        if isinstance(self.pixel_size, str) and self.pixel_size != AUTO:
            return Path(self.pixel_size)
        return None

    def cache_key(self) -> tuple[Any, ...]:
        """The parameters, with paths resolved, and the stamps of every file read."""

        def resolved(path: Path | None) -> str | None:
            return None if path is None else str(path.resolve())

        table = self.pixel_table
        return (
            resolved(self.source),
            self.name,
            self.pixel_size if table is None else resolved(table),
            self.target_pixel_size,
            resolved(self.labels_dir),
            self.label_radius,
            self.patch,
            resolved(self.pairs_csv),
            self.class_names,
            self.dataset,
            self.lattice,
            self.split,
            _file_stamps(self.source, self.labels_dir, self.pairs_csv, table),
        )


def _pixel_size_argument(value: PixelSize) -> float | str:
    """A number [Å] (also from a numeric string), ``"auto"``, or a CSV's path."""
    if isinstance(value, int | float):
        return float(value)
    text = os.fspath(value)
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        return text


def _prepare(request: _Request) -> _Prepared:
    """Read, check, resample and tile the files; the rows and the record, nothing written."""
    source, labels_root, pairs_path = request.source, request.labels_dir, request.pairs_csv
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder")
    if labels_root is not None and not labels_root.is_dir():
        raise FileNotFoundError(f"{labels_root}: no such labels folder")
    if pairs_path is not None and not pairs_path.is_file():
        raise FileNotFoundError(f"{pairs_path}: no such pairs file")
    table_path = request.pixel_table
    if table_path is not None and not table_path.is_file():
        raise FileNotFoundError(f"{table_path}: no such pixel-size file")
    lattice = _check_parameters(request)

    pairs: dict[str, tuple[str, str]] | None = None
    if pairs_path is not None:
        try:
            pairs = read_pairs(pairs_path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ImageImportError(f"{source}: cannot import", [f"{pairs_path}: {exc}"]) from None
    sizes: dict[str, float] | None = None
    if table_path is not None:
        try:
            sizes = _read_pixel_sizes(table_path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ImageImportError(f"{source}: cannot import", [f"{table_path}: {exc}"]) from None

    images = _find_images(source, [labels_root] if labels_root is not None else [])
    problems: list[str] = []
    pairs_name = "" if pairs_path is None else pairs_path.name
    pairs_base = source if pairs_path is None else pairs_path.parent
    if pairs is not None:
        by_name = {path.name: path for path in images}
        problems += [
            f"{image}: listed in {pairs_name}, not found under {source}"
            for image in pairs
            if image not in by_name
        ]
        images = [path for path in images if path.name in pairs]
        if request.split is not None:
            images = [path for path in images if pairs[path.name][1] == request.split]
            if not images:
                known = sorted({split for _, split in pairs.values() if split})
                raise ImageImportError(
                    f"{source}: no image is in split {request.split!r} of {pairs_name} "
                    f"(splits: {', '.join(known) or 'none'})"
                )
    if not images and not problems:
        raise ImageImportError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) to import")
    if request.dataset is not None and not any(p.suffix.lower() in _HDF5_SUFFIXES for p in images):
        raise ImageImportError(
            f"{source}: dataset {request.dataset!r} given, but no HDF5 file (.h5, .hdf5) to "
            "read it from"
        )
    if labels_root is not None or pairs is not None:
        problems += _unlabelled(images, labels_root, pairs, pairs_name)

    sources: list[_Source] = []
    label_files: list[Path] = []
    for path in images:
        hdf5 = path.suffix.lower() in _HDF5_SUFFIXES
        try:
            image = read_image(path, request.dataset if hdf5 else None)
            pixel_size = _pixel_size_for(path, image, request, sizes, lattice)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        split = ""
        label_path: Path | None = None
        if pairs is not None:
            label_name, split = pairs[path.name]
            if label_name:
                base = labels_root if labels_root is not None else pairs_base
                label_path = base / label_name
                if not label_path.is_file():
                    problems.append(f"{label_path}: label file of {path.name} not found")
                    continue
        elif labels_root is not None:
            label_path = label_file_for(path, labels_root)
        labels = None
        if label_path is not None:
            try:
                labels = _read_labels(
                    label_path, request.class_names, (image.shape[0], image.shape[1])
                )
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{label_path}: {exc}")
                continue
            label_files.append(label_path)
        sources.append(_Source(path, image, labels, split, pixel_size))
    if problems:
        raise ImageImportError(f"{source}: cannot import {len(problems)} file(s):", problems)
    return _assemble(sources, label_files, request, lattice)


def _pixel_size_for(
    path: Path,
    image: NDArray[np.float32],
    request: _Request,
    sizes: dict[str, float] | None,
    lattice: str | None,
) -> float:
    """The pixel size [Å] of one source image: the one value, its CSV row, or calibrated."""
    if isinstance(request.pixel_size, float):
        return request.pixel_size
    if sizes is not None:
        found = _pixel_size_of(path, request.source, sizes)
        if found is None:
            raise ValueError(f"not listed in {request.pixel_table} (by file name or stem)")
        return found
    if lattice is None:  # _check_parameters refuses auto without a lattice
        raise ValueError("pixel size auto needs a lattice")
    from hpcbench.metrics.lattice import calibrate_pixel_size  # lazy: start-up time

    try:
        return calibrate_pixel_size(image, lattice).pixel_size
    except ValueError as exc:
        raise ValueError(f"pixel size auto: {exc}") from None


def _unlabelled(
    images: Sequence[Path],
    labels_root: Path | None,
    pairs: dict[str, tuple[str, str]] | None,
    pairs_name: str,
) -> list[str]:
    """One problem naming the first image without a label file, if any lacks one.

    A partly labelled set would score every unlabelled atom as a false positive, and a
    labels folder that matches nothing would import an unlabelled set silently.
    """
    if pairs is not None:
        missing = [path for path in images if not pairs[path.name][0]]
        where = f"no label file in {pairs_name}"
    else:
        assert labels_root is not None
        missing = [path for path in images if label_file_for(path, labels_root) is None]
        where = f"no label file in {labels_root}"
    if not missing:
        return []
    if len(missing) == len(images):
        hint = (
            ""
            if pairs is not None
            else " (matched by the image's stem: STEM.csv, STEM_Results.csv, STEM_mask.png, ...)"
        )
        return [f"{missing[0]}: {where}, nor for any of the {len(images)} images{hint}"]
    return [
        f"{missing[0]}: {where} ({len(missing)} of {len(images)} images unlabelled; "
        "every image needs one)"
    ]


def _check_parameters(request: _Request) -> str | None:
    """Every bad parameter, one line each; the lattice's name for ``pixel_size="auto"``."""
    wrong = []
    name, pixel_size, target = request.name, request.pixel_size, request.target_pixel_size
    if not name or "/" in name or name.startswith(".") or os.sep in name:
        wrong.append(f"name {name!r}: must be a non-empty file name not starting with '.'")
    if isinstance(pixel_size, float) and not (np.isfinite(pixel_size) and pixel_size > 0):
        wrong.append(f"pixel size {pixel_size}: must be > 0 [Å]")
    lattice = None
    if pixel_size == AUTO:
        if request.lattice is None:
            wrong.append("pixel size auto: needs a lattice (graphene, WSe2, MoS2, ... or a=<Å>)")
        else:
            from hpcbench.metrics.lattice import parse_lattice  # lazy: start-up time

            try:
                lattice = parse_lattice(request.lattice).name
            except ValueError as exc:
                wrong.append(str(exc))
    elif request.lattice is not None:
        wrong.append(f"lattice {request.lattice!r}: only with pixel size auto")
    if target is not None and not (np.isfinite(target) and target > 0):
        wrong.append(f"target pixel size {target}: must be > 0 [Å]")
    if not (np.isfinite(request.label_radius) and request.label_radius >= 0):
        wrong.append(f"label radius {request.label_radius}: must be >= 0 [Å]")
    if request.patch is not None and (len(request.patch) != 2 or min(request.patch) < 1):
        wrong.append(f"patch {request.patch}: must be two positive sizes (rows, cols)")
    if not request.class_names or not 1 <= len(request.class_names) <= 255:
        wrong.append("class names: need 1 to 255 names")
    if request.dataset is not None and not request.dataset.strip():
        wrong.append("dataset: must be a non-empty HDF5 path")
    if request.split is not None and request.pairs_csv is None:
        wrong.append(f"split {request.split!r}: needs a pairs CSV with a split column")
    if wrong:
        raise ImageImportError("invalid import parameters:", wrong)
    return lattice


def _assemble(
    sources: list[_Source], label_files: list[Path], request: _Request, lattice: str | None
) -> _Prepared:
    source, target, patch = request.source, request.target_pixel_size, request.patch
    sizes = sorted({item.pixel_size for item in sources})
    if len(sizes) > 1 and target is None:
        raise ImageImportError(
            f"{source}: the images' pixel sizes differ ({sizes[0]:.4g} to {sizes[-1]:.4g} Å): "
            "give a target pixel size (--target-pixel-size / target_pixel_size:) to "
            "resample them to"
        )
    frames: list[NDArray[np.float32]] = []
    masks: list[NDArray[np.uint8]] = []
    rows_per_image: list[int] = []
    coordinates: list[list[dict[str, float | int]]] = []
    pixel_sizes: list[float] = []
    files: list[str] = []
    splits: list[str] = []
    origins: list[tuple[int, int]] = []
    problems: list[str] = []
    for item in sources:
        image, labels = item.image, item.labels
        stored_pixel = item.pixel_size
        if target is not None and target != item.pixel_size:
            shape_before = image.shape
            image, labels = _resample(image, labels, item.pixel_size / target)
            stored_pixel = item.pixel_size * float(np.mean(np.divide(shape_before, image.shape)))
        shape = (int(image.shape[0]), int(image.shape[1]))
        if labels is None:
            full_mask = np.zeros(shape, np.uint8)
        elif labels.mask is not None:
            full_mask = labels.mask
        else:
            sites = Coordinates(
                x=labels.x.astype(np.float32),
                y=labels.y.astype(np.float32),
                cls=labels.cls.astype(np.uint8),
            )
            full_mask = render_mask(sites, None, shape, request.label_radius / stored_pixel)
        origins_here = _patch_origins(shape, patch)
        if not origins_here:
            problems.append(f"{item.path}: image {shape} is smaller than a patch {patch}")
            continue
        height, width = patch if patch is not None else shape
        rows_per_image.append(len(origins_here))
        for row0, col0 in origins_here:
            frames.append(image[row0 : row0 + height, col0 : col0 + width])
            masks.append(full_mask[row0 : row0 + height, col0 : col0 + width])
            records: list[dict[str, float | int]] = []
            if labels is not None:
                if patch is None:
                    keep = np.ones(labels.x.shape, bool)
                else:
                    keep = (
                        (labels.x >= col0 - 0.5)
                        & (labels.x < col0 + width - 0.5)
                        & (labels.y >= row0 - 0.5)
                        & (labels.y < row0 + height - 0.5)
                    )
                records = [
                    {"x": float(x - col0), "y": float(y - row0), "label": int(c)}
                    for x, y, c in zip(
                        labels.x[keep], labels.y[keep], labels.cls[keep], strict=True
                    )
                ]
            coordinates.append(records)
            pixel_sizes.append(stored_pixel)
            files.append(_relative(item.path, source))
            splits.append(item.split)
            origins.append((row0, col0))
    shapes = sorted({frame.shape for frame in frames})
    if len(shapes) > 1:
        by_shape = {frame.shape: file for frame, file in zip(frames, files, strict=True)}
        problems += [f"{by_shape[s]}: frames of {s[0]}x{s[1]} px" for s in shapes]
        problems.insert(0, "images differ in size (use --patch or --target-pixel-size):")
    if problems:
        raise ImageImportError(f"{source}: cannot import:", problems)

    spec = _spec(request, sources, label_files, lattice, shape=shapes[0], size=len(frames))
    spec["stored_pixel_size"] = pixel_sizes[0]
    record = ImportRecord(spec=spec, hash=imported_hash(spec), rows_per_image=tuple(rows_per_image))
    return _Prepared(record, frames, masks, coordinates, pixel_sizes, files, splits, origins)


def _spec(
    request: _Request,
    sources: list[_Source],
    label_files: list[Path],
    lattice: str | None,
    *,
    shape: tuple[int, ...],
    size: int,
) -> dict[str, Any]:
    """The import record's spec.

    The keys of options not used (``dataset``, ``lattice``, ``split``, per-image pixel sizes) are
    absent, so adding an option kept the hash of every import that does not use it.
    """
    source, labels_root, table = request.source, request.labels_dir, request.pixel_table
    per_image = not isinstance(request.pixel_size, float)
    pixel_size: Any = request.pixel_size
    if table is not None:
        pixel_size = {"file": table.name, "sha256": file_sha256(table)}
    spec: dict[str, Any] = {
        "kind": IMPORTED_KIND,
        "data_format_version": DATA_FORMAT_VERSION,
        "name": request.name,
        "size": size,
        "shard_size": SHARD_SIZE,
        "image": {"shape": list(shape)},
        "pixel_size": pixel_size,
        "target_pixel_size": request.target_pixel_size,
        "stored_pixel_size": None,
        "patch": None if request.patch is None else list(request.patch),
        "labels": {
            "classes": list(request.class_names),
            "lattice": False,
            "radius": request.label_radius,
        },
        "sources": [
            {"file": _relative(item.path, source), "sha256": file_sha256(item.path)}
            | ({"pixel_size": item.pixel_size} if per_image else {})
            for item in sources
        ],
        "label_files": [
            {"file": _relative(path, labels_root or source), "sha256": file_sha256(path)}
            for path in label_files
        ],
        "pairs": None
        if request.pairs_csv is None
        else {"file": request.pairs_csv.name, "sha256": file_sha256(request.pairs_csv)},
    }
    if lattice is not None:
        from hpcbench.metrics.lattice import parse_lattice  # lazy: start-up time

        spec["lattice"] = {"name": lattice, "a": parse_lattice(lattice).a}
    if request.dataset is not None:
        spec["dataset"] = request.dataset
    if request.split is not None:
        spec["split"] = request.split
    return spec


def _store(prepared: _Prepared, out_dir: Path, *, overwrite: bool, began: float) -> ImportResult:
    """Write the prepared rows and manifest to ``out_dir/NAME-HASH`` atomically."""
    spec, digest, name = prepared.record.spec, prepared.record.hash, prepared.record.name
    frames, masks, coordinates = prepared.frames, prepared.masks, prepared.coordinates
    pixel_sizes, files, splits = prepared.pixel_sizes, prepared.files, prepared.splits
    origins = prepared.origins
    final = out_dir / f"{name}-{digest}"
    if final.exists() and not final.is_dir():
        raise ImageImportError(f"{final}: exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise ImageImportError(
            f"{final}: already exists and is not empty (pass overwrite=True / --overwrite)"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{final.name}.tmp-{uuid.uuid4().hex}"
    try:
        manifest = Manifest(name=name, study=IMPORTED_KIND, seed=0, hash=digest, spec=spec)
        shard_seconds = 0.0
        image_stack = np.stack(frames).astype(np.float32, copy=False)
        mask_stack = np.stack(masks).astype(np.uint8, copy=False)
        for first in range(0, len(frames), SHARD_SIZE):
            rows = slice(first, min(first + SHARD_SIZE, len(frames)))
            table = pa.table(
                {
                    "sample_id": pa.array(np.arange(rows.start, rows.stop), pa.int64()),
                    "image": tensor_column(image_stack[rows]),
                    "mask": tensor_column(mask_stack[rows]),
                    "coordinates": pa.array(coordinates[rows], type=coordinates_type()),
                    "pixel_size": pa.array(pixel_sizes[rows], pa.float64()),
                    "source_file": pa.array(files[rows], pa.string()),
                    "split": pa.array(splits[rows], pa.string()),
                    "origin_row": pa.array([o[0] for o in origins[rows]], pa.int32()),
                    "origin_col": pa.array([o[1] for o in origins[rows]], pa.int32()),
                }
            )
            record = write_shard(table, staging)
            manifest.shards[record.first_sample_id] = record
            shard_seconds += record.seconds
        seconds = time.perf_counter() - began
        manifest.timings = {"generate_seconds": seconds, "shard_seconds": shard_seconds}
        write_manifest(staging, manifest)
        if final.exists():
            trash = out_dir / f".{final.name}.old-{uuid.uuid4().hex}"
            final.rename(trash)
            staging.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(
        directory=final,
        hash=digest,
        images=len(prepared.record.rows_per_image),
        rows=len(frames),
        coordinates=sum(len(c) for c in coordinates),
        shape=prepared.record.shape,
        pixel_size=pixel_sizes[0],
        seconds=time.perf_counter() - began,
        shards=[manifest.shards[k] for k in sorted(manifest.shards)],
    )
