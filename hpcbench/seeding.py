"""Seed derivation: every random draw comes from the study's root seed and an item's identity.

A draw never depends on the order work happens to run in, so a shard regenerated on
another node gives the same bytes (DESIGN.md, rule 2). Each sample owns one
:class:`numpy.random.SeedSequence` built from ``[root_seed, dataset_key, index]``; the
independent purposes a sample needs randomness for (its structure, the simulation's
frozen phonons, the crop, the corruption) are separate *streams*, i.e. children with a
fixed ``spawn_key``, so adding draws to one stream never shifts another.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

import numpy as np

__all__ = ["Stream", "dataset_key", "seed_int", "seed_sequence", "stream_rng"]


class Stream(IntEnum):
    """Independent random streams of one sample (the ``spawn_key`` of its child sequence)."""

    STRUCTURE = 0
    SIMULATION = 1
    CROP = 2
    CORRUPTION = 3
    PARAMETERS = 4
    SPLIT = 5
    TRAINING = 6
    IMAGING = 7


def dataset_key(name: str) -> int:
    """Stable 64-bit integer key of a dataset name.

    Parameters
    ----------
    name : str
        Dataset name as written in the study file.

    Returns
    -------
    int
        First 8 bytes of the name's SHA-256, as an unsigned integer. Python's ``hash``
        is salted per process and must not be used.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def seed_sequence(
    root_seed: int, dataset: str, index: int, stream: Stream | None = None
) -> np.random.SeedSequence:
    """Seed sequence of item ``index`` of ``dataset``, optionally one of its streams.

    Parameters
    ----------
    root_seed : int
        The study's root seed (``>= 0``).
    dataset : str
        Dataset name.
    index : int
        Item index (a sample index, or a structure index for the structure stream).
    stream : Stream, optional
        Which independent stream; ``None`` gives the parent sequence.
    """
    if root_seed < 0 or index < 0:
        raise ValueError(f"seeds and indices must be >= 0, got {root_seed=}, {index=}")
    entropy = [root_seed, dataset_key(dataset), index]
    if stream is None:
        return np.random.SeedSequence(entropy)
    return np.random.SeedSequence(entropy, spawn_key=(int(stream),))


def stream_rng(root_seed: int, dataset: str, index: int, stream: Stream) -> np.random.Generator:
    """Generator for one stream of one item (see :func:`seed_sequence`)."""
    return np.random.default_rng(seed_sequence(root_seed, dataset, index, stream))


def seed_int(sequence: np.random.SeedSequence) -> int:
    """A 63-bit integer drawn from ``sequence``, to store in a Parquet ``int64`` column.

    ``numpy.random.default_rng(seed_int(s))`` is then a reproducible generator that a
    later stage (on-the-fly corruption during training) can rebuild from the column alone.
    """
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))
