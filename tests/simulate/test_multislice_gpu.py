"""The multislice engine's CUDA path: batch choice, CPU bytes kept, CUDA against CPU."""

from __future__ import annotations

import math

import abtem
import numpy as np
import pytest
import torch

from hpcbench.simulate._multislice import (
    DEFAULT_BATCH,
    GPU_MAX_BATCH,
    PreparedScan,
    _scan_gpu,
    gpu_batch,
    multislice_haadf,
    prepare_scan,
    scan,
)
from hpcbench.simulate.stem import configure_threads, simulate_haadf
from hpcbench.study import MultisliceSimulation
from tests.simulate.test_stem import CHEAP, wse2

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# CUDA against CPU, max |difference| over the image mean (cuFFT and MKL round float32
# differently; float64 detector sums on both). Measured on an H200: 1.9e-6 on the 1 × 1
# cell at 0.1 Å (8 slices), 2.7e-5 on the quickstart's 224 × 288 grid (14 slices).
CUDA_TOLERANCE = 1e-4

SEED003 = {"defocus": 40.0, "Cs": 4e5}


@pytest.fixture(scope="module")
def case() -> tuple[dict[str, object], PreparedScan]:
    """The 2 × 1 WSe2 cell at 0.1 Å, seed-003 probe: engine arguments and prepared arrays."""
    atoms = wse2(2, 1)
    gpts = (70, 60)
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    with configure_threads(1):
        potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=1.0).build(lazy=False)
        probe = abtem.Probe(
            semiangle_cutoff=25.0,
            energy=80e3,
            aberrations={"C10": -SEED003["defocus"], "C30": SEED003["Cs"]},
            gpts=gpts,
            extent=extent,
        ).build((0.0, 0.0), lazy=False)
    arguments: dict[str, object] = {
        "potential": np.asarray(potential.array, dtype=np.float32),
        "slice_thickness": np.asarray(potential.slice_thickness, dtype=np.float64),
        "extent": extent,
        "probe": np.asarray(probe.array, dtype=np.complex64),
        "energy": 80e3,
        "inner": 50.0,
        "outer": 130.0,
        "scan_gpts": (14, 7),
    }
    return arguments, prepare_scan(**arguments)  # type: ignore[arg-type]


def test_gpu_batch_fills_the_gpu_within_its_memory() -> None:
    quickstart, probes = (224, 288), 1312
    # 2**26 / (224 · 288) = 1040 → 1024, then two equal batches of 656 for 1312 probes.
    assert gpu_batch(quickstart, probes, free_bytes=140 * 2**30) == 656
    assert gpu_batch(quickstart, 1024, free_bytes=140 * 2**30) == GPU_MAX_BATCH == 1024
    assert gpu_batch(quickstart, 100, free_bytes=140 * 2**30) == 100
    # 1 GiB free: half of it at 4 complex64 grids (2 064 384 bytes) a probe holds 260;
    # ceil(1312 / 260) = 6 batches of ceil(1312 / 6) = 219.
    assert gpu_batch(quickstart, probes, free_bytes=2**30) == 219
    assert gpu_batch(quickstart, probes, free_bytes=0) == 1
    # A 1024 × 1024 grid: 2**26 values are 64 grids.
    assert gpu_batch((1024, 1024), 4096, free_bytes=140 * 2**30) == 64
    for free in (2**28, 2**31, 2**36):
        for count in (1, 7, 1312, 5000):
            batch = gpu_batch(quickstart, count, free_bytes=free)
            assert 1 <= batch <= min(count, GPU_MAX_BATCH)
            full = gpu_batch(quickstart, 10**6, free_bytes=free)
            assert math.ceil(count / batch) == math.ceil(count / min(full, count))
    with pytest.raises(ValueError, match="probes"):
        gpu_batch(quickstart, 0, free_bytes=2**30)


def test_prepared_scan_is_the_engine_byte_for_byte(
    case: tuple[dict[str, object], PreparedScan],
) -> None:
    arguments, prepared = case
    assert DEFAULT_BATCH == 8
    assert prepared.scan_gpts == (14, 7)
    assert prepared.transmission.shape == (8, 70, 60) and prepared.propagators.shape[0] == 1
    with configure_threads(1):
        reference = multislice_haadf(**arguments)  # type: ignore[arg-type]
        results = [
            multislice_haadf(**arguments, batch=DEFAULT_BATCH, device="cpu"),  # type: ignore[arg-type]
            scan(prepared),
            scan(prepared, batch=5),
            scan(prepared, batch=98),  # one batch of every probe
            scan(prepared, batch=500),
        ]
    assert reference.shape == (14, 7) and 1e-4 < reference.mean() < 0.2
    for result in results:
        assert result.tobytes() == reference.tobytes()


def test_gpu_loop_on_cpu_tensors_matches_the_cpu_loop(
    case: tuple[dict[str, object], PreparedScan],
) -> None:
    _, prepared = case
    with configure_threads(1):
        reference = scan(prepared)
        results = [_scan_gpu(prepared, batch, torch.device("cpu")) for batch in (1, 5, 98)]
    for result in results:
        # Same FFTs; only the detector's float64 summation order differs (measured 1.4e-15).
        np.testing.assert_allclose(result, reference, rtol=1e-13, atol=0)


def test_simulate_haadf_records_the_device() -> None:
    spec = MultisliceSimulation(method="multislice", **CHEAP)
    with configure_threads(1):
        image = simulate_haadf(wse2(), spec, seed=0)
    assert image.metadata["engine"] == "hpcbench" and image.metadata["device"] == "cpu"
    with pytest.raises(ValueError, match="device"):
        simulate_haadf(wse2(), spec, seed=0, device="tpu")
    with pytest.raises(ValueError, match="device"):
        scan(PreparedScan(*([np.zeros((1, 1, 1))] * 8)), device="meta")  # type: ignore[arg-type]


@pytest.mark.gpu
@CUDA
def test_cuda_scan_matches_cpu(case: tuple[dict[str, object], PreparedScan]) -> None:
    arguments, prepared = case
    reference = scan(prepared)
    for batch in (None, 5, 98):
        result = scan(prepared, batch=batch, device="cuda")
        assert result.shape == reference.shape and result.dtype == np.float64
        assert np.abs(result - reference).max() <= CUDA_TOLERANCE * reference.mean()
    through = multislice_haadf(**arguments, device="cuda")  # type: ignore[arg-type]
    assert np.abs(through - reference).max() <= CUDA_TOLERANCE * reference.mean()


@pytest.mark.gpu
@CUDA
def test_simulate_haadf_on_cuda_uses_the_engine() -> None:
    spec = MultisliceSimulation(method="multislice", **CHEAP, **SEED003)
    with configure_threads(1):
        cpu = simulate_haadf(wse2(), spec, seed=0)
        cuda = simulate_haadf(wse2(), spec, seed=0, device="cuda")
        alias = simulate_haadf(wse2(), spec, seed=0, device="gpu")
    assert cuda.metadata["engine"] == "hpcbench" and cuda.metadata["device"] == "cuda"
    assert alias.metadata["device"] == "cuda"
    assert cuda.array.shape == cpu.array.shape == (14, 8)
    assert np.abs(cuda.array - cpu.array).max() <= CUDA_TOLERANCE * cpu.array.mean()
