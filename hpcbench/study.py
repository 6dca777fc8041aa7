"""Study files: typed, frozen pydantic models, loading and validation.

A study file is YAML read with :func:`yaml.safe_load` (no Python tags) into
:class:`Study`. Every model forbids unknown keys and is frozen. :func:`load_study`
turns every problem into one line ``file: path.to.field: message`` and raises
:class:`StudyError` carrying them, before anything is created or Ray is started.

Parameters that may vary per sample (defect counts, rotations, dose, noise) accept a
fixed value, a list of choices, or a range ``{min, max, log}``; :func:`sample_param`
draws from any of them with a caller's generator.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args

import numpy as np
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from hpcbench.defects import DefectName, GrapheneDefect, MX2Defect
from hpcbench.optics import max_scattering_angle

if TYPE_CHECKING:
    from hpcbench.datasets.importer import ImportRecord

__all__ = [
    "DATA_FORMAT_VERSION",
    "AugmentSpec",
    "Axes",
    "Corruption",
    "CycleGANAugment",
    "CycleGANAxes",
    "CycleGANConfig",
    "CycleGANSpec",
    "DatasetSpec",
    "DefectAmount",
    "DetectionSpec",
    "Detector",
    "FCNConfig",
    "FIDSpec",
    "FloatParam",
    "FrozenPhononSpec",
    "GrapheneStructure",
    "ImageSpec",
    "ImportSpec",
    "IncoherentSimulation",
    "IntParam",
    "IntRange",
    "LabelSpec",
    "LossSpec",
    "MX2Structure",
    "Messy",
    "ModelSpec",
    "MultisliceSimulation",
    "Range",
    "ResNetUNetConfig",
    "SplitSpec",
    "Study",
    "StudyError",
    "TrainSpec",
    "TranslationSpec",
    "UNetConfig",
    "dataset_classes",
    "dataset_hash",
    "import_record",
    "load_study",
    "sample_param",
    "translated_hash",
    "translation_identity",
    "validate_study_data",
]

# Bumped whenever generation code changes the bytes a given spec produces, so old
# datasets are not mistaken for current ones (it enters every dataset hash).
DATA_FORMAT_VERSION = 2

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
METALS = ("Mo", "W", "Nb", "Ta", "Ti", "V", "Cr")
ANIONS = ("S", "Se", "Te")
_MX2_FORMULA = re.compile(r"^(" + "|".join(METALS) + r")(" + "|".join(ANIONS) + r")2$")


class StudyError(Exception):
    """A study file is invalid; ``lines`` holds one ``file: field: message`` per problem."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- params


class Range(_Model):
    """A continuous range sampled uniformly, or log-uniformly when ``log`` is true."""

    min: float
    max: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) must be <= max ({self.max:g})")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self


class IntRange(_Model):
    """An integer range ``[min, max]`` (both inclusive) sampled uniformly."""

    min: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


def _param_tag(value: Any) -> str:
    if isinstance(value, Mapping | Range | IntRange):
        return "range"
    if isinstance(value, list | tuple):
        return "choices"
    return "value"


_PARAM_ERROR = {
    "custom_error_type": "invalid_param",
    "custom_error_message": "must be a number, a list of choices or {min, max}",
}

FloatParam = Annotated[
    Annotated[float, Tag("value")]
    | Annotated[Range, Tag("range")]
    | Annotated[list[float], Field(min_length=1), Tag("choices")],
    Discriminator(_param_tag, **_PARAM_ERROR),
]
IntParam = Annotated[
    Annotated[int, Tag("value")]
    | Annotated[IntRange, Tag("range")]
    | Annotated[list[int], Field(min_length=1), Tag("choices")],
    Discriminator(_param_tag, **_PARAM_ERROR),
]


def _bounds(param: FloatParam | IntParam) -> tuple[float, float]:
    if isinstance(param, Range | IntRange):
        return float(param.min), float(param.max)
    if isinstance(param, list):
        return float(min(param)), float(max(param))
    return float(param), float(param)


def _at_least(low: float, *, strict: bool = False) -> Any:
    op = ">" if strict else ">="

    def check(param: Any) -> Any:
        if param is None:
            return param
        smallest, _ = _bounds(param)
        if smallest < low or (strict and smallest == low):
            raise ValueError(f"must be {op} {low:g}")
        return param

    return AfterValidator(check)


def _at_most(high: float) -> Any:
    def check(param: Any) -> Any:
        if param is None:
            return param
        _, largest = _bounds(param)
        if largest > high:
            raise ValueError(f"must be <= {high:g}")
        return param

    return AfterValidator(check)


PositiveFloat = Annotated[float, _at_least(0.0, strict=True)]
NonNegativeFloat = Annotated[float, _at_least(0.0)]
NonNegativeParam = Annotated[FloatParam, _at_least(0.0)]
PositiveParam = Annotated[FloatParam, _at_least(0.0, strict=True)]
NonNegativeIntParam = Annotated[IntParam, _at_least(0.0)]
Probability = Annotated[float, _at_least(0.0), _at_most(1.0)]


