"""The plan of a study: its datasets with hashes and directories, and its trial grids.

:func:`make_plan` turns a validated :class:`~hpcbench.study.Study` into a :class:`Plan`,
what ``hpcbench validate`` prints and every stage consumes: the datasets (simulated,
imported, translated) with their hashes and directories, the CycleGAN trials, the
CycleGAN trial behind each translation, and the segmentation trials. Each is derived
once, in dependency order (a translated dataset's hash needs its CycleGAN trial's key,
whose config needs the hashes of the datasets it trains on), and cached; nothing here
runs Ray, torch or MLflow, so a bad grid is a one-line :class:`GridError` before
anything starts and a re-run finds the same keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from hpcbench import __version__
from hpcbench.datasets.importer import ImageImportError, ImportRecord
from hpcbench.datasets.importer import import_record as read_import_record
from hpcbench.datasets.manifest import simulated_hash, translated_hash
from hpcbench.datasets.schema import DATA_FORMAT_VERSION
from hpcbench.plan.splits import GridError, Split, split_samples
from hpcbench.plan.trials import (
    CycleGANTrial,
    DatasetInfo,
    FIDSettings,
    SegmentationTrial,
    TrialSpec,
    condition_label,
    trial_seed,
)
from hpcbench.study import (
    CycleGANSettings,
    SegmentationSettings,
    Spec,
    SplitSpec,
    Study,
    dataset_classes,
)

__all__ = [
    "DatasetKind",
    "Plan",
    "PlannedDataset",
    "dataset_dir",
    "dataset_hash",
    "expand_cyclegan_trials",
    "expand_trials",
    "make_plan",
    "output_dir",
]

DatasetKind = Literal["simulated", "imported", "translated"]


@dataclass(frozen=True)
class PlannedDataset:
    """A dataset of the plan.

    Attributes
    ----------
    name : str
        Its name in the study.
    kind : {"simulated", "imported", "translated"}
        Made by ``generate``, imported by ``generate``, or made by the train stage.
    hash : str
        12 hex digits of what determines its bytes (names its directory).
    info : DatasetInfo
        What trials know of it (size, layout, classes, label radius, hash).
    """

    name: str
    kind: DatasetKind
    hash: str
    info: DatasetInfo

    @property
    def dirname(self) -> str:
        """``<name>-<hash>``."""
        return f"{self.name}-{self.hash}"


def _settings(spec: Spec, settings: type[Spec]) -> dict[str, Any]:
    """The values of ``spec``'s fields that ``settings`` declares (trials carry them as is)."""
    return {name: getattr(spec, name) for name in settings.model_fields}


def make_plan(study: Study) -> Plan:
    """The plan of a validated study (derived lazily, each part once)."""
    return Plan(study)


