"""CycleGAN training speed on this machine: the bare step, and the trial path around it.

Run ``python benchmarks/bench_cyclegan.py [--part steps|trainer|all] [--steps 3]
[--device cpu|cuda] [--threads 2] [--images 64] [--epochs 3] [--quick]``. Every figure
is a ratio against a reference measured in the same run, never an absolute pass/fail.

* **steps** (iterations/s at 256² and 128² patches): for the paper-size networks (seed
  000: pix2pix U-Net generators, width 64, 70×70 PatchGAN image and FFT discriminators;
  depth 8 at 256², 7 at 128²) and a laptop size (width 16, depth 5), batch 1, one full
  :meth:`hpcbench.models.cyclegan.CycleGAN.train_step` (both generators, all four
  discriminators, the FFT of every real and fake image) is timed over ``--steps`` steps
  after one warm-up step. The reference is one forward and backward pass of a single
  generator on the same input: ``step / generator`` says what the cycle, the second
  generator and the four discriminators cost on top of it.
* **trainer** (the training trial path): two small real datasets (``--images`` clean
  incoherent WSe2 simulations ``sim`` and the same through a distortion model ``exp``,
  64×64 px) are written to a temporary directory without Ray (``build_shard`` +
  ``write_shard`` + manifest, not timed), and the first trial of a study with the
  laptop CycleGAN of ``studies/khan2023-cyclegan.yaml`` (gen_width 16, gen_depth 5,
  disc_width 16, disc_layers 3, 64-px patches, batch 4) runs in a
  :class:`hpcbench.train.cyclegan.CycleGANTrainer`. After one warm-up epoch (training and
  validation; the first validation also computes the untranslated-source metrics once),
  ``--epochs`` epochs of :meth:`~hpcbench.train.cyclegan.CycleGANTrainer.train_epoch`
  (training only) and of :meth:`~hpcbench.train.cyclegan.CycleGANTrainer.validate` (the
  per-epoch FID, histogram KL and power-spectrum distance of ``F(source)``) are timed
  separately. The reference is a bare loop of ``model.train_step(x, y, opt_g, opt_d)``
  on pre-made random tensors of the same batch and patch size, for the same number of
  steps (``trainer.steps_per_epoch()`` per epoch, after one warm-up step), with a fresh
  ``CycleGAN`` of the same configuration and ``make_optimizers``. The three are
  interleaved epoch by epoch (so that a load change on a shared machine hits them alike)
  and the medians over epochs are printed, with the per-epoch range of each ratio.
  ``trainer / bare`` is the data pipeline's cost (reading, crops, augmentation, noise,
  normalisation, loss bookkeeping), ``validation / epoch`` the time of the per-epoch
  metrics relative to a training epoch.

``--quick``: the same two parts at toy sizes, one torch thread, a few seconds each:
**steps** for one network (width 8, depth 4, 64² px, 2 timed steps); **trainer** on
16 + 16 images with a toy CycleGAN (gen_width 8, gen_depth 4, disc_width 8,
disc_layers 2, 32-px patches).

Images/s count source (simulated) images; every step also takes as many target images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hpcbench.models import build_cyclegan
from hpcbench.models.cyclegan import CycleGAN, make_optimizers
from hpcbench.plan import CycleGANTrial
from hpcbench.study import CycleGANConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))

_DATASET: dict[str, Any] = {
    "structure": {
        "kind": "mx2",
        "formula": "WSe2",
        "supercell": [6, 4],
        "defects": {"anion_vacancy": {"count": {"min": 1, "max": 3}}},
    },
    "simulation": {
        "method": "incoherent",
        "energy": 80000,
        "semiangle_cutoff": 25,
        "defocus": 0,
        "Cs": 0,
        "sampling": 0.08,
    },
    "image": {"shape": [64, 64], "pixel_size": 0.16},
    "labels": {"classes": ["anion_vacancy"], "lattice": True, "radius": 0.5},
    "images_per_structure": 4,
}
_DISTORTION: dict[str, Any] = {
    "dose": 1e5,
    "blur": 0.4,
    "drift": 1.5,
    "correlated_noise": 0.25,
    "noise_correlation": 0.4,
    "background": 0.5,
    "background_scale": 6.0,
}
# The laptop CycleGAN of studies/khan2023-cyclegan.yaml.
_CYCLEGAN: dict[str, Any] = {
    "source": "sim",
    "target": "exp",
    "models": {"khan": {"gen_width": 16, "gen_depth": 5, "disc_width": 16, "disc_layers": 3}},
    "epochs": 30,
    "epochs_decay": 15,
    "batch_size": 4,
    "learning_rate": 2e-4,
    "patch_size": 64,
    "sim_noise_std": 0.1,
    "fid": {"features": "spectral-v1", "images": 16},
}


# --quick: a toy CycleGAN on 32-px patches (the trial path, in seconds).
_TOY: dict[str, Any] = {
    "models": {"toy": {"gen_width": 8, "gen_depth": 4, "disc_width": 8, "disc_layers": 2}},
    "patch_size": 32,
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generator_pass(model: CycleGAN, x: torch.Tensor) -> None:
    """One forward and backward pass of generator G alone (the reference)."""
    model.G.zero_grad(set_to_none=True)
    model.G(x).square().mean().backward()


def _time(function: Callable[[], object], steps: int, device: torch.device) -> float:
    """Seconds per call of ``function`` over ``steps`` calls after one warm-up call."""
    function()  # warm-up
    _synchronize(device)
    began = time.perf_counter()
    for _ in range(steps):
        function()
    _synchronize(device)
    return (time.perf_counter() - began) / steps


def _seconds(function: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``function``."""
    _synchronize(device)
    began = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - began


