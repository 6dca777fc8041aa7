"""Build a study's report directory from MLflow: tables, tests, fits, figures, text.

``reports/<study>/`` holds:

- ``results.csv`` / ``results.parquet``: one row per complete run of the study's newest
  grid (:mod:`hpcbench.report.aggregate`);
- ``tables/conditions.csv``: every condition's runs, mean and bootstrap CI;
- ``tables/<axis>.csv``: per level of each ablation axis and per metric, n, median, IQR,
  mean and 95 % bootstrap CI (pooled over the other axes), ``tables/<axis>-tests.csv``
  (Kruskal-Wallis across levels) and ``tables/<axis>-pairwise.csv`` (Mann-Whitney U
  between levels, Holm-corrected);
- ``tables/<axis>-by-<hue>.csv`` (dose and training-set size, when a model axis is
  swept too): per model and level, n, degenerate runs, mean and 95 % bootstrap CI —
  the numbers the fit figures draw as points and error bars;
- ``tables/fits.csv``: dose fits D = D0 + A·exp(−B/α) (seed 003, eq. 1: B the electron
  dose, α the fitted characteristic dose, both in e/Å²) and training-set-size learning
  curves, per model and pooled, with standard errors, each parameter's meaning, unit
  and bound, and the degenerate runs left out;
- ``tables/model-by-classes.csv``: mean F1 per architecture × number of classes, as in
  seed 003 Table S1, when both axes are swept;
- with CycleGAN runs in the experiment (seed 000, Khan et al. 2023):
  ``tables/cyclegan.csv`` (one row per run: test distances of the raw and the translated
  simulations to the target), ``tables/cyclegan-summary.csv`` (means per model and the
  relative change), ``figures/cyclegan-fid.png`` (validation FID per epoch) and
  ``figures/cyclegan-<model>-examples.png`` (each model's first repeat's
  ``predictions.png``);
- ``figures/*.png`` and ``report.md`` / ``report.html`` (figures embedded).

Degenerate runs (networks that found no defect pixel on their held-out split,
:func:`hpcbench.report.aggregate.degenerate_runs`) are counted in ``results.csv``
(``degenerate``), the conditions and axis tables and a caveat, drawn as crosses, and
left out of the fits (see :func:`_analyse_axis` for why).

Bootstrap resampling is seeded, so the same runs give byte-identical CSV tables. The
directory is written beside its final place and swapped in at the end: a failure leaves
the previous report intact.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcbench.report import figures as fig
from hpcbench.report.aggregate import (
    CYCLEGAN_METRICS,
    DEGENERATE,
    ReportError,
    cyclegan_history,
    find_experiment,
    load_cyclegan_runs,
    load_runs,
)
from hpcbench.report.content import AxisAnalysis, CycleGANAnalysis, Report
from hpcbench.report.figures import (
    fill_metric_unit,
    image_grid,
    level_label,
    level_summaries,
    metric_label,
    metric_range,
)
from hpcbench.report.render import render_html, render_markdown
from hpcbench.report.statistics import (
    DOSE_FORMULA,
    DOSE_VARIABLES,
    SIZE_FORMULA,
    SIZE_VARIABLES,
    FitOutcome,
    bootstrap_ci,
    fit_dose_outcome,
    fit_size_outcome,
    kruskal_wallis_outcome,
    paired_comparisons,
    pairwise_mann_whitney,
    summarize,
)
from hpcbench.tracking import client_for, latest_grid

__all__ = ["AxisAnalysis", "CycleGANAnalysis", "Report", "build_report", "relative_change"]

FLOAT_FORMAT = "%.10g"
# Seed 001 trained at least five networks per condition.
MIN_REPEATS = 5


def _levels(spec: dict[str, Any] | None, axis: str, runs: pd.DataFrame) -> list[Any]:
    """The axis's levels in the study's order (all declared ones), else sorted found."""
    declared = None
    if spec is not None:
        declared = ((spec.get("train") or {}).get("axes") or {}).get(axis)
    if declared:
        if axis == "classes":
            return ["+".join(v) for v in declared]
        if axis == "dose":
            return [math.nan if v is None else float(v) for v in declared]
        return list(declared)
    values = runs[axis].dropna().unique().tolist()
    if axis == "dose" and runs[axis].isna().any():
        values.append(math.nan)
    return sorted(values, key=lambda v: (isinstance(v, float) and math.isnan(v), v))


def _select(runs: pd.DataFrame, axis: str, level: Any) -> pd.DataFrame:
    if isinstance(level, float) and math.isnan(level):
        return runs[runs[axis].isna()]
    return runs[runs[axis] == level]


def _metrics(runs: pd.DataFrame) -> list[str]:
    """Metrics to analyse: held-out pixel F1, IoU, detection F1, then other test sets'."""
    wanted = ["heldout/f1", "heldout/intersection_over_union", "heldout/detection_f1"]
    sets = sorted(
        {c.split("/")[1] for c in runs.columns if c.startswith("test/") and c.count("/") == 2}
    )
    for name in sets:  # a set that is every run's own held-out split is already there
        if not _is_heldout_set(runs, name):
            wanted += [f"test/{name}/f1", f"test/{name}/detection_f1"]
    return [m for m in wanted if m in runs.columns and runs[m].notna().any()]


