"""What a dataset is made of, and datasets made from others (imports, translations).

Structure, simulation, image, corruption and labels specs; experimental images
imported as a dataset; CycleGAN translations of a simulated dataset.

Physics parameters are named and in units as in abTEM: ``energy`` [eV],
``semiangle_cutoff`` [mrad], ``sampling`` [Å], ``defocus`` [Å], ``Cs`` [Å].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from hpcbench.defects import DefectName, GrapheneDefect, MX2Defect, SupportedDefect
from hpcbench.optics import max_scattering_angle
from hpcbench.study._base import Slug, Spec
from hpcbench.study.params import (
    FloatParam,
    IntParam,
    IntRange,
    NonNegativeFloat,
    NonNegativeIntParam,
    NonNegativeParam,
    PositiveFloat,
    PositiveParam,
    Probability,
    Range,
    at_least,
    at_most,
)

__all__ = [
    "ANIONS",
    "METALS",
    "Corruption",
    "DatasetSpec",
    "DefectAmount",
    "Detector",
    "FrozenPhononSpec",
    "GrapheneStructure",
    "ImageSpec",
    "ImportSpec",
    "IncoherentSimulation",
    "LabelSpec",
    "MX2Structure",
    "Messy",
    "MultisliceSimulation",
    "Optics",
    "SimulationSpec",
    "StructureSpec",
    "SupportedAtomsStructure",
    "TranslationSpec",
    "dataset_classes",
]

METALS = ("Mo", "W", "Nb", "Ta", "Ti", "V", "Cr")
ANIONS = ("S", "Se", "Te")
_MX2_FORMULA = re.compile(r"^(" + "|".join(METALS) + r")(" + "|".join(ANIONS) + r")2$")

# ----------------------------------------------------------------------- structures


class DefectAmount(Spec):
    """How many defects of one class to make: a count per supercell or a concentration.

    ``concentration`` is the fraction of candidate sites (anion sites for anion
    vacancies, metal sites for metal-site defects, carbon sites for graphene) that
    carry the defect; the count is then ``round(concentration · n_sites)``.
    """

    count: NonNegativeIntParam | None = None
    concentration: Annotated[FloatParam | None, at_least(0.0), at_most(1.0)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.count is None) == (self.concentration is None):
            raise ValueError("give exactly one of count or concentration")
        return self


class Messy(Spec):
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
    beam_damage_atoms: Annotated[IntParam, at_least(1.0)] = IntRange(min=5, max=30)


class MX2Structure(Spec):
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


class GrapheneStructure(Spec):
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


# Chemical symbols by atomic number (1-103), so the schema checks an element without ASE.
_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
    "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At "
    "Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
)
_ELEMENTS = frozenset(_SYMBOLS.split())


def _element(symbol: str) -> str:
    if symbol not in _ELEMENTS:
        raise ValueError(f"{symbol!r} is not a chemical symbol")
    return symbol


Element = Annotated[str, AfterValidator(_element)]


class SupportedAtomsStructure(Spec):
    """Heavy atoms and small clusters on an amorphous support (single-atom catalysts).

    The support is amorphous ``support_element`` made by random sequential insertion at
    ``support_density`` [atoms/Å³] with ``min_distance`` [Å] (amorphous carbon: 0.1103,
    1.4 Å; seed 001), periodic over a ``cell`` [Å] in x and y, of mean thickness
    ``thickness`` [Å] and a top surface rough by ``roughness`` [Å] (std) over
    ``roughness_scale`` [Å]. On it sit ``atoms`` isolated ``element`` atoms and
    ``clusters`` clusters of ``cluster_size`` atoms, on the top or bottom surface
    (``surface``), sites at least ``separation`` [Å] apart in the plane. Every heavy atom
    is labelled ``heavy_atom``; the support is never labelled.
    """

    kind: Literal["supported_atoms"]
    element: Element = "Pt"
    atoms: NonNegativeIntParam = IntRange(min=0, max=8)
    clusters: NonNegativeIntParam = 0
    cluster_size: Annotated[IntParam, at_least(2.0), at_most(20.0)] = IntRange(min=2, max=5)
    separation: PositiveFloat = 3.0
    surface: Literal["top", "bottom", "both"] = "both"
    cell: tuple[
        Annotated[float, Field(ge=5.0, le=500.0)], Annotated[float, Field(ge=5.0, le=500.0)]
    ] = (48.0, 48.0)
    thickness: Annotated[FloatParam, at_least(1.0), at_most(1000.0)] = 40.0
    roughness: NonNegativeParam = 0.0
    roughness_scale: PositiveFloat = 10.0
    support_element: Element = "C"
    support_density: Annotated[float, Field(gt=0.0, le=0.5)] = 0.1103
    min_distance: Annotated[float, Field(gt=0.5, le=5.0)] = 1.4
    position_noise: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _packs(self) -> Self:
        packing = self.support_density * 3.141592653589793 / 6.0 * self.min_distance**3
        if packing > 0.3:
            raise ValueError(
                f"support_density {self.support_density:g} /Å³ with min_distance "
                f"{self.min_distance:g} Å packs {packing:.2f} of space: random insertion "
                "jams near 0.38; lower either"
            )
        return self


def _structure_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value.get("kind", "mx2"))
    return getattr(value, "kind", None)


StructureSpec = Annotated[
    Annotated[MX2Structure, Tag("mx2")]
    | Annotated[GrapheneStructure, Tag("graphene")]
    | Annotated[SupportedAtomsStructure, Tag("supported_atoms")],
    Discriminator(_structure_tag),
]


# ----------------------------------------------------------------------- simulation


class Detector(Spec):
    """Annular detector collection angles [mrad]."""

    inner: NonNegativeFloat = 50.0
    outer: PositiveFloat = 200.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.inner >= self.outer:
            raise ValueError(f"inner ({self.inner:g}) must be < outer ({self.outer:g})")
        return self


class FrozenPhononSpec(Spec):
    """Frozen-phonon configurations: count and displacement std per element [Å]."""

    count: Annotated[int, Field(ge=1, le=256)] = 1
    sigmas: PositiveFloat | dict[str, PositiveFloat] = 0.1


class Optics(Spec):
    """Probe optics, named as in abTEM."""

    energy: PositiveFloat = 80e3
    semiangle_cutoff: PositiveFloat = 25.0
    defocus: float = 40.0
    Cs: NonNegativeFloat = 4e5
    detector: Detector = Detector()


class IncoherentSimulation(Optics):
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


class MultisliceSimulation(Optics):
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


class ImageSpec(Spec):
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


class Corruption(Spec):
    """Seeded corruption of a clean image; all parameters may vary per sample.

    ``dose`` [e/Å²] (``None``: no counting noise); ``read_noise`` Gaussian std in units
    of the clean image's mean; ``blur`` source-size Gaussian std [Å]; ``jitter`` std of
    per-scan-line shifts [Å]; ``drift`` total sample drift over the frame [Å] (random
    direction, gives shear/stretch); ``background`` amplitude of a slow
    contamination-like background relative to the image mean, with correlation length
    ``background_scale`` [Å] (may vary per sample, like the others);
    ``correlated_noise`` std of an additive, spatially correlated Gaussian noise in
    units of the clean image's mean (like ``read_noise``): white noise filtered by a
    Gaussian of std ``noise_correlation`` [Å] and rescaled to unit std; ``contrast`` and
    ``brightness`` a final linear map.
    """

    dose: PositiveParam | None = None
    read_noise: NonNegativeParam = 0.0
    blur: NonNegativeParam = 0.0
    jitter: NonNegativeParam = 0.0
    drift: NonNegativeParam = 0.0
    background: NonNegativeParam = 0.0
    background_scale: PositiveParam = 20.0
    correlated_noise: NonNegativeParam = 0.0
    noise_correlation: PositiveFloat = 0.5
    contrast: PositiveParam = 1.0
    brightness: FloatParam = 0.0


class LabelSpec(Spec):
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


class DatasetSpec(Spec):
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
            MX2Defect
            if isinstance(self.structure, MX2Structure)
            else SupportedDefect
            if isinstance(self.structure, SupportedAtomsStructure)
            else GrapheneDefect
        )
        if self.labels.lattice and isinstance(self.structure, SupportedAtomsStructure):
            raise ValueError("labels.lattice: an amorphous support has no lattice to label")
        wrong = [c for c in self.labels.classes if c not in allowed]
        if wrong:
            raise ValueError(
                f"labels.classes {wrong} do not exist in a {self.structure.kind} structure"
            )
        return self


def dataset_classes(spec: DatasetSpec) -> list[str]:
    """Class names of a dataset's mask values 1, 2, ...: ``lattice`` first if labelled."""
    return (["lattice"] if spec.labels.lattice else []) + list(spec.labels.classes)


