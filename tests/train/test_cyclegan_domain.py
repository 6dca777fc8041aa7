"""Acceptance of the CycleGAN stage on a domain pair the CycleGAN never sees the model of.

Source: clean incoherent WSe2 simulations. Target: the same kind of structures through
a distortion model (source blur, drift, correlated detector noise, contamination-like
background, counting noise) that the CycleGAN only sees the output of. A short run must
bring the translated simulations much closer to the target (FID, histogram KL) while
keeping the atoms where the labels put them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from scipy import ndimage
from train_helpers import write_dataset

from hpcbench.datasets.read import read_dataset
from hpcbench.datasets.schema import images_to_numpy
from hpcbench.metrics.detection import DetectionCounts, detection_counts, find_atoms
from hpcbench.plan import dataset_dir, expand_cyclegan_trials
from hpcbench.study import Study, validate_study_data
from hpcbench.train.cyclegan import CycleGANTrainer, translate_images

EPOCHS = 6
PIXEL = 0.16  # [Å]
MATCH = 0.5 / PIXEL  # matching radius [px]

_DATASET: dict[str, Any] = {
    "structure": {
        "kind": "mx2",
        "supercell": [6, 4],
        "defects": {"anion_vacancy": {"count": {"min": 1, "max": 3}}},
    },
    "simulation": {
        "method": "incoherent",
        "energy": 80000,
        "semiangle_cutoff": 25,
        "defocus": 0,
        "Cs": 0,
        "sampling": 0.08,
    },
    "image": {"shape": [64, 64], "pixel_size": PIXEL},
    "labels": {"classes": ["anion_vacancy"], "lattice": True, "radius": 0.5},
    "size": 64,
    "images_per_structure": 4,
    "shard_size": 64,
}
_DISTORTION = {
    "dose": 1e5,
    "blur": 0.4,
    "drift": 1.5,
    "correlated_noise": 0.25,
    "noise_correlation": 0.4,
    "background": 0.5,
    "background_scale": 6.0,
}


def _study() -> Study:
    return validate_study_data(
        {
            "name": "domain-pair",
            "seed": 1,
            "datasets": {"sim": _DATASET, "exp": {**_DATASET, "corruption": _DISTORTION}},
            "cyclegan": {
                "source": "sim",
                "target": "exp",
                "models": {
                    "small": {"gen_width": 16, "gen_depth": 4, "disc_width": 16, "pool_size": 16}
                },
                "epochs": EPOCHS,
                "epochs_decay": EPOCHS // 2,
                "batch_size": 4,
                "learning_rate": 1e-3,
                "patch_size": 64,
                "fid": {"images": 16},
            },
        }
    )


@dataclass
class Outcome:
    trainer: CycleGANTrainer
    metrics: dict[str, float]
    history: list[dict[str, float]]
    directory: Path


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One short CycleGAN run on the domain pair (about half a minute on two cores)."""
    study = _study()
    root = tmp_path_factory.mktemp("domain-pair")
    dirs = {name: str(write_dataset(study, name, root)) for name in ("sim", "exp")}
    trial = expand_cyclegan_trials(study)[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer = CycleGANTrainer(trial.trial, dirs)
        history = [trainer.run_epoch() for _ in range(EPOCHS)]
        metrics, _ = trainer.test()
    finally:
        torch.set_num_threads(threads)
    yield Outcome(trainer, metrics, history, dataset_dir(study, root, "sim"))


def test_translation_halves_the_frechet_distance_to_the_target(outcome: Outcome) -> None:
    m = outcome.metrics
    assert m["test/frechet_distance_raw"] > 1.0  # the domains really differ
    assert m["test/frechet_distance"] <= 0.5 * m["test/frechet_distance_raw"], m


def test_translation_lowers_the_histogram_kl_and_spectrum_distance(outcome: Outcome) -> None:
    m = outcome.metrics
    assert m["test/histogram_kl"] < m["test/histogram_kl_raw"], m
    assert m["test/power_spectrum_distance"] < m["test/power_spectrum_distance_raw"], m


def test_raw_distances_do_not_depend_on_training(outcome: Outcome) -> None:
    raw = {h["val/frechet_distance_raw"] for h in outcome.history}
    assert len(raw) == 1


def _atoms(image: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """A plain blob detector: 1-px Gaussian smoothing, min-max to [0, 1], LoG blobs."""
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), 1.0)
    span = smooth.max() - smooth.min()
    unit = (smooth - smooth.min()) / (span if span > 0 else 1.0)
    return find_atoms(unit, method="log", threshold=0.35, min_sigma=1.5, max_sigma=4.0)


def _detection_f1(images: NDArray[np.floating[Any]], sites: list[NDArray[np.float64]]) -> float:
    total = DetectionCounts()
    for image, truth in zip(images, sites, strict=True):
        total = total + detection_counts(
            _atoms(image), truth, MATCH, shape=image.shape, border=MATCH
        )
    return 2 * total.tp / (2 * total.tp + total.fp + total.fn)


def test_atom_positions_survive_translation(outcome: Outcome) -> None:
    trainer = outcome.trainer
    ids = trainer.split("sim").test
    table = read_dataset(outcome.directory)
    rows = np.searchsorted(table.column("sample_id").to_numpy(), ids)
    images = images_to_numpy(table, "image")[rows]
    sites = []
    for row in rows:
        coords = table.column("coordinates")[int(row)].as_py()
        # Atom columns (mask value 1, "lattice"), in pixels (x = column, y = row).
        sites.append(np.array([[c["x"], c["y"]] for c in coords if c["label"] == 1]))
    translated = translate_images(
        trainer.selected_generator("F"),
        images,
        trainer.source_scale,
        noise_std=0.1,
        seed=7,
        sample_ids=ids,
    )
    source_f1 = _detection_f1(images, sites)
    translated_f1 = _detection_f1(translated, sites)
    assert source_f1 > 0.9  # the detector finds the atoms of clean simulations
    assert translated_f1 >= 0.95 * source_f1, (source_f1, translated_f1)
