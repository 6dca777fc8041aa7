"""Synthetic runs with known truth, written to a real MLflow store as a sweep writes them."""

from __future__ import annotations

import hashlib
import itertools
import math
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.container import ErrorbarContainer

from hpcbench.tracking import (
    TAG_COMPLETE,
    client_for,
    ensure_experiment,
    record_grid,
)
from hpcbench.train.tracker import MLflowTracker

ALPHA = 2e4  # true characteristic dose [e/Å²]


def truth(model: str, dose: float | None, train_size: int | None = None) -> float:
    """F1 = D0 − 0.7·exp(−dose/α), lowered for small training sets."""
    d0 = 0.9 if model == "unet" else 0.8
    value = d0 - 0.7 * math.exp(-(1e9 if dose is None else dose) / ALPHA)
    if train_size is not None:
        value -= 0.3 * train_size**-0.5
    return value


def make_store(
    uri: str,
    study: str,
    axes: dict[str, list[Any]],
    *,
    repeats: int = 3,
    seed: int = 5,
    collapse: Callable[[dict[str, Any], int], bool] | None = None,
) -> list[dict[str, Any]]:
    """Write one complete run per trial of ``axes`` × ``repeats`` and record the grid.

    A negative dose is a declared level with no runs. A run for which
    ``collapse(condition, repeat)`` is true logs what a network predicting background
    everywhere scores: every F1 and IoU 0, recall 0, no precision (undefined). Returns
    the grid's trials.
    """
    client = client_for(uri)
    experiment = ensure_experiment(client, study, uri)
    tracker = MLflowTracker(uri, study)
    rng = np.random.default_rng(seed)
    names = list(axes)
    trials: list[dict[str, Any]] = []
    for values in itertools.product(*axes.values()):
        condition = dict(zip(names, values, strict=True))
        label = " ".join(f"{k}={v}" for k, v in condition.items())
        for repeat in range(repeats):
            # 12 hex digits, like real trial keys (they go into MLflow filter strings).
            key = hashlib.sha256(f"{label}-{repeat}".encode()).hexdigest()[:12]
            trials.append({"key": key, "condition": label, "repeat": repeat})
            dose = condition.get("dose")
            if dose is not None and dose < 0:
                continue
            config = {
                "key": key,
                "label": label,
                "repeat": repeat,
                "condition": condition,
                "trial": {
                    "study": study,
                    "dataset": "data",
                    "datasets": {"data": {"hash": "0123456789ab"}},
                    "version": "0.1.0",
                    "model": {"architecture": condition.get("model", "fcn")},
                },
            }
            f1 = truth(condition.get("model", "fcn"), dose, condition.get("train_size"))
            f1 += rng.normal(0, 0.005)
            tracker.log_result(config, {"epoch": 1, "val/loss": 0.5, "val/f1": f1})
            if collapse is not None and collapse(condition, repeat):
                scores = {
                    "test/data/f1": 0.0,
                    "test/data/intersection_over_union": 0.0,
                    "test/data/recall": 0.0,
                    "test/data/detection_f1": 0.0,
                    "test/other/f1": 0.0,
                }
            else:
                scores = {
                    "test/data/f1": f1,
                    "test/data/intersection_over_union": f1 / (2 - f1),
                    "test/data/detection_f1": min(1.0, f1 + 0.05),
                    "test/other/f1": f1 - 0.1,
                }
            tracker.log_result(config, {"epoch": 1, **scores})
            run_id = tracker.run_id(config)
            client.set_tag(run_id, TAG_COMPLETE, "true")
            client.set_terminated(run_id, "FINISHED")
    spec = {"name": study, "seed": 0, "datasets": {}, "train": {"axes": axes, "repeats": repeats}}
    record_grid(client, experiment, study=study, grid="g1", trials=trials, spec=spec)
    return trials


def make_cyclegan_runs(
    uri: str,
    study: str,
    models: list[str],
    *,
    repeats: int = 2,
    epochs: int = 4,
    extractor: str = "spectral-v1",
    complete: bool = True,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """Write one CycleGAN run per model × repeat as the sweep's tracker writes them.

    Validation FID falls from the raw value towards half of it over the epochs; the
    test distances are drawn at random. Returns per run its trial key, model, repeat
    and the logged test metrics (``test/...``) and validation history.
    """
    from matplotlib.image import imsave

    client = client_for(uri)
    ensure_experiment(client, study, uri)
    tracker = MLflowTracker(uri, study)
    rng = np.random.default_rng(seed)
    logged: list[dict[str, Any]] = []
    for model in models:
        for repeat in range(repeats):
            key = hashlib.sha256(f"cyclegan {model}-{repeat}".encode()).hexdigest()[:12]
            config = {
                "key": key,
                "label": f"model={model}",
                "repeat": repeat,
                "condition": {"model": model},
                "trial": {
                    "task": "cyclegan",
                    "study": study,
                    "dataset": "simulation",
                    "target": "experiment",
                    "datasets": {
                        "simulation": {"hash": "0123456789ab"},
                        "experiment": {"hash": "ba9876543210"},
                    },
                    "model_name": model,
                    "model": {"gen_width": 16},
                    "fid": {"features": extractor, "images": 8},
                    "epochs": epochs,
                    "select": "frechet_distance",
                    "version": "0.1.0",
                },
            }
            raw = float(rng.uniform(200, 300))
            history = [raw * (0.5 + 0.5 / epoch) for epoch in range(1, epochs + 1)]
            for epoch, fid in enumerate(history, start=1):
                tracker.log_result(
                    config,
                    {
                        "epoch": epoch,
                        "train/loss/g_adv": 1.0 / epoch,
                        "train/loss/cycle": 2.0 / epoch,
                        "val/frechet_distance": fid,
                        "val/frechet_distance_raw": raw,
                        "val/histogram_kl": 0.1 / epoch,
                        "val/histogram_kl_raw": 0.2,
                    },
                )
            test = {
                "test/frechet_distance": float(rng.uniform(40, 80)),
                "test/frechet_distance_raw": float(rng.uniform(200, 300)),
                "test/histogram_kl": float(rng.uniform(0.01, 0.05)),
                "test/histogram_kl_raw": float(rng.uniform(0.2, 0.4)),
                "test/power_spectrum_distance": float(rng.uniform(0.1, 0.2)),
                "test/power_spectrum_distance_raw": float(rng.uniform(0.5, 0.9)),
                "test/best_epoch": float(epochs),
            }
            tracker.log_result(config, {"epoch": epochs, **test})
            run_id = tracker.run_id(config)
            with tempfile.TemporaryDirectory() as directory:
                path = f"{directory}/predictions.png"
                imsave(path, rng.random((8, 24)), cmap="gray")
                client.log_artifact(run_id, path)
            if complete:
                client.set_tag(run_id, TAG_COMPLETE, "true")
            client.set_terminated(run_id, "FINISHED" if complete else "FAILED")
            logged.append(
                {
                    "run_id": run_id,
                    "trial_key": key,
                    "model": model,
                    "repeat": repeat,
                    "raw": raw,
                    "history": history,
                    **test,
                }
            )
    return logged


def bar_ends(container: ErrorbarContainer) -> list[tuple[float, float, float]]:
    """``(x, low, high)`` of every vertical error bar an ``errorbar`` call drew."""
    (segments,) = container.lines[2]
    return [(seg[0][0], seg[0][1], seg[1][1]) for seg in segments.get_segments()]