class TranslationSpec(Spec):
    """A dataset made by translating the simulated dataset ``source`` with a CycleGAN.

    The generator F of the CycleGAN trial of model ``cyclegan`` (default: the
    cyclegan section's default model) and repeat ``repeat`` turns every image of
    ``source`` into an experiment-like one; labels, coordinates and sample ids are the
    source's, so the translated dataset trains and tests like any other.
    """

    source: Slug
    cyclegan: Slug | None = None
    repeat: Annotated[int, Field(ge=0)] = 0


class ImportSpec(Spec):
    """Experimental images imported as a dataset (:func:`hpcbench.datasets.importer.import_images`).

    Real images are for evaluation only: an imported dataset may be a ``train.test_sets``
    entry or the CycleGAN's ``target``, never a training dataset or a translation
    source. ``hpcbench generate`` imports it to ``<output>/datasets/NAME-HASH`` where
    ``HASH`` covers the parameters and the SHA-256 of every file read.

    ``path`` is the folder of images, ``labels`` a folder of label files (CSVs of
    ``X``/``Y`` [px] or masks) and ``pairs`` a CSV pairing images with label files;
    relative paths are relative to the study file's folder. ``pixel_size`` [Å] is that
    of the source images, or a CSV of one per image (columns ``image``, ``pixel_size``),
    or ``auto``: measured on each image from the first-order ring of ``lattice``
    (``graphene``, ``WSe2``, ``MoS2``, ... or ``a=<Å>``); ``target_pixel_size`` [Å]
    resamples them (required when they differ); ``patch`` [px] cuts them into
    non-overlapping ``(rows, cols)`` tiles (the rows of one image stay together in
    splits); ``classes`` names the label values 1, 2, ...; ``label_radius`` [Å] is the
    disk drawn around each labelled site; ``dataset`` is the path of the image in each
    HDF5 file (needed when a file holds several); ``split`` imports only the images
    ``pairs`` puts in that split (e.g. ``test``).
    """

    path: Annotated[str, Field(min_length=1)]
    # A number [Å] or a string (a CSV's path or "auto"); tagged so that a bad number
    # fails once, as a number ("value": a union tag load.py leaves out of locations).
    pixel_size: Annotated[
        Annotated[PositiveFloat, Tag("value")] | Annotated[str, Tag("file")],
        Discriminator(
            lambda v: "file" if isinstance(v, str) else None if isinstance(v, bool) else "value",
            custom_error_type="pixel_size",
            custom_error_message="must be a number [Å], a CSV file of them or auto",
        ),
    ]
    target_pixel_size: PositiveFloat | None = None
    labels: Annotated[str, Field(min_length=1)] | None = None
    pairs: Annotated[str, Field(min_length=1)] | None = None
    patch: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    classes: Annotated[
        list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=255)
    ] = Field(default_factory=lambda: ["atom"])
    label_radius: NonNegativeFloat = 0.6
    dataset: Annotated[str, Field(min_length=1)] | None = None
    lattice: Annotated[str, Field(min_length=1)] | None = None
    split: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self

    @model_validator(mode="after")
    def _lattice_with_auto(self) -> Self:
        auto = isinstance(self.pixel_size, str) and self.pixel_size.strip().lower() == "auto"
        if auto and self.lattice is None:
            raise ValueError("pixel_size auto needs a lattice (graphene, WSe2, ... or a=<Å>)")
        if self.lattice is not None and not auto:
            raise ValueError("lattice is only used with pixel_size: auto")
        if self.split is not None and self.pairs is None:
            raise ValueError("split needs pairs (a CSV with a split column)")
        return self

    def importer_arguments(self) -> dict[str, Any]:
        """The importer's keyword arguments this spec sets (after the folder and name)."""
        return {
            "pixel_size": self.pixel_size,
            "target_pixel_size": self.target_pixel_size,
            "labels_dir": self.labels,
            "label_radius": self.label_radius,
            "patch": self.patch,
            "pairs_csv": self.pairs,
            "class_names": self.classes,
            "dataset": self.dataset,
            "lattice": self.lattice,
            "split": self.split,
        }

    @property
    def pixel_size_file(self) -> str | None:
        """The CSV of per-image pixel sizes, if ``pixel_size`` names one."""
        value = self.pixel_size
        if not isinstance(value, str) or value.strip().lower() == "auto":
            return None
        try:
            float(value)
        except ValueError:
            return value
        return None

    def resolved(self, base_dir: Path) -> ImportSpec:
        """A copy with relative ``path``/``labels``/``pairs``/pixel-size CSV made absolute."""
        update: dict[str, Any] = {
            field: str((base_dir / value).resolve())
            for field in ("path", "labels", "pairs")
            if (value := getattr(self, field)) is not None and not Path(value).is_absolute()
        }
        table = self.pixel_size_file
        if table is not None and not Path(table).is_absolute():
            update["pixel_size"] = str((base_dir / table).resolve())
        return self.model_copy(update=update) if update else self
