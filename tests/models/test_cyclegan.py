"""CycleGAN of seed 000: shapes, log power spectrum, gradients, schedule, a tiny training."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from hpcbench.models import count_parameters
from hpcbench.models.cyclegan import (
    LOSS_NAMES,
    CycleGAN,
    CycleGANLosses,
    ImagePool,
    PatchDiscriminator,
    UNetGenerator,
    identity_loss,
    linear_decay_schedule,
    log_power_spectrum,
    lsgan_loss,
    make_optimizers,
)


@pytest.fixture(autouse=True)
def _torch_state() -> Iterator[None]:
    """Seed torch's global RNG for one test and restore it; one thread (steady timings)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
    torch.set_num_threads(threads)


def blobs(n: int, size: int, g: torch.Generator, *, blurred: bool) -> torch.Tensor:
    """``n`` images of three discs of radius 3 in [-1, 1]; blurred + noisy for domain X."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            c = torch.rand(2, generator=g) * (size - 8) + 4
            img[i, 0] += (((yy - c[0]) ** 2 + (xx - c[1]) ** 2) < 9).float()
    img = img.clamp(max=1)
    if blurred:
        k = torch.exp(-((torch.arange(7) - 3.0) ** 2) / (2 * 1.5**2))
        k = k / k.sum()
        img = F.conv2d(img, k.view(1, 1, 1, 7), padding=(0, 3))
        img = F.conv2d(img, k.view(1, 1, 7, 1), padding=(3, 0))
        img = img / img.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        img = img + 0.1 * torch.randn(img.shape, generator=g)
    return (2 * img - 1).clamp(-1, 1)


def run(steps: int, seed: int = 0) -> list[dict[str, float]]:
    """Train a tiny CycleGAN on blurred (X) vs sharp (Y) blobs; the per-step losses."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model = CycleGAN(gen_width=8, gen_depth=3, disc_width=8, disc_layers=2, pool_size=10)
    opt_g, opt_d = make_optimizers(model, 2e-3)
    history = []
    for _ in range(steps):
        x = blobs(4, 32, g, blurred=True)
        y = blobs(4, 32, g, blurred=False)
        history.append(model.train_step(x, y, opt_g, opt_d))
    return history


# ------------------------------------------------------------------------------ shapes


def test_generator_shape_and_range() -> None:
    gen = UNetGenerator(width=8, depth=5)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    out = gen(x)
    assert out.shape == x.shape
    assert out.abs().max() < 1
    assert UNetGenerator(2, 3, width=4, depth=3)(torch.zeros(1, 2, 24, 16)).shape == (
        1,
        3,
        24,
        16,
    )


