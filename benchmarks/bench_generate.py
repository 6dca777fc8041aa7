"""Dataset generation throughput: Ray Data overhead and parallel efficiency.

Run ``python benchmarks/bench_generate.py [--images 2048] [--shard-size 128]``. Every
figure is a ratio against a reference measured in the same run:

* **loop**: the same shards built and written by a plain ``for`` loop in this process
  (``build_shard`` + ``write_shard``, no Ray) - the floor for one core;
* **ray 1 CPU**: :func:`hpcbench.datasets.generate` on an embedded Ray with one CPU -
  ``ray1 / loop`` is Ray Data's overhead per unit of work (1.0 = none);
* **ray N CPUs**: the same with every core - parallel efficiency is
  ``t(1 CPU) / (N · t(N CPUs))`` (1.0 = perfect).

Two further workloads answer the issue's other questions, at the quickstart's settings:

* ``haadf``: one shard of the quickstart's abTEM dataset through ``build_shard`` with one
  thread: images/s per core, and the multislice stage's time ÷ the FFT floor (one
  planned FFT of that grid × 2 × slices × probes, measured in the same run) for both
  multislice and the quickstart's PRISM;
* ``dose``: a 5-level dose ablation ÷ one level. One level builds the dataset (simulate,
  crop, corrupt); each further level re-noises the stored ``clean`` frames with
  :func:`hpcbench.simulate.add_noise` at its dose (what training does on the fly), so
  nothing is re-simulated. Reported for the incoherent and the abTEM dataset.

The generation workloads: ``incoherent``, the quickstart's incoherent WSe2 dataset through the
real ``build_shard`` (structure, convolution simulation, crops, corruption, labels),
and ``noise``, seeded 128² noise images, so cheap that it measures overhead only. Ray
start-up is excluded (it is paid once per ``hpcbench generate``); the first Ray Data
execution of each Ray session is a warm-up and not timed. Each Ray session is a local
one of its own (``address="local"``, a 256 MiB object store), shut down after use.

``--quick``: ``incoherent`` at 32 images in 4 shards of 8, best of 2, with one Ray
session (N = 2 CPUs) instead of two: ``ray N / loop`` and the efficiency against the loop,
``loop / (N · t(N CPUs))``, stand in for the 1-CPU overhead and the speed-up; then
``dose`` for the incoherent dataset only (no abTEM) at 8 images.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import yaml

from hpcbench.datasets.generate import OBJECT_STORE_MEMORY, generate
from hpcbench.datasets.schema import tensor_column
from hpcbench.datasets.sink import write_shard
from hpcbench.seeding import Stream, stream_rng
from hpcbench.study import MultisliceSimulation, Study, load_study, validate_study_data

STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"
Builder = Callable[[Study, str, int], pa.Table]


def noise_shard(study: Study, name: str, shard_index: int) -> pa.Table:
    """Seeded uniform-noise images of the dataset's shape: pure generation overhead."""
    spec = study.datasets[name]
    first = shard_index * spec.shard_size
    ids = np.arange(first, min(spec.size, first + spec.shard_size), dtype=np.int64)
    images = np.stack(
        [
            stream_rng(study.seed, name, int(i), Stream.CORRUPTION).random(
                spec.image.shape, dtype=np.float32
            )
            for i in ids
        ]
    )
    return pa.table({"sample_id": pa.array(ids), "image": tensor_column(images)})


def sized_study(images: int, shard_size: int, seed: int) -> Study:
    """The quickstart restricted to its incoherent dataset, resized."""
    study = load_study(STUDY)
    spec = study.datasets["wse2-incoherent"].model_copy(
        update={"size": images, "shard_size": shard_size}
    )
    return study.model_copy(update={"seed": seed, "datasets": {"wse2-incoherent": spec}})


