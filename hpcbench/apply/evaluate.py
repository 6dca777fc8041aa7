"""``hpcbench evaluate``: score a finished study's models on another dataset, no retraining.

A test set added after training (an ``imports`` entry, typically real images) would
retrain every trial if it went into ``train.test_sets`` (the test sets are part of a
trial's key). :func:`evaluate_study` instead loads each complete run's ``best.pt`` and
scores it with the trainer's own scoring (:func:`hpcbench.train.segmentation.score_image_set`:
the same tiles, normalisation, detector and matching), logging ``test/<set>/…`` into that
run at its last epoch, exactly as if the set had been a test set from the start.

Per-image detection counts go into the tag ``hpcbench.images.<set>`` (JSON list of
``[tp, fp, fn]``), so a report can bootstrap over images without reading artifacts.
A run that already has the set's scores is skipped unless ``force``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcbench.study import Study

__all__ = ["EvaluateResult", "evaluate_study"]


@dataclass
class EvaluateResult:
    """What :func:`evaluate_study` did."""

    test_set: str
    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    f1: dict[str, float] = field(default_factory=dict)  # run id -> pooled detection F1
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: runs scored and skipped, mean pooled detection F1."""
        values = [v for v in self.f1.values() if np.isfinite(v)]
        mean = f", mean detection F1 {np.mean(values):.3f}" if values else ""
        return (
            f"evaluate {self.test_set}: {len(self.scored)} runs scored, "
            f"{len(self.skipped)} already had it{mean} ({self.seconds:.1f} s)"
        )


def evaluate_study(
    spec: Study,
    test_set: str,
    *,
    root: str | Path,
    tracking_uri: str | None = None,
    device: str = "cpu",
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> EvaluateResult:
    """Score every complete segmentation run of ``spec`` on dataset ``test_set``.

    Parameters
    ----------
    spec : Study
        The study (its trials are matched to runs by key).
    test_set : str
        A dataset or import of the study; imported first if it is not on disk.
    root : path
        Output root (``--root``).
    tracking_uri : str, optional
        MLflow store (default ``sqlite:///<root>/mlflow.db``).
    device : str
        Torch device.
    force : bool
        Re-score runs that already have ``test/<test_set>/…``.
    log : callable, optional
        Progress lines.

    Raises
    ------
    ValueError
        Unknown set, set not labelled with the trials' classes, damaged data, or no
        complete run.
    """
    from mlflow.entities import Metric

    from hpcbench.datasets.generate import generate
    from hpcbench.datasets.manifest import verify_cached
    from hpcbench.plan import SegmentationTrial, make_plan
    from hpcbench.tracking import (
        TAG_COMPLETE,
        TAG_IMAGES,
        TAG_KEY,
        client_for,
        default_tracking_uri,
        iter_runs,
    )
    from hpcbench.train.data import ImageSet
    from hpcbench.train.segmentation import load_checkpoint, score_image_set
    from hpcbench.train.trainer import is_imported

    began = time.perf_counter()
    say = log or (lambda _line: None)
    if test_set not in spec.datasets and test_set not in spec.imports:
        known = ", ".join([*spec.datasets, *spec.imports])
        raise ValueError(f"study {spec.name} has no dataset {test_set!r} (it has {known})")
    root = Path(root)
    plan = make_plan(spec)
    directory = plan.dataset_dir(root, test_set)
    if not directory.is_dir():
        say(f"{test_set}: not on disk, generating it")
        generate(spec, root=root, only=[test_set], progress=False)
    report = verify_cached(directory)
    if not report.ok:
        raise ValueError(
            f"dataset {directory} is damaged ({report.problems[0].line(directory)}): "
            f"run hpcbench generate {spec.name} --only {test_set}"
        )
    info = plan.dataset(test_set).info
    uri = tracking_uri or default_tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no MLflow store at {uri}: train study {spec.name} first")
    client = client_for(uri)
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        raise ValueError(f"study {spec.name} has no runs in {uri}: train it first")
    trials = {t.key: t.trial for t in plan.trials if isinstance(t.trial, SegmentationTrial)}
    runs = [
        run
        for run in iter_runs(client, experiment.experiment_id)
        if run.data.tags.get(TAG_COMPLETE) == "true" and run.data.tags.get(TAG_KEY) in trials
    ]
    if not runs:
        raise ValueError(f"study {spec.name} has no complete segmentation run in {uri}")
    first = trials[runs[0].data.tags[TAG_KEY]]
    missing = [c for c in first.classes if c not in info.classes]
    if missing:
        raise ValueError(
            f"{test_set} labels {', '.join(info.classes)}, not the trials' {', '.join(missing)} "
            f"(name the classes of imports.{test_set} after the trials')"
        )
    imported = is_imported(directory)
    ids = np.arange(info.size, dtype=np.int64)
    result = EvaluateResult(test_set)
    prefix = f"test/{test_set}"
    for number, run in enumerate(runs, start=1):
        run_id = run.info.run_id
        if f"{prefix}/detection_f1" in run.data.metrics and not force:
            result.skipped.append(run_id)
            continue
        trial = trials[run.data.tags[TAG_KEY]]
        with _downloaded(client, run_id) as path:
            model, content = load_checkpoint(path, device=device)
        images = ImageSet(
            directory,
            ids,
            dataset_classes=info.classes,
            classes=trial.classes,
            dose=None if imported else trial.dose,
        )
        tile = content.get("tile") or trial.augment.crop
        scores, details = score_image_set(
            model,
            images,
            classes=trial.classes,
            detection=trial.detection,
            label_radius=info.radius,
            stride=_stride(content),
            batch_size=trial.batch_size,
            tile=tuple(tile) if tile is not None else None,
            edge=not imported,
        )
        step = trial.epochs  # the test metrics' step: the last epoch
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(f"{prefix}/{name}", float(value), stamp, step) for name, value in scores.items()
        ]
        client.log_batch(run_id, metrics=metrics)
        counts = [[c.tp, c.fp, c.fn] for c in details["image_counts"]]
        client.set_tag(run_id, f"{TAG_IMAGES}{test_set}", json.dumps(counts))
        result.scored.append(run_id)
        result.f1[run_id] = float(scores["detection_f1"])
        say(
            f"[{number}/{len(runs)}] {run.data.tags.get('hpcbench.condition')} "
            f"repeat {run.data.tags.get('hpcbench.repeat')}: detection F1 "
            f"{scores['detection_f1']:.3f}"
        )
    result.seconds = time.perf_counter() - began
    return result


class _downloaded:
    """A run's ``best.pt`` in a temporary folder, removed afterwards."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def __enter__(self) -> Path:
        import tempfile

        self._folder = tempfile.TemporaryDirectory(prefix="hpcbench-evaluate-")
        return Path(self.client.download_artifacts(self.run_id, "best.pt", self._folder.name))

    def __exit__(self, *exc: object) -> None:
        self._folder.cleanup()


def _stride(content: dict[str, Any]) -> int:
    from pydantic import TypeAdapter

    from hpcbench.models import output_stride
    from hpcbench.study import ModelSpec

    return output_stride(TypeAdapter(ModelSpec).validate_python(content["model"]))