def test_generator_paper_size_layout() -> None:
    gen = UNetGenerator()  # width 64, depth 8: U-Net-256
    enc = [m.out_channels for m in gen.down.modules() if isinstance(m, torch.nn.Conv2d)]
    dec = [m.out_channels for m in gen.up.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    drops = [any(isinstance(m, torch.nn.Dropout) for m in level) for level in gen.up]
    assert enc == [64, 128, 256, 512, 512, 512, 512, 512]
    assert dec == [512, 512, 512, 512, 256, 128, 64]
    assert drops == [True, True, True, False, False, False, False]
    assert count_parameters(gen) == 54_403_457


def test_generator_rejects_bad_input() -> None:
    gen = UNetGenerator(width=4, depth=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        gen(torch.zeros(1, 1, 40, 40))
    with pytest.raises(ValueError, match="shape"):
        gen(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="depth"):
        UNetGenerator(depth=1)
    with pytest.raises(ValueError, match="norm"):
        UNetGenerator(norm="group")  # type: ignore[arg-type]


def test_patch_discriminator_256_gives_30x30() -> None:
    disc = PatchDiscriminator(width=8)
    assert disc(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    assert count_parameters(PatchDiscriminator()) == 2_762_689


def test_patch_discriminator_receptive_field_is_70() -> None:
    # gradient of the centre output w.r.t. the input is nonzero on exactly a 70x70 window
    disc = PatchDiscriminator(width=2, norm="none")
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = disc(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    assert x.grad is not None
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    cols = (x.grad[0, 0].abs().sum(0) > 0).nonzero()
    assert int(rows.max() - rows.min()) + 1 == 70
    assert int(cols.max() - cols.min()) + 1 == 70


# ---------------------------------------------------------------- log power spectrum


def test_log_power_spectrum_peaks_at_cosine_frequency() -> None:
    n, k = 32, 5
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    image = torch.cos(2 * math.pi * (k * xx + 2 * k * yy) / n).float().view(1, 1, n, n)
    lps = log_power_spectrum(image)
    assert lps.shape == (1, 1, n, n)
    assert abs(float(lps.mean())) < 1e-5
    assert abs(float(lps.std()) - 1) < 1e-4
    flat = lps[0, 0].flatten()
    top = {divmod(int(i), n) for i in flat.topk(2).indices}
    c = n // 2  # zero frequency after fftshift
    assert top == {(c + 2 * k, c + k), (c - 2 * k, c - k)}


def test_log_power_spectrum_is_differentiable_and_batched() -> None:
    x = torch.randn(3, 1, 16, 16, requires_grad=True)
    lps = log_power_spectrum(x)
    assert torch.allclose(lps[1:2], log_power_spectrum(x[1:2].detach()), atol=1e-5)
    lps.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    z = torch.zeros(1, 1, 8, 8, requires_grad=True)  # zero power everywhere
    log_power_spectrum(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


# -------------------------------------------------------------------------- losses


def test_fft_discriminator_loss_reaches_the_generator() -> None:
    model = CycleGAN(gen_width=4, gen_depth=3, disc_width=4, disc_layers=2)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    loss = lsgan_loss(model.D_y_fft(log_power_spectrum(model.G(x))), True)
    loss.backward()
    grads = [p.grad for p in model.G.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads if gr is not None) > 0
    assert all(p.grad is None for p in model.F.parameters())


def test_generator_loss_includes_fft_terms() -> None:
    model = CycleGAN(gen_width=4, gen_depth=3, disc_width=4, disc_layers=2)
    model.eval()  # no dropout, so both evaluations see the same generator outputs
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = torch.rand(2, 1, 32, 32) * 2 - 1
    _, with_fft, fake_y, fake_x = model.generator_loss(x, y)
    model.losses = CycleGANLosses(fft_weight=0.0)
    _, without, _, _ = model.generator_loss(x, y)
    fft = lsgan_loss(model.D_y_fft(log_power_spectrum(fake_y)), True) + lsgan_loss(
        model.D_x_fft(log_power_spectrum(fake_x)), True
    )
    adv = with_fft["loss/g_adv"] - without["loss/g_adv"]
    assert torch.allclose(adv, fft.detach(), rtol=1e-5)
    total = with_fft["loss/g_adv"] + 10 * with_fft["loss/cycle"] + 5 * with_fft["loss/identity"]
    assert torch.allclose(with_fft["loss/g_total"], total, rtol=1e-5)


def test_identity_loss_is_l2_by_default() -> None:
    x, y = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    assert float(identity_loss(x, x + 0.5, y, y + 0.5)) == pytest.approx(0.5)
    assert float(identity_loss(x, x + 0.5, y, y + 0.5, "l1")) == pytest.approx(1.0)
    assert CycleGANLosses() == CycleGANLosses(10.0, 5.0, "l2", 1.0)


def test_image_pool_mixes_history() -> None:
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    first = pool.query(torch.arange(4.0).view(4, 1, 1, 1))
    assert first.flatten().tolist() == [0, 1, 2, 3]
    later = pool.query(torch.full((64, 1, 1, 1), 9.0)).flatten()
    assert {float(v) for v in later} >= {9.0} and (later < 9).any()
    assert torch.equal(ImagePool(0).query(first), first)


# ------------------------------------------------------------------------- schedule


def test_linear_decay_schedule() -> None:
    f = linear_decay_schedule(148, 149)
    assert [f(e) for e in (0, 100, 148)] == [1.0, 1.0, 1.0]
    assert f(149) == pytest.approx(148 / 149)
    assert f(222) == pytest.approx(75 / 149)
    assert f(296) == pytest.approx(1 / 149)
    assert f(297) == 0.0 and f(400) == 0.0
    model = CycleGAN(gen_width=2, gen_depth=2, disc_width=2, disc_layers=1)
    opt_g, _ = make_optimizers(model, 0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_g, linear_decay_schedule(2, 4))
    lrs = []
    for _ in range(7):
        lrs.append(opt_g.param_groups[0]["lr"])
        opt_g.step()
        sched.step()
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.0075, 0.005, 0.0025, 0.0])
    with pytest.raises(ValueError):
        linear_decay_schedule(10, 0)


# ------------------------------------------------------------------------- training


def test_tiny_training_reduces_cycle_loss() -> None:
    history = run(150)
    assert all(set(h) == set(LOSS_NAMES) for h in history)
    assert all(math.isfinite(v) for h in history for v in h.values())
    start = sum(h["loss/cycle"] for h in history[:10]) / 10
    end = sum(h["loss/cycle"] for h in history[-10:]) / 10
    assert end < start / 2, (start, end)
    assert history[-1]["loss/identity"] < history[0]["loss/identity"] / 2


def test_training_is_deterministic() -> None:
    a, b, c = run(4), run(4), run(4, seed=1)
    assert a == b
    assert a != c
