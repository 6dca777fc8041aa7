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

from hpcbench.defects import (
    DefectName,
    GrapheneDefect,
    MX2Defect,
    ParticleClass,
    SupportedDefect,
)
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
    "FCC_METALS",
    "FIDELITIES",
    "METALS",
    "Corruption",
    "DatasetSpec",
    "DefectAmount",
    "Detector",
    "Fidelity",
    "FrozenPhononSpec",
    "GrapheneStructure",
    "HRTEMSimulation",
    "ImageSpec",
    "ImportSpec",
    "IncoherentSimulation",
    "LabelSpec",
    "MX2Structure",
    "Messy",
    "MultisliceSimulation",
    "NanoparticleStructure",
    "Optics",
    "ResidualAberrations",
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


# fcc metals with a reference lattice constant (ASE's), for nanoparticles.
FCC_METALS = ("Au", "Ag", "Cu", "Pt", "Pd", "Ni", "Al", "Ir", "Rh", "Pb")
ParticleMaterial = Literal["Au", "Ag", "Cu", "Pt", "Pd", "Ni", "Al", "Ir", "Rh", "Pb", "CdSe"]
ParticleShape = Literal["sphere", "wulff", "decahedron", "icosahedron"]
CdSePhase = Literal["wurtzite", "zincblende"]


class NanoparticleStructure(Spec):
    """A nanoparticle on its own amorphous support (seed 001, HRTEM).

    Per structure: a ``material`` (a choice when a list: Au / CdSe / mixed datasets), a
    ``shape`` (``sphere`` with ``planar_defects`` twin boundaries or stacking faults on
    {111}, equally likely; or an ``ase.cluster`` ``wulff`` / ``decahedron`` /
    ``icosahedron``; CdSe is always a sphere, wurtzite or zinc blende per
    ``cdse_phase``, its planar defects stacking faults) of volume-equivalent
    ``diameter`` [Å] at a uniform random orientation, placed at a random position on
    an amorphous ``support_element`` slab of ``support_thickness`` [Å] (random
    sequential insertion at ``support_density`` [atoms/Å³], ``min_distance`` [Å],
    periodic over ``cell`` [Å]), ``height`` [Å] above its local surface. Particle atoms
    are labelled ``particle``; the support is never labelled.
    """

    kind: Literal["nanoparticle"]
    material: ParticleMaterial | Annotated[list[ParticleMaterial], Field(min_length=1)] = "Au"
    shape: ParticleShape | Annotated[list[ParticleShape], Field(min_length=1)] = "sphere"
    diameter: Annotated[FloatParam, at_least(5.0), at_most(200.0)] = Range(min=20.0, max=40.0)
    planar_defects: Annotated[IntParam, at_least(0.0), at_most(4.0)] = IntRange(min=0, max=2)
    cdse_phase: CdSePhase | Annotated[list[CdSePhase], Field(min_length=1)] = [
        "wurtzite",
        "zincblende",
    ]
    cell: tuple[
        Annotated[float, Field(ge=10.0, le=500.0)], Annotated[float, Field(ge=10.0, le=500.0)]
    ] = (48.0, 48.0)
    support_thickness: Annotated[FloatParam, at_least(2.0), at_most(1000.0)] = Range(
        min=20.0, max=40.0
    )
    support_roughness: NonNegativeParam = 0.0
    roughness_scale: PositiveFloat = 10.0
    support_element: Element = "C"
    support_density: Annotated[float, Field(gt=0.0, le=0.5)] = 0.1103
    min_distance: Annotated[float, Field(gt=0.5, le=5.0)] = 1.4
    height: float = 0.0

    @model_validator(mode="after")
    def _fits(self) -> Self:
        largest = (
            max(self.diameter)
            if isinstance(self.diameter, list)
            else (self.diameter.max if isinstance(self.diameter, Range) else self.diameter)
        )
        if largest + 2.0 > min(self.cell):
            raise ValueError(
                f"a particle of diameter {largest:g} Å (+2 Å clearance) does not fit "
                f"the {self.cell[0]:g} × {self.cell[1]:g} Å cell"
            )
        shapes = self.shape if isinstance(self.shape, list) else [self.shape]
        materials = self.material if isinstance(self.material, list) else [self.material]
        if materials == ["CdSe"] and shapes != ["sphere"]:
            raise ValueError("CdSe particles are spheres: shape must be sphere")
        return self