def sample_param(param: FloatParam | IntParam, rng: np.random.Generator) -> float:
    """Draw one value of a per-sample parameter.

    Parameters
    ----------
    param : float, int, list or Range/IntRange
        A fixed value (returned as is, no draw), a list of choices (uniform), a
        :class:`Range` (uniform, or log-uniform) or an :class:`IntRange` (inclusive).
    rng : numpy.random.Generator
        The caller's generator.
    """
    if isinstance(param, Range):
        if param.log:
            return float(np.exp(rng.uniform(np.log(param.min), np.log(param.max))))
        return float(rng.uniform(param.min, param.max))
    if isinstance(param, IntRange):
        return float(rng.integers(param.min, param.max, endpoint=True))
    if isinstance(param, list):
        return float(param[int(rng.integers(len(param)))])
    return float(param)


# ----------------------------------------------------------------------- structures


class DefectAmount(_Model):
    """How many defects of one class to make: a count per supercell or a concentration.

    ``concentration`` is the fraction of candidate sites (anion sites for anion
    vacancies, metal sites for metal-site defects, carbon sites for graphene) that
    carry the defect; the count is then ``round(concentration · n_sites)``.
    """

    count: NonNegativeIntParam | None = None
    concentration: Annotated[FloatParam | None, _at_least(0.0), _at_most(1.0)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.count is None) == (self.concentration is None):
            raise ValueError("give exactly one of count or concentration")
        return self


class Messy(_Model):
    """Seed-003 "messy" transforms: rotation, grain boundary, beam damage.

    For each structure, a grain boundary is made with probability
    ``grain_boundary_probability`` (relative rotation from ``grain_rotation`` [deg],
    separation from ``grain_separation`` [Å], negative = overlap), otherwise the lattice
    is rotated by a choice of ``rotation`` [deg]. Independently, with probability
    ``beam_damage_probability``, a random atom and neighbours (``beam_damage_atoms``
    in total) are removed.
    """

    rotation: FloatParam = [0.0, 30.0, 45.0]
    grain_boundary_probability: Probability = 0.5
    grain_rotation: FloatParam = [0.0, 10.0, 30.0, 45.0]
    grain_separation: FloatParam = Range(min=-3.0, max=3.0)
    beam_damage_probability: Probability = 0.5
    beam_damage_atoms: Annotated[IntParam, _at_least(1.0)] = IntRange(min=5, max=30)


class MX2Structure(_Model):
    """Monolayer MX2 in an orthogonal supercell with seed-003 defects.

    ``supercell`` counts repeats of the orthogonal ``a × a√3`` cell (two formula units)
    along x and y.
    """

    kind: Literal["mx2"] = "mx2"
    formula: str = "WSe2"
    phase: Literal["2H", "1T"] = "2H"
    a: PositiveFloat | None = None
    supercell: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] = (
        8,
        5,
    )
    defects: dict[MX2Defect, DefectAmount] = Field(default_factory=dict)
    vacancy_arrangement: Literal["random", "pairs", "triplets", "mixed"] = "random"
    dopants: Annotated[list[str], Field(min_length=1)] = ["Mo"]
    position_noise: NonNegativeFloat = 0.01
    messy: Messy | None = None

    @model_validator(mode="after")
    def _check_formula(self) -> Self:
        if not _MX2_FORMULA.match(self.formula):
            raise ValueError(
                f"formula {self.formula!r} is not MX2 with M in {', '.join(METALS)} "
                f"and X in {', '.join(ANIONS)}"
            )
        for element in self.dopants:
            if element not in METALS:
                raise ValueError(f"dopant {element!r} is not one of {', '.join(METALS)}")
        return self


class GrapheneStructure(_Model):
    """Graphene in an orthogonal supercell with vacancies and Si dopants (seed 004).

    ``supercell`` counts repeats of the orthogonal ``a × a√3`` cell (four carbon atoms)
    along x and y.
    """

    kind: Literal["graphene"]
    a: PositiveFloat = 2.46
    supercell: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] = (
        6,
        4,
    )
    defects: dict[GrapheneDefect, DefectAmount] = Field(default_factory=dict)
    position_noise: NonNegativeFloat = 0.01
    messy: Messy | None = None


def _structure_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value.get("kind", "mx2"))
    return getattr(value, "kind", None)


StructureSpec = Annotated[
    Annotated[MX2Structure, Tag("mx2")] | Annotated[GrapheneStructure, Tag("graphene")],
    Discriminator(_structure_tag),
]


# ----------------------------------------------------------------------- simulation


class Detector(_Model):
    """Annular detector collection angles [mrad]."""

    inner: NonNegativeFloat = 50.0
    outer: PositiveFloat = 200.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.inner >= self.outer:
            raise ValueError(f"inner ({self.inner:g}) must be < outer ({self.outer:g})")
        return self


class FrozenPhononSpec(_Model):
    """Frozen-phonon configurations: count and displacement std per element [Å]."""

    count: Annotated[int, Field(ge=1, le=256)] = 1
    sigmas: PositiveFloat | dict[str, PositiveFloat] = 0.1


