"""verify flags every file that is not part of a dataset; train refuses damaged data,
re-hashing shards only when a file changed."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hpcbench.datasets.manifest import VERIFIED_NAME, verify, verify_cached
from hpcbench.plan import make_plan
from hpcbench.train.errors import TrainError
from hpcbench.train.sweep import dataset_dirs
from tests.train.train_helpers import write_dataset, wse2_study

TRAIN = {"models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 2}}, "repeats": 1}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(wse2_study(TRAIN), "wse2", tmp_path)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_flags_files_that_are_not_part_of_the_dataset(dataset: Path) -> None:
    assert verify(dataset).ok
    (dataset / "stray.tmp").write_text("left over")
    pq.write_table(pa.table({"x": [1, 2, 3]}), dataset / "part-0.parquet")
    report = verify(dataset)
    extra = sorted(p.file for p in report.problems if p.kind == "extra")
    assert extra == ["part-0.parquet", "stray.tmp"]
    assert report.shards_ok == 3  # the dataset's own shards are intact


def test_generate_says_which_files_are_not_part_of_it(tmp_path: Path) -> None:
    from hpcbench.datasets.generate import generate

    study = wse2_study(TRAIN)
    directory = write_dataset(study, "wse2", tmp_path)
    (directory / "stray.tmp").write_text("left over")
    (result,) = generate(study, root=tmp_path, progress=False)
    assert result.generated == 0 and result.stray == ["stray.tmp"]
    assert result.summary().endswith("; 1 file(s) not part of it: stray.tmp")


def test_verify_cached_rehashes_only_after_a_change(dataset: Path) -> None:
    assert verify_cached(dataset).ok
    assert (dataset / VERIFIED_NAME).is_file()
    shard = sorted(dataset.glob("shard-*.parquet"))[0]
    stat = shard.stat()
    _flip_a_byte(shard)
    # Same size and mtime as when verified: the cache answers without reading shards.
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert verify_cached(dataset).ok
    # Any write that moves the mtime brings the full check back, and it finds the damage.
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    report = verify_cached(dataset)
    assert not report.ok and [p.kind for p in report.problems] == ["damaged"]


def test_train_refuses_a_damaged_dataset_in_one_line(tmp_path: Path) -> None:
    study = wse2_study(TRAIN)
    write_dataset(study, "wse2", tmp_path)
    plan = make_plan(study)
    assert set(dataset_dirs(plan, tmp_path, plan.trials)) == {"wse2"}
    _flip_a_byte(sorted(plan.dataset_dir(tmp_path, "wse2").glob("shard-*.parquet"))[1])
    with pytest.raises(TrainError, match=r"dataset wse2 is damaged .* run `hpcbench generate`"):
        dataset_dirs(plan, tmp_path, plan.trials)
