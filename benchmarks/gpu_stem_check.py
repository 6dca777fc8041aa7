"""The multislice engine on CUDA: time against the GPU FFT floor, image against the CPU's.

Two steps, so that the GPU machine needs only NumPy and torch (no abTEM, ASE, pydantic):

``python benchmarks/gpu_stem_check.py save DIR`` (where abTEM is installed) writes
``DIR/CASE.npz`` for two cases: the engine's prepared arrays
(:class:`~hpcbench.simulate._multislice.PreparedScan`) and the CPU image, checked equal
byte for byte to ``simulate_haadf(..., device="cpu")``'s.

* ``quickstart``: WSe2 4 × 3 (5 Å vacuum), 0.06 Å, 50–200 mrad, corrected probe: a
  224 × 288 grid, 14 slices, 1312 probes (the quickstart study's multislice images);
* ``small``: WSe2 1 × 1 (2 Å vacuum), 0.1 Å, 50–130 mrad, seed-003 probe (40 Å defocus,
  Cs 40 µm): a 35 × 60 grid, 8 slices, 112 probes.

``python benchmarks/gpu_stem_check.py check DIR [--out DIR]`` (on the GPU) prints, per
case, the FFT floor (one batched complex64 2-D FFT per probe, batched like the engine,
× 2 × slices × probes, ``torch.cuda.synchronize`` around the timings), the engine's
scan time (warm, best of 3, uploads and the result's download included), their ratio,
and the CUDA image's error against the CPU one; and writes them as JSON.
``--device cpu --cases small`` is a dry run without a GPU: the same steps, with the
CUDA loop run on CPU tensors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = ("quickstart", "small")


def load_engine() -> ModuleType:
    """``hpcbench.simulate._multislice`` loaded from its file.

    ``import hpcbench.simulate`` runs the package's ``__init__``, which imports ASE and
    pydantic; the engine itself needs only NumPy, torch and ``hpcbench.optics``.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    name = "hpcbench_multislice_engine"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "hpcbench" / "simulate" / "_multislice.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cuda_fft_time(
    gpts: tuple[int, int], batch: int, *, device: str = "cuda", repeats: int = 20
) -> float:
    """Seconds per probe of one batched complex64 2-D FFT of ``(batch, nx, ny)``.

    Out of place, as the engine transforms on a GPU; the best of five blocks of
    ``repeats`` transforms after three warm-ups (cuFFT's plan), synchronised around
    each block.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    array = torch.randn((batch, *gpts), dtype=torch.complex64, device=device, generator=generator)
    for _ in range(3):
        torch.fft.fft2(array)
    best = np.inf
    for _ in range(5):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.fft.fft2(array)
        _synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return float(best) / batch


def step_times(
    gpts: tuple[int, int], batch: int, *, device: str = "cuda", repeats: int = 20
) -> dict[str, float]:
    """Seconds per probe of the loop's other steps, for the ratio's breakdown.

    ``fft_out``: ``torch.fft.fft2(x, out=y)`` (the CPU loop's form); ``multiply``:
    ``x.mul_(t)`` with one ``(nx, ny)`` slice broadcast over the batch.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    array = torch.randn((batch, *gpts), dtype=torch.complex64, device=device, generator=generator)
    other = torch.empty_like(array)
    factor = array[0].clone()
    steps = {
        "fft_out": lambda: torch.fft.fft2(array, out=other),
        "multiply": lambda: array.mul_(factor),
    }
    result = {}
    for name, step in steps.items():
        for _ in range(3):
            step()
        best = np.inf
        for _ in range(5):
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(repeats):
                step()
            _synchronize(device)
            best = min(best, (time.perf_counter() - start) / repeats)
        result[name] = float(best) / batch
    return result


def time_cuda_scan(
    engine: ModuleType, prepared: Any, batch: int, *, device: str = "cuda", repeats: int = 3
) -> tuple[float, float, np.ndarray]:
    """The first call's seconds, the best of ``repeats`` warm calls' seconds, the image.

    On ``device="cpu"`` it runs the CUDA loop on CPU tensors (a dry run).
    """
    times = []
    image = np.empty(0)
    for _ in range(repeats + 1):
        _synchronize(device)
        start = time.perf_counter()
        if device == "cpu":
            image = engine._scan_gpu(prepared, batch, torch.device("cpu"))
        else:
            image = engine.scan(prepared, batch=batch, device=device)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times[0], min(times[1:]), image


def save(directory: Path) -> None:
    """Write the two cases' prepared arrays and CPU images (needs abTEM)."""
    import abtem
    from ase.build import make_supercell, mx2

    from hpcbench.simulate._grid import grid_shape
    from hpcbench.simulate._multislice import prepare_scan, scan
    from hpcbench.simulate.stem import configure_threads, simulate_haadf
    from hpcbench.study import MultisliceSimulation

    settings: dict[str, tuple[tuple[int, int], float, dict[str, Any]]] = {
        "quickstart": (
            (4, 3),
            5.0,
            {"sampling": 0.06, "detector": {"inner": 50, "outer": 200}, "defocus": 0, "Cs": 0},
        ),
        "small": (
            (1, 1),
            2.0,
            {"sampling": 0.1, "detector": {"inner": 50, "outer": 130}, "defocus": 40, "Cs": 4e5},
        ),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for case, (repeat, vacuum, options) in settings.items():
        primitive = mx2("WSe2", kind="2H", a=3.28, thickness=3.34, vacuum=vacuum)
        atoms = make_supercell(primitive, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
        atoms.wrap()
        atoms = atoms.repeat((*repeat, 1))
        spec = MultisliceSimulation(method="multislice", **options)
        extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
        gpts = grid_shape(extent, spec.sampling)
        # simulate_haadf's FFTW planning, so the probe has the same bytes.
        with (
            configure_threads(2),
            abtem.config.set({"fftw.planning_effort": "FFTW_ESTIMATE"}),
        ):
            image = simulate_haadf(atoms, spec, seed=0)
            potential = abtem.Potential(
                atoms, gpts=gpts, slice_thickness=spec.slice_thickness
            ).build(lazy=False)
            probe = abtem.Probe(
                semiangle_cutoff=spec.semiangle_cutoff,
                energy=spec.energy,
                aberrations={"C10": -spec.defocus, "C30": spec.Cs},
                gpts=gpts,
                extent=extent,
            ).build((0.0, 0.0), lazy=False)
            tick = time.perf_counter()
            prepared = prepare_scan(
                np.asarray(potential.array, dtype=np.float32),
                np.asarray(potential.slice_thickness, dtype=np.float64),
                extent,
                np.asarray(probe.array, dtype=np.complex64),
                energy=spec.energy,
                inner=spec.detector.inner,
                outer=spec.detector.outer,
                scan_gpts=image.metadata["scan_gpts"],
            )
            tock = time.perf_counter()
            cpu = scan(prepared)
            seconds = time.perf_counter() - tock
        if not np.array_equal(cpu.T, image.array):
            raise RuntimeError(f"{case}: the prepared scan is not simulate_haadf's image")
        slices = prepared.transmission.shape[0]
        print(
            f"{case}: grid {gpts}, {slices} slices, scan {prepared.scan_gpts}; prepare "
            f"{tock - tick:.2f} s, CPU scan {seconds:.2f} s (2 threads), image mean "
            f"{cpu.mean():.6g}"
        )
        np.savez(directory / f"{case}.npz", cpu_image=cpu, **prepared._asdict())


def check(
    directory: Path, out: Path | None, *, device: str, cases: list[str], repeats: int
) -> None:
    """Time the CUDA scan against the GPU FFT floor; compare its images with the CPU's."""
    engine = load_engine()
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else "cpu (dry run)"
    print(f"{name}, torch {torch.__version__}")
    report: dict[str, Any] = {"device": name, "torch": torch.__version__}
    for case in cases:
        with np.load(directory / f"{case}.npz") as data:
            arrays = {key: data[key] for key in data.files}
        cpu = arrays.pop("cpu_image")
        prepared = engine.PreparedScan(**arrays)
        slices, nx, ny = prepared.transmission.shape
        sx, sy = prepared.scan_gpts
        probes = sx * sy
        free = torch.cuda.mem_get_info()[0] if cuda else 2**34
        auto = engine.gpu_batch((nx, ny), probes, free_bytes=free)
        results = []
        for batch in sorted({auto, min(256, probes), min(1024, probes)}):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            first, warm, image = time_cuda_scan(
                engine, prepared, batch, device=device, repeats=repeats
            )
            peak = torch.cuda.max_memory_allocated() if cuda else 0
            fft = cuda_fft_time((nx, ny), batch, device=device)
            steps = step_times((nx, ny), batch, device=device)
            floor = fft * 2 * slices * probes
            error = np.abs(image - cpu)
            entry = {
                "batch": batch,
                "auto": batch == auto,
                "fft_per_probe_s": fft,
                "floor_s": floor,
                "scan_first_s": first,
                "scan_s": warm,
                "ratio": warm / floor,
                "max_abs_error_over_mean": float(error.max() / cpu.mean()),
                "max_relative_error": float(np.max(error / np.abs(cpu))),
                "peak_memory_bytes": peak,
                "fft_out_per_probe_s": steps["fft_out"],
                "multiply_per_probe_s": steps["multiply"],
            }
            results.append(entry)
            print(
                f"{case}: grid ({nx}, {ny}), {slices} slices, {probes} probes, batch {batch}"
                f"{' (auto)' if batch == auto else ''}: one FFT {fft * 1e6:.3f} µs/probe, "
                f"floor {floor * 1e3:.2f} ms, scan {warm * 1e3:.2f} ms (first "
                f"{first * 1e3:.0f} ms), ratio {warm / floor:.2f}; CUDA vs CPU: max |Δ| / "
                f"mean {entry['max_abs_error_over_mean']:.2e}, max relative "
                f"{entry['max_relative_error']:.2e}; peak {peak / 2**20:.0f} MiB; per probe: "
                f"fft2(out=) {steps['fft_out'] * 1e6:.3f} µs, mul_ {steps['multiply'] * 1e6:.3f} µs"
            )
        report[case] = {"grid": [nx, ny], "slices": slices, "probes": probes, "runs": results}
        if case == "small":
            # The CPU loop on this machine's CPU: MKL may round differently elsewhere.
            here = engine.scan(prepared)
            report[case]["cpu_here_equal"] = bool(np.array_equal(here, cpu))
            print(
                f"{case}: CPU engine here equals the saved CPU image: {np.array_equal(here, cpu)}"
            )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_stem_check.json").write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("save", "check"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="check: write JSON here")
    parser.add_argument("--device", default="cuda", help="check: cuda, or cpu for a dry run")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="check: warm scans timed")
    args = parser.parse_args()
    if args.step == "save":
        save(args.directory)
    else:
        check(args.directory, args.out, device=args.device, cases=args.cases, repeats=args.repeats)


if __name__ == "__main__":
    main()