class _Optics(_Model):
    """Probe optics, named as in abTEM."""

    energy: PositiveFloat = 80e3
    semiangle_cutoff: PositiveFloat = 25.0
    defocus: float = 40.0
    Cs: NonNegativeFloat = 4e5
    detector: Detector = Detector()


class IncoherentSimulation(_Optics):
    """Incoherent model (seed 000's incoSTEM): Σ Z^γ at atoms ⊗ probe intensity.

    ``sampling`` [Å] is the grid the periodic image is rendered on before the crop is
    interpolated to the image's pixel size. The default ``gamma`` is 1.0: fitted against
    16-phonon multislice of monolayer WSe2 at 80 keV (50–200 mrad) the best exponent is
    1.05 (r = 0.988 with seed-003 optics, 0.995 corrected), while the textbook 1.7 gives
    r = 0.93–0.96 (:func:`hpcbench.simulate.incoherent.calibrate_gamma`).
    """

    method: Literal["incoherent"]
    gamma: PositiveFloat = 1.0
    sampling: PositiveFloat = 0.05


class MultisliceSimulation(_Optics):
    """HAADF-STEM with abTEM, multislice or PRISM.

    ``sampling`` [Å] is the potential/wave grid spacing; ``scan_sampling`` [Å] the
    probe step (``None``: Nyquist for the probe's band limit); ``prism_interpolation``
    applies to ``method: prism`` only.
    """

    method: Literal["multislice", "prism"]
    sampling: PositiveFloat = 0.05
    scan_sampling: PositiveFloat | None = None
    slice_thickness: PositiveFloat = 1.0
    frozen_phonons: FrozenPhononSpec = FrozenPhononSpec()
    prism_interpolation: Annotated[int, Field(ge=1, le=16)] = 1

    @model_validator(mode="after")
    def _grid_resolves_detector(self) -> Self:
        limit = max_scattering_angle(self.energy, self.sampling)
        if self.detector.outer > limit:
            raise ValueError(
                f"sampling {self.sampling:g} Å resolves only {limit:.0f} mrad at "
                f"{self.energy:g} eV, below detector.outer {self.detector.outer:g} mrad; "
                f"use sampling <= "
                f"{self.sampling * limit / self.detector.outer:.3f} Å"
            )
        if self.method == "multislice" and self.prism_interpolation != 1:
            raise ValueError("prism_interpolation applies to method: prism only")
        return self


def _simulation_tag(value: Any) -> str | None:
    method = value.get("method") if isinstance(value, Mapping) else getattr(value, "method", None)
    if method in ("multislice", "prism"):
        return "multislice"
    return None if method is None else str(method)


SimulationSpec = Annotated[
    Annotated[IncoherentSimulation, Tag("incoherent")]
    | Annotated[MultisliceSimulation, Tag("multislice")],
    Discriminator(
        _simulation_tag,
        custom_error_type="invalid_method",
        custom_error_message="method must be one of incoherent, multislice, prism",
    ),
]


# ------------------------------------------------------------- image, noise, labels


class ImageSpec(_Model):
    """The image cut from the periodic tiling of a structure.

    ``shape`` is (rows, columns) [px]; ``pixel_size`` [Å]; ``rotation`` [deg] of the
    crop relative to the cell axes (per sample).
    """

    shape: tuple[Annotated[int, Field(ge=8, le=4096)], Annotated[int, Field(ge=8, le=4096)]] = (
        128,
        128,
    )
    pixel_size: PositiveFloat = 0.1
    rotation: FloatParam = Range(min=0.0, max=360.0)


class Corruption(_Model):
    """Seeded corruption of a clean image; all parameters may vary per sample.

    ``dose`` [e/Å²] (``None``: no counting noise); ``read_noise`` Gaussian std in units
    of the clean image's mean; ``blur`` source-size Gaussian std [Å]; ``jitter`` std of
    per-scan-line shifts [Å]; ``drift`` total sample drift over the frame [Å] (random
    direction, gives shear/stretch); ``background`` amplitude of a slow
    contamination-like background relative to the image mean, with correlation length
    ``background_scale`` [Å]; ``correlated_noise`` std of an additive, spatially
    correlated Gaussian noise in units of the clean image's mean (like ``read_noise``):
    white noise filtered by a Gaussian of std ``noise_correlation`` [Å] and rescaled to
    unit std; ``contrast`` and ``brightness`` a final linear map.
    """

    dose: PositiveParam | None = None
    read_noise: NonNegativeParam = 0.0
    blur: NonNegativeParam = 0.0
    jitter: NonNegativeParam = 0.0
    drift: NonNegativeParam = 0.0
    background: NonNegativeParam = 0.0
    background_scale: PositiveFloat = 20.0
    correlated_noise: NonNegativeParam = 0.0
    noise_correlation: PositiveFloat = 0.5
    contrast: PositiveParam = 1.0
    brightness: FloatParam = 0.0


