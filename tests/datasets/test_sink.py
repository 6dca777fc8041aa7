"""Shard writer, schema helpers and manifest: no Ray needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shard_helpers import IMAGE, cheap_shard, small_study

from hpcbench.datasets.manifest import (
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    shard_layout,
    verify,
    write_manifest,
)
from hpcbench.datasets.schema import images_to_numpy, tensor_column
from hpcbench.datasets.sink import PARQUET_OPTIONS, file_sha256, shard_name, write_shard
from hpcbench.plan import dataset_dir
from hpcbench.study import Study


def test_tensor_column_round_trip_is_zero_copy() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    column = tensor_column(images)
    assert column.type == pa.fixed_shape_tensor(pa.float32(), [3, 4])
    back = images_to_numpy(pa.table({"image": column}), "image")
    assert back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, images)
    assert np.shares_memory(back, images)  # neither direction copied


def test_images_to_numpy_joins_chunks_and_rejects_plain_columns() -> None:
    a = tensor_column(np.zeros((2, 2, 2), np.uint8))
    b = tensor_column(np.ones((3, 2, 2), np.uint8))
    table = pa.table({"mask": pa.chunked_array([a, b]), "dose": pa.array(np.ones(5))})
    joined = images_to_numpy(table, "mask")
    assert joined.shape == (5, 2, 2)
    assert joined.sum() == 3 * 4
    with pytest.raises(TypeError, match="not a fixed_shape_tensor"):
        images_to_numpy(table, "dose")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        tensor_column(np.zeros((4, 4)))


def test_sink_bytes_equal_plain_pyarrow(tmp_path: Path) -> None:
    study = small_study()
    table = cheap_shard(study, "noisy", 1)
    record = write_shard(table, tmp_path / "ds")
    reference = tmp_path / "reference.parquet"
    pq.write_table(table, reference, **PARQUET_OPTIONS)
    written = tmp_path / "ds" / "shard-00000016.parquet"
    assert record.file == written.name == shard_name(16)
    assert (record.first_sample_id, record.rows) == (16, 16)
    assert written.read_bytes() == reference.read_bytes()
    assert record.sha256 == file_sha256(reference)
    assert record.bytes == reference.stat().st_size
    # Same table again, fresh process state: same bytes (no timestamps in the file).
    again = write_shard(cheap_shard(study, "noisy", 1), tmp_path / "again")
    assert again.sha256 == record.sha256
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [written.name]


def test_sink_keeps_the_standard_tensor_type_for_plain_pyarrow(tmp_path: Path) -> None:
    table = cheap_shard(small_study(), "noisy", 0)
    write_shard(table, tmp_path)
    back = pq.read_table(tmp_path / shard_name(0))
    assert isinstance(back.column("image").type, pa.FixedShapeTensorType)
    assert back.column("image").type.shape == list(IMAGE)
    np.testing.assert_array_equal(images_to_numpy(back, "image"), images_to_numpy(table, "image"))
    # The only key-value metadata is Arrow's schema: no timestamps, nothing per-run.
    assert list(pq.read_metadata(tmp_path / shard_name(0)).metadata) == [b"ARROW:schema"]


def test_sink_rejects_rows_that_are_not_one_contiguous_range(tmp_path: Path) -> None:
    table = cheap_shard(small_study(), "noisy", 0)
    shuffled = table.take([1, 0, *range(2, table.num_rows)])
    with pytest.raises(ValueError, match="contiguous"):
        write_shard(shuffled, tmp_path)
    with pytest.raises(ValueError, match="sample_id"):
        write_shard(table.drop_columns(["sample_id"]), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_layout_has_a_short_last_shard() -> None:
    assert shard_layout(50, 16) == [(0, 16), (16, 16), (32, 16), (48, 2)]
    assert shard_layout(32, 16) == [(0, 16), (16, 16)]


def _write_dataset(root: Path) -> tuple[Path, Manifest]:
    study = small_study()
    directory = dataset_dir(study, root, "noisy")
    manifest = Manifest.for_dataset(study, "noisy")
    for index in range(4):
        record = write_shard(cheap_shard(study, "noisy", index), directory)
        manifest.shards[record.first_sample_id] = record
    write_manifest(directory, manifest)
    return directory, manifest


def test_manifest_round_trip_and_directory_reads_skip_it(tmp_path: Path) -> None:
    directory, manifest = _write_dataset(tmp_path)
    data = json.loads((directory / MANIFEST_NAME).read_text())
    assert data["complete"] is True
    assert data["total_rows"] == 50
    assert data["shard_count"] == 4
    assert data["spec"]["size"] == 50
    assert data["seed"] == 7
    assert [s["first_sample_id"] for s in data["shards"]] == [0, 16, 32, 48]
    assert read_manifest(directory) == manifest
    # A crashed writer's temporary file and the manifest are not read as data.
    (directory / ".shard-00000000.parquet.tmp-dead").write_bytes(b"half a file")
    table = pq.read_table(directory)
    assert table.num_rows == 50
    assert sorted(table.column("sample_id").to_pylist()) == list(range(50))


def test_verify_names_each_problem(tmp_path: Path) -> None:
    directory, _ = _write_dataset(tmp_path)
    assert verify(directory).ok
    assert verify(directory).rows_ok == 50
    (directory / shard_name(16)).unlink()
    payload = bytearray((directory / shard_name(32)).read_bytes())
    payload[100] ^= 0xFF
    (directory / shard_name(32)).write_bytes(bytes(payload))
    (directory / shard_name(64)).write_bytes(b"stray")
    report = verify(directory)
    assert not report.ok
    assert [(p.kind, p.file) for p in report.problems] == [
        ("missing", shard_name(16)),
        ("damaged", shard_name(32)),
        ("extra", shard_name(64)),
    ]
    assert report.problems[1].detail == "sha256 differs from the manifest"
    assert (report.shards_ok, report.rows_ok) == (2, 18)
    assert report.lines()[0] == f"{directory / shard_name(16)}: missing: file missing"


def test_verify_catches_a_manifest_that_does_not_match_its_directory(tmp_path: Path) -> None:
    directory, manifest = _write_dataset(tmp_path)
    manifest.seed = 8  # claims another seed: its spec no longer hashes to the name
    write_manifest(directory, manifest)
    kinds = [(p.kind, p.detail.split(",")[0]) for p in verify(directory).problems]
    assert kinds == [("manifest", f"records hash {manifest.hash}")]
    (directory / MANIFEST_NAME).write_text("{not json")
    problems = verify(directory).problems
    assert [p.kind for p in problems] == ["manifest"]
    assert problems[0].detail.startswith("unreadable _manifest.json")


def test_generate_on_a_complete_dataset_starts_no_ray(tmp_path: Path) -> None:
    import ray

    from hpcbench.datasets.generate import generate

    _write_dataset(tmp_path)

    def must_not_run(study: Study, name: str, shard_index: int) -> pa.Table:
        raise AssertionError("a complete dataset was rebuilt")

    (result,) = generate(small_study(), root=tmp_path, builder=must_not_run, only=["noisy"])
    assert (result.generated, result.skipped, result.rows) == (0, 4, 50)
    assert not ray.is_initialized()