def _structure_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value.get("kind", "mx2"))
    return getattr(value, "kind", None)


StructureSpec = Annotated[
    Annotated[MX2Structure, Tag("mx2")]
    | Annotated[GrapheneStructure, Tag("graphene")]
    | Annotated[SupportedAtomsStructure, Tag("supported_atoms")]
    | Annotated[NanoparticleStructure, Tag("nanoparticle")],
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


Fidelity = Literal["baseline", "thermal", "aberrations", "plasmons", "all"]
# Which effects each fidelity level of seed 001 (Fig. 5, Table 1) switches on:
# (frozen-phonon average, residual aberrations, plasmon contrast loss).
FIDELITIES: dict[str, tuple[bool, bool, bool]] = {
    "baseline": (False, False, False),
    "thermal": (True, False, False),
    "aberrations": (False, True, False),
    "plasmons": (False, False, True),
    "all": (True, True, True),
}


class ResidualAberrations(Spec):
    """Residual aberrations of an aligned corrector, drawn per image [Å].

    Magnitudes of two-fold astigmatism ``C12``, axial coma ``C21`` and three-fold
    astigmatism ``C23`` (abTEM's polar names), each at a uniform random azimuth.
    """

    astigmatism: NonNegativeParam = Range(min=0.0, max=20.0)
    coma: NonNegativeParam = Range(min=0.0, max=300.0)
    trefoil: NonNegativeParam = Range(min=0.0, max=300.0)


class HRTEMSimulation(Spec):
    """HRTEM with plane-wave multislice (seed 001; :mod:`hpcbench.simulate.hrtem`).

    The exit waves of the structure (and of the particle alone, for the label) are
    simulated once per structure at ``sampling`` [Å] with ``slice_thickness`` [Å]: a
    static lattice and ``frozen_phonons.count`` displaced configurations (seed 001:
    8). Each image then draws its imaging conditions: ``defocus`` [Å] about focus at
    the model's centre (positive is underfocus), ``Cs`` [Å], the residual
    ``aberrations``, the Gaussian ``focal_spread`` [Å] (std, an incoherent average over
    defoci), the plasmon contrast reduction ``plasmon`` (0–1) and an optional objective
    aperture ``semiangle_cutoff`` [mrad]. ``fidelity`` names the effects the dataset's
    images have (seed 001: ``baseline`` static lattice without residual aberrations or
    plasmons; ``thermal`` the frozen-phonon average; ``aberrations``; ``plasmons``;
    ``all``); each level of ``fidelities`` is stored too, as column ``clean_<level>``
    of the same structures and conditions, for a trial ``fidelity`` axis. The mask is
    the particle's exit-wave phase, blurred by ``mask_blur`` [Å] and thresholded at
    ``mask_threshold`` [rad]. The default π/24 suits Au: measured at 300 keV on 1.5–3 nm
    spheres it covers 0.80–1.0 of the projected hull with at most 4 % of its area
    outside (π/16: 0.45–0.91). The phase scales with the mean inner potential, so
    lighter particles need less: CdSe reaches 0.86–1.0 (≤ 4 % outside) at π/48 for
    1.5–3 nm, but none of a 1.5 nm particle at π/16.
    """

    method: Literal["hrtem"]
    energy: PositiveFloat = 300e3
    sampling: PositiveFloat = 0.1
    slice_thickness: PositiveFloat = 2.0
    frozen_phonons: FrozenPhononSpec = FrozenPhononSpec(count=8)
    defocus: FloatParam = Range(min=-100.0, max=100.0)
    Cs: FloatParam = 0.0
    aberrations: ResidualAberrations = ResidualAberrations()
    focal_spread: NonNegativeParam = 30.0
    plasmon: Annotated[FloatParam, at_least(0.0), at_most(1.0)] = Range(min=0.0, max=0.3)
    semiangle_cutoff: PositiveFloat | None = None
    fidelity: Fidelity = "all"
    fidelities: list[Fidelity] = Field(default_factory=list)
    mask_blur: NonNegativeFloat = 1.6
    mask_threshold: Annotated[float, Field(gt=0.0, le=3.2)] = 0.1308996938995747  # π/24

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.fidelities)) != len(self.fidelities):
            raise ValueError("fidelities must not repeat")
        return self

    @property
    def levels(self) -> list[str]:
        """Every fidelity level the dataset stores: its own first, then ``fidelities``."""
        return list(dict.fromkeys([self.fidelity, *self.fidelities]))


