"""MLflow conventions: one experiment per study, one run per trial, found by its key.

This module names things and finds them; it writes runs only for the grid record. Trial
runs are written by the sweep's driver (:class:`hpcbench.train.tracker.MLflowTracker`,
a Ray Tune callback), and reports read them through the functions here, so
:mod:`hpcbench.report` never imports Ray.

Names (DESIGN.md): experiment = study name; the grid record (``grid-<hash>``) is the
parent run of its trials (``mlflow.parentRunId``, MLflow's convention for sweeps); a
trial's run is named by its condition and repeat (``model=unet dose=10000 #0``,
:func:`run_name`) and found by its key; tags ``hpcbench.study``,
``hpcbench.condition``, ``hpcbench.trial_key``, ``hpcbench.dataset_hash``,
``hpcbench.version`` (plus ``hpcbench.repeat``, one ``hpcbench.axis.<name>`` per
ablation axis as a plain string (:func:`axis_tag`, so ``tags."hpcbench.axis.model" =
'unet'`` finds runs) and ``hpcbench.complete`` once the trial has its test metrics),
``mlflow.source.git.commit`` when hpcbench runs from a git checkout; the trial's
datasets as MLflow dataset inputs (name, hash, directory); params = the resolved trial
config, flattened; metrics ``train/…`` and ``val/…`` per epoch (step = epoch) and
``test/<set>/…`` at the last epoch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag

from hpcbench.locking import hold

__all__ = [
    "ARTIFACTS",
    "METRIC_PREFIXES",
    "axis_tag",
    "axis_value",
    "dataset_inputs",
    "default_tracking_uri",
    "ensure_experiment",
    "finished_keys",
    "flatten",
    "git_commit",
    "iter_runs",
    "latest_grid",
    "record_grid",
    "run_name",
    "runs_by_key",
    "runs_view",
]

# Lock file beside a SQLite store, held while the store is created or migrated.
STORE_LOCK = ".mlflow-store.lock"
TAG_STUDY = "hpcbench.study"
TAG_CONDITION = "hpcbench.condition"
TAG_KEY = "hpcbench.trial_key"
TAG_DATASET = "hpcbench.dataset_hash"
TAG_VERSION = "hpcbench.version"
TAG_REPEAT = "hpcbench.repeat"
TAG_COMPLETE = "hpcbench.complete"
# "true" on a trial whose network predicts background everywhere on its test split.
TAG_COLLAPSED = "hpcbench.collapsed"
TAG_AXIS = "hpcbench.axis."
# Per-image detection counts [[tp, fp, fn], ...] of a set scored by hpcbench evaluate:
# hpcbench.images.<set> (a report bootstraps over images from it).
TAG_IMAGES = "hpcbench.images."
# ``segmentation`` or ``cyclegan`` on trial runs, ``grid`` on the grid records.
TAG_KIND = "hpcbench.kind"
METRIC_PREFIXES = ("train/", "val/", "test/")
ARTIFACTS = ("best.pt", "predictions.png", "trial.json")
# MLflow's own tags: a child run names its parent; the commit of the code that ran.
TAG_PARENT = "mlflow.parentRunId"
TAG_GIT_COMMIT = "mlflow.source.git.commit"


def axis_tag(value: Any) -> str:
    """An ablation axis value as a plain tag string: ``unet``, ``10000``, ``none``.

    Floats as ``{:g}`` (as in the condition label) when that is exact, else in full;
    ``None`` as ``none``; a list (``classes``) joined by ``+``.
    """
    if value is None:
        return "none"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if math.isfinite(value) and float(short) == value else repr(value)
    if isinstance(value, list | tuple):
        return "+".join(axis_tag(v) for v in value)
    return str(value)


def axis_value(text: str) -> Any:
    """An axis tag's value: the plain string, or the JSON that older stores wrote decoded.

    Stores written before tags were plain hold JSON (``"unet"`` quoted, lists, ``null``);
    those are decoded. Numbers stay strings (either form): the reader knows the axis type.
    """
    if text == "null" or text[:1] in ('"', "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def run_name(label: str, repeat: int | str) -> str:
    """A trial run's name: its condition label and repeat, ``model=unet dose=10000 #0``."""
    return f"{label} #{repeat}"


@functools.cache
def git_commit() -> str | None:
    """The commit of the git checkout hpcbench runs from, or ``None`` (never raises).

    Only a checkout whose top level holds this very package counts, so an installed
    hpcbench inside some other repository (a virtual environment in a project) gives
    ``None`` rather than that repository's commit.
    """
    package = Path(__file__).resolve().parent
    try:
        found = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = found.stdout.split()
    if found.returncode != 0 or len(lines) != 2:
        return None
    top, commit = lines
    if Path(top).resolve() / package.name != package:
        return None
    return commit


