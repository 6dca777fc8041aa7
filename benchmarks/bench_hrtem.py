"""HRTEM plane-wave multislice and imaging speed against references measured in the same run.

The structure is seed 001's kind: an Au icosahedron on an amorphous carbon slab, at
300 keV, with frozen phonons. Printed, each against a reference timed here and now:

* the engine's multislice (``plane_wave_multislice``: all configurations in one torch
  batch) ÷ its FFT floor: the same number of batched complex64 torch transforms of the
  same batch timed alone (``4 × slices - 2`` a configuration, out= buffers, as the
  engine runs them); abTEM's ``PlaneWave.multislice`` on the same potentials (it runs
  ``4 × slices`` transforms a configuration) ÷ the same floor and ÷ the engine;
* building abTEM's potentials ÷ the engine's multislice (what dominates an exit wave);
* a 5-level dose ablation and a 5-level defocus ablation of the stored exit waves
  (imaging only: :func:`clean_image` once and :func:`poisson_counts` five times; five
  :func:`clean_image` calls) ÷ one level;
* what a dataset pays per structure (:mod:`hpcbench.simulate.hrtem_data`, a spherical
  Au particle built by the study's own ``nanoparticle`` kind): exit waves and images for
  seed 001's five fidelity levels (two multislice runs, static and frozen phonons, and
  five imaging passes) ÷ one level (``all``: one run, one image); a 5-level dose
  ablation (four more Poisson draws) ÷ one level;
* on a CUDA device when one is present: the engine on the GPU ÷ the GPU FFT floor,
  per configuration.

``python benchmarks/bench_hrtem.py [--threads N]``: a 4 nm particle (Icosahedron of 8
shells, 1415 Au atoms) on a 64 × 64 × 20 Å slab at 0.1 Å (640 × 640 grid), 8
configurations. ``--quick``: a 2 nm particle on a 25.6 Å cell at 0.2 Å (128 × 128), 4
configurations, one thread: seconds after the imports.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import abtem
import dask
import numpy as np
import torch
from ase import Atoms
from ase.cluster import Icosahedron

from hpcbench.simulate._grid import grid_shape
from hpcbench.simulate.corrupt import CorruptionParams, add_noise
from hpcbench.simulate.hrtem import (
    ExitWaves,
    clean_image,
    frozen_phonon_configurations,
    plane_wave_fft_count,
    plane_wave_multislice,
    poisson_counts,
    projected_potential,
)
from hpcbench.simulate.hrtem_data import (
    draw_conditions,
    fidelity_image,
    simulate_structure_waves,
)
from hpcbench.simulate.stem import configure_threads
from hpcbench.structures import amorphous_slab, build_structure
from hpcbench.study import FIDELITIES, HRTEMSimulation, NanoparticleStructure

ENERGY = 300e3


def particle_on_carbon(shells: int, extent: float, thickness: float) -> Atoms:
    """An Au icosahedron at the centre of an amorphous carbon slab (seeded)."""
    particle = Icosahedron("Au", shells)
    particle.positions -= particle.positions.mean(axis=0)
    particle.rotate(37.0, (1, 2, 3), center=(0, 0, 0))
    substrate = amorphous_slab((extent, extent), thickness, rng=3)
    particle.positions += (extent / 2, extent / 2, thickness + 2.0 - particle.positions[:, 2].min())
    structure = substrate.copy()
    structure.extend(particle)
    structure.set_cell((extent, extent, particle.positions[:, 2].max() + 2.0))
    return structure


def best(function: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def fft_floor(shape: tuple[int, int, int], transforms: int, device: str, repeats: int) -> float:
    """Seconds for ``transforms`` batched complex64 2-D FFTs of ``shape``, alternating
    forward and inverse (out= buffers on the CPU, fresh tensors on CUDA), best of ``repeats``.
    """
    target = torch.device(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(shape, dtype=torch.complex64, generator=generator).to(target)
    b = torch.empty_like(a)

    def run() -> None:
        x, y = a, b
        for index in range(transforms):
            if target.type == "cpu":
                if index % 2 == 0:
                    torch.fft.fft2(x, out=y)
                else:
                    torch.fft.ifft2(x, out=y, norm="forward")
                x, y = y, x
            else:
                x = torch.fft.fft2(x) if index % 2 == 0 else torch.fft.ifft2(x, norm="forward")
        if target.type == "cuda":
            torch.cuda.synchronize()

    run()  # plans and warms the caches
    return best(run, repeats)


def row(label: str, seconds: float, reference: float, unit: str) -> None:
    """One line: a stage, its time [s] and its ratio to a reference."""
    print(f"{label:<52}{seconds:>10.4f} s {seconds / reference:>9.2f}x {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 2 nm particle at 0.2 Å")
    parser.add_argument("--threads", type=int, default=None, help="2 (--quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="3 (--quick: 2)")
    args = parser.parse_args()
    threads = args.threads or (1 if args.quick else 2)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.quick:
        shells, extent, thickness, sampling, configurations = 4, 25.6, 6.0, 0.2, 4
    else:
        shells, extent, thickness, sampling, configurations = 8, 64.0, 20.0, 0.1, 8
    slice_thickness = 2.0
    structure = particle_on_carbon(shells, extent, thickness)
    gpts = grid_shape((extent, extent), sampling)

    with configure_threads(threads):
        phonons = frozen_phonon_configurations(structure, count=configurations, sigmas=0.1, seed=0)
        projected_potential(phonons[0][:2], gpts=gpts, slice_thickness=slice_thickness)  # JIT
        start = time.perf_counter()
        potentials = [
            projected_potential(atoms, gpts=gpts, slice_thickness=slice_thickness)
            for atoms in phonons
        ]
        time_potential = time.perf_counter() - start
        stack = np.stack([potential.array for potential in potentials])
        thickness_array = potentials[0].slice_thickness
        slices = int(stack.shape[1])
        transforms = plane_wave_fft_count(slices)
        print(
            f"{len(structure)} atoms in {extent:g} × {extent:g} × "
            f"{structure.cell[2, 2]:.1f} Å, grid {gpts}, {slices} slices, "
            f"{configurations} configurations, {threads} thread(s), "
            f"{transforms} FFTs a configuration (abTEM {4 * slices})\n"
        )

        def engine() -> None:
            plane_wave_multislice(stack, thickness_array, (extent, extent), energy=ENERGY)

        engine()  # warm
        time_engine = best(engine, repeats)
        floor = fft_floor((configurations, *gpts), transforms, "cpu", repeats)

        abtem_potentials = []
        for atoms in phonons:
            with dask.config.set(scheduler="synchronous"):
                built = abtem.Potential(atoms, gpts=gpts, slice_thickness=slice_thickness).build(
                    lazy=False
                )
            abtem_potentials.append(built)

        def abtem_multislice() -> None:
            with dask.config.set(scheduler="synchronous"):
                for potential in abtem_potentials:
                    abtem.PlaneWave(energy=ENERGY).multislice(potential, lazy=False)

        abtem_multislice()  # warm (FFTW plans)
        time_abtem = best(abtem_multislice, repeats)

        print(f"{'stage':<52}{'time':>12} {'ratio':>10}")
        row("plane-wave FFT floor (same FFTs, batched)", floor, floor, "floor")
        row("engine multislice (all configurations)", time_engine, floor, "floor")
        row("abTEM PlaneWave.multislice (per configuration)", time_abtem, floor, "floor")
        row("abTEM PlaneWave.multislice", time_abtem, time_engine, "engine")
        row("abTEM potentials (all configurations)", time_potential, time_engine, "engine")

        waves = ExitWaves(
            plane_wave_multislice(
                stack, thickness_array, (extent, extent), energy=ENERGY
            ).transpose(0, 2, 1),
            (extent, extent),
            ENERGY,
        )
        optics = {"Cs": -1e4, "focal_spread": 20.0, "semiangle_cutoff": 25.0, "plasmon": 0.2}
        doses = (100.0, 200.0, 400.0, 800.0, 1600.0)
        defoci = (-100.0, -50.0, 0.0, 50.0, 100.0)

        def one_level() -> None:
            clean = clean_image(waves, defocus=0.0, **optics, pixel_size=0.2)
            poisson_counts(clean, dose=400.0, seed=0)

        def dose_ablation() -> None:
            clean = clean_image(waves, defocus=0.0, **optics, pixel_size=0.2)
            for seed, dose in enumerate(doses):
                poisson_counts(clean, dose=dose, seed=seed)

        def defocus_ablation() -> None:
            for seed, defocus in enumerate(defoci):
                clean = clean_image(waves, defocus=defocus, **optics, pixel_size=0.2)
                poisson_counts(clean, dose=400.0, seed=seed)

        one_level()
        time_one = best(one_level, repeats)
        samples = clean_image(waves, **optics).metadata["focal_samples"]
        print(f"\nimaging: {samples} defoci of focal spread × {configurations} configurations")
        row("one image (clean + Poisson)", time_one, time_engine, "engine multislice")
        row("5-level dose ablation", best(dose_ablation, repeats), time_one, "one level")
        row("5-level defocus ablation", best(defocus_ablation, repeats), time_one, "one level")

        diameter = 2.0 * shells + 4.0  # about the icosahedron's size [Å]
        particle = build_structure(
            NanoparticleStructure(
                kind="nanoparticle",
                diameter=diameter,
                cell=(extent, extent),
                support_thickness=thickness,
            ),
            rng=1,
        )
        levels = list(FIDELITIES)
        single = HRTEMSimulation(
            method="hrtem",
            sampling=sampling,
            frozen_phonons={"count": configurations},  # type: ignore[arg-type]
            fidelity="all",
        )
        every = single.model_copy(update={"fidelities": levels[:-1]})
        conditions = draw_conditions(single, np.random.default_rng(0))

        def dataset(spec: HRTEMSimulation, doses: int = 1) -> None:
            waves = simulate_structure_waves(particle, spec, pixel_size=0.2, seed=0)
            for level in spec.levels:
                clean = fidelity_image(waves, spec, conditions, level, pixel_size=0.2).array
                for seed in range(doses):
                    add_noise(
                        clean, CorruptionParams(dose=400.0 * 2**seed), pixel_size=0.2, seed=seed
                    )

        dataset(single)  # warm
        time_single = best(lambda: dataset(single), repeats)
        print(
            f"\na dataset's cost per structure ({len(particle)} atoms, Au {diameter:g} Å on "
            f"{thickness:g} Å of carbon, exit waves of the particle alone included):"
        )
        row("one level (all effects): waves + image", time_single, time_single, "one level")
        row(
            "5-level fidelity ablation",
            best(lambda: dataset(every), repeats),
            time_single,
            "one level",
        )
        row(
            "5-level dose ablation (stored waves)",
            best(lambda: dataset(single, 5), repeats),
            time_single,
            "one level",
        )

        if torch.cuda.is_available():
            plane_wave_multislice(
                stack, thickness_array, (extent, extent), energy=ENERGY, device="cuda"
            )

            def cuda_engine() -> None:
                plane_wave_multislice(
                    stack, thickness_array, (extent, extent), energy=ENERGY, device="cuda"
                )
                torch.cuda.synchronize()

            time_cuda = best(cuda_engine, repeats)
            cuda_floor = fft_floor((configurations, *gpts), transforms, "cuda", repeats)
            print(f"\nCUDA ({torch.cuda.get_device_name()}), per configuration:")
            row(
                "GPU FFT floor",
                cuda_floor / configurations,
                cuda_floor / configurations,
                "GPU floor",
            )
            row(
                "engine multislice on CUDA (uploads included)",
                time_cuda / configurations,
                cuda_floor / configurations,
                "GPU floor",
            )


if __name__ == "__main__":
    main()
