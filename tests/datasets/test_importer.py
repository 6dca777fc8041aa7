"""Importing experimental images: the Pt single-atom HAADF set, resampling, patches, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hpcbench.cli import main
from hpcbench.datasets.importer import ImageImportError, ImportResult, import_images
from hpcbench.datasets.manifest import read_manifest, verify
from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.train.data import ImageSet

PT = Path(__file__).resolve().parents[2] / "data" / "pt-single-atoms-haadf"
pytestmark = pytest.mark.skipif(not PT.is_dir(), reason=f"{PT} not present")
PIXEL = 0.293  # Å (0.0293 nm)


def _import_pt(out: Path, **kwargs: object) -> ImportResult:
    return import_images(
        PT / "tif_data",
        out,
        name="pt",
        pixel_size=PIXEL,
        labels_dir=PT / "label_coordinates",
        pairs_csv=PT / "Coordinate_image_pairs.csv",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def pt(tmp_path_factory: pytest.TempPathFactory) -> ImportResult:
    return _import_pt(tmp_path_factory.mktemp("pt"))


def _csv_xy(label_file: str) -> np.ndarray:
    with open(PT / "label_coordinates" / label_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([[float(r["X"]), float(r["Y"])] for r in rows])


def test_pt_set_imports_21_images_and_1088_coordinates(pt: ImportResult) -> None:
    assert (pt.images, pt.rows, pt.coordinates, pt.shape) == (21, 21, 1088, (512, 512))
    assert verify(pt.directory).ok
    assert pt.directory.name == f"pt-{pt.hash}"
    table = read_dataset(pt.directory)
    assert table.column("sample_id").to_pylist() == list(range(21))
    counts = [len(c) for c in table.column("coordinates").to_pylist()]
    assert sum(counts) == 1088
    masks = images_to_numpy(table, "mask")
    assert masks.dtype == np.uint8
    assert all(masks[i].any() == (counts[i] > 0) for i in range(21))
    assert images_to_numpy(table, "image").dtype == np.float32
    assert set(table.column("pixel_size").to_pylist()) == {PIXEL}
    splits = table.column("split").to_pylist()
    assert (splits.count("train"), splits.count("test")) == (11, 10)
    spec = read_manifest(pt.directory).spec
    assert spec["kind"] == "imported" and len(spec["sources"]) == 21


def test_pt_set_reads_back_through_imageset(pt: ImportResult) -> None:
    import tifffile

    table = read_dataset(pt.directory, columns=["source_file"])
    files = table.column("source_file").to_pylist()
    index = files.index("021_HAADF_15nm_Sample_PtNC_21Oct20.tif")
    data = ImageSet(pt.directory, range(21), dataset_classes=["atom"], classes=["atom"])
    raw = tifffile.imread(PT / "tif_data" / files[index])
    np.testing.assert_array_equal(data.frame(index), raw.astype(np.float32))
    xy, labels = data.coordinates(index)
    expected = _csv_xy("021_Results.csv")
    np.testing.assert_array_equal(xy, expected)
    assert tuple(xy[0]) == (152.0, 351.0)  # first row of 021_Results.csv
    assert set(labels.tolist()) == {1}
    assert data.mask(index)[351, 152] == 1


def test_resampling_halves_size_and_coordinates(tmp_path: Path, pt: ImportResult) -> None:
    half = _import_pt(tmp_path, target_pixel_size=2 * PIXEL)
    assert (half.shape, half.coordinates, half.pixel_size) == ((256, 256), 1088, 2 * PIXEL)
    assert verify(half.directory).ok
    full = read_dataset(pt.directory, columns=["coordinates"]).column("coordinates").to_pylist()
    small = read_dataset(half.directory, columns=["coordinates"]).column("coordinates").to_pylist()
    for before, after in zip(full, small, strict=True):
        a = np.array([[c["x"], c["y"]] for c in before])
        b = np.array([[c["x"], c["y"]] for c in after])
        np.testing.assert_allclose(b, (a + 0.5) / 2 - 0.5)  # pixel centres, scale 1/2


def test_patches_conserve_coordinates(tmp_path: Path) -> None:
    tiles = _import_pt(tmp_path, patch=(256, 256))
    assert (tiles.rows, tiles.shape, tiles.coordinates) == (84, (256, 256), 1088)
    assert verify(tiles.directory).ok
    table = read_dataset(tiles.directory)
    for row in table.to_pylist()[:8]:
        for c in row["coordinates"]:
            assert -0.5 <= c["x"] < 255.5 and -0.5 <= c["y"] < 255.5


def test_corrupt_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "bad.tif").write_bytes(b"this is not a tiff" * 10)
    (source / "empty.png").write_bytes(b"")
    np.save(source / "good.npy", np.ones((8, 8), np.float32))
    out = tmp_path / "out"
    with pytest.raises(ImageImportError) as info:
        import_images(source, out, name="x", pixel_size=1.0)
    lines = str(info.value).splitlines()
    assert any(line.startswith(str(source / "bad.tif")) for line in lines)
    assert any(line.startswith(str(source / "empty.png")) for line in lines)
    assert not any("good.npy" in line for line in lines)
    assert not out.exists()


def test_png_and_npy_inputs(tmp_path: Path) -> None:
    import imageio.v3 as iio

    source = tmp_path / "in"
    labels = tmp_path / "labels"
    source.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    iio.imwrite(source / "a.png", rng.integers(0, 65535, (40, 60), dtype=np.uint16))
    np.save(source / "b.npy", rng.random((40, 60)))
    (labels / "a.csv").write_text("x,y,class\n10,5,atom\n59.4,39.4,atom\n")
    (labels / "b.csv").write_text("x,y,class\n")  # every image labelled; b has no atoms
    result = import_images(
        source, tmp_path / "out", name="mix", pixel_size=1.0, labels_dir=labels, label_radius=1.0
    )
    assert (result.images, result.rows, result.shape, result.coordinates) == (2, 2, (40, 60), 2)
    table = read_dataset(result.directory)
    assert table.column("source_file").to_pylist() == ["a.png", "b.npy"]
    assert images_to_numpy(table, "image").shape == (2, 40, 60)
    assert images_to_numpy(table, "mask")[0, 5, 10] == 1
    assert verify(result.directory).ok
    with pytest.raises(ImageImportError, match="already exists"):
        import_images(source, tmp_path / "out", name="mix", pixel_size=1.0, labels_dir=labels,
                      label_radius=1.0)  # fmt: skip


def test_import_images_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "import-images", str(PT / "tif_data"), "--pixel-size", str(PIXEL), "--name", "pt",
        "--labels", str(PT / "label_coordinates"),
        "--pairs", str(PT / "Coordinate_image_pairs.csv"),
        "--patch", "256", "256", "--root", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert "21 images -> 84 patches" in line and "1088 coordinates" in line
    (directory,) = (tmp_path / "imported").iterdir()
    assert main(["verify", str(directory)]) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
