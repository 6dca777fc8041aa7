"""MLflow conventions: one experiment per study, one run per trial, found by its key.

This module names things and finds them; it writes runs only for the grid record. Trial
runs are written by the sweep's driver (:class:`hpcbench.train.tracker.MLflowTracker`,
a Ray Tune callback), and reports read them through the functions here, so
:mod:`hpcbench.report` never imports Ray.

Names (DESIGN.md): experiment = study name; run name = trial key; tags
``hpcbench.study``, ``hpcbench.condition``, ``hpcbench.trial_key``,
``hpcbench.dataset_hash``, ``hpcbench.version`` (plus ``hpcbench.repeat``, one
``hpcbench.axis.<name>`` per ablation axis and ``hpcbench.complete`` once the trial has
its test metrics); params = the resolved trial config, flattened; metrics ``train/…``
and ``val/…`` per epoch (step = epoch) and ``test/<set>/…`` at the last epoch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from hpcbench.locking import hold

__all__ = [
    "ARTIFACTS",
    "METRIC_PREFIXES",
    "default_tracking_uri",
    "ensure_experiment",
    "finished_keys",
    "flatten",
    "iter_runs",
    "latest_grid",
    "record_grid",
    "runs_by_key",
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

    MLflow's INFO lines on creating or migrating a SQLite store are kept off the
    console (its warnings and errors still show).
    """
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
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
    """
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_GRID}` = '{grid}'", max_results=1
    )
    if found:
        run_id = str(found[0].info.run_id)
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"grid-{grid}",
            tags={TAG_KIND: "grid", TAG_GRID: grid, TAG_STUDY: study},
        )
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
