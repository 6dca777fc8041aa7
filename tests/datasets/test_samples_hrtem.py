"""HRTEM shards: exit waves once per structure, fidelity columns, phase labels, dose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hpcbench.datasets.samples import build_shard
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.plan import GridError, make_plan
from hpcbench.seeding import Stream, stream_rng
from hpcbench.simulate.corrupt import CorruptionParams, add_noise
from hpcbench.simulate.hrtem_data import (
    draw_conditions,
    fidelity_image,
    simulate_structure_waves,
    wrap_crop,
)
from hpcbench.structures import build_structure
from hpcbench.study import Study, StudyError, validate_study_data
from hpcbench.train.data import ImageSet


def _dataset(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "structure": {
            "kind": "nanoparticle",
            "material": "Au",
            "diameter": {"min": 12.0, "max": 13.0},
            "cell": [16.0, 16.0],
            "support_thickness": 5.0,
        },
        "simulation": {
            "method": "hrtem",
            "frozen_phonons": {"count": 2},
            "fidelities": ["baseline", "plasmons"],
        },
        "image": {"shape": [48, 56], "pixel_size": 0.25},
        "corruption": {"dose": {"min": 100.0, "max": 1000.0, "log": True}},
        "labels": {"classes": ["particle"]},
        "size": 4,
        "images_per_structure": 2,
        "shard_size": 4,
    }
    for key, value in changes.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    if spec["structure"] is None:  # another kind of structure
        spec["structure"] = {"kind": "supported_atoms", "cell": [16.0, 16.0]}
    return spec


def _study(**changes: Any) -> Study:
    return validate_study_data({"name": "h", "seed": 3, "datasets": {"np": _dataset(**changes)}})


@pytest.fixture(scope="module")
def shard() -> tuple[Study, pa.Table]:
    study = _study()
    return study, build_shard(study, "np", 0)


def test_rows_hold_every_fidelity_of_one_simulation(shard: tuple[Study, pa.Table]) -> None:
    study, table = shard
    assert table.num_rows == 4
    assert table.column("structure_index").to_pylist() == [0, 0, 1, 1]
    for column in ("image", "clean", "clean_baseline", "clean_plasmons", "mask"):
        assert images_to_numpy(table, column).shape == (4, 48, 56), column
    assert table.column("fidelity").to_pylist() == ["all"] * 4
    assert table.column("material").to_pylist() == ["Au"] * 4
    assert table.column("coordinates").to_pylist() == [[]] * 4  # a region, not sites

    # Rebuild row 1 from the public pieces: the structure, its waves, the image's draws.
    spec = study.datasets["np"]
    simulation = spec.simulation
    atoms = build_structure(spec.structure, rng=stream_rng(3, "np", 0, Stream.STRUCTURE))
    seed = table.column("simulation_seed")[1].as_py()
    waves = simulate_structure_waves(atoms, simulation, pixel_size=0.25, seed=seed)
    conditions = draw_conditions(simulation, stream_rng(3, "np", 1, Stream.IMAGING))
    assert table.column("hrtem_defocus")[1].as_py() == conditions.defocus
    offset = (table.column("offset_y")[1].as_py(), table.column("offset_x")[1].as_py())
    for column, level in (("clean", "all"), ("clean_baseline", "baseline")):
        expected = wrap_crop(
            fidelity_image(waves, simulation, conditions, level, pixel_size=0.25).array,
            offset,
            (48, 56),
        )
        np.testing.assert_allclose(images_to_numpy(table, column)[1], expected, atol=1e-6)
    mask = images_to_numpy(table, "mask")[1]
    phase = wrap_crop(waves.phase.array, offset, (48, 56))
    np.testing.assert_array_equal(mask, (phase > simulation.mask_threshold).astype(np.uint8))
    # Poisson dose on the clean image, as a trial re-noise would make it
    dose = table.column("corruption_dose")[1].as_py()
    assert 100 <= dose <= 1000
    again = add_noise(
        images_to_numpy(table, "clean")[1],
        CorruptionParams(dose=dose),
        pixel_size=0.25,
        seed=table.column("corruption_seed")[1].as_py(),
    )
    np.testing.assert_array_equal(images_to_numpy(table, "image")[1], again)


def test_masks_follow_the_particle_and_shards_repeat(shard: tuple[Study, pa.Table]) -> None:
    study, table = shard
    masks = images_to_numpy(table, "mask")
    clean = images_to_numpy(table, "clean_baseline").astype(np.float64)
    assert 0.02 < masks.mean() < 0.6
    # the particle scatters: its pixels' contrast (std) exceeds the support's
    for image, mask in zip(clean, masks, strict=True):
        if 0.05 < mask.mean() < 0.95:
            assert image[mask == 1].std() > image[mask == 0].std()
    assert build_shard(study, "np", 0).equals(table)


def test_image_set_trains_on_a_stored_fidelity(
    shard: tuple[Study, pa.Table], tmp_path: Path
) -> None:
    _, table = shard
    pq.write_table(table, tmp_path / "shard-00000000.parquet")
    kwargs: dict[str, Any] = {"dataset_classes": ["particle"], "classes": ["particle"]}
    stored = ImageSet(tmp_path, [0, 1], **kwargs)
    np.testing.assert_array_equal(stored.frame(1), images_to_numpy(table, "image")[1])
    base = ImageSet(tmp_path, [0, 1], fidelity="baseline", **kwargs)
    frame = base.frame(1)  # the baseline image with the row's own dose and noise seed
    expected = add_noise(
        images_to_numpy(table, "clean_baseline")[1],
        CorruptionParams(dose=table.column("corruption_dose")[1].as_py()),
        pixel_size=0.25,
        seed=table.column("corruption_seed")[1].as_py(),
    )
    np.testing.assert_array_equal(frame, expected)
    own = ImageSet(tmp_path, [0, 1], fidelity="all", **kwargs)
    np.testing.assert_array_equal(own.frame(1), images_to_numpy(table, "image")[1])
    with pytest.raises(ValueError, match="no images of fidelity 'thermal'"):
        ImageSet(tmp_path, [0], fidelity="thermal", **kwargs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"structure": None}, "hrtem and structure kind nanoparticle"),
        ({"image": {"rotation": 30.0}}, "image.rotation must be 0 for hrtem"),
        ({"image": {"shape": [80, 48]}}, "larger than the 16 × 16 Å cell"),
        ({"corruption": {"jitter": 0.1}}, "corruption jitter model a STEM probe"),
        ({"labels": {"classes": ["heavy_atom"]}}, "do not exist in a nanoparticle"),
        ({"structure": {"diameter": 15.0}}, "does not fit the 16 × 16 Å cell"),
        ({"simulation": {"fidelities": ["thermal", "thermal"]}}, "fidelities must not repeat"),
    ],
)
def test_bad_hrtem_specs_fail_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyError, match=message):
        _study(**changes)


def test_a_fidelity_axis_needs_the_level_stored() -> None:
    data = {
        "name": "h",
        "seed": 3,
        "datasets": {"np": _dataset(size=8)},
        "train": {
            "models": {"u": {"architecture": "unet", "width": 4, "depth": 1}},
            "axes": {"fidelity": ["baseline", "thermal"]},
            "repeats": 1,
            "split": {"validation": 0.25, "test": 0.25},
        },
    }
    with pytest.raises(GridError, match="fidelity thermal is not stored in dataset np"):
        make_plan(validate_study_data(data)).trials  # noqa: B018
    data["train"]["axes"] = {"fidelity": ["baseline", None]}  # type: ignore[index]
    trials = make_plan(validate_study_data(data)).trials
    assert [t.trial.fidelity for t in trials] == ["baseline", None]
    assert "fidelity" not in trials[1].config  # unset: the key of a trial without the axis