def _is_heldout_set(runs: pd.DataFrame, name: str) -> bool:
    """Whether set ``name`` is only ever scored as a run's own held-out split.

    Then its scores are the ``heldout/…`` ones of the runs that have it (a ``dataset``
    axis gives each level's set to its own runs only) and add nothing.
    """
    column = f"test/{name}/f1"
    if column not in runs.columns:
        return False
    scored = runs[column].notna()
    return bool(
        np.array_equal(
            runs.loc[scored, column].to_numpy(),
            runs.loc[scored, "heldout/f1"].to_numpy(),
            equal_nan=True,
        )
    )


def _summary_frame(groups: dict[Any, list[float]], seed: int) -> pd.DataFrame:
    rows = [
        {
            "level": s.level,
            "n": s.n,
            "median": s.median,
            "q1": s.q1,
            "q3": s.q3,
            "iqr": s.iqr,
            "mean": s.mean,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
        }
        for s in summarize(groups, seed=seed)
    ]
    return pd.DataFrame(rows)


def _degenerate_count(part: pd.DataFrame, metric: str) -> int:
    """Degenerate runs of ``part`` that have a finite ``metric`` (those summarised)."""
    return int((part[DEGENERATE] & part[metric].notna()).sum())


def _analyse_axis(
    runs: pd.DataFrame,
    axis: str,
    levels: list[Any],
    metrics: list[str],
    *,
    other_axes: list[str],
    seed: int,
) -> AxisAnalysis:
    """Summaries, tests and (for dose and training-set size) fits of one axis.

    Summaries and tests use every run, degenerate ones included: a collapsed network
    is a real outcome of training at that level, and its score (0) is what a user of
    the recipe would get. The fits leave degenerate runs out (and count them): eq. 1
    and the learning curve describe how a working network's score fades with noise or
    grows with data, whereas a collapse is an all-or-nothing failure of the optimiser;
    a 0 at some dose would drag the curve's low-dose end (``D0 + A``) to 0 and its
    characteristic dose to wherever the collapses stop. With too few doses left the
    fit is not made, and the report says so.
    """
    analysis = AxisAnalysis(axis=axis, levels=levels)
    analysis.missing_levels = [lv for lv in levels if _select(runs, axis, lv).empty]
    for metric in metrics:
        groups = {lv: _select(runs, axis, lv)[metric].tolist() for lv in levels}
        summary = _summary_frame(groups, seed)
        summary.insert(
            2,
            "degenerate",
            [_degenerate_count(_select(runs, axis, lv), metric) for lv in levels],
        )
        analysis.summaries[metric] = summary
        analysis.tests[metric] = kruskal_wallis_outcome(groups)
        if len(levels) <= 12:
            pairs = pairwise_mann_whitney(groups)
            analysis.pairwise[metric] = pd.DataFrame([vars(p) for p in pairs])
            matched = _matched_pairs(runs, axis, levels, metric, other_axes)
            if matched:
                paired = paired_comparisons(matched, seed=seed)
                analysis.paired[metric] = pd.DataFrame([vars(p) for p in paired])
        if axis in ("dose", "train_size"):
            fitter = fit_dose_outcome if axis == "dose" else fit_size_outcome
            bounds = metric_range(metric)
            per_group: dict[str, FitOutcome] = {}
            finite = runs[runs[axis].notna()]
            groups_to_fit = [("all runs", finite)]
            if "model" in other_axes:
                groups_to_fit += [(str(m), p) for m, p in finite.groupby("model", sort=True)]
            for group, part in groups_to_fit:
                per_group[group] = fitter(
                    part[axis].to_numpy(float),
                    part[metric].to_numpy(float),
                    bounds=bounds,
                    exclude=part[DEGENERATE].to_numpy(bool),
                )
            analysis.fits[metric] = per_group
    return analysis


