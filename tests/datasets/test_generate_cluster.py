"""generate() against an existing multi-node Ray cluster (head + worker, made in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shard_helpers import CountingBuilder, cheap_shard, small_study

from hpcbench.datasets.generate import generate
from hpcbench.datasets.manifest import read_manifest, verify
from hpcbench.datasets.sink import write_shard
from hpcbench.plan import dataset_dir

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster_address(two_node_cluster: str) -> str:
    """The two-node cluster, able to run builders from this test package."""
    import ray.cloudpickle
    import shard_helpers

    ray.cloudpickle.register_pickle_by_value(shard_helpers)
    return two_node_cluster


def test_two_nodes_write_the_same_bytes_as_a_plain_loop(
    cluster_address: str, tmp_path: Path
) -> None:
    import ray

    study = small_study(seed=21)
    builder = CountingBuilder(tmp_path / "calls")
    results = generate(study, root=tmp_path / "root", address=cluster_address, builder=builder)
    assert [(r.generated, r.rows) for r in results] == [(4, 50), (1, 16)]
    assert len(builder.shards_built()) == 5
    # Two 1-CPU nodes run two shard tasks at once: both nodes built shards.
    assert len(builder.nodes()) == 2
    # generate connected to the running cluster and disconnected afterwards.
    assert not ray.is_initialized()
    for name, count in (("noisy", 4), ("other", 1)):
        directory = dataset_dir(study, tmp_path / "root", name)
        assert verify(directory).ok
        loop = [
            write_shard(cheap_shard(study, name, i), tmp_path / "loop" / name) for i in range(count)
        ]
        assert {r.file: r.sha256 for r in read_manifest(directory).shards.values()} == {
            r.file: r.sha256 for r in loop
        }
