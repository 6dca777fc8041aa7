"""Dataset test fixtures: one Ray per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import shard_helpers


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One 2-CPU Ray for the whole test module."""
    import ray
    import ray.cloudpickle

    # Tasks run in worker processes that cannot import test modules by name.
    ray.cloudpickle.register_pickle_by_value(shard_helpers)
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False)
    yield
    ray.shutdown()
