"""Training throughput on a GPU: G-UNet fp32 vs bf16 through the Trainer, CycleGAN steps.

A device script (like ``gpu_stem_check.py``): it needs torch, numpy, scipy, pyarrow,
pydantic, PyYAML and ASE, not Ray, MLflow or abTEM, so it runs on a lent GPU machine
with a few wheels carried. It writes an incoherent WSe2 dataset of ``--images`` images of
``--size``² px with hpcbench's own shard builder (no Ray), then:

* **segmentation**: :class:`hpcbench.train.segmentation.SegmentationTrainer` — the
  Trainer, with its Parquet data, augmentation and validation, not a bare loop — on the
  seed-003 G-UNet (width 64, depth 4: 31 M parameters) at batch 16 for each precision,
  one warm-up epoch then ``--epochs`` timed; images/s is the trainer's own
  ``train/images_per_second``, and the bf16/fp32 ratio is printed;
* **cyclegan**: the seed-000 CycleGAN at paper size (256² px, width 64, depth 8) built
  by :func:`hpcbench.models.build_cyclegan`, ``train_step`` at batch 1 and 4: steps/s
  and images/s, with the batch-4/batch-1 image-rate ratio.

``python benchmarks/gpu_train_check.py --device cpu --quick`` is the dry run here.

Measured on an H200 (torch 2.11, 16 cores; 320 training images a epoch):

    G-UNet 31.0 M params, fp32:  431.1 images/s through the Trainer (data share 0.51)
    G-UNet 31.0 M params, bf16:  592.3 images/s through the Trainer (data share 0.42)
    G-UNet bf16 / fp32 images/s: 1.37x
    CycleGAN 256² px width 64 depth 8, batch 1: 19.47 steps/s, 19.47 images/s
    CycleGAN 256² px width 64 depth 8, batch 4: 18.23 steps/s, 72.93 images/s

Half of the G-UNet's epoch is the CPU data pipeline (Parquet views, augmentation,
normalisation per image): the next gain is making batches on the GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))

from train_helpers import write_dataset

from hpcbench.models import build_cyclegan
from hpcbench.models.cyclegan import make_optimizers
from hpcbench.plan import make_plan
from hpcbench.study import CycleGANConfig, Study, validate_study_data
from hpcbench.train.segmentation import SegmentationTrainer


def make_study(images: int, size: int, width: int, depth: int, precision: str) -> Study:
    """One incoherent WSe2 dataset and a one-trial G-UNet grid."""
    return validate_study_data(
        {
            "name": "gpu-train-check",
            "seed": 1,
            "datasets": {
                "wse2": {
                    "structure": {
                        "kind": "mx2",
                        "supercell": [12, 7],
                        "defects": {"anion_vacancy": {"count": 6}},
                    },
                    "simulation": {"method": "incoherent", "sampling": 0.1},
                    "image": {"shape": [size, size], "pixel_size": 0.1},
                    "corruption": {"dose": 1e5},
                    "labels": {"classes": ["anion_vacancy"]},
                    "size": images,
                    "images_per_structure": 16,
                    "shard_size": 64,
                }
            },
            "train": {
                "models": {"unet": {"architecture": "unet", "width": width, "depth": depth}},
                "batch_size": 16,
                "epochs": 1,
                "precision": precision,
                "repeats": 1,
            },
        }
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def segmentation(args: argparse.Namespace, device: torch.device, root: Path) -> None:
    """G-UNet through the Trainer at each precision."""
    rates: dict[str, float] = {}
    directory = None
    for precision in ("fp32", "bf16"):
        study = make_study(args.images, args.size, args.width, args.depth, precision)
        if directory is None:
            began = time.perf_counter()
            directory = write_dataset(study, "wse2", root)
            print(
                f"dataset: {args.images} images of {args.size}² px in "
                f"{time.perf_counter() - began:.1f} s"
            )
        (spec,) = make_plan(study).trials
        trainer = SegmentationTrainer(spec.trial, {"wse2": directory}, device=str(device))
        parameters = sum(p.numel() for p in trainer.model.parameters())
        trainer.train_epoch()  # warm-up: cuDNN autotuning, allocator
        _sync(device)
        epochs = [trainer.train_epoch() for _ in range(args.epochs)]
        rate = statistics.median(e["train/images_per_second"] for e in epochs)
        data = statistics.median(e["train/data_fraction"] for e in epochs)
        rates[precision] = rate
        print(
            f"G-UNet {parameters / 1e6:.1f} M params, {precision}: {rate:8.1f} images/s "
            f"through the Trainer ({len(trainer.train_set)} images/epoch, batch 16, "
            f"data share {data:.2f}, loss {epochs[-1]['train/loss']:.4f})"
        )
    print(f"G-UNet bf16 / fp32 images/s: {rates['bf16'] / rates['fp32']:.2f}x")


def cyclegan(args: argparse.Namespace, device: torch.device) -> None:
    """Paper-size CycleGAN train steps at batch 1 and 4."""
    config = CycleGANConfig(gen_width=args.gan_width, gen_depth=args.gan_depth)
    image_rates = {}
    for batch in (1, 4):
        torch.manual_seed(0)
        model = build_cyclegan(config).to(device)
        opt_g, opt_d = make_optimizers(model, 2e-4, (0.5, 0.999))
        x = torch.rand(batch, 1, args.gan_size, args.gan_size, device=device) * 2 - 1
        y = torch.rand(batch, 1, args.gan_size, args.gan_size, device=device) * 2 - 1
        for _ in range(3):
            model.train_step(x, y, opt_g, opt_d)
        _sync(device)
        began = time.perf_counter()
        for _ in range(args.gan_steps):
            model.train_step(x, y, opt_g, opt_d)
        _sync(device)
        seconds = (time.perf_counter() - began) / args.gan_steps
        image_rates[batch] = batch / seconds
        print(
            f"CycleGAN {args.gan_size}² px width {args.gan_width} depth {args.gan_depth}, "
            f"batch {batch}: {1 / seconds:7.2f} steps/s, {batch / seconds:7.2f} images/s"
        )
    print(f"CycleGAN batch 4 / batch 1 images/s: {image_rates[4] / image_rates[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU dry run)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.width, args.depth = 48, 64, 8, 2
        args.gan_size, args.gan_width, args.gan_depth, args.gan_steps = 32, 8, 4, 2
        args.epochs = 1
    else:
        args.images, args.size, args.width, args.depth = 384, 256, 64, 4
        args.gan_size, args.gan_width, args.gan_depth, args.gan_steps = 256, 64, 8, 20
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        segmentation(args, device, Path(tmp))
    cyclegan(args, device)


if __name__ == "__main__":
    main()
