"""Shared fixtures: one small real WSe2 dataset per session (written without Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from train_helpers import write_dataset, wse2_study

from hpcbench.study import Study

TRAIN = {
    "models": {
        "fcn": {"architecture": "fcn", "width": 8, "depth": 3},
        "unet": {"architecture": "unet", "width": 4, "depth": 2},
    },
    "epochs": 2,
    "batch_size": 8,
    "augment": {"crop": [32, 32]},
    "repeats": 1,
}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An output root holding the ``tiny`` study's 48-image WSe2 dataset."""
    root = tmp_path_factory.mktemp("tiny-root")
    write_dataset(wse2_study(TRAIN), "wse2", root)
    yield root


@pytest.fixture
def tiny_study() -> Study:
    """The study whose dataset ``tiny_root`` holds (2 epochs, FCN, 32 px crops)."""
    return wse2_study(TRAIN)