class Plan:
    """What a study means: datasets with hashes and directories, trials with keys.

    Parameters
    ----------
    study : Study
        A validated study.

    Raises
    ------
    GridError
        From the attributes that derive trials or read imported files: a too-large
        ``train_size``, a dataset too small to split, an unreadable import, two
        identical trials.
    """

    def __init__(self, study: Study) -> None:
        self.study = study
        self._datasets: dict[str, PlannedDataset] = {}
        self._splits: dict[str, Split] = {}

    # ----------------------------------------------------------------- layout

    def output_dir(self, root: str | Path) -> Path:
        """The study's output directory under ``root``: ``root/<output or name>``."""
        study = self.study
        return Path(root) / (study.output if study.output is not None else study.name)

    def dataset_dir(self, root: str | Path, name: str) -> Path:
        """``<output>/datasets/<name>-<hash12>`` for dataset ``name``."""
        return self.output_dir(root) / "datasets" / self.dataset(name).dirname

    def tune_dir(self, root: str | Path) -> Path:
        """``<output>/tune``: the Ray Tune experiments of the study's sweeps."""
        return self.output_dir(root) / "tune"

    # --------------------------------------------------------------- datasets

    @property
    def dataset_names(self) -> list[str]:
        """Simulated, then translated, then imported datasets, in declaration order."""
        return self.study.dataset_names()

    def datasets(self) -> list[PlannedDataset]:
        """Every dataset of the study (reads imported files; derives CycleGAN trials)."""
        return [self.dataset(name) for name in self.dataset_names]

    def dataset(self, name: str) -> PlannedDataset:
        """Dataset ``name`` of the study.

        Raises
        ------
        KeyError
            If the study declares no dataset ``name``.
        GridError
            If an imported dataset's files cannot be read, or (translated) its
            CycleGAN trial cannot be planned.
        """
        if name not in self._datasets:
            self._datasets[name] = self._plan_dataset(name)
        return self._datasets[name]

    def dataset_hash(self, name: str) -> str:
        """The hash of dataset ``name`` (see :mod:`hpcbench.datasets.manifest`)."""
        return self.dataset(name).hash

    def import_record(self, name: str) -> ImportRecord:
        """The import record of imported dataset ``name`` (reads and hashes its files, cached).

        Raises
        ------
        hpcbench.datasets.importer.ImageImportError, FileNotFoundError
            If the files cannot be imported.
        """
        spec = self.study.imports[name]
        return read_import_record(spec.path, name=name, **spec.importer_arguments())

    def translation_identity(self, name: str) -> dict[str, Any]:
        """What determines translated dataset ``name``'s bytes (its hash hashes this).

        The data format, the name, the translation spec, the source dataset's hash and
        the key of the CycleGAN trial whose generator translates (that key covers the
        CycleGAN's config, both datasets and its seed).
        """
        spec = self.study.translate[name]
        return {
            "format": DATA_FORMAT_VERSION,
            "kind": "translated",
            "name": name,
            "translate": spec.model_dump(mode="json"),
            "source_hash": self.dataset_hash(spec.source),
            "cyclegan_key": self.translation_trial(name).key,
        }

    def _plan_dataset(self, name: str) -> PlannedDataset:
        study = self.study
        if name in study.imports:
            try:
                record = self.import_record(name)
            except (ImageImportError, FileNotFoundError) as exc:
                first = str(exc).splitlines()[0]
                raise GridError(f"imported dataset {name}: {first}") from None
            counts = set(record.rows_per_image)
            labels = record.spec["labels"]
            info = DatasetInfo(
                size=record.size,
                images_per_structure=counts.pop() if len(counts) == 1 else None,
                classes=list(labels["classes"]),
                radius=float(labels["radius"]),
                hash=record.hash,
            )
            return PlannedDataset(name, "imported", record.hash, info)
        spec = study.dataset_spec(name)  # a translated dataset's is its source's
        if name in study.translate:
            kind: DatasetKind = "translated"
            digest = translated_hash(self.translation_identity(name))
        elif name in study.datasets:
            kind, digest = "simulated", simulated_hash(study.seed, name, spec)
        else:
            raise KeyError(f"dataset {name} is not declared")
        info = DatasetInfo(
            size=spec.size,
            images_per_structure=spec.images_per_structure,
            classes=dataset_classes(spec),
            radius=spec.labels.radius,
            hash=digest,
            split_name=study.split_name(name) if kind == "translated" else None,
        )
        return PlannedDataset(name, kind, digest, info)

    # ----------------------------------------------------------------- splits

    @property
    def split_fractions(self) -> SplitSpec:
        """The study's split fractions (the defaults without a ``train`` section)."""
        return self.study.train.split if self.study.train is not None else SplitSpec()

    def split(self, name: str) -> Split:
        """The training/validation/test split of dataset ``name`` (cached).

        A translated dataset is split like its source (same samples, same roles); an
        imported one by source image (its patches stay together).

        Raises
        ------
        GridError
            Too few structures (images) to split, or an imported dataset whose images
            gave different numbers of patches.
        """
        if name not in self._splits:
            info = self.dataset(name).info
            if info.images_per_structure is None:
                raise GridError(
                    f"imported dataset {name} cannot be split by image: its images gave "
                    "different numbers of patches (import images of one size, or set "
                    "target_pixel_size/patch so they tile alike)"
                )
            fractions = self.split_fractions
            self._splits[name] = split_samples(
                self.study.seed,
                info.split_name or name,
                size=info.size,
                images_per_structure=info.images_per_structure,
                validation=fractions.validation,
                test=fractions.test,
            )
        return self._splits[name]

    # --------------------------------------------------------------- CycleGAN

    def _cyclegan_datasets(self) -> set[str]:
        """The datasets whose training splits the CycleGAN trains on (none without one)."""
        spec = self.study.cyclegan
        return set() if spec is None else {spec.source, spec.target}

    def _training_count(self, name: str, requested: int | None, field: str) -> int:
        available = int(self.split(name).train.size)
        if requested is None:
            return available
        if requested > available:
            size = self.dataset(name).info.size
            raise GridError(
                f"cyclegan.{field} {requested} exceeds the {available} training images of "
                f"dataset {name} (size {size})"
            )
        return requested

    @cached_property
    def cyclegan_trials(self) -> list[TrialSpec]:
        """Every CycleGAN trial: the ``cyclegan`` section's ``model`` axis × ``repeats``.

        Empty without a ``cyclegan`` section. Repeat ``r`` has the seed of the
        segmentation trials' repeat ``r``.
        """
        spec = self.study.cyclegan
        if spec is None:
            return []
        study = self.study
        names = spec.axes.names()
        values = [list(getattr(spec.axes, name)) for name in names]
        datasets = {
            name: self.dataset(name).info.model_copy(update={"test_split": True})
            for name in (spec.source, spec.target)
        }
        train_size = self._training_count(spec.source, spec.train_size, "train_size")
        target_size = self._training_count(spec.target, spec.target_size, "target_size")
        trials: list[TrialSpec] = []
        for combination in itertools.product(*values):
            condition = dict(zip(names, combination, strict=True))
            model_name = condition.get("model", spec.default_model())
            for repeat in range(spec.repeats):
                trial = CycleGANTrial(
                    **_settings(spec, CycleGANSettings),
                    study=study.name,
                    study_seed=study.seed,
                    dataset=spec.source,
                    target=spec.target,
                    datasets=datasets,
                    split=self.split_fractions,
                    train_size=train_size,
                    target_size=target_size,
                    fid=FIDSettings(**spec.fid.model_dump()),
                    version=__version__,
                    model_name=model_name,
                    model=spec.models[model_name],
                    repeat=repeat,
                    seed=trial_seed(study.seed, repeat),
                )
                trials.append(TrialSpec(trial.key, condition, repeat, trial))
        return trials

    def translation_trial(self, name: str) -> TrialSpec:
        """The CycleGAN trial whose generator F makes translated dataset ``name``."""
        translation = self.study.translate[name]
        cyclegan = self.study.cyclegan
        assert cyclegan is not None  # the study validator guarantees it
        model = translation.cyclegan or cyclegan.default_model()
        for spec in self.cyclegan_trials:
            if spec.trial.model_name == model and spec.repeat == translation.repeat:
                return spec
        raise GridError(
            f"translate.{name}: no CycleGAN trial of model {model}, repeat {translation.repeat}"
        )

    # ----------------------------------------------------------- segmentation

    @cached_property
    def trials(self) -> list[TrialSpec]:
        """Every segmentation trial: the product of the ``train`` axes × repeats.

        Conditions in axis order (the first axis varies slowest), repeats innermost;
        empty without a ``train`` section.

        Raises
        ------
        GridError
            A ``train_size`` larger than a training split, a trial dose on a translated
            dataset, an imported test set without the trial's classes, a dataset too
            small to split, or two trials that would be identical.
        """
        study, train = self.study, self.study.train
        if train is None:
            return []
        axes = train.axes
        names = axes.names()
        values = [list(getattr(axes, name)) for name in names]
        default_model = train.model or next(iter(train.models))
        default_dataset = train.dataset or next(iter(study.datasets))
        # A test set no trial trains on is scored on all its images; one that some trial
        # trains on is scored on its test split by every trial (no leakage, same images).
        # The CycleGAN's datasets count as trained on: it sees their training splits.
        trained = set(axes.dataset or [default_dataset]) | self._cyclegan_datasets()
        trials: list[TrialSpec] = []
        seen: dict[str, str] = {}
        for combination in itertools.product(*values):
            condition = dict(zip(names, combination, strict=True))
            model_name = condition.get("model", default_model)
            dataset = condition.get("dataset", default_dataset)
            spec = study.dataset_spec(dataset)
            classes = condition.get("classes", train.classes) or dataset_classes(spec)
            available = self.split(dataset).train.size
            train_size = condition.get("train_size", train.train_size)
            if train_size is not None and train_size > available:
                raise GridError(
                    f"train_size {train_size} exceeds the {available} training images of "
                    f"dataset {dataset} (size {spec.size}, split validation "
                    f"{train.split.validation:g}, test {train.split.test:g})"
                )
            dose = condition.get("dose", train.dose)
            if dataset in study.translate and dose is not None:
                raise GridError(
                    f"dataset {dataset} is translated by a CycleGAN: it has no clean images "
                    "to re-noise at a trial dose (use dose null for it)"
                )
            fidelity = condition.get("fidelity", train.fidelity)
            if fidelity is not None:
                simulation = getattr(spec, "simulation", None)
                levels = getattr(simulation, "levels", None)
                if levels is None or fidelity not in levels:
                    raise GridError(
                        f"fidelity {fidelity} is not stored in dataset {dataset} "
                        + (
                            f"(its levels: {', '.join(levels)}; add it to simulation.fidelities)"
                            if levels is not None
                            else "(only hrtem datasets store fidelity levels)"
                        )
                    )
            # An axis named like a setting (learning_rate) replaces it in this condition.
            settings_axes = {
                axis: value
                for axis, value in condition.items()
                if axis in SegmentationSettings.model_fields
            }
            test_sets = list(dict.fromkeys([dataset, *train.test_sets]))
            for name in test_sets:
                if name in study.imports:
                    self._check_imported_classes(name, classes)
                if name in trained:
                    self.split(name)  # a test split must exist
            datasets = {
                name: self.dataset(name).info.model_copy(update={"test_split": name in trained})
                for name in test_sets
            }
            for repeat in range(train.repeats):
                trial = SegmentationTrial(
                    **{**_settings(train, SegmentationSettings), **settings_axes},
                    study=study.name,
                    study_seed=study.seed,
                    model_name=model_name,
                    model=train.models[model_name],
                    dataset=dataset,
                    classes=list(classes),
                    train_size=train_size if train_size is not None else available,
                    dose=dose,
                    fidelity=fidelity,
                    test_sets=test_sets,
                    datasets=datasets,
                    version=__version__,
                    repeat=repeat,
                    seed=trial_seed(study.seed, repeat),
                )
                key = trial.key
                label = condition_label(condition)
                if key in seen:
                    raise GridError(
                        f"conditions {seen[key]!r} and {label!r} give identical trials "
                        "(an axis repeats a value or restates a default)"
                    )
                seen[key] = label
                trials.append(TrialSpec(key, condition, repeat, trial))
        return trials

    def _check_imported_classes(self, name: str, classes: Sequence[str]) -> None:
        """An imported test set must label every class a trial scores."""
        labelled = list(self.study.imports[name].classes)
        missing = [c for c in classes if c not in labelled]
        if missing:
            raise GridError(
                f"test set {name} is imported with classes {', '.join(labelled)}; it has no "
                f"{', '.join(missing)} labels to score (set imports.{name}.classes to the "
                "trial's class names, or train.classes to classes it labels)"
            )

    def all_trials(self) -> list[TrialSpec]:
        """The CycleGAN trials, then the segmentation trials."""
        return [*self.cyclegan_trials, *self.trials]


