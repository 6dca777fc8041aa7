"""The generate, verify and show commands, in-process through ``hpcbench.cli.main``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hpcbench.cli import main
from hpcbench.datasets.manifest import Manifest, write_manifest
from hpcbench.datasets.schema import coordinates_type, tensor_column
from hpcbench.datasets.sink import shard_name, write_shard
from hpcbench.study import load_study

DATA = Path(__file__).resolve().parent / "data"
STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _dataset(root: Path) -> Path:
    """The quickstart's incoherent dataset (smoke size) written without Ray: 2 shards."""
    study = load_study(STUDIES / "quickstart.yaml", smoke=True)
    spec = study.datasets["wse2-incoherent"]
    directory = study.dataset_dir(root, "wse2-incoherent")
    manifest = Manifest.for_dataset(study, "wse2-incoherent")
    yy, xx = np.mgrid[: spec.image.shape[0], : spec.image.shape[1]]
    for first in range(0, spec.size, spec.shard_size):
        ids = np.arange(first, first + spec.shard_size)
        images = np.stack([np.cos(xx / (2 + i % 3)) * np.cos(yy / 3) for i in ids])
        masks = np.zeros(images.shape, np.uint8)
        masks[:, 20:28, 30:38] = 1  # anion_vacancy
        masks[:, 60:66, 60:66] = 2  # dopant
        sites = [[{"x": 34.0, "y": 24.0, "label": 1}, {"x": 63.0, "y": 63.0, "label": 2}]]
        table = pa.table(
            {
                "sample_id": pa.array(ids),
                "image": tensor_column(images.astype(np.float32)),
                "mask": tensor_column(masks),
                "coordinates": pa.array(sites * len(ids), coordinates_type()),
            }
        )
        record = write_shard(table, directory)
        manifest.shards[first] = record
    write_manifest(directory, manifest)
    return directory


def test_generate_rejects_a_bad_study_before_creating_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    root = tmp_path / "root"
    code = main(["generate", str(DATA / "bad_studies" / "bad_name.yaml"), "--root", str(root)])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("bad_name.yaml: name: ")
    assert not root.exists()
    assert not ray.is_initialized()


def test_generate_rejects_an_unknown_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["generate", str(STUDIES / "quickstart.yaml"), "--root", str(tmp_path), "--only", "nope"]
    )
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{STUDIES / 'quickstart.yaml'}: --only: no dataset 'nope' "
        "(the study has wse2-incoherent, wse2-haadf)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_verify_exit_codes_and_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _dataset(tmp_path)
    assert main(["verify", str(directory)]) == 0
    assert capsys.readouterr().out == f"{directory}: intact, 2 shards, 32 rows\n"
    (directory / shard_name(16)).unlink()
    shutil.copy(directory / shard_name(0), directory / shard_name(32))
    assert main(["verify", str(directory)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{directory / shard_name(16)}: missing: file missing",
        f"{directory / shard_name(32)}: extra: not a shard of this dataset's layout",
    ]
    assert main(["verify", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'absent'}: no such dataset directory\n"


def test_show_writes_a_png_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib.image import imread

    directory = _dataset(tmp_path)
    out = tmp_path / "grid.png"
    assert main(["show", str(directory), "--n", "6", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    pixels = imread(out)
    # 6 panels in a 3 × 2 grid of 2.2-inch panels at 100 dpi, plus the legend strip.
    assert pixels.shape[1] == 660
    assert pixels.shape[0] == 2 * 220 + 60
    # The overlay tints pixels red (anion_vacancy) and blue (dopant).
    red = (pixels[..., 0] > pixels[..., 2] + 0.2).sum()
    blue = (pixels[..., 2] > pixels[..., 0] + 0.2).sum()
    assert red > 6 * 30 and blue > 6 * 15
