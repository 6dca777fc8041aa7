"""Run a study's training grid as Ray Tune trials, tracked in MLflow, resumable.

:func:`train` expands the grid (:func:`hpcbench.train.grid.expand_trials`), checks
that every dataset it needs is generated, and runs the trials that MLflow does not
already hold as complete. The Tune experiment lives in
``<output>/tune/train-<grid>`` where ``<grid>`` hashes the trial keys of the whole
grid: re-running the same study finds it and continues with ``Tuner.restore``
(finished trials are not re-run, interrupted ones continue from their last epoch);
an edited study (new keys) starts a new experiment, and trials MLflow already holds
as complete are skipped there too.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from hpcbench.datasets.manifest import ManifestError, read_manifest
from hpcbench.study import Study
from hpcbench.train.grid import TrialSpec, expand_trials, grid_key, unwrap

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

__all__ = ["ProgressLines", "SweepResult", "TrainError", "summarize", "train"]


class TrainError(RuntimeError):
    """A sweep cannot start (missing datasets, nothing to resume); one line."""


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Attributes
    ----------
    trials : list of TrialSpec
        The whole grid.
    skipped : list of str
        Keys already complete in MLflow before this run (not started).
    errored : list of str
        Keys whose trial failed (after ``max_failures`` retries).
    experiment_dir : Path
        The Tune experiment directory.
    tracking_uri : str
    """

    trials: list[TrialSpec]
    skipped: list[str]
    errored: list[str]
    experiment_dir: Path
    tracking_uri: str


def dataset_dirs(study: Study, root: Path, trials: list[TrialSpec]) -> dict[str, str]:
    """Directory of every dataset the trials read; raises :class:`TrainError` if missing."""
    names = sorted({name for t in trials for name in t.config["datasets"]})
    dirs: dict[str, str] = {}
    missing = []
    for name in names:
        directory = study.dataset_dir(root, name)
        try:
            complete = read_manifest(directory).complete
        except (FileNotFoundError, ManifestError):
            complete = False
        if not complete:
            missing.append(name)
        dirs[name] = str(directory.resolve())
    if missing:
        what = (
            f"dataset {missing[0]} is"
            if len(missing) == 1
            else f"datasets {', '.join(missing)} are"
        )
        raise TrainError(
            f"{what} not generated (or incomplete) under {study.output_dir(root)}: "
            "run `hpcbench generate` on the study first (same --root)"
        )
    return dirs


def _param_space(
    trials: list[TrialSpec], dirs: dict[str, str], runtime: dict[str, Any]
) -> dict[str, Any]:
    from ray import tune

    return {
        "_": tune.grid_search(
            [
                {
                    "key": t.key,
                    "label": t.label,
                    "condition": t.condition,
                    "repeat": t.repeat,
                    "trial": t.config,
                    "data_dirs": {n: dirs[n] for n in t.config["datasets"]},
                    "runtime": runtime,
                }
                for t in trials
            ]
        )
    }


