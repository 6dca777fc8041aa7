"""The defect classes hpcbench labels, with one integer code each.

Codes are global (one namespace for all materials) so a label array means the same
thing whatever structure made it. ``0`` is the defect-free lattice. MX2 classes follow
seed 003 (Fuhr et al.): V_A, V_M, M_A, A_M, M_i, A_i, TM_D, TM_A, M_2A. Graphene
classes follow seed 004 (Ziatdinov et al.).

Conventions on an :class:`ase.Atoms` made by a builder in :mod:`hpcbench.structures`:

- ``atoms.arrays["label"]``: ``int64`` per atom, one of :data:`DEFECT_CODES` values;
  atoms that make up a defect (a substituted atom, an interstitial, an adatom) carry its
  code, lattice atoms carry ``0``.
- ``atoms.info["vacancy_sites"]``: ``float64`` array ``(n, 3)`` of Cartesian positions
  [Å] where an atom was removed to make a vacancy-type defect (there is no atom to
  label), and ``atoms.info["vacancy_labels"]``: ``int64`` array ``(n,)`` of their codes.
- ``atoms.info["defect_counts"]``: ``dict[str, int]`` number of defects of each class
  made (a defect, not an atom: one anion-vacancy triplet counts 3 vacancies).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "DEFECT_CODES",
    "DEFECT_NAMES",
    "DefectName",
    "GrapheneDefect",
    "MX2Defect",
    "ParticleClass",
    "SupportedDefect",
]

MX2Defect = Literal[
    "anion_vacancy",  # V_A
    "metal_vacancy",  # V_M
    "metal_antisite",  # M_A: a metal atom on an anion site
    "anion_antisite",  # A_M: an anion on a metal site
    "metal_interstitial",  # M_i
    "anion_interstitial",  # A_i
    "dopant",  # TM_D: a different transition metal on a metal site
    "adatom",  # TM_A: a transition metal adatom above the layer
    "metal_antisite_anion_vacancy",  # M_2A: metal on an anion site plus a vacancy
]
GrapheneDefect = Literal["carbon_vacancy", "silicon_threefold", "silicon_fourfold"]
# A heavy atom (Pt, Au, ...) adsorbed on an amorphous support, alone or in a cluster.
SupportedDefect = Literal["heavy_atom"]
# A nanoparticle imaged by HRTEM (seed 001): its mask is its projected phase, not sites.
ParticleClass = Literal["particle"]
# Every labelled class (the union above, spelled out so pydantic reports one choice list).
DefectName = Literal[
    "anion_vacancy",
    "metal_vacancy",
    "metal_antisite",
    "anion_antisite",
    "metal_interstitial",
    "anion_interstitial",
    "dopant",
    "adatom",
    "metal_antisite_anion_vacancy",
    "carbon_vacancy",
    "silicon_threefold",
    "silicon_fourfold",
    "heavy_atom",
    "particle",
]

DEFECT_CODES: Final = MappingProxyType(
    {
        "lattice": 0,
        "anion_vacancy": 1,
        "metal_vacancy": 2,
        "metal_antisite": 3,
        "anion_antisite": 4,
        "metal_interstitial": 5,
        "anion_interstitial": 6,
        "dopant": 7,
        "adatom": 8,
        "metal_antisite_anion_vacancy": 9,
        "carbon_vacancy": 10,
        "silicon_threefold": 11,
        "silicon_fourfold": 12,
        # Atoms removed or disordered by a "messy" transform (beam damage); never a
        # training class by default, kept so the damage is visible in the data.
        "beam_damage": 13,
        "heavy_atom": 14,
        # Atoms of an amorphous support: never labelled (no mask value, no coordinate),
        # the image background the heavy atoms sit on.
        "support": 15,
        # Atoms of a nanoparticle (HRTEM, seed 001): labelled by its projected phase.
        "particle": 16,
    }
)
DEFECT_NAMES: Final = MappingProxyType({code: name for name, code in DEFECT_CODES.items()})
