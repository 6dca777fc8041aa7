from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from hpcbench.datasets.samples import build_shard, shard_count, shard_range
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.simulate.corrupt import CorruptionParams, add_noise
from hpcbench.study import Study, validate_study_data


def _study(corruption: dict[str, Any] | None, **dataset: Any) -> Study:
    spec: dict[str, Any] = {
        "structure": {
            "kind": "mx2",
            "formula": "WSe2",
            "supercell": [4, 3],
            "defects": {"anion_vacancy": {"count": 4}, "dopant": {"count": 1}},
        },
        "simulation": {"method": "incoherent", "defocus": 0, "Cs": 0, "sampling": 0.1},
        "image": {"shape": [48, 40], "pixel_size": 0.15},
        "labels": {"classes": ["anion_vacancy", "dopant"], "radius": 0.5},
        "size": 10,
        "images_per_structure": 3,
        "shard_size": 6,
        **dataset,
    }
    if corruption is not None:
        spec["corruption"] = corruption
    return validate_study_data({"name": "t", "seed": 7, "datasets": {"d": spec}})


NOISY = {
    "dose": {"min": 1.0e3, "max": 1.0e6, "log": True},
    "blur": 0.1,
    "jitter": 0.05,
    "drift": 0.3,
    "read_noise": 0.01,
}


@pytest.fixture(scope="module")
def noisy() -> tuple[Study, pa.Table]:
    study = _study(NOISY)
    return study, build_shard(study, "d", 0)


def test_shards_cover_every_sample_once() -> None:
    spec = _study(None).datasets["d"]
    assert shard_count(spec) == 2
    assert list(shard_range(spec, 0)) == [0, 1, 2, 3, 4, 5]
    assert list(shard_range(spec, 1)) == [6, 7, 8, 9]
    with pytest.raises(IndexError):
        shard_range(spec, 2)


def test_rows_and_structure_grouping(noisy: tuple[Study, pa.Table]) -> None:
    _, table = noisy
    assert table.column("sample_id").to_pylist() == [0, 1, 2, 3, 4, 5]
    # Three crops per structure, each structure simulated once.
    assert table.column("structure_index").to_pylist() == [0, 0, 0, 1, 1, 1]
    assert len(set(table.column("structure_seed").to_pylist())) == 2
    assert images_to_numpy(table, "image").shape == (6, 48, 40)
    assert images_to_numpy(table, "mask").dtype == np.uint8
    # Each crop of one structure is a different random crop.
    offsets = list(zip(table["offset_x"].to_pylist(), table["offset_y"].to_pylist(), strict=True))
    assert len(set(offsets)) == 6


def test_shard_is_deterministic_and_independent_of_other_shards(
    noisy: tuple[Study, pa.Table],
) -> None:
    study, table = noisy
    assert build_shard(study, "d", 0).equals(table)
    # Building shard 1 alone gives the same rows as any other way of getting them: the
    # last sample of shard 1 belongs to a structure (3) that shard 0 never touches.
    last = build_shard(study, "d", 1)
    assert last.column("sample_id").to_pylist() == [6, 7, 8, 9]
    assert last.column("structure_index").to_pylist() == [2, 2, 2, 3]


def test_shard_bytes_do_not_depend_on_blas_threads(noisy: tuple[Study, pa.Table]) -> None:
    from threadpoolctl import threadpool_limits

    study, table = noisy
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            assert build_shard(study, "d", 0).equals(table)


def test_image_is_add_noise_of_clean_bit_for_bit(noisy: tuple[Study, pa.Table]) -> None:
    """The stored clean frame plus the parameter columns reproduce every image exactly."""
    _, table = noisy
    images = images_to_numpy(table, "image")
    cleans = images_to_numpy(table, "clean")
    rows = table.drop_columns(["image", "clean", "mask", "coordinates", "atoms"]).to_pylist()
    for image, clean, row in zip(images, cleans, rows, strict=True):
        params = CorruptionParams(
            **{
                key.removeprefix("corruption_"): value
                for key, value in row.items()
                if key.startswith("corruption_") and key != "corruption_seed"
            }
        )
        again = add_noise(clean, params, pixel_size=row["pixel_size"], seed=row["corruption_seed"])
        np.testing.assert_array_equal(again, image)


