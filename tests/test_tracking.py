"""MLflow conventions: plain axis tags (older JSON ones still read), run names, the git
commit, dataset inputs and the saved runs view, on a real SQLite store."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from hpcbench.report.aggregate import load_runs
from hpcbench.tracking import (
    TAG_AXIS,
    VIEW_TAG,
    axis_tag,
    axis_value,
    client_for,
    dataset_inputs,
    default_tracking_uri,
    ensure_experiment,
    git_commit,
    iter_runs,
    run_name,
    runs_view,
)
from hpcbench.train.tracker import MLflowTracker


def test_axis_tags_are_plain_strings_and_older_json_tags_still_read() -> None:
    assert [axis_tag(v) for v in ("unet", 64, 1e4, 1e6, 2.5e-4, None)] == [
        "unet", "64", "10000", "1e+06", "0.00025", "none",
    ]  # fmt: skip
    assert axis_tag(12345.678) == "12345.678"  # {:g} would round it: written in full
    assert axis_tag(["anion_vacancy", "dopant"]) == "anion_vacancy+dopant"
    # New plain values come back as written; older stores' JSON is decoded.
    assert [axis_value(t) for t in ("unet", "10000", "none", "a+b")] == [
        "unet", "10000", "none", "a+b",
    ]  # fmt: skip
    assert axis_value('"unet"') == "unet" and axis_value("null") is None
    assert axis_value('["anion_vacancy", "dopant"]') == ["anion_vacancy", "dopant"]
    assert run_name("model=unet dose=10000", 3) == "model=unet dose=10000 #3"


def _config(key: str, condition: dict[str, object], repeat: int = 0) -> dict[str, object]:
    label = " ".join(f"{k}={axis_tag(v)}" for k, v in condition.items())
    return {
        "key": key,
        "label": label,
        "repeat": repeat,
        "condition": condition,
        "trial": {
            "study": "conventions",
            "dataset": "data",
            "datasets": {"data": {"hash": "0123456789ab", "size": 8}},
            "version": "0.1.0",
        },
    }


def test_older_json_axis_tags_and_plain_ones_give_the_same_report(tmp_path: Path) -> None:
    """A store written before tags were plain (JSON values) reads as a new one does."""
    tables = []
    for form in ("plain", "json"):
        uri = default_tracking_uri(tmp_path / form)
        client = client_for(uri)
        experiment = ensure_experiment(client, "conventions", uri)
        tracker = MLflowTracker(uri, "conventions")
        conditions = [
            {"model": "unet", "dose": 1e4, "classes": ["anion_vacancy", "dopant"]},
            {"model": "fcn", "dose": None, "classes": ["dopant"]},
        ]
        for index, condition in enumerate(conditions):
            run_id = tracker.run_id(_config(f"{index:012d}", condition))
            client.log_metric(run_id, "test/data/f1", 0.5 + index / 10, step=1)
            client.set_tag(run_id, "hpcbench.complete", "true")
            if form == "json":  # as versions before plain tags wrote them
                for axis, value in condition.items():
                    client.set_tag(run_id, f"{TAG_AXIS}{axis}", json.dumps(value))
        tags = [r.data.tags for r in iter_runs(client, experiment)]
        assert {t[f"{TAG_AXIS}model"] for t in tags} == (
            {"unet", "fcn"} if form == "plain" else {'"unet"', '"fcn"'}
        )
        tables.append(load_runs(uri, "conventions").runs)
    plain, old = tables
    for column in ("model", "classes", "heldout/f1"):
        assert list(plain[column]) == list(old[column])
    assert list(plain["classes"]) == ["dopant", "anion_vacancy+dopant"]
    assert math.isnan(plain["dose"].iloc[0]) and math.isnan(old["dose"].iloc[0])
    assert list(plain["dose"].iloc[1:]) == list(old["dose"].iloc[1:]) == [1e4]


def test_git_commit_is_this_checkouts_head() -> None:
    package = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    uncached = git_commit.__wrapped__()  # HEAD may have moved since a cached call
    assert uncached == (found.stdout.strip() if found.returncode == 0 else None)


def test_dataset_inputs_name_the_directory_and_hash_without_reading(tmp_path: Path) -> None:
    datasets = {"wse2": {"hash": "aaaabbbbcccc", "size": 48}, "pt": {"hash": "111122223333"}}
    inputs = dataset_inputs(datasets, {"wse2": "a/wse2-aaaabbbbcccc", "pt": str(tmp_path)}, "wse2")
    assert [(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs] == [
        ("wse2", "aaaabbbbcccc", "train"),
        ("pt", "111122223333", "eval"),
    ]
    assert json.loads(inputs[0].dataset.source)["uri"] == str(Path("a/wse2-aaaabbbbcccc").resolve())
    assert inputs[1].dataset.profile is None  # no size known: no profile
    assert dataset_inputs(datasets, {}, "wse2") == []  # no directory known: none


def test_runs_view_is_an_mlflow_saved_view_rewritten_only_on_change(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path)
    client = client_for(uri)
    experiment = ensure_experiment(client, "conventions", uri)
    assert runs_view(client, experiment) is None  # no trial runs: no view
    tracker = MLflowTracker(uri, "conventions")
    run_id = tracker.run_id(_config("000000000001", {"train_size": 8, "model": "unet"}))
    client.log_metric(run_id, "test/data/f1", 0.5)
    client.log_metric(run_id, "test/other/detection_f1", 0.25)
    client.log_metric(run_id, "test/data/precision", 0.5)  # not a column of the view
    assert runs_view(client, experiment) == "hpcbench"
    first = client.get_experiment(experiment).tags[VIEW_TAG]
    envelope = json.loads(first)
    assert envelope["name"] == "hpcbench: trials by condition"
    state = json.loads(envelope["state"])
    assert state["selectedColumns"] == [
        "tags.`hpcbench.axis.train_size`",  # in the condition's (the study's) order
        "tags.`hpcbench.axis.model`",
        "metrics.`test/data/f1`",
        "metrics.`test/other/detection_f1`",
        "metrics.`val/loss`",
        "attributes.`Dataset`",
    ]
    assert state["groupBy"] == {
        "aggregateFunction": "average",
        "groupByKeys": [{"mode": "tag", "groupByData": "hpcbench.condition"}],
    }
    assert runs_view(client, experiment) == "hpcbench"
    assert client.get_experiment(experiment).tags[VIEW_TAG] == first  # unchanged: not rewritten