class LabelSpec(_Model):
    """Which defect classes the mask holds.

    Class ``classes[i]`` has mask value ``i + 1`` (with ``lattice: true``, lattice
    atoms get value 1 and defects ``i + 2``); everything else is 0. ``radius`` [Å] is
    the disk drawn around each labelled atom or vacancy site.
    """

    classes: Annotated[list[DefectName], Field(min_length=1)]
    radius: PositiveFloat = 0.6
    lattice: bool = False

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self


class DatasetSpec(_Model):
    """One dataset: how to build, simulate, crop, corrupt and label ``size`` images.

    ``images_per_structure`` crops are cut from each simulated structure (the
    expensive part is done once per structure); ``shard_size`` images go in each
    Parquet file and must be a multiple of ``images_per_structure`` so a structure is
    simulated in exactly one shard.
    """

    structure: StructureSpec
    simulation: SimulationSpec
    image: ImageSpec = ImageSpec()
    corruption: Corruption | None = None
    labels: LabelSpec
    size: Annotated[int, Field(ge=1, le=10_000_000)]
    images_per_structure: Annotated[int, Field(ge=1)] = 1
    shard_size: Annotated[int, Field(ge=1)] = 256

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.shard_size % self.images_per_structure:
            raise ValueError(
                f"shard_size ({self.shard_size}) must be a multiple of "
                f"images_per_structure ({self.images_per_structure})"
            )
        allowed = get_args(
            MX2Defect if isinstance(self.structure, MX2Structure) else GrapheneDefect
        )
        wrong = [c for c in self.labels.classes if c not in allowed]
        if wrong:
            raise ValueError(
                f"labels.classes {wrong} do not exist in a {self.structure.kind} structure"
            )
        return self


# ------------------------------------------------------------------------- training


class FCNConfig(_Model):
    """The seed-004 encoder-decoder FCN (Ziatdinov et al. 2017).

    ``depth`` levels of one 3x3 convolution + ReLU + 2x2 max-pool with ``width``,
    ``2 width``, ``4 width`` ... filters, the same filters in reverse with 2x up-sampling,
    then a 3x3 and a 1x1 convolution to the classes (8/16/32 filters by default).
    """

    architecture: Literal["fcn"]
    width: Annotated[int, Field(ge=1, le=1024)] = 8
    depth: Annotated[int, Field(ge=1, le=6)] = 3
    batch_norm: bool = False


class UNetConfig(_Model):
    """G-UNet (``unet``) and Attention-UNet (``attention_unet``) of seed 003 (Fuhr et al.).

    ``depth`` down-sampling levels of double 3x3 convolutions (+ batch norm + ReLU) with
    ``width · 2^i`` feature maps and a ``width · 2^depth`` bottleneck: the paper's
    64→512 + 1024 is ``width: 64, depth: 4``. ``upsampling`` is a 2x2 stride-2
    transposed convolution or bilinear interpolation.
    """

    architecture: Literal["unet", "attention_unet"]
    width: Annotated[int, Field(ge=1, le=1024)] = 64
    depth: Annotated[int, Field(ge=1, le=6)] = 4
    upsampling: Literal["transpose", "bilinear"] = "transpose"


class ResNetUNetConfig(_Model):
    """A UNet whose encoder is a ResNet (He et al. 2016), built here, randomly initialised.

    ``layers`` picks ResNet-18/34 (basic blocks) or 50/101/152 (bottlenecks); ``depth``
    (1-5) is the number of encoder stages used (seed 001 used ResNet-18 with 3);
    ``width`` is the stem width (64 in the published ResNets). ``weights`` is a local
    file of ResNet weights in torchvision's key layout (nothing is downloaded).
    """

    architecture: Literal["resnet_unet"]
    layers: Literal[18, 34, 50, 101, 152] = 18
    width: Annotated[int, Field(ge=1, le=1024)] = 64
    depth: Annotated[int, Field(ge=1, le=5)] = 5
    weights: str | None = None


ModelSpec = Annotated[
    Annotated[FCNConfig, Tag("fcn")]
    | Annotated[UNetConfig, Tag("unet")]
    | Annotated[ResNetUNetConfig, Tag("resnet_unet")],
    Discriminator(
        lambda value: _architecture_tag(value),
        custom_error_type="invalid_architecture",
        custom_error_message=("architecture must be one of fcn, unet, attention_unet, resnet_unet"),
    ),
]


def _architecture_tag(value: Any) -> str | None:
    arch = (
        value.get("architecture")
        if isinstance(value, Mapping)
        else getattr(value, "architecture", None)
    )
    if arch == "attention_unet":
        return "unet"
    return None if arch is None else str(arch)


# ---------------------------------------------------------------------------- study


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            f"{value!r} must be 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def _relative_path(value: str) -> str:
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r} must be relative to the output root")
    if ".." in path.parts:
        raise ValueError(f"{value!r} escapes the output root")
    if not path.parts:
        raise ValueError("must not be empty")
    return str(path)


Slug = Annotated[str, AfterValidator(_slug)]


ClassName = DefectName | Literal["lattice"]


class LossSpec(_Model):
    """Weights of the training loss terms (seed 001: cross-entropy + soft F1)."""

    cross_entropy: NonNegativeFloat = 1.0
    soft_f1: NonNegativeFloat = 1.0

    @model_validator(mode="after")
    def _some(self) -> Self:
        if self.cross_entropy == 0 and self.soft_f1 == 0:
            raise ValueError("at least one of cross_entropy, soft_f1 must be > 0")
        return self


