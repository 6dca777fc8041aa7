"""CycleGAN training speed on this machine: iterations/s at 256² and 128² patches.

Run ``python benchmarks/bench_cyclegan.py [--steps 3] [--device cpu|cuda]``. For the
paper-size networks (seed 000: pix2pix U-Net generators, width 64, 70×70 PatchGAN image
and FFT discriminators; depth 8 at 256², 7 at 128²) and a laptop size (width 16, depth
5), batch 1, one full :meth:`hpcbench.models.cyclegan.CycleGAN.train_step` (both
generators, all four discriminators, the FFT of every real and fake image) is timed
after one warm-up step. The reference measured in the same run is one forward and
backward pass of a single generator on the same input: ``step / generator`` says what
the cycle, the second generator and the four discriminators cost on top of it.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from hpcbench.models.cyclegan import CycleGAN, make_optimizers


def _generator_pass(model: CycleGAN, x: torch.Tensor) -> None:
    """One forward and backward pass of generator G alone (the reference)."""
    model.G.zero_grad(set_to_none=True)
    model.G(x).square().mean().backward()


def _time(function: object, steps: int) -> float:
    assert callable(function)
    function()  # warm-up
    began = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch 1")
    configs = [
        ("paper", 256, 64, 8),
        ("paper", 128, 64, 7),
        ("laptop", 256, 16, 5),
        ("laptop", 128, 16, 5),
    ]
    generator = torch.Generator().manual_seed(0)
    for label, size, width, depth in configs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = CycleGAN(gen_width=width, gen_depth=depth, disc_width=width).to(device)
        opt_g, opt_d = make_optimizers(model, 2e-4)
        x = (torch.rand(1, 1, size, size, generator=generator) * 2 - 1).to(device)
        y = (torch.rand(1, 1, size, size, generator=generator) * 2 - 1).to(device)

        step_s = _time(partial(model.train_step, x, y, opt_g, opt_d), args.steps)
        single_s = _time(partial(_generator_pass, model, x), args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        print(
            f"  {label:<6} {size}², width {width:>2}, depth {depth}: {1 / step_s:7.3f} it/s "
            f"({step_s:6.2f} s/step); one generator fwd+bwd {single_s:6.3f} s; "
            f"step / generator {step_s / single_s:5.1f}x"
        )


if __name__ == "__main__":
    main()
