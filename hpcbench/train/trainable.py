"""The Ray Tune function trainable: one trial = one :class:`~hpcbench.train.trainer.Trainer`.

A segmentation trial runs a :class:`~hpcbench.train.segmentation.SegmentationTrainer`,
a CycleGAN trial (``task: cyclegan``) a :class:`~hpcbench.train.cyclegan.CycleGANTrainer`,
through the same skeleton.

Each epoch is reported with a checkpoint (the full training state), so a trial
restored after a crash continues from its last epoch. After the last epoch the best
validation state is tested on every test set and reported once more with the
artifacts (``best.pt``, ``trial.json``, ``predictions.png``) as the final checkpoint,
from which the driver's MLflow callback uploads them.

Threads: Ray starts trial actors with one torch thread; the trainable sets torch and
BLAS threads to the trial's CPUs (DESIGN.md: nothing oversubscribes the node).
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from ray import tune
from ray.tune.experiment import Trial
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from hpcbench.plan import CycleGANTrial, parse_trial
from hpcbench.train.cyclegan import CycleGANTrainer
from hpcbench.train.segmentation import SegmentationTrainer
from hpcbench.train.tracker import unwrap
from hpcbench.train.trainer import Trainer

__all__ = ["run_trial", "trial_dirname"]


def trial_dirname(trial: Trial) -> str:
    """Tune trial directory name: the trial key (stable across restores)."""
    return f"trial-{unwrap(trial.config)['key']}"


def run_trial(config: dict[str, Any]) -> None:
    """Tune entry point. ``config``: ``key``, ``trial`` (JSON form), ``data_dirs``, ``runtime``."""
    config = unwrap(config)
    runtime = config.get("runtime", {})
    threads = max(1, int(runtime.get("cpus", 1)))
    torch.set_num_threads(threads)
    gpus = float(runtime.get("gpus", 0))
    device = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda" and gpus < 1:
        # A fractional GPU (--gpus-per-trial 0.25): Ray packs trials onto one device, so
        # each trial's process keeps to its share of the device's memory.
        torch.cuda.set_per_process_memory_fraction(gpus)
    trial = parse_trial(config["trial"])
    key = str(config["key"])
    with threadpool_limits(limits=threads):
        trainer: Trainer[Any]
        if isinstance(trial, CycleGANTrial):
            trainer = CycleGANTrainer(
                trial,
                config["data_dirs"],
                key=key,
                device=device,
                inception_weights=runtime.get("inception_weights"),
            )
        else:
            trainer = SegmentationTrainer(trial, config["data_dirs"], key=key, device=device)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                trainer.load(directory)
        for metrics in trainer.epochs():
            with tempfile.TemporaryDirectory() as directory:
                trainer.save(directory)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        metrics, examples = trainer.test()
        metrics["epoch"] = float(trainer.epoch)
        metrics["test/best_epoch"] = float(trainer.best_epoch)
        with tempfile.TemporaryDirectory() as directory:
            trainer.save(directory)
            trainer.save_artifacts(directory, examples)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