class AugmentSpec(_Model):
    """Training-time augmentation: a random crop, then a random rotation by 90° and flip.

    ``crop`` [px] is the training patch (rows, cols); ``null`` trains on whole images.
    Validation and test images are never augmented.
    """

    crop: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] | None = None
    rot90: bool = True
    flips: bool = True


class SplitSpec(_Model):
    """Fractions of each dataset's *structures* held out for validation and test.

    Splitting by structure keeps crops of one simulated structure on one side, so the
    test split never shares a supercell with training. The split depends only on the
    study seed and the dataset, never on the trial.
    """

    validation: Annotated[float, _at_least(0.0, strict=True), _at_most(0.5)] = 0.1
    test: Annotated[float, _at_least(0.0, strict=True), _at_most(0.5)] = 0.1


class DetectionSpec(_Model):
    """Atom finding on class probability maps for detection metrics.

    ``method`` is Laplacian-of-Gaussian blobs (seed 004) or local maxima, on each
    class's probability map kept where that class is the most probable one (so
    detections agree with the pixel scores; for two classes that is p ≥ 0.5, seed 004's
    threshold) and at least ``threshold`` (seed 004 used up to 0.8-0.9 on binary maps);
    detections within ``match_radius`` [Å] of a labelled site are matched one-to-one
    (Hungarian algorithm).
    """

    method: Literal["log", "peaks"] = "log"
    threshold: Annotated[float, _at_least(0.0), _at_most(1.0)] = 0.0
    match_radius: PositiveFloat = 0.5


