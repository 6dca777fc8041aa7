"""A study's MLflow runs as one table: conditions, repeats and test metrics.

Everything comes from MLflow (the report can be rebuilt from the tracking store alone):
the ablation values from the ``hpcbench.axis.<axis>`` tags, the repeat from
``hpcbench.repeat``, the resolved trial config from the params, the scores from the
``test/<set>/<metric>`` metrics. Only complete runs (tag ``hpcbench.complete``) are
used; the others are counted so the report can say so.

Rows are sorted by the axis values (in axis order) and repeat, then trial key, and
columns are in a fixed order, so the same runs give the same table byte for byte.
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
    TAG_KEY,
    TAG_REPEAT,
    TAG_STUDY,
    TAG_VERSION,
    client_for,
    iter_runs,
)

__all__ = ["AXES", "HELDOUT", "ReportError", "RunTable", "find_experiment", "load_runs"]

# Ablation axes in the order the study schema declares them (hpcbench.study.Axes).
AXES = ("model", "dataset", "train_size", "dose", "classes", "learning_rate")
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
        beside it), ``heldout/<metric>`` and every ``test/<set>/<metric>``.
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
    value = json.loads(text)
    if axis == "dose":
        return math.nan if value is None else float(value)
    if axis == "classes":
        return "+".join(value)
    if axis == "train_size":
        return int(value)
    if axis == "learning_rate":
        return float(value)
    return str(value)


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
    frame = frame[[*head, *axis_columns, *heldout, *tests]]
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
