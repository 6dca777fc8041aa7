"""Per-trial overhead of the sweep: N tiny trials under Ray Tune + MLflow vs a bare loop.

Run ``python benchmarks/bench_sweep.py [--trials 200] [--max-concurrent 1]``
(``--quick``: 8 trials). Goal (issue 14): at most 1 s of overhead per trial at N = 200.

The N trials are one tiny condition repeated N times (``train.repeats: N``, so N keys
and N seeds): an FCN of width 4 and depth 2 trained for 1 epoch (batch 4) on the 8
training images of a 16-image WSe2 incoherent dataset of 32² px (4 structures, written
beforehand in a temporary directory without Ray, not timed), validated on 4 images and
tested on 4. Each trial is so small that nearly all of the sweep's time above the
reference is the machinery around a trial. Both sides run every trial with one torch
thread:

* **bare** (the reference): the same :class:`~hpcbench.plan.TrialSpec` list run in this
  process by a plain loop of :class:`hpcbench.train.segmentation.SegmentationTrainer`
  (construct, :meth:`~hpcbench.train.trainer.Trainer.epochs`,
  :meth:`~hpcbench.train.segmentation.SegmentationTrainer.test`), after one untimed
  warm-up trial. Half of the trials run before the sweep and half after it, so that a
  load change on a shared machine hits both sides alike; both halves are printed.
  The same loop also times, separately, what a Tune trial writes besides training:
  the per-epoch checkpoint (``Trainer.save``) and the final artifacts
  (``save_artifacts``: ``best.pt``, ``trial.json``, ``predictions.png``);
* **sweep**: :func:`hpcbench.train.sweep.train` on the same study (Ray Tune trials,
  one MLflow run each in a fresh SQLite store, checkpoints, artifacts), on a local Ray
  of 2 CPUs started beforehand (its start-up is printed, not counted), 1 CPU per trial
  and ``--max-concurrent`` trials at a time (default 1: the same one core per trial as
  the reference, so the difference is overhead, not parallelism).

Printed: the per-trial wall time of each, the per-trial overhead
``(sweep − bare) / N`` [s], the ratio ``sweep / bare`` and the overhead against the 1 s
goal. Fixed costs (MLflow store creation, Tune's set-up, the trial actor's start and
imports) are spread over N, so the overhead per trial falls with N towards the marginal
cost of one more trial.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from hpcbench.plan import SegmentationTrial, TrialSpec, make_plan
from hpcbench.study import Study, validate_study_data
from hpcbench.train.segmentation import SegmentationTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))

GOAL = 1.0  # [s] of overhead per trial at N = 200 (issue 14)
OBJECT_STORE_MEMORY = 256 * 2**20  # [bytes]


def make_study(trials: int) -> Study:
    """A 16-image WSe2 dataset of 32² px and ``trials`` repeats of one tiny FCN trial."""
    return validate_study_data(
        {
            "name": "bench-sweep",
            "seed": 7,
            "datasets": {
                "wse2": {
                    "structure": {
                        "kind": "mx2",
                        "formula": "WSe2",
                        "supercell": [4, 3],
                        "defects": {"anion_vacancy": {"count": {"min": 1, "max": 3}}},
                    },
                    "simulation": {
                        "method": "incoherent",
                        "energy": 80000,
                        "semiangle_cutoff": 25,
                        "defocus": 0,
                        "Cs": 0,
                        "sampling": 0.1,
                    },
                    "image": {"shape": [32, 32], "pixel_size": 0.2},
                    "corruption": {"dose": {"min": 1e4, "max": 1e6, "log": True}},
                    "labels": {"classes": ["anion_vacancy"], "radius": 0.6},
                    "size": 16,
                    "images_per_structure": 4,
                    "shard_size": 16,
                }
            },
            "train": {
                "models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 2}},
                "epochs": 1,
                "batch_size": 4,
                "augment": {"crop": [32, 32]},
                "repeats": trials,
            },
        }
    )


def bare_trial(spec: TrialSpec, dirs: dict[str, str], scratch: Path) -> tuple[float, float]:
    """Seconds of one trial run by hand, and of the files a Tune trial writes on top.

    Returns ``(train and test [s], checkpoints and artifacts [s])``.
    """
    assert isinstance(spec.trial, SegmentationTrial)
    began = time.perf_counter()
    trainer = SegmentationTrainer(spec.trial, dirs, key=spec.key, device="cpu")
    saving = 0.0
    for _ in trainer.epochs():
        tick = time.perf_counter()
        trainer.save(scratch)
        saving += time.perf_counter() - tick
    _, examples = trainer.test()
    tick = time.perf_counter()
    trainer.save(scratch)
    trainer.save_artifacts(scratch, examples)
    saving += time.perf_counter() - tick
    return time.perf_counter() - began - saving, saving


def bare_loop(
    trials: Sequence[TrialSpec], dirs: dict[str, str], scratch: Path
) -> tuple[float, float]:
    """Total seconds of ``trials`` run by :func:`bare_trial`: (train and test, files)."""
    work = files = 0.0
    for spec in trials:
        seconds, saving = bare_trial(spec, dirs, scratch)
        work += seconds
        files += saving
    return work, files


def sweep(study: Study, root: Path, max_concurrent: int) -> tuple[float, int, int]:
    """Wall seconds of :func:`~hpcbench.train.sweep.train`, trials complete, trials errored."""
    from hpcbench.tracking import client_for, finished_keys
    from hpcbench.train.sweep import train

    uri = f"sqlite:///{root.resolve() / 'mlflow.db'}"
    # The sweep prints one progress line per trial; the benchmark prints a summary.
    with contextlib.redirect_stdout(io.StringIO()):
        began = time.perf_counter()
        result = train(
            study,
            root=root,
            tracking_uri=uri,
            max_concurrent=max_concurrent,
            verbose=0,
            log=lambda line: None,
        )
        seconds = time.perf_counter() - began
    client = client_for(uri)
    experiment = client.get_experiment_by_name(study.name)
    assert experiment is not None
    complete = finished_keys(client, experiment.experiment_id) & {t.key for t in result.trials}
    return seconds, len(complete), len(result.errored)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="N (default 200; --quick 8)")
    parser.add_argument(
        "--max-concurrent", type=int, default=1, help="sweep trials at a time (1 or 2)"
    )
    parser.add_argument("--quick", action="store_true", help="8 trials")
    args = parser.parse_args(argv)
    n = args.trials or (8 if args.quick else 200)
    if n < 2:
        parser.error("--trials must be at least 2")

    import ray
    from train_helpers import write_dataset

    study = make_study(n)
    plan = make_plan(study)
    trials = plan.trials
    assert len(trials) == n
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp, threadpool_limits(1):
        root = Path(tmp)
        write_dataset(study, "wse2", root)
        dirs = {"wse2": str(plan.dataset_dir(root, "wse2").resolve())}
        scratch = root / "scratch"
        scratch.mkdir()
        first = trials[0]
        assert isinstance(first.trial, SegmentationTrial)
        trainer = SegmentationTrainer(first.trial, dirs, key=first.key)
        sizes = len(trainer.train_set), len(trainer.val_set), len(trainer.test_ids("wse2"))
        bare_trial(first, dirs, scratch)  # warm-up: lazy imports, first kernels

        half = n // 2
        before = bare_loop(trials[:half], dirs, scratch)

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
            sweep_s, complete, errored = sweep(study, root, args.max_concurrent)
        finally:
            ray.shutdown()

        after = bare_loop(trials[half:], dirs, scratch)

    if errored or complete != n:
        raise SystemExit(f"sweep: {complete} of {n} trials complete in MLflow, {errored} errored")
    bare_s = before[0] + after[0]
    files_s = before[1] + after[1]
    per_bare, per_sweep = bare_s / n, sweep_s / n
    overhead = (sweep_s - bare_s) / n
    model = first.trial.model
    print(
        f"{n} trials: {model.architecture} width {model.width} depth {model.depth}, "
        f"{sizes[0]} training / {sizes[1]} validation / {sizes[2]} test images of 32² px, "
        f"{first.trial.epochs} epoch, batch {first.trial.batch_size}; 1 torch thread per "
        f"trial, sweep {args.max_concurrent} trial(s) at a time on 2 Ray CPUs"
    )
    print(f"  Ray start (not counted)          {ray_start:7.2f} s")
    print(
        f"  bare loop (reference)            {per_bare:7.3f} s/trial   (first half "
        f"{before[0] / half:.3f}, second half {after[0] / (n - half):.3f})"
    )
    print(
        f"  bare checkpoints + artifacts     {files_s / n:7.3f} s/trial   (written by a "
        "Tune trial besides training)"
    )
    print(
        f"  sweep (Ray Tune + MLflow)        {per_sweep:7.3f} s/trial   ({sweep_s:.1f} s "
        f"for {n}, all {complete} complete in MLflow)"
    )
    print(
        f"  overhead (sweep - bare) / N      {overhead:7.3f} s/trial   ratio sweep / bare "
        f"{per_sweep / per_bare:.2f}; overhead / goal ({GOAL:.0f} s) {overhead / GOAL:.2f}; "
        f"without checkpoints + artifacts {overhead - files_s / n:.3f} s/trial"
    )


if __name__ == "__main__":
    main()