class Axes(_Model):
    """Ablation axes: each listed value replaces the fixed setting of the same name.

    The trials are the Cartesian product of the axes times ``repeats`` seeds.
    ``dose`` ``null`` means the dataset's own noisy images; a number re-noises the
    stored clean images at that dose [e/Å²] on the fly.
    """

    model: Annotated[list[Slug], Field(min_length=1)] | None = None
    dataset: Annotated[list[Slug], Field(min_length=1)] | None = None
    train_size: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] | None = None
    dose: Annotated[list[PositiveFloat | None], Field(min_length=1)] | None = None
    classes: (
        Annotated[list[Annotated[list[ClassName], Field(min_length=1)]], Field(min_length=1)] | None
    ) = None
    learning_rate: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None

    def names(self) -> list[str]:
        """The axes that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class TrainSpec(_Model):
    """Training sweeps: models, fixed settings, ablation axes and repeats.

    Defaults follow seed 001 (Rangel DaCosta et al. 2024): Adam, learning rate 1e-3
    decayed by 0.8 each epoch, batch 16, 25 epochs, cross-entropy + soft-F1 loss, the
    checkpoint with the lowest validation loss kept, at least 5 seeds per condition.
    ``model`` and ``dataset`` default to the first declared; ``classes`` to the
    training dataset's label classes (``lattice`` first when it labels the lattice);
    ``train_size`` to the whole training split. Class ``classes[i]`` is output ``i + 1``
    of the network, 0 is background, so N = len(classes) + 1 as in seed 003.
    """

    models: Annotated[dict[Slug, ModelSpec], Field(min_length=1)]
    model: Slug | None = None
    dataset: Slug | None = None
    classes: Annotated[list[ClassName], Field(min_length=1)] | None = None
    train_size: Annotated[int, Field(ge=1)] | None = None
    dose: PositiveFloat | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 25
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 16
    learning_rate: PositiveFloat = 1e-3
    lr_decay: Annotated[float, _at_least(0.0, strict=True), _at_most(1.0)] = 0.8
    loss: LossSpec = LossSpec()
    select: Literal["loss", "f1"] = "loss"
    augment: AugmentSpec = AugmentSpec()
    split: SplitSpec = SplitSpec()
    test_sets: list[Slug] = Field(default_factory=list)
    detection: DetectionSpec = DetectionSpec()
    axes: Axes = Axes()
    repeats: Annotated[int, Field(ge=1, le=1000)] = 5

    @model_validator(mode="after")
    def _known_models(self) -> Self:
        names = [self.model] if self.model is not None else []
        names += self.axes.model or []
        unknown = sorted({name for name in names if name not in self.models})
        if unknown:
            raise ValueError(
                f"model {', '.join(unknown)} is not declared in models ({', '.join(self.models)})"
            )
        if self.split.validation + self.split.test >= 1.0:
            raise ValueError("split.validation + split.test must leave structures to train on")
        return self


# ------------------------------------------------------------------------- CycleGAN


class CycleGANConfig(_Model):
    """A CycleGAN variant (seed 000): generator/discriminator sizes and loss weights.

    Defaults are the paper's networks: pix2pix U-Net generators (``gen_width`` 64,
    ``gen_depth`` 8, instance norm, dropout 0.5), 70x70 PatchGAN discriminators
    (``disc_width`` 64, ``disc_layers`` 3) on the image and on its log power spectrum,
    LSGAN losses with ``fft_weight`` 1 on the FFT discriminators' term, L1 cycle loss
    ``lambda_cyc`` 10, L2 identity loss ``lambda_id`` 5, and a history pool of 50 fakes.
    """

    gen_width: Annotated[int, Field(ge=1, le=1024)] = 64
    gen_depth: Annotated[int, Field(ge=1, le=8)] = 8
    disc_width: Annotated[int, Field(ge=1, le=1024)] = 64
    disc_layers: Annotated[int, Field(ge=1, le=6)] = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    dropout: Annotated[float, _at_least(0.0), _at_most(0.95)] = 0.5
    lambda_cyc: NonNegativeFloat = 10.0
    lambda_id: NonNegativeFloat = 5.0
    identity: Literal["l2", "l1"] = "l2"
    fft_weight: NonNegativeFloat = 1.0
    pool_size: Annotated[int, Field(ge=0, le=10_000)] = 50


class CycleGANAugment(_Model):
    """Random rotations by 90° and flips of the training patches of both domains."""

    rot90: bool = True
    flips: bool = True


class FIDSpec(_Model):
    """How the CycleGAN's Fréchet distances are computed.

    ``features`` names the extractor: ``spectral-v1`` (offline, no weights) or
    ``inception`` (pytorch-fid's Inception-v3, from the local weights file given by
    ``--inception-weights`` or ``HPCBENCH_INCEPTION_WEIGHTS`` at run time). ``images``
    caps the validation images per set of the per-epoch metrics.
    """

    features: Literal["spectral-v1", "inception"] = "spectral-v1"
    images: Annotated[int, Field(ge=2, le=100_000)] = 64


class CycleGANAxes(_Model):
    """CycleGAN ablation axes (the trials are their product times ``repeats``)."""

    model: Annotated[list[Slug], Field(min_length=1)] | None = None

    def names(self) -> list[str]:
        """The axes that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class CycleGANSpec(_Model):
    """Unpaired translation between simulated (``source``) and experiment-like images.

    Seed 000's workflow: train a CycleGAN on the simulated ``source`` dataset (domain Y)
    and the unlabelled ``target`` images (domain X), then translate the simulated
    training set with the generator F: Y → X (a ``translate`` entry) and train the
    segmentation networks on the translated images with the original labels. Only the
    training splits of both datasets are trained on (the target's test split stays
    unseen for the segmentation networks' held-out scores).

    Each domain is saturated at ±``saturation`` σ of its training pixels and mapped to
    [-1, 1]; ``sim_noise_std`` Gaussian noise (in those units) is added to the
    simulations. Training uses random ``patch_size`` [px] crops, ``batch_size`` 1 and
    Adam (``learning_rate``, ``betas``) for ``epochs`` epochs, the last ``epochs_decay``
    of them with a linear decay to zero (seed 000: 297 epochs, 149 decaying). The
    paper's learning rate of 0.032 reads as a typo for a GAN under Adam: the default is
    CycleGAN's 2e-4. ``select: fid`` keeps the generators of the epoch with the lowest
    validation FID instead of the last ones. ``train_size``/``target_size`` cap the
    training images of each domain (default: the whole training split).
    """

    source: Slug
    target: Slug
    models: Annotated[dict[Slug, CycleGANConfig], Field(min_length=1)]
    model: Slug | None = None
    train_size: Annotated[int, Field(ge=1)] | None = None
    target_size: Annotated[int, Field(ge=1)] | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 297
    epochs_decay: Annotated[int, Field(ge=1, le=10_000)] = 149
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 1
    learning_rate: PositiveFloat = 2e-4
    betas: tuple[
        Annotated[float, _at_least(0.0), _at_most(0.9999)],
        Annotated[float, _at_least(0.0), _at_most(0.9999)],
    ] = (0.5, 0.999)
    patch_size: Annotated[int, Field(ge=8, le=4096)] = 256
    sim_noise_std: NonNegativeFloat = 0.1
    saturation: PositiveFloat = 3.5
    augment: CycleGANAugment = CycleGANAugment()
    fid: FIDSpec = FIDSpec()
    select: Literal["last", "fid"] = "last"
    axes: CycleGANAxes = CycleGANAxes()
    repeats: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [self.model] if self.model is not None else []
        names += self.axes.model or []
        unknown = sorted({name for name in names if name not in self.models})
        if unknown:
            raise ValueError(
                f"model {', '.join(unknown)} is not declared in models ({', '.join(self.models)})"
            )
        if self.epochs_decay > self.epochs:
            raise ValueError(
                f"epochs_decay ({self.epochs_decay}) must not exceed epochs ({self.epochs})"
            )
        if self.source == self.target:
            raise ValueError("source and target must be different datasets")
        return self

    def default_model(self) -> str:
        """``model``, else the first declared model."""
        return self.model if self.model is not None else next(iter(self.models))


