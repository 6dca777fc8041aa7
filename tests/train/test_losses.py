"""CE + soft-F1 loss against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hpcbench.plan import make_plan, parse_trial
from hpcbench.study import load_study
from hpcbench.train.losses import SegmentationLoss, balanced_class_weights, soft_f1


def test_soft_f1_by_hand() -> None:
    # Two pixels, two classes; logits give p(class 1) = 0.8 and 0.3; truth is [1, 0].
    p1 = torch.tensor([0.8, 0.3])
    logits = torch.stack([torch.zeros(2), torch.log(p1 / (1 - p1))])[None, :, None, :]
    target = torch.tensor([[[1, 0]]])
    scores = soft_f1(logits, target)
    # class 1: (2*0.8 + 1) / (1.1 + 1 + 1); class 0: (2*0.7 + 1) / (0.9 + 1 + 1)
    assert math.isclose(float(scores[1]), 2.6 / 3.1, rel_tol=1e-6)
    assert math.isclose(float(scores[0]), 2.4 / 2.9, rel_tol=1e-6)


def test_loss_mixes_cross_entropy_and_foreground_soft_f1() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    target = torch.randint(0, 3, (2, 4, 5), generator=gen)
    ce = F.cross_entropy(logits, target)
    f1 = soft_f1(logits, target)
    present = [c for c in (1, 2) if (target == c).any()]
    assert present == [1, 2]
    expected = 0.5 * ce + 2.0 * (1 - f1[present].mean())
    got = SegmentationLoss(cross_entropy=0.5, soft_f1=2.0)(logits, target)
    assert torch.allclose(got, expected)
    assert torch.allclose(SegmentationLoss(soft_f1=0.0)(logits, target), ce)


def test_perfect_confident_prediction_has_near_zero_loss() -> None:
    target = torch.tensor([[[0, 1], [2, 0]]])
    logits = 40.0 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert float(SegmentationLoss()(logits, target)) < 1e-6
    # A class absent from the batch and never predicted costs nothing.
    two = torch.tensor([[[0, 1], [1, 0]]])
    logits = 40.0 * F.one_hot(two, 3).permute(0, 3, 1, 2).float()
    assert float(SegmentationLoss()(logits, two)) < 1e-6


def test_classes_absent_from_the_batch_do_not_enter_the_soft_f1() -> None:
    target = torch.tensor([[[0, 1], [1, 0]]])  # class 2 absent
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 2, 2, generator=gen)
    f1 = soft_f1(logits, target)
    got = SegmentationLoss(cross_entropy=0.0)(logits, target)
    assert torch.allclose(got, 1 - f1[1])
    background_only = torch.zeros(1, 2, 2, dtype=torch.int64)
    ce = F.cross_entropy(logits, background_only)
    assert torch.allclose(SegmentationLoss()(logits, background_only), ce)


def test_balanced_class_weights_are_inverse_frequencies() -> None:
    weights = balanced_class_weights(torch.tensor([90, 10, 0]))
    # N / (C n_c) with N = 100, C = 3; an absent class gets 1.
    assert torch.allclose(weights, torch.tensor([100 / 270, 100 / 30, 1.0]))


def test_class_weighted_cross_entropy_pays_more_for_the_rare_class() -> None:
    logits = torch.zeros(1, 2, 2, 2)  # 50 / 50 everywhere
    target = torch.tensor([[[0, 0], [0, 1]]])
    plain = SegmentationLoss(soft_f1=0.0)(logits, target)
    weighted = SegmentationLoss(soft_f1=0.0, class_weights=torch.tensor([1.0, 3.0]))(logits, target)
    # Every pixel costs log 2; PyTorch's weighted mean divides by the summed weights.
    assert plain.item() == pytest.approx(math.log(2))
    assert weighted.item() == pytest.approx(math.log(2))
    wrong = torch.tensor([[[[0.0, 0.0], [0.0, 5.0]], [[0.0, 0.0], [0.0, -5.0]]]])
    unweighted = SegmentationLoss(soft_f1=0.0)(wrong, target).item()
    heavier = SegmentationLoss(soft_f1=0.0, class_weights=torch.tensor([1.0, 3.0]))(
        wrong, target
    ).item()
    assert heavier > unweighted  # the missed rare pixel counts three times


def test_class_weights_enter_the_trial_key_only_when_set() -> None:
    study = load_study(Path(__file__).parents[2] / "studies" / "quickstart.yaml", smoke=True)
    spec = make_plan(study).trials[0]
    assert "class_weights" not in spec.config["loss"]
    config = spec.config
    config["loss"] = {**config["loss"], "class_weights": "balanced"}
    balanced = parse_trial(config)
    assert balanced.to_config()["loss"]["class_weights"] == "balanced"
    assert balanced.key != spec.key
