"""Study files: typed, frozen pydantic models, loading and validation.

A study file says which datasets to make and which networks to train on them. It is
YAML loaded by :func:`load_study` into a :class:`Study`; every model forbids unknown
keys and is frozen, and every problem becomes one line ``file: path.to.field: message``.
What the study *means* — dataset hashes and directories, the trial grids — is derived
from it by :mod:`hpcbench.plan`; the schema only describes, and importing it loads
nothing heavy (no ASE, SciPy, torch, Ray, MLflow or abTEM).

Modules: :mod:`~hpcbench.study.params` (per-sample parameter distributions),
:mod:`~hpcbench.study.data` (structure, simulation, image, corruption, labels,
imports, translations), :mod:`~hpcbench.study.training` (models, training and
CycleGAN sweeps), :mod:`~hpcbench.study.root` (the :class:`Study` and its
cross-section checks), :mod:`~hpcbench.study.load` (YAML and one-line errors).
"""

from __future__ import annotations

from hpcbench.study._base import RelativePath, Slug, Spec
from hpcbench.study.data import (
    ANIONS,
    FCC_METALS,
    FIDELITIES,
    METALS,
    Corruption,
    DatasetSpec,
    DefectAmount,
    Detector,
    Fidelity,
    FrozenPhononSpec,
    GrapheneStructure,
    HRTEMSimulation,
    ImageSpec,
    ImportSpec,
    IncoherentSimulation,
    LabelSpec,
    Messy,
    MultisliceSimulation,
    MX2Structure,
    NanoparticleStructure,
    Optics,
    ResidualAberrations,
    SimulationSpec,
    StructureSpec,
    SupportedAtomsStructure,
    TranslationSpec,
    dataset_classes,
)
from hpcbench.study.load import StudyError, load_study, validate_study_data
from hpcbench.study.params import FloatParam, IntParam, IntRange, Range, sample_param
from hpcbench.study.root import Study
from hpcbench.study.training import (
    AugmentSpec,
    Axes,
    ClassName,
    CycleGANAugment,
    CycleGANAxes,
    CycleGANConfig,
    CycleGANSettings,
    CycleGANSpec,
    DetectionSpec,
    FCNConfig,
    FIDSpec,
    LossSpec,
    ModelSpec,
    ResNetUNetConfig,
    SegmentationSettings,
    SplitSpec,
    TrainSpec,
    UNetConfig,
)

__all__ = [
    "ANIONS",
    "FCC_METALS",
    "FIDELITIES",
    "METALS",
    "AugmentSpec",
    "Axes",
    "ClassName",
    "Corruption",
    "CycleGANAugment",
    "CycleGANAxes",
    "CycleGANConfig",
    "CycleGANSettings",
    "CycleGANSpec",
    "DatasetSpec",
    "DefectAmount",
    "DetectionSpec",
    "Detector",
    "FCNConfig",
    "FIDSpec",
    "Fidelity",
    "FloatParam",
    "FrozenPhononSpec",
    "GrapheneStructure",
    "HRTEMSimulation",
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
    "NanoparticleStructure",
    "Optics",
    "Range",
    "RelativePath",
    "ResNetUNetConfig",
    "ResidualAberrations",
    "SegmentationSettings",
    "SimulationSpec",
    "Slug",
    "Spec",
    "SplitSpec",
    "StructureSpec",
    "Study",
    "StudyError",
    "SupportedAtomsStructure",
    "TrainSpec",
    "TranslationSpec",
    "UNetConfig",
    "dataset_classes",
    "load_study",
    "sample_param",
    "validate_study_data",
]
