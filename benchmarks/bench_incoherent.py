"""Speed of the incoherent model: cell images per second and 128² crops per second.

Run: ``python benchmarks/bench_incoherent.py``. Single-threaded (one core, as in a Ray
task with one CPU). For WSe2 supercells of ~100, 300 and 1000 atoms at 0.05 Å it
prints the time per cell image, split into structure factor and synthesis, against the
same-run FFT floor (one ``irfft2`` of the output grid), and an end-to-end crops/s
estimate for 128² bilinear crops (rotated, 0.1 Å pixels) cut from that image.
``--quick``: the ~100 and 300 atom cells only, best of 3 (crops: of 8) instead of 7
(of 20).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import abtem
import ase.build
import numpy as np
import scipy.fft
from ase import Atoms
from scipy import ndimage
from threadpoolctl import threadpool_limits

from hpcbench.simulate import incoherent
from hpcbench.study import IncoherentSimulation


def best_of(fn: Callable[[], object], repeat: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def crop(image: np.ndarray, sampling: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A rotated 128² crop at 0.1 Å pixels, bilinear, wrapping around the cell."""
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:128, 0:128] * 0.1
    x = np.cos(angle) * cols - np.sin(angle) * rows + rng.uniform(0, 50)
    y = np.sin(angle) * cols + np.cos(angle) * rows + rng.uniform(0, 50)
    return ndimage.map_coordinates(
        image, [y / sampling[1], x / sampling[0]], order=1, mode="grid-wrap"
    )


def measure(
    atoms: Atoms, spec: IncoherentSimulation, rng: np.random.Generator, repeat: int = 7
) -> str:
    """One table row: timings for one cell, each the best of ``repeat`` (crops: 3x more)."""
    image = incoherent.simulate_incoherent(atoms, spec, scale=1.0)
    ny, nx = image.array.shape
    window = incoherent._window(incoherent._optics_key(spec), image.extent, True)
    positions = atoms.positions[:, :2].copy()
    weights = atoms.numbers.astype(float) ** spec.gamma
    total = best_of(lambda: incoherent.simulate_incoherent(atoms, spec, scale=1.0), repeat)
    factor = best_of(
        lambda: incoherent._structure_factor(positions, weights, image.extent, window), repeat
    )
    half = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    floor = best_of(lambda: scipy.fft.irfft2(half, s=(ny, nx)), repeat)
    per_crop = best_of(lambda: crop(image.array, image.sampling, rng), repeat=3 * repeat - 1)
    rate10 = 1.0 / (total / 10 + per_crop)
    rate100 = 1.0 / (total / 100 + per_crop)
    return (
        f"{len(atoms):>6} {nx:>4}×{ny:<5} {factor * 1e3:>8.2f} {total * 1e3:>9.1f} "
        f"{floor * 1e3:>10.1f} {total / floor:>6.2f} {per_crop * 1e3:>8.2f} "
        f"{rate10:>17.0f} {rate100:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cells, best of 3")
    args = parser.parse_args()
    cells = ((4, 4), (10, 5)) if args.quick else ((4, 4), (10, 5), (14, 12))
    repeat = 3 if args.quick else 7
    spec = IncoherentSimulation(method="incoherent", sampling=0.05)
    cell = abtem.orthogonalize_cell(ase.build.mx2("WSe2", a=3.28, kind="2H", vacuum=2.0))
    rng = np.random.default_rng(0)
    print(
        f"{'atoms':>6} {'grid':>10} {'S(k) ms':>8} {'total ms':>9} {'FFT floor':>10} "
        f"{'ratio':>6} {'crop ms':>8} {'crops/s @10/cell':>17} {'@100/cell':>10}"
    )
    for size in cells:
        print(measure(cell * (*size, 1), spec, rng, repeat))


if __name__ == "__main__":
    with threadpool_limits(limits=1):
        main()
