"""The skeleton every trial trainer shares: seeded streams, epochs, checkpoints.

A :class:`Trainer` trains one typed trial (:mod:`hpcbench.plan.trials`) and knows
nothing of Ray: the Tune trainable (:mod:`hpcbench.train.trainable`) and the benchmarks
drive the same object through :meth:`Trainer.epochs`, :meth:`Trainer.save` /
:meth:`Trainer.load`, :meth:`Trainer.test` and :meth:`Trainer.save_artifacts`. The
segmentation and CycleGAN specifics live in :mod:`hpcbench.train.segmentation` and
:mod:`hpcbench.train.cyclegan`.

Everything random derives from the trial seed, a stream number and the epoch (never
from the order work runs in): :meth:`Trainer.rng` is
``default_rng(SeedSequence([seed, stream, ...]))``. So a trial restored from an epoch
checkpoint continues exactly as if uninterrupted, and stream 0 (:data:`SUBSET`) is the
training subset in every trainer, so a CycleGAN trial and a segmentation trial with the
same seed and ``train_size`` train on the same source images.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

from hpcbench.datasets.manifest import IMPORTED_KIND, ManifestError, read_manifest
from hpcbench.plan import Split, TrialConfig
from hpcbench.train.data import ImageSet

__all__ = ["BEST", "CHECKPOINT", "SUBSET", "Trainer"]

CHECKPOINT = "state.pt"
BEST = "best.pt"
# Stream 0 of every trainer: the permutation whose first train_size ids are trained on.
SUBSET = 0

TrialT = TypeVar("TrialT", bound=TrialConfig)


class Trainer(ABC, Generic[TrialT]):
    """Train and evaluate one trial.

    Parameters
    ----------
    trial : SegmentationTrial or CycleGANTrial
        What to run.
    data_dirs : mapping of str to path
        Directory of each dataset the trial names.
    key : str, optional
        The trial's key, recorded in checkpoints and artifacts.
    device : str
        Torch device (``"cpu"``, ``"cuda"``).

    Attributes
    ----------
    epoch : int
        Epochs trained.
    best_score : float
        The lowest validation score so far (what is lower is better per trainer).
    best_epoch : int
        Epoch of ``best_score`` (0 before any).
    history : list of dict
        :meth:`run_epoch`'s metrics of every epoch.
    """

    def __init__(
        self,
        trial: TrialT,
        data_dirs: Mapping[str, str | os.PathLike[str]],
        *,
        key: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.trial: TrialT = trial
        self.key = key
        self.data_dirs = {name: Path(path) for name, path in data_dirs.items()}
        self.device = torch.device(device)
        self.seed = trial.seed
        self.epoch = 0
        self.best_score = math.inf
        self.best_epoch = 0
        self.history: list[dict[str, float]] = []

    @property
    def config(self) -> dict[str, Any]:
        """The trial's JSON form with its ``key``: what artifacts record."""
        config = self.trial.to_config()
        if self.key is not None:
            config["key"] = self.key
        return config

    # ------------------------------------------------------------ randomness

    def rng(self, *stream: int) -> np.random.Generator:
        """The generator of stream ``(seed, *stream)`` (e.g. ``(ORDER, epoch)``)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, *map(int, stream)]))

    def stream_seed(self, *stream: int) -> int:
        """A non-negative 63-bit integer seed of stream ``(seed, *stream)`` (for torch)."""
        sequence = np.random.SeedSequence([self.seed, *map(int, stream)])
        return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)

    # ------------------------------------------------------------------ data

    def split(self, name: str) -> Split:
        """The train/validation/test split of dataset ``name`` (a translation: its source's)."""
        return self.trial.split_of(name)

    def test_ids(self, name: str) -> NDArray[np.int64]:
        """Sample ids dataset ``name`` is tested on: its test split, or all of it."""
        info = self.trial.datasets[name]
        if info.test_split:
            return self.split(name).test
        return np.arange(info.size, dtype=np.int64)

    def image_set(
        self,
        name: str,
        ids: NDArray[np.int64],
        *,
        classes: Sequence[str],
        dose: float | None = None,
        fidelity: str | None = None,
    ) -> ImageSet:
        """Samples ``ids`` of dataset ``name`` with the trial's ``classes`` (and ``dose``).

        ``fidelity`` takes the frames from the stored clean images of that HRTEM
        fidelity level (``None``: the dataset's own images).

        An imported dataset (real images) is never re-noised: a trial's dose applies to
        simulations, whose clean frames are stored; adding counting noise to a recorded
        image would score the network on data no microscope made.
        """
        if name not in self.data_dirs:
            raise ValueError(f"no directory given for dataset {name}")
        if dose is not None and is_imported(self.data_dirs[name]):
            dose = None
        return ImageSet(
            self.data_dirs[name],
            ids,
            dataset_classes=self.trial.datasets[name].classes,
            classes=classes,
            dose=dose,
            fidelity=fidelity,
        )

    # --------------------------------------------------------------- epochs

    @abstractmethod
    def train_epoch(self) -> dict[str, float]:
        """One pass of training; increments :attr:`epoch`; ``train/…`` metrics."""

    @abstractmethod
    def validate(self) -> dict[str, float]:
        """``val/…`` metrics of the current state; keeps the best state."""

    def run_epoch(self) -> dict[str, float]:
        """:meth:`train_epoch` then :meth:`validate`; returns both, with ``epoch``."""
        metrics = self.train_epoch()
        metrics.update(self.validate())
        metrics["epoch"] = float(self.epoch)
        self.history.append(metrics)
        return metrics

    def epochs(self) -> Iterator[dict[str, float]]:
        """Run the remaining epochs of the trial, yielding each one's metrics.

        The caller reports and checkpoints between epochs (:meth:`save`).
        """
        while self.epoch < self.trial.epochs:
            yield self.run_epoch()

    # ----------------------------------------------------------- checkpoints

    @abstractmethod
    def _training_state(self) -> dict[str, Any]:
        """The trainer-specific state (networks, optimisers, schedulers, best state)."""

    @abstractmethod
    def _load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`_training_state`."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the trial exactly."""
        return {
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "key": self.key,
            **self._training_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        self._load_training_state(state)
        self.epoch = int(state["epoch"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.history = list(state["history"])

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the training state to ``directory/state.pt``."""
        path = Path(directory) / CHECKPOINT
        torch.save(self.state_dict(), path)
        return path

    def load(self, directory: str | os.PathLike[str]) -> None:
        """Continue from ``directory/state.pt``."""
        state = torch.load(
            Path(directory) / CHECKPOINT, map_location=self.device, weights_only=False
        )
        self.load_state_dict(state)

    # --------------------------------------------------------------- results

    @abstractmethod
    def test(self) -> tuple[dict[str, float], dict[str, Any]]:
        """``test/…`` metrics of the selected state, and examples for a figure."""

    @abstractmethod
    def save_artifacts(
        self, directory: str | os.PathLike[str], examples: Mapping[str, Any] | None = None
    ) -> list[Path]:
        """Write ``best.pt``, ``trial.json`` and (with examples) ``predictions.png``."""


def is_imported(dataset_dir: str | os.PathLike[str]) -> bool:
    """Whether a dataset directory holds imported (experimental) images."""
    try:
        return read_manifest(dataset_dir).spec.get("kind") == IMPORTED_KIND
    except (OSError, ValueError, ManifestError):
        return False