def _simulation_tag(value: Any) -> str | None:
    method = value.get("method") if isinstance(value, Mapping) else getattr(value, "method", None)
    if method in ("multislice", "prism"):
        return "multislice"
    return None if method is None else str(method)


SimulationSpec = Annotated[
    Annotated[IncoherentSimulation, Tag("incoherent")]
    | Annotated[MultisliceSimulation, Tag("multislice")]
    | Annotated[HRTEMSimulation, Tag("hrtem")],
    Discriminator(
        _simulation_tag,
        custom_error_type="invalid_method",
        custom_error_message="method must be one of incoherent, multislice, prism, hrtem",
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

    @model_validator(mode="before")
    @classmethod
    def _hrtem_crops_unrotated(cls, data: Any) -> Any:
        # HRTEM crops are whole output pixels of the periodic image: no rotation unless
        # the file sets one (which _consistent refuses with its reason).
        if isinstance(data, Mapping):
            simulation = data.get("simulation")
            method = (
                simulation.get("method")
                if isinstance(simulation, Mapping)
                else getattr(simulation, "method", None)
            )
            image = data.get("image", {})
            if method == "hrtem" and isinstance(image, Mapping) and "rotation" not in image:
                return {**data, "image": {**image, "rotation": 0.0}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.shard_size % self.images_per_structure:
            raise ValueError(
                f"shard_size ({self.shard_size}) must be a multiple of "
                f"images_per_structure ({self.images_per_structure})"
            )
        hrtem = isinstance(self.simulation, HRTEMSimulation)
        particle = isinstance(self.structure, NanoparticleStructure)
        if hrtem != particle:
            raise ValueError(
                "method hrtem and structure kind nanoparticle go together (got "
                f"{self.structure.kind} / {self.simulation.method})"
            )
        if isinstance(self.simulation, HRTEMSimulation):
            if self.image.rotation != 0.0:
                raise ValueError(
                    "image.rotation must be 0 for hrtem: the particle is already at a random "
                    "orientation, and a rotated crop would interpolate the lattice fringes"
                )
            if self.corruption is not None:
                scan = [
                    name
                    for name in ("blur", "jitter", "drift")
                    if getattr(self.corruption, name) != 0.0
                ]
                if scan:
                    raise ValueError(
                        f"corruption {', '.join(scan)} model a STEM probe and scan; an "
                        "hrtem image has focal spread and aberrations instead"
                    )
            assert isinstance(self.structure, NanoparticleStructure)
            cell = self.structure.cell
            grid = [round(length / self.image.pixel_size) for length in cell]
            if self.image.shape[0] > grid[1] or self.image.shape[1] > grid[0]:
                raise ValueError(
                    f"image.shape {self.image.shape[0]} × {self.image.shape[1]} px at "
                    f"{self.image.pixel_size:g} Å is larger than the {cell[0]:g} × "
                    f"{cell[1]:g} Å cell ({grid[1]} × {grid[0]} px)"
                )
        allowed = get_args(
            MX2Defect
            if isinstance(self.structure, MX2Structure)
            else SupportedDefect
            if isinstance(self.structure, SupportedAtomsStructure)
            else ParticleClass
            if particle
            else GrapheneDefect
        )
        if self.labels.lattice and isinstance(
            self.structure, SupportedAtomsStructure | NanoparticleStructure
        ):
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
