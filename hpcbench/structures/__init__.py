"""ASE structure builders with per-atom defect labels (see :mod:`hpcbench.defects`).

:func:`build_structure` turns a study's structure spec into one labelled
:class:`ase.Atoms`: lattice, defects, optional messy transforms, position noise.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from hpcbench.defects import DEFECT_CODES, DEFECT_NAMES
from hpcbench.structures._util import as_generator, concentration_to_count
from hpcbench.structures.amorphous import (
    AMORPHOUS_CARBON_DENSITY,
    amorphous_slab,
    supported_atoms,
)
from hpcbench.structures.graphene import (
    GRAPHENE_DEFECTS,
    add_graphene_defects,
    graphene,
    graphene_site_count,
)
from hpcbench.structures.messy import apply_messy, beam_damage, grain_boundary, rotate_lattice
from hpcbench.structures.mx2 import (
    MX2_DEFECTS,
    MX2_PARAMETERS,
    add_mx2_defects,
    mx2,
    mx2_site_count,
)
from hpcbench.study import (
    DefectAmount,
    GrapheneStructure,
    MX2Structure,
    NanoparticleStructure,
    SupportedAtomsStructure,
    sample_param,
)

__all__ = [
    "AMORPHOUS_CARBON_DENSITY",
    "DEFECT_CODES",
    "DEFECT_NAMES",
    "GRAPHENE_DEFECTS",
    "MX2_DEFECTS",
    "MX2_PARAMETERS",
    "add_graphene_defects",
    "add_mx2_defects",
    "amorphous_slab",
    "apply_messy",
    "beam_damage",
    "build_structure",
    "concentration_to_count",
    "grain_boundary",
    "graphene",
    "graphene_site_count",
    "mx2",
    "mx2_site_count",
    "rotate_lattice",
    "supported_atoms",
]


def _count(amount: DefectAmount, n_sites: int, rng: np.random.Generator) -> int:
    if amount.count is not None:
        return int(sample_param(amount.count, rng))
    assert amount.concentration is not None  # DefectAmount holds exactly one
    return concentration_to_count(sample_param(amount.concentration, rng), n_sites)


def _build_supported(spec: SupportedAtomsStructure, gen: np.random.Generator) -> Atoms:
    """Support then heavy atoms, drawing thickness, roughness and counts in that order."""
    thickness = sample_param(spec.thickness, gen)
    roughness = sample_param(spec.roughness, gen)
    n_atoms = int(sample_param(spec.atoms, gen))
    n_clusters = int(sample_param(spec.clusters, gen))
    sizes = tuple(int(sample_param(spec.cluster_size, gen)) for _ in range(n_clusters))
    support = amorphous_slab(
        spec.cell,
        thickness,
        density=spec.support_density,
        min_distance=spec.min_distance,
        roughness=roughness,
        roughness_scale=spec.roughness_scale,
        element=spec.support_element,
        rng=gen,
    )
    return supported_atoms(
        support,
        element=spec.element,
        atoms=n_atoms,
        clusters=n_clusters,
        cluster_size=sizes or (2,),
        surface=spec.surface,
        separation=spec.separation,
        rng=gen,
    )


def _choice(value: str | list[str], gen: np.random.Generator) -> str:
    """One of a list (uniform), or the value itself; a draw is taken either way."""
    options = value if isinstance(value, list) else [value]
    return str(options[int(gen.integers(len(options)))])


def _build_nanoparticle(spec: NanoparticleStructure, gen: np.random.Generator) -> Atoms:
    """Particle then support, drawing material, shape, size, defects, support in order."""
    from hpcbench.structures.nanoparticle import (  # lazy: ase.cluster's import time
        cdse_particle,
        faceted_particle,
        particle_on_support,
        spherical_particle,
    )

    material = _choice(
        list(spec.material) if isinstance(spec.material, list) else spec.material, gen
    )
    shape = _choice(list(spec.shape) if isinstance(spec.shape, list) else spec.shape, gen)
    diameter = sample_param(spec.diameter, gen)
    count = int(sample_param(spec.planar_defects, gen))
    defect = "twin" if gen.random() < 0.5 else "stacking_fault"
    phase = _choice(
        list(spec.cdse_phase) if isinstance(spec.cdse_phase, list) else spec.cdse_phase, gen
    )
    thickness = sample_param(spec.support_thickness, gen)
    roughness = sample_param(spec.support_roughness, gen)
    particle: Atoms
    if material == "CdSe":
        particle = cdse_particle(
            diameter,
            phase=phase,  # type: ignore[arg-type]
            stacking_fault=count > 0,
            defect_count=max(count, 1),
            rng=gen,
        )
    elif shape == "sphere":
        particle = spherical_particle(
            material,
            diameter,
            defect=defect if count > 0 else "none",  # type: ignore[arg-type]
            defect_count=max(count, 1),
            rng=gen,
        )
    else:
        particle = faceted_particle(material, shape, diameter, rng=gen)  # type: ignore[arg-type]
    support = amorphous_slab(
        spec.cell,
        thickness,
        density=spec.support_density,
        min_distance=spec.min_distance,
        roughness=roughness,
        roughness_scale=spec.roughness_scale,
        element=spec.support_element,
        rng=gen,
    )
    atoms = particle_on_support(particle, support, rng=gen, height=spec.height)
    atoms.info.update(
        material=material,
        shape="sphere" if material == "CdSe" else shape,
        diameter=float(diameter),
        planar_defects=count if material == "CdSe" or shape == "sphere" else 0,
        planar_defect=(
            "none"
            if count == 0 or (material != "CdSe" and shape != "sphere")
            else "stacking_fault"
            if material == "CdSe"
            else defect
        ),
        support_thickness=float(thickness),
    )
    return atoms


def build_structure(
    spec: MX2Structure | GrapheneStructure | SupportedAtomsStructure | NanoparticleStructure,
    *,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Build one labelled structure from a study's structure spec.

    Steps, each drawing from ``rng`` in this fixed order: the defect counts (classes
    in the canonical order of :data:`MX2_DEFECTS` / :data:`GRAPHENE_DEFECTS`; a
    ``count`` is drawn with :func:`~hpcbench.study.sample_param`, a ``concentration``
    is drawn and turned into ``round(c · n_sites)``), the defect sites, the messy
    transforms (if ``spec.messy``; a grain boundary's second grain gets its own
    defects drawn with the same counts), and Gaussian noise of std
    ``spec.position_noise`` [Å] on x, y and z of every atom (seed 000 uses 0.01 Å:
    it breaks the exact periodic repetition of sampling positions). Vacancy sites are
    not displaced.

    Parameters
    ----------
    spec : MX2Structure or GrapheneStructure or SupportedAtomsStructure
        The structure section of a dataset spec. A supported-atoms spec draws the
        support's thickness and roughness, the atom and cluster counts and cluster
        sizes, then builds the slab (:func:`amorphous_slab`) and the heavy atoms on it
        (:func:`supported_atoms`). A nanoparticle spec draws the material, shape,
        diameter, planar-defect count and kind, CdSe phase, support thickness and
        roughness, then builds the particle, the slab and places one on the other
        (:mod:`hpcbench.structures.nanoparticle`).
    rng : numpy.random.Generator or int or None
        Random source.

    Returns
    -------
    ase.Atoms
        With ``arrays["label"]``, ``info["vacancy_sites"]``, ``info["vacancy_labels"]``,
        ``info["defect_counts"]``, ``info["periodic"]`` and, if messy, ``info["messy"]``.
    """
    gen = as_generator(rng)
    if isinstance(spec, NanoparticleStructure):
        return _build_nanoparticle(spec, gen)
    if isinstance(spec, SupportedAtomsStructure):
        atoms = _build_supported(spec, gen)
        if spec.position_noise > 0:
            atoms.positions += gen.normal(0.0, spec.position_noise, size=(len(atoms), 3))
        return atoms
    lattice: Atoms
    names: tuple[str, ...]
    if spec.kind == "mx2":
        lattice = mx2(spec.formula, phase=spec.phase, a=spec.a, supercell=spec.supercell)
        names = MX2_DEFECTS
    else:
        lattice = graphene(a=spec.a, supercell=spec.supercell)
        names = GRAPHENE_DEFECTS
    counts: dict[str, int] = {}
    for name in names:
        amount = spec.defects.get(name)  # type: ignore[call-overload]
        if amount is None:
            continue
        n_sites = (
            mx2_site_count(lattice, name)
            if spec.kind == "mx2"
            else graphene_site_count(lattice, name)
        )
        counts[name] = _count(amount, n_sites, gen)

    def defected(generator: np.random.Generator) -> Atoms:
        if spec.kind == "mx2":
            return add_mx2_defects(
                lattice,
                counts,
                arrangement=spec.vacancy_arrangement,
                dopants=spec.dopants,
                rng=generator,
            )
        return add_graphene_defects(lattice, counts, rng=generator)

    atoms = defected(gen) if spec.messy is None else apply_messy(defected, spec.messy, rng=gen)
    if spec.position_noise > 0:
        atoms.positions += gen.normal(0.0, spec.position_noise, size=(len(atoms), 3))
    return atoms
