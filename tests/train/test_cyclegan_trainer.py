"""The CycleGAN trial without Ray: normalisation, training, exact resume, selection, export."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from train_helpers import write_dataset, wse2_study

from hpcbench.metrics import saturate_normalize
from hpcbench.models.cyclegan import LOSS_NAMES
from hpcbench.plan import make_plan, parse_trial
from hpcbench.study import Study, validate_study_data
from hpcbench.train.cyclegan import (
    CycleGANTrainer,
    DomainScale,
    load_translator,
    translate_images,
)

SOURCE, TARGET = "sim", "exp"
EPOCHS = 4


def _study() -> Study:
    """Clean incoherent WSe2 simulations and a blurred, drifting, noisy "experiment"."""
    data = wse2_study(name="cyclegan-tiny").model_dump(mode="json", exclude_unset=True)
    wse2 = data["datasets"].pop("wse2")
    data["datasets"][SOURCE] = {k: v for k, v in wse2.items() if k != "corruption"}
    data["datasets"][TARGET] = {
        **wse2,
        "corruption": {
            "dose": 1e5,
            "blur": 0.3,
            "drift": 1.0,
            "background": 0.3,
            "read_noise": 0.05,
        },
    }
    return validate_study_data(data)


def _config(study: Study, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": "cyclegan",
        "study": study.name,
        "study_seed": study.seed,
        "version": "test",
        "model_name": "tiny",
        "model": {
            "gen_width": 8,
            "gen_depth": 4,
            "disc_width": 8,
            "disc_layers": 2,
            "norm": "instance",
            "dropout": 0.5,
            "lambda_cyc": 10.0,
            "lambda_id": 5.0,
            "identity": "l2",
            "fft_weight": 1.0,
            "pool_size": 8,
        },
        "dataset": SOURCE,
        "target": TARGET,
        "datasets": {
            name: {**make_plan(study).dataset(name).info.model_dump(), "test_split": True}
            for name in (SOURCE, TARGET)
        },
        "split": {"validation": 0.2, "test": 0.2},
        "train_size": 16,
        "target_size": 12,
        "epochs": EPOCHS,
        "epochs_decay": 2,
        "batch_size": 4,
        "learning_rate": 2e-3,
        "betas": [0.5, 0.999],
        "patch_size": 32,
        "sim_noise_std": 0.1,
        "saturation": 3.5,
        "augment": {"rot90": True, "flips": True},
        "fid": {"features": "spectral-v1", "weights": None, "images": 8},
        "select": "fid",
        "repeat": 0,
        "seed": 11,
        "key": "0123456789ab",
    }
    config.update(changes)
    return config


def _trainer(config: dict[str, Any], dirs: dict[str, Path]) -> CycleGANTrainer:
    key = config.pop("key", None)
    return CycleGANTrainer(parse_trial(config), dirs, key=key)


@dataclass
class Run:
    """A trained trial, its weights after every epoch and checkpoints of the first two."""

    study: Study
    dirs: dict[str, Path]
    trainer: CycleGANTrainer
    checkpoints: dict[int, Path]
    states: dict[int, dict[str, torch.Tensor]]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: for 8-channel convolutions on 32 px patches, a second thread
    costs more in synchronisation than it gains (about 5x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    study = _study()
    root = tmp_path_factory.mktemp("cyclegan-root")
    dirs = {name: write_dataset(study, name, root) for name in (SOURCE, TARGET)}
    trainer = _trainer(_config(study), dirs)
    checkpoints, states = {}, {}
    for epoch in range(1, EPOCHS + 1):
        trainer.run_epoch()
        states[epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if epoch <= 2:
            checkpoints[epoch] = tmp_path_factory.mktemp(f"epoch{epoch}")
            trainer.save(checkpoints[epoch])
    yield Run(study, dirs, trainer, checkpoints, states)


def test_domain_scale_agrees_with_saturate_normalize(run: Run) -> None:
    frames = [run.trainer.target_train.frame(i) for i in range(len(run.trainer.target_train))]
    stack = np.stack(frames)
    scale = DomainScale.fit(stack, sigma=3.5)
    np.testing.assert_allclose(scale.apply(stack), saturate_normalize(stack, 3.5), atol=1e-6)
    # The list form (images of any size) fits the same map; the trainer fitted this one.
    assert DomainScale.fit(frames).to_dict() == pytest.approx(scale.to_dict(), rel=1e-12)
    assert run.trainer.target_scale.to_dict() == pytest.approx(scale.to_dict(), rel=1e-12)
    assert scale.mean == pytest.approx(stack.mean()) and scale.std == pytest.approx(stack.std())
    # Saturation actually bites on the noisy target: the range is mean ± 3.5σ at most.
    assert scale.mean - 3.5 * scale.std <= scale.low < scale.high <= scale.mean + 3.5 * scale.std
    # Other images: the same affine map, clipped to [-1, 1].
    brighter = scale.apply(stack * 2.0 + 1.0)
    assert brighter.dtype == np.float32 and brighter.min() >= -1 and brighter.max() <= 1
    assert DomainScale.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale
    assert np.all(DomainScale.fit(np.full((2, 4, 4), 3.0)).apply(stack[:1]) == 0)


def test_epochs_report_losses_and_validation(run: Run) -> None:
    history = run.trainer.history
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0, 4.0]
    for metrics in history:
        for name in LOSS_NAMES:
            assert math.isfinite(metrics[f"train/{name}"]), name
        for name in ("frechet_distance", "histogram_kl", "power_spectrum_distance"):
            assert math.isfinite(metrics[f"val/{name}"]) and metrics[f"val/{name}"] >= 0
            assert metrics[f"val/{name}_raw"] == history[0][f"val/{name}_raw"]
        assert metrics["train/seconds"] > 0
    # 16 source / 12 target training images, batches of 4: 4 steps an epoch.
    assert run.trainer.steps_per_epoch() == 4
    # Constant learning rate for epochs - epochs_decay = 2 epochs, then linear decay.
    rates = [h["train/learning_rate"] for h in history]
    assert rates[:3] == pytest.approx([2e-3, 2e-3, 2e-3]) and rates[3] == pytest.approx(1e-3)
    # The cycle loss falls as the generators learn to invert each other.
    cycle = [h["train/loss/cycle"] for h in history]
    assert cycle[-1] < 0.8 * cycle[0], cycle


def test_select_fid_picks_the_lowest_validation_fid(run: Run) -> None:
    trainer = run.trainer
    fids = [h["val/frechet_distance"] for h in trainer.history]
    assert trainer.best_epoch == int(np.argmin(fids)) + 1
    assert trainer.selected_epoch == trainer.best_epoch
    selected = trainer.selected_generator("F").state_dict()
    for name, tensor in trainer.best_state["F"].items():
        assert torch.equal(selected[name], tensor)
    for name, tensor in trainer.best_state["F"].items():  # that epoch's weights
        assert torch.equal(tensor, run.states[trainer.best_epoch][f"F.{name}"])
    metrics, examples = trainer.test()
    assert metrics["test/best_epoch"] == trainer.best_epoch
    for name in ("frechet_distance", "histogram_kl", "power_spectrum_distance"):
        assert math.isfinite(metrics[f"test/{name}"]) and math.isfinite(metrics[f"test/{name}_raw"])
    assert examples["translated"].shape == examples["source"].shape == (3, 64, 64)


def test_select_last_uses_the_final_generators(run: Run, tmp_path: Path) -> None:
    trainer = run.trainer
    trainer.save(tmp_path)
    last = _trainer(_config(run.study, select="last"), run.dirs)
    last.load(tmp_path)
    assert last.selected_epoch == EPOCHS
    for name, tensor in last.selected_generator("F").state_dict().items():
        assert torch.equal(tensor, trainer.model.F.state_dict()[name])


def test_resume_from_a_checkpoint_is_exact(run: Run) -> None:
    resumed = _trainer(_config(run.study), run.dirs)
    resumed.load(run.checkpoints[1])
    assert resumed.epoch == 1
    resumed.run_epoch()
    for name, tensor in run.states[2].items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    straight = torch.load(run.checkpoints[2] / "state.pt", weights_only=False)
    for key in ("opt_g", "opt_d"):
        for index, entry in straight[key]["state"].items():
            for name, value in entry.items():
                assert torch.equal(value, resumed.state_dict()[key]["state"][index][name])
    assert len(resumed.model.pool_x.images) == len(straight["pool_x"])
    assert torch.equal(straight["pool_x_rng"], resumed.model.pool_x.generator.get_state())

    def timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k != "train/seconds"} for h in history]

    assert timeless(resumed.history) == timeless(run.trainer.history[:2])
    assert resumed.best_epoch == straight["best_epoch"]


def test_translate_images_is_batch_independent(run: Run) -> None:
    trainer = run.trainer
    images = np.stack([trainer.source_val.frame(i) for i in range(3)])[:, :48, :40]
    ids = trainer.source_val.sample_ids[:3]
    f = trainer.model.F
    kwargs: dict[str, Any] = {"noise_std": 0.1, "seed": 5}
    both = translate_images(f, images, trainer.source_scale, sample_ids=ids, batch_size=2, **kwargs)
    alone = translate_images(f, images[2:], trainer.source_scale, sample_ids=ids[2:], **kwargs)
    assert both.shape == images.shape and both.dtype == np.float32  # padded and cropped back
    assert both.min() >= -1 and both.max() <= 1
    np.testing.assert_allclose(both[2], alone[0], atol=1e-6)
    # The noise is the sample's own: another id or seed gives another translation.
    other = translate_images(f, images[2:], trainer.source_scale, sample_ids=[999], **kwargs)
    assert not np.allclose(other[0], alone[0], atol=1e-4)
    assert f.training  # the training mode is restored


def test_artifacts_and_translator(run: Run, tmp_path: Path) -> None:
    trainer = run.trainer
    metrics, examples = trainer.test()
    written = trainer.save_artifacts(tmp_path, examples)
    assert {p.name for p in written} == {"best.pt", "trial.json", "predictions.png"}
    assert (tmp_path / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == trainer.best_epoch and best["key"] == "0123456789ab"
    assert best["model"] == trainer.config["model"] and best["sim_noise_std"] == 0.1
    assert DomainScale.from_dict(best["target_scale"]) == trainer.target_scale
    record = json.loads((tmp_path / "trial.json").read_text())
    assert record["config"]["target"] == TARGET and len(record["history"]) == EPOCHS
    assert record["test"]["test/frechet_distance"] == pytest.approx(
        metrics["test/frechet_distance"]
    )

    translator = load_translator(tmp_path / "best.pt")
    assert translator.epoch == trainer.best_epoch and not translator.generator.training
    images = np.stack([trainer.source_val.frame(i) for i in range(4)])
    ids = trainer.source_val.sample_ids[:4]
    expected = translate_images(
        trainer.selected_generator("F"),
        images,
        trainer.source_scale,
        noise_std=trainer.sim_noise_std,
        seed=3,
        sample_ids=ids,
    )
    np.testing.assert_array_equal(translator(images, seed=3, sample_ids=ids), expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patch_size": 40}, "patch_size 40 must be a positive multiple of 2\\*\\*gen_depth = 16"),
        ({"patch_size": 128}, "patch_size 128 exceeds the sim images \\(64, 64\\)"),
        ({"target_size": 3}, "dataset exp has 3 training images, fewer than batch_size 4"),
        ({"dataset": "missing"}, "no directory given for dataset missing"),
    ],
)
def test_bad_configs_fail_in_one_line(run: Run, changes: dict[str, Any], message: str) -> None:
    config = _config(run.study, **changes)
    config["datasets"]["missing"] = config["datasets"][SOURCE]
    with pytest.raises(ValueError, match=message) as error:
        _trainer(config, run.dirs)
    assert "\n" not in str(error.value)


def test_missing_data_directory(run: Run, tmp_path: Path) -> None:
    dirs = {**run.dirs, TARGET: tmp_path / "absent"}
    with pytest.raises(ValueError, match=r"dataset exp: directory .*absent not found"):
        _trainer(_config(run.study), dirs)
