"""Training, validation and test splits of a dataset, by structure.

Each structure (``images_per_structure`` consecutive samples) goes wholly to one split,
drawn from the study seed and the dataset name only — never from the trial — so the
test split never shares a supercell with training and every trial of a study sees the
same split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hpcbench.seeding import Stream, stream_rng

__all__ = ["SPLITS", "GridError", "Split", "split_samples"]

SPLITS = ("train", "validation", "test")


class GridError(ValueError):
    """A study cannot be planned: a grid or dataset problem (one line, names the problem)."""


@dataclass(frozen=True)
class Split:
    """Sample ids of a dataset's training, validation and test images (sorted)."""

    train: NDArray[np.int64]
    validation: NDArray[np.int64]
    test: NDArray[np.int64]

    def __getitem__(self, name: str) -> NDArray[np.int64]:
        if name not in SPLITS:
            raise KeyError(name)
        result: NDArray[np.int64] = getattr(self, name)
        return result


def split_samples(
    seed: int, name: str, *, size: int, images_per_structure: int, validation: float, test: float
) -> Split:
    """Split a dataset's samples by structure into training, validation and test.

    Validation and test get ``round(fraction · structures)`` structures each, at least
    one.

    Parameters
    ----------
    seed : int
        The study's root seed.
    name : str
        Dataset name (a translated dataset's source: the split is its source's).
    size, images_per_structure : int
        The dataset's size and images per structure.
    validation, test : float
        Fractions of the structures.

    Raises
    ------
    GridError
        If the dataset has too few structures for three non-empty splits.
    """
    structures = math.ceil(size / images_per_structure)
    n_val = max(1, round(validation * structures))
    n_test = max(1, round(test * structures))
    if n_val + n_test >= structures:
        raise GridError(
            f"dataset {name} has {structures} structures, too few to split into "
            f"training, validation ({n_val}) and test ({n_test}); raise its size"
        )
    order = stream_rng(seed, name, 0, Stream.SPLIT).permutation(structures)
    role = np.zeros(structures, dtype=np.int8)  # 0 train, 1 validation, 2 test
    role[order[:n_val]] = 1
    role[order[n_val : n_val + n_test]] = 2
    ids = np.arange(size, dtype=np.int64)
    sample_role = role[ids // images_per_structure]
    return Split(
        train=ids[sample_role == 0], validation=ids[sample_role == 1], test=ids[sample_role == 2]
    )
