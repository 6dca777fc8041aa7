"""Imports people have: HDF5 files, per-image pixel sizes, calibrated pixel sizes, labels.

HDF5 files (plain and pycroscopy-USID layouts) are written here with h5py; pixel sizes
come from a CSV or are measured on hexagonal lattices rendered at known pixel sizes; a
labels folder or pairs file must label every image.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcbench.cli import main
from hpcbench.datasets.importer import (
    ImageImportError,
    import_images,
    import_record,
    label_file_for,
    read_image,
    read_label_csv,
    read_pairs,
)
from hpcbench.datasets.manifest import read_manifest, verify
from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy

D100 = 2.46 * np.sqrt(3) / 2  # graphene's first-order {10-10} spacing [Å]


def _ramp(rows: int, cols: int, offset: float = 0.0) -> np.ndarray:
    return (np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) + offset) / 7.0


def _hexagonal(shape: tuple[int, int], pixel_size: float, rotation: float) -> np.ndarray:
    """Three plane waves 60° apart: a hexagonal lattice of first-order spacing D100 [Å]."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] * pixel_size
    angles = np.radians(rotation + np.array([0.0, 60.0, 120.0]))
    waves = [np.cos(2 * np.pi * (cols * np.cos(t) + rows * np.sin(t)) / D100) for t in angles]
    image = 3.0 + sum(waves) + 0.002 * rows * cols  # a slow ramp under the lattice
    return np.random.default_rng(abs(round(rotation))).poisson(20 * image).astype(np.float32)


# ------------------------------------------------------------------------------ HDF5


def test_hdf5_image_is_found_among_metadata(tmp_path: Path) -> None:
    image = _ramp(40, 60)
    with h5py.File(tmp_path / "scan.h5", "w") as handle:
        handle["Measurement/Channel/Raw"] = image[None]  # (1, 40, 60): 2-D once squeezed
        handle["Measurement/axis_x"] = np.arange(60.0)  # 1-D
        handle["Measurement/affine"] = np.eye(3)  # 2-D but metadata-sized
        handle["Measurement/label"] = np.bytes_("HAADF")
    np.testing.assert_array_equal(read_image(tmp_path / "scan.h5"), image)
    np.testing.assert_array_equal(
        read_image(tmp_path / "scan.h5", "/Measurement/affine"), np.eye(3, dtype=np.float32)
    )
    with pytest.raises(ValueError, match=r"dataset '/Measurement' is a group, not a dataset"):
        read_image(tmp_path / "scan.h5", "/Measurement")
    with pytest.raises(ValueError, match=r"'/nope' not found \(images in the file: /Meas"):
        read_image(tmp_path / "scan.h5", "/nope")
    np.save(tmp_path / "plain.npy", image)
    with pytest.raises(ValueError, match="applies to HDF5 files"):
        read_image(tmp_path / "plain.npy", "/Measurement/Channel/Raw")