class TranslationSpec(_Model):
    """A dataset made by translating the simulated dataset ``source`` with a CycleGAN.

    The generator F of the CycleGAN trial of model ``cyclegan`` (default: the
    cyclegan section's default model) and repeat ``repeat`` turns every image of
    ``source`` into an experiment-like one; labels, coordinates and sample ids are the
    source's, so the translated dataset trains and tests like any other.
    """

    source: Slug
    cyclegan: Slug | None = None
    repeat: Annotated[int, Field(ge=0)] = 0


class ImportSpec(_Model):
    """Experimental images imported as a dataset (:func:`hpcbench.datasets.importer.import_images`).

    Real images are for evaluation only: an imported dataset may be a ``train.test_sets``
    entry or the CycleGAN's ``target``, never a training dataset or a translation
    source. ``hpcbench generate`` imports it to ``<output>/datasets/NAME-HASH`` where
    ``HASH`` covers the parameters and the SHA-256 of every file read.

    ``path`` is the folder of images, ``labels`` a folder of label files (CSVs of
    ``X``/``Y`` [px] or masks) and ``pairs`` a CSV pairing images with label files;
    relative paths are relative to the study file's folder. ``pixel_size`` [Å] is that
    of the source images; ``target_pixel_size`` [Å] resamples them; ``patch`` [px] cuts
    them into non-overlapping ``(rows, cols)`` tiles (the rows of one image stay
    together in splits); ``classes`` names the label values 1, 2, ...;
    ``label_radius`` [Å] is the disk drawn around each labelled site.
    """

    path: Annotated[str, Field(min_length=1)]
    pixel_size: PositiveFloat
    target_pixel_size: PositiveFloat | None = None
    labels: Annotated[str, Field(min_length=1)] | None = None
    pairs: Annotated[str, Field(min_length=1)] | None = None
    patch: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    classes: Annotated[
        list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=255)
    ] = Field(default_factory=lambda: ["atom"])
    label_radius: NonNegativeFloat = 0.6

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self

    def resolved(self, base_dir: Path) -> ImportSpec:
        """A copy with relative ``path``/``labels``/``pairs`` made absolute under ``base_dir``."""
        update = {
            field: str((base_dir / value).resolve())
            for field in ("path", "labels", "pairs")
            if (value := getattr(self, field)) is not None and not Path(value).is_absolute()
        }
        return self.model_copy(update=update) if update else self


class Study(_Model):
    """A benchmark study.

    ``output`` is a relative directory under the output root (``--root``, default the
    working directory) where datasets, runs and reports of this study go; it defaults
    to the study's name. Training, evaluation and report sections are added by later
    stages of hpcbench.
    """

    name: Slug
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    output: Annotated[str, AfterValidator(_relative_path)] | None = None
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

    def output_dir(self, root: Path) -> Path:
        """The study's output directory under ``root``."""
        return root / (self.output if self.output is not None else self.name)

    def dataset_dir(self, root: Path, name: str) -> Path:
        """``<output>/datasets/<name>-<hash12>`` for dataset ``name``.

        For an imported dataset the hash is that of its import record, which reads and
        hashes the source files (:func:`dataset_hash`).
        """
        return self.output_dir(root) / "datasets" / f"{name}-{dataset_hash(self, name)}"


def dataset_classes(spec: DatasetSpec) -> list[str]:
    """Class names of a dataset's mask values 1, 2, ...: ``lattice`` first if labelled."""
    return (["lattice"] if spec.labels.lattice else []) + list(spec.labels.classes)


