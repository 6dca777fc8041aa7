"""Run a study's training grid as Ray Tune trials, tracked in MLflow, resumable.

:func:`train` takes the study's plan (:class:`hpcbench.plan.Plan`: its trials), checks
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
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial

from hpcbench.datasets.generate import init_ray, shutdown_ray
from hpcbench.datasets.manifest import ManifestError, read_manifest, verify_cached
from hpcbench.plan import CycleGANTrial, Plan, TrialSpec, grid_key, make_plan
from hpcbench.study import Study
from hpcbench.tracking import (
    TAG_COMPLETE,
    client_for,
    default_tracking_uri,
    ensure_experiment,
    finished_keys,
    record_grid,
    runs_by_key,
    runs_view,
)
from hpcbench.train.errors import Interrupted, TrainError
from hpcbench.train.tracker import MLflowTracker, unwrap
from hpcbench.train.trainable import run_trial, trial_dirname
from hpcbench.train.translate import translate_dataset

__all__ = ["Interrupted", "ProgressLines", "SweepResult", "TrainError", "summarize", "train"]


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
    cyclegan : SweepResult or None
        The CycleGAN stage's sweep (``None`` without a ``cyclegan`` section).
    translated : dict of str to Path
        Directory of each translated dataset.
    """

    trials: list[TrialSpec]
    skipped: list[str]
    errored: list[str]
    experiment_dir: Path
    tracking_uri: str
    cyclegan: SweepResult | None = None
    translated: dict[str, Path] = field(default_factory=dict)


def dataset_dirs(
    plan: Plan, root: Path, trials: list[TrialSpec], *, skip: Collection[str] = ()
) -> dict[str, str]:
    """Directory of every dataset the trials read; raises :class:`TrainError` if missing.

    Datasets in ``skip`` (translated ones, made later by the train stage itself) are
    not looked up.

    Imported datasets (``imports``) are found by the hash of their source files, so an
    edited source file also reads as not imported; ``hpcbench generate`` imports them.
    """
    study = plan.study
    names = sorted({name for t in trials for name in t.trial.datasets} - set(skip))
    dirs: dict[str, str] = {}
    missing = []
    for name in names:
        directory = plan.dataset_dir(root, name)
        try:
            complete = read_manifest(directory).complete
        except (FileNotFoundError, ManifestError):
            complete = False
        if not complete:
            missing.append(name)
        else:
            # A flipped byte still reads; training on it would go unnoticed under the
            # same hash. Shards are re-hashed only when a file changed since last time.
            report = verify_cached(directory)
            if not report.ok:
                first = report.lines()[0]
                raise TrainError(
                    f"dataset {name} is damaged ({len(report.problems)} problem(s); {first}): "
                    "run `hpcbench generate` on the study to repair it (same --root)"
                )
        dirs[name] = str(directory.resolve())
    if missing:
        what = (
            f"dataset {missing[0]} is"
            if len(missing) == 1
            else f"datasets {', '.join(missing)} are"
        )
        imported = " (imported datasets too)" if any(n in study.imports for n in missing) else ""
        raise TrainError(
            f"{what} not generated (or incomplete) under {plan.output_dir(root)}: "
            f"run `hpcbench generate` on the study first (same --root){imported}"
        )
    return dirs