def _matched_pairs(
    runs: pd.DataFrame, axis: str, levels: list[Any], metric: str, other_axes: list[str]
) -> dict[tuple[Any, Any], tuple[list[float], list[float]]]:
    """Runs of each pair of levels matched by repeat (seed) and the other axes' values.

    Pairs of levels with fewer than two matches are left out.
    """
    keys = ["repeat", *other_axes]
    tables = {}
    for level in levels:
        part = _select(runs, axis, level)
        if len(part):
            frame = part[[*keys, metric]].copy()
            frame[keys] = frame[keys].astype(str)  # NaN-safe, hashable join keys
            tables[level] = frame.drop_duplicates(keys).set_index(keys)[metric]
    out: dict[tuple[Any, Any], tuple[list[float], list[float]]] = {}
    present = list(tables)
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            joined = pd.concat([tables[a], tables[b]], axis=1, join="inner", keys=["a", "b"])
            if len(joined) >= 2:
                out[(a, b)] = (joined["a"].tolist(), joined["b"].tolist())
    return out


def _conditions(runs: pd.DataFrame, axes: list[str], metrics: list[str], seed: int) -> pd.DataFrame:
    rows = []
    keys = axes or ["condition"]
    for values, part in runs.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row["runs"] = len(part)
        row["degenerate"] = int(part[DEGENERATE].sum())
        for metric in metrics[:3]:
            finite = part[metric].dropna()
            low, high = bootstrap_ci(finite.to_numpy(), seed=seed)
            row[f"{metric} mean"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{metric} ci_low"] = low
            row[f"{metric} ci_high"] = high
        rows.append(row)
    return pd.DataFrame(rows)


FIT_COLUMNS = [
    "axis",
    "metric",
    "group",
    "formula",
    "variables",
    "parameter",
    "description",
    "bounds",
    "value",
    "stderr",
    "at_bound",
    "r_squared",
    "n",
    "degenerate_left_out",
    "note",
]
"""Columns of ``tables/fits.csv``: one row per fitted parameter (one per failed fit)."""

# The model of each fitted axis: its formula and the meaning of every symbol.
_FIT_MODELS = {"dose": (DOSE_FORMULA, DOSE_VARIABLES), "train_size": (SIZE_FORMULA, SIZE_VARIABLES)}


def _fit_variables(axis: str, metric: str) -> str:
    """The response and the abscissa of an axis's fit, e.g. ``D: heldout/f1 [1]; B: …``."""
    formula, variables = _FIT_MODELS[axis]
    response = formula.split("=")[0].strip()
    unit = fill_metric_unit("[metric unit]", metric)
    abscissa = next(iter(variables))  # listed first, before the parameters
    return f"{response}: {metric} {unit}; {abscissa}: {variables[abscissa]}"


def _fits_frame(axes: list[AxisAnalysis]) -> pd.DataFrame:
    rows = []
    for analysis in axes:
        for metric, per_group in analysis.fits.items():
            formula, variables = _FIT_MODELS[analysis.axis]
            for group, outcome in per_group.items():
                base = {
                    "axis": analysis.axis,
                    "metric": metric,
                    "group": group,
                    "formula": formula,
                    "variables": _fit_variables(analysis.axis, metric),
                }
                fit = outcome.result
                if fit is None:
                    rows.append(
                        {
                            **base,
                            "parameter": "",
                            "description": "",
                            "bounds": "",
                            "value": math.nan,
                            "stderr": math.nan,
                            "at_bound": False,
                            "r_squared": math.nan,
                            "n": 0,
                            "degenerate_left_out": outcome.excluded,
                            "note": outcome.note,
                        }
                    )
                    continue
                for name, value in fit.params.items():
                    rows.append(
                        {
                            **base,
                            "parameter": name,
                            "description": fill_metric_unit(variables[name], metric),
                            "bounds": fit.constraints.get(name, ""),
                            "value": value,
                            "stderr": fit.stderr.get(name, math.nan),
                            "at_bound": name in fit.at_bound,
                            "r_squared": fit.r_squared,
                            "n": fit.n,
                            "degenerate_left_out": outcome.excluded,
                            "note": outcome.note,
                        }
                    )
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def _points_frame(
    runs: pd.DataFrame, axis: str, hue: str, metrics: list[str], seed: int
) -> pd.DataFrame:
    """Per metric, hue level and level: what the fit figures draw (``level_summaries``)."""
    frames = [
        level_summaries(runs, axis, metric, hue=hue, seed=seed).assign(metric=metric)
        for metric in metrics
    ]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["metric", *[c for c in frame.columns if c != "metric"]]]


