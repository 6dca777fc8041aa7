"""The plan layer: what a study means, derived once, consumed by every stage.

Between the study schema (:mod:`hpcbench.study`, which only describes) and the stages
(which build, train and report), :func:`make_plan` derives the study's datasets with
their hashes and directories, its CycleGAN trials, the trial behind each translation,
and its segmentation trials as typed, keyed configs. ``hpcbench validate`` prints the
plan; ``generate``, ``train``, ``translate`` consume it; no stage re-derives it. Plain
code: no Ray, torch or MLflow.

Modules: :mod:`~hpcbench.plan.plan` (:class:`Plan`), :mod:`~hpcbench.plan.trials` (the
typed trial configs, keys, seeds), :mod:`~hpcbench.plan.splits` (splits by structure).
"""

from __future__ import annotations

from hpcbench.plan.plan import (
    DatasetKind,
    Plan,
    PlannedDataset,
    dataset_dir,
    dataset_hash,
    expand_cyclegan_trials,
    expand_trials,
    make_plan,
    output_dir,
)
from hpcbench.plan.splits import SPLITS, GridError, Split, split_samples
from hpcbench.plan.trials import (
    CycleGANTrial,
    DatasetInfo,
    FIDSettings,
    SegmentationTrial,
    TrialConfig,
    TrialSpec,
    condition_label,
    grid_key,
    parse_trial,
    trial_key,
    trial_seed,
)

__all__ = [
    "SPLITS",
    "CycleGANTrial",
    "DatasetInfo",
    "DatasetKind",
    "FIDSettings",
    "GridError",
    "Plan",
    "PlannedDataset",
    "SegmentationTrial",
    "Split",
    "TrialConfig",
    "TrialSpec",
    "condition_label",
    "dataset_dir",
    "dataset_hash",
    "expand_cyclegan_trials",
    "expand_trials",
    "grid_key",
    "make_plan",
    "output_dir",
    "parse_trial",
    "split_samples",
    "trial_key",
    "trial_seed",
]
