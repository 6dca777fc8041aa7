"""The segmentation trainer without Ray: recipe, determinism, resume, test metrics, artifacts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpcbench.metrics import confusion_matrix, segmentation_scores
from hpcbench.plan import dataset_dir, expand_trials, parse_trial
from hpcbench.study import Study
from hpcbench.train.segmentation import SegmentationTrainer, load_checkpoint, predict


def _trainer(study: Study, root: Path, **changes: Any) -> SegmentationTrainer:
    (trial,) = expand_trials(study)
    config = parse_trial({**trial.config, **changes})
    return SegmentationTrainer(config, {"wse2": dataset_dir(study, root, "wse2")}, key=trial.key)


def test_epochs_follow_the_recipe(tiny_study: Study, tiny_root: Path) -> None:
    trainer = _trainer(tiny_study, tiny_root, dose=1e5)
    first = trainer.run_epoch()
    second = trainer.run_epoch()
    assert (first["epoch"], second["epoch"]) == (1.0, 2.0)
    # Adam at 1e-3, decayed by 0.8 after each epoch (seed 001).
    assert first["train/learning_rate"] == pytest.approx(1e-3)
    assert second["train/learning_rate"] == pytest.approx(8e-4)
    for name in ("train/loss", "val/loss", "train/images_per_second"):
        assert math.isfinite(second[name]) and second[name] > 0
    assert 0 <= second["train/data_fraction"] < 1
    assert len(trainer.train_set) == 32  # 4 training structures x 8 (default train_size)
    assert trainer.best_epoch in (1, 2)


def test_resume_from_a_checkpoint_is_exact(
    tiny_study: Study, tiny_root: Path, tmp_path: Path
) -> None:
    straight = _trainer(tiny_study, tiny_root, dose=1e5)
    straight.run_epoch()
    straight.run_epoch()
    interrupted = _trainer(tiny_study, tiny_root, dose=1e5)
    interrupted.run_epoch()
    interrupted.save(tmp_path)
    resumed = _trainer(tiny_study, tiny_root, dose=1e5)
    resumed.load(tmp_path)
    resumed.run_epoch()
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    timing = ("train/images_per_second", "train/data_fraction")

    def scores(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k not in timing} for h in history]

    assert str(scores(resumed.history)) == str(scores(straight.history))  # NaN-safe


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32_and_resumes_exactly(
    tiny_study: Study, tiny_root: Path, tmp_path: Path, precision: str
) -> None:
    reference = _trainer(tiny_study, tiny_root, dose=1e5)
    mixed = _trainer(tiny_study, tiny_root, dose=1e5, precision=precision)
    assert mixed.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert mixed.scaler.is_enabled() == (precision == "fp16")
    fp32_loss = reference.run_epoch()["train/loss"]
    mixed_loss = mixed.run_epoch()["train/loss"]
    # Autocast really ran (the arithmetic differs) and stayed close to fp32.
    assert mixed_loss != fp32_loss
    assert mixed_loss == pytest.approx(fp32_loss, rel=0.05)
    mixed.run_epoch()
    interrupted = _trainer(tiny_study, tiny_root, dose=1e5, precision=precision)
    interrupted.run_epoch()
    interrupted.save(tmp_path)
    resumed = _trainer(tiny_study, tiny_root, dose=1e5, precision=precision)
    resumed.load(tmp_path)
    resumed.run_epoch()
    for name, tensor in mixed.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_precision_enters_the_key_only_when_set(tiny_study: Study) -> None:
    (trial,) = expand_trials(tiny_study)
    assert "precision" not in trial.config and trial.trial.precision == "fp32"
    bf16 = parse_trial({**trial.config, "precision": "bf16"})
    assert bf16.to_config()["precision"] == "bf16" and bf16.key != trial.key
    assert parse_trial(trial.config).key == trial.key


def test_seed_changes_initialisation_and_subset(tiny_study: Study, tiny_root: Path) -> None:
    a = _trainer(tiny_study, tiny_root, train_size=8)
    b = _trainer(tiny_study, tiny_root, train_size=16)
    c = _trainer(tiny_study, tiny_root, train_size=8, seed=a.seed + 1)
    # Same seed: nested subsets and equal initial weights; another seed: neither.
    assert set(a.train_set.sample_ids) <= set(b.train_set.sample_ids)
    assert set(a.train_set.sample_ids) != set(c.train_set.sample_ids)
    weight = next(iter(a.model.state_dict()))
    assert torch.equal(a.model.state_dict()[weight], b.model.state_dict()[weight])
    assert not torch.equal(a.model.state_dict()[weight], c.model.state_dict()[weight])


def test_test_metrics_and_artifacts(tiny_study: Study, tiny_root: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_study, tiny_root)
    trainer.run_epoch()
    metrics, examples = trainer.test()
    prefix = "test/wse2/"
    for name in (
        "f1",
        "intersection_over_union",
        "precision",
        "recall",
        "detection_f1",
        "detection_recall",
        "f1/anion_vacancy",
        "f1/dopant",
    ):
        assert prefix + name in metrics
    for name, value in metrics.items():  # NaN where undefined (e.g. no sites of a class)
        if not name.endswith("localisation_error"):
            assert math.isnan(value) or 0 <= value <= 1, name
    # The scores are those of the best state on the held-out structures.
    split = trainer.split("wse2")
    batch = trainer._image_set("wse2", split.test).batch(np.arange(split.test.size))
    prediction = predict(trainer.best_model(), batch.images, stride=trainer.stride).argmax(1)
    confusion = confusion_matrix(prediction, batch.masks, 3)
    expected = segmentation_scores(confusion, class_names=["background", *trainer.classes])
    assert str(metrics[prefix + "recall"]) == str(expected["recall"])
    assert str(metrics[prefix + "f1/dopant"]) == str(expected["f1/dopant"])
    written = trainer.save_artifacts(tmp_path, examples)
    assert sorted(p.name for p in written) == ["best.pt", "predictions.png", "trial.json"]
    assert (tmp_path / "predictions.png").read_bytes()[:4] == b"\x89PNG"
    model, content = load_checkpoint(tmp_path / "best.pt")
    assert content["classes"] == ["anion_vacancy", "dopant"]
    assert content["data_hashes"] == {"wse2": dataset_dir(tiny_study, tiny_root, "wse2").name[-12:]}
    images = examples["wse2"]["images"]
    expected = predict(trainer.best_model(), images, stride=trainer.stride)
    assert np.array_equal(predict(model, images, stride=trainer.stride), expected)


def test_predict_pads_to_the_stride(tiny_study: Study, tiny_root: Path) -> None:
    trainer = _trainer(tiny_study, tiny_root)
    images = np.random.default_rng(0).random((2, 30, 37), dtype=np.float32)
    probabilities = predict(trainer.model, images, stride=trainer.stride)
    assert probabilities.shape == (2, 3, 30, 37)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_crop_must_fit_the_model_stride(tiny_study: Study, tiny_root: Path) -> None:
    with pytest.raises(ValueError, match=r"augment.crop \[36, 36\] must be a multiple of 8"):
        _trainer(tiny_study, tiny_root, augment={"crop": [36, 36], "rot90": True, "flips": True})


def test_a_network_predicting_only_background_is_flagged_collapsed(
    tiny_study: Study, tiny_root: Path
) -> None:
    trainer = _trainer(tiny_study, tiny_root)
    last = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.bias is not None
    with torch.no_grad():
        last.bias[0] = 1e4  # background wins every pixel
    trainer.best_state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    validation = trainer.validate()
    assert validation["val/collapsed"] == 1.0 and validation["val/foreground_fraction"] == 0.0
    metrics, _ = trainer.test()
    assert metrics["test/wse2/foreground_fraction"] == 0.0
    # Collapsed only where there are atoms to miss (this test split labels none).
    assert metrics["test/wse2/collapsed"] == 0.0
    with torch.no_grad():
        last.bias[0] = -1e4  # background nowhere
    assert trainer.validate()["val/foreground_fraction"] == 1.0
    assert trainer.validate()["val/collapsed"] == 0.0