def dataset_hash(study: Study, name: str) -> str:
    """First 12 hex digits of the SHA-256 of everything that determines a dataset's bytes.

    That is the data format version, the root seed, the dataset's name (seeds derive
    from it) and its resolved spec with defaults filled in. Corruption fields added
    after format 2 (``correlated_noise``, ``noise_correlation``) are left out while they
    hold their defaults, so every dataset made before they existed keeps its hash.
    """
    if name in study.translate:
        return translated_hash(translation_identity(study, name))
    if name in study.imports:
        return import_record(study, name).hash
    spec = study.datasets[name].model_dump(mode="json")
    corruption = spec.get("corruption")
    if corruption is not None:
        for key, default in (("correlated_noise", 0.0), ("noise_correlation", 0.5)):
            if corruption.get(key) == default:
                del corruption[key]
    payload = {
        "format": DATA_FORMAT_VERSION,
        "seed": study.seed,
        "name": name,
        "spec": spec,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def import_record(study: Study, name: str) -> ImportRecord:
    """The import record of imported dataset ``name`` (reads and hashes its files, cached).

    Raises
    ------
    hpcbench.datasets.importer.ImageImportError, FileNotFoundError
        If the files cannot be imported.
    """
    from hpcbench.datasets.importer import import_record as record_of  # reads image files

    spec = study.imports[name]
    return record_of(
        spec.path,
        name=name,
        pixel_size=spec.pixel_size,
        target_pixel_size=spec.target_pixel_size,
        labels_dir=spec.labels,
        label_radius=spec.label_radius,
        patch=spec.patch,
        pairs_csv=spec.pairs,
        class_names=spec.classes,
    )


def translation_identity(study: Study, name: str) -> dict[str, Any]:
    """What determines translated dataset ``name``'s bytes (hashed by :func:`dataset_hash`).

    The data format, the name, the translation spec, the source dataset's hash and the
    key of the CycleGAN trial whose generator translates (that key covers the
    CycleGAN's config, both datasets and its seed).
    """
    from hpcbench.train.grid import translation_trial  # the CycleGAN grid lives there

    spec = study.translate[name]
    return {
        "format": DATA_FORMAT_VERSION,
        "kind": "translated",
        "name": name,
        "translate": spec.model_dump(mode="json"),
        "source_hash": dataset_hash(study, spec.source),
        "cyclegan_key": translation_trial(study, name).key,
    }


def translated_hash(identity: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of a translation identity (canonical JSON)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------- loading

_TAGS = {"structure": {"mx2", "graphene"}, "simulation": {"incoherent", "multislice"}}
_MODEL_TAGS = {"fcn", "unet", "resnet_unet"}

_PARAM_TAGS = {"value", "range", "choices"}

_MESSAGES: dict[str, str] = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required",
    "extra_forbidden": "unknown key",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "literal_error": "must be one of {expected}",
}


def _location(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        text = str(item)
        if parts and parts[-1] in _TAGS and text in _TAGS[parts[-1]]:
            continue  # the discriminated-union branch, not a key the user wrote
        if len(parts) >= 2 and parts[-2] == "models" and text in _MODEL_TAGS:
            continue  # the architecture branch of a named model
        if text in _PARAM_TAGS or text.startswith(("function-", "nullable[")):
            continue  # a union member tried by pydantic, not a key the user wrote
        if parts and text == "[key]":
            continue
        parts.append(text)
    return ".".join(parts) or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    template = _MESSAGES.get(error["type"])
    if template is not None:
        try:
            return template.format(**ctx)
        except KeyError:
            pass
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _format_errors(source: str, exc: ValidationError) -> list[str]:
    lines: dict[str, None] = {}
    for error in exc.errors():
        loc = error["loc"]
        # A value that may be a number, a list or a range fails as each of them; report
        # the first failure per location only, so one mistake gives one line.
        location = _location(loc)
        if any(line.startswith(f"{source}: {location}: ") for line in lines):
            continue
        message = _message(error)
        if location == "(top level)" and re.match(r"^train[.:]", message):
            lines[f"{source}: {message}"] = None  # a cross-section check names its field
            continue
        lines[f"{source}: {location}: {message}"] = None
    return list(lines)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_study_data(
    data: Any, *, source: str = "<study>", smoke: bool = False, base_dir: Path | None = None
) -> Study:
    """Validate an already-parsed study mapping; see :func:`load_study`.

    ``base_dir`` is the folder relative ``imports`` paths are resolved against (the
    study file's), and then each must exist; without it they stay as written
    (relative to the working directory) and are not checked.
    """
    study = _validate(data, source=source, smoke=smoke)
    if base_dir is None or not study.imports:
        return study
    imports = {name: spec.resolved(base_dir) for name, spec in study.imports.items()}
    study = study.model_copy(update={"imports": imports})
    missing = [
        f"{source}: imports.{name}.{field}: no such {kind} {value}"
        for name, spec in study.imports.items()
        for field, kind, exists in (
            ("path", "folder", Path.is_dir),
            ("labels", "folder", Path.is_dir),
            ("pairs", "file", Path.is_file),
        )
        if (value := getattr(spec, field)) is not None and not exists(Path(value))
    ]
    if missing:
        raise StudyError(missing)
    return study


def _validate(data: Any, *, source: str, smoke: bool) -> Study:
    if data is None:
        raise StudyError([f"{source}: (top level): empty study file"])
    if not isinstance(data, Mapping):
        raise StudyError([f"{source}: (top level): must be a mapping of keys to values"])
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        raise StudyError(_format_errors(source, exc)) from None
    if study.smoke is not None:
        # The smoke block must itself give a valid study, whether or not it is used now.
        merged = _deep_merge({k: v for k, v in data.items() if k != "smoke"}, study.smoke)
        try:
            smoked = Study.model_validate(merged)
        except ValidationError as exc:
            errors = _format_errors(source, exc)
            raise StudyError([line.replace(": ", ": smoke.", 1) for line in errors]) from None
        if smoke:
            return smoked
    return study


def load_study(path: str | Path, *, smoke: bool = False) -> Study:
    """Read and validate a study file.

    Parameters
    ----------
    path : str or Path
        YAML study file.
    smoke : bool
        Merge the file's ``smoke:`` block over it (a tiny version of the study).

    Raises
    ------
    StudyError
        With one ``file: path.to.field: message`` line per problem.
    """
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError([f"{path}: (top level): no such file"]) from None
    except IsADirectoryError:
        raise StudyError([f"{path}: (top level): is a directory, not a study file"]) from None
    except UnicodeDecodeError:
        raise StudyError([f"{source}: (top level): not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        first = str(problem).splitlines()[0]
        raise StudyError([f"{source}: (top level): not valid YAML{where}: {first}"]) from None
    return validate_study_data(data, source=source, smoke=smoke, base_dir=path.resolve().parent)
