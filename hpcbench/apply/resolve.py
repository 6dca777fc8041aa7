"""Which ``best.pt`` a ``MODEL`` argument means: a file, a run, or a study's condition.

``MODEL`` is, in the order tried:

1. a checkpoint file (``best.pt``);
2. a study file (``.yaml``): the complete segmentation runs of the condition given by
   ``condition`` (``"model=unet dose=1e4"``; may be omitted when the study has one
   condition), and of them the repeat with the best validation score by the study's
   ``select`` rule (lowest ``val/loss`` or highest ``val/f1`` over its epochs);
3. an MLflow run id or a trial key, looked up in the study's store (``study`` needed).

The chosen run's ``best.pt`` is read from its MLflow artifacts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ResolvedModel", "parse_condition", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint and a one-line account of how it was chosen."""

    path: Path
    description: str
    run_id: str | None = None


def parse_condition(text: str) -> dict[str, str]:
    """``"model=unet dose=1e4"`` (spaces or commas) as ``{"model": "unet", "dose": "1e4"}``."""
    words = [w for w in text.replace(",", " ").split() if w]
    condition = {}
    for word in words:
        axis, sep, value = word.partition("=")
        if not sep or not axis or not value:
            raise ValueError(f"condition word {word!r} is not axis=value")
        condition[axis] = value
    return condition


def _same(tag_value: str, wanted: str) -> bool:
    """Whether an axis tag (plain, or an older store's JSON) holds the value ``wanted``."""
    from hpcbench.tracking import axis_value

    value = axis_value(tag_value)
    if value is None or value == "none":
        return wanted.lower() in ("none", "null")
    if isinstance(value, list):
        value = "+".join(str(v) for v in value)
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(value) == wanted


def resolve_model(
    model: str,
    *,
    study: str | None = None,
    condition: str | None = None,
    root: str | Path = "runs",
    tracking_uri: str | None = None,
    smoke: bool = False,
) -> ResolvedModel:
    """The checkpoint ``model`` names (see the module notes).

    Raises
    ------
    ValueError
        One line naming what could not be found.
    """
    path = Path(model)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        return ResolvedModel(path, f"model {path}")
    study_file = path if path.suffix in (".yaml", ".yml") else None
    if study_file is None and study is None:
        if path.suffix == ".pt":
            raise ValueError(f"no model file {path}")
        raise ValueError(f"{model!r} is no file; to name a run or trial key pass --study")
    from hpcbench.study import load_study

    spec = load_study(study_file or Path(str(study)), smoke=smoke)
    from hpcbench.tracking import (
        TAG_AXIS,
        TAG_COMPLETE,
        TAG_CONDITION,
        TAG_KEY,
        TAG_KIND,
        client_for,
        default_tracking_uri,
        iter_runs,
    )

    uri = tracking_uri or default_tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"study {spec.name} has no MLflow store at {uri}: train it first")
    client = client_for(uri)
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        raise ValueError(f"study {spec.name} has no runs in {uri}: train it first")
    runs = [
        run
        for run in iter_runs(client, experiment.experiment_id)
        if run.data.tags.get(TAG_COMPLETE) == "true"
        and run.data.tags.get(TAG_KIND, "segmentation") == "segmentation"
    ]
    if study_file is None:
        chosen = [r for r in runs if model in (r.info.run_id, r.data.tags.get(TAG_KEY))]
        if not chosen:
            raise ValueError(f"no complete segmentation run or trial key {model!r} in {uri}")
        run = chosen[0]
        return ResolvedModel(
            _download(client, run.info.run_id),
            f"run {run.info.run_id} ({run.data.tags.get(TAG_CONDITION)}, "
            f"repeat {run.data.tags.get('hpcbench.repeat')})",
            run.info.run_id,
        )
    from hpcbench.plan import make_plan

    # Only the trials of the study file as it is now: runs of an earlier edit of it
    # (another dataset or setting, hence another trial key) are another model.
    current = {trial.key for trial in make_plan(spec).trials}
    runs = [r for r in runs if r.data.tags.get(TAG_KEY) in current]
    wanted = parse_condition(condition or "")
    matching = [
        r
        for r in runs
        if all(
            f"{TAG_AXIS}{axis}" in r.data.tags and _same(r.data.tags[f"{TAG_AXIS}{axis}"], value)
            for axis, value in wanted.items()
        )
    ]
    conditions = sorted({str(r.data.tags.get(TAG_CONDITION)) for r in matching})
    if not matching:
        raise ValueError(
            f"no complete run of condition {condition!r} in study {spec.name}"
            if condition
            else f"study {spec.name} has no complete segmentation run: train it first"
        )
    if len(conditions) > 1:
        shown = "; ".join(conditions[:4]) + ("; ..." if len(conditions) > 4 else "")
        raise ValueError(f"{len(conditions)} conditions match, pick one with --condition: {shown}")
    select = spec.train.select if spec.train is not None else "loss"
    best = min(matching, key=lambda run: _validation_score(client, run.info.run_id, select))
    repeats = len(matching)
    return ResolvedModel(
        _download(client, best.info.run_id),
        f"study {spec.name}, {conditions[0]}: repeat {best.data.tags.get('hpcbench.repeat')} "
        f"of {repeats} (best {'val/loss' if select == 'loss' else 'val/f1'}), "
        f"run {best.info.run_id}",
        best.info.run_id,
    )


def _validation_score(client: Any, run_id: str, select: str) -> float:
    """Lower is better: the lowest ``val/loss`` or minus the highest ``val/f1``."""
    if select == "loss":
        values = [m.value for m in client.get_metric_history(run_id, "val/loss")]
        return min((v for v in values if math.isfinite(v)), default=math.inf)
    values = [m.value for m in client.get_metric_history(run_id, "val/f1")]
    return -max((v for v in values if math.isfinite(v)), default=-math.inf)


def _download(client: Any, run_id: str) -> Path:
    import tempfile

    target = Path(tempfile.mkdtemp(prefix="hpcbench-model-"))
    local = client.download_artifacts(run_id, "best.pt", str(target))
    return Path(local)
