"""Generate a study's datasets as sharded, checksummed Parquet with Ray Data.

For each dataset, :func:`generate` works out which shards are missing or damaged (a
shard is kept only when the manifest lists it and its file has the recorded size and
SHA-256), then runs one Ray Data pipeline over those shards of all datasets together:
``from_items`` with one block per shard → ``map_batches`` that builds the shard with
``builder`` and writes it with :func:`~hpcbench.datasets.sink.write_shard` in the same
task → a small record per shard that the driver consumes as a stream. The driver prints
a line per finished shard and rewrites the manifest atomically every couple of seconds
and at the end, so a crash loses only the shards in flight. When nothing is missing,
Ray is not started at all.

Why not ``write_datasink``: a Datasink's results reach the driver only in
``on_write_complete``, after the last shard, so neither progress nor an incremental
manifest is possible; and building and writing in one task keeps the images out of
Ray's object store (only a ~200-byte record per shard travels). The file writing itself
is what a custom Datasink would do: name from the first sample id, temporary ``.``-file
then :func:`os.replace`, deterministic bytes, nothing else touched.

Resources: each shard task asks Ray for ``cpus_per_task`` CPUs (default 1) and caps
BLAS/OpenMP, torch and abTEM FFTW threads to that number inside the task, with dask
synchronous, so ``cpus_per_task × tasks`` never oversubscribes a node (DESIGN.md:
dask threads on top of threaded FFTW were 15–30× slower). One CPU per shard is the
right default while a dataset has at least as many shards as the cluster has CPUs;
raise it for a few huge abTEM shards. Dataset directories must be on a filesystem all
nodes see at the same path (the usual shared filesystem of an HPC cluster).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from hpcbench.datasets.importer import ImageImportError, import_images
from hpcbench.datasets.manifest import (
    Manifest,
    ManifestError,
    check_shards,
    read_manifest,
    stray_files,
    verify,
    write_manifest,
)
from hpcbench.datasets.sink import ShardRecord, write_shard
from hpcbench.plan import Plan, make_plan
from hpcbench.study import Study

__all__ = ["DatasetResult", "ShardBuilder", "generate", "init_ray", "shutdown_ray"]

ShardBuilder = Callable[[Study, str, int], pa.Table]
"""``builder(study, name, shard_index) -> pyarrow.Table``: the rows of one shard."""

# The manifest is rewritten at most this often while shards stream in [s]: a crash then
# loses at most this much finished work, and a 40 000-shard manifest is not rewritten
# 40 000 times.
MANIFEST_INTERVAL = 2.0

# Embedded Ray's object store [bytes]: only per-shard records pass through it.
OBJECT_STORE_MEMORY = 256 * 2**20


@dataclass(frozen=True)
class DatasetResult:
    """Outcome of generating one dataset.

    Attributes
    ----------
    name : str
        Dataset name.
    directory : Path
        Its directory (:meth:`hpcbench.plan.Plan.dataset_dir`).
    rows : int
        Rows in the finished dataset.
    shards : int
        Shards in the dataset.
    generated, skipped : int
        Shards built in this run, and shards found intact and kept.
    seconds : float
        Wall time from the start of :func:`generate` until this dataset was done [s].
    imported : str
        For an imported dataset (``imports``), what was done: ``"imported N images,
        M coordinates"`` or ``"already imported, verified"``; empty for simulated ones.
    stray : list of str
        Files in the directory that are not part of the dataset (left alone: they may be
        the user's; ``hpcbench verify`` flags them).
    """

    name: str
    directory: Path
    rows: int
    shards: int
    generated: int
    skipped: int
    seconds: float
    imported: str = ""
    stray: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: path, rows, generated/skipped shards (or what was imported), seconds."""
        done = self.imported or f"{self.generated} generated, {self.skipped} skipped"
        line = (
            f"{self.directory}: {self.rows} rows in {self.shards} shards "
            f"({done}) in {self.seconds:.1f} s"
        )
        if self.stray:
            names = ", ".join(self.stray[:3]) + (", ..." if len(self.stray) > 3 else "")
            line += f"; {len(self.stray)} file(s) not part of it: {names}"
        return line


@dataclass
class _DatasetWork:
    name: str
    directory: Path
    manifest: Manifest
    todo: list[int]  # shard indices to build
    shard_size: int
    shards: int
    stray: list[str]


def _work(plan: Plan, name: str, root: Path) -> _DatasetWork:
    study = plan.study
    directory = plan.dataset_dir(root, name)
    fresh = Manifest.for_dataset(study, name)
    manifest = fresh
    if directory.is_dir():
        try:
            found = read_manifest(directory)
        except ManifestError:
            found = None
        if found is not None and found.hash == fresh.hash and found.name == name:
            manifest = found
    layout = manifest.layout
    problems = check_shards(directory, manifest, layout) if directory.is_dir() else {}
    shard_size = study.datasets[name].shard_size
    todo = [first // shard_size for first, _ in layout if problems.get(first, "absent")]
    # Keep only records of intact shards; stale ones are rewritten as shards complete.
    manifest.shards = {
        first: record
        for first, record in manifest.shards.items()
        if first in problems and problems[first] is None
    }
    stray = stray_files(directory, layout) if directory.is_dir() else []
    return _DatasetWork(name, directory, manifest, todo, shard_size, len(layout), stray)


def check_reachable(address: str, *, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a Ray cluster's address does not answer.

    ``ray.init`` retries an unreachable head for minutes while printing warnings; a TCP
    connection to the GCS port tells in seconds. ``"auto"`` and ``"local"`` are left to
    Ray.

    Raises
    ------
    ConnectionError
        ``cannot reach a Ray cluster at ADDRESS: reason``.
    """
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://").split("/", 1)[0]
    host, _, port_text = hostport.rpartition(":")
    if not host:
        host, port_text = hostport, "10001" if address.startswith("ray://") else "6379"
    try:
        port = int(port_text)
    except ValueError:
        raise ConnectionError(f"cannot reach a Ray cluster at {address}: bad port") from None
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConnectionError(f"cannot reach a Ray cluster at {address}: {reason}") from None


def init_ray(address: str | None) -> bool:
    """Connect to a Ray cluster, or start an embedded one; return whether one was started.

    Parameters
    ----------
    address : str or None
        ``ray.init`` address of an existing cluster (``"auto"``, ``"host:6379"``,
        ``"ray://..."``); ``None`` uses ``RAY_ADDRESS`` if set, else starts a local Ray
        with all of this machine's CPUs, no dashboard and a 256 MiB object store. A Ray
        already initialised in this process is used as is.
    """
    import ray  # lazy: start-up time (a re-run with nothing to build never loads Ray)

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    # Ray's start-up notices would drown the one line per shard; its errors still raise.
    if address is not None:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as exc:
            # Ray >= 2.5x clusters made by `ray start` use token auth, but a client only
            # sends the token (~/.ray/auth_token) when RAY_AUTH_MODE=token is set.
            hint = ""
            if os.environ.get("RAY_AUTH_MODE") != "token":
                hint = (
                    "; if the cluster was started with `ray start` (token authentication), "
                    "set RAY_AUTH_MODE=token and make its token available"
                )
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConnectionError(f"{first}{hint}") from None
    else:
        # address="local": always a new embedded Ray. Without it ray.init joins a Ray
        # already running on this machine (e.g. `ray start`, another hpcbench run) and
        # then refuses num_cpus; measured with a second sweep beside a running one.
        ray.init(
            address="local",
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=OBJECT_STORE_MEMORY,
            logging_level=logging.ERROR,
        )
        _started_sessions.append(_session_dir())
    return True


# Session directories of the embedded Rays this process started (removed at shutdown).
_started_sessions: list[Path | None] = []


def _session_dir() -> Path | None:
    import ray  # lazy: start-up time

    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(getattr(node, "global_worker", None), "node", None)
    if node is None:  # a Ray without this private path: leave its files alone
        return None
    return Path(node.get_session_dir_path())


def shutdown_ray() -> None:
    """Shut down the Ray this process connected to; remove an embedded one's session files.

    Each embedded Ray leaves ``<temp dir>/ray/session_*`` (logs, sockets, spilled
    objects: 11 → 82 directories over one round of this project's tests before this
    was done). The temp dir is Ray's own setting: ``RAY_TMPDIR`` puts it where the
    user wants it.
    """
    import ray  # lazy: start-up time

    ray.shutdown()
    while _started_sessions:
        session = _started_sessions.pop()
        if session is not None:
            shutil.rmtree(session, ignore_errors=True)


@contextmanager
def _task_threads(cpus: int, multislice: bool) -> Iterator[None]:
    """Cap every thread pool in this worker to the task's CPUs for the block's duration."""
    # lazy: runs in the Ray worker, which needs the simulation stack anyway
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with ExitStack() as stack:
        stack.enter_context(threadpool_limits(limits=cpus))
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            previous = torch.get_num_threads()
            torch.set_num_threads(cpus)
            stack.callback(torch.set_num_threads, previous)
        if multislice or "abtem" in sys.modules:
            import abtem  # lazy: only multislice tasks load abTEM (~2 s)
            import dask

            stack.enter_context(abtem.config.set({"fftw.threads": cpus}))
            stack.enter_context(dask.config.set(scheduler="synchronous"))
        yield


def _build_and_write(
    batch: dict[str, npt.NDArray[Any]],
    *,
    study: Study,
    directories: dict[str, str],
    builder: ShardBuilder,
    cpus: int,
) -> dict[str, npt.NDArray[Any]]:
    """Ray Data map function: build and write each requested shard, return records."""
    records: list[tuple[str, ShardRecord]] = []
    for name, shard in zip(batch["dataset"], batch["shard"], strict=True):
        name = str(name)
        start = time.perf_counter()
        multislice = study.datasets[name].simulation.method != "incoherent"
        with _task_threads(cpus, multislice):
            table = builder(study, name, int(shard))
        record = write_shard(table, directories[name])
        expected = int(shard) * study.datasets[name].shard_size
        if record.first_sample_id != expected:
            raise ValueError(
                f"builder returned samples from {record.first_sample_id} for shard {shard} "
                f"of {name!r}, expected from {expected}"
            )
        seconds = time.perf_counter() - start
        records.append((name, ShardRecord(**{**record.to_json(), "seconds": seconds})))
    return {
        "dataset": np.array([name for name, _ in records], dtype=object),
        "file": np.array([r.file for _, r in records], dtype=object),
        "first_sample_id": np.array([r.first_sample_id for _, r in records], dtype=np.int64),
        "rows": np.array([r.rows for _, r in records], dtype=np.int64),
        "sha256": np.array([r.sha256 for _, r in records], dtype=object),
        "bytes": np.array([r.bytes for _, r in records], dtype=np.int64),
        "seconds": np.array([r.seconds for _, r in records], dtype=np.float64),
    }


def _default_builder() -> ShardBuilder:
    import importlib

    # lazy: start-up time — samples.py pulls in structure building and simulation.
    module = importlib.import_module("hpcbench.datasets.samples")
    builder: ShardBuilder = module.build_shard
    return builder


def _run(
    study: Study,
    plans: list[_DatasetWork],
    *,
    builder: ShardBuilder,
    cpus_per_task: int,
    address: str | None,
    log: TextIO | None,
    start: float,
) -> dict[str, float]:
    """Build every planned shard with Ray Data; return each dataset's finish time."""
    # lazy: start-up time (a re-run with nothing to build never loads Ray)
    import ray
    from ray.data import DataContext

    by_name = {plan.name: plan for plan in plans}
    remaining = {plan.name: len(plan.todo) for plan in plans}
    finished = {plan.name: time.perf_counter() - start for plan in plans if not plan.todo}
    started_ray = init_ray(address)
    context = DataContext.get_current()
    saved = (context.enable_progress_bars, context.print_on_execution_start)
    context.enable_progress_bars = False  # one line per shard from the driver instead
    context.print_on_execution_start = False
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # e.g. "Progress bars disabled"; failures still raise
    last_write = time.perf_counter()
    try:
        items = [{"dataset": plan.name, "shard": index} for plan in plans for index in plan.todo]
        task = partial(
            _build_and_write,
            study=study,
            directories={plan.name: str(plan.directory) for plan in plans},
            builder=builder,
            cpus=cpus_per_task,
        )
        pipeline = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            task, batch_size=1, batch_format="numpy", num_cpus=cpus_per_task
        )
        for row in pipeline.iter_rows():
            name = str(row["dataset"])
            plan = by_name[name]
            record = ShardRecord(
                file=str(row["file"]),
                first_sample_id=int(row["first_sample_id"]),
                rows=int(row["rows"]),
                sha256=str(row["sha256"]),
                bytes=int(row["bytes"]),
                seconds=float(row["seconds"]),
            )
            plan.manifest.shards[record.first_sample_id] = record
            remaining[name] -= 1
            done = len(plan.todo) - remaining[name]
            if log is not None:
                print(
                    f"{name}: {record.file} {record.rows} rows {record.seconds:.1f} s "
                    f"[{done}/{len(plan.todo)}]",
                    file=log,
                    flush=True,
                )
            if remaining[name] == 0:
                finished[name] = time.perf_counter() - start
                _finish(plan, finished[name])
            elif time.perf_counter() - last_write > MANIFEST_INTERVAL:
                for pending in plans:
                    if remaining[pending.name]:
                        write_manifest(pending.directory, pending.manifest)
                last_write = time.perf_counter()
    finally:
        for plan in plans:
            if remaining[plan.name]:  # failed or interrupted: keep what finished
                plan.manifest.timings["generate_seconds"] = time.perf_counter() - start
                write_manifest(plan.directory, plan.manifest)
        context.enable_progress_bars, context.print_on_execution_start = saved
        data_logger.setLevel(saved_level)
        if started_ray:
            shutdown_ray()
    return finished


def _finish(plan: _DatasetWork, seconds: float) -> None:
    plan.manifest.timings = {
        "generate_seconds": round(seconds, 3),
        "shard_seconds": round(sum(r.seconds for r in plan.manifest.shards.values()), 3),
    }
    write_manifest(plan.directory, plan.manifest)


def generate(
    study: Study,
    *,
    root: str | os.PathLike[str],
    address: str | None = None,
    builder: ShardBuilder | None = None,
    only: Sequence[str] | None = None,
    progress: bool = True,
    cpus_per_task: int = 1,
) -> list[DatasetResult]:
    """Generate (or complete, or repair) the datasets of a study.

    Parameters
    ----------
    study : Study
        A validated study.
    root : path
        Output root; dataset ``name`` goes to its plan directory
        (:meth:`hpcbench.plan.Plan.dataset_dir`).
    address : str, optional
        Ray cluster to connect to (see :func:`init_ray`); default an embedded local Ray,
        started only if some shard needs building and shut down afterwards.
    builder : callable, optional
        ``builder(study, name, shard_index) -> pyarrow.Table`` giving one shard's rows;
        default :func:`hpcbench.datasets.samples.build_shard`. It must be a pure
        function of its arguments, importable or picklable by Ray workers.
    only : sequence of str, optional
        Generate (or import) only these datasets.
    progress : bool
        Print a line per finished shard to stderr.
    cpus_per_task : int
        CPUs Ray reserves for each shard task; thread pools inside are capped to it.

    Returns
    -------
    list of DatasetResult
        One per dataset in study order, then one per imported dataset (``imports``):
        those are imported in this process (no Ray) unless their directory holds a
        complete import of the same files that verifies.

    Raises
    ------
    hpcbench.datasets.importer.ImageImportError
        An imported dataset's files cannot be imported (every bad file listed).
    """
    start = time.perf_counter()
    names = list(study.datasets)
    imports = list(study.imports)
    if only is not None:
        unknown = [name for name in only if name not in study.datasets and name not in imports]
        if unknown:
            raise ValueError(f"no dataset {unknown[0]!r} in study {study.name!r}")
        names = [name for name in names if name in only]
        imports = [name for name in imports if name in only]
    if cpus_per_task < 1:
        raise ValueError(f"cpus_per_task must be >= 1, got {cpus_per_task}")
    root = Path(root)
    study_plan = make_plan(study)
    plans = [_work(study_plan, name, root) for name in names]
    pending = [plan for plan in plans if plan.todo]
    finished = {plan.name: time.perf_counter() - start for plan in plans if not plan.todo}
    if pending:
        finished |= _run(
            study,
            pending,
            builder=builder if builder is not None else _default_builder(),
            cpus_per_task=cpus_per_task,
            address=address,
            log=sys.stderr if progress else None,
            start=start,
        )
    results = [
        DatasetResult(
            name=plan.name,
            directory=plan.directory,
            rows=plan.manifest.total_rows,
            shards=plan.shards,
            generated=len(plan.todo),
            skipped=plan.shards - len(plan.todo),
            seconds=finished[plan.name],
            stray=plan.stray,
        )
        for plan in plans
    ]
    return results + [_import(study_plan, name, root, start) for name in imports]


def _import(plan: Plan, name: str, root: Path, start: float) -> DatasetResult:
    """Import dataset ``name`` of ``study.imports`` unless a verified import is there."""
    try:
        return _import_files(plan, name, root, start)
    except ImageImportError as exc:
        raise ImageImportError(f"imports.{name}: {exc.headline}", exc.problems) from None


def _import_files(plan: Plan, name: str, root: Path, start: float) -> DatasetResult:
    plan.import_record(name)  # reads and hashes the source files; every bad file listed
    directory = plan.dataset_dir(root, name)
    if directory.is_dir() and (report := verify(directory)).ok:
        shards = len(read_manifest(directory).layout)
        return DatasetResult(
            name=name,
            directory=directory,
            rows=report.rows_ok,
            shards=shards,
            generated=0,
            skipped=shards,
            seconds=time.perf_counter() - start,
            imported="already imported, verified",
        )
    spec = plan.study.imports[name]
    result = import_images(
        spec.path,
        directory.parent,
        name=name,
        **spec.importer_arguments(),
        overwrite=True,  # an incomplete or damaged import of the same files
    )
    return DatasetResult(
        name=name,
        directory=result.directory,
        rows=result.rows,
        shards=len(result.shards),
        generated=len(result.shards),
        skipped=0,
        seconds=time.perf_counter() - start,
        imported=f"imported {result.images} images, {result.coordinates} coordinates",
    )
