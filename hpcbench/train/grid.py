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
from hpcbench.study import DatasetSpec, SplitSpec, Study, dataset_classes, dataset_hash

__all__ = [
    "GridError",
    "Split",
    "TrialSpec",
    "condition_label",
    "config_split",
    "dataset_info",
    "expand_cyclegan_trials",
    "expand_trials",
    "split_dataset",
    "split_samples",
    "translation_trial",
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
    """:func:`split_samples` of dataset ``name`` with the study's split fractions.

    A translated dataset is split like its source (same samples, same roles); an
    imported one by source image (its patches stay together); a study without a
    ``train`` section uses the default fractions.

    Raises
    ------
    GridError
        Too few structures (images) to split, or an imported dataset whose images gave
        different numbers of patches.
    """
    fractions = study.train.split if study.train is not None else SplitSpec()
    if name in study.imports:
        info = dataset_info(study, name)
        if info["images_per_structure"] is None:
            raise GridError(
                f"imported dataset {name} cannot be split by image: its images gave "
                "different numbers of patches (import images of one size, or set "
                "target_pixel_size/patch so they tile alike)"
            )
        size, per_structure = int(info["size"]), int(info["images_per_structure"])
    else:
        spec: DatasetSpec = study.dataset_spec(name)
        size, per_structure = spec.size, spec.images_per_structure
    return split_samples(
        study.seed,
        study.split_name(name),
        size=size,
        images_per_structure=per_structure,
        validation=fractions.validation,
        test=fractions.test,
    )


def config_split(config: Mapping[str, Any], name: str) -> Split:
    """The split of dataset ``name`` as a resolved trial config describes it.

    Trials run from their config alone (no study); a translated dataset's entry names
    the dataset its split is drawn from (``split_name``).
    """
    info = config["datasets"][name]
    fractions = config["split"]
    return split_samples(
        int(config["study_seed"]),
        str(info.get("split_name", name)),
        size=int(info["size"]),
        images_per_structure=int(info["images_per_structure"]),
        validation=float(fractions["validation"]),
        test=float(fractions["test"]),
    )


def dataset_info(study: Study, name: str) -> dict[str, Any]:
    """What a trial needs to know of a dataset: size, layout, classes, label radius, hash.

    Splits are made where they are used: a test set that no trial trains on needs none.
    A translated dataset also names the dataset its split is drawn from
    (``split_name``, its source). An imported dataset's come from its import record
    (read from its source files, as its hash is): ``images_per_structure`` is the
    number of patches per source image (consecutive rows), ``None`` if that differs
    between images.

    Raises
    ------
    GridError
        If an imported dataset's files cannot be read.
    """
    if name in study.imports:
        return _imported_info(study, name)
    spec = study.dataset_spec(name)
    info: dict[str, Any] = {
        "size": spec.size,
        "images_per_structure": spec.images_per_structure,
        "classes": dataset_classes(spec),
        "radius": spec.labels.radius,
        "hash": dataset_hash(study, name),
    }
    if name in study.translate:
        info["split_name"] = study.split_name(name)
    return info


def _imported_info(study: Study, name: str) -> dict[str, Any]:
    from hpcbench.datasets.importer import ImageImportError
    from hpcbench.study import import_record

    try:
        record = import_record(study, name)
    except (ImageImportError, FileNotFoundError) as exc:
        first = str(exc).splitlines()[0]
        raise GridError(f"imported dataset {name}: {first}") from None
    counts = set(record.rows_per_image)
    labels = record.spec["labels"]
    return {
        "size": record.size,
        "images_per_structure": counts.pop() if len(counts) == 1 else None,
        "classes": list(labels["classes"]),
        "radius": float(labels["radius"]),
        "hash": record.hash,
    }


def _check_imported_classes(study: Study, name: str, classes: Sequence[str]) -> None:
    """An imported test set must label every class a trial scores (else a one-line error)."""
    labelled = list(study.imports[name].classes)
    missing = [c for c in classes if c not in labelled]
    if missing:
        raise GridError(
            f"test set {name} is imported with classes {', '.join(labelled)}; it has no "
            f"{', '.join(missing)} labels to score (set imports.{name}.classes to the "
            "trial's class names, or train.classes to classes it labels)"
        )


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
    # The CycleGAN's datasets count as trained on: it sees their training splits.
    trained = set(axes.dataset or [default_dataset]) | _cyclegan_datasets(study)
    trials: list[TrialSpec] = []
    seen: dict[str, str] = {}
    for combination in itertools.product(*values):
        condition = dict(zip(names, combination, strict=True))
        model_name = condition.get("model", default_model)
        dataset = condition.get("dataset", default_dataset)
        spec = study.dataset_spec(dataset)
        classes = condition.get("classes", train.classes) or dataset_classes(spec)
        available = split_of(dataset).train.size
        train_size = condition.get("train_size", train.train_size)
        if train_size is not None and train_size > available:
            raise GridError(
                f"train_size {train_size} exceeds the {available} training images of "
                f"dataset {dataset} (size {spec.size}, split validation "
                f"{train.split.validation:g}, test {train.split.test:g})"
            )
        if dataset in study.translate and condition.get("dose", train.dose) is not None:
            raise GridError(
                f"dataset {dataset} is translated by a CycleGAN: it has no clean images "
                "to re-noise at a trial dose (use dose null for it)"
            )
        test_sets = list(dict.fromkeys([dataset, *train.test_sets]))
        for name in test_sets:
            if name in study.imports:
                _check_imported_classes(study, name, classes)
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


# ------------------------------------------------------------------------- CycleGAN


def _cyclegan_datasets(study: Study) -> set[str]:
    """The datasets whose training splits the CycleGAN trains on (none without one)."""
    if study.cyclegan is None:
        return set()
    return {study.cyclegan.source, study.cyclegan.target}


def _training_count(study: Study, name: str, requested: int | None, field: str) -> int:
    available = int(split_dataset(study, name).train.size)
    if requested is None:
        return available
    if requested > available:
        size = dataset_info(study, name)["size"]
        raise GridError(
            f"cyclegan.{field} {requested} exceeds the {available} training images of "
            f"dataset {name} (size {size})"
        )
    return requested


def expand_cyclegan_trials(study: Study) -> list[TrialSpec]:
    """Every CycleGAN trial of the study: its ``model`` axis × ``repeats``.

    The resolved config (the contract of :class:`hpcbench.train.cyclegan.CycleGANTrainer`)
    holds ``task: cyclegan``, the model variant, both datasets (``dataset`` the simulated
    source, ``target`` the experiment-like domain), the split fractions, training
    settings, FID settings, the repeat and its seed. Repeat ``r`` has the seed of the
    segmentation trials' repeat ``r``.

    Returns
    -------
    list of TrialSpec
        Empty without a ``cyclegan`` section.

    Raises
    ------
    GridError
        A ``train_size``/``target_size`` above a training split, or a dataset too
        small to split.
    """
    spec = study.cyclegan
    if spec is None:
        return []
    fractions = study.train.split if study.train is not None else SplitSpec()
    names = spec.axes.names()
    values = [list(getattr(spec.axes, name)) for name in names]
    base: dict[str, Any] = {
        "task": "cyclegan",
        "study": study.name,
        "study_seed": study.seed,
        "dataset": spec.source,
        "target": spec.target,
        "datasets": {
            name: {**dataset_info(study, name), "test_split": True}
            for name in (spec.source, spec.target)
        },
        "split": fractions.model_dump(mode="json"),
        "train_size": _training_count(study, spec.source, spec.train_size, "train_size"),
        "target_size": _training_count(study, spec.target, spec.target_size, "target_size"),
        "epochs": spec.epochs,
        "epochs_decay": spec.epochs_decay,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "betas": list(spec.betas),
        "patch_size": spec.patch_size,
        "sim_noise_std": spec.sim_noise_std,
        "saturation": spec.saturation,
        "augment": spec.augment.model_dump(mode="json"),
        "fid": {**spec.fid.model_dump(mode="json"), "weights": None},
        "select": spec.select,
        "version": __version__,
    }
    trials: list[TrialSpec] = []
    for combination in itertools.product(*values):
        condition = dict(zip(names, combination, strict=True))
        model_name = condition.get("model", spec.default_model())
        for repeat in range(spec.repeats):
            config = {
                **base,
                "model_name": model_name,
                "model": spec.models[model_name].model_dump(mode="json"),
                "repeat": repeat,
                "seed": trial_seed(study, repeat),
            }
            trials.append(
                TrialSpec(key=trial_key(config), condition=condition, repeat=repeat, config=config)
            )
    return trials


def translation_trial(study: Study, name: str) -> TrialSpec:
    """The CycleGAN trial whose generator F makes translated dataset ``name``."""
    translation = study.translate[name]
    assert study.cyclegan is not None  # the study validator guarantees it
    model = translation.cyclegan or study.cyclegan.default_model()
    for trial in expand_cyclegan_trials(study):
        if trial.config["model_name"] == model and trial.repeat == translation.repeat:
            return trial
    raise GridError(
        f"translate.{name}: no CycleGAN trial of model {model}, repeat {translation.repeat}"
    )
