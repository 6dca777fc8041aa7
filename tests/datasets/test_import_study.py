"""Imported experimental images as a study dataset: hash, ``generate``, ``validate``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpcbench.cli import main
from hpcbench.datasets.generate import generate
from hpcbench.datasets.importer import import_images, import_record
from hpcbench.datasets.manifest import read_manifest, verify
from hpcbench.datasets.read import read_dataset
from hpcbench.plan import dataset_dir, dataset_hash
from hpcbench.study import Study, validate_study_data

PT = Path(__file__).resolve().parents[2] / "data" / "pt-single-atoms-haadf"
pytestmark = pytest.mark.skipif(not PT.is_dir(), reason=f"{PT} not present")
PIXEL = 0.293  # Å (0.0293 nm)
# Half resolution keeps it small: 21 images of 256 x 256 px, 1088 labelled Pt atoms.
PT_IMPORT: dict[str, Any] = {
    "path": str(PT / "tif_data"),
    "labels": str(PT / "label_coordinates"),
    "pairs": str(PT / "Coordinate_image_pairs.csv"),
    "pixel_size": PIXEL,
    "target_pixel_size": 2 * PIXEL,
    "patch": [128, 128],
}
SIMULATED = {
    "structure": {"kind": "mx2"},
    "simulation": {"method": "incoherent"},
    "labels": {"classes": ["dopant"]},
    "size": 8,
}


def _study(**imports: dict[str, Any]) -> Study:
    return validate_study_data(
        {"name": "real", "datasets": {"sim": SIMULATED}, "imports": imports or {"pt": PT_IMPORT}}
    )


def test_generate_imports_21_images_with_1088_coordinates(tmp_path: Path) -> None:
    study = _study()
    (result,) = generate(study, root=tmp_path, only=["pt"], progress=False)
    directory = dataset_dir(study, tmp_path, "pt")
    assert result.directory == directory
    assert directory.name == f"pt-{dataset_hash(study, 'pt')}"
    assert directory.parent == tmp_path / "real" / "datasets"
    assert "imported 21 images, 1088 coordinates" in result.summary()
    assert (result.rows, result.generated, result.skipped) == (84, 1, 0)  # 21 x 2 x 2 tiles
    assert verify(directory).ok
    table = read_dataset(directory)
    assert len(set(table.column("source_file").to_pylist())) == 21
    assert sum(len(c) for c in table.column("coordinates").to_pylist()) == 1088
    # The patches of one image are consecutive rows (splits keep them together).
    files = table.column("source_file").to_pylist()
    assert all(len(set(files[i : i + 4])) == 1 for i in range(0, 84, 4))
    spec = read_manifest(directory).spec
    assert spec == import_record(study.imports["pt"].path, name="pt", **_kwargs(study)).spec
    # A second run finds it complete and verified: nothing is rewritten.
    mtime = (directory / "_manifest.json").stat().st_mtime_ns
    (again,) = generate(study, root=tmp_path, only=["pt"], progress=False)
    assert "already imported, verified" in again.summary() and again.rows == 84
    assert (directory / "_manifest.json").stat().st_mtime_ns == mtime
    # A damaged import is imported again.
    shard = next(directory.glob("shard-*.parquet"))
    shard.write_bytes(b"broken")
    (repaired,) = generate(study, root=tmp_path, only=["pt"], progress=False)
    assert "imported 21 images" in repaired.summary() and verify(directory).ok


def _kwargs(study: Study) -> dict[str, Any]:
    spec = study.imports["pt"]
    return {
        "pixel_size": spec.pixel_size,
        "target_pixel_size": spec.target_pixel_size,
        "labels_dir": spec.labels,
        "pairs_csv": spec.pairs,
        "patch": spec.patch,
        "class_names": spec.classes,
        "label_radius": spec.label_radius,
    }


def _copy_three(tmp_path: Path) -> Path:
    folder = tmp_path / "three"
    (folder / "labels").mkdir(parents=True)
    for stem in sorted(p.stem for p in (PT / "tif_data").glob("*.tif"))[:3]:
        shutil.copy(PT / "tif_data" / f"{stem}.tif", folder / f"{stem}.tif")
        # Renamed so the label is found by the image's stem (no pairs file needed).
        label = PT / "label_coordinates" / f"{stem[:3]}_Results.csv"
        shutil.copy(label, folder / "labels" / f"{stem}_Results.csv")
    return folder


def test_import_record_agrees_with_import_and_follows_the_files(tmp_path: Path) -> None:
    folder = _copy_three(tmp_path)
    kwargs: dict[str, Any] = {"name": "three", "pixel_size": PIXEL, "labels_dir": folder / "labels"}
    record = import_record(folder, **kwargs)
    assert import_record(folder, **kwargs) is record  # cached while the files are unchanged
    written = import_images(folder, tmp_path / "out", **kwargs)
    assert (written.hash, written.rows) == (record.hash, record.size)
    assert read_manifest(written.directory).spec == record.spec
    assert record.rows_per_image == (1, 1, 1)
    # Editing a label file changes the record and the hash (and so the directory).
    label = sorted((folder / "labels").iterdir())[0]
    label.write_bytes(label.read_bytes() + b"99,10,10\r\n")
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    edited = import_record(folder, **kwargs)
    assert edited.hash != record.hash
    # Other parameters give another hash; patches are counted per image.
    tiled = import_record(folder, **{**kwargs, "patch": (256, 128)})
    assert tiled.hash != edited.hash and tiled.rows_per_image == (8, 8, 8)


def test_generate_and_validate_cli_list_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy_three(tmp_path)
    study_file = tmp_path / "study" / "real.yaml"
    study_file.parent.mkdir()
    study_file.write_text(
        "name: real\n"
        "datasets:\n"
        "  sim: {structure: {kind: mx2}, simulation: {method: incoherent},\n"
        "        labels: {classes: [dopant]}, size: 8}\n"
        "imports:\n"
        f"  three: {{path: ../{folder.name}, labels: ../{folder.name}/labels,\n"
        f"          pixel_size: {PIXEL}, classes: [dopant]}}\n"
    )
    assert main(["validate", str(study_file)]) == 0
    out = capsys.readouterr().out
    record = import_record(
        folder, name="three", pixel_size=PIXEL, labels_dir=folder / "labels", class_names=["dopant"]
    )
    assert f"  imported three-{record.hash}: 3 images of {folder} -> 3 rows 512x512 px" in out
    root = tmp_path / "root"
    assert main(["generate", str(study_file), "--root", str(root), "--only", "three"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "imported 3 images" in lines[0], lines
    assert lines[0].startswith(str(root / "real" / "datasets" / f"three-{record.hash}"))
    assert main(["generate", str(study_file), "--root", str(root), "--only", "nope"]) == 2
    assert "--only: no dataset 'nope' (the study has sim, three)" in capsys.readouterr().err


def test_unreadable_import_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((4, 4, 4, 4)))
    study_file = tmp_path / "real.yaml"
    study_file.write_text(
        "name: real\n"
        "datasets:\n"
        "  sim: {structure: {kind: mx2}, simulation: {method: incoherent},\n"
        "        labels: {classes: [dopant]}, size: 8}\n"
        "imports:\n"
        "  bad: {path: bad, pixel_size: 1.0}\n"
    )
    assert main(["generate", str(study_file), "--root", str(tmp_path / "r"), "--only", "bad"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"{study_file}: imports.bad: {folder}: cannot import 1 file(s):"
    assert err[1].startswith(str(folder / "a.npy")) and "not a 2-D image" in err[1]
    assert not (tmp_path / "r").exists()


def test_study_imports_hdf5_with_a_pixel_size_csv(tmp_path: Path) -> None:
    """``pixel_size: CSV`` relative to the study file, ``dataset:`` for HDF5, and identity."""
    import h5py

    from hpcbench.plan import make_plan
    from hpcbench.study import StudyError, load_study

    images = tmp_path / "images"
    images.mkdir()
    for stem, shape in (("coarse", (40, 60)), ("fine", (80, 120))):
        with h5py.File(images / f"{stem}.h5", "w") as handle:
            handle["haadf"] = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
            handle["adf"] = np.ones(shape, np.float32)
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "sizes.csv").write_text("image,pixel_size\ncoarse,0.5\nfine.h5,0.25\n")
    study_file = folder / "real.yaml"
    study_file.write_text(
        "name: real\n"
        "datasets:\n"
        "  sim: {structure: {kind: mx2}, simulation: {method: incoherent},\n"
        "        labels: {classes: [dopant]}, size: 8}\n"
        "imports:\n"
        "  two: {path: ../images, pixel_size: sizes.csv, target_pixel_size: 0.5,\n"
        "        dataset: /haadf}\n"
    )
    study = load_study(study_file)
    spec = study.imports["two"]
    assert spec.pixel_size == str((folder / "sizes.csv").resolve())
    record = import_record(
        images,
        name="two",
        pixel_size=folder / "sizes.csv",
        target_pixel_size=0.5,
        dataset="/haadf",
    )
    assert make_plan(study).dataset_hash("two") == record.hash
    assert record.shape == (40, 60) and record.spec["dataset"] == "/haadf"
    for text, message in [
        ("pixel_size: auto", "imports.two: pixel_size auto needs a lattice"),
        ("pixel_size: 0.3, lattice: graphene", "lattice is only used with pixel_size: auto"),
        ("pixel_size: -1", "imports.two.pixel_size: must be > 0"),
    ]:
        study_file.write_text(
            study_file.read_text().split("  two:")[0] + f"  two: {{path: ../images, {text}}}\n"
        )
        with pytest.raises(StudyError) as info:
            load_study(study_file)
        assert len(info.value.lines) == 1 and message in info.value.lines[0], info.value.lines
