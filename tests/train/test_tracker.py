"""The sweep's MLflow runs as people browse them: a real tiny training, a real SQLite store.

Trial runs are children of the grid record, named by condition and repeat, with plain
axis tags, the git commit and their dataset as an input; a run an older version made
(named by key, JSON axis tags, no parent) is completed when its trial runs again; a
re-run finds every trial by key and skips it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from train_helpers import write_dataset, wse2_study

from hpcbench.plan import TrialSpec, dataset_dir, expand_trials
from hpcbench.report.aggregate import load_runs
from hpcbench.study import Study
from hpcbench.tracking import (
    TAG_AXIS,
    TAG_CONDITION,
    TAG_KEY,
    TAG_REPEAT,
    TAG_STUDY,
    VIEW_TAG,
    client_for,
    default_tracking_uri,
    ensure_experiment,
    finished_keys,
    git_commit,
    runs_by_key,
)
from hpcbench.train.sweep import SweepResult, train

SPEC = {
    "models": {
        "fcn": {"architecture": "fcn", "width": 4, "depth": 2},
        "unet": {"architecture": "unet", "width": 4, "depth": 2},
    },
    "epochs": 1,
    "batch_size": 8,
    "augment": {"crop": [32, 32]},
    "axes": {"model": ["fcn", "unet"], "dose": [1e4]},
    "repeats": 1,
}


@dataclass(frozen=True)
class Tracked:
    study: Study
    root: Path
    trials: list[TrialSpec]
    result: SweepResult
    older: str  # the run id of the run an older version made for the unet trial


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    """Train a 2-trial grid (fcn, unet) once, the unet trial's run made as older versions did."""
    root = tmp_path_factory.mktemp("tracked")
    study = wse2_study(SPEC, name="tracked")
    write_dataset(study, "wse2", root)
    trials = expand_trials(study)
    unet = next(t for t in trials if t.condition["model"] == "unet")
    uri = default_tracking_uri(root)
    client = client_for(uri)
    experiment = ensure_experiment(client, study.name, uri)
    older = client.create_run(
        experiment,
        run_name=unet.key,
        tags={
            TAG_KEY: unet.key,
            TAG_STUDY: study.name,
            TAG_CONDITION: unet.label,
            TAG_REPEAT: "0",
            f"{TAG_AXIS}model": json.dumps("unet"),
            f"{TAG_AXIS}dose": json.dumps(1e4),
        },
    )
    client.set_terminated(older.info.run_id, "KILLED")  # interrupted before its first epoch
    result = train(study, root=root, verbose=0, log=lambda line: None)
    assert not result.errored
    return Tracked(study, root, trials, result, older.info.run_id)


def _runs(tracked: Tracked) -> tuple[Any, str, list[Any]]:
    client = client_for(tracked.result.tracking_uri)
    experiment = client.get_experiment_by_name(tracked.study.name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return client, experiment.experiment_id, runs


def test_mlflow_trial_runs_are_children_of_the_grid_named_by_condition(tracked: Tracked) -> None:
    client, experiment_id, runs = _runs(tracked)
    grids = [r for r in runs if r.data.tags.get("hpcbench.kind") == "grid"]
    assert len(grids) == 1 and len(runs) == 3  # the grid record and two trial runs
    grid = grids[0]
    assert grid.info.run_name.startswith("grid-") and "mlflow.parentRunId" not in grid.data.tags
    trial_runs = {r.data.tags[TAG_KEY]: r for r in runs if TAG_KEY in r.data.tags}
    assert sorted(trial_runs) == sorted(t.key for t in tracked.trials)
    commit = git_commit()  # as the sweep read it (HEAD may move while tests run)
    assert commit is None or re.fullmatch("[0-9a-f]{40}", commit)
    directory = dataset_dir(tracked.study, tracked.root, "wse2").resolve()
    for trial in tracked.trials:
        run = trial_runs[trial.key]
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == grid.info.run_id
        name = f"model={trial.condition['model']} dose=10000 #0"
        assert run.info.run_name == tags["mlflow.runName"] == name
        assert tags[f"{TAG_AXIS}model"] == trial.condition["model"]
        assert tags[f"{TAG_AXIS}dose"] == "10000"
        assert tags.get("mlflow.source.git.commit") == commit
        assert grid.data.tags.get("mlflow.source.git.commit") == commit
        (entry,) = run.inputs.dataset_inputs
        assert entry.dataset.name == "wse2" and entry.dataset.digest == directory.name[-12:]
        assert entry.dataset.source_type == "local"
        assert json.loads(entry.dataset.source) == {"uri": str(directory)}
        assert json.loads(entry.dataset.profile) == {"num_rows": 48}
        assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "train")]
    # Plain tag values: MLflow's own search finds the unet run as people would write it.
    (unet,) = client.search_runs(
        [experiment_id], filter_string="tags.\"hpcbench.axis.model\" = 'unet'"
    )
    assert unet.info.run_id == tracked.older  # the older run was reused, and completed
    assert unet.data.tags["hpcbench.complete"] == "true"
    # Keys find the trials, never the grid record; the report reads the plain tags.
    assert set(runs_by_key(client, experiment_id)) == set(trial_runs)
    assert finished_keys(client, experiment_id) == set(trial_runs)
    table = load_runs(tracked.result.tracking_uri, "tracked")
    assert sorted(table.runs["model"]) == ["fcn", "unet"]
    assert list(table.runs["dose"]) == [1e4, 1e4]


def test_mlflow_runs_view_shows_the_axes_of_the_trials(tracked: Tracked) -> None:
    client, experiment_id, _ = _runs(tracked)
    envelope = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    state = json.loads(envelope["state"])
    axes = ["tags.`hpcbench.axis.model`", "tags.`hpcbench.axis.dose`"]
    scores = ["metrics.`test/wse2/f1`", "metrics.`test/wse2/detection_f1`", "metrics.`val/loss`"]
    assert state["selectedColumns"] == [*axes, *scores, "attributes.`Dataset`"]
    assert state["columnOrder"] == ["attributes.`Run Name`", *axes, *scores]
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "hpcbench.condition"}]


def test_a_resumed_train_with_tracking_skips_finished_trials(tracked: Tracked) -> None:
    lines: list[str] = []
    again = train(tracked.study, root=tracked.root, verbose=0, log=lines.append)
    resumed = train(tracked.study, root=tracked.root, resume=True, verbose=0, log=lines.append)
    keys = sorted(t.key for t in tracked.trials)
    assert sorted(again.skipped) == sorted(resumed.skipped) == keys
    assert lines == [f"all 2 train trials are already complete in {again.tracking_uri}"] * 2
    _, _, runs = _runs(tracked)
    assert len(runs) == 3  # no new run, no second grid record
