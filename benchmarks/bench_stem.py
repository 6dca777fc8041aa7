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
"""

from __future__ import annotations

import argparse
import time

import abtem
import numpy as np
from ase import Atoms
from ase.build import make_supercell, mx2

from hpcbench.simulate._grid import grid_shape
from hpcbench.simulate.stem import configure_threads, simulate_haadf
from hpcbench.study import MultisliceSimulation


def wse2_cell(nx: int, ny: int) -> Atoms:
    """Orthogonal a × a√3 WSe2 monolayer repeated (nx, ny) times, 2 Å vacuum each side."""
    primitive = mx2("WSe2", kind="2H", a=3.28, thickness=3.34, vacuum=2.0)
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


def scan_time(atoms: Atoms, spec: MultisliceSimulation, max_batch: int | str) -> float:
    """Seconds for abTEM's probe scan alone, on a potential built beforehand."""
    gpts = grid_shape((atoms.cell[0, 0], atoms.cell[1, 1]), spec.sampling)
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=spec.slice_thickness)
    potential = potential.build(lazy=False)
    probe = abtem.Probe(
        semiangle_cutoff=spec.semiangle_cutoff,
        energy=spec.energy,
        aberrations={"C10": -spec.defocus, "C30": spec.Cs},
    )
    step = spec.scan_sampling or probe.aperture.nyquist_sampling
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    scan_gpts = tuple(int(np.ceil(length / step - 1e-9)) for length in extent)
    scan = abtem.GridScan(start=(0, 0), end=extent, gpts=scan_gpts, endpoint=False)
    detector = abtem.AnnularDetector(inner=spec.detector.inner, outer=spec.detector.outer)
    start = time.perf_counter()
    probe.scan(potential, scan=scan, detectors=detector, max_batch=max_batch).compute(
        scheduler="synchronous", progress_bar=False
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, nargs=2, default=(4, 2), metavar=("NX", "NY"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sampling", type=float, default=0.05)
    args = parser.parse_args()

    atoms = wse2_cell(*args.repeat)
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    spec = MultisliceSimulation(method="multislice", sampling=args.sampling)
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
        print(f"one FFT {t_fft * 1e3:.3f} ms -> FFT floor {floor:.2f} s\n")
        print(f"{'stage':<44}{'time [s]':>10}{'/ floor':>10}")
        for batch in (8, 32, 128, "auto"):
            seconds = scan_time(atoms, spec, batch)
            print(f"{f'abTEM scan, max_batch={batch}':<44}{seconds:>10.2f}{seconds / floor:>10.2f}")
        for method in ("multislice", "prism"):
            run = MultisliceSimulation(method=method, sampling=args.sampling)
            image = simulate_haadf(atoms, run, seed=0)
            meta = image.metadata
            for stage in ("time_potential", "time_scan", "time_total"):
                if stage in meta:
                    label = f"simulate_haadf {method}: {stage[5:]}"
                    print(f"{label:<44}{meta[stage]:>10.2f}{meta[stage] / floor:>10.2f}")


if __name__ == "__main__":
    main()
