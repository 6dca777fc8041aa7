"""Training throughput: a bare PyTorch loop vs the Trainer vs the same trial under Tune.

Run ``python benchmarks/bench_train.py [--images 256] [--epochs 4] [--model unet]``
(``--quick``: 32 images, 1 epoch, ``fcn``). All three train the same model (the
quickstart's ``fcn`` or ``unet``) on the same images (the whole training split: 208 of
256 images, 16 of 32), with one CPU thread (a 1-CPU trial), the quickstart's batch and
crops, for the same number of epochs. Every figure is a ratio against a reference
measured in this run:

* **bare**: the images are loaded, normalised and cropped once into one tensor; the
  loop is only ``zero_grad, forward, loss, backward, step`` over fixed batches — the
  floor for this model on one core;
* **trainer**: :class:`hpcbench.train.segmentation.SegmentationTrainer` — reading Parquet
  views, re-noising every clean frame at the trial dose each epoch, normalising,
  augmenting; plus its validation pass per epoch. ``trainer / bare`` is the data
  pipeline's cost, and ``data share`` the fraction of training time spent making
  batches;
* **tune**: :func:`hpcbench.train.sweep.train` running the same trial as a Ray Tune
  trial (1 CPU) on a local Ray of 2 CPUs started beforehand, with an MLflow SQLite
  store: the per-epoch images/s the trial reports (``train/images_per_second``) ÷ the
  Trainer's, and the end-to-end images/s including actor start (torch import),
  checkpoints, test and MLflow writes (not Ray's start, printed apart) ÷ bare.

Data are made first in a temporary directory (the quickstart's incoherent WSe2 spec at
``--images`` images), without Ray, and are not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcbench.plan import SegmentationTrial, dataset_dir

STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"
OBJECT_STORE_MEMORY = 256 * 2**20  # [bytes]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))


def make_study(images: int, epochs: int, model: str) -> Any:
    """The quickstart with one dataset of ``images`` images and a one-trial train grid.

    The trial trains on the whole training split (the quickstart's ``train_size`` 256
    is more than a split of a few hundred images holds).
    """
    import yaml

    from hpcbench.study import validate_study_data

    data = yaml.safe_load(STUDY.read_text())
    data.pop("smoke")
    data["datasets"] = {"wse2-incoherent": {**data["datasets"]["wse2-incoherent"], "size": images}}
    data["train"].pop("test_sets")
    data["train"].pop("train_size")
    data["train"].update({"epochs": epochs, "model": model, "dose": 1e5, "axes": {}, "repeats": 1})
    data["name"] = "bench-train"
    return validate_study_data(data)


def bare_loop(trainer: Any, epochs: int) -> float:
    """Images/s of a plain loop over pre-made batches of the trainer's model and loss."""
    from hpcbench.train.data import normalize

    rows, cols = trainer.crop or trainer.train_set.shape
    images, masks = [], []
    for index in range(len(trainer.train_set)):
        frame = normalize(trainer.train_set.frame(index))
        images.append(frame[:rows, :cols])
        masks.append(trainer.train_set.mask(index)[:rows, :cols])
    x = torch.from_numpy(np.stack(images))[:, None]
    y = torch.from_numpy(np.stack(masks))
    model, loss_fn = trainer.model, trainer.loss
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    size = trainer.trial.batch_size
    model.train()
    began = time.perf_counter()
    for _ in range(epochs):
        for start in range(0, x.shape[0], size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[start : start + size]), y[start : start + size])
            loss.backward()
            optimizer.step()
    return epochs * x.shape[0] / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="256 (--quick: 32)")
    parser.add_argument("--epochs", type=int, default=None, help="4 (--quick: 1)")
    parser.add_argument("--model", choices=["fcn", "unet"], default=None, help="unet (fcn)")
    parser.add_argument("--quick", action="store_true", help="32 images, 1 epoch, fcn")
    args = parser.parse_args()
    args.images = args.images or (32 if args.quick else 256)
    args.epochs = args.epochs or (1 if args.quick else 4)
    args.model = args.model or ("fcn" if args.quick else "unet")

    from train_helpers import write_dataset

    from hpcbench.plan import expand_trials
    from hpcbench.tracking import client_for, runs_by_key
    from hpcbench.train.segmentation import SegmentationTrainer
    from hpcbench.train.sweep import train

    torch.set_num_threads(1)
    study = make_study(args.images, args.epochs, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(study, "wse2-incoherent", root)
        (trial,) = expand_trials(study)
        assert isinstance(trial.trial, SegmentationTrial)
        dirs = {"wse2-incoherent": dataset_dir(study, root, "wse2-incoherent")}

        bare = bare_loop(SegmentationTrainer(trial.trial, dirs, key=trial.key), args.epochs)

        trainer = SegmentationTrainer(trial.trial, dirs, key=trial.key)
        trained = len(trainer.train_set)
        began = time.perf_counter()
        history = [trainer.run_epoch() for _ in range(args.epochs)]
        trainer_wall = time.perf_counter() - began
        trainer_ips = float(np.mean([h["train/images_per_second"] for h in history]))
        data_share = float(np.mean([h["train/data_fraction"] for h in history]))

        import ray

        # address="local": a Ray of its own, not one already running on this machine.
        began = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=OBJECT_STORE_MEMORY,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        ray_start = time.perf_counter() - began
        try:
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # Tune's and the sweep's lines
                result = train(study, root=root, verbose=0, log=lambda line: None)
            tune_wall = time.perf_counter() - began
        finally:
            ray.shutdown()
        assert not result.errored, f"the Tune trial failed: {result.errored}"
        client = client_for(result.tracking_uri)
        experiment = client.get_experiment_by_name(study.name)
        assert experiment is not None
        (run,) = runs_by_key(client, experiment.experiment_id, [trial.key])[trial.key]
        history_ips = client.get_metric_history(run.info.run_id, "train/images_per_second")
        tune_ips = float(np.mean([m.value for m in history_ips]))

    crop = trial.trial.augment.crop
    print(
        f"{args.model}, {trained} training images x {args.epochs} epochs, batch "
        f"{trial.trial.batch_size}, {list(crop) if crop else 'whole-image'} crops, 1 thread"
    )
    print(f"  bare PyTorch loop         {bare:8.1f} images/s   (reference)")
    print(
        f"  Trainer (train phase)     {trainer_ips:8.1f} images/s   "
        f"{trainer_ips / bare:5.2f}x bare; data share of step time {data_share:.2f}"
    )
    print(
        f"  Trainer incl. validation  {trained * args.epochs / trainer_wall:8.1f} images/s   "
        f"{trained * args.epochs / trainer_wall / bare:5.2f}x bare"
    )
    print(
        f"  Tune trial (train phase)  {tune_ips:8.1f} images/s   {tune_ips / trainer_ips:5.2f}x "
        f"Trainer (overhead ratio {trainer_ips / tune_ips:.2f})"
    )
    print(
        f"  Tune end to end           {trained * args.epochs / tune_wall:8.1f} images/s   "
        f"{trained * args.epochs / tune_wall / bare:5.2f}x bare ({tune_wall:.1f} s incl. "
        f"actor, checkpoints, test, MLflow; Ray start {ray_start:.1f} s not counted)"
    )


if __name__ == "__main__":
    main()
