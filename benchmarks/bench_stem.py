"""HAADF-STEM multislice speed against the FFT floor measured in the same run.

The FFT floor of a multislice scan is ``t_fft × 2 × slices × probes × configurations``,
with ``t_fft`` the time of one planned 2-D FFTW transform of the simulation grid
(complex64, as abTEM computes, on the same thread count). Every multislice step
needs one forward and one inverse FFT per probe; everything else (transmission,
propagator product, detector) is extra.

Run ``python benchmarks/bench_stem.py [--repeat NX NY] [--threads N]``. It prints the
abTEM scan stage at several probe batch sizes, ``simulate_haadf`` as shipped, PRISM
interpolation 1, and each as a ratio to the floor. Timings on a shared machine are
noisy; ratios from the same run are comparable.

``--quick``: a 1 × 1 cell at 0.1 Å (35 × 60 grid, 8 slices, 112 probes), the engine
and abTEM (batch 32) only, on one thread: a few seconds after the imports.

``--device cuda``: the engine's scan on the GPU against the GPU FFT floor of the same
run (one batched complex64 2-D FFT per probe, batched like the engine, × 2 × slices ×
probes, synchronised), its image against the CPU engine's, ``simulate_haadf`` on
CUDA, and abTEM's GPU scan at batch 32 and 512 where CuPy is installed. The
quickstart's case is ``--repeat 4 3 --vacuum 5 --sampling 0.06`` (224 × 288 grid, 14
slices, 1312 probes).
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import abtem
import numpy as np
from ase import Atoms
from ase.build import make_supercell, mx2

from hpcbench.optics import wavelength
from hpcbench.simulate._grid import grid_shape
from hpcbench.simulate.stem import configure_threads, simulate_haadf
from hpcbench.study import MultisliceSimulation


def wse2_cell(nx: int, ny: int, vacuum: float = 2.0) -> Atoms:
    """Orthogonal a × a√3 WSe2 monolayer repeated (nx, ny) times, ``vacuum`` Å each side."""
    primitive = mx2("WSe2", kind="2H", a=3.28, thickness=3.34, vacuum=vacuum)
    atoms = make_supercell(primitive, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    atoms.wrap()
    return atoms.repeat((nx, ny, 1))


def fft_time(gpts: tuple[int, int], threads: int, repeats: int = 100) -> float:
    """Seconds for one in-place complex64 2-D FFT of ``gpts``: a planned FFTW call.

    The best of five blocks of ``repeats`` calls, so other load on the machine inflates
    the floor as little as possible.
    """
    import pyfftw

    array = pyfftw.empty_aligned(gpts, dtype="complex64")
    plan = pyfftw.FFTW(array, array, axes=(0, 1), threads=threads, flags=("FFTW_MEASURE",))
    array[:] = np.random.default_rng(0).standard_normal(gpts)
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            plan()
        best = min(best, (time.perf_counter() - start) / repeats)
    return float(best)


def scan_time(
    atoms: Atoms, spec: MultisliceSimulation, max_batch: int | str, device: str = "cpu"
) -> float:
    """Seconds for abTEM's probe scan alone, on a potential built beforehand.

    ``device`` is abTEM's: ``"cpu"`` or ``"gpu"`` (CuPy).
    """
    gpts = grid_shape((atoms.cell[0, 0], atoms.cell[1, 1]), spec.sampling)
    potential = abtem.Potential(
        atoms, gpts=gpts, slice_thickness=spec.slice_thickness, device=device
    )
    potential = potential.build(lazy=False)
    probe = abtem.Probe(
        semiangle_cutoff=spec.semiangle_cutoff,
        energy=spec.energy,
        aberrations={"C10": -spec.defocus, "C30": spec.Cs},
        device=device,
    )
    step = spec.scan_sampling or probe.aperture.nyquist_sampling
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    scan_gpts = tuple(int(np.ceil(length / step - 1e-9)) for length in extent)
    scan = abtem.GridScan(start=(0, 0), end=extent, gpts=scan_gpts, endpoint=False)
    detector = abtem.AnnularDetector(inner=spec.detector.inner, outer=spec.detector.outer)
    start = time.perf_counter()
    measurement = probe.scan(potential, scan=scan, detectors=detector, max_batch=max_batch)
    measurement.compute(scheduler="synchronous", progress_bar=False)
    return time.perf_counter() - start


def row(label: str, seconds: float, floor: float) -> None:
    """One line of the table: a stage, its time [s] and its ratio to the floor."""
    print(f"{label:<44}{seconds:>10.3f}{seconds / floor:>10.2f}")


def cuda_engine(atoms: Atoms, spec: MultisliceSimulation, batch: int | None) -> None:
    """The engine's scan on CUDA against the GPU FFT floor measured here and now."""
    import torch
    from gpu_stem_check import cuda_fft_time, time_cuda_scan

    from hpcbench.simulate import _multislice

    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    gpts = grid_shape(extent, spec.sampling)
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=spec.slice_thickness)
    potential = potential.build(lazy=False)
    probe = abtem.Probe(
        semiangle_cutoff=spec.semiangle_cutoff,
        energy=spec.energy,
        aberrations={"C10": -spec.defocus, "C30": spec.Cs},
        gpts=gpts,
        extent=extent,
    ).build((0.0, 0.0), lazy=False)
    # simulate_haadf's scan: the probe's Nyquist step λ / (4 α).
    step = wavelength(spec.energy) / (4 * spec.semiangle_cutoff * 1e-3)
    sx, sy = (max(1, int(np.ceil(length / step - 1e-9))) for length in extent)
    scan_gpts = (sx, sy)
    prepared = _multislice.prepare_scan(
        np.asarray(potential.array, dtype=np.float32),
        np.asarray(potential.slice_thickness, dtype=np.float64),
        extent,
        np.asarray(probe.array, dtype=np.complex64),
        energy=spec.energy,
        inner=spec.detector.inner,
        outer=spec.detector.outer,
        scan_gpts=scan_gpts,
    )
    slices = prepared.transmission.shape[0]
    probes = scan_gpts[0] * scan_gpts[1]
    if batch is None:
        batch = _multislice.gpu_batch(gpts, probes, free_bytes=torch.cuda.mem_get_info()[0])
    first, seconds, image = time_cuda_scan(_multislice, prepared, batch)
    t_fft = cuda_fft_time(gpts, batch)
    floor = t_fft * 2 * slices * probes
    print(
        f"cell {extent[0]:.1f} x {extent[1]:.1f} Å ({len(atoms)} atoms), grid {gpts}, "
        f"{slices} slices, {probes} probes, batch {batch}, {torch.cuda.get_device_name()}"
    )
    print(f"one FFT {t_fft * 1e6:.3f} µs a probe -> GPU FFT floor {floor:.4f} s\n")
    print(f"{'stage':<44}{'time [s]':>10}{'/ floor':>10}")
    row("engine scan on CUDA (first call)", first, floor)
    row("engine scan on CUDA (warm, best of 3)", seconds, floor)
    reference = _multislice.scan(prepared)
    error = float(np.abs(image - reference).max() / reference.mean())
    meta = simulate_haadf(atoms, spec, seed=0, device="cuda").metadata
    for stage in ("time_potential", "time_scan", "time_total"):
        row(f"simulate_haadf cuda: {stage[5:]}", meta[stage], floor)
    if importlib.util.find_spec("cupy") is not None:
        for abtem_batch in (32, 512):
            row(
                f"abTEM gpu scan, max_batch={abtem_batch}",
                scan_time(atoms, spec, abtem_batch, "gpu"),
                floor,
            )
    print(f"\nCUDA vs CPU engine: max |difference| / image mean = {error:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, nargs=2, default=(4, 2), metavar=("NX", "NY"))
    parser.add_argument("--vacuum", type=float, default=2.0, help="each side of the layer [Å]")
    parser.add_argument("--threads", type=int, default=None, help="2 (--quick: 1)")
    parser.add_argument("--sampling", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="a 1 x 1 cell at 0.1 Å")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="cuda: probes a batch")
    args = parser.parse_args()

    options = {"method": "multislice", "sampling": args.sampling}
    if args.threads is None:
        # A 35 × 60 FFT on 2 threads of a loaded 2-core machine took 15 ms instead of
        # 0.013: each transform waits for the other thread's time slice.
        args.threads = 1 if args.quick else 2
    if args.quick:
        args.repeat = (1, 1)
        options.update(sampling=0.1, detector={"inner": 50, "outer": 130})
    nx, ny = args.repeat
    atoms = wse2_cell(nx, ny, vacuum=args.vacuum)
    spec = MultisliceSimulation(**options)
    if args.device == "cuda":
        with configure_threads(args.threads):
            cuda_engine(atoms, spec, args.batch)
        return
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    gpts = grid_shape(extent, spec.sampling)
    slices = int(np.ceil(atoms.cell[2, 2] / spec.slice_thickness))
    probe = abtem.Probe(semiangle_cutoff=spec.semiangle_cutoff, energy=spec.energy)
    step = probe.aperture.nyquist_sampling
    probes = int(np.prod([np.ceil(length / step - 1e-9) for length in extent]))
    with configure_threads(args.threads):
        t_fft = fft_time(gpts, args.threads)
        floor = t_fft * 2 * slices * probes
        print(
            f"cell {extent[0]:.1f} x {extent[1]:.1f} Å ({len(atoms)} atoms), grid {gpts}, "
            f"{slices} slices, {probes} probes, {args.threads} threads"
        )
        print(f"one FFT {t_fft * 1e3:.3f} ms -> FFT floor {floor:.3f} s\n")
        print(f"{'stage':<44}{'time [s]':>10}{'/ floor':>10}")
        for batch in (32,) if args.quick else (8, 32, 128, "auto"):
            row(f"abTEM scan, max_batch={batch}", scan_time(atoms, spec, batch), floor)
        for method in ("multislice",) if args.quick else ("multislice", "prism"):
            run = MultisliceSimulation(**{**options, "method": method})
            meta = simulate_haadf(atoms, run, seed=0).metadata
            for stage in ("time_potential", "time_scan", "time_total"):
                row(f"simulate_haadf {method}: {stage[5:]}", meta[stage], floor)


if __name__ == "__main__":
    main()
