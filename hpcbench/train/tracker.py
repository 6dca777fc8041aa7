"""The sweep's MLflow writer: a Ray Tune callback, one run per trial key.

Runs are written by the driver, never by the trials, so many processes never write one
SQLite file. A run is found by the tag ``hpcbench.trial_key`` rather than created per
Tune trial: after a crash and ``Tuner.restore`` the trial reuses its run, and a metric
step that is already logged (a trial resumed from an older checkpoint repeats epochs) is
not logged twice. The stock ``MLflowLoggerCallback`` does neither (measured: 8 runs for
6 trials after a SIGKILL and restore) and logs Ray's bookkeeping keys as metrics. Names
and tags are :mod:`hpcbench.tracking`'s: a run is a child of the sweep's grid record,
named by condition and repeat, with plain axis tags and its datasets as inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from ray.tune import Callback
from ray.tune.experiment import Trial

from hpcbench.tracking import (
    ARTIFACTS,
    METRIC_PREFIXES,
    TAG_AXIS,
    TAG_COLLAPSED,
    TAG_COMPLETE,
    TAG_CONDITION,
    TAG_DATASET,
    TAG_GIT_COMMIT,
    TAG_KEY,
    TAG_KIND,
    TAG_PARENT,
    TAG_REPEAT,
    TAG_STUDY,
    TAG_VERSION,
    axis_tag,
    client_for,
    dataset_inputs,
    ensure_experiment,
    flatten,
    git_commit,
    run_name,
)

__all__ = ["MLflowTracker", "unwrap"]


def unwrap(config: Mapping[str, Any]) -> dict[str, Any]:
    """A Tune trial's config without the grid-search wrapper key ``_``."""
    inner = config.get("_", config)
    return dict(inner)


class MLflowTracker(Callback):
    """Ray Tune callback writing one MLflow run per trial key (see the module notes).

    The trial's Tune config must hold ``key``, ``label``, ``condition``, ``repeat`` and
    ``trial`` (the resolved config), and may hold ``data_dirs`` (dataset name →
    directory, logged as the run's dataset inputs). Picklable: ``Tuner.restore``
    rebuilds it.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI (``sqlite:///…`` or an ``mlflow server``).
    experiment : str
        Experiment name (the study's name).
    parent : str, optional
        Run id of the grid record: the parent run of every run this writes.
    """

    def __init__(self, tracking_uri: str, experiment: str, parent: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent = parent
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._runs: dict[str, str] = {}
        self._logged: dict[str, dict[str, int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "parent": self.parent,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        # "parent" is absent from callbacks pickled by older versions.
        parent = state.get("parent")
        self.__init__(state["tracking_uri"], state["experiment"], parent)  # type: ignore[misc]

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
            self._complete_older_run(run, config)
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
                **{f"{TAG_AXIS}{axis}": axis_tag(v) for axis, v in config["condition"].items()},
            }
            if self.parent is not None:
                tags[TAG_PARENT] = self.parent
            commit = git_commit()
            if commit is not None:
                tags[TAG_GIT_COMMIT] = commit
            name = run_name(str(config["label"]), config["repeat"])
            run = client.create_run(self._experiment_id, run_name=name, tags=tags)
            run_id = str(run.info.run_id)
            self._logged[run_id] = {}
            self._log_params(run_id, config)
            self._log_inputs(run_id, config)
        self._runs[key] = run_id
        return run_id

    def _complete_older_run(self, run: Any, config: Mapping[str, Any]) -> None:
        """Give a run found by key what a new run gets, if an older version made it.

        The parent (if it has none), the readable name (if it is named by its key), plain
        axis tags (older versions wrote JSON), the commit of the code that goes on with
        it and the dataset inputs (if it has none); its key, other tags and metrics stay
        as they are.
        """
        run_id = str(run.info.run_id)
        tags = run.data.tags
        if self.parent is not None and TAG_PARENT not in tags:
            self.client.set_tag(run_id, TAG_PARENT, self.parent)
        commit = git_commit()
        if commit is not None and TAG_GIT_COMMIT not in tags:
            self.client.set_tag(run_id, TAG_GIT_COMMIT, commit)
        for axis, value in config["condition"].items():
            name = f"{TAG_AXIS}{axis}"
            if name in tags and tags[name] != axis_tag(value):
                self.client.set_tag(run_id, name, axis_tag(value))
        if run.info.run_name == config["key"]:
            self.client.update_run(run_id, name=run_name(str(config["label"]), config["repeat"]))
        if run.inputs is None or not run.inputs.dataset_inputs:
            self._log_inputs(run_id, config)

    def _log_inputs(self, run_id: str, config: Mapping[str, Any]) -> None:
        trial = config["trial"]
        inputs = dataset_inputs(
            trial["datasets"], config.get("data_dirs") or {}, str(trial.get("dataset"))
        )
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def _log_params(self, run_id: str, config: Mapping[str, Any]) -> None:
        params = [Param(k, v[:6000]) for k, v in flatten(config["trial"]).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[start : start + 100])

    def log_result(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> int:
        """Log a trial result's metrics at step ``epoch``; return how many were new."""
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
            config = unwrap(trial.config)
            dataset = config["trial"].get("dataset")
            result = trial.last_result or {}
            if result.get(f"test/{dataset}/collapsed") == 1.0:
                # Predicts background everywhere on its own test split: searchable with
                # tags."hpcbench.collapsed" = 'true'.
                self.client.set_tag(run_id, TAG_COLLAPSED, "true")
        self.client.set_terminated(run_id, "FINISHED" if complete else "FAILED")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Mark the trial's run failed."""
        self.client.set_terminated(self.run_id(unwrap(trial.config)), "FAILED")
