"""The trial grid of a study's ``train`` section, data splits and trial keys.

Pure functions of the study (no Ray, no torch): the driver expands the grid, checks
it and derives every trial's key before anything starts, so a bad grid is a one-line
error and a re-run finds the same keys.

Keys and seeds
--------------
A trial's *resolved config* is everything that determines its result: model, data
(names and content hashes), classes, training settings, repeat index and seed. Its key
is the first 12 hex digits of the SHA-256 of that config as canonical JSON, so the key
is the same in every run of the same study and changes when anything that matters
changes (editing ``epochs`` gives new keys, not a stale match).

Repeat ``r`` uses the same seed in every condition (common random numbers): the
training subset, initialisation and augmentation of repeat ``r`` differ between
conditions only through the condition itself, so condition differences can be tested
pairwise, and smaller training subsets are nested in larger ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hpcbench import __version__
from hpcbench.seeding import Stream, seed_int, seed_sequence, stream_rng
from hpcbench.study import DatasetSpec, Study, dataset_classes, dataset_hash

__all__ = [
    "GridError",
    "Split",
    "TrialSpec",
    "condition_label",
    "dataset_info",
    "expand_trials",
    "split_dataset",
    "split_samples",
    "trial_key",
    "unwrap",
]

SPLITS = ("train", "validation", "test")


class GridError(ValueError):
    """The train section cannot be expanded into trials (one line, names the problem)."""


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

    Each structure (``images_per_structure`` consecutive samples) goes wholly to one
    split, drawn from the study seed and the dataset name only. Validation and test
    get ``round(fraction · structures)`` structures each, at least one.

    Parameters
    ----------
    seed : int
        The study's root seed.
    name : str
        Dataset name.
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


def split_dataset(study: Study, name: str) -> Split:
    """:func:`split_samples` of dataset ``name`` with the study's split fractions."""
    if study.train is None:
        raise GridError(f"study {study.name} has no train section")
    spec: DatasetSpec = study.datasets[name]
    return split_samples(
        study.seed,
        name,
        size=spec.size,
        images_per_structure=spec.images_per_structure,
        validation=study.train.split.validation,
        test=study.train.split.test,
    )


def dataset_info(study: Study, name: str) -> dict[str, Any]:
    """What a trial needs to know of a dataset: size, layout, classes, label radius, hash.

    Splits are made where they are used: a test set that no trial trains on needs none.
    """
    spec = study.datasets[name]
    return {
        "size": spec.size,
        "images_per_structure": spec.images_per_structure,
        "classes": dataset_classes(spec),
        "radius": spec.labels.radius,
        "hash": dataset_hash(study, name),
    }


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the grid.

    Attributes
    ----------
    key : str
        12 hex digits, deterministic from ``config`` (see the module notes).
    condition : dict
        Axis name → value for the axes the study declares (the ablation condition).
    repeat : int
        Repeat index, ``0 ≤ repeat < repeats``.
    config : dict
        The resolved, JSON-serialisable trial config (what the trial runs).
    """

    key: str
    condition: dict[str, Any]
    repeat: int
    config: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        """The condition as ``axis=value`` words (``all`` without axes)."""
        return condition_label(self.condition)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "+".join(_format_value(v) for v in value)
    return "none" if value is None else str(value)


def condition_label(condition: Mapping[str, Any]) -> str:
    """``model=fcn dose=1e+04 train_size=64``; ``all`` for an empty condition."""
    if not condition:
        return "all"
    return " ".join(f"{axis}={_format_value(value)}" for axis, value in condition.items())


def trial_key(config: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``config`` as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trial_seed(study: Study, repeat: int) -> int:
    """The seed of repeat ``repeat``, shared by every condition (see the module notes)."""
    return seed_int(seed_sequence(study.seed, "train", repeat, Stream.TRAINING))


def expand_trials(study: Study) -> list[TrialSpec]:
    """Every trial of the study's train section: the product of its axes × repeats.

    Parameters
    ----------
    study : Study
        A validated study with a ``train`` section.

    Returns
    -------
    list of TrialSpec
        Conditions in axis order (the first axis varies slowest), repeats innermost.

    Raises
    ------
    GridError
        No train section, a ``train_size`` larger than a training split, a dataset too
        small to split, or two trials that would be identical.
    """
    train = study.train
    if train is None:
        raise GridError(f"study {study.name} has no train section")
    axes = train.axes
    names = axes.names()
    values = [list(getattr(axes, name)) for name in names]
    splits: dict[str, Split] = {}

    def split_of(name: str) -> Split:
        if name not in splits:
            splits[name] = split_dataset(study, name)
        return splits[name]

    default_model = train.model or next(iter(train.models))
    default_dataset = train.dataset or next(iter(study.datasets))
    # A test set no trial trains on is scored on all its images; one that some trial
    # trains on is scored on its test split by every trial (no leakage, same images).
    trained = set(axes.dataset or [default_dataset])
    trials: list[TrialSpec] = []
    seen: dict[str, str] = {}
    for combination in itertools.product(*values):
        condition = dict(zip(names, combination, strict=True))
        model_name = condition.get("model", default_model)
        dataset = condition.get("dataset", default_dataset)
        spec = study.datasets[dataset]
        classes = condition.get("classes", train.classes) or dataset_classes(spec)
        available = split_of(dataset).train.size
        train_size = condition.get("train_size", train.train_size)
        if train_size is not None and train_size > available:
            raise GridError(
                f"train_size {train_size} exceeds the {available} training images of "
                f"dataset {dataset} (size {spec.size}, split validation "
                f"{train.split.validation:g}, test {train.split.test:g})"
            )
        test_sets = list(dict.fromkeys([dataset, *train.test_sets]))
        base: dict[str, Any] = {
            "study": study.name,
            "study_seed": study.seed,
            "model_name": model_name,
            "model": train.models[model_name].model_dump(mode="json"),
            "dataset": dataset,
            "classes": list(classes),
            "train_size": train_size if train_size is not None else available,
            "dose": condition.get("dose", train.dose),
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "learning_rate": condition.get("learning_rate", train.learning_rate),
            "lr_decay": train.lr_decay,
            "loss": train.loss.model_dump(mode="json"),
            "select": train.select,
            "augment": train.augment.model_dump(mode="json"),
            "split": train.split.model_dump(mode="json"),
            "test_sets": test_sets,
            "detection": train.detection.model_dump(mode="json"),
            "datasets": {
                name: {**dataset_info(study, name), "test_split": name in trained}
                for name in test_sets
            },
            "version": __version__,
        }
        for name in test_sets:
            if name in trained:
                split_of(name)
        for repeat in range(train.repeats):
            config = {**base, "repeat": repeat, "seed": trial_seed(study, repeat)}
            key = trial_key(config)
            label = condition_label(condition)
            if key in seen:
                raise GridError(
                    f"conditions {seen[key]!r} and {label!r} give identical trials "
                    "(an axis repeats a value or restates a default)"
                )
            seen[key] = label
            trials.append(TrialSpec(key=key, condition=condition, repeat=repeat, config=config))
    return trials


def unwrap(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Tune trial's config without the grid-search wrapper key ``_``."""
    inner = config.get("_", config)
    return dict(inner)


def grid_key(trials: Sequence[TrialSpec]) -> str:
    """12 hex digits identifying a set of trials (their sorted keys)."""
    digest = hashlib.sha256(",".join(sorted(t.key for t in trials)).encode())
    return digest.hexdigest()[:12]
