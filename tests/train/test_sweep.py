"""Sweeps: Ray Tune on a two-node cluster, MLflow runs, re-runs, SIGKILL and --resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from train_helpers import write_dataset, wse2_study

from hpcbench.plan import dataset_dir, expand_trials
from hpcbench.train.sweep import TrainError, train

pytestmark = pytest.mark.cluster

SWEEP = {
    "models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 3}},
    "epochs": 2,
    "batch_size": 8,
    "augment": {"crop": [32, 32]},
    "axes": {"dose": [1e4, 1e6]},
    "repeats": 1,
}


def _runs(root: Path, study: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "hpcbench.trial_key" in r.data.tags]


def test_sweep_on_two_nodes_logs_one_complete_run_per_trial(
    two_node_cluster: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    study = wse2_study(SWEEP, name="sweep")
    write_dataset(study, "wse2", tmp_path)
    lines: list[str] = []
    result = train(study, root=tmp_path, address=two_node_cluster, verbose=0, log=lines.append)
    trials = expand_trials(study)
    assert not result.errored and len(result.trials) == 2
    runs = _runs(tmp_path, "sweep")
    assert sorted(r.data.tags["hpcbench.trial_key"] for r in runs) == sorted(t.key for t in trials)
    client = MlflowClient(result.tracking_uri)
    for run in runs:
        tags = run.data.tags
        trial = next(t for t in trials if t.key == tags["hpcbench.trial_key"])
        assert run.info.run_name == f"{trial.label} #0" and run.info.status == "FINISHED"
        assert tags["hpcbench.study"] == "sweep" and tags["hpcbench.complete"] == "true"
        assert tags["hpcbench.condition"] == trial.label
        assert tags["hpcbench.dataset_hash"] == dataset_dir(study, tmp_path, "wse2").name[-12:]
        assert tags["hpcbench.version"] and tags["hpcbench.repeat"] == "0"
        assert float(run.data.params["dose"]) == trial.config["dose"]
        assert run.data.params["model.architecture"] == "fcn"
        # Per-epoch metrics at steps 1, 2; test metrics once; no Ray bookkeeping keys.
        history = client.get_metric_history(run.info.run_id, "val/loss")
        assert [m.step for m in history] == [1, 2]
        assert "test/wse2/f1" in run.data.metrics and "test/wse2/detection_f1" in run.data.metrics
        assert not {"done", "pid", "timestamp", "training_iteration"} & set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"best.pt", "predictions.png", "trial.json"}
    # Runs were written by the driver only; a re-run trains nothing and adds no run.
    again = train(study, root=tmp_path, address=two_node_cluster, verbose=0, log=lines.append)
    assert not again.errored
    assert len(_runs(tmp_path, "sweep")) == 2
    # --resume with nothing interrupted of a *new* grid is a one-line error.
    bigger = wse2_study({**SWEEP, "repeats": 2}, name="sweep")
    with pytest.raises(TrainError, match="nothing to resume"):
        train(bigger, root=tmp_path, address=two_node_cluster, resume=True, log=lines.append)
    # The same study with one more repeat runs only the two new trials.
    more = train(bigger, root=tmp_path, address=two_node_cluster, verbose=0, log=lines.append)
    assert sorted(more.skipped) == sorted(t.key for t in trials)
    assert len(_runs(tmp_path, "sweep")) == 4


def test_missing_dataset_is_one_line(tmp_path: Path) -> None:
    study = wse2_study(SWEEP, name="nodata")
    with pytest.raises(
        TrainError, match=r"^dataset wse2 is not generated .* run `hpcbench generate`"
    ):
        train(study, root=tmp_path)
    assert not (tmp_path / "nodata" / "tune").exists()


def _progress(database: Path) -> tuple[int, int]:
    """(complete runs, epochs logged by runs not yet complete) in an MLflow SQLite store."""
    if not database.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            complete = connection.execute(
                "SELECT COUNT(*) FROM tags WHERE key = 'hpcbench.complete' AND value = 'true'"
            ).fetchone()[0]
            running = connection.execute(
                "SELECT COUNT(*) FROM metrics WHERE key = 'val/loss' AND run_uuid NOT IN "
                "(SELECT run_uuid FROM tags WHERE key = 'hpcbench.complete')"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0, 0
    return int(complete), int(running)


def test_sigkill_then_resume_finishes_every_trial_once(tmp_path: Path) -> None:
    spec = {**SWEEP, "epochs": 3, "axes": {"dose": [1e4, 1e5, 1e6]}, "repeats": 2}
    study = wse2_study(spec, name="killed")
    write_dataset(study, "wse2", tmp_path)
    study_file = tmp_path / "killed.yaml"
    study_file.write_text(yaml.safe_dump(study.model_dump(mode="json", exclude_none=True)))
    command = [
        sys.executable, "-m", "hpcbench", "train", str(study_file),
        "--root", str(tmp_path), "--max-concurrent", "1",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    database = tmp_path / "mlflow.db"
    deadline = time.monotonic() + 240
    try:
        # Kill inside a trial: one trial complete and the next one some epochs in.
        while True:
            complete, running = _progress(database)
            if complete >= 1 and running >= 1:
                break
            assert process.poll() is None, process.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.2)
    finally:
        assert process.poll() is None, "the sweep ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)  # the driver and everything it started
        process.wait()
    complete, _ = _progress(database)
    assert 1 <= complete < 6
    resumed = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=400
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "continuing the sweep" in resumed.stdout
    runs = _runs(tmp_path, "killed")
    keys = [r.data.tags["hpcbench.trial_key"] for r in runs]
    assert sorted(keys) == sorted(t.key for t in expand_trials(study))  # each once
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{database}")
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["hpcbench.complete"] == "true"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert steps == [1, 2, 3]  # no epoch logged twice after the restore


def test_progress_lines_extrapolate_an_eta() -> None:
    from types import SimpleNamespace

    from hpcbench.train.sweep import ProgressLines

    progress = ProgressLines(total=2, epochs=20, interval=1e9)

    def trial(key: str) -> SimpleNamespace:
        return SimpleNamespace(config={"_": {"key": key}}, status="RUNNING")

    a, b = trial("a"), trial("b")
    # The first result, 10 s into trial a, sets the sweep's start.
    progress.on_trial_result(0, [a, b], a, {"epoch": 1, "time_total_s": 10.0})
    began = progress._began
    assert began is not None
    progress.on_trial_result(0, [a, b], b, {"epoch": 3, "time_total_s": 30.0})
    # 4 of 20 epochs after 40 s: 16 left at 10 s each = 160 s.
    assert progress.progress(now=began + 40.0) == (
        "progress: 4/20 epochs, 0.7 min elapsed, ETA 2.7 min"
    )
    assert progress.progress(now=began).startswith("progress: 4/20 epochs, 0.0 min")
