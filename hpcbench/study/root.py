"""The study: its datasets and sections, and the checks that tie the sections together."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from hpcbench.study._base import RelativePath, Slug, Spec
from hpcbench.study.data import DatasetSpec, ImportSpec, TranslationSpec, dataset_classes
from hpcbench.study.training import CycleGANSpec, TrainSpec

__all__ = ["Study"]


class Study(Spec):
    """A benchmark study.

    ``output`` is a relative directory under the output root (``--root``, default the
    working directory) where datasets, runs and reports of this study go; it defaults
    to the study's name. Training, evaluation and report sections are added by later
    stages of hpcbench.
    """

    name: Slug
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    output: RelativePath | None = None
    datasets: Annotated[dict[Slug, DatasetSpec], Field(min_length=1)]
    cyclegan: CycleGANSpec | None = None
    translate: dict[Slug, TranslationSpec] = Field(default_factory=dict)
    imports: dict[Slug, ImportSpec] = Field(default_factory=dict)
    train: TrainSpec | None = None
    smoke: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _cyclegan_refers_to_datasets(self) -> Self:
        declared = ", ".join(self.datasets)
        clash = [name for name in self.translate if name in self.datasets]
        if clash:
            raise ValueError(
                f"translate: {', '.join(clash)} is also declared in datasets; "
                "a translated dataset needs a name of its own"
            )
        clash = [name for name in self.imports if name in self.datasets or name in self.translate]
        if clash:
            raise ValueError(
                f"imports: {', '.join(clash)} is also declared in datasets or translate; "
                "an imported dataset needs a name of its own"
            )
        if self.cyclegan is not None:
            if self.cyclegan.source in self.imports:
                raise ValueError(
                    f"cyclegan.source: {self.cyclegan.source} is imported; real images are "
                    "for evaluation only (use it as cyclegan.target or in train.test_sets)"
                )
            for field in ("source", "target"):
                name = getattr(self.cyclegan, field)
                if field == "target" and name in self.imports:
                    continue
                if name not in self.datasets:
                    raise ValueError(
                        f"cyclegan.{field}: dataset {name} is not declared in datasets ({declared})"
                    )
        for name, spec in self.translate.items():
            if self.cyclegan is None:
                raise ValueError(f"translate.{name}: needs a cyclegan section to translate with")
            if spec.source in self.imports:
                raise ValueError(
                    f"translate.{name}.source: {spec.source} is imported; real images are "
                    "for evaluation only, not a source of training data"
                )
            if spec.source not in self.datasets:
                raise ValueError(
                    f"translate.{name}.source: dataset {spec.source} is not declared in "
                    f"datasets ({declared})"
                )
            model = spec.cyclegan or self.cyclegan.default_model()
            trained = self.cyclegan.axes.model or [self.cyclegan.default_model()]
            if model not in trained:
                raise ValueError(
                    f"translate.{name}.cyclegan: no trial trains CycleGAN model {model} "
                    f"(trained: {', '.join(trained)})"
                )
            if spec.repeat >= self.cyclegan.repeats:
                raise ValueError(
                    f"translate.{name}.repeat: {spec.repeat} but cyclegan.repeats is "
                    f"{self.cyclegan.repeats}"
                )
        return self

    @model_validator(mode="after")
    def _train_refers_to_datasets(self) -> Self:
        if self.train is None:
            return self
        train = self.train
        declared = ", ".join([*self.datasets, *self.translate])
        for field, names in (
            ("train.dataset", [train.dataset] if train.dataset is not None else []),
            ("train.axes.dataset", train.axes.dataset or []),
        ):
            imported = [n for n in names if n in self.imports]
            if imported:
                raise ValueError(
                    f"{field}: {', '.join(imported)} is imported; real images are for "
                    "evaluation only (list it in train.test_sets)"
                )
        for field, names in (
            ("train.dataset", [train.dataset] if train.dataset is not None else []),
            ("train.axes.dataset", train.axes.dataset or []),
            ("train.test_sets", [n for n in train.test_sets if n not in self.imports]),
        ):
            unknown = [n for n in names if n not in self.datasets and n not in self.translate]
            if unknown:
                raise ValueError(
                    f"{field}: dataset {', '.join(unknown)} is not declared in datasets "
                    f"({declared})"
                )
        used = [train.dataset] if train.dataset is not None else []
        used += train.axes.dataset or []
        for name in used or [next(iter(self.datasets))]:
            available = dataset_classes(self.dataset_spec(name))
            for field, lists in (
                ("train.classes", [train.classes] if train.classes else []),
                ("train.axes.classes", train.axes.classes or []),
            ):
                for classes in lists:
                    missing = [c for c in classes if c not in available]
                    if missing:
                        raise ValueError(
                            f"{field}: {', '.join(missing)} not labelled in dataset {name} "
                            f"(labels: {', '.join(available)})"
                        )
        return self

    @model_validator(mode="after")
    def _crop_fits(self) -> Self:
        train = self.train
        if train is None or train.augment.crop is None:
            return self
        crop = train.augment.crop
        for name in train.axes.dataset or [train.dataset or next(iter(self.datasets))]:
            rows, cols = self.dataset_spec(name).image.shape
            if crop[0] > rows or crop[1] > cols:
                raise ValueError(
                    f"train.augment.crop: {list(crop)} exceeds the {rows}x{cols} px images "
                    f"of dataset {name}"
                )
        for model in train.axes.model or [train.model or next(iter(train.models))]:
            stride = train.models[model].output_stride
            if crop[0] % stride or crop[1] % stride:
                raise ValueError(
                    f"train.augment.crop: {list(crop)} must be a multiple of {stride} for "
                    f"model {model} (its output stride, 2**depth)"
                )
        return self

    def dataset_names(self) -> list[str]:
        """Simulated datasets, then translated ones, then imported ones, in declaration order."""
        return [*self.datasets, *self.translate, *self.imports]

    def dataset_spec(self, name: str) -> DatasetSpec:
        """The spec of dataset ``name``; a translated dataset's is its source's.

        A translated dataset has its source's samples, labels and layout (only the
        images differ), so sizes, classes and splits are read from the source spec.
        """
        if name in self.translate:
            return self.datasets[self.translate[name].source]
        if name in self.imports:
            raise KeyError(f"dataset {name} is imported: it has an import record, not a spec")
        try:
            return self.datasets[name]
        except KeyError:
            raise KeyError(f"dataset {name} is not declared") from None

    def split_name(self, name: str) -> str:
        """The name a dataset's split is drawn from: a translated dataset's source."""
        return self.translate[name].source if name in self.translate else name
