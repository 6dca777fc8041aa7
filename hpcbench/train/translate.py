"""The translate stage: a CycleGAN's generator F turns a simulated dataset experiment-like.

:func:`translate_dataset` writes translated dataset ``name`` of a study's ``translate``
section to ``<output>/datasets/<name>-<hash>``: every shard of the source dataset with
its ``image`` column replaced by ``F(image)`` (in [-1, 1]) and everything else — sample
ids, masks, coordinates, simulation and corruption parameters — kept, so the original
labels go with the translated images (seed 000, step 4). The ``clean`` column is
dropped: a translated image has no clean counterpart to re-noise.

Provenance: the manifest's ``spec`` has ``kind: translated``, the ``identity`` that
the directory hash is computed from (:meth:`hpcbench.plan.Plan.translation_identity`: the
source dataset's hash and the CycleGAN trial's key), the MLflow run id and epoch of the
generator, and the source directory; the generator itself is kept beside the shards as
``_cyclegan.pt`` (its ``best.pt``). ``hpcbench verify`` checks a translated dataset
like any other.

Shards are translated by Ray tasks (one per shard, ``cpus`` threads each) and written
atomically; the manifest is rewritten after each, so an interrupted run resumes with
the shards still missing and a complete dataset is not touched again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
import torch
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from hpcbench.datasets.manifest import (
    GENERATOR_FILE,
    Manifest,
    ManifestError,
    check_shards,
    read_manifest,
    write_manifest,
)
from hpcbench.datasets.schema import images_to_numpy, tensor_column
from hpcbench.datasets.sink import ShardRecord, write_shard
from hpcbench.plan import Plan
from hpcbench.seeding import seed_int, seed_sequence
from hpcbench.study import Study
from hpcbench.tracking import TAG_COMPLETE, client_for, default_tracking_uri, runs_by_key
from hpcbench.train.cyclegan import load_translator
from hpcbench.train.errors import TrainError

__all__ = ["GENERATOR_FILE", "TRANSLATED_KIND", "translate_dataset", "translate_shard"]

#: ``spec["kind"]`` of a translated dataset's manifest.
TRANSLATED_KIND = "translated"
# Index of the noise stream of a translation in seed_sequence(seed, name, index).
_NOISE_INDEX = 1


def translation_seed(study: Study, name: str) -> int:
    """The seed of translated dataset ``name``'s input noise (per sample from it)."""
    return seed_int(seed_sequence(study.seed, name, _NOISE_INDEX))


def translate_shard(
    source: str | os.PathLike[str],
    generator: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    threads: int = 1,
    batch_size: int = 8,
) -> ShardRecord:
    """Translate one source shard and write it atomically into ``out_dir``.

    Parameters
    ----------
    source : path
        A source ``shard-*.parquet`` file.
    generator : path
        The CycleGAN's ``best.pt`` (:func:`hpcbench.train.cyclegan.load_translator`).
    out_dir : path
        The translated dataset's directory.
    seed : int
        Translation seed (the input noise of sample ``s`` derives from ``[seed, s]``).
    threads : int
        Torch threads.
    batch_size : int
        Images per generator call.

    Returns
    -------
    ShardRecord
    """
    torch.set_num_threads(max(1, threads))
    with threadpool_limits(limits=max(1, threads)):
        table = pq.read_table(source)
        images = images_to_numpy(table, "image")
        ids = table.column("sample_id").to_numpy()
        translator = load_translator(generator)
        translated = translator(images, seed=seed, sample_ids=ids, batch_size=batch_size)
        index = table.column_names.index("image")
        table = table.set_column(index, "image", tensor_column(translated))
        if "clean" in table.column_names:
            table = table.drop_columns(["clean"])
        return write_shard(table, out_dir)


def _generator_of(plan: Plan, name: str, tracking_uri: str) -> tuple[str, dict[str, Any], Path]:
    """The MLflow run of the CycleGAN trial that translates ``name`` and its ``best.pt``."""
    trial = plan.translation_trial(name)
    client = client_for(tracking_uri)
    experiment = client.get_experiment_by_name(plan.study.name)
    runs = {} if experiment is None else runs_by_key(client, experiment.experiment_id, [trial.key])
    complete = [r for r in runs.get(trial.key, []) if r.data.tags.get(TAG_COMPLETE) == "true"]
    if not complete:
        raise TrainError(
            f"translate.{name}: the CycleGAN trial {trial.key} ({trial.trial.model_name}, "
            f"repeat {trial.repeat}) has no complete run in {tracking_uri}; train it first"
        )
    run_id = str(complete[0].info.run_id)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    scratch = Path(tempfile.mkdtemp(prefix="hpcbench-generator-"))
    try:
        path = Path(client.download_artifacts(run_id, "best.pt", str(scratch)))
    except Exception as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise TrainError(
            f"translate.{name}: cannot fetch best.pt of CycleGAN run {run_id}: {exc}"
        ) from None
    return (
        run_id,
        {"key": trial.key, "model_name": trial.trial.model_name, "repeat": trial.repeat},
        path,
    )


