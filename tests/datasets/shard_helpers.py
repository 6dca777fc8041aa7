"""Helpers for dataset tests: a cheap real shard builder and a small study."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from hpcbench.datasets.schema import coordinates_type, tensor_column
from hpcbench.seeding import Stream, stream_rng
from hpcbench.study import Study, validate_study_data

IMAGE = (24, 20)


def cheap_shard(study: Study, name: str, shard_index: int) -> pa.Table:
    """A real, deterministic shard: seeded noise images, a thresholded mask, two sites each.

    Same signature and contract as ``hpcbench.datasets.samples.build_shard``.
    """
    spec = study.datasets[name]
    first = shard_index * spec.shard_size
    ids = np.arange(first, min(spec.size, first + spec.shard_size), dtype=np.int64)
    rngs = [stream_rng(study.seed, name, int(i), Stream.CORRUPTION) for i in ids]
    images = np.stack([rng.random(IMAGE, dtype=np.float32) for rng in rngs])
    masks = (images > 0.9).astype(np.uint8) + (images > 0.97).astype(np.uint8)
    coordinates = [
        [
            {"x": float(3 + i % 5), "y": 4.0, "label": 1},
            {"x": 10.0, "y": float(6 + i % 7), "label": 2},
        ]
        for i in ids
    ]
    return pa.table(
        {
            "sample_id": pa.array(ids),
            "image": tensor_column(images),
            "mask": tensor_column(masks),
            "dose": pa.array(np.full(len(ids), 1e4)),
            "coordinates": pa.array(coordinates, type=coordinates_type()),
        }
    )


class CountingBuilder:
    """``cheap_shard`` that leaves one file per call in ``calls`` (tasks run elsewhere)."""

    def __init__(self, calls: Path) -> None:
        self.calls = calls
        calls.mkdir(parents=True, exist_ok=True)

    def __call__(self, study: Study, name: str, shard_index: int) -> pa.Table:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
        (self.calls / f"{name}.{shard_index}.{node}.{uuid.uuid4().hex}").touch()
        return cheap_shard(study, name, shard_index)

    def _calls(self) -> list[list[str]]:
        return [path.name.split(".") for path in self.calls.iterdir()]

    def shards_built(self) -> list[tuple[str, int]]:
        """Sorted (dataset, shard index) of every call so far."""
        return sorted((name, int(index)) for name, index, _, _ in self._calls())

    def nodes(self) -> set[str]:
        """Ray node ids the calls ran on."""
        return {node for _, _, node, _ in self._calls()}


def small_study(size: int = 50, shard_size: int = 16, seed: int = 7) -> Study:
    """Two cheap incoherent datasets; ``noisy`` has a partial last shard."""
    dataset = {
        "structure": {"kind": "mx2", "formula": "WSe2", "supercell": [2, 2]},
        "simulation": {"method": "incoherent"},
        "image": {"shape": list(IMAGE), "pixel_size": 0.2},
        "labels": {"classes": ["anion_vacancy", "dopant"]},
        "size": size,
        "shard_size": shard_size,
    }
    return validate_study_data(
        {
            "name": "tiny",
            "seed": seed,
            "datasets": {"noisy": dataset, "other": {**dataset, "size": 16}},
        }
    )
