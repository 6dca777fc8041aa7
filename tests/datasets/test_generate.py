"""generate(): Ray Data over missing shards, manifest, skip and repair (one Ray per module)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from shard_helpers import IMAGE, CountingBuilder, cheap_shard, small_study

from hpcbench.datasets.generate import generate
from hpcbench.datasets.manifest import MANIFEST_NAME, read_manifest, verify
from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.datasets.sink import shard_name, write_shard
from hpcbench.plan import dataset_dir
from hpcbench.study import Study

pytestmark = pytest.mark.usefixtures("ray_local")


def _checksums(directory: Path) -> dict[str, str]:
    return {r.file: r.sha256 for r in read_manifest(directory).shards.values()}


def _reference_checksums(study: Study, name: str, tmp_path: Path) -> dict[str, str]:
    """The same shards written by a plain loop in this process, without Ray."""
    spec = study.datasets[name]
    count = -(-spec.size // spec.shard_size)
    records = [write_shard(cheap_shard(study, name, i), tmp_path / "loop") for i in range(count)]
    return {r.file: r.sha256 for r in records}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CountingBuilder]:
    base = tmp_path_factory.mktemp("gen")
    builder = CountingBuilder(base / "calls")
    results = generate(small_study(), root=base / "root", builder=builder, progress=False)
    assert [(r.name, r.rows, r.shards, r.generated, r.skipped) for r in results] == [
        ("noisy", 50, 4, 4, 0),
        ("other", 16, 1, 1, 0),
    ]
    return base / "root", builder


def test_first_run_writes_every_shard_and_a_complete_manifest(
    generated: tuple[Path, CountingBuilder], tmp_path: Path
) -> None:
    root, builder = generated
    study = small_study()
    directory = dataset_dir(study, root, "noisy")
    assert builder.shards_built() == [
        ("noisy", 0),
        ("noisy", 1),
        ("noisy", 2),
        ("noisy", 3),
        ("other", 0),
    ]
    assert sorted(p.name for p in directory.iterdir()) == [
        MANIFEST_NAME,
        *(shard_name(first) for first in (0, 16, 32, 48)),
    ]
    data = json.loads((directory / MANIFEST_NAME).read_text())
    assert data["complete"] is True
    assert data["hash"] == directory.name.split("-")[-1]
    assert data["spec"] == study.datasets["noisy"].model_dump(mode="json")
    assert [s["rows"] for s in data["shards"]] == [16, 16, 16, 2]
    assert data["timings"]["generate_seconds"] > 0
    # Ray workers wrote exactly the bytes a plain loop in this process writes.
    assert _checksums(directory) == _reference_checksums(study, "noisy", tmp_path)
    assert verify(directory).ok


def test_pyarrow_and_ray_read_the_directory_as_images(
    generated: tuple[Path, CountingBuilder],
) -> None:
    import ray.data

    directory = dataset_dir(small_study(), generated[0], "noisy")
    expected = np.concatenate(
        [images_to_numpy(cheap_shard(small_study(), "noisy", i)) for i in range(4)]
    )
    table = pq.read_table(directory)
    order = np.argsort(table.column("sample_id").to_numpy())
    images = images_to_numpy(table, "image")
    assert images.shape == (50, *IMAGE)
    np.testing.assert_array_equal(images[order], expected)
    ours = read_dataset(directory)
    assert ours.column("sample_id").to_pylist() == list(range(50))
    np.testing.assert_array_equal(images_to_numpy(ours, "image"), expected)
    np.testing.assert_array_equal(
        images_to_numpy(read_dataset(directory, columns=["mask"]), "mask"),
        ((expected > 0.9).astype(np.uint8) + (expected > 0.97)),
    )
    batch = ray.data.read_parquet(str(directory)).take_batch(50, batch_format="numpy")
    assert batch["image"].shape == (50, *IMAGE)
    order = np.argsort(batch["sample_id"])
    np.testing.assert_array_equal(batch["image"][order], expected)


def test_second_run_builds_nothing(generated: tuple[Path, CountingBuilder]) -> None:
    root, _ = generated
    fresh = CountingBuilder(root.parent / "calls-second")
    results = generate(small_study(), root=root, builder=fresh, progress=False)
    assert fresh.shards_built() == []
    assert [(r.generated, r.skipped, r.rows) for r in results] == [(0, 4, 50), (0, 1, 16)]
    assert max(r.seconds for r in results) < 5.0


def test_deleted_and_corrupted_shards_are_rebuilt_exactly(
    generated: tuple[Path, CountingBuilder], tmp_path: Path
) -> None:
    root, _ = generated
    study = small_study()
    directory = dataset_dir(study, root, "noisy")
    before = _checksums(directory)
    (directory / shard_name(16)).unlink()
    payload = bytearray((directory / shard_name(48)).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (directory / shard_name(48)).write_bytes(bytes(payload))
    assert [(p.kind, p.file) for p in verify(directory).problems] == [
        ("missing", shard_name(16)),
        ("damaged", shard_name(48)),
    ]
    builder = CountingBuilder(tmp_path / "calls")
    (result, _) = generate(study, root=root, builder=builder, progress=False)
    assert builder.shards_built() == [("noisy", 1), ("noisy", 3)]
    assert (result.generated, result.skipped) == (2, 2)
    assert _checksums(directory) == before
    assert verify(directory).ok


def test_a_crash_keeps_finished_shards_and_the_rerun_builds_the_rest(tmp_path: Path) -> None:
    study = small_study(seed=11)

    class FailingOnShard2(CountingBuilder):
        def __call__(self, study: Study, name: str, shard_index: int):  # type: ignore[no-untyped-def]
            if shard_index == 2:
                raise RuntimeError("node lost")
            return super().__call__(study, name, shard_index)

    with pytest.raises(Exception, match="node lost"):
        generate(
            study,
            root=tmp_path,
            builder=FailingOnShard2(tmp_path / "calls"),
            only=["noisy"],
            progress=False,
        )
    directory = dataset_dir(study, tmp_path, "noisy")
    kept = read_manifest(directory)
    assert not kept.complete
    assert 2 * 16 not in kept.shards
    assert {p.kind for p in verify(directory).problems} == {"missing"}
    rerun = CountingBuilder(tmp_path / "calls-rerun")
    (result,) = generate(study, root=tmp_path, builder=rerun, only=["noisy"], progress=False)
    built = {index for _, index in rerun.shards_built()}
    assert 2 in built
    assert built == {first // 16 for first in (0, 16, 32, 48)} - set(
        first // 16 for first in kept.shards
    )
    assert result.rows == 50
    assert _checksums(directory) == _reference_checksums(study, "noisy", tmp_path)


def test_without_a_manifest_files_are_rebuilt_to_the_same_bytes(tmp_path: Path) -> None:
    study = small_study(seed=3)
    generate(study, root=tmp_path, builder=cheap_shard, only=["other"], progress=False)
    directory = dataset_dir(study, tmp_path, "other")
    before = _checksums(directory)
    (directory / MANIFEST_NAME).unlink()
    builder = CountingBuilder(tmp_path / "calls")
    (result,) = generate(study, root=tmp_path, builder=builder, only=["other"], progress=False)
    assert builder.shards_built() == [("other", 0)]
    assert (result.generated, result.skipped) == (1, 0)
    assert _checksums(directory) == before


def test_progress_lines_and_unknown_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = small_study(seed=5)
    generate(study, root=tmp_path, builder=cheap_shard, only=["other"])
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"other: shard-00000000\.parquet 16 rows \d+\.\d s \[1/1\]", line)
    with pytest.raises(ValueError, match="no dataset 'nope' in study 'tiny'"):
        generate(study, root=tmp_path, builder=cheap_shard, only=["nope"])
