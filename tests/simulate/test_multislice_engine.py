"""The batched multislice engine against abTEM's own multislice."""

from __future__ import annotations

from typing import Any

import abtem
import numpy as np
import pytest
from abtem.antialias import antialias_aperture as abtem_antialias_aperture
from abtem.measurements import _annular_detector_mask
from numpy.typing import NDArray

from hpcbench.optics import wavelength
from hpcbench.simulate._multislice import _annular_mask, antialias_aperture, multislice_haadf
from hpcbench.simulate.stem import configure_threads, simulate_haadf
from hpcbench.study import MultisliceSimulation
from tests.simulate.test_stem import CHEAP, wse2

PHONONS: dict[str, Any] = {"count": 2, "sigmas": {"W": 0.08, "Se": 0.1}}


def compare(spec: MultisliceSimulation, seed: int = 0) -> tuple[float, float]:
    """Pearson r and max relative difference, engine against abTEM, on the 1×1 cell."""
    atoms = wse2()
    with configure_threads(1):
        ours = simulate_haadf(atoms, spec, seed=seed)
        theirs = simulate_haadf(atoms, spec, seed=seed, engine="abtem")
    assert ours.metadata["engine"] == "hpcbench"
    assert theirs.metadata["engine"] == "abtem"
    assert ours.array.shape == theirs.array.shape == (14, 8)
    r = float(np.corrcoef(ours.array.ravel(), theirs.array.ravel())[0, 1])
    return r, float(np.max(np.abs(ours.array / theirs.array - 1)))


@pytest.mark.parametrize(
    "optics",
    [
        {"defocus": 0.0, "Cs": 0.0},  # the quickstart's corrected probe
        {"defocus": 40.0, "Cs": 4e5},  # seed 003: 40 Å underfocus, Cs 40 µm
        {"defocus": 40.0, "Cs": 4e5, "frozen_phonons": PHONONS},
    ],
    ids=["corrected", "seed003", "phonons2"],
)
def test_engine_matches_abtem(optics: dict[str, Any]) -> None:
    spec = MultisliceSimulation(method="multislice", **CHEAP, **optics)
    r, relative = compare(spec, seed=7)
    assert r >= 0.9999
    # Measured: r = 1 - 3e-13, max relative difference 2e-6 to 6e-6 (float32 rounding).
    assert relative <= 1e-3


def test_engine_is_deterministic_bytes_and_threads() -> None:
    atoms = wse2()
    spec = MultisliceSimulation(method="multislice", frozen_phonons=PHONONS, **CHEAP)
    images: list[NDArray[np.float64]] = []
    for threads in (1, 1, 2):
        with configure_threads(threads):
            images.append(simulate_haadf(atoms, spec, seed=3).array)
    assert images[0].tobytes() == images[1].tobytes() == images[2].tobytes()


def test_batch_size_does_not_change_the_image() -> None:
    atoms = wse2()
    spec = MultisliceSimulation(method="multislice", **CHEAP)
    gpts = (35, 60)
    extent = (float(atoms.cell[0, 0]), float(atoms.cell[1, 1]))
    with configure_threads(1):
        potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=1.0).build(lazy=False)
        probe = abtem.Probe(
            semiangle_cutoff=25.0,
            energy=80e3,
            aberrations={"C10": -40.0, "C30": 4e5},
            gpts=gpts,
            extent=extent,
        )
        psi = np.asarray(probe.build((0.0, 0.0), lazy=False).array)
    images = [
        multislice_haadf(
            np.asarray(potential.array),
            np.asarray(potential.slice_thickness),
            extent,
            psi,
            energy=spec.energy,
            inner=50.0,
            outer=130.0,
            scan_gpts=(7, 4),
            batch=batch,
        )
        for batch in (1, 5, 64)
    ]
    assert images[0].shape == (7, 4)
    assert 1e-4 < images[0].mean() < 0.2
    np.testing.assert_allclose(images[1], images[0], rtol=1e-6)
    np.testing.assert_allclose(images[2], images[0], rtol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        multislice_haadf(
            np.asarray(potential.array),
            np.asarray(potential.slice_thickness)[:-1],
            extent,
            psi,
            energy=80e3,
            inner=50.0,
            outer=130.0,
            scan_gpts=(7, 4),
        )


def test_aperture_and_detector_pixels_are_abtems() -> None:
    gpts, extent = (224, 288), (13.12, 17.04)
    sampling = (extent[0] / gpts[0], extent[1] / gpts[1])
    ours = antialias_aperture(gpts, extent)
    theirs = abtem_antialias_aperture(gpts, sampling, np)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # abTEM's is float32
    # Taper: 1 well inside, 0 beyond 2/3 of Nyquist (1 / (3 dx) = 5.69 1/Å here).
    assert ours[0, 0] == 1.0 and ours[74, 0] == 0.0 and 0 < ours.sum() < ours.size
    mrad = wavelength(80e3) * 1e3
    angular = (mrad / extent[0], mrad / extent[1])
    mask = _annular_mask(gpts, extent, 80e3, 50.0, 200.0)
    np.testing.assert_array_equal(mask, _annular_detector_mask(gpts, angular, 50.0, 200.0))
    assert not mask[0, 0] and 0.05 < mask.mean() < 0.5
