"""The trial grid: counts, keys, seeds, splits and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from train_helpers import wse2_study

from hpcbench.plan import GridError, expand_trials, make_plan, trial_seed

BASE = {
    "models": {
        "fcn": {"architecture": "fcn"},
        "small": {"architecture": "unet", "width": 4, "depth": 2},
    }
}


def test_grid_is_the_product_of_axes_times_repeats() -> None:
    study = wse2_study(
        {**BASE, "axes": {"model": ["fcn", "small"], "dose": [1e4, None, 1e6]}, "repeats": 3},
        size=160,
    )
    trials = expand_trials(study)
    assert len(trials) == 2 * 3 * 3
    assert len({t.key for t in trials}) == len(trials)
    # First axis slowest, repeats innermost.
    assert [t.condition["model"] for t in trials[:9]] == ["fcn"] * 9
    assert [t.repeat for t in trials[:3]] == [0, 1, 2]
    assert trials[3].condition == {"model": "fcn", "dose": None}
    assert trials[3].label == "model=fcn dose=none"
    assert trials[0].config["dose"] == 1e4 and trials[3].config["dose"] is None
    assert trials[9].config["model"] == {
        "architecture": "unet",
        "width": 4,
        "depth": 2,
        "upsampling": "transpose",
    }


def test_keys_are_deterministic_and_follow_the_config() -> None:
    spec = {**BASE, "axes": {"train_size": [8, 16]}, "repeats": 2}
    first = [t.key for t in expand_trials(wse2_study(spec, size=160))]
    again = [t.key for t in expand_trials(wse2_study(spec, size=160))]
    assert first == again
    longer = [t.key for t in expand_trials(wse2_study({**spec, "epochs": 3}, size=160))]
    assert not set(first) & set(longer)
    other_data = [t.key for t in expand_trials(wse2_study(spec, size=168))]
    assert not set(first) & set(other_data)  # the dataset hash enters the key


def test_repeats_share_seeds_across_conditions() -> None:
    study = wse2_study({**BASE, "axes": {"model": ["fcn", "small"]}, "repeats": 2}, size=160)
    trials = expand_trials(study)
    seeds = {(t.condition["model"], t.repeat): t.config["seed"] for t in trials}
    assert seeds[("fcn", 0)] == seeds[("small", 0)] == trial_seed(study.seed, 0)
    assert seeds[("fcn", 0)] != seeds[("fcn", 1)]


def test_split_is_by_structure_and_covers_the_dataset() -> None:
    study = wse2_study(BASE, size=160)  # 20 structures of 8 images
    split = make_plan(study).split("wse2")
    all_ids = np.concatenate([split.train, split.validation, split.test])
    assert np.array_equal(np.sort(all_ids), np.arange(160))
    structures = [set((ids // 8).tolist()) for ids in (split.train, split.validation, split.test)]
    assert not structures[0] & structures[1] and not structures[0] & structures[2]
    assert not structures[1] & structures[2]
    assert len(structures[1]) == len(structures[2]) == 2  # round(0.1 * 20)
    again = make_plan(study).split("wse2")
    assert np.array_equal(again.test, split.test)
    reseeded = make_plan(study.model_copy(update={"seed": 4})).split("wse2")
    assert not np.array_equal(reseeded.test, split.test)


def test_default_train_size_is_the_whole_training_split() -> None:
    study = wse2_study(BASE, size=160)
    (trial,) = expand_trials(
        study.model_copy(update={"train": study.train.model_copy(update={"repeats": 1})})
    )  # type: ignore[union-attr]
    assert trial.config["train_size"] == make_plan(study).split("wse2").train.size == 128
    assert trial.config["classes"] == ["anion_vacancy", "dopant"]


def test_train_size_beyond_the_split_is_one_line() -> None:
    study = wse2_study({**BASE, "axes": {"train_size": [16, 500]}}, size=160)
    with pytest.raises(GridError, match=r"^train_size 500 exceeds the 128 training images"):
        expand_trials(study)


def test_dataset_too_small_to_split() -> None:
    study = wse2_study(BASE, size=16)  # 2 structures
    with pytest.raises(GridError, match="has 2 structures, too few to split"):
        expand_trials(study)


def test_restating_a_default_as_an_axis_value_twice_is_an_error() -> None:
    study = wse2_study({**BASE, "axes": {"dose": [1e4, 1e4]}}, size=160)
    with pytest.raises(GridError, match="identical trials"):
        expand_trials(study)