def _crosses(runs: pd.DataFrame, metric: str) -> str:
    """The caption's clause on degenerate runs ("" when there are none)."""
    flagged = _degenerate_count(runs, metric)
    return f"; crosses are the {flagged} degenerate runs (no defect pixel found)" if flagged else ""


def _box_caption(runs: pd.DataFrame, axis: str, metric: str) -> str:
    """Caption of a box plot: what the box, line, whiskers and marks are."""
    return (
        f"{metric_label(metric)} vs {axis.replace('_', ' ')}. Boxes span the quartiles of the "
        "runs, with a line at the median and whiskers to the furthest run within 1.5 IQR; "
        f"dots are runs{_crosses(runs, metric)}."
    )


def _fit_caption(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    points: pd.DataFrame,
    table: str,
    fits: dict[str, FitOutcome],
    hue: str | None,
) -> str:
    """Caption of a fit figure: runs, bars (and the table holding them), curves."""
    counts = points["n"].astype(int)
    n_text = "0"
    if len(counts):
        low_n, high_n = int(counts.min()), int(counts.max())
        n_text = f"{low_n}" if low_n == high_n else f"{low_n}–{high_n}"
    crosses = _crosses(runs, metric)
    groups = [g for g in fits if g != "all runs"] if hue is not None else ["all runs"]
    made = [g for g in groups if fits[g].result is not None]
    low, high = metric_range(metric)
    formula = _FIT_MODELS[axis][0]
    bounded = (
        f"D0 and D0 + A bounded to the metric's range [{low:g}, {high:g}], so the curve stays in it"
        if axis == "dose"
        else f"F∞ bounded to the metric's range [{low:g}, {high:g}], drawn only inside it"
    )
    if made:
        curves = f"Curves: {formula} fitted to {', '.join(made)}, {bounded} (`tables/fits.csv`)"
    else:
        curves = "No curve: no fit could be made (the text says why)"
    unfitted = [g for g in groups if g not in made]
    if made and unfitted:
        curves += f"; not fitted: {', '.join(unfitted)} (the text says why)"
    return (
        f"{metric_label(metric)} with fits vs {axis.replace('_', ' ')}. Dots are runs"
        + (f"{crosses}, left out of the fits" if crosses else "")
        + ". Bars: mean and 95 % percentile-bootstrap CI of the mean of each point's "
        f"n = {n_text} runs (seeded; the numbers of `{table}`). {curves}."
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _examples(
    client: Any, runs: pd.DataFrame, metric: str, directory: Path
) -> list[tuple[str, str]]:
    """Prediction figures of the best and the median run (by ``metric``)."""
    ranked = runs[runs[metric].notna()].sort_values([metric, "trial_key"], ascending=[False, True])
    if ranked.empty:
        return []
    chosen = [("best", ranked.iloc[0]), ("median", ranked.iloc[len(ranked) // 2])]
    found = []
    for label, row in chosen:
        try:
            path = client.download_artifacts(row["run_id"], "predictions.png", str(directory))
        except Exception:
            continue
        title = (
            f"{label}: {row['condition']} r{row['repeat']} "
            f"({metric.split('/')[-1]} {row[metric]:.2f})"
        )
        found.append((title, Path(path).read_bytes()))
        Path(path).unlink()
    if not found:
        return []
    name = "figures/examples.png"
    (directory / name).write_bytes(image_grid([(t, b) for t, b in found], columns=len(found)))
    return [(" / ".join(t for t, _ in found), name)]


def relative_change(before: float, after: float) -> float:
    """``(after − before) / before``: −0.73 is a 73 % reduction (NaN if ``before`` is 0)."""
    if before == 0 or math.isnan(before) or math.isnan(after):
        return math.nan
    return (after - before) / before


def _cyclegan_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats per model and extractor, and the relative change of the means."""
    rows = []
    for (model, extractor), part in runs.groupby(["model", "extractor"], sort=True):
        row: dict[str, Any] = {"model": model, "extractor": extractor, "runs": len(part)}
        for name in CYCLEGAN_METRICS:
            raw = float(part[f"{name}_raw"].mean())
            translated = float(part[f"{name}_translated"].mean())
            row[f"{name}_raw"] = raw
            row[f"{name}_translated"] = translated
            row[f"{name}_change"] = relative_change(raw, translated)
        rows.append(row)
    columns = ["model", "extractor", "runs"]
    columns += [f"{n}_{k}" for n in CYCLEGAN_METRICS for k in ("raw", "translated", "change")]
    return pd.DataFrame(rows, columns=columns)


def _file_name(text: str) -> str:
    """``text`` with anything but letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _cyclegan(
    client: Any, tracking_uri: str, study: str, directory: Path, *, keys: set[str] | None
) -> CycleGANAnalysis | None:
    """Tables, the FID figure and examples of the study's CycleGAN runs (None if none).

    ``keys``: the CycleGAN trials the reported grid records (every run if ``None``,
    for grids recorded before CycleGAN keys were).
    """
    runs = load_cyclegan_runs(tracking_uri, study, keys=keys or None)
    if runs.empty:
        return None
    analysis = CycleGANAnalysis(runs=runs, summary=_cyclegan_summary(runs))
    _write_csv(runs, directory / "tables" / "cyclegan.csv")
    _write_csv(analysis.summary, directory / "tables" / "cyclegan-summary.csv")
    history = cyclegan_history(tracking_uri, runs)
    if not history.empty:
        extractors = ", ".join(sorted(set(runs["extractor"])))
        analysis.figure = "figures/cyclegan-fid.png"
        (directory / analysis.figure).write_bytes(
            fig.per_epoch(
                history,
                value="translated",
                reference="raw",
                hue="model",
                ylabel=f"validation FID ({extractors})",
                reference_label="raw simulations",
            )
        )
    for model, part in runs.groupby("model", sort=True):
        first = part.sort_values(["repeat", "trial_key"], kind="mergesort").iloc[0]
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = client.download_artifacts(first["run_id"], "predictions.png", scratch)
            except Exception:  # an artifact store without it: no examples, not a failure
                continue
            name = f"figures/cyclegan-{_file_name(str(model))}-examples.png"
            shutil.copyfile(path, directory / name)
        analysis.examples.append((f"{model}, repeat {first['repeat']}", name))
    return analysis


def real_data_table(runs: pd.DataFrame, *, seed: int = 0, resamples: int = 2000) -> pd.DataFrame:
    """Pooled detection scores per evaluated set and condition, CI by bootstrap over images.

    For each ``images/<set>`` column (per-image ``[tp, fp, fn]`` of every run,
    :data:`hpcbench.tracking.TAG_IMAGES`) and condition, the counts of all repeats and
    images are summed: precision TP/(TP+FP), recall TP/(TP+FN), F1 2TP/(2TP+FP+FN).
    The 95 % interval resamples the *images* (the same draw for every repeat, so a
    repeat's images stay paired) ``resamples`` times and takes the 2.5 and 97.5
    percentiles of the pooled F1: the uncertainty from which images were labelled,
    which for a few real images dominates that from training seeds. ``F1 per run`` lists
    each repeat's pooled F1.
    """
    rows: list[dict[str, Any]] = []
    for column in (c for c in runs.columns if c.startswith("images/")):
        name = column.removeprefix("images/")
        part = runs[runs[column].notna()]
        for condition, group in part.groupby("condition", sort=False):
            per_run = [np.asarray(json.loads(str(text)), dtype=np.int64) for text in group[column]]
            if len({c.shape for c in per_run}) != 1 or per_run[0].ndim != 2:
                continue  # runs scored on different image sets: not poolable
            counts = np.stack(per_run)  # (runs, images, 3)
            images = counts.shape[1]
            rng = np.random.default_rng(seed)
            draws = rng.integers(0, images, size=(resamples, images))
            boot = counts[:, draws, :].sum(axis=(0, 2))  # (resamples, 3)
            tp, fp, fn = counts.sum(axis=(0, 1)).astype(float)

            def f1(tp: Any, fp: Any, fn: Any) -> Any:
                denominator = 2 * tp + fp + fn
                return np.divide(
                    2 * tp,
                    denominator,
                    out=np.full_like(tp, np.nan, dtype=float),
                    where=denominator > 0,
                )

            boot_f1 = f1(
                boot[:, 0].astype(float), boot[:, 1].astype(float), boot[:, 2].astype(float)
            )
            run_f1 = [float(f1(*(c.sum(axis=0).astype(float)))) for c in counts]
            rows.append(
                {
                    "test set": name,
                    "condition": condition,
                    "runs": len(group),
                    "images": images,
                    "TP": int(tp),
                    "FP": int(fp),
                    "FN": int(fn),
                    "precision": tp / (tp + fp) if tp + fp else math.nan,
                    "recall": tp / (tp + fn) if tp + fn else math.nan,
                    "F1": float(f1(tp, fp, fn)),
                    "F1 low": float(np.nanpercentile(boot_f1, 2.5)),
                    "F1 high": float(np.nanpercentile(boot_f1, 97.5)),
                    "F1 per run": ", ".join(f"{v:.3f}" for v in run_f1),
                }
            )
    return pd.DataFrame(rows)


def build_report(
    study: str,
    *,
    tracking_uri: str,
    out: str | os.PathLike[str],
    grid: str | None = None,
    seed: int = 0,
) -> Path:
    """Write the report of study ``study`` (an MLflow experiment name) to ``out``.

    Parameters
    ----------
    study : str
        The study's name (its MLflow experiment).
    tracking_uri : str
        MLflow tracking URI.
    out : path
        The report directory (replaced as a whole when the new one is complete).
    grid : str, optional
        Report this grid (hash) rather than the newest one the study ran.
    seed : int
        Seed of the bootstrap resampling.

    Returns
    -------
    Path
        ``out / "report.html"``.

    Raises
    ------
    ReportError
        No such experiment, or no complete runs.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    client = client_for(tracking_uri)
    recorded = latest_grid(client, find_experiment(client, tracking_uri, study), grid)
    if grid is not None and recorded is None:
        raise ReportError(f"study {study!r} has no recorded grid {grid}")
    keys = None
    cyclegan_keys = None
    if recorded is not None:
        keys = {t["key"] for t in recorded["trials"] if t.get("kind") != "cyclegan"}
        cyclegan_keys = {t["key"] for t in recorded["trials"] if t.get("kind") == "cyclegan"}
    table = load_runs(tracking_uri, study, keys=keys)
    spec = None if recorded is None else recorded.get("study")
    runs = table.runs
    caveats: list[str] = []
    missing_trials = 0 if keys is None else len(keys - set(runs["trial_key"]))
    if recorded is None:
        caveats.append(
            "No grid is recorded for this study (runs made before hpcbench recorded grids): "
            "every complete run of the experiment is reported, whatever grid made it."
        )
    if missing_trials:
        caveats.append(
            f"{missing_trials} of the grid's {len(keys or ())} trials have no complete run "
            "(not run yet, failed or interrupted): `hpcbench train` finishes them."
        )
    metrics = _metrics(runs)
    # In the text and figures: pixel and detection F1, held out and on the other test
    # sets (seed 000's point is detection F1 on experiment-like images); IoU and the
    # rest are in the tables.
    shown = [m for m in metrics if m.endswith(("/f1", "/detection_f1"))]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (work / "figures").mkdir()
        _write_csv(runs, work / "results.csv")
        runs.to_parquet(work / "results.parquet", index=False)
        cyclegan = _cyclegan(client, tracking_uri, study, work, keys=cyclegan_keys)
        axes = []
        primary = metrics[0] if metrics else "heldout/f1"
        for axis in table.axes:
            levels = _levels(spec, axis, runs)
            others = [a for a in table.axes if a != axis]
            analysis = _analyse_axis(runs, axis, levels, metrics, other_axes=others, seed=seed)
            rows = []
            for metric, frame in analysis.summaries.items():
                rows.append(frame.assign(metric=metric))
            summary = pd.concat(rows) if rows else pd.DataFrame()
            if not summary.empty:
                summary = summary[["metric", *[c for c in summary.columns if c != "metric"]]]
            _write_csv(summary, work / "tables" / f"{axis}.csv")
            tests = pd.DataFrame(
                [
                    {
                        "metric": m,
                        "test": o.result.test if o.result else "kruskal_wallis",
                        "statistic": o.result.statistic if o.result else math.nan,
                        "p_value": o.result.p_value if o.result else math.nan,
                        "note": o.note,
                    }
                    for m, o in analysis.tests.items()
                ]
            )
            _write_csv(tests, work / "tables" / f"{axis}-tests.csv")
            if analysis.pairwise:
                pairwise = pd.concat([f.assign(metric=m) for m, f in analysis.pairwise.items()])
                _write_csv(pairwise, work / "tables" / f"{axis}-pairwise.csv")
            if analysis.paired:
                paired = pd.concat([f.assign(metric=m) for m, f in analysis.paired.items()])
                _write_csv(paired, work / "tables" / f"{axis}-paired.csv")
            hue = "model" if axis != "model" and "model" in table.axes else None
            points_table = f"tables/{axis}.csv"
            if axis in ("dose", "train_size") and hue is not None and metrics:
                points_table = f"tables/{axis}-by-{hue}.csv"
                _write_csv(_points_frame(runs, axis, hue, metrics, seed), work / points_table)
            for metric in shown:
                name = f"figures/{axis}-{metric.replace('/', '-')}.png"
                (work / name).write_bytes(
                    fig.box_strip(runs, axis, metric, hue=hue, order=levels, seed=seed)
                )
                analysis.figures.append((_box_caption(runs, axis, metric), name))
                if axis in ("dose", "train_size") and metric in analysis.fits:
                    per = analysis.fits[metric]
                    curve = f"figures/{axis}-{metric.replace('/', '-')}-fit.png"
                    label = f"{fig.DEGENERATE_LABEL}, not fitted"
                    if hue is not None:
                        png = fig.metric_vs(
                            runs,
                            axis,
                            metric,
                            hue=hue,
                            fits={k: v.result for k, v in per.items() if k != "all runs"},
                            seed=seed,
                            degenerate_label=label,
                        )
                    else:
                        png = fig.metric_vs(
                            runs,
                            axis,
                            metric,
                            fit=per["all runs"].result,
                            seed=seed,
                            degenerate_label=label,
                        )
                    (work / curve).write_bytes(png)
                    caption = _fit_caption(
                        runs,
                        axis,
                        metric,
                        points=level_summaries(runs, axis, metric, hue=hue, seed=seed),
                        table=points_table,
                        fits=per,
                        hue=hue,
                    )
                    analysis.figures.append((caption, curve))
            axes.append(analysis)
        fits = _fits_frame(axes)
        if not fits.empty:
            _write_csv(fits, work / "tables" / "fits.csv")
        conditions = _conditions(runs, table.axes, metrics, seed)
        _write_csv(conditions, work / "tables" / "conditions.csv")
        model_by_classes = None
        if {"model", "classes"} <= set(table.axes):
            model_by_classes = runs.pivot_table(
                index="model", columns="n_classes", values=primary, aggfunc="mean"
            )
            _write_csv(model_by_classes.reset_index(), work / "tables" / "model-by-classes.csv")
        examples = _examples(client, runs, primary, work)
        counts = runs.groupby(table.axes or ["condition"], dropna=False).size()
        if len(counts) and int(counts.min()) < MIN_REPEATS:
            caveats.append(
                f"Conditions have {_count_range(counts)} runs; seed 001 "
                f"trained at least {MIN_REPEATS} per condition. With so few, rank tests have "
                "little power: a non-significant difference is not evidence of no effect."
            )
        if len(counts) and int(counts.min()) <= 3:
            caveats.append(_small_n_caveat(int(counts.min())))
        degenerate = _degenerate_caveat(runs, table.axes)
        if degenerate:
            caveats.append(degenerate)
        if len(table.axes) > 1:
            caveats.append(
                "Per-axis summaries pool the runs over the other axes' levels; the "
                "conditions table gives every combination."
            )
        if table.incomplete:
            caveats.append(
                f"{table.incomplete} runs of the experiment are incomplete and left out."
            )
        report = Report(
            study=study,
            tracking_uri=tracking_uri,
            table=table,
            spec=spec,
            grid=None if recorded is None else recorded.get("grid"),
            metrics=metrics,
            shown=shown,
            conditions=conditions,
            axes=axes,
            model_by_classes=model_by_classes,
            examples=examples,
            caveats=caveats,
            missing_trials=missing_trials,
            cyclegan=cyclegan,
            real_data=real_data_table(runs, seed=seed),
        )
        (work / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (work / "report.html").write_text(render_html(report, work), encoding="utf-8")
        _swap(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / "report.html"


def _count_range(counts: pd.Series) -> str:
    """``"2"`` or ``"2–5"``: the range of runs per condition."""
    low, high = int(counts.min()), int(counts.max())
    return f"{low}" if low == high else f"{low}–{high}"


def _small_n_caveat(n: int) -> str:
    """Why a 95 % bootstrap interval of n <= 3 runs is the runs' range, and its coverage."""
    coverage = 1.0 - 2.0 ** (1 - n)
    return (
        f"The smallest conditions have {n} runs. With n <= 3 the 95 % percentile-bootstrap "
        "CI of the mean (tables/conditions.csv, the by-model tables and the fit figures' "
        "bars) is the range of the runs: every resample mean lies in it, and a resample "
        "that draws only the lowest (highest) run has probability 1/n^n (1/4 at n = 2, "
        "1/27 at n = 3), more than the 2.5 % in each tail. For a spread symmetric about "
        "the mean, the range of n runs covers it with "
        f"probability 1 − 2^(1−n), {coverage * 100:.0f} % at n = {n}: read the bars as the spread "
        "of the runs, not as a 95 % interval."
    )


def _degenerate_caveat(runs: pd.DataFrame, axes: list[str]) -> str:
    """The caveat naming the degenerate runs per condition ("" when there are none)."""
    flagged = runs[runs[DEGENERATE]]
    if flagged.empty:
        return ""
    keys = axes or ["condition"]
    parts = []
    for values, part in runs.groupby(keys, sort=False, dropna=False):
        count = int(part[DEGENERATE].sum())
        if count:
            values = values if isinstance(values, tuple) else (values,)
            name = " ".join(
                f"{key}={level_label(key, value)}" for key, value in zip(keys, values, strict=True)
            )
            parts.append(f"{name}: {count} of {len(part)}")
    return (
        f"{len(flagged)} of {len(runs)} runs are degenerate — their network found no defect "
        "pixel on its held-out split (pixel F1 = 0; precision undefined where it predicted "
        f"background everywhere): {', '.join(parts)}. They count, with their scores, in the "
        "summaries, tests and error bars, are crosses in the figures and flagged in the "
        "`degenerate` columns of results.csv and the tables, and are left out of the dose and "
        "training-set-size fits, which describe networks that work (tables/fits.csv: "
        "`degenerate_left_out`)."
    )


def _swap(work: Path, out: Path) -> None:
    """Replace ``out`` by ``work`` (the old report is removed only after the rename)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        out.rename(old)
    work.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
