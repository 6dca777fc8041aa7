"""Analysis of atom coordinates: bond graphs and defect chemistry (seed 004)."""

from __future__ import annotations

from hpcbench.analysis.graph import (
    CLASS_OF_LABEL,
    DEFECT_CLASSES,
    LATTICE_SPECIES,
    MAX_BOND_LENGTH,
    MAX_BONDS,
    VACANCY,
    AtomSites,
    Defect,
    DefectAnalysis,
    DefectClass,
    SiteGeometry,
    classify_defects,
    sites_from_atoms,
)

__all__ = [
    "CLASS_OF_LABEL",
    "DEFECT_CLASSES",
    "LATTICE_SPECIES",
    "MAX_BONDS",
    "MAX_BOND_LENGTH",
    "VACANCY",
    "AtomSites",
    "Defect",
    "DefectAnalysis",
    "DefectClass",
    "SiteGeometry",
    "classify_defects",
    "sites_from_atoms",
]