# ------------------------------------------------------- one-off questions
# A stage holds one Plan and asks it; these answer a single question about a study
# (a fresh plan each call) for notebooks, tests and the CLI's one-shot commands.


def dataset_hash(study: Study, name: str) -> str:
    """The hash of dataset ``name`` of ``study`` (:meth:`Plan.dataset_hash`)."""
    return Plan(study).dataset_hash(name)


def dataset_dir(study: Study, root: str | Path, name: str) -> Path:
    """The directory of dataset ``name`` of ``study`` under ``root`` (:meth:`Plan.dataset_dir`)."""
    return Plan(study).dataset_dir(root, name)


def output_dir(study: Study, root: str | Path) -> Path:
    """The study's output directory under ``root`` (:meth:`Plan.output_dir`)."""
    return Plan(study).output_dir(root)


def expand_trials(study: Study) -> list[TrialSpec]:
    """The segmentation trials of ``study`` (:attr:`Plan.trials`).

    Raises
    ------
    GridError
        If the study has no ``train`` section, or as :attr:`Plan.trials`.
    """
    if study.train is None:
        raise GridError(f"study {study.name} has no train section")
    return Plan(study).trials


def expand_cyclegan_trials(study: Study) -> list[TrialSpec]:
    """The CycleGAN trials of ``study`` (:attr:`Plan.cyclegan_trials`)."""
    return Plan(study).cyclegan_trials
