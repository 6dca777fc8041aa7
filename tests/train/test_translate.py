"""The seed-000 workflow through ``train``: CycleGAN trial → translated dataset → FCNs.

A Ray head and a worker node (the trials and the translation tasks are spread over
both), a real SQLite MLflow store and real (tiny) datasets; the CycleGAN and FCNs are
tiny so the whole stage runs in well under a minute on two cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from train_helpers import write_dataset

from hpcbench.datasets.manifest import read_manifest, verify
from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.datasets.show import class_names
from hpcbench.plan import (
    dataset_dir,
    dataset_hash,
    expand_cyclegan_trials,
    expand_trials,
    make_plan,
)
from hpcbench.study import Study, validate_study_data
from hpcbench.train.cyclegan import load_translator
from hpcbench.train.sweep import SweepResult, TrainError, train
from hpcbench.train.translate import GENERATOR_FILE, translate_dataset, translation_seed

_DATASET: dict[str, Any] = {
    "structure": {
        "kind": "mx2",
        "supercell": [6, 4],
        "defects": {"anion_vacancy": {"count": {"min": 1, "max": 3}}},
    },
    "simulation": {"method": "incoherent", "sampling": 0.08, "defocus": 0, "Cs": 0},
    "image": {"shape": [64, 64], "pixel_size": 0.16},
    "labels": {"classes": ["anion_vacancy"]},
    "size": 48,
    "images_per_structure": 4,
    "shard_size": 24,
}
STUDY: dict[str, Any] = {
    "name": "translate",
    "seed": 4,
    "datasets": {
        "sim": _DATASET,
        "exp": {**_DATASET, "corruption": {"dose": 1e5, "blur": 0.4, "background": 0.4}},
    },
    "cyclegan": {
        "source": "sim",
        "target": "exp",
        "models": {"tiny": {"gen_width": 4, "gen_depth": 4, "disc_width": 4, "disc_layers": 2}},
        "epochs": 2,
        "epochs_decay": 1,
        "batch_size": 4,
        "patch_size": 32,
        "fid": {"images": 8},
    },
    "translate": {"sim-gan": {"source": "sim"}},
    "train": {
        "models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 3}},
        "epochs": 1,
        "batch_size": 8,
        "augment": {"crop": [32, 32]},
        "split": {"validation": 0.2, "test": 0.2},
        "test_sets": ["exp"],
        "axes": {"dataset": ["sim", "sim-gan"]},
        "repeats": 1,
    },
}


pytestmark = pytest.mark.cluster


@dataclass
class Done:
    study: Study
    root: Path
    result: SweepResult
    lines: list[str]
    address: str


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory, two_node_cluster: str) -> Iterator[Done]:
    study = validate_study_data(STUDY)
    root = tmp_path_factory.mktemp("translate")
    for name in ("sim", "exp"):
        write_dataset(study, name, root)
    lines: list[str] = []
    result = train(study, root=root, address=two_node_cluster, verbose=0, log=lines.append)
    yield Done(study, root, result, lines, two_node_cluster)


def _client(done: Done) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(done.result.tracking_uri)


def _runs(done: Done, kind: str) -> list[Any]:
    client = _client(done)
    experiment = client.get_experiment_by_name("translate")
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if r.data.tags.get("hpcbench.kind") == kind]


def test_the_cyclegan_trial_is_an_mlflow_run_with_losses_and_fid_per_epoch(done: Done) -> None:
    assert done.result.cyclegan is not None and not done.result.cyclegan.errored
    (run,) = _runs(done, "cyclegan")
    (trial,) = expand_cyclegan_trials(done.study)
    tags, params = run.data.tags, run.data.params
    assert tags["hpcbench.trial_key"] == trial.key and tags["hpcbench.complete"] == "true"
    assert params["fid.features"] == "spectral-v1"  # every FID names its extractor
    assert params["model.fft_weight"] == "1.0" and params["target"] == "exp"
    client = _client(done)
    for name in ("val/frechet_distance", "train/loss/cycle", "train/loss/d_x_fft"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2]
    for name in ("test/frechet_distance", "test/frechet_distance_raw", "test/histogram_kl"):
        assert np.isfinite(run.data.metrics[name])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"best.pt", "predictions.png", "trial.json"}


def test_the_translated_dataset_keeps_labels_and_records_its_provenance(done: Done) -> None:
    study, root = done.study, done.root
    directory = dataset_dir(study, root, "sim-gan")
    assert done.result.translated == {"sim-gan": directory}
    assert directory.name == f"sim-gan-{dataset_hash(study, 'sim-gan')}"
    assert verify(directory).ok
    manifest = read_manifest(directory)
    (run,) = _runs(done, "cyclegan")
    spec = manifest.spec
    assert spec["kind"] == "translated" and manifest.complete
    assert spec["cyclegan"]["run_id"] == run.info.run_id
    assert spec["cyclegan"]["key"] == expand_cyclegan_trials(study)[0].key
    assert spec["source"]["hash"] == dataset_hash(study, "sim")
    source = read_dataset(dataset_dir(study, root, "sim"))
    translated = read_dataset(directory)
    assert "clean" not in translated.column_names
    assert class_names(directory) == {1: "anion_vacancy"}  # the source's labels
    for column in ("sample_id", "mask", "coordinates"):
        assert translated.column(column).equals(source.column(column))
    images = images_to_numpy(translated, "image")
    raw = images_to_numpy(source, "image")
    assert images.shape == raw.shape and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert not np.allclose(images, images.mean())  # not a constant image
    # The kept generator reproduces the stored images from the source images (to float
    # rounding: another batch size takes other convolution paths).
    translator = load_translator(directory / GENERATOR_FILE)
    ids = source.column("sample_id").to_numpy()[:5]
    again = translator(raw[:5], seed=translation_seed(study, "sim-gan"), sample_ids=ids)
    np.testing.assert_allclose(again, images[:5], atol=1e-6)


def test_fcns_train_on_raw_and_translated_and_are_scored_on_the_target(done: Done) -> None:
    assert not done.result.errored
    runs = _runs(done, "segmentation")
    assert sorted(r.data.tags["hpcbench.trial_key"] for r in runs) == sorted(
        t.key for t in expand_trials(done.study)
    )
    for run in runs:
        assert "test/exp/detection_f1" in run.data.metrics
    assert any("FID" in line for line in done.lines) or done.result.cyclegan is not None


def test_a_rerun_redoes_nothing_and_a_damaged_shard_is_retranslated(done: Done) -> None:
    study, root = done.study, done.root
    directory = dataset_dir(study, root, "sim-gan")
    shard = sorted(directory.glob("shard-*.parquet"))[1]
    before = shard.read_bytes()
    lines: list[str] = []
    again = train(study, root=root, address=done.address, verbose=0, log=lines.append)
    assert not again.errored and len(_runs(done, "cyclegan")) == 1
    assert any("complete" in line for line in lines)
    shard.write_bytes(b"damaged")
    os.utime(shard)
    import ray

    ray.init(address=done.address)
    try:
        translate_dataset(make_plan(study), "sim-gan", root=root, log=lines.append)
    finally:
        ray.shutdown()
    assert shard.read_bytes() == before  # the same bytes again (seeded translation)
    assert verify(directory).ok
    assert pq.read_table(shard).num_rows == 24


def test_translating_without_a_trained_cyclegan_is_one_line(tmp_path: Path) -> None:
    study = validate_study_data(STUDY)
    write_dataset(study, "sim", tmp_path)
    with pytest.raises(TrainError, match=r"translate.sim-gan: the CycleGAN trial \w+ .* train"):
        translate_dataset(make_plan(study), "sim-gan", root=tmp_path, log=lambda _: None)
    assert not dataset_dir(study, tmp_path, "sim-gan").exists()


def test_the_report_shows_this_grids_cyclegan_and_both_training_sets(
    done: Done, tmp_path: Path
) -> None:
    import pandas as pd

    from hpcbench.report.build import build_report

    # A complete CycleGAN run of an earlier version of the study in the same experiment
    # is not part of the reported grid and must not be reported.
    client = _client(done)
    experiment = client.get_experiment_by_name("translate")
    stale = client.create_run(
        experiment.experiment_id,
        tags={
            "hpcbench.kind": "cyclegan",
            "hpcbench.complete": "true",
            "hpcbench.study": "translate",
            "hpcbench.trial_key": "000000000000",
        },
    )
    client.log_metric(stale.info.run_id, "test/frechet_distance", 99.0)
    client.set_terminated(stale.info.run_id, "FINISHED")
    out = tmp_path / "report"
    build_report("translate", tracking_uri=done.result.tracking_uri, out=out)
    text = (out / "report.md").read_text()
    assert "## CycleGAN translation" in text and "spectral-v1" in text
    cyclegan = pd.read_csv(out / "tables" / "cyclegan.csv", dtype={"trial_key": str})
    assert list(cyclegan["trial_key"]) == [expand_cyclegan_trials(done.study)[0].key]
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["dataset"]) == ["sim", "sim-gan"]
    assert results["test/exp/detection_f1"].notna().all()
    # Each level's own held-out split is reported once, as "held-out", not per set.
    assert "F1 (test: sim)" not in text and "F1 (test: exp)" in text
