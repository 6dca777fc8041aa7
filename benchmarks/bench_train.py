"""Training throughput: a bare PyTorch loop vs the Trainer vs the same trial under Tune.

Run ``python benchmarks/bench_train.py [--images 256] [--epochs 4] [--model unet]``.
All three train the same model (the quickstart's ``fcn`` or ``unet``) on the same
images, with one CPU thread (a 1-CPU trial), the quickstart's batch and crops, for the same
number of epochs. Every figure is a ratio against a reference measured in this run:

* **bare**: the images are loaded, normalised and cropped once into one tensor; the
  loop is only ``zero_grad, forward, loss, backward, step`` over fixed batches — the
  floor for this model on one core;
* **trainer**: :class:`hpcbench.train.segmentation.SegmentationTrainer` — reading Parquet
  views, re-noising every clean frame at the trial dose each epoch, normalising,
  augmenting; plus its
  validation pass per epoch. ``trainer / bare`` is the data pipeline's cost, and
  ``data share`` the fraction of training time spent making batches;
* **tune**: :func:`hpcbench.train.sweep.train` running the same trial as a Ray Tune
  trial on an embedded Ray with an MLflow SQLite store: the per-epoch images/s the
  trial reports (``train/images_per_second``) ÷ the Trainer's, and the end-to-end
  images/s including Ray start, actor start (torch import), checkpoints, test and
  MLflow writes ÷ bare.

Data are made first in a temporary directory (the quickstart's incoherent WSe2 spec at
``--images`` images), without Ray, and are not timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcbench.plan import dataset_dir

STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))


def make_study(images: int, epochs: int, model: str) -> Any:
    """The quickstart with one dataset of ``images`` images and a one-trial train grid."""
    import yaml

    from hpcbench.study import validate_study_data

    data = yaml.safe_load(STUDY.read_text())
    data.pop("smoke")
    data["datasets"] = {"wse2-incoherent": {**data["datasets"]["wse2-incoherent"], "size": images}}
    data["train"].pop("test_sets")
    data["train"].update({"epochs": epochs, "model": model, "dose": 1e5, "axes": {}, "repeats": 1})
    data["name"] = "bench-train"
    return validate_study_data(data)


def bare_loop(trainer: Any, epochs: int) -> float:
    """Images/s of a plain loop over pre-made batches of the trainer's model and loss."""
    from hpcbench.train.data import normalize

    images, masks = [], []
    for index in range(len(trainer.train_set)):
        frame = normalize(trainer.train_set.frame(index))
        images.append(frame[:64, :64])
        masks.append(trainer.train_set.mask(index)[:64, :64])
    x = torch.from_numpy(np.stack(images))[:, None]
    y = torch.from_numpy(np.stack(masks))
    model, loss_fn = trainer.model, trainer.loss
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    size = int(trainer.config["batch_size"])
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
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", choices=["fcn", "unet"], default="unet")
    args = parser.parse_args()

    from train_helpers import write_dataset

    from hpcbench.plan import expand_trials
    from hpcbench.tracking import client_for
    from hpcbench.train.segmentation import SegmentationTrainer
    from hpcbench.train.sweep import train

    torch.set_num_threads(1)
    study = make_study(args.images, args.epochs, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(study, "wse2-incoherent", root)
        (trial,) = expand_trials(study)
        dirs = {"wse2-incoherent": dataset_dir(study, root, "wse2-incoherent")}
        trained = trial.config["train_size"]

        bare = bare_loop(SegmentationTrainer(trial.trial, dirs, key=trial.key), args.epochs)

        trainer = SegmentationTrainer(trial.trial, dirs, key=trial.key)
        began = time.perf_counter()
        history = [trainer.run_epoch() for _ in range(args.epochs)]
        trainer_wall = time.perf_counter() - began
        trainer_ips = float(np.mean([h["train/images_per_second"] for h in history]))
        data_share = float(np.mean([h["train/data_fraction"] for h in history]))

        import ray

        ray.init(num_cpus=1, object_store_memory=100 * 2**20, include_dashboard=False)
        began = time.perf_counter()
        result = train(study, root=root, verbose=0, log=lambda line: None)
        tune_wall = time.perf_counter() - began
        ray.shutdown()
        client = client_for(result.tracking_uri)
        experiment = client.get_experiment_by_name(study.name)
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        history_ips = client.get_metric_history(run.info.run_id, "train/images_per_second")
        tune_ips = float(np.mean([m.value for m in history_ips]))

    print(
        f"{args.model}, {trained} training images x {args.epochs} epochs, batch "
        f"{trial.config['batch_size']}, {trial.config['augment']['crop']} crops, 1 thread"
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
        "Ray start, actor, checkpoints, test, MLflow)"
    )


if __name__ == "__main__":
    main()