def test_hdf5_with_several_images_needs_a_dataset_path(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    with h5py.File(source / "stack.hdf5", "w") as handle:
        for k in range(7):
            handle[f"frames/f{k}"] = _ramp(16, 24, offset=100 * k)
    with pytest.raises(ValueError) as info:
        read_image(source / "stack.hdf5")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("7 images in the file (/frames/f0, /frames/f1, /frames/f2, ")
    assert "/frames/f4, ..." in message and "/frames/f5" not in message
    assert "pass --dataset / dataset:" in message
    with pytest.raises(ImageImportError) as failed:
        import_images(source, tmp_path / "out", name="stack", pixel_size=0.5)
    assert failed.value.problems == [f"{source / 'stack.hdf5'}: {message}"]
    picked = import_images(
        source, tmp_path / "out", name="stack", pixel_size=0.5, dataset="/frames/f3"
    )
    table = read_dataset(picked.directory)
    np.testing.assert_array_equal(images_to_numpy(table, "image")[0], _ramp(16, 24, 300))
    spec = read_manifest(picked.directory).spec
    assert spec["dataset"] == "/frames/f3" and verify(picked.directory).ok
    other = import_record(source, name="stack", pixel_size=0.5, dataset="/frames/f4")
    assert other.hash != picked.hash  # the dataset path is part of the identity


def test_usid_main_dataset_is_laid_out_on_its_position_grid(tmp_path: Path) -> None:
    """pycroscopy's USID: (positions, 1) values, X the fastest-changing position index."""
    image = _ramp(12, 20)
    y, x = np.mgrid[0:12, 0:20]
    positions = np.column_stack([x.ravel(), y.ravel()]).astype(np.uint32)  # X fastest
    with h5py.File(tmp_path / "usid.h5", "w") as handle:
        channel = handle.create_group("Measurement_000/Channel_000")
        raw = channel.create_dataset("Raw_Data", data=image.reshape(-1, 1))
        indices = channel.create_dataset("Position_Indices", data=positions)
        values = channel.create_dataset("Position_Values", data=positions * 0.1)
        spectral = channel.create_dataset("Spectroscopic_Indices", data=np.zeros((1, 1)))
        raw.attrs["Position_Indices"] = indices.ref
        raw.attrs["Position_Values"] = values.ref
        raw.attrs["Spectroscopic_Indices"] = spectral.ref
        raw.attrs["quantity"] = "intensity"
        spectra = channel.create_dataset("Spectra", data=np.ones((240, 64)))  # not an image
        spectra.attrs["Position_Indices"] = indices.ref
    read = read_image(tmp_path / "usid.h5")
    assert read.shape == (12, 20)
    np.testing.assert_array_equal(read, image)
    # Positions in any row order land on their pixels.
    shuffled = np.random.default_rng(0).permutation(240)
    with h5py.File(tmp_path / "shuffled.h5", "w") as handle:
        indices = handle.create_dataset("Position_Indices", data=positions[shuffled])
        raw = handle.create_dataset("Raw_Data", data=image.reshape(-1, 1)[shuffled])
        raw.attrs["Position_Indices"] = indices.ref
    np.testing.assert_array_equal(read_image(tmp_path / "shuffled.h5"), image)


def test_dataset_path_without_hdf5_files_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    np.save(source / "a.npy", _ramp(16, 16))
    with pytest.raises(ImageImportError, match=r"dataset '/x' given, but no HDF5 file"):
        import_images(source, tmp_path / "out", name="a", pixel_size=1.0, dataset="/x")


# ---------------------------------------------------------------- pixel sizes


def _two_scales(tmp_path: Path) -> Path:
    """One field at 0.5 Å/px (40 x 60) and at 0.25 Å/px (80 x 120), labelled alike."""
    source = tmp_path / "in"
    (source / "labels").mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.save(source / "coarse.npy", rng.random((40, 60)))
    np.save(source / "fine.npy", rng.random((80, 120)))
    (source / "labels" / "coarse.csv").write_text("X,Y\n10,5\n")
    (source / "labels" / "fine.csv").write_text("X,Y\n21,11\n")  # the same site at 2x
    return source


def test_pixel_sizes_from_a_csv_resample_each_image(tmp_path: Path) -> None:
    source = _two_scales(tmp_path)
    table = tmp_path / "pixels.csv"
    table.write_text("image,pixel_size\ncoarse.npy,0.5\nfine,0.25\n")  # name or stem
    kwargs = {"name": "two", "pixel_size": table, "labels_dir": source / "labels"}
    with pytest.raises(ImageImportError) as info:
        import_images(source, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert info.value.lines == [
        f"{source}: the images' pixel sizes differ (0.25 to 0.5 Å): give a target pixel "
        "size (--target-pixel-size / target_pixel_size:) to resample them to"
    ]
    result = import_images(source, tmp_path / "out", target_pixel_size=0.5, **kwargs)  # type: ignore[arg-type]
    assert (result.images, result.shape, result.coordinates) == (2, (40, 60), 2)
    rows = read_dataset(result.directory).to_pylist()
    assert [row["pixel_size"] for row in rows] == [0.5, 0.5]
    # Pixel centres: (x + 0.5) * s - 0.5 with s = 0.25 / 0.5 for the fine image.
    assert [(c["x"], c["y"]) for row in rows for c in row["coordinates"]] == [
        (10.0, 5.0),
        (10.25, 5.25),
    ]
    spec = read_manifest(result.directory).spec
    assert spec["pixel_size"]["file"] == "pixels.csv"
    assert [s["pixel_size"] for s in spec["sources"]] == [0.5, 0.25]
    # The CSV's content is part of the identity.
    record = import_record(source, target_pixel_size=0.5, **kwargs)  # type: ignore[arg-type]
    assert record.hash == result.hash
    table.write_text("image,pixel_size\ncoarse.npy,0.5\nfine,0.251\n")
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    edited = import_record(source, target_pixel_size=0.5, **kwargs)  # type: ignore[arg-type]
    assert edited.hash != record.hash
    assert [s["pixel_size"] for s in edited.spec["sources"]] == [0.5, 0.251]


def test_pixel_size_csv_must_list_every_image(tmp_path: Path) -> None:
    source = _two_scales(tmp_path)
    table = tmp_path / "pixels.csv"
    table.write_text("image,pixel_size\ncoarse,0.5\n")
    with pytest.raises(ImageImportError) as info:
        import_images(source, tmp_path / "out", name="two", pixel_size=table, target_pixel_size=1.0)
    assert info.value.problems == [
        f"{source / 'fine.npy'}: not listed in {table} (by file name or stem)"
    ]
    table.write_text("image,pixel_size\ncoarse,0.5\nfine,-1\n")
    with pytest.raises(ImageImportError, match="line 3: pixel_size of fine must be > 0"):
        import_images(source, tmp_path / "out", name="two", pixel_size=table, target_pixel_size=1.0)
    with pytest.raises(FileNotFoundError, match="no such pixel-size file"):
        import_images(source, tmp_path / "out", name="two", pixel_size=tmp_path / "none.csv")


def test_equal_pixel_sizes_from_a_csv_need_no_target(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for stem in ("a", "b"):
        np.save(source / f"{stem}.npy", _ramp(20, 30))
    (tmp_path / "p.csv").write_text("image,pixel_size\na,0.3\nb,0.3\n")
    result = import_images(source, tmp_path / "out", name="ab", pixel_size=tmp_path / "p.csv")
    assert (result.shape, result.pixel_size) == ((20, 30), 0.3)
    # A number given as text is a number: the same record as the float.
    assert import_record(source, name="ab", pixel_size="0.3").spec["pixel_size"] == 0.3


def test_pixel_size_auto_calibrates_each_image(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    truth = {"a": 0.16, "b": 0.2}
    np.save(source / "a.npy", _hexagonal((250, 250), truth["a"], rotation=11.0))
    np.save(source / "b.npy", _hexagonal((200, 200), truth["b"], rotation=-23.0))
    result = import_images(
        source,
        tmp_path / "out",
        name="auto",
        pixel_size="auto",
        lattice="graphene",
        target_pixel_size=0.2,
    )
    assert result.shape == (200, 200)
    spec = read_manifest(result.directory).spec
    assert spec["pixel_size"] == "auto"
    assert spec["lattice"] == {"name": "graphene", "a": 2.46}
    for entry in spec["sources"]:
        assert entry["pixel_size"] == pytest.approx(truth[entry["file"][0]], rel=0.01)
    bad = {"name": "auto", "pixel_size": "auto"}
    with pytest.raises(ImageImportError, match="pixel size auto: needs a lattice"):
        import_images(source, tmp_path / "out", **bad)  # type: ignore[arg-type]
    with pytest.raises(ImageImportError, match="lattice 'gold': not one of graphene"):
        import_images(source, tmp_path / "out", lattice="gold", **bad)  # type: ignore[arg-type]
    with pytest.raises(ImageImportError, match="lattice 'graphene': only with pixel size auto"):
        import_images(source, tmp_path / "out", name="x", pixel_size=0.2, lattice="graphene")


def test_pixel_size_auto_names_an_image_without_the_lattice(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    np.save(source / "lattice.npy", _hexagonal((200, 200), 0.2, rotation=5.0))
    np.save(source / "noise.npy", np.random.default_rng(2).poisson(20.0, (200, 200)))
    with pytest.raises(ImageImportError) as info:
        import_images(source, tmp_path / "out", name="x", pixel_size="auto", lattice="graphene")
    (problem,) = info.value.problems
    assert problem.startswith(f"{source / 'noise.npy'}: pixel size auto: no spectral peak")


# ---------------------------------------------------------------------- labels


def test_labels_that_match_no_image_are_an_error(tmp_path: Path) -> None:
    source, labels = tmp_path / "in", tmp_path / "labels"
    source.mkdir()
    labels.mkdir()
    for stem in ("a", "b", "c"):
        np.save(source / f"{stem}.npy", _ramp(16, 16))
        (labels / f"img_{stem}.csv").write_text("X,Y\n3,4\n")  # named unlike the images
    kwargs = {"name": "x", "pixel_size": 1.0, "labels_dir": labels}
    with pytest.raises(ImageImportError) as info:
        import_images(source, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert info.value.problems == [
        f"{source / 'a.npy'}: no label file in {labels}, nor for any of the 3 images "
        "(matched by the image's stem: STEM.csv, STEM_Results.csv, STEM_mask.png, ...)"
    ]
    for stem in ("a", "c"):
        (labels / f"{stem}_Results.csv").write_text("X,Y\n3,4\n")
    with pytest.raises(ImageImportError) as info:
        import_images(source, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert info.value.problems == [
        f"{source / 'b.npy'}: no label file in {labels} (1 of 3 images unlabelled; "
        "every image needs one)"
    ]
    (labels / "b_Results.csv").write_text("X,Y\n")  # an image without atoms
    result = import_images(source, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert (result.images, result.coordinates) == (3, 2)


def test_pairs_row_without_a_label_file_is_an_error(tmp_path: Path) -> None:
    source, labels = tmp_path / "in", tmp_path / "labels"
    source.mkdir()
    labels.mkdir()
    for stem in ("a", "b"):
        np.save(source / f"{stem}.npy", _ramp(16, 16))
    (labels / "a.csv").write_text("X,Y\n3,4\n")
    (tmp_path / "pairs.csv").write_text("Filename,Coords,Split\na.npy,a.csv,train\nb.npy,,test\n")
    pairs = read_pairs(tmp_path / "pairs.csv")
    assert pairs == {"a.npy": ("a.csv", "train"), "b.npy": ("", "test")}
    with pytest.raises(ImageImportError) as info:
        import_images(
            source,
            tmp_path / "out",
            name="x",
            pixel_size=1.0,
            labels_dir=labels,
            pairs_csv=tmp_path / "pairs.csv",
        )
    assert info.value.problems == [
        f"{source / 'b.npy'}: no label file in pairs.csv (1 of 2 images unlabelled; "
        "every image needs one)"
    ]


def test_split_imports_only_the_images_of_that_split(tmp_path: Path) -> None:
    source, labels = tmp_path / "in", tmp_path / "labels"
    source.mkdir()
    labels.mkdir()
    for stem, offset in (("a", 0.0), ("b", 5.0), ("c", 9.0)):
        np.save(source / f"{stem}.npy", _ramp(16, 16, offset))
        (labels / f"{stem}.csv").write_text("X,Y\n3,4\n")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "Filename,Coords,Split\na.npy,a.csv,train\nb.npy,b.csv,test\nc.npy,c.csv,test\n"
    )
    common = {"pixel_size": 1.0, "labels_dir": labels, "pairs_csv": pairs}
    test = import_images(source, tmp_path / "out", name="t", split="test", **common)
    table = read_dataset(test.directory)
    assert table.column("source_file").to_pylist() == ["b.npy", "c.npy"]
    assert set(table.column("split").to_pylist()) == {"test"}
    np.testing.assert_array_equal(images_to_numpy(table)[0], _ramp(16, 16, 5.0))
    # the split is part of the identity: all images hash differently
    every = import_images(source, tmp_path / "out", name="t", **common)
    assert every.hash != test.hash and every.images == 3
    with pytest.raises(ImageImportError, match=r"no image is in split 'val' .*splits: test, train"):
        import_images(source, tmp_path / "out", name="t", split="val", **common)
    with pytest.raises(ImageImportError, match="needs a pairs CSV"):
        import_images(source, tmp_path / "out", name="t", pixel_size=1.0, split="test")


def test_public_label_helpers(tmp_path: Path) -> None:
    (tmp_path / "img_7_Results.csv").write_text("X,Y,class\n1.5,2,dopant\n4,5,2\n6,7,\n")
    (tmp_path / "img_7.csv").write_text("X,Y\n")
    # The suffixed name comes first, as the Pt set's NNN_Results.csv.
    assert label_file_for(tmp_path / "img_7.tif", tmp_path) == tmp_path / "img_7_Results.csv"
    assert label_file_for(tmp_path / "img_8.tif", tmp_path) is None
    sites = read_label_csv(tmp_path / "img_7_Results.csv", ["dopant", "vacancy"])
    np.testing.assert_array_equal(sites.x, [1.5, 4.0, 6.0])
    np.testing.assert_array_equal(sites.y, [2.0, 5.0, 7.0])
    np.testing.assert_array_equal(sites.cls, [1, 2, 1])
    assert sites.mask is None
    (tmp_path / "bad.csv").write_text("X,Y,class\n1,2,gold\n")
    with pytest.raises(ValueError, match=r"line 2: class 'gold' is not one of \['dopant'\]"):
        read_label_csv(tmp_path / "bad.csv", ["dopant"])


# ------------------------------------------------------------------------- CLI


def test_cli_imports_hdf5_with_per_image_pixel_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for stem, shape in (("coarse", (40, 60)), ("fine", (80, 120))):
        with h5py.File(source / f"{stem}.h5", "w") as handle:
            handle["haadf"] = _ramp(*shape)
            handle["adf"] = _ramp(*shape, offset=1.0)
    (tmp_path / "pixels.csv").write_text("image,pixel_size\ncoarse,0.5\nfine,0.25\n")
    args = ["import-images", str(source), "--name", "two", "--root", str(tmp_path / "root"),
            "--pixel-size", str(tmp_path / "pixels.csv"), "--target-pixel-size", "0.5"]  # fmt: skip
    assert main(args) == 2
    assert "pass --dataset / dataset:" in capsys.readouterr().err
    assert main([*args, "--dataset", "/haadf"]) == 0
    assert "imported 2 images -> 2 patches 40x60 px at 0.5 Å/px" in capsys.readouterr().out