def _repeat(function: Callable[[], object], times: int) -> None:
    for _ in range(times):
        function()


def bench_steps(steps: int, device: torch.device, *, quick: bool = False) -> None:
    """The bare train step at paper and laptop sizes against one generator pass."""
    print(f"part steps: CycleGAN.train_step, batch 1, {steps} steps after 1 warm-up")
    configs = [
        ("paper", 256, 64, 8),
        ("paper", 128, 64, 7),
        ("laptop", 256, 16, 5),
        ("laptop", 128, 16, 5),
    ]
    if quick:
        configs = [("toy", 64, 8, 4)]
    generator = torch.Generator().manual_seed(0)
    for label, size, width, depth in configs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = CycleGAN(gen_width=width, gen_depth=depth, disc_width=width).to(device)
        opt_g, opt_d = make_optimizers(model, 2e-4)
        x = (torch.rand(1, 1, size, size, generator=generator) * 2 - 1).to(device)
        y = (torch.rand(1, 1, size, size, generator=generator) * 2 - 1).to(device)

        step_s = _time(partial(model.train_step, x, y, opt_g, opt_d), steps, device)
        single_s = _time(partial(_generator_pass, model, x), steps, device)
        print(
            f"  {label:<6} {size}², width {width:>2}, depth {depth}: {1 / step_s:7.3f} it/s "
            f"({step_s:6.2f} s/step); one generator fwd+bwd {single_s:6.3f} s; "
            f"step / generator {step_s / single_s:5.1f}x"
        )


def make_study(images: int, *, quick: bool = False) -> Any:
    """A clean ``sim`` / distorted ``exp`` WSe2 pair and the laptop (or toy) CycleGAN."""
    from hpcbench.study import validate_study_data

    dataset = {**_DATASET, "size": images, "shard_size": images}
    cyclegan = {**_CYCLEGAN, **_TOY} if quick else _CYCLEGAN
    return validate_study_data(
        {
            "name": "bench-cyclegan",
            "seed": 1,
            "datasets": {"sim": dataset, "exp": {**dataset, "corruption": _DISTORTION}},
            "cyclegan": cyclegan,
        }
    )


