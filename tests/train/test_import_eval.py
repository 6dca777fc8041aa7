"""Imported experimental images as a test set (and CycleGAN target) of a study's trials."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TRAIN
from train_helpers import wse2_study

from hpcbench.datasets.generate import generate
from hpcbench.plan import (
    GridError,
    dataset_dir,
    dataset_hash,
    expand_cyclegan_trials,
    expand_trials,
)
from hpcbench.study import Study, validate_study_data
from hpcbench.train.segmentation import SegmentationTrainer
from hpcbench.train.sweep import TrainError, train

PT = Path(__file__).resolve().parents[2] / "data" / "pt-single-atoms-haadf"
pytestmark = pytest.mark.skipif(not PT.is_dir(), reason=f"{PT} not present")
PIXEL = 0.293  # Å


@pytest.fixture(scope="module")
def pt_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three of the Pt HAADF images with their hand labels (named after the images)."""
    folder = tmp_path_factory.mktemp("pt3")
    (folder / "labels").mkdir()
    for stem in sorted(p.stem for p in (PT / "tif_data").glob("*.tif"))[:3]:
        shutil.copy(PT / "tif_data" / f"{stem}.tif", folder)
        label = PT / "label_coordinates" / f"{stem[:3]}_Results.csv"
        shutil.copy(label, folder / "labels" / f"{stem}_Results.csv")
    return folder


def _study(folder: Path, train: dict[str, Any] | None = None, **extra: Any) -> Study:
    """The ``tiny`` WSe2 study plus an import ``pt`` of ``folder`` (12 patches of 128 px)."""
    data = wse2_study(TRAIN).model_dump(mode="json")
    pt = {
        "path": str(folder),
        "labels": str(folder / "labels"),
        "pixel_size": PIXEL,
        "target_pixel_size": 2 * PIXEL,  # 256 x 256 px, then 2 x 2 patches per image
        "patch": [128, 128],
        "classes": ["dopant"],  # single Pt atoms on carbon, scored as WSe2's dopants
    }
    imports = extra.pop("imports", {"pt": pt})
    train_data = {**data["train"], "classes": ["dopant"], "test_sets": ["pt"], **(train or {})}
    return validate_study_data({**data, "imports": imports, "train": train_data, **extra})


def test_imported_test_set_enters_the_trial_config(pt_folder: Path) -> None:
    study = _study(pt_folder)
    assert dataset_hash(study, "wse2") == dataset_hash(wse2_study(TRAIN), "wse2")
    (trial,) = expand_trials(study)
    assert trial.config["test_sets"] == ["wse2", "pt"]
    assert trial.config["datasets"]["pt"] == {
        "size": 12,
        "images_per_structure": 4,  # the patches of one image go to one split
        "classes": ["dopant"],
        "radius": 0.6,
        "hash": dataset_hash(study, "pt"),
        "test_split": False,  # never trained on: scored on all its images
    }


def test_imported_test_set_without_the_trial_classes_is_a_grid_error(pt_folder: Path) -> None:
    study = _study(pt_folder, train={"classes": ["anion_vacancy", "dopant"]})
    with pytest.raises(GridError) as info:
        expand_trials(study)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "test set pt is imported with classes dopant; it has no anion_vacancy"
    )


def test_missing_import_at_train_time_is_one_line(pt_folder: Path, tiny_root: Path) -> None:
    with pytest.raises(TrainError) as info:
        train(_study(pt_folder), root=tiny_root, log=lambda line: None)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("dataset pt is not generated (or incomplete)")
    assert "run `hpcbench generate`" in message and "(imported datasets too)" in message


def test_uneven_patches_cannot_be_split_for_a_cyclegan_target(tmp_path: Path) -> None:
    folder = tmp_path / "uneven"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a", (64, 64)), ("b", (64, 128)), ("c", (64, 64)), ("d", (64, 64))):
        np.save(folder / f"{name}.npy", rng.random(shape, dtype=np.float32))
    cyclegan = {"source": "wse2", "target": "x", "models": {"m": {}}, "patch_size": 32}
    uneven = {"x": {"path": str(folder), "pixel_size": 0.2, "patch": [64, 64]}}
    study = _study(folder, imports=uneven, cyclegan=cyclegan, train={"test_sets": []})
    with pytest.raises(GridError, match=r"^imported dataset x cannot be split by image: .*"):
        expand_cyclegan_trials(study)
    (folder / "b.npy").unlink()  # three images of one patch each: splits one per role
    (trial,) = expand_cyclegan_trials(study)
    assert trial.config["datasets"]["x"]["images_per_structure"] == 1
    assert trial.config["target_size"] == 1


def test_simulation_trained_fcn_is_scored_on_imported_images(
    pt_folder: Path, tiny_root: Path, tmp_path: Path
) -> None:
    study = _study(pt_folder)
    (imported,) = generate(study, root=tmp_path, only=["pt"], progress=False)
    assert imported.directory == dataset_dir(study, tmp_path, "pt")
    (trial,) = expand_trials(study)
    dirs = {"wse2": dataset_dir(study, tiny_root, "wse2"), "pt": imported.directory}
    trainer = SegmentationTrainer(trial.trial, dirs, key=trial.key)
    trainer.run_epoch()
    metrics, examples = trainer.test()
    for key in ("detection_f1", "detection_recall", "f1", "intersection_over_union"):
        assert math.isfinite(metrics[f"test/pt/{key}"]), key
    assert 0 <= metrics["test/pt/detection_f1"] <= 1
    assert examples["pt"]["images"].shape[1:] == (128, 128)


def test_cyclegan_trains_towards_imported_images(
    pt_folder: Path, tiny_root: Path, tmp_path: Path
) -> None:
    from hpcbench.train.cyclegan import CycleGANTrainer

    small = {"gen_width": 4, "gen_depth": 3, "disc_width": 4, "disc_layers": 2, "pool_size": 4}
    cyclegan = {
        "source": "wse2",
        "target": "pt",
        "models": {"tiny": small},
        "train_size": 8,
        "epochs": 1,
        "epochs_decay": 1,
        "batch_size": 4,
        "patch_size": 32,
        "fid": {"images": 4},
    }
    study = _study(pt_folder, cyclegan=cyclegan)
    (imported,) = generate(study, root=tmp_path, only=["pt"], progress=False)
    (trial,) = expand_cyclegan_trials(study)
    assert trial.config["target_size"] == 4  # one image's 4 patches: 1 of 3 images trains
    dirs = {"wse2": dataset_dir(study, tiny_root, "wse2"), "pt": imported.directory}
    trainer = CycleGANTrainer(trial.trial, dirs, key=trial.key)
    history = trainer.run_epoch()
    assert math.isfinite(history["val/frechet_distance"])
    metrics, _ = trainer.test()
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
