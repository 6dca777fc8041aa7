"""The Ray Tune function trainable: one trial = one :class:`~hpcbench.train.loop.Trainer`.

A CycleGAN trial (``task: cyclegan``) runs a
:class:`~hpcbench.train.cyclegan.CycleGANTrainer` the same way.

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

__all__ = ["run_trial", "trial_dirname"]


def trial_dirname(trial: Any) -> str:
    """Tune trial directory name: the trial key (stable across restores)."""
    from hpcbench.train.grid import unwrap

    return f"trial-{unwrap(trial.config)['key']}"


def run_trial(config: dict[str, Any]) -> None:
    """Tune entry point. ``config``: ``trial`` (resolved), ``data_dirs``, ``runtime``."""
    import torch
    from ray import tune
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from hpcbench.train.cyclegan import CycleGANTrainer
    from hpcbench.train.grid import unwrap
    from hpcbench.train.loop import Trainer

    config = unwrap(config)
    runtime = config.get("runtime", {})
    threads = max(1, int(runtime.get("cpus", 1)))
    torch.set_num_threads(threads)
    device = "cuda" if runtime.get("gpus", 0) and torch.cuda.is_available() else "cpu"
    trial = {**config["trial"], "key": config["key"]}
    with threadpool_limits(limits=threads):
        trainer: Trainer | CycleGANTrainer
        if trial.get("task") == "cyclegan":
            # The weights path is a runtime setting: not part of the trial's key.
            trial["fid"] = {**trial["fid"], "weights": runtime.get("inception_weights")}
            trainer = CycleGANTrainer(trial, config["data_dirs"], device=device)
        else:
            trainer = Trainer(trial, config["data_dirs"], device=device)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                trainer.load(directory)
        epochs = int(trial["epochs"])
        while trainer.epoch < epochs:
            metrics = trainer.run_epoch()
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