def dataset_inputs(
    datasets: Mapping[str, Mapping[str, Any]], directories: Mapping[str, str], training: str
) -> list[DatasetInput]:
    """A trial's datasets as MLflow dataset inputs (nothing is read).

    Each input is named by the dataset, with its content hash as digest, its directory
    as a local source and its row count as profile; context ``train`` for the dataset
    the trial trains on, ``eval`` for the others (its test sets). Datasets without a
    known directory are left out.

    Parameters
    ----------
    datasets : mapping
        Dataset name → the trial's record of it (``hash`` and ``size``).
    directories : mapping
        Dataset name → its directory.
    training : str
        The dataset the trial trains on.
    """
    inputs = []
    for name, info in datasets.items():
        if name not in directories:
            continue
        source = json.dumps({"uri": str(Path(directories[name]).resolve())})
        profile = json.dumps({"num_rows": info["size"]}) if "size" in info else None
        dataset = Dataset(name, str(info["hash"]), "local", source, profile=profile)
        context = "train" if name == training else "eval"
        inputs.append(DatasetInput(dataset, [InputTag("mlflow.data.context", context)]))
    return inputs


def default_tracking_uri(root: str | os.PathLike[str]) -> str:
    """``sqlite:///<root>/mlflow.db`` with an absolute path."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def _artifact_location(tracking_uri: str) -> str | None:
    """``<db dir>/mlartifacts`` beside a SQLite store (MLflow's default is the cwd)."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return (database.parent / "mlartifacts").resolve().as_uri()
    return None


def client_for(tracking_uri: str) -> MlflowClient:
    """An :class:`mlflow.MlflowClient` for ``tracking_uri`` (SQLite parent dir created).

    MLflow's INFO lines on creating or migrating a SQLite store, and its artifact
    download progress bars (one per ``best.pt`` read by predict and evaluate), are kept
    off the console (its warnings and errors still show).
    """
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if tracking_uri.startswith("sqlite:///"):
        # Two drivers creating one SQLite store at once crash in MLflow's migrations
        # ("Online migration expected to match one row"): create it under a lock.
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        with hold(database.parent, wait=300, what=f"MLflow store {database}", name=STORE_LOCK):
            client = MlflowClient(tracking_uri=tracking_uri)
            client.search_experiments(max_results=1)  # creates and migrates the tables
        return client
    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) if new."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=_artifact_location(tracking_uri)))


def iter_runs(client: MlflowClient, experiment_id: str) -> Iterator[Any]:
    """Every run of an experiment, page by page (MLflow returns at most 1000 at once)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def runs_by_key(
    client: MlflowClient, experiment_id: str, keys: Iterable[str] | None = None
) -> dict[str, list[Any]]:
    """Runs of an experiment grouped by trial key (all keys, or only ``keys``)."""
    wanted = None if keys is None else set(keys)
    grouped: dict[str, list[Any]] = {}
    for run in iter_runs(client, experiment_id):
        key = run.data.tags.get(TAG_KEY)
        if key is not None and (wanted is None or key in wanted):
            grouped.setdefault(key, []).append(run)
    return grouped


def finished_keys(client: MlflowClient, experiment_id: str) -> set[str]:
    """Keys of trials whose run is complete (test metrics and artifacts logged)."""
    return {
        key
        for key, runs in runs_by_key(client, experiment_id).items()
        if any(run.data.tags.get(TAG_COMPLETE) == "true" for run in runs)
    }


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → ``{"a.b": "value"}`` strings (lists as JSON) for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


TAG_GRID = "hpcbench.grid"
TAG_GRID_TIME = "hpcbench.grid_time"
GRID_FILE = "grid.json"


def record_grid(
    client: MlflowClient,
    experiment_id: str,
    *,
    study: str,
    grid: str,
    trials: list[dict[str, Any]],
    spec: Mapping[str, Any],
) -> str:
    """Record a sweep's grid as a run of kind ``grid`` (``grid-<hash>``), marked newest.

    The run holds ``grid.json``: the study spec and each trial's key, condition and
    repeat. Reports read the newest grid (tag ``hpcbench.grid_time``) to know which runs
    make up the current study when an edited study left older runs in the experiment.
    It is the parent run of the trial runs the sweep creates (their
    ``mlflow.parentRunId``); it has no trial key, so :func:`runs_by_key` and
    :func:`finished_keys` never see it.

    Returns
    -------
    str
        The grid run's id.
    """
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_GRID}` = '{grid}'", max_results=1
    )
    if found:
        run_id = str(found[0].info.run_id)
    else:
        tags = {TAG_KIND: "grid", TAG_GRID: grid, TAG_STUDY: study}
        commit = git_commit()
        if commit is not None:
            tags[TAG_GIT_COMMIT] = commit
        run = client.create_run(experiment_id, run_name=f"grid-{grid}", tags=tags)
        run_id = str(run.info.run_id)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / GRID_FILE
            path.write_text(json.dumps({"grid": grid, "study": spec, "trials": trials}, indent=1))
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")
    client.set_tag(run_id, TAG_GRID_TIME, f"{time.time():.3f}")
    return run_id


def latest_grid(
    client: MlflowClient, experiment_id: str, grid: str | None = None
) -> dict[str, Any] | None:
    """The newest recorded grid (or the one with hash ``grid``): ``grid.json``'s content."""
    runs = list(client.search_runs([experiment_id], filter_string=f"tags.`{TAG_KIND}` = 'grid'"))
    if grid is not None:
        runs = [r for r in runs if r.data.tags.get(TAG_GRID) == grid]
    if not runs:
        return None
    newest = max(runs, key=lambda r: float(r.data.tags.get(TAG_GRID_TIME, "0")))
    with tempfile.TemporaryDirectory() as directory:
        path = client.download_artifacts(newest.info.run_id, GRID_FILE, directory)
        content: dict[str, Any] = json.loads(Path(path).read_text())
    return content


