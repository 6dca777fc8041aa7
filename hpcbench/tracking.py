"""MLflow conventions: one experiment per study, one run per trial, found by its key.

Runs are written by the driver (a Ray Tune callback), never by the trials, so many
processes never write one SQLite file. A run is found by the tag
``hpcbench.trial_key`` rather than created per Tune trial: after a crash and
``Tuner.restore`` the trial reuses its run, and a metric step that is already logged
(a trial resumed from an older checkpoint repeats epochs) is not logged twice. The
stock ``MLflowLoggerCallback`` does neither (measured: 8 runs for 6 trials after a
SIGKILL and restore) and logs Ray's bookkeeping keys as metrics.

Names (DESIGN.md): experiment = study name; run name = trial key; tags
``hpcbench.study``, ``hpcbench.condition``, ``hpcbench.trial_key``,
``hpcbench.dataset_hash``, ``hpcbench.version`` (plus ``hpcbench.repeat``, one
``hpcbench.axis.<name>`` per ablation axis and ``hpcbench.complete`` once the trial has
its test metrics); params = the resolved trial config, flattened; metrics ``train/…``
and ``val/…`` per epoch (step = epoch) and ``test/<set>/…`` at the last epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from hpcbench.train.grid import unwrap

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune.experiment import Trial

__all__ = [
    "METRIC_PREFIXES",
    "MLflowTracker",
    "default_tracking_uri",
    "ensure_experiment",
    "finished_keys",
    "flatten",
    "iter_runs",
    "latest_grid",
    "record_grid",
    "runs_by_key",
]

TAG_STUDY = "hpcbench.study"
TAG_CONDITION = "hpcbench.condition"
TAG_KEY = "hpcbench.trial_key"
TAG_DATASET = "hpcbench.dataset_hash"
TAG_VERSION = "hpcbench.version"
TAG_REPEAT = "hpcbench.repeat"
TAG_COMPLETE = "hpcbench.complete"
TAG_AXIS = "hpcbench.axis."
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
    """An :class:`mlflow.MlflowClient` for ``tracking_uri`` (SQLite parent dir created)."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
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


class MLflowTracker(Callback):
    """Ray Tune callback writing one MLflow run per trial key (see the module notes).

    The trial's Tune config must hold ``key``, ``label``, ``condition``, ``repeat`` and
    ``trial`` (the resolved config). Picklable: ``Tuner.restore`` rebuilds it.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI (``sqlite:///…`` or an ``mlflow server``).
    experiment : str
        Experiment name (the study's name).
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._runs: dict[str, str] = {}
        self._logged: dict[str, dict[str, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking_uri"], state["experiment"])  # type: ignore[misc]

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (made on first use, with the experiment)."""
        if self._client is None:
            self._client = client_for(self.tracking_uri)
            self._experiment_id = ensure_experiment(
                self._client, self.experiment, self.tracking_uri
            )
        return self._client

    def run_id(self, config: Mapping[str, Any]) -> str:
        """The run of a trial config: found by key (the newest if several), else created."""
        key = str(config["key"])
        if key in self._runs:
            return self._runs[key]
        client = self.client
        assert self._experiment_id is not None
        runs = client.search_runs(
            [self._experiment_id],
            filter_string=f"tags.`{TAG_KEY}` = '{key}'",
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            run = runs[0]
            run_id = str(run.info.run_id)
            logged: dict[str, int] = {}
            for metric in run.data.metrics:
                history = client.get_metric_history(run_id, metric)
                logged[metric] = max((m.step for m in history), default=-1)
            self._logged[run_id] = logged
            if not run.data.params:
                self._log_params(run_id, config)
        else:
            trial = config["trial"]
            tags = {
                TAG_STUDY: str(trial["study"]),
                TAG_CONDITION: str(config["label"]),
                TAG_KEY: key,
                TAG_DATASET: str(trial["datasets"][trial["dataset"]]["hash"]),
                TAG_VERSION: str(trial["version"]),
                TAG_REPEAT: str(config["repeat"]),
                TAG_KIND: str(trial.get("task", "segmentation")),
                **{
                    f"{TAG_AXIS}{axis}": json.dumps(value)
                    for axis, value in config["condition"].items()
                },
            }
            run = client.create_run(self._experiment_id, run_name=key, tags=tags)
            run_id = str(run.info.run_id)
            self._logged[run_id] = {}
            self._log_params(run_id, config)
        self._runs[key] = run_id
        return run_id

    def _log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in flatten(config["trial"]).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])

    def log_result(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> int:
        """Log a trial result's metrics at step ``epoch``; return how many were new."""
        from mlflow.entities import Metric

        run_id = self.run_id(config)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        timestamp = int(float(result.get("timestamp", 0)) * 1000)
        logged = self._logged[run_id]
        metrics = []
        for name, value in result.items():
            if not name.startswith(METRIC_PREFIXES) or not isinstance(value, int | float):
                continue
            if logged.get(name, -1) >= step:
                continue  # already logged (a trial resumed from an older checkpoint)
            metrics.append(Metric(name, float(value), timestamp, step))
            logged[name] = step
        for start in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[start : start + 500])
        return len(metrics)

    # ------------------------------------------------------------- Tune hooks

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Find or create the trial's run; mark it running."""
        run_id = self.run_id(unwrap(trial.config))
        self.client.update_run(run_id, status="RUNNING")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """Log the result's new metrics."""
        self.log_result(unwrap(trial.config), result)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Upload the artifacts, tag the run complete and finish it."""
        run_id = self.run_id(unwrap(trial.config))
        checkpoint = trial.checkpoint
        complete = False
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                for name in ARTIFACTS:
                    path = Path(directory) / name
                    if path.is_file():
                        self.client.log_artifact(run_id, str(path))
                complete = (Path(directory) / "best.pt").is_file()
        if complete:
            self.client.set_tag(run_id, TAG_COMPLETE, "true")
        self.client.set_terminated(run_id, "FINISHED" if complete else "FAILED")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Mark the trial's run failed."""
        self.client.set_terminated(self.run_id(unwrap(trial.config)), "FAILED")


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
    import tempfile
    import time

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
    import tempfile

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