def _param_space(
    trials: list[TrialSpec], dirs: dict[str, str], runtime: dict[str, Any]
) -> dict[str, Any]:
    return {
        "_": tune.grid_search(
            [
                {
                    "key": t.key,
                    "label": t.label,
                    "condition": t.condition,
                    "repeat": t.repeat,
                    "trial": t.config,
                    "data_dirs": {n: dirs[n] for n in t.trial.datasets},
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
    inception_weights: str | None = None,
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or continue) the study's training stages.

    In order: the CycleGAN trials (``cyclegan`` section), the translations
    (``translate`` section, :func:`hpcbench.train.translate.translate_dataset`), then the
    segmentation trials (``train`` section). Each stage skips what is already complete.

    Parameters
    ----------
    study : Study
        A study with a ``train`` or ``cyclegan`` section whose datasets are generated
        under ``root``.
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
    inception_weights : str, optional
        Local pytorch-fid Inception weights for CycleGAN FIDs with ``features:
        inception`` (default ``HPCBENCH_INCEPTION_WEIGHTS``).
    log : callable
        Where progress lines go.

    Returns
    -------
    SweepResult
        The segmentation sweep, with the CycleGAN sweep in ``cyclegan`` and the
        translated dataset directories in ``translated``.

    Raises
    ------
    hpcbench.plan.GridError
        The grid is invalid (too-large ``train_size``, dataset too small to split).
    TrainError
        Datasets are missing, ``resume`` and there is nothing to resume, or a CycleGAN
        that a translation needs did not finish.
    """
    if verbose == 0:
        # Tune's newer console output prints a configuration box, a results path and a
        # TensorBoard hint even at verbose=0; its classic output at verbose=0 prints
        # nothing, and ProgressLines says what a user needs.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    root = Path(root)
    plan = make_plan(study)
    cyclegan_trials = plan.cyclegan_trials
    trials = plan.trials
    dirs = dataset_dirs(plan, root, [*cyclegan_trials, *trials], skip=study.translate)
    uri = tracking_uri or default_tracking_uri(root)
    weights = inception_weights or os.environ.get("HPCBENCH_INCEPTION_WEIGHTS")
    if study.cyclegan is not None and study.cyclegan.fid.features == "inception" and not weights:
        raise TrainError(
            "cyclegan.fid.features is inception but no weights file is given: pass "
            "--inception-weights PATH or set HPCBENCH_INCEPTION_WEIGHTS (pytorch-fid's "
            "pt_inception-2015-12-05 file; nothing is downloaded)"
        )
    started = False

    def ensure_ray() -> None:
        nonlocal started
        if not started:
            started = init_ray(address)

    runtime: dict[str, Any] = {"cpus": math.ceil(cpus_per_trial), "gpus": gpus_per_trial}
    if weights:
        runtime["inception_weights"] = str(Path(weights).resolve())
    common: dict[str, Any] = {
        "root": root,
        "uri": uri,
        "resume": resume,
        "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial,
        "runtime": runtime,
        "max_failures": max_failures,
        "verbose": verbose,
        "log": log,
        "ensure_ray": ensure_ray,
        # The segmentation grid's record: the parent run of its trials' runs and of the
        # CycleGAN trials' it depends on (the report reads the newest grid).
        "parent": _record_grid(plan, trials, cyclegan_trials, uri) if trials else None,
    }
    try:
        cyclegan = None
        if cyclegan_trials:
            log(f"CycleGAN: {len(cyclegan_trials)} trials")
            cyclegan = _sweep(plan, cyclegan_trials, dirs, phase="cyclegan", **common)
        translated: dict[str, Path] = {}
        for name in study.translate:
            ensure_ray()
            translated[name] = translate_dataset(
                plan, name, root=root, tracking_uri=uri, cpus=cpus_per_trial, log=log
            )
        if trials:
            dirs = {**dirs, **dataset_dirs(plan, root, trials)}
            result = _sweep(plan, trials, dirs, phase="train", **common)
        else:
            storage = plan.tune_dir(root).resolve()
            result = SweepResult([], [], [], storage, uri)
    finally:
        if started:
            shutdown_ray()
    return SweepResult(
        result.trials,
        result.skipped,
        result.errored,
        result.experiment_dir,
        uri,
        cyclegan=cyclegan,
        translated=translated,
    )


def _record_grid(plan: Plan, trials: list[TrialSpec], upstream: list[TrialSpec], uri: str) -> str:
    """Record the segmentation grid in MLflow; the grid run's id.

    The record lists the ``upstream`` CycleGAN trials the grid depends on too (``kind:
    cyclegan``); see :func:`hpcbench.tracking.record_grid`.
    """
    study = plan.study
    client = client_for(uri)
    return record_grid(
        client,
        ensure_experiment(client, study.name, uri),
        study=study.name,
        grid=grid_key(trials),
        trials=[{"key": t.key, "condition": t.label, "repeat": t.repeat} for t in trials]
        + [
            {"key": t.key, "condition": t.label, "repeat": t.repeat, "kind": "cyclegan"}
            for t in upstream
        ],
        spec=study.model_dump(mode="json"),
    )


def _sweep(
    plan: Plan,
    trials: list[TrialSpec],
    dirs: dict[str, str],
    *,
    phase: str,
    parent: str | None,
    root: Path,
    uri: str,
    resume: bool,
    max_concurrent: int | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    runtime: dict[str, Any],
    max_failures: int,
    verbose: int,
    log: Callable[[str], None],
    ensure_ray: Callable[[], None],
) -> SweepResult:
    """One Tune experiment over ``trials`` (``phase`` ``train`` or ``cyclegan``).

    New runs are children of ``parent`` (the grid record's run id), if given.
    """
    study = plan.study
    client = client_for(uri)
    experiment_id = ensure_experiment(client, study.name, uri)
    done = finished_keys(client, experiment_id)
    grid = grid_key(trials)
    storage = plan.tune_dir(root).resolve()
    name = f"{phase}-{grid}"
    experiment_dir = storage / name
    pending = [t for t in trials if t.key not in done]
    skipped = [t.key for t in trials if t.key in done]
    if not pending:  # nothing to train, whatever Tune's state says
        log(f"all {len(trials)} {phase} trials are already complete in {uri}")
        return SweepResult(trials, skipped, [], experiment_dir, uri)
    restorable = tune.Tuner.can_restore(experiment_dir)
    if resume and not restorable:
        raise TrainError(
            f"nothing to resume: no interrupted sweep of this grid at {experiment_dir}"
        )
    ensure_ray()
    cluster_cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    if cpus_per_trial > cluster_cpus:
        raise TrainError(
            f"--cpus-per-trial {cpus_per_trial:g} exceeds the cluster's {cluster_cpus:g} CPUs"
        )
    trainable = tune.with_resources(run_trial, {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
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
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                callbacks=[
                    MLflowTracker(uri, study.name, parent),
                    ProgressLines(len(pending), sum(t.trial.epochs for t in pending)),
                ],
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
    runs_view(client, experiment_id)  # the MLflow UI's "trials by condition" view
    errored = [
        str(unwrap(r.config or {}).get("key", "?"))
        for r in (results[i] for i in range(len(results)))
        if r.error is not None
    ]
    # Tune returns normally when interrupted (SIGINT): a trial that neither completed nor
    # failed was stopped. Say so, rather than summarise as if the sweep had ended.
    complete = finished_keys(client, experiment_id)
    stopped = [t.key for t in pending if t.key not in complete and t.key not in errored]
    if stopped:
        _mark_killed(client, experiment_id, stopped)
        raise Interrupted(
            f"interrupted: {len(stopped)} of {len(trials)} {phase} trials unfinished; run the "
            "same command again to continue them from their last epoch"
        )
    return SweepResult(trials, skipped, errored, experiment_dir, uri)


def _mark_killed(client: Any, experiment_id: str, keys: list[str]) -> None:
    """Mark the still-running MLflow runs of ``keys`` KILLED (a resume reopens them)."""
    for runs in runs_by_key(client, experiment_id, keys).values():
        for run in runs:
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


class ProgressLines(Callback):
    """One line per finished or failed trial, and progress with an ETA while they run.

    ``[k/n] key condition r<repeat>: scores`` when a trial ends; between, at most every
    ``interval`` seconds, ``progress: e/E epochs (r running), m min elapsed, ETA t min``
    where the ETA extrapolates the epochs finished so far per second of this sweep over
    the epochs left (all trials, whatever runs concurrently). Tune's own status tables
    are off by default (``verbose=0``); these lines say the same in a form that reads
    well in a Slurm log. Picklable (``Tuner.restore``).

    Parameters
    ----------
    total : int
        Trials of the sweep.
    epochs : int
        Epochs of all its trials together.
    interval : float
        Least seconds between two progress lines.
    """

    def __init__(self, total: int, epochs: int = 0, interval: float = 30.0) -> None:
        self.total = total
        self.done = 0
        self.epochs = epochs
        self.interval = interval
        self._epochs_done: dict[str, int] = {}
        self._began: float | None = None
        self._last_line = 0.0

    def progress(self, now: float | None = None) -> str:
        """``progress: e/E epochs …, ETA …`` for the sweep so far."""
        now = time.monotonic() if now is None else now
        began = self._began if self._began is not None else now
        elapsed = now - began
        done = sum(self._epochs_done.values())
        text = f"progress: {done}/{self.epochs} epochs, {elapsed / 60:.1f} min elapsed"
        if done and elapsed > 0 and self.epochs > done:
            remaining = (self.epochs - done) * elapsed / done
            text += f", ETA {remaining / 60:.1f} min"
        return text

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """Count the trial's epochs; print progress at most every ``interval`` seconds."""
        now = time.monotonic()
        if self._began is None:
            self._began = now - float(result.get("time_total_s", 0.0))
            self._last_line = now
        config = unwrap(trial.config)
        self._epochs_done[str(config["key"])] = int(result.get("epoch", 0))
        if now - self._last_line >= self.interval:
            self._last_line = now
            running = sum(1 for t in trials if t.status == "RUNNING")
            print(f"  {self.progress(now)} ({running} trials running)", flush=True)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Print the finished trial's held-out scores."""
        self.done += 1
        config = unwrap(trial.config)
        result = trial.last_result or {}
        if config["trial"].get("task") == "cyclegan":
            print(
                f"[{self.done}/{self.total}] {config['key']} {config['label']} "
                f"r{config['repeat']}: FID(translated, target) "
                f"{result.get('test/frechet_distance', math.nan):.3g}, raw "
                f"{result.get('test/frechet_distance_raw', math.nan):.3g} "
                f"({result.get('time_total_s', math.nan):.0f} s)",
                flush=True,
            )
            return
        dataset = config["trial"]["dataset"]
        f1 = result.get(f"test/{dataset}/f1", math.nan)
        detection = result.get(f"test/{dataset}/detection_f1", math.nan)
        seconds = result.get("time_total_s", math.nan)
        collapsed = result.get(f"test/{dataset}/collapsed") == 1.0
        print(
            f"[{self.done}/{self.total}] {config['key']} {config['label']} "
            f"r{config['repeat']}: pixel F1 {f1:.3f}, detection F1 {detection:.3f} "
            f"({seconds:.0f} s)"
            + (" COLLAPSED: predicts background everywhere" if collapsed else ""),
            flush=True,
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        """Print the failed trial."""
        self.done += 1
        config = unwrap(trial.config)
        print(f"[{self.done}/{self.total}] {config['key']} {config['label']} FAILED", flush=True)


def _summarize_cyclegan(result: SweepResult) -> list[str]:
    """One line per CycleGAN trial: test FID and histogram KL, raw → translated."""
    client = client_for(result.tracking_uri)
    study = result.trials[0].trial.study
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = runs_by_key(client, experiment.experiment_id, [t.key for t in result.trials])
    lines = ["CycleGAN test scores, simulated → target domain (raw → translated):"]
    for t in result.trials:
        complete = [r for r in runs.get(t.key, []) if r.data.tags.get(TAG_COMPLETE) == "true"]
        if not complete:
            lines.append(f"  {t.key} {t.label} r{t.repeat}: not complete")
            continue
        m = complete[0].data.metrics
        assert isinstance(t.trial, CycleGANTrial)
        lines.append(
            f"  {t.key} {t.trial.model_name} r{t.repeat}: FID "
            f"{m.get('test/frechet_distance_raw', math.nan):.3g} → "
            f"{m.get('test/frechet_distance', math.nan):.3g} "
            f"({t.trial.fid.features}), histogram KL "
            f"{m.get('test/histogram_kl_raw', math.nan):.3g} → "
            f"{m.get('test/histogram_kl', math.nan):.3g}"
        )
    return lines


def summarize(result: SweepResult) -> list[str]:
    """Lines of a per-condition table of test scores from MLflow (mean ± std over repeats)."""
    head = [] if result.cyclegan is None else _summarize_cyclegan(result.cyclegan)
    head += [f"translated dataset {n}: {p}" for n, p in result.translated.items()]
    if not result.trials:
        return head
    return head + _summarize_segmentation(result)


def _summarize_segmentation(result: SweepResult) -> list[str]:
    client = client_for(result.tracking_uri)
    study = result.trials[0].trial.study if result.trials else ""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = runs_by_key(client, experiment.experiment_id, [t.key for t in result.trials])
    rows: dict[str, list[dict[str, float]]] = {}
    for t in result.trials:
        complete = [r for r in runs.get(t.key, []) if r.data.tags.get(TAG_COMPLETE) == "true"]
        if complete:
            metrics = dict(complete[0].data.metrics)
            dataset = t.trial.dataset
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