# The runs view hpcbench keeps in each experiment: an MLflow saved view (the experiment
# tag ``mlflow.sharedViewState.<id>``, listed under "Views" in the runs page and opened by
# ``#/experiments/<id>/runs?viewStateShareKey=<id>``).
VIEW_ID = "hpcbench"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
VIEW_NAME = "hpcbench: trials by condition"
# Per held-out test set, the scores the view shows (the report's headline numbers).
VIEW_SCORES = ("f1", "detection_f1")


def _column(kind: str, key: str) -> str:
    """A runs-table column id as the MLflow UI spells it: ``tags.`hpcbench.axis.dose```."""
    return f"{kind}.`{key}`"


def runs_view(client: MlflowClient, experiment_id: str) -> str | None:
    """Save the experiment's runs view: trials grouped by condition, axes and scores shown.

    A saved view of the MLflow UI (3.x): the runs table grouped by the tag
    ``hpcbench.condition`` (a row per condition with the mean of its repeats, the
    repeats under it), with a column per ablation axis (in the study's order), the
    held-out F1 and detection F1 of each test set, ``val/loss`` and the dataset inputs.
    The view is rewritten only when what it shows changed. The UI has no URL parameter
    for columns; a saved view is how a link opens the table with them.

    Returns
    -------
    str or None
        The view's id, for ``viewStateShareKey=`` in the runs page's URL; ``None`` if the
        experiment has no trial runs.
    """
    axes: dict[str, None] = {}
    scores: set[str] = set()
    trials = 0
    for run in iter_runs(client, experiment_id):
        tags = run.data.tags
        if TAG_KEY not in tags:
            continue
        trials += 1
        # The condition label names the axes in the study's order: "model=unet dose=1e+06".
        for word in tags.get(TAG_CONDITION, "").split():
            name = word.partition("=")[0]
            if f"{TAG_AXIS}{name}" in tags:
                axes[name] = None
        axes.update(
            dict.fromkeys(sorted(k.removeprefix(TAG_AXIS) for k in tags if k.startswith(TAG_AXIS)))
        )
        for metric in run.data.metrics:
            parts = metric.split("/")
            if len(parts) == 3 and parts[0] == "test" and parts[2] in VIEW_SCORES:
                scores.add(metric)
    if not trials:
        return None
    axis_columns = [_column("tags", f"{TAG_AXIS}{axis}") for axis in axes]
    order = sorted(scores, key=lambda m: (m.split("/")[1], VIEW_SCORES.index(m.split("/")[2])))
    metric_columns = [_column("metrics", m) for m in order]
    metric_columns.append(_column("metrics", "val/loss"))
    name_column = _column("attributes", "Run Name")
    state = {
        "selectedColumns": [*axis_columns, *metric_columns, _column("attributes", "Dataset")],
        "columnOrder": [name_column, *axis_columns, *metric_columns],
        "columnWidths": {name_column: 260, **dict.fromkeys(axis_columns, 160)},
        "groupBy": {
            "aggregateFunction": "average",
            "groupByKeys": [{"mode": "tag", "groupByData": TAG_CONDITION}],
        },
    }
    text = json.dumps(state, sort_keys=True)
    experiment = client.get_experiment(experiment_id)
    old = experiment.tags.get(VIEW_TAG)
    now = int(time.time() * 1000)
    created = now
    if old is not None:
        try:
            envelope = json.loads(old)
            if envelope.get("state") == text and envelope.get("name") == VIEW_NAME:
                return VIEW_ID
            created = int(envelope.get("createdAt", now))
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            pass
    envelope = json.dumps(
        {"name": VIEW_NAME, "createdAt": created, "updatedAt": now, "state": text}
    )
    if len(envelope) > 20_000:  # MLflow's limit on an experiment tag's value
        return None
    client.set_experiment_tag(experiment_id, VIEW_TAG, envelope)
    return VIEW_ID
