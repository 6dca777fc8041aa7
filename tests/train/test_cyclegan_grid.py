"""The CycleGAN section of a study: its trials, translated datasets' identity and splits."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from hpcbench.plan import (
    GridError,
    dataset_hash,
    expand_cyclegan_trials,
    expand_trials,
    make_plan,
    trial_seed,
)
from hpcbench.study import Study, validate_study_data

_DATASET = {
    "structure": {"kind": "mx2", "supercell": [4, 3]},
    "simulation": {"method": "incoherent"},
    "image": {"shape": [64, 64], "pixel_size": 0.16},
    "labels": {"classes": ["anion_vacancy"]},
    "size": 40,
    "images_per_structure": 4,
    "shard_size": 20,
}

STUDY: dict[str, Any] = {
    "name": "cg",
    "seed": 5,
    "datasets": {
        "sim": _DATASET,
        "exp": {**_DATASET, "corruption": {"blur": 0.3, "dose": 1e5}},
    },
    "cyclegan": {
        "source": "sim",
        "target": "exp",
        "models": {
            "khan": {"gen_width": 8, "gen_depth": 4},
            "plain": {"gen_width": 8, "gen_depth": 4, "fft_weight": 0.0},
        },
        "axes": {"model": ["khan", "plain"]},
        "repeats": 2,
        "epochs": 4,
        "epochs_decay": 2,
        "patch_size": 32,
    },
    "translate": {
        "sim-gan": {"source": "sim"},
        "sim-plain": {"source": "sim", "cyclegan": "plain"},
    },
    "train": {
        "models": {"fcn": {"architecture": "fcn"}},
        "test_sets": ["exp"],
        "axes": {"dataset": ["sim", "sim-gan"]},
        "repeats": 2,
    },
}


def _study(**changes: Any) -> Study:
    data = copy.deepcopy(STUDY)
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return validate_study_data(data)


def test_cyclegan_trials_are_models_times_repeats_with_shared_seeds() -> None:
    study = _study()
    trials = expand_cyclegan_trials(study)
    assert [(t.config["model_name"], t.repeat) for t in trials] == [
        ("khan", 0),
        ("khan", 1),
        ("plain", 0),
        ("plain", 1),
    ]
    assert len({t.key for t in trials}) == 4
    first = trials[0].config
    assert first["task"] == "cyclegan"
    assert (first["dataset"], first["target"]) == ("sim", "exp")
    assert first["model"]["fft_weight"] == 1.0 and trials[2].config["model"]["fft_weight"] == 0.0
    # Repeat r has the segmentation trials' repeat-r seed (paired comparisons).
    assert [t.config["seed"] for t in trials[:2]] == [
        trial_seed(study.seed, 0),
        trial_seed(study.seed, 1),
    ]
    # The whole training split of each domain by default; the FID extractor is named.
    assert first["train_size"] == make_plan(study).split("sim").train.size
    assert first["target_size"] == make_plan(study).split("exp").train.size
    assert first["fid"] == {"features": "spectral-v1", "images": 64, "weights": None}
    assert expand_cyclegan_trials(study)[0].key == trials[0].key  # deterministic


def test_cyclegan_train_size_above_the_split_is_one_line() -> None:
    with pytest.raises(GridError, match=r"cyclegan.train_size 999 exceeds the \d+ training"):
        expand_cyclegan_trials(_study(cyclegan={"train_size": 999}))


def test_translated_dataset_identity_follows_its_cyclegan_not_the_segmentation() -> None:
    study = _study()
    assert make_plan(study).translation_trial("sim-gan").config["model_name"] == "khan"
    assert make_plan(study).translation_trial("sim-plain").config["model_name"] == "plain"
    base = dataset_hash(study, "sim-gan")
    assert base != dataset_hash(study, "sim-plain")
    # Training the CycleGAN longer changes the translated data, not the simulated data.
    longer = _study(cyclegan={"epochs": 6})
    assert dataset_hash(longer, "sim-gan") != base
    assert dataset_hash(longer, "sim") == dataset_hash(study, "sim")
    # Segmentation settings do not touch the translated dataset.
    assert dataset_hash(_study(train={"epochs": 3}), "sim-gan") == base


def test_translated_dataset_is_split_and_described_like_its_source() -> None:
    study = _study()
    source, translated = make_plan(study).split("sim"), make_plan(study).split("sim-gan")
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(source[part], translated[part])
    info = make_plan(study).dataset("sim-gan").info.model_dump()
    assert info["split_name"] == "sim" and info["hash"] == dataset_hash(study, "sim-gan")
    assert "split_name" not in make_plan(study).dataset("sim").info.model_dump()


def test_cyclegan_datasets_are_scored_on_their_test_split() -> None:
    # The CycleGAN trains on the target's training images, so the FCNs are scored on
    # its held-out test split, not on all of it.
    trials = expand_trials(_study())
    assert {t.condition["dataset"] for t in trials} == {"sim", "sim-gan"}
    assert all(t.config["datasets"]["exp"]["test_split"] for t in trials)


def test_a_trial_dose_on_a_translated_dataset_is_refused() -> None:
    with pytest.raises(GridError, match="dataset sim-gan is translated by a CycleGAN"):
        expand_trials(_study(train={"dose": 1e4}))
