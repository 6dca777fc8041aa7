"""Shared fixtures: RNG hygiene and data helpers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _rng_hygiene() -> Iterator[None]:
    """Seed global RNGs and restore them, so no test depends on or leaks global state.

    Library code must never use the global RNG; this makes a test that accidentally
    relies on it deterministic rather than flaky, and the restore keeps tests independent.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    random.seed(12345)
    np.random.seed(12345)
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[str]:
    """A Ray head and a worker node, one CPU each, for one test module; its address."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20},
    )
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    yield cluster.address
    ray.shutdown()
    cluster.shutdown()
