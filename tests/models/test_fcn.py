"""The seed-004 FCN: shapes, hand-counted parameters, determinism, overfitting a tiny batch.

The helpers here (``blob_batch``, ``fit``, ``foreground_f1``) are shared with
``test_unet.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from hpcbench.models import FCN, build_model, count_parameters, output_stride
from hpcbench.study import FCNConfig

# ------------------------------------------------------------------------------ helpers


def blob_batch(
    seed: int, n: int = 4, size: int = 32, blobs: int = 4, radius: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of Gaussian blobs of two brightnesses and masks of disks around their centres.

    Returns images ``(n, 1, size, size)`` float32 and masks ``(n, size, size)`` int64 with
    0 background, 1 bright blobs, 2 dim blobs.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.zeros((n, size, size))
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        centres: list[np.ndarray] = []
        while len(centres) < blobs:
            c = rng.uniform(radius + 1, size - radius - 1, size=2)
            if all(np.hypot(*(c - o)) > 2 * radius + 2 for o in centres):
                centres.append(c)
        for k, (cy, cx) in enumerate(centres):
            cls = 1 + k % 2
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            images[i] += (1.0 if cls == 1 else 0.5) * np.exp(-r2 / (2 * 1.5**2))
            masks[i][r2 <= radius**2] = cls
    images += rng.normal(0.0, 0.02, images.shape)
    return (
        torch.from_numpy(images[:, None].astype(np.float32)),
        torch.from_numpy(masks),
    )


def foreground_f1(logits: torch.Tensor, masks: torch.Tensor, num_classes: int) -> float:
    """Pixel macro F1 ``2TP / (2TP + FP + FN)`` over the foreground classes 1..K-1."""
    pred = logits.argmax(dim=1)
    scores = []
    for c in range(1, num_classes):
        tp = int(((pred == c) & (masks == c)).sum())
        fp = int(((pred == c) & (masks != c)).sum())
        fn = int(((pred != c) & (masks == c)).sum())
        scores.append(2 * tp / max(1, 2 * tp + fp + fn))
    return float(np.mean(scores))


def fit(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    lr: float,
    steps: int,
    target: float = 0.97,
    check_every: int = 20,
) -> tuple[float, int]:
    """Full-batch Adam + cross-entropy; stop early once eval-mode F1 reaches ``target``.

    Returns the final eval-mode foreground F1 and the number of steps taken.
    """
    num_classes = int(masks.max()) + 1
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    f1 = 0.0
    step = 0
    for step in range(1, steps + 1):
        model.train()
        optimiser.zero_grad()
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimiser.step()
        if step % check_every == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                f1 = foreground_f1(model(images), masks, num_classes)
            if f1 >= target:
                break
    return f1, step


@pytest.fixture(autouse=True)
def _torch_state() -> Iterator[None]:
    """Seed torch's global RNG for one test and restore it; one thread (steady timings)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
    torch.set_num_threads(threads)


# -------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("width", "depth", "in_channels", "batch_norm"),
    [(8, 3, 1, False), (4, 1, 3, True), (3, 4, 1, True), (16, 2, 3, False)],
)
def test_output_shape(width: int, depth: int, in_channels: int, batch_norm: bool) -> None:
    config = FCNConfig(architecture="fcn", width=width, depth=depth, batch_norm=batch_norm)
    model = build_model(config, in_channels=in_channels, num_classes=3)
    stride = output_stride(config)
    assert stride == 2**depth
    x = torch.randn(2, in_channels, 2 * stride, 3 * stride)
    assert model(x).shape == (2, 3, 2 * stride, 3 * stride)


def test_rejects_inputs_not_divisible_by_the_stride() -> None:
    model = FCN(1, 2, width=2, depth=3)
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 1, 12, 16))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        model(torch.zeros(1, 3, 16, 16))


def _conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return (k * k * cin + int(bias)) * cout


def test_paper_parameter_count_by_hand() -> None:
    # 8/16/32 encoder, 32/16/8 decoder (the first decoder conv takes the 32-channel
    # bottleneck), 3x3 to the 3 classes, 1x1 3 → 3; 1 input channel.
    expected = (
        _conv(3, 1, 8)
        + _conv(3, 8, 16)
        + _conv(3, 16, 32)
        + _conv(3, 32, 32)
        + _conv(3, 32, 16)
        + _conv(3, 16, 8)
        + _conv(3, 8, 3)
        + _conv(1, 3, 3)
    )
    model = build_model(FCNConfig(architecture="fcn"), num_classes=3)
    assert count_parameters(model) == expected == 21_151
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 32, 16, 8, 3, 3]
    assert [c.kernel_size for c in convs][-2:] == [(3, 3), (1, 1)]


def test_batch_norm_parameter_count_by_hand() -> None:
    # Hidden convolutions lose their bias and gain a BN (2 parameters per channel).
    hidden = [(1, 4), (4, 8), (8, 8), (8, 4)]
    expected = sum(_conv(3, a, b, bias=False) + 2 * b for a, b in hidden)
    expected += _conv(3, 4, 2) + _conv(1, 2, 2)
    model = build_model(
        FCNConfig(architecture="fcn", width=4, depth=2, batch_norm=True), num_classes=2
    )
    assert count_parameters(model) == expected
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4


def test_no_activation_between_the_last_two_convolutions() -> None:
    model = FCN(1, 3)
    assert [type(m) for m in model.head] == [nn.Conv2d, nn.Conv2d]


def test_same_seed_same_model_and_output() -> None:
    x = torch.linspace(-1, 1, 2 * 32 * 32).reshape(2, 1, 32, 32)
    outputs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            model = FCN(1, 3)
        outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_overfits_a_tiny_batch() -> None:
    images, masks = blob_batch(seed=4)
    model = build_model(FCNConfig(architecture="fcn", width=8), num_classes=3)
    start = time.perf_counter()
    f1, steps = fit(model, images, masks, lr=3e-3, steps=400)
    assert f1 > 0.95, f"F1 {f1:.3f} after {steps} steps ({time.perf_counter() - start:.1f} s)"


def test_models_do_not_import_ray_mlflow_or_datasets() -> None:
    code = (
        "import sys, hpcbench.models\n"
        "print([m for m in ('ray', 'mlflow', 'hpcbench.datasets') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