def time_loop(study: Study, builder: Builder, root: Path, repeat: int) -> float:
    """Best of ``repeat`` plain-loop generations."""
    spec = study.datasets["wse2-incoherent"]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for index in range(-(-spec.size // spec.shard_size)):
            write_shard(builder(study, "wse2-incoherent", index), root / "loop")
        best = min(best, time.perf_counter() - start)
    return best


def time_ray(study: Study, builder: Builder, root: Path, cpus: int, repeat: int) -> float:
    """Best of ``repeat`` timed generations, each into a fresh directory."""
    import ray

    # address="local": a Ray of its own, not one already running on this machine.
    ray.init(
        address="local",
        num_cpus=cpus,
        object_store_memory=OBJECT_STORE_MEMORY,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        warm = study.model_copy(update={"seed": study.seed + 1})
        generate(warm, root=root / "warm", builder=builder, progress=False)
        best = float("inf")
        for attempt in range(repeat):
            start = time.perf_counter()
            (result,) = generate(
                study, root=root / f"ray{cpus}-{attempt}", builder=builder, progress=False
            )
            best = min(best, time.perf_counter() - start)
            assert result.generated == result.shards
        return best
    finally:
        ray.shutdown()


def run(
    workload: str, images: int, shard_size: int, cpus: int, repeat: int, *, quick: bool = False
) -> None:
    builder: Builder
    if workload == "noise":
        builder = noise_shard
    else:
        from hpcbench.datasets.samples import build_shard

        builder = build_shard
    study = sized_study(images, shard_size, seed=2024)
    root = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        builder(study, "wse2-incoherent", 0)  # imports and caches outside the timings
        load = os.getloadavg()[0]
        loop = time_loop(study, builder, root, repeat)
        ray1 = None if quick else time_ray(study, builder, root, 1, repeat)
        rayn = time_ray(study, builder, root, cpus, repeat)
    finally:
        shutil.rmtree(root)
    shards = -(-images // shard_size)
    print(
        f"\n{workload}: {images} images {study.datasets['wse2-incoherent'].image.shape}, "
        f"{shards} shards of {shard_size}, best of {repeat}; load average {load:.1f} "
        f"on {os.cpu_count()} cores (other work on the machine skews the ratios)"
    )
    print(f"  loop        {loop:7.2f} s  {images / loop:8.0f} images/s/core")
    if ray1 is None:  # --quick: one Ray session only
        print(
            f"  ray {cpus} CPUs  {rayn:7.2f} s  {images / rayn / cpus:8.0f} images/s/core  "
            f"vs loop = {loop / rayn:.2f}x, efficiency vs loop = {loop / (cpus * rayn):.2f}"
        )
        return
    print(
        f"  ray 1 CPU   {ray1:7.2f} s  {images / ray1:8.0f} images/s/core  "
        f"overhead ray1/loop = {ray1 / loop:.2f}"
    )
    print(
        f"  ray {cpus} CPUs  {rayn:7.2f} s  {images / rayn / cpus:8.0f} images/s/core  "
        f"speed-up = {ray1 / rayn:.2f}, parallel efficiency = {ray1 / (cpus * rayn):.2f}, "
        f"vs loop = {loop / rayn:.2f}x"
    )


def _quickstart(name: str, size: int) -> Study:
    """The quickstart with only dataset ``name``, ``size`` images in one shard."""
    data = yaml.safe_load(STUDY.read_text())
    spec = data["datasets"][name]
    spec.update(size=size, shard_size=size)
    return validate_study_data({"name": "bench", "seed": 5, "datasets": {name: spec}})


def run_haadf(threads: int) -> None:
    """abTEM images/s per core and the multislice stage against the FFT floor."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_stem import fft_time

    from hpcbench.datasets.samples import build_shard
    from hpcbench.simulate._grid import grid_shape
    from hpcbench.simulate.stem import configure_threads, simulate_haadf
    from hpcbench.structures import build_structure

    name = "wse2-haadf"
    study = _quickstart(name, 4)
    spec = study.datasets[name]
    simulation = spec.simulation
    assert isinstance(simulation, MultisliceSimulation)
    atoms = build_structure(spec.structure, rng=0)
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    gpts = grid_shape(extent, simulation.sampling)
    with configure_threads(threads):
        start = time.perf_counter()
        table = build_shard(study, name, 0)
        shard_seconds = time.perf_counter() - start
        t_fft = fft_time(gpts, threads)
        rows = []
        runs: tuple[tuple[str, Literal["hpcbench", "abtem"]], ...] = (
            ("multislice", "hpcbench"),
            ("multislice", "abtem"),
            ("prism", "abtem"),
        )
        for method, engine in runs:
            run = simulation.model_copy(update={"method": method})
            image = simulate_haadf(atoms, run, seed=0, engine=engine)
            rows.append((f"{method} ({engine})", image.metadata))
    meta = rows[0][1]
    slices = int(np.ceil(atoms.cell[2, 2] / simulation.slice_thickness))
    probes = int(np.prod(meta["scan_gpts"]))
    floor = t_fft * 2 * slices * probes
    structures = len(set(table["structure_index"].to_pylist()))
    print(
        f"\nhaadf: quickstart {name}, {len(atoms)} atoms, grid {gpts}, {slices} slices, "
        f"{probes} probes, {threads} thread(s); one FFT {t_fft * 1e3:.2f} ms -> floor "
        f"{floor:.1f} s per structure"
    )
    print(
        f"  build_shard: {table.num_rows} images of {structures} structures in "
        f"{shard_seconds:.1f} s = {table.num_rows / shard_seconds / threads:.3f} images/s/core"
    )
    for method, metadata in rows:
        scan = metadata["time_scan"]
        print(
            f"  {method:<24} scan {scan:7.1f} s  / FFT floor = {scan / floor:.2f}  "
            f"(potential {metadata['time_potential']:.1f} s)"
        )


def run_dose(levels: int, images: int, *, haadf: bool = True) -> None:
    """Cost of a ``levels``-level dose ablation relative to one level.

    For the quickstart's incoherent dataset (``images`` images) and, with ``haadf``, its
    abTEM dataset (4 images).
    """
    from hpcbench.datasets.samples import build_shard
    from hpcbench.datasets.schema import images_to_numpy
    from hpcbench.simulate.corrupt import CorruptionParams, add_noise

    doses = np.geomspace(1e3, 1e7, levels)
    print(f"\ndose: {levels}-level ablation {doses[0]:.0e}..{doses[-1]:.0e} e/Å² / one level")
    datasets = (("wse2-incoherent", images), ("wse2-haadf", 4))
    for name, size in datasets if haadf else datasets[:1]:
        study = _quickstart(name, size)
        build_shard(study, name, 0) if name == "wse2-incoherent" else None  # warm caches
        start = time.perf_counter()
        table = build_shard(study, name, 0)
        one = time.perf_counter() - start
        clean = images_to_numpy(table, "clean")
        seeds = table["corruption_seed"].to_pylist()
        pixel = table["pixel_size"].to_pylist()
        start = time.perf_counter()
        for dose in doses[1:]:
            params = CorruptionParams(dose=float(dose))
            for frame, seed, size_px in zip(clean, seeds, pixel, strict=True):
                add_noise(frame, params, pixel_size=size_px, seed=seed)
        extra = time.perf_counter() - start
        print(
            f"  {name:<16} one level {one:7.2f} s, {levels - 1} more levels {extra:6.2f} s "
            f"-> {levels} levels / 1 = {(one + extra) / one:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="2048 (--quick: 32)")
    parser.add_argument("--shard-size", type=int, default=None, help="128 (--quick: 8)")
    parser.add_argument("--cpus", type=int, default=None, help="all cores (--quick: 2)")
    parser.add_argument("--repeat", type=int, default=None, help="3 (--quick: 2)")
    parser.add_argument(
        "--workload",
        choices=["noise", "incoherent", "haadf", "dose", "all"],
        default=None,
        help="all (--quick: incoherent and dose)",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads for haadf")
    parser.add_argument("--quick", action="store_true", help="see the module docstring")
    args = parser.parse_args()
    images = args.images or (32 if args.quick else 2048)
    shard_size = args.shard_size or (8 if args.quick else 128)
    repeat = args.repeat or (2 if args.quick else 3)
    cpus = args.cpus or (2 if args.quick else os.cpu_count() or 1)
    workload = args.workload or ("quick" if args.quick else "all")
    chosen = {
        "all": ("noise", "incoherent", "haadf", "dose"),
        "quick": ("incoherent", "dose"),
    }.get(workload, (workload,))
    for name in chosen:
        if name == "haadf":
            run_haadf(args.threads)
        elif name == "dose":
            run_dose(5, shard_size, haadf=not args.quick)
        else:
            run(name, images, shard_size, cpus, repeat, quick=args.quick)


if __name__ == "__main__":
    main()