def fresh_cyclegan(model: CycleGANConfig) -> CycleGAN:
    """A new CycleGAN of the trial's configuration (as the trainer builds it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_cyclegan(model)


def bench_trainer(images: int, epochs: int, device: torch.device, *, quick: bool = False) -> None:
    """The trial's train_epoch and validate against a bare train_step loop."""
    from train_helpers import write_dataset

    from hpcbench.plan import expand_cyclegan_trials
    from hpcbench.train.cyclegan import CycleGANTrainer

    study = make_study(images, quick=quick)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        dirs = {name: str(write_dataset(study, name, root)) for name in ("sim", "exp")}
        written_s = time.perf_counter() - began
        trial = expand_cyclegan_trials(study)[0].trial
        assert isinstance(trial, CycleGANTrial)
        trainer = CycleGANTrainer(trial, dirs, device=str(device))
        steps = trainer.steps_per_epoch()
        batch, patch = trainer.batch_size, trainer.patch_size
        model_cfg = trial.model
        print(
            f"part trainer: {images} + {images} images of 64² px written in {written_s:.1f} s; "
            f"{len(trainer.source_train)} source / {len(trainer.target_train)} target "
            f"training images, {len(trainer.source_val)} + {len(trainer.target_val)} "
            f"validation images ({trial.fid.features})"
        )
        print(
            f"  gen_width {model_cfg.gen_width}, gen_depth {model_cfg.gen_depth}, "
            f"disc_width {model_cfg.disc_width}, disc_layers {model_cfg.disc_layers}, "
            f"patch {patch}, batch {batch}, {steps} steps/epoch; {epochs} timed epoch(s) "
            "after 1 warm-up epoch"
        )

        model = fresh_cyclegan(model_cfg).to(device)
        opt_g, opt_d = make_optimizers(model, trial.learning_rate, trial.betas)
        generator = torch.Generator().manual_seed(0)
        x = (torch.rand(batch, 1, patch, patch, generator=generator) * 2 - 1).to(device)
        y = (torch.rand(batch, 1, patch, patch, generator=generator) * 2 - 1).to(device)
        bare_step = partial(model.train_step, x, y, opt_g, opt_d)

        began = time.perf_counter()
        trainer.train_epoch()  # warm-up
        trainer.validate()  # warm-up, and the untranslated-source metrics (cached)
        bare_step()  # warm-up
        print(f"  warm-up (1 epoch + validation + 1 bare step) {time.perf_counter() - began:.1f} s")
        # Interleaved, so that a load change on a shared machine hits all three alike.
        train_times, val_times, bare_times = [], [], []
        for _ in range(epochs):
            train_times.append(_seconds(trainer.train_epoch, device))
            val_times.append(_seconds(trainer.validate, device))
            bare_times.append(_seconds(partial(_repeat, bare_step, steps), device))
    train_s, val_s, bare_s = (statistics.median(t) for t in (train_times, val_times, bare_times))
    ratios = [t / b for t, b in zip(train_times, bare_times, strict=True)]
    shares = [v / t for v, t in zip(val_times, train_times, strict=True)]

    trained = steps * batch
    print(
        f"  bare train_step loop       {trained / bare_s:8.2f} images/s "
        f"({bare_s:6.2f} s/epoch)   (reference)"
    )
    print(
        f"  Trainer.train_epoch        {trained / train_s:8.2f} images/s "
        f"({train_s:6.2f} s/epoch)   trainer / bare {statistics.median(ratios):5.2f}x "
        f"(epochs {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(
        f"  Trainer.validate           {len(trainer.source_val):8d} images   "
        f"({val_s:6.3f} s/epoch)   validation / epoch {statistics.median(shares):5.3f}x "
        f"(epochs {min(shares):.3f}-{max(shares):.3f})"
    )
    print(
        f"  train_epoch + validate     {trained / (train_s + val_s):8.2f} images/s "
        f"({train_s + val_s:6.2f} s/epoch)   {(train_s + val_s) / bare_s:5.2f}x bare time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["steps", "trainer", "all"], default="all")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per size (3; 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (2; 1)")
    parser.add_argument("--images", type=int, default=None, help="per dataset (64; 16)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (trainer)")
    parser.add_argument("--quick", action="store_true", help="toy sizes, 1 thread")
    args = parser.parse_args()
    steps = args.steps or (2 if args.quick else 3)
    # One thread in --quick: on a loaded 2-core machine two-thread steps stalled at
    # random (0.1 to 5 s for the same toy step), one-thread steps did not.
    threads = args.threads or (1 if args.quick else 2)
    images = args.images or (16 if args.quick else 64)
    device = torch.device(args.device)
    torch.set_num_threads(threads)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    if args.part in ("steps", "all"):
        bench_steps(steps, device, quick=args.quick)
    if args.part in ("trainer", "all"):
        bench_trainer(images, args.epochs, device, quick=args.quick)


if __name__ == "__main__":
    main()
