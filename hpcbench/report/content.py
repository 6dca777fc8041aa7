"""What a report holds: per-axis analyses, the CycleGAN stage, the whole report.

:func:`hpcbench.report.build.build_report` fills these from MLflow;
:mod:`hpcbench.report.render` turns them into Markdown and HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hpcbench.report.aggregate import RunTable
from hpcbench.report.statistics import FitOutcome, TestOutcome

__all__ = ["AxisAnalysis", "CycleGANAnalysis", "Report"]


@dataclass
class AxisAnalysis:
    """One ablation axis: summaries, tests and fits per metric.

    Attributes
    ----------
    axis : str
        The axis (run-table column).
    levels : list
        Its levels, in the study's order.
    summaries : dict of str to pandas.DataFrame
        Per metric: per level ``level, n, degenerate, median, q1, q3, iqr, mean,
        ci_low, ci_high`` (degenerate runs included, and counted).
    tests, pairwise, paired : dict
        Per metric: Kruskal-Wallis outcome, Mann-Whitney and Wilcoxon tables.
    fits : dict of str to dict of str to FitOutcome
        Per metric and group (``all runs`` or a model): the fit, degenerate runs left
        out and counted in ``FitOutcome.excluded``.
    figures : list of (str, str)
        Caption (what every mark, bar and curve is) and path of each figure.
    missing_levels : list
        Declared levels without a complete run.
    """

    axis: str
    levels: list[Any]
    summaries: dict[str, pd.DataFrame] = field(default_factory=dict)
    tests: dict[str, TestOutcome] = field(default_factory=dict)
    pairwise: dict[str, pd.DataFrame] = field(default_factory=dict)
    paired: dict[str, pd.DataFrame] = field(default_factory=dict)
    fits: dict[str, dict[str, FitOutcome]] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)
    missing_levels: list[Any] = field(default_factory=list)


@dataclass
class CycleGANAnalysis:
    """The CycleGAN stage: per-run distances, their per-model means, figures.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per complete CycleGAN run (:func:`load_cyclegan_runs`).
    summary : pandas.DataFrame
        Per model and FID extractor: ``runs``, and per distance the mean over repeats
        of the raw and translated values and the relative change of the means.
    figure : str or None
        Path (relative to the report) of the validation FID per epoch figure.
    examples : list of (str, str)
        Title and path of each model's example translations.
    """

    runs: pd.DataFrame
    summary: pd.DataFrame
    figure: str | None = None
    examples: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Report:
    """Everything the rendered report says."""

    study: str
    tracking_uri: str
    table: RunTable
    spec: dict[str, Any] | None
    grid: str | None
    metrics: list[str]
    shown: list[str]
    conditions: pd.DataFrame
    axes: list[AxisAnalysis]
    model_by_classes: pd.DataFrame | None
    examples: list[tuple[str, str]]
    caveats: list[str]
    missing_trials: int
    cyclegan: CycleGANAnalysis | None = None
    # Per test set scored by hpcbench evaluate and condition: pooled detection scores
    # with a bootstrap CI over images (build.real_data_table).
    real_data: pd.DataFrame | None = None