def train(
    study: Study,
    *,
    root: str | os.PathLike[str],
    address: str | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    cpus_per_trial: float = 1,
    gpus_per_trial: float = 0,
    tracking_uri: str | None = None,
    max_failures: int = 2,
    verbose: int = 1,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or continue) the study's training sweep.

    Parameters
    ----------
    study : Study
        A study with a ``train`` section whose datasets are generated under ``root``.
    root : path
        Output root (as for ``hpcbench generate``).
    address : str, optional
        Ray cluster address; default an embedded Ray (or ``RAY_ADDRESS``).
    resume : bool
        Require an interrupted sweep of this grid to continue (an error if there is
        none). Without it an existing sweep is continued too, or a new one started.
    max_concurrent : int, optional
        At most this many trials at once (default: as many as resources allow).
    cpus_per_trial, gpus_per_trial : float
        Resources of each trial; torch threads = CPUs.
    tracking_uri : str, optional
        MLflow URI; default ``sqlite:///<root>/mlflow.db``.
    max_failures : int
        Retries of a failing trial (from its last checkpoint).
    verbose : int
        Tune's verbosity (0 silent, 1 status table).
    log : callable
        Where progress lines go.

    Returns
    -------
    SweepResult

    Raises
    ------
    hpcbench.train.grid.GridError
        The grid is invalid (too-large ``train_size``, dataset too small to split).
    TrainError
        Datasets are missing, or ``resume`` and there is nothing to resume.
    """
    from hpcbench.tracking import (
        MLflowTracker,
        client_for,
        default_tracking_uri,
        ensure_experiment,
        finished_keys,
        record_grid,
    )

    root = Path(root)
    trials = expand_trials(study)
    dirs = dataset_dirs(study, root, trials)
    uri = tracking_uri or default_tracking_uri(root)
    client = client_for(uri)
    experiment_id = ensure_experiment(client, study.name, uri)
    done = finished_keys(client, experiment_id)
    grid = grid_key(trials)
    record_grid(
        client,
        experiment_id,
        study=study.name,
        grid=grid,
        trials=[{"key": t.key, "condition": t.label, "repeat": t.repeat} for t in trials],
        spec=study.model_dump(mode="json"),
    )
    storage = (study.output_dir(root) / "tune").resolve()
    name = f"train-{grid}"
    experiment_dir = storage / name
    pending = [t for t in trials if t.key not in done]
    skipped = [t.key for t in trials if t.key in done]

    from ray import tune

    if not pending:  # nothing to train, whatever Tune's state says
        log(f"all {len(trials)} trials are already complete in {uri}")
        return SweepResult(trials, skipped, [], experiment_dir, uri)
    restorable = tune.Tuner.can_restore(experiment_dir)
    if resume and not restorable:
        raise TrainError(
            f"nothing to resume: no interrupted sweep of this grid at {experiment_dir}"
        )

    from hpcbench.datasets.generate import init_ray

    started = init_ray(address)
    try:
        import ray

        cluster_cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        if cpus_per_trial > cluster_cpus:
            raise TrainError(
                f"--cpus-per-trial {cpus_per_trial:g} exceeds the cluster's {cluster_cpus:g} CPUs"
            )
        runtime = {"cpus": math.ceil(cpus_per_trial), "gpus": gpus_per_trial}
        trainable = tune.with_resources(
            _trainable(), {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        )
        if restorable:
            log(f"continuing the sweep in {experiment_dir}")
            tuner = tune.Tuner.restore(
                str(experiment_dir),
                trainable,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            log(
                f"{len(pending)} trials to run ({len(skipped)} already complete) → "
                f"{experiment_dir}, tracking {uri}"
            )
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(pending, dirs, runtime),
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=max_concurrent,
                    reuse_actors=True,
                    trial_dirname_creator=_dirname(),
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(storage),
                    callbacks=[MLflowTracker(uri, study.name), ProgressLines(len(pending))],
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    verbose=verbose,
                ),
            )
            storage.mkdir(parents=True, exist_ok=True)
            (storage / f"{name}.json").write_text(
                json.dumps(
                    [{"key": t.key, "condition": t.label, "repeat": t.repeat} for t in trials],
                    indent=1,
                )
            )
        results = tuner.fit()
        errored = [
            unwrap(r.config or {}).get("key", "?")
            for r in (results[i] for i in range(len(results)))
            if r.error is not None
        ]
    finally:
        if started:
            import ray

            ray.shutdown()
    return SweepResult(trials, skipped, [str(k) for k in errored], experiment_dir, uri)


class ProgressLines(Callback):
    """One line per finished or failed trial: ``[k/n] key condition r<repeat>: scores``.

    Tune's own status tables are off by default (``verbose=0``); these lines say the
    same in a form that reads well in a Slurm log. Picklable (``Tuner.restore``).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Print the finished trial's held-out scores."""
        self.done += 1
        config = unwrap(trial.config)
        result = trial.last_result or {}
        dataset = config["trial"]["dataset"]
        f1 = result.get(f"test/{dataset}/f1", math.nan)
        detection = result.get(f"test/{dataset}/detection_f1", math.nan)
        seconds = result.get("time_total_s", math.nan)
        print(
            f"[{self.done}/{self.total}] {config['key']} {config['label']} "
            f"r{config['repeat']}: pixel F1 {f1:.3f}, detection F1 {detection:.3f} "
            f"({seconds:.0f} s)",
            flush=True,
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Print the failed trial."""
        self.done += 1
        config = unwrap(trial.config)
        print(f"[{self.done}/{self.total}] {config['key']} {config['label']} FAILED", flush=True)


def _trainable() -> Any:
    from hpcbench.train.trainable import run_trial

    return run_trial


def _dirname() -> Any:
    from hpcbench.train.trainable import trial_dirname

    return trial_dirname


def summarize(result: SweepResult) -> list[str]:
    """Lines of a per-condition table of test scores from MLflow (mean ± std over repeats)."""
    from hpcbench.tracking import TAG_COMPLETE, client_for, runs_by_key

    client = client_for(result.tracking_uri)
    study = str(result.trials[0].config["study"]) if result.trials else ""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = runs_by_key(client, experiment.experiment_id, [t.key for t in result.trials])
    rows: dict[str, list[dict[str, float]]] = {}
    for t in result.trials:
        complete = [r for r in runs.get(t.key, []) if r.data.tags.get(TAG_COMPLETE) == "true"]
        if complete:
            metrics = dict(complete[0].data.metrics)
            dataset = t.config["dataset"]
            rows.setdefault(t.label, []).append(
                {
                    "f1": metrics.get(f"test/{dataset}/f1", math.nan),
                    "detection_f1": metrics.get(f"test/{dataset}/detection_f1", math.nan),
                }
            )
    total = sum(len(v) for v in rows.values())
    lines = [
        f"{total}/{len(result.trials)} trials complete in {result.tracking_uri} "
        f"(experiment {study!r}); test scores on each trial's held-out split:",
        f"  {'condition':<48} {'n':>3} {'pixel F1':>15} {'detection F1':>15}",
    ]
    for label, scores in rows.items():
        cells = []
        for name in ("f1", "detection_f1"):
            values = [s[name] for s in scores if not math.isnan(s[name])]
            if not values:
                cells.append(f"{'n/a':>15}")
                continue
            mean = sum(values) / len(values)
            spread = (
                math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                if len(values) > 1
                else 0.0
            )
            cells.append(f"{mean:>7.3f} ± {spread:<5.3f}")
        lines.append(f"  {label:<48} {len(scores):>3} {cells[0]:>15} {cells[1]:>15}")
    if result.errored:
        lines.append(f"{len(result.errored)} trials failed: {', '.join(result.errored)}")
    return lines