def translate_dataset(
    plan: Plan,
    name: str,
    *,
    root: str | os.PathLike[str],
    tracking_uri: str | None = None,
    cpus: float = 1,
    log: Callable[[str], None] = print,
) -> Path:
    """Write (or complete) translated dataset ``name`` of the study's ``translate`` section.

    Parameters
    ----------
    plan : Plan
        The study's plan; its CycleGAN trial for ``name`` must be complete in MLflow and
        the source dataset generated under ``root``.
    name : str
        A ``translate`` entry.
    root : path
        Output root.
    tracking_uri : str, optional
        MLflow URI; default ``sqlite:///<root>/mlflow.db``.
    cpus : float
        CPUs (torch threads) per shard task.
    log : callable
        Where progress lines go.

    Returns
    -------
    Path
        The dataset directory.

    Raises
    ------
    hpcbench.train.errors.TrainError
        The source dataset is missing or the CycleGAN has not finished.
    """
    study = plan.study
    root = Path(root)
    spec = study.translate[name]
    directory = plan.dataset_dir(root, name)
    source_dir = plan.dataset_dir(root, spec.source)
    try:
        source = read_manifest(source_dir)
    except ManifestError:
        source = None
    if source is None or not source.complete:
        raise TrainError(
            f"translate.{name}: source dataset {spec.source} is not generated under "
            f"{plan.output_dir(root)}: run `hpcbench generate` first"
        )
    try:
        manifest = read_manifest(directory)
    except ManifestError:
        manifest = None
    layout = source.layout
    done: set[int] = set()
    if manifest is not None:
        problems = check_shards(directory, manifest, layout)
        done = {first for first, problem in problems.items() if problem is None}
        if len(done) == len(layout):
            log(f"translate {name}: complete in {directory}")
            return directory
    uri = tracking_uri or default_tracking_uri(root)
    run_id, trial, fetched = _generator_of(plan, name, uri)
    began = time.perf_counter()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        generator = directory / GENERATOR_FILE
        shutil.copyfile(fetched, generator)
    finally:
        shutil.rmtree(fetched.parent, ignore_errors=True)
    saved = torch.load(generator, map_location="cpu", weights_only=False)
    if manifest is None or manifest.spec.get("cyclegan", {}).get("run_id") != run_id:
        manifest = Manifest(
            name=name,
            study=study.name,
            seed=study.seed,
            hash=plan.dataset_hash(name),
            spec={
                "kind": TRANSLATED_KIND,
                "identity": plan.translation_identity(name),
                "size": source.spec["size"],
                "shard_size": source.spec["shard_size"],
                "source": {
                    "name": spec.source,
                    "hash": source.hash,
                    "spec": source.spec,
                },
                "cyclegan": {**trial, "run_id": run_id, "epoch": int(saved.get("epoch", -1))},
                "images": "F(source image) in [-1, 1], labels of the source",
            },
        )
        done = set()  # another generator: every shard again
    todo = [first for first, _ in layout if first not in done]
    seed = translation_seed(study, name)
    threads = max(1, int(cpus))
    task: Any = ray.remote(num_cpus=cpus)(translate_shard)  # type: ignore[arg-type]
    pending = [
        task.remote(
            str(source_dir / source.shards[first].file),
            str(generator),
            str(directory),
            seed=seed,
            threads=threads,
        )
        for first in todo
    ]
    log(f"translate {name}: {len(todo)} of {len(layout)} shards with CycleGAN run {run_id}")
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        record: ShardRecord = ray.get(ready[0])
        manifest.shards[record.first_sample_id] = record
        write_manifest(directory, manifest)
        log(f"  translate {name}: {len(manifest.shards)}/{len(layout)} shards")
    manifest.timings = {"translate_seconds": time.perf_counter() - began}
    write_manifest(directory, manifest)
    return directory
