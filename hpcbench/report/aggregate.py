"""A study's MLflow runs as one table: conditions, repeats and test metrics.

Everything comes from MLflow (the report can be rebuilt from the tracking store alone):
the ablation values from the ``hpcbench.axis.<axis>`` tags, the repeat from
``hpcbench.repeat``, the resolved trial config from the params, the scores from the
``test/<set>/<metric>`` metrics. Only complete runs (tag ``hpcbench.complete``) are
used; the others are counted so the report can say so.

Rows are sorted by the axis values (in axis order) and repeat, then trial key, and
columns are in a fixed order, so the same runs give the same table byte for byte.

A run whose network found no defect pixel on its own held-out split is flagged
``degenerate`` (:func:`degenerate_runs`): a segmentation network trained on heavily
imbalanced masks can collapse to predicting background everywhere (4 of the
quickstart's 8 FCN runs did, at 1e3 and 1e4 e/Å²), and its scores then measure that
collapse rather than how well it sees defects at that dose.

CycleGAN runs (tag ``hpcbench.kind=cyclegan``, seed 000) share the experiment; they are
read apart by :func:`load_cyclegan_runs` and :func:`cyclegan_history`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hpcbench.tracking import (
    TAG_AXIS,
    TAG_COMPLETE,
    TAG_CONDITION,
    TAG_IMAGES,
    TAG_KEY,
    TAG_KIND,
    TAG_REPEAT,
    TAG_STUDY,
    TAG_VERSION,
    axis_value,
    client_for,
    iter_runs,
)

__all__ = [
    "AXES",
    "CYCLEGAN_COLUMNS",
    "CYCLEGAN_METRICS",
    "DEGENERATE",
    "HELDOUT",
    "ReportError",
    "RunTable",
    "cyclegan_history",
    "degenerate_runs",
    "find_experiment",
    "load_cyclegan_runs",
    "load_runs",
]

# Ablation axes in the order the study schema declares them (hpcbench.study.Axes).
AXES = ("model", "dataset", "train_size", "dose", "fidelity", "classes", "learning_rate")
# Scores of each run on its own training dataset's held-out split, as heldout/<name>.
HELDOUT = (
    "f1",
    "intersection_over_union",
    "precision",
    "recall",
    "detection_f1",
    "detection_precision",
    "detection_recall",
    "localisation_error",
)


DEGENERATE = "degenerate"
"""Run-table column flagging runs whose predictions collapsed (:func:`degenerate_runs`)."""


class ReportError(RuntimeError):
    """No runs to report (one line, names what is missing)."""


@dataclass
class RunTable:
    """A study's complete runs.

    Attributes
    ----------
    runs : pandas.DataFrame
        One row per complete run: ``run_id``, ``trial_key``, ``condition``, ``repeat``,
        one column per ablation axis (``classes`` joined by ``+`` and ``n_classes``
        beside it), ``degenerate`` (:func:`degenerate_runs`), ``heldout/<metric>`` and
        every ``test/<set>/<metric>``.
    axes : list of str
        The ablation axes the runs vary (from their tags), in schema order.
    configs : dict
        Trial key → resolved trial config (from the params, JSON-decoded).
    incomplete : int
        Runs of the study without the complete tag (failed or interrupted trials).
    versions : list of str
        hpcbench versions that made the runs.
    """

    runs: pd.DataFrame
    axes: list[str]
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    incomplete: int = 0
    versions: list[str] = field(default_factory=list)


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def _axis_value(axis: str, text: str) -> Any:
    """An axis tag's typed value: plain strings, or older stores' JSON."""
    value = axis_value(text)
    if axis == "dose":
        return math.nan if value is None or value == "none" else float(value)
    if axis == "classes":
        return value if isinstance(value, str) else "+".join(value)
    if axis == "train_size":
        return int(value)
    if axis == "learning_rate":
        return float(value)
    return str(value)


def degenerate_runs(runs: pd.DataFrame, *, split: str = "heldout") -> pd.Series:
    """Flag runs whose network found no defect pixel on ``split``: collapsed runs.

    A run is degenerate when its macro pixel F1 on ``split`` is exactly 0 and either its
    precision is undefined (NaN: no pixel of a trained class was predicted, i.e. all
    background) or its recall is 0 (no labelled pixel was found). F1 = 0 alone would
    also flag a network that predicts defects on a split without any (recall NaN,
    precision 0); that is a false-positive problem, not a collapse, and is not flagged.
    A run with an F1 of NaN is not flagged.

    Parameters
    ----------
    runs : pandas.DataFrame
        Run table with ``<split>/f1`` and, where logged, ``<split>/precision`` and
        ``<split>/recall`` (missing columns count as NaN).
    split : str, default ``"heldout"``
        Column prefix: ``heldout`` (each run's own test split) or ``test/<set>``.

    Returns
    -------
    pandas.Series of bool
        True for degenerate runs, indexed like ``runs``, named ``degenerate``.

    Examples
    --------
    >>> frame = pd.DataFrame(
    ...     {"heldout/f1": [0.0, 0.0, 0.0, 0.7], "heldout/precision": [math.nan, 0.0, 0.0, 0.7],
    ...      "heldout/recall": [0.0, 0.0, math.nan, 0.7]}
    ... )
    >>> degenerate_runs(frame).tolist()
    [True, True, False, False]
    """

    def column(name: str) -> pd.Series:
        key = f"{split}/{name}"
        if key not in runs.columns:
            return pd.Series(math.nan, index=runs.index, dtype=float)
        return pd.to_numeric(runs[key], errors="coerce").astype(float)

    f1, precision, recall = column("f1"), column("precision"), column("recall")
    flags = (f1 == 0.0) & (precision.isna() | (recall == 0.0))
    return flags.astype(bool).rename(DEGENERATE)


def find_experiment(client: Any, tracking_uri: str, study: str) -> str:
    """The id of experiment ``study``; :class:`ReportError` if there is none."""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise ReportError(
            f"no MLflow experiment {study!r} in {tracking_uri}: run `hpcbench train` on the "
            "study first, or pass --tracking-uri"
        )
    return str(experiment.experiment_id)


def load_runs(tracking_uri: str, study: str, *, keys: set[str] | None = None) -> RunTable:
    """Read every complete run of experiment ``study`` (only trial ``keys`` if given).

    Raises
    ------
    ReportError
        The experiment does not exist or holds no complete run.
    """
    client = client_for(tracking_uri)
    experiment_id = find_experiment(client, tracking_uri, study)
    rows: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    axes: set[str] = set()
    incomplete = 0
    versions: set[str] = set()
    for run in iter_runs(client, experiment_id):
        tags = run.data.tags
        if tags.get(TAG_STUDY) != study or TAG_KEY not in tags:
            continue
        if tags.get(TAG_KIND, "segmentation") != "segmentation":
            continue  # CycleGAN runs are read by load_cyclegan_runs
        if keys is not None and tags[TAG_KEY] not in keys:
            continue
        if tags.get(TAG_COMPLETE) != "true":
            incomplete += 1
            continue
        key = tags[TAG_KEY]
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "trial_key": key,
            "condition": tags.get(TAG_CONDITION, ""),
            "repeat": int(tags.get(TAG_REPEAT, 0)),
        }
        for name, text in tags.items():
            if name.startswith(TAG_AXIS):
                axis = name.removeprefix(TAG_AXIS)
                axes.add(axis)
                row[axis] = _axis_value(axis, text)
        params = {name: _param_value(text) for name, text in run.data.params.items()}
        configs[key] = params
        dataset = str(params.get("dataset", ""))
        metrics = run.data.metrics
        for name in HELDOUT:
            row[f"heldout/{name}"] = metrics.get(f"test/{dataset}/{name}", math.nan)
        own = f"test/{dataset}/f1/"
        for name, value in metrics.items():
            if name.startswith("test/") and name.count("/") >= 2:
                row[name] = value
            if name.startswith(own):
                row[f"heldout/f1/{name.removeprefix(own)}"] = value
        for name, text in tags.items():
            if name.startswith(TAG_IMAGES):  # per-image counts of an evaluated set
                row[f"images/{name.removeprefix(TAG_IMAGES)}"] = text
        if TAG_VERSION in tags:
            versions.add(tags[TAG_VERSION])
        rows.append(row)
    if not rows:
        raise ReportError(
            f"experiment {study!r} in {tracking_uri} has no complete runs"
            + (f" ({incomplete} incomplete)" if incomplete else "")
            + ": run `hpcbench train` first"
        )
    ordered_axes = [axis for axis in AXES if axis in axes]
    frame = pd.DataFrame(rows)
    if "classes" in frame.columns:
        frame["n_classes"] = frame["classes"].map(lambda text: len(str(text).split("+")) + 1)
    head = ["run_id", "trial_key", "condition", "repeat"]
    axis_columns = [c for c in (*ordered_axes, "n_classes") if c in frame.columns]
    heldout = [f"heldout/{name}" for name in HELDOUT]
    heldout += sorted(c for c in frame.columns if c.startswith("heldout/f1/"))
    tests = sorted(c for c in frame.columns if c.startswith("test/"))
    images = sorted(c for c in frame.columns if c.startswith("images/"))
    frame[DEGENERATE] = degenerate_runs(frame)
    frame = frame[[*head, *axis_columns, DEGENERATE, *heldout, *tests, *images]]
    frame = frame.sort_values(
        [*ordered_axes, "repeat", "trial_key"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)
    return RunTable(
        runs=frame,
        axes=ordered_axes,
        configs=configs,
        incomplete=incomplete,
        versions=sorted(versions),
    )


# CycleGAN image distances, each logged as ``<split>/<name>`` (translated sims vs the
# target) and ``<split>/<name>_raw`` (raw sims vs the target).
CYCLEGAN_METRICS = ("frechet_distance", "histogram_kl", "power_spectrum_distance")
CYCLEGAN_COLUMNS = (
    "run_id",
    "trial_key",
    "model",
    "repeat",
    "source",
    "target",
    "extractor",
    "epochs",
    "best_epoch",
    *(f"{name}_{kind}" for name in CYCLEGAN_METRICS for kind in ("raw", "translated")),
)


def load_cyclegan_runs(
    tracking_uri: str, study: str, *, keys: set[str] | None = None
) -> pd.DataFrame:
    """Read the complete CycleGAN runs (tag ``hpcbench.kind=cyclegan``) of ``study``.

    Only trial ``keys`` if given (the CycleGAN trials the reported grid records), else
    every complete one in the experiment.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI.
    study : str
        The study's name (its MLflow experiment).
    keys : set of str, optional
        Read only these trial keys.

    Returns
    -------
    pandas.DataFrame
        One row per complete run, columns :data:`CYCLEGAN_COLUMNS`: ``run_id``,
        ``trial_key``, ``model`` (the ``model`` axis tag, else the ``model_name``
        param), ``repeat``, ``source`` and ``target`` datasets, ``extractor`` (the FID
        feature extractor), ``epochs``, ``best_epoch`` and, per distance, the test
        value of the raw simulations (``<name>_raw``) and of the translated ones
        (``<name>_translated``), NaN where not logged. Sorted by model, repeat and
        trial key; empty (with these columns) when there is no complete CycleGAN run.

    Raises
    ------
    ReportError
        The experiment does not exist.
    """
    client = client_for(tracking_uri)
    experiment_id = find_experiment(client, tracking_uri, study)
    rows: list[dict[str, Any]] = []
    for run in iter_runs(client, experiment_id):
        tags = run.data.tags
        if tags.get(TAG_KIND) != "cyclegan" or tags.get(TAG_STUDY) != study:
            continue
        if TAG_KEY not in tags or tags.get(TAG_COMPLETE) != "true":
            continue
        if keys is not None and tags[TAG_KEY] not in keys:
            continue
        params = run.data.params
        metrics = run.data.metrics
        model = params.get("model_name", "")
        if f"{TAG_AXIS}model" in tags:
            model = _axis_value("model", tags[f"{TAG_AXIS}model"])
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "trial_key": tags[TAG_KEY],
            "model": str(model),
            "repeat": int(tags.get(TAG_REPEAT, 0)),
            "source": params.get("dataset", ""),
            "target": params.get("target", ""),
            "extractor": params.get("fid.features", ""),
            "epochs": int(params["epochs"]) if "epochs" in params else -1,
            "best_epoch": int(metrics.get("test/best_epoch", -1)),
        }
        for name in CYCLEGAN_METRICS:
            row[f"{name}_raw"] = metrics.get(f"test/{name}_raw", math.nan)
            row[f"{name}_translated"] = metrics.get(f"test/{name}", math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(CYCLEGAN_COLUMNS))
    return frame.sort_values(["model", "repeat", "trial_key"], kind="mergesort").reset_index(
        drop=True
    )


def cyclegan_history(
    tracking_uri: str, runs: pd.DataFrame, *, metric: str = "val/frechet_distance"
) -> pd.DataFrame:
    """Per-epoch history of a CycleGAN validation metric and its raw counterpart.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI.
    runs : pandas.DataFrame
        Runs of :func:`load_cyclegan_runs` (``run_id``, ``trial_key``, ``model``,
        ``repeat`` are used).
    metric : str, default ``"val/frechet_distance"``
        The metric of the translated images; ``<metric>_raw`` is read beside it.

    Returns
    -------
    pandas.DataFrame
        One row per run and epoch (MLflow step): ``run_id``, ``trial_key``, ``model``,
        ``repeat``, ``epoch``, ``translated`` and ``raw`` (NaN where a step lacks one),
        in the order of ``runs`` then epoch.
    """
    client = client_for(tracking_uri)
    columns = ["run_id", "trial_key", "model", "repeat", "epoch", "translated", "raw"]
    rows: list[dict[str, Any]] = []
    for run in runs.itertuples(index=False):
        steps: dict[int, dict[str, float]] = {}
        for column, name in (("translated", metric), ("raw", f"{metric}_raw")):
            # Ordered by timestamp, so a step logged twice keeps its newest value.
            history = sorted(client.get_metric_history(run.run_id, name), key=lambda m: m.timestamp)
            for point in history:
                steps.setdefault(int(point.step), {})[column] = float(point.value)
        for epoch in sorted(steps):
            rows.append(
                {
                    "run_id": run.run_id,
                    "trial_key": run.trial_key,
                    "model": run.model,
                    "repeat": run.repeat,
                    "epoch": epoch,
                    "translated": steps[epoch].get("translated", math.nan),
                    "raw": steps[epoch].get("raw", math.nan),
                }
            )
    return pd.DataFrame(rows, columns=columns)