def test_relative_noise_falls_with_dose(noisy: tuple[Study, pa.Table]) -> None:
    study = _study({"dose": [1.0e3, 1.0e6]}, size=24, shard_size=24)
    table = build_shard(study, "d", 0)
    noise = images_to_numpy(table, "image") - images_to_numpy(table, "clean")
    relative = noise.std(axis=(1, 2)) / images_to_numpy(table, "clean").mean(axis=(1, 2))
    dose = np.array(table["corruption_dose"].to_pylist())
    low, high = relative[dose == 1e3].mean(), relative[dose == 1e6].mean()
    # Poisson: relative noise ∝ 1/sqrt(dose), a factor sqrt(1000) ≈ 31.6 between the two.
    assert low / high == pytest.approx(np.sqrt(1000), rel=0.15)


def test_labels_sit_on_the_mask(noisy: tuple[Study, pa.Table]) -> None:
    _, table = noisy
    masks = images_to_numpy(table, "mask")
    total = 0
    for mask, sites in zip(masks, table["coordinates"].to_pylist(), strict=True):
        for site in sites:
            row, col = round(site["y"]), round(site["x"])
            assert 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]
            assert mask[row, col] == site["label"]
            total += 1
        # No labelled pixel without a labelled site.
        assert (mask > 0).any() == bool(sites)
    assert total > 0


def test_defect_counts_and_atom_columns(noisy: tuple[Study, pa.Table]) -> None:
    _, table = noisy
    assert set(table["n_anion_vacancy"].to_pylist()) == {4}
    assert set(table["n_dopant"].to_pylist()) == {1}
    assert set(table["formula"].to_pylist()) == {
        "MoW23Se44"
    }  # 4x3 cells x 2 WSe2, 1 Mo dopant, 4 Se vacancies
    atoms = table["atoms"].to_pylist()[0]
    z = {site["z_number"] for site in atoms}
    # W columns (74), Se2 columns (68), and single-Se columns at vacancies (34) can appear.
    assert z <= {74, 68, 42, 34} and {74, 68} <= z


def test_dataset_without_corruption_stores_the_clean_image_as_image() -> None:
    table = build_shard(_study(None), "d", 0)
    assert "clean" not in table.column_names
    assert not any(name.startswith("corruption_") for name in table.column_names)
    image = images_to_numpy(table, "image")
    assert image.min() >= 0 and image.std() > 0


def test_supported_atoms_shard_labels_every_heavy_atom_and_nothing_else() -> None:
    """Pt on amorphous carbon: one coordinate per Pt atom in the frame, none of the support."""
    structure = {
        "kind": "supported_atoms",
        "element": "Pt",
        "atoms": 6,
        "cell": [24.0, 24.0],
        "thickness": 12.0,
        "separation": 4.0,
    }
    study = _study(
        None,
        structure=structure,
        simulation={
            "method": "incoherent",
            "energy": 300e3,
            "defocus": 0,
            "Cs": 0,
            "sampling": 0.1,
        },
        image={"shape": [64, 64], "pixel_size": 0.3, "rotation": 0.0},
        labels={"classes": ["heavy_atom"], "radius": 1.0},
        size=2,
        images_per_structure=2,
        shard_size=2,
    )
    table = build_shard(study, "d", 0)
    assert table.column("n_heavy_atom").to_pylist() == [6, 6]
    images = images_to_numpy(table)
    masks = images_to_numpy(table, "mask")
    for row, coordinates in enumerate(table.column("coordinates").to_pylist()):
        # a 19.2 Å frame of a 24 Å cell: each Pt atom at most once, at a bright spot
        assert 1 <= len(coordinates) <= 6
        assert {c["label"] for c in coordinates} == {1}
        for c in coordinates:
            x, y = round(c["x"]), round(c["y"])
            if 2 <= x < 62 and 2 <= y < 62:
                assert masks[row][y, x] == 1
                # Pt (Z = 78) outshines 12 Å of carbon: a local maximum of the image
                window = images[row][y - 2 : y + 3, x - 2 : x + 3]
                assert images[row][y, x] >= np.percentile(window, 60)
        assert set(np.unique(masks[row])) <= {0, 1}
        atoms = table.column("atoms").to_pylist()[row]
        assert {a["z_number"] for a in atoms} == {78}  # the support is never a site
