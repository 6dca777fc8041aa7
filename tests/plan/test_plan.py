"""The plan: typed trials carry the study's settings, serialise to the keyed JSON, and are
derived once; dataset identity follows what makes the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcbench.plan import (
    CycleGANTrial,
    DatasetInfo,
    GridError,
    SegmentationTrial,
    make_plan,
    parse_trial,
    trial_key,
)
from hpcbench.plan.trials import UNKEYED_DEFAULTS
from hpcbench.study import CycleGANSettings, SegmentationSettings, load_study

STUDIES = Path(__file__).parents[2] / "studies"


def test_segmentation_trials_carry_every_training_setting() -> None:
    study = load_study(STUDIES / "quickstart.yaml")
    train = study.train
    assert train is not None
    plan = make_plan(study)
    assert plan.trials
    for spec in plan.trials:
        trial = spec.trial
        assert isinstance(trial, SegmentationTrial)
        for name in SegmentationSettings.model_fields:
            assert getattr(trial, name) == getattr(train, name), name
            # In the keyed JSON, except a newer field at its default (old keys stay).
            unkeyed = UNKEYED_DEFAULTS.get(name, object())
            assert name in spec.config or getattr(trial, name) == unkeyed, name
        assert trial.seed == plan.trials[spec.repeat].trial.seed  # common random numbers


def test_a_settings_axis_replaces_the_setting_per_condition() -> None:
    study = load_study(STUDIES / "quickstart.yaml", smoke=True)
    assert study.train is not None
    axes = study.train.axes.model_copy(update={"learning_rate": [1e-2, 1e-4]})
    study = study.model_copy(update={"train": study.train.model_copy(update={"axes": axes})})
    rates = {spec.label: spec.trial.learning_rate for spec in make_plan(study).trials}
    assert {rate for label, rate in rates.items() if "learning_rate=0.01" in label} == {1e-2}
    assert {rate for label, rate in rates.items() if "learning_rate=0.0001" in label} == {1e-4}


def test_cyclegan_trials_carry_every_cyclegan_setting() -> None:
    study = load_study(STUDIES / "khan2023-cyclegan.yaml")
    assert study.cyclegan is not None
    (spec,) = make_plan(study).cyclegan_trials
    trial = spec.trial
    assert isinstance(trial, CycleGANTrial)
    for name in CycleGANSettings.model_fields:
        assert getattr(trial, name) == getattr(study.cyclegan, name), name
    assert spec.config["fid"]["weights"] is None  # a runtime setting, not keyed
    assert spec.config["task"] == "cyclegan"


def test_the_json_form_is_what_the_key_hashes_and_parses_back() -> None:
    plan = make_plan(load_study(STUDIES / "khan2023-cyclegan.yaml", smoke=True))
    for spec in plan.all_trials():
        assert trial_key(spec.config) == spec.key == spec.trial.key
        assert parse_trial(spec.config) == spec.trial
    translated = plan.trials[-1].config["datasets"]["simulation-cyclegan"]
    assert translated["split_name"] == "simulation"
    assert "split_name" not in plan.trials[0].config["datasets"]["simulation"]


def test_dataset_info_leaves_out_an_absent_split_name() -> None:
    info = DatasetInfo(size=8, images_per_structure=2, classes=["a"], radius=0.6, hash="x" * 12)
    assert "split_name" not in info.model_dump(mode="json")
    named = info.model_copy(update={"split_name": "src"})
    assert named.model_dump(mode="json")["split_name"] == "src"


def test_plan_derives_each_part_once() -> None:
    plan = make_plan(load_study(STUDIES / "khan2023-cyclegan.yaml", smoke=True))
    assert plan.trials is plan.trials
    assert plan.cyclegan_trials is plan.cyclegan_trials
    assert plan.dataset("simulation-cyclegan") is plan.dataset("simulation-cyclegan")
    # A translated dataset's hash covers its CycleGAN trial's key.
    identity = plan.translation_identity("simulation-cyclegan")
    assert identity["cyclegan_key"] == plan.cyclegan_trials[0].key
    assert identity["source_hash"] == plan.dataset_hash("simulation")


def test_layout_under_the_root(tmp_path: Path) -> None:
    study = load_study(STUDIES / "quickstart.yaml")
    plan = make_plan(study)
    name = "wse2-incoherent"
    expected = tmp_path / "quickstart" / "datasets" / f"{name}-{plan.dataset_hash(name)}"
    assert plan.dataset_dir(tmp_path, name) == expected
    assert plan.tune_dir(tmp_path) == tmp_path / "quickstart" / "tune"
    assert [d.kind for d in plan.datasets()] == ["simulated", "simulated"]


def test_a_too_large_train_size_is_a_grid_error() -> None:
    study = load_study(STUDIES / "quickstart.yaml", smoke=True)
    assert study.train is not None
    train = study.train.model_copy(update={"train_size": 10_000})
    plan = make_plan(study.model_copy(update={"train": train}))
    with pytest.raises(GridError, match="train_size 10000 exceeds"):
        _ = plan.trials
