"""Typed trial configs, their keys and seeds.

A trial's config is everything that determines its result: model, data (names and
content hashes), classes, training settings, repeat index and seed. It is a frozen
pydantic model — :class:`SegmentationTrial` or :class:`CycleGANTrial` — that the
trainers read by attribute; its JSON form (:meth:`~TrialConfig.to_config`) is what Tune
carries, what MLflow logs as params and what the trial's key hashes. The JSON form is
exactly the dict hpcbench built by hand before these models existed, so every trial
key of an existing study is unchanged (``tests/test_identities.py`` pins them).

Keys and seeds
--------------
A trial's key is the first 12 hex digits of the SHA-256 of its config as canonical
JSON, so the key is the same in every run of the same study and changes when anything
that matters changes (editing ``epochs`` gives new keys, not a stale match).

Repeat ``r`` uses the same seed in every condition (common random numbers): the
training subset, initialisation and augmentation of repeat ``r`` differ between
conditions only through the condition itself, so condition differences can be tested
pairwise, and smaller training subsets are nested in larger ones.

Adding a hyper-parameter is one field here (with its default in the study spec it
comes from) and the code that uses it; see ``docs/DESIGN.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from hpcbench.plan.splits import Split, split_samples
from hpcbench.seeding import Stream, seed_int, seed_sequence
from hpcbench.study import (
    CycleGANConfig,
    CycleGANSettings,
    FIDSpec,
    ModelSpec,
    SegmentationSettings,
    SplitSpec,
)

__all__ = [
    "CycleGANTrial",
    "DatasetInfo",
    "FIDSettings",
    "SegmentationTrial",
    "TrialConfig",
    "TrialSpec",
    "condition_label",
    "grid_key",
    "parse_trial",
    "trial_key",
    "trial_seed",
]


class DatasetInfo(BaseModel):
    """What a trial knows of a dataset: size, layout, classes, label radius, hash.

    ``images_per_structure`` is ``None`` for an imported dataset whose images gave
    different numbers of patches (it cannot be split by image). ``split_name`` names
    the dataset a translated dataset's split is drawn from (its source); it is left out
    of the JSON form when ``None``. ``test_split``: scored on its test split (some
    trial or the CycleGAN trains on it) rather than on all its images.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int
    images_per_structure: int | None
    classes: list[str]
    radius: float  # [Å]
    hash: str
    split_name: str | None = None
    test_split: bool = True

    @model_serializer(mode="wrap")
    def _without_absent_split_name(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if data.get("split_name") is None:
            data.pop("split_name", None)
        return data


# Fields added after trial keys were first published, with their defaults: left out of
# the JSON form (and so of the key) while they hold them, so every trial made before they
# existed keeps its key and its MLflow run.
# A dotted name is a field of a nested section.
UNKEYED_DEFAULTS: dict[str, Any] = {
    "precision": "fp32",
    "loss.class_weights": "none",
    "fidelity": None,
}


class TrialConfig(BaseModel):
    """Base of the typed trial configs: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study: str
    study_seed: int
    dataset: str
    datasets: dict[str, DatasetInfo]
    split: SplitSpec
    train_size: int
    epochs: int
    batch_size: int
    learning_rate: float
    version: str
    model_name: str
    repeat: int
    seed: int

    def to_config(self) -> dict[str, Any]:
        """The JSON form: what Tune carries, MLflow logs and :attr:`key` hashes.

        Fields of :data:`UNKEYED_DEFAULTS` are left out while they hold their default.
        """
        config = self.model_dump(mode="json")
        for name, default in UNKEYED_DEFAULTS.items():
            *parents, field = name.split(".")
            section: Any = config
            for parent in parents:
                section = section.get(parent) if isinstance(section, dict) else None
            if isinstance(section, dict) and field in section and section[field] == default:
                del section[field]
        return config

    @property
    def key(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`to_config` as canonical JSON."""
        return trial_key(self.to_config())

    def split_of(self, name: str) -> Split:
        """The train/validation/test split of dataset ``name`` (a translation: its source's)."""
        info = self.datasets[name]
        if info.images_per_structure is None:
            raise ValueError(f"dataset {name} has no uniform layout to split by")
        return split_samples(
            self.study_seed,
            info.split_name or name,
            size=info.size,
            images_per_structure=info.images_per_structure,
            validation=self.split.validation,
            test=self.split.test,
        )


class SegmentationTrial(TrialConfig, SegmentationSettings):
    """One segmentation trial (:class:`hpcbench.train.segmentation.SegmentationTrainer`).

    Attributes are the study's ``train`` settings (every field of
    :class:`~hpcbench.study.SegmentationSettings`) with the condition's values in place;
    ``classes[i]`` is output ``i + 1`` of the network (0 is background); ``test_sets``
    are scored after training (the training dataset first).
    """

    model: ModelSpec
    classes: list[str]
    dose: float | None  # [e/Å²]; None: the dataset's own noisy images
    fidelity: str | None = None  # HRTEM training frames of this fidelity; None: own
    test_sets: list[str]


class FIDSettings(FIDSpec):
    """The CycleGAN's FID settings as a trial holds them.

    ``weights`` is always ``None``: the Inception weights file is a runtime setting
    (given to the trainer), not part of the trial's key; the field keeps the keys of
    trials made before that was so.
    """

    weights: None = None


class CycleGANTrial(TrialConfig, CycleGANSettings):
    """One CycleGAN trial (:class:`hpcbench.train.cyclegan.CycleGANTrainer`).

    Attributes are the study's ``cyclegan`` settings (every field of
    :class:`~hpcbench.study.CycleGANSettings`); ``dataset`` is the simulated source
    (domain Y), ``target`` the experiment-like domain X; ``train_size``/``target_size``
    the training images of each.
    """

    task: Literal["cyclegan"] = "cyclegan"
    model: CycleGANConfig
    target: str
    target_size: int
    fid: FIDSettings


Trial = SegmentationTrial | CycleGANTrial


def parse_trial(config: Mapping[str, Any]) -> SegmentationTrial | CycleGANTrial:
    """The typed trial of a JSON config (:meth:`TrialConfig.to_config`)."""
    if config.get("task") == "cyclegan":
        return CycleGANTrial.model_validate(config)
    return SegmentationTrial.model_validate(config)


def trial_key(config: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``config`` as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trial_seed(study_seed: int, repeat: int) -> int:
    """The seed of repeat ``repeat``, shared by every condition (see the module notes)."""
    return seed_int(seed_sequence(study_seed, "train", repeat, Stream.TRAINING))


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


@dataclass(frozen=True)
class TrialSpec:
    """One trial of a grid.

    Attributes
    ----------
    key : str
        12 hex digits, deterministic from the trial (see the module notes).
    condition : dict
        Axis name → value for the axes the study declares (the ablation condition).
    repeat : int
        Repeat index, ``0 ≤ repeat < repeats``.
    trial : SegmentationTrial or CycleGANTrial
        What the trial runs.
    """

    key: str
    condition: dict[str, Any]
    repeat: int
    trial: SegmentationTrial | CycleGANTrial

    @property
    def label(self) -> str:
        """The condition as ``axis=value`` words (``all`` without axes)."""
        return condition_label(self.condition)

    @property
    def config(self) -> dict[str, Any]:
        """The trial's JSON form (:meth:`TrialConfig.to_config`)."""
        return self.trial.to_config()


def grid_key(trials: Sequence[TrialSpec]) -> str:
    """12 hex digits identifying a set of trials (their sorted keys)."""
    digest = hashlib.sha256(",".join(sorted(t.key for t in trials)).encode())
    return digest.hexdigest()[:12]
