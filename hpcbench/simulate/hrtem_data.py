"""HRTEM of a dataset spec: a structure's exit waves once, then images per fidelity level.

:func:`simulate_structure_waves` runs the expensive physics of one structure (seed 001):
plane-wave multislice of the full structure — the static lattice, the frozen-phonon
configurations, or both, as the dataset's fidelity levels need — and of the particle
alone for its label (:func:`~hpcbench.simulate.hrtem.particle_mask`'s phase map, at the
output pixel size). :func:`draw_conditions` draws one image's imaging conditions from
the spec, and :func:`fidelity_image` turns the stored waves into that image's
noise-free intensity at one fidelity level. A 5-level fidelity ablation therefore costs
one multislice (two when a level without thermal averaging is stored: the static
lattice is its own run) and five cheap imaging passes.

The fidelity levels (seed 001, Fig. 5 and Table 1; :data:`hpcbench.study.FIDELITIES`):

========== ======================== ==================== ===================
level      lattice                  residual aberrations plasmon contrast loss
========== ======================== ==================== ===================
baseline   static                   no                   no
thermal    frozen-phonon average    no                   no
aberrations static                  yes                  no
plasmons   static                   no                   yes
all        frozen-phonon average    yes                  yes
========== ======================== ==================== ===================

Every level keeps the image's defocus, ``Cs``, focal spread and objective aperture: they
are the imaging condition, not a fidelity effect (seed 001's baseline images have focal
spread too, Fig. 5c). Focus is at the model's centre: ``defocus`` is added to ``+T/2``
for a cell of height ``T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from hpcbench.simulate.hrtem import (
    ExitWaves,
    _resample_spectrum,
    clean_image,
    exit_waves,
    output_shape,
)
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.study import FIDELITIES, HRTEMSimulation, sample_param

__all__ = [
    "Conditions",
    "StructureWaves",
    "draw_conditions",
    "fidelity_image",
    "simulate_structure_waves",
    "wrap_crop",
]

_PARTICLE = 16  # hpcbench.defects.DEFECT_CODES["particle"]


@dataclass(frozen=True)
class Conditions:
    """One image's imaging conditions (seed 001, drawn per image).

    Attributes
    ----------
    defocus : float
        Defocus about focus at the model's centre [Å] (positive is underfocus).
    Cs : float
        Spherical aberration ``C30`` [Å].
    aberrations : dict of str to float
        Residual ``C12``, ``C21``, ``C23`` [Å] and azimuths ``phi12``, ``phi21``,
        ``phi23`` [rad] (abTEM's polar names).
    focal_spread : float
        Standard deviation of the defocus [Å].
    plasmon : float
        Plasmon contrast reduction (0–1).
    """

    defocus: float
    Cs: float
    aberrations: dict[str, float]
    focal_spread: float
    plasmon: float

    def as_columns(self) -> dict[str, float]:
        """Flat ``hrtem_<name>`` columns of a shard row."""
        return {
            "hrtem_defocus": self.defocus,
            "hrtem_Cs": self.Cs,
            **{f"hrtem_{key}": value for key, value in self.aberrations.items()},
            "hrtem_focal_spread": self.focal_spread,
            "hrtem_plasmon": self.plasmon,
        }


def draw_conditions(spec: HRTEMSimulation, rng: np.random.Generator) -> Conditions:
    """Draw one image's conditions from ``spec``, in a fixed order.

    Defocus, ``Cs``, then each residual aberration's magnitude and azimuth (two-fold
    astigmatism, coma, trefoil), focal spread and plasmon reduction.
    """
    defocus = sample_param(spec.defocus, rng)
    cs = sample_param(spec.Cs, rng)
    aberrations: dict[str, float] = {}
    for symbol, value, order in (
        ("12", spec.aberrations.astigmatism, 2),
        ("21", spec.aberrations.coma, 1),
        ("23", spec.aberrations.trefoil, 3),
    ):
        aberrations[f"C{symbol}"] = sample_param(value, rng)
        aberrations[f"phi{symbol}"] = float(rng.uniform(0.0, 2.0 * math.pi / order))
    return Conditions(
        defocus=defocus,
        Cs=cs,
        aberrations=aberrations,
        focal_spread=sample_param(spec.focal_spread, rng),
        plasmon=sample_param(spec.plasmon, rng),
    )


@dataclass(frozen=True)
class StructureWaves:
    """The exit waves of one structure and its particle's label map.

    Attributes
    ----------
    static : ExitWaves or None
        Exit wave of the undisplaced lattice (one configuration), if a level needs it.
    thermal : ExitWaves or None
        Exit waves of the frozen-phonon configurations, if a level needs them.
    phase : PeriodicImage
        The particle's blurred ``|arg ψ|`` [rad] at the output pixel size (the label
        is ``phase > threshold``).
    thickness : float
        Height of the cell [Å]; focus at the centre is a defocus of ``thickness / 2``.
    metadata : dict
        Seconds of potential and multislice, grid and slice counts.
    """

    static: ExitWaves | None
    thermal: ExitWaves | None
    phase: PeriodicImage
    thickness: float
    metadata: dict[str, Any]


def _needs(levels: list[str], configurations: int) -> tuple[bool, bool]:
    """(static, thermal): which multislice runs the levels need."""
    thermal = configurations > 1 and any(FIDELITIES[level][0] for level in levels)
    static = any(not FIDELITIES[level][0] for level in levels) or not thermal
    return static, thermal


def simulate_structure_waves(
    atoms: Atoms,
    spec: HRTEMSimulation,
    *,
    pixel_size: float,
    seed: int | np.random.SeedSequence,
    device: str = "cpu",
) -> StructureWaves:
    """Exit waves of ``atoms`` for every level of ``spec`` and its particle's phase map.

    Parameters
    ----------
    atoms : ase.Atoms
        A nanoparticle on its support (labels ``particle`` and ``support``), in an
        orthogonal cell periodic in x and y.
    spec : HRTEMSimulation
        The dataset's simulation.
    pixel_size : float
        The image's pixel size [Å].
    seed : int or numpy.random.SeedSequence
        Seed of the frozen-phonon displacements (shared by the full structure and the
        particle alone).
    device : str
        Torch device of the multislice.

    Returns
    -------
    StructureWaves
    """
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    count = spec.frozen_phonons.count
    sigmas = spec.frozen_phonons.sigmas
    static_needed, thermal_needed = _needs(spec.levels, count)
    common: dict[str, Any] = {
        "energy": spec.energy,
        "sampling": spec.sampling,
        "slice_thickness": spec.slice_thickness,
        "sigmas": sigmas,
        "device": device,
    }
    static = exit_waves(atoms, frozen_phonons=1, seed=sequence, **common) if static_needed else None
    thermal = (
        exit_waves(atoms, frozen_phonons=count, seed=sequence, **common) if thermal_needed else None
    )
    particle = np.asarray(atoms.arrays["label"]) == _PARTICLE
    if not particle.any():
        raise ValueError("the structure has no particle atoms (label particle) to label")
    # The label: the particle alone with the displacements the full structure got.
    alone = exit_waves(atoms, frozen_phonons=count, seed=sequence, select=particle, **common)
    phase = _blurred_phase(alone, blur=spec.mask_blur, pixel_size=pixel_size)
    metadata: dict[str, Any] = {"gpts": alone.metadata["gpts"], "slices": alone.metadata["slices"]}
    for name, waves in (("static", static), ("thermal", thermal), ("particle", alone)):
        if waves is not None:
            metadata[f"seconds_potential_{name}"] = waves.metadata["time_potential"]
            metadata[f"seconds_multislice_{name}"] = waves.metadata["time_multislice"]
    return StructureWaves(
        static=static,
        thermal=thermal,
        phase=phase,
        thickness=float(atoms.cell[2, 2]),
        metadata=metadata,
    )


def _blurred_phase(waves: ExitWaves, *, blur: float, pixel_size: float) -> PeriodicImage:
    """``|arg ψ|`` averaged over configurations, Gaussian-blurred, at ``pixel_size``.

    The map :func:`~hpcbench.simulate.hrtem.particle_mask` thresholds, kept as values so
    a crop of it thresholds to the crop of the mask.
    """
    phase = np.abs(np.angle(waves.array)).mean(axis=0, dtype=np.float64)
    ny, nx = phase.shape
    extent = waves.extent
    kx = np.fft.fftfreq(nx, extent[0] / nx)[None, :]
    ky = np.fft.fftfreq(ny, extent[1] / ny)[:, None]
    spectrum = np.fft.fft2(phase) * np.exp(-2.0 * np.pi**2 * blur**2 * (kx**2 + ky**2))
    smoothed = _resample_spectrum(spectrum, output_shape(extent, pixel_size))
    return PeriodicImage(array=smoothed, extent=extent, periodic=True)


def fidelity_image(
    waves: StructureWaves,
    spec: HRTEMSimulation,
    conditions: Conditions,
    level: str,
    *,
    pixel_size: float,
    device: str = "cpu",
) -> PeriodicImage:
    """The noise-free image of one structure at one fidelity level (vacuum 1).

    Parameters
    ----------
    waves : StructureWaves
        From :func:`simulate_structure_waves` with a spec that stores ``level``.
    spec : HRTEMSimulation
        The dataset's simulation (objective aperture).
    conditions : Conditions
        The image's conditions (:func:`draw_conditions`).
    level : str
        A fidelity level (:data:`hpcbench.study.FIDELITIES`).
    pixel_size : float
        Output pixel size [Å].
    device : str
        Torch device of the imaging.
    """
    if level not in FIDELITIES:
        raise ValueError(f"unknown fidelity {level!r}; one of {', '.join(FIDELITIES)}")
    thermal, residual, plasmon = FIDELITIES[level]
    source = waves.thermal if thermal and waves.thermal is not None else waves.static
    if source is None:
        source = waves.thermal
    if source is None:
        raise ValueError(f"no exit waves stored for fidelity {level!r}")
    return clean_image(
        source,
        defocus=waves.thickness / 2.0 + conditions.defocus,
        Cs=conditions.Cs,
        aberrations=conditions.aberrations if residual else None,
        focal_spread=conditions.focal_spread,
        semiangle_cutoff=spec.semiangle_cutoff,
        plasmon=conditions.plasmon if plasmon else 0.0,
        pixel_size=pixel_size,
        device=device,
    )


def wrap_crop(
    image: NDArray[np.floating[Any]], offset: tuple[int, int], shape: tuple[int, int]
) -> NDArray[np.floating[Any]]:
    """``shape`` pixels of a periodic ``image`` from row/column ``offset`` (wrapping)."""
    rows = (offset[0] + np.arange(shape[0])) % image.shape[0]
    cols = (offset[1] + np.arange(shape[1])) % image.shape[1]
    result: NDArray[np.floating[Any]] = image[np.ix_(rows, cols)]
    return result
