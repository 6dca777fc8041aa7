"""The segmentation trainer on CUDA: fp32 agrees with the CPU, mixed precision runs.

Skipped without a CUDA device (``gpu`` marker); ``benchmarks/gpu_train_check.py``
measures the throughput.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from hpcbench.plan import dataset_dir, expand_trials, parse_trial
from hpcbench.study import Study
from hpcbench.train.segmentation import SegmentationTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _trainer(study: Study, root: Path, device: str, **changes: Any) -> SegmentationTrainer:
    (spec,) = expand_trials(study)
    trial = parse_trial({**spec.config, "model_name": "unet", **changes})
    directory = dataset_dir(study, root, "wse2")
    return SegmentationTrainer(trial, {"wse2": directory}, key=spec.key, device=device)


def test_fp32_on_cuda_agrees_with_the_cpu(tiny_study: Study, tiny_root: Path) -> None:
    unet = tiny_study.train.models["unet"].model_dump()  # type: ignore[union-attr]
    cpu = _trainer(tiny_study, tiny_root, "cpu", model=unet)
    cuda = _trainer(tiny_study, tiny_root, "cuda", model=unet)
    assert cuda.channels_last and not cpu.channels_last
    first_cpu, first_cuda = cpu.run_epoch(), cuda.run_epoch()
    # Same data, seeds and initial weights; only the kernels' rounding differs.
    assert first_cuda["train/loss"] == pytest.approx(first_cpu["train/loss"], rel=1e-3)
    assert first_cuda["val/loss"] == pytest.approx(first_cpu["val/loss"], rel=1e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tiny_study: Study, tiny_root: Path, precision: str) -> None:
    unet = tiny_study.train.models["unet"].model_dump()  # type: ignore[union-attr]
    trainer = _trainer(tiny_study, tiny_root, "cuda", model=unet, precision=precision)
    metrics = [trainer.run_epoch() for _ in range(2)]
    assert all(math.isfinite(m["train/loss"]) for m in metrics)
    assert metrics[1]["train/loss"] < metrics[0]["train/loss"] * 1.5
    assert trainer.scaler.is_enabled() == (precision == "fp16")
