"""Helpers for training tests: write real datasets without Ray, and tiny studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcbench.datasets.manifest import Manifest, write_manifest
from hpcbench.datasets.samples import build_shard, shard_count
from hpcbench.datasets.sink import write_shard
from hpcbench.plan import dataset_dir
from hpcbench.study import Study, validate_study_data


def write_dataset(study: Study, name: str, root: Path) -> Path:
    """Build every shard of dataset ``name`` in this process and write its manifest.

    The same files ``hpcbench generate`` writes (``build_shard`` + ``write_shard``), so
    the training code reads a real dataset; no Ray involved.
    """
    directory = dataset_dir(study, root, name)
    manifest = Manifest.for_dataset(study, name)
    for shard in range(shard_count(study.datasets[name])):
        record = write_shard(build_shard(study, name, shard), directory)
        manifest.shards[record.first_sample_id] = record
    write_manifest(directory, manifest)
    return directory


def wse2_study(train: dict[str, Any] | None = None, *, size: int = 48, name: str = "tiny") -> Study:
    """A small WSe2 incoherent study (64x64 px, 8 images per structure), optionally trained."""
    data: dict[str, Any] = {
        "name": name,
        "seed": 3,
        "datasets": {
            "wse2": {
                "structure": {
                    "kind": "mx2",
                    "formula": "WSe2",
                    "supercell": [6, 4],
                    "defects": {
                        "anion_vacancy": {"count": {"min": 2, "max": 5}},
                        "dopant": {"count": {"min": 0, "max": 2}},
                    },
                    "dopants": ["Mo"],
                },
                "simulation": {
                    "method": "incoherent",
                    "energy": 80000,
                    "semiangle_cutoff": 25,
                    "defocus": 0,
                    "Cs": 0,
                    "sampling": 0.1,
                },
                "image": {"shape": [64, 64], "pixel_size": 0.1},
                "corruption": {"dose": {"min": 1e4, "max": 1e6, "log": True}},
                "labels": {"classes": ["anion_vacancy", "dopant"], "radius": 0.6},
                "size": size,
                "images_per_structure": 8,
                "shard_size": 16,
            }
        },
    }
    if train is not None:
        data["train"] = train
    return validate_study_data(data)
