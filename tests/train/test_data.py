"""Training data: zero-copy views, dose re-noising, class mapping, augmentation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.plan import dataset_dir
from hpcbench.simulate.corrupt import CorruptionParams, add_noise
from hpcbench.study import Study
from hpcbench.train.data import ImageSet, augment, class_lookup, normalize

CLASSES = ["anion_vacancy", "dopant"]


def _set(study: Study, root: Path, ids: list[int], **kwargs: object) -> ImageSet:
    return ImageSet(
        dataset_dir(study, root, "wse2"),
        ids,
        dataset_classes=CLASSES,
        classes=kwargs.pop("classes", CLASSES),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def test_stored_frames_are_views_of_the_arrow_buffers(tiny_study: Study, tiny_root: Path) -> None:
    images = _set(tiny_study, tiny_root, [0, 5, 17])
    table = read_dataset(dataset_dir(tiny_study, tiny_root, "wse2"))
    stored = images_to_numpy(table, "image")
    for index, sample in enumerate([0, 5, 17]):
        frame = images.frame(index)
        assert np.array_equal(frame, stored[sample])
        assert not frame.flags.owndata and not frame.flags.writeable


def test_dose_renoises_the_clean_frame_with_the_stored_seed(
    tiny_study: Study, tiny_root: Path
) -> None:
    table = read_dataset(dataset_dir(tiny_study, tiny_root, "wse2"))
    row = 9
    params = CorruptionParams(
        **{
            name: table.column(f"corruption_{name}")[row].as_py()
            for name in CorruptionParams.__dataclass_fields__
            if f"corruption_{name}" in table.column_names  # optional columns: defaults
        }
    )
    seed = table.column("corruption_seed")[row].as_py()
    clean = images_to_numpy(table, "clean")[row]
    # Re-noising at the stored dose reproduces the stored frame bit for bit ...
    same = _set(tiny_study, tiny_root, [row], dose=params.dose)
    assert np.array_equal(same.frame(0), images_to_numpy(table, "image")[row])
    # ... and another dose is add_noise of the clean frame at that dose.
    low = _set(tiny_study, tiny_root, [row], dose=100.0)
    expected = add_noise(clean, replace(params, dose=100.0), pixel_size=0.1, seed=seed)
    assert np.array_equal(low.frame(0), expected)
    # Lower dose, more relative noise (the physics the ablation relies on).
    high = _set(tiny_study, tiny_root, [row], dose=1e8)
    rel = [np.std(s.frame(0) - clean) / clean.mean() for s in (low, high)]
    assert rel[0] > 10 * rel[1]
    # A training seed gives other noise, the same seed the same noise.
    a = low.frame(0, seed=np.random.SeedSequence([1, 2]))
    b = low.frame(0, seed=np.random.SeedSequence([1, 2]))
    assert np.array_equal(a, b) and not np.array_equal(a, expected)


def test_class_mapping_keeps_only_the_trial_classes(tiny_study: Study, tiny_root: Path) -> None:
    assert class_lookup(CLASSES, ["dopant"]).tolist() == [0, 0, 1]
    assert class_lookup(["lattice", *CLASSES], ["dopant", "lattice"]).tolist() == [0, 2, 0, 1]
    raw = images_to_numpy(read_dataset(dataset_dir(tiny_study, tiny_root, "wse2")), "mask")
    # An image with both a vacancy and a dopant.
    sample = int(np.argmax([min((m == 1).sum(), (m == 2).sum()) for m in raw]))
    assert (raw[sample] == 1).any() and (raw[sample] == 2).any()
    only = _set(tiny_study, tiny_root, [sample], classes=["dopant"])
    assert np.array_equal(only.mask(0), (raw[sample] == 2).astype(np.int64))
    _, labels = only.coordinates(0)
    assert labels.tolist() == [1] * len(labels) and len(labels) > 0
    full = _set(tiny_study, tiny_root, [sample])
    assert len(full.coordinates(0)[1]) > len(labels)


def test_missing_samples_are_named(tiny_study: Study, tiny_root: Path) -> None:
    with pytest.raises(ValueError, match=r"samples \[48, 99\] are not in the dataset"):
        _set(tiny_study, tiny_root, [1, 48, 99])


def test_normalize_maps_to_unit_range() -> None:
    data = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert normalize(data).tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert normalize(np.full((2, 2), 3.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_augmentation_moves_image_and_mask_together() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((12, 12)).astype(np.float32)
    mask = (image > 0.5).astype(np.int64)
    seen = set()
    for seed in range(40):
        out_image, out_mask = augment(
            image, mask, np.random.default_rng(seed), crop=(8, 8), rot90=True, flips=True
        )
        assert out_image.shape == (8, 8) and out_image.flags.c_contiguous
        assert np.array_equal(out_mask, (out_image > 0.5).astype(np.int64))
        seen.add(out_image.tobytes())
    assert len(seen) > 30  # crops x 4 turns x flips: nearly all distinct
    same = [
        augment(image, mask, np.random.default_rng(7), crop=(8, 8), rot90=True, flips=True)[0]
        for _ in range(2)
    ]
    assert np.array_equal(*same)
    with pytest.raises(ValueError, match="larger than the image"):
        augment(image, mask, rng, crop=(16, 8), rot90=False, flips=False)
