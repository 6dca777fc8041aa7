"""One CycleGAN trial (seed 000): unpaired simulation → experiment translation.

:class:`CycleGANTrainer` runs one :class:`~hpcbench.plan.CycleGANTrial` on the shared
skeleton of :class:`~hpcbench.train.trainer.Trainer` for the CycleGAN of
:mod:`hpcbench.models.cyclegan`. Domain X is
the experiment-like *target* dataset, domain Y the simulated *source* dataset, so
``F: Y → X`` is the generator that makes simulations look experimental
(:func:`translate_images`, :func:`load_translator`).

Recipe (Khan et al. 2023, methods):

- each domain's intensities are saturated at its training set's mean ± 3.5σ and mapped
  to [-1, 1] by the set's minimum and maximum (:class:`DomainScale`, fitted once on the
  training images and then applied unchanged to validation and test images);
- random ``patch_size`` crops, rot90/flip augmentation drawn independently per domain;
- Gaussian noise (std 0.1 in [-1, 1] units) added to the normalised simulations, which
  are otherwise too uniform for the generators;
- Adam, a constant learning rate for ``epochs - epochs_decay`` epochs, then a linear
  decay to zero (:func:`hpcbench.models.cyclegan.linear_decay_schedule`).

Randomness derives from the trial seed and the epoch only, never from global state:
initialisation under :func:`torch.random.fork_rng`; epoch ``e``'s source order, target
draws, crops, augmentation and noise from ``SeedSequence([seed, stream, e, ...])``; the
generators' dropout from a forked torch RNG seeded by ``(seed, e)``; the image pools from
their private generator, whose state is checkpointed. A trial restored from an epoch
checkpoint therefore continues exactly as if uninterrupted.

Validation compares, after every epoch, ``F(source)`` and the untranslated source with
the target on whole validation images (in the normalised [-1, 1] space): Fréchet
distance in the trial's feature space, intensity-histogram KL divergence and power
spectrum distance (:mod:`hpcbench.metrics`).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from hpcbench.metrics import (
    FeatureExtractor,
    InceptionFeatures,
    SpectralFeatures,
    fid,
    histogram_kl,
    power_spectrum_distance,
)
from hpcbench.models import build_cyclegan, build_generator
from hpcbench.models.cyclegan import (
    LOSS_NAMES,
    UNetGenerator,
    linear_decay_schedule,
    make_optimizers,
)
from hpcbench.plan import CycleGANTrial
from hpcbench.study import CycleGANConfig
from hpcbench.train.data import ImageSet
from hpcbench.train.trainer import BEST, SUBSET, Trainer

__all__ = [
    "CycleGANTrainer",
    "DomainScale",
    "Translator",
    "load_translator",
    "translate_images",
]


class Stream(IntEnum):
    """Streams of the trial's randomness (children of the trial seed)."""

    SUBSET = SUBSET
    TARGET_SUBSET = 1
    ORDER = 2
    AUGMENT = 3
    NOISE = 4
    DROPOUT = 5
    POOL = 6
    INIT = 7


_SOURCE, _TARGET = 0, 1
# Validation and test translations use fixed per-sample noise seeded by (seed, sample id).
_EXAMPLES = 3


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


# --------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class DomainScale:
    """The per-set saturate → [-1, 1] map of seed 000, fitted on one domain's images.

    ``apply(I) = clip(2 (I - low) / (high - low) - 1, -1, 1)`` where ``[low, high]`` is
    the intensity range of the fitting set after saturation at ``mean ± sigma · std``.
    On the fitting set this equals :func:`hpcbench.metrics.saturate_normalize`; on other
    images (validation, test, new simulations) the same affine map is used, so they
    are judged on the training set's scale.

    Attributes
    ----------
    mean, std : float
        Mean and (population) standard deviation over all pixels of the fitting set
        [intensity units].
    sigma : float
        Saturation level [standard deviations].
    low, high : float
        Minimum and maximum of the saturated fitting set [intensity units]; mapped to
        -1 and 1. ``high == low`` (a constant set) maps everything to 0.
    """

    mean: float
    std: float
    sigma: float
    low: float
    high: float

    @classmethod
    def fit(cls, images: NDArray[Any] | Sequence[ArrayLike], sigma: float = 3.5) -> DomainScale:
        """Fit the map on a set of images.

        Parameters
        ----------
        images : ndarray, shape (N, H, W) or (H, W), or sequence of (H, W) arrays
            The set [intensity units]; a sequence of images of different sizes is
            allowed (they are pooled pixel by pixel, never stacked into one array).
        sigma : float
            Saturation level [standard deviations] (3.5 in seed 000).

        Returns
        -------
        DomainScale
            The fitted map.

        Raises
        ------
        ValueError
            For ``sigma <= 0``, an empty set or non-finite pixels.
        """
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        # One pass with Chan's pairwise update of (count, mean, M2): stable for a large
        # mean and no copy of the whole set; min and max of the clipped set follow from
        # the raw min and max because clipping is monotonic.
        count, mean, m2 = 0, 0.0, 0.0
        low, high = math.inf, -math.inf
        for image in _iter_images(images):
            data = np.asarray(image, dtype=np.float64)
            if data.size == 0:
                continue
            if not np.isfinite(data).all():
                raise ValueError("images hold non-finite values")
            n = data.size
            image_mean = float(data.mean())
            image_m2 = float(np.square(data - image_mean).sum())
            delta = image_mean - mean
            total = count + n
            mean += delta * n / total
            m2 += image_m2 + delta * delta * count * n / total
            count = total
            low, high = min(low, float(data.min())), max(high, float(data.max()))
        if count == 0:
            raise ValueError("cannot fit a DomainScale on an empty image set")
        std = math.sqrt(m2 / count)
        low = max(low, mean - sigma * std)
        high = min(high, mean + sigma * std)
        return cls(mean=mean, std=std, sigma=float(sigma), low=low, high=high)

    def apply(self, images: ArrayLike) -> NDArray[np.float32]:
        """Map images to [-1, 1] with the fitted affine map (clipped).

        Parameters
        ----------
        images : array_like
            Images of any shape [intensity units].

        Returns
        -------
        ndarray of float32
            Same shape, in [-1, 1] [1].
        """
        data = np.asarray(images, dtype=np.float64)
        if self.high <= self.low:
            return np.zeros(data.shape, dtype=np.float32)
        out = 2.0 * (data - self.low) / (self.high - self.low) - 1.0
        result: NDArray[np.float32] = np.clip(out, -1.0, 1.0).astype(np.float32)
        return result

    def to_dict(self) -> dict[str, float]:
        """The fields as a JSON-serialisable dict."""
        return {
            "mean": self.mean,
            "std": self.std,
            "sigma": self.sigma,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainScale:
        """Inverse of :meth:`to_dict`."""
        return cls(**{name: float(data[name]) for name in ("mean", "std", "sigma", "low", "high")})


def _iter_images(images: NDArray[Any] | Sequence[ArrayLike]) -> Iterator[ArrayLike]:
    if isinstance(images, np.ndarray):
        yield from (images[np.newaxis] if images.ndim == 2 else images)
    else:
        yield from images


# ----------------------------------------------------------------------- translation


def translate_images(
    generator: UNetGenerator,
    images: ArrayLike,
    scale: DomainScale,
    *,
    noise_std: float,
    seed: int,
    sample_ids: Sequence[int] | NDArray[np.integer],
    batch_size: int = 8,
    device: str = "cpu",
) -> NDArray[np.float32]:
    """Translate raw images with a generator (``F``: simulation → experiment-like).

    Parameters
    ----------
    generator : UNetGenerator
        The generator; moved to ``device`` and run in eval mode under
        :func:`torch.no_grad` (its previous training mode is restored).
    images : array_like, shape (N, H, W)
        Raw (unnormalised) images of the generator's input domain [intensity units].
    scale : DomainScale
        The input domain's map to [-1, 1].
    noise_std : float
        Std of the Gaussian noise added to the normalised images [normalised units]
        (the trial's ``sim_noise_std``; 0 adds none).
    seed : int
        Seed of the noise; sample ``i`` gets
        ``default_rng(SeedSequence([seed, sample_ids[i]]))``, so its translation does
        not depend on the batch it is in.
    sample_ids : sequence of int, length N
        Identifier of each image (its dataset sample id).
    batch_size : int
        Images per forward pass.
    device : str
        Torch device.

    Returns
    -------
    ndarray of float32, shape (N, H, W)
        Translated images in [-1, 1] [normalised units]. Images are reflect-padded at
        the bottom and right to a multiple of ``2**generator.depth`` and cropped back.

    Raises
    ------
    ValueError
        For images not of shape (N, H, W), or a ``sample_ids`` of another length.
    """
    stack = np.asarray(images)
    if stack.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {stack.shape}")
    ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
    if ids.size != stack.shape[0]:
        raise ValueError(f"got {ids.size} sample ids for {stack.shape[0]} images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows, cols = stack.shape[1:]
    stride = 2**generator.depth
    pad_rows, pad_cols = (-rows) % stride, (-cols) % stride
    mode = "reflect" if pad_rows < rows and pad_cols < cols else "replicate"
    target = torch.device(device)
    generator.to(target)
    was_training = generator.training
    generator.eval()
    outputs: list[NDArray[np.float32]] = []
    try:
        with torch.no_grad():
            for start in range(0, stack.shape[0], batch_size):
                chunk = scale.apply(stack[start : start + batch_size])
                if noise_std > 0:
                    chunk = chunk + np.stack(
                        [
                            _rng(seed, int(sid)).normal(0.0, noise_std, size=(rows, cols))
                            for sid in ids[start : start + batch_size]
                        ]
                    ).astype(np.float32)
                tensor = torch.from_numpy(np.ascontiguousarray(chunk))[:, None].to(target)
                if pad_rows or pad_cols:
                    tensor = F.pad(tensor, (0, pad_cols, 0, pad_rows), mode=mode)
                out = generator(tensor)[:, 0, :rows, :cols]
                outputs.append(out.float().cpu().numpy())
    finally:
        generator.train(was_training)
    if not outputs:
        return np.zeros((0, rows, cols), dtype=np.float32)
    result: NDArray[np.float32] = np.clip(np.concatenate(outputs), -1.0, 1.0)
    return result


@dataclass
class Translator:
    """A trained ``F`` (simulation → experiment-like) with its input normalisation.

    Attributes
    ----------
    generator : UNetGenerator
        ``F``, in eval mode.
    scale : DomainScale
        The source (simulation) domain's map to [-1, 1].
    noise_std : float
        Noise added to the normalised inputs, as in training [normalised units].
    epoch : int
        Training epoch of the generator's weights.
    """

    generator: UNetGenerator
    scale: DomainScale
    noise_std: float
    epoch: int

    def __call__(
        self,
        images: ArrayLike,
        *,
        seed: int,
        sample_ids: Sequence[int] | NDArray[np.integer],
        batch_size: int = 8,
        device: str = "cpu",
    ) -> NDArray[np.float32]:
        """:func:`translate_images` with this translator's generator, scale and noise."""
        return translate_images(
            self.generator,
            images,
            self.scale,
            noise_std=self.noise_std,
            seed=seed,
            sample_ids=sample_ids,
            batch_size=batch_size,
            device=device,
        )


def load_translator(path: str | os.PathLike[str], *, device: str = "cpu") -> Translator:
    """The ``F`` generator of a CycleGAN ``best.pt`` (:meth:`CycleGANTrainer.save_artifacts`).

    Parameters
    ----------
    path : path
        The ``best.pt`` file.
    device : str
        Torch device to load the weights to.

    Returns
    -------
    Translator
        ``F`` in eval mode, the source scale, the training noise and the epoch.
    """
    content: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
    with torch.random.fork_rng(devices=[]):  # construction initialises (then overwritten)
        generator = build_generator(CycleGANConfig.model_validate(content["model"]))
    generator.load_state_dict(content["F"])
    return Translator(
        generator=generator.to(device).eval(),
        scale=DomainScale.from_dict(content["source_scale"]),
        noise_std=float(content["sim_noise_std"]),
        epoch=int(content["epoch"]),
    )


# ---------------------------------------------------------------------------- trainer


class CycleGANTrainer(Trainer[CycleGANTrial]):
    """Train and evaluate one CycleGAN trial (source: simulation Y, target: experiment X).

    Parameters
    ----------
    trial : CycleGANTrial
        What to run.
    data_dirs : mapping of str to path
        Directory of the source and target datasets.
    key : str, optional
        The trial's key, recorded in checkpoints and artifacts.
    device : str
        Torch device (``"cpu"``, ``"cuda"``).
    inception_weights : path, optional
        pytorch-fid's Inception weights file, for ``fid.features: inception`` (a
        runtime setting: not part of the trial).

    Attributes
    ----------
    best_epoch : int
        Epoch with the lowest validation Fréchet distance so far (0 before any).
    model : CycleGAN
        The six networks.
    source_scale, target_scale : DomainScale
        Normalisation of each domain, fitted on its training images.

    Raises
    ------
    ValueError
        For a trial the data cannot satisfy (one line naming the problem).
    """

    def __init__(
        self,
        trial: CycleGANTrial,
        data_dirs: Mapping[str, str | os.PathLike[str]],
        *,
        key: str | None = None,
        device: str = "cpu",
        inception_weights: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(trial, data_dirs, key=key, device=device)
        self.source = trial.dataset
        self.target = trial.target
        self.patch_size = trial.patch_size
        self.batch_size = trial.batch_size
        self.sim_noise_std = trial.sim_noise_std
        depth = trial.model.gen_depth
        if self.patch_size < 1 or self.patch_size % 2**depth:
            raise ValueError(
                f"patch_size {self.patch_size} must be a positive multiple of "
                f"2**gen_depth = {2**depth}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        epochs, decay = trial.epochs, trial.epochs_decay
        if not 0 <= decay <= epochs:
            raise ValueError(f"epochs_decay {decay} must be between 0 and epochs {epochs}")
        self.fid_images = trial.fid.images
        if self.fid_images < 2:
            raise ValueError(f"fid.images must be >= 2, got {self.fid_images}")
        for name in (self.source, self.target):
            if name not in self.data_dirs:
                raise ValueError(f"no directory given for dataset {name}")
            if not self.data_dirs[name].is_dir():
                raise ValueError(f"dataset {name}: directory {self.data_dirs[name]} not found")

        source_split, target_split = self.split(self.source), self.split(self.target)
        source_ids = self.rng(Stream.SUBSET).permutation(source_split.train)
        target_ids = self.rng(Stream.TARGET_SUBSET).permutation(target_split.train)
        self.source_train = self._image_set(self.source, source_ids[: trial.train_size])
        self.target_train = self._image_set(self.target, target_ids[: trial.target_size])
        for name, images in ((self.source, self.source_train), (self.target, self.target_train)):
            if len(images) < self.batch_size:
                raise ValueError(
                    f"dataset {name} has {len(images)} training images, fewer than "
                    f"batch_size {self.batch_size}"
                )
            if self.patch_size > min(images.shape):
                raise ValueError(
                    f"patch_size {self.patch_size} exceeds the {name} images {images.shape}"
                )
        self.source_val = self._image_set(
            self.source, _spread(source_split.validation, self.fid_images)
        )
        self.target_val = self._image_set(
            self.target, _spread(target_split.validation, self.fid_images)
        )
        for name, images in ((self.source, self.source_val), (self.target, self.target_val)):
            if len(images) < 2:
                raise ValueError(f"dataset {name} has fewer than 2 validation images")
        sigma = trial.saturation
        self.source_scale = DomainScale.fit(_frames(self.source_train), sigma)
        self.target_scale = DomainScale.fit(_frames(self.target_train), sigma)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream_seed(Stream.INIT))
            self.model = build_cyclegan(trial.model, pool_seed=self.stream_seed(Stream.POOL))
        self.model.to(self.device)
        self.opt_g, self.opt_d = make_optimizers(self.model, trial.learning_rate, trial.betas)
        factor: Callable[[int], float] = (
            linear_decay_schedule(epochs - decay, decay) if decay > 0 else _constant
        )
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        if trial.fid.features == "spectral-v1":
            self.extractor: FeatureExtractor = SpectralFeatures()
        else:
            if not inception_weights:
                raise ValueError("fid.features 'inception' needs an Inception weights file")
            self.extractor = InceptionFeatures(Path(inception_weights), device=device)

        self.best_state: dict[str, dict[str, torch.Tensor]] = self._generator_states()
        self.test_metrics: dict[str, float] = {}
        self._val_cache: tuple[NDArray[np.float32], NDArray[np.float32], dict[str, float]] | None
        self._val_cache = None

    # ------------------------------------------------------------------ data

    def _image_set(self, name: str, ids: NDArray[np.int64]) -> ImageSet:
        return self.image_set(name, ids, classes=[])

    def _patches(
        self,
        images: ImageSet,
        indices: NDArray[np.int64],
        scale: DomainScale,
        rng: np.random.Generator,
    ) -> NDArray[np.float32]:
        """Normalised, randomly cropped and augmented patches (B, P, P)."""
        size = self.patch_size
        spec = self.trial.augment
        out = np.empty((indices.size, size, size), dtype=np.float32)
        for k, index in enumerate(indices.tolist()):
            frame = images.frame(index)
            top = int(rng.integers(0, frame.shape[0] - size + 1))
            left = int(rng.integers(0, frame.shape[1] - size + 1))
            patch = scale.apply(frame[top : top + size, left : left + size])
            if spec.rot90:
                patch = np.rot90(patch, int(rng.integers(0, 4)))
            if spec.flips:
                if rng.random() < 0.5:
                    patch = patch[:, ::-1]
                if rng.random() < 0.5:
                    patch = patch[::-1]
            out[k] = patch
        return out

    def steps_per_epoch(self) -> int:
        """``ceil(max(n_source, n_target) / batch_size)``."""
        longest = max(len(self.source_train), len(self.target_train))
        return math.ceil(longest / self.batch_size)

    def _training_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The current epoch's (target x, source y) batches, shape (B, 1, P, P) each.

        Source images come in shuffled order (successive permutations, so every batch
        is full and every source image is seen at least once per epoch); each target
        batch is drawn at random without replacement; the noise goes on the source.
        """
        epoch, size = self.epoch, self.batch_size
        steps = self.steps_per_epoch()
        order_rng = self.rng(Stream.ORDER, epoch)
        n_source, n_target = len(self.source_train), len(self.target_train)
        order = np.concatenate(
            [order_rng.permutation(n_source) for _ in range(math.ceil(steps * size / n_source))]
        )
        augment_source = self.rng(Stream.AUGMENT, epoch, _SOURCE)
        augment_target = self.rng(Stream.AUGMENT, epoch, _TARGET)
        noise_rng = self.rng(Stream.NOISE, epoch)
        shape = (size, self.patch_size, self.patch_size)
        for step in range(steps):
            source_idx = order[step * size : (step + 1) * size]
            target_idx = order_rng.choice(n_target, size=size, replace=False)
            y = self._patches(self.source_train, source_idx, self.source_scale, augment_source)
            if self.sim_noise_std > 0:
                y += noise_rng.normal(0.0, self.sim_noise_std, size=shape).astype(np.float32)
            x = self._patches(self.target_train, target_idx, self.target_scale, augment_target)
            yield (
                torch.from_numpy(x)[:, None].to(self.device),
                torch.from_numpy(y)[:, None].to(self.device),
            )

    # --------------------------------------------------------------- training

    def _fork_rng(self) -> Any:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    def train_epoch(self) -> dict[str, float]:
        """One epoch of :meth:`CycleGAN.train_step`, then one scheduler step.

        Returns
        -------
        dict
            ``train/<loss name>`` epoch means of :data:`LOSS_NAMES`,
            ``train/learning_rate`` (used this epoch) and ``train/seconds`` [s].
        """
        began = time.perf_counter()
        learning_rate = float(self.opt_g.param_groups[0]["lr"])
        sums = dict.fromkeys(LOSS_NAMES, 0.0)
        steps = 0
        with self._fork_rng():
            # Dropout draws from torch's global RNG: fork it and seed it per epoch.
            torch.manual_seed(self.stream_seed(Stream.DROPOUT, self.epoch))
            for x, y in self._training_batches():
                losses = self.model.train_step(x, y, self.opt_g, self.opt_d)
                for name in LOSS_NAMES:
                    sums[name] += losses[name]
                steps += 1
        self.sched_g.step()
        self.sched_d.step()
        self.epoch += 1
        metrics = {f"train/{name}": total / max(steps, 1) for name, total in sums.items()}
        metrics["train/learning_rate"] = learning_rate
        metrics["train/seconds"] = time.perf_counter() - began
        return metrics

    def _set_metrics(
        self,
        prefix: str,
        translated: NDArray[np.float32],
        source: NDArray[np.float32],
        target: NDArray[np.float32],
        *,
        raw: bool = True,
    ) -> dict[str, float]:
        """Distances of the translated (and, with ``raw``, the untranslated) source set."""
        pairs = [("", translated), ("_raw", source)] if raw else [("", translated)]
        metrics: dict[str, float] = {}
        for suffix, images in pairs:
            metrics[f"{prefix}/frechet_distance{suffix}"] = fid(
                images, target, extractor=self.extractor
            ).value
            metrics[f"{prefix}/histogram_kl{suffix}"] = histogram_kl(target, images)
            metrics[f"{prefix}/power_spectrum_distance{suffix}"] = power_spectrum_distance(
                images, target
            )
        return metrics

    def validate(self) -> dict[str, float]:
        """Compare ``F(source)`` and the untranslated source with the target (validation).

        At most ``fid.images`` whole validation images of each domain, spread evenly
        over the split, normalised by each domain's :class:`DomainScale`; ``F`` gets the
        training noise with a fixed seed per sample. Keeps the generators of the epoch
        with the lowest Fréchet distance.

        Returns
        -------
        dict
            ``val/frechet_distance`` [feature units²], ``val/histogram_kl`` [nat],
            ``val/power_spectrum_distance`` [decades], the same with ``_raw`` for the
            untranslated source (constant over epochs), and ``val/best_epoch``.
        """
        if self._val_cache is None:
            source = self.source_scale.apply(np.stack(_frames(self.source_val)))
            target = self.target_scale.apply(np.stack(_frames(self.target_val)))
            raw = self._set_metrics("val", source, source, target)
            self._val_cache = (source, target, {k: v for k, v in raw.items() if "_raw" in k})
        source, target, raw_metrics = self._val_cache
        translated = translate_images(
            self.model.F,
            np.stack(_frames(self.source_val)),
            self.source_scale,
            noise_std=self.sim_noise_std,
            seed=self.seed,
            sample_ids=self.source_val.sample_ids,
            batch_size=self.batch_size,
            device=str(self.device),
        )
        metrics = self._set_metrics("val", translated, source, target, raw=False)
        metrics.update(raw_metrics)
        score = metrics["val/frechet_distance"]
        score = math.inf if math.isnan(score) else score
        if score < self.best_score:
            self.best_score = score
            self.best_epoch = self.epoch
            self.best_state = self._generator_states()
        metrics["val/best_epoch"] = float(self.best_epoch)
        return metrics

    def _generator_states(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "F": copy.deepcopy(self.model.F.state_dict()),
            "G": copy.deepcopy(self.model.G.state_dict()),
        }

    @property
    def selected_epoch(self) -> int:
        """Epoch of the result's generators: the last, or the lowest validation FID."""
        return self.epoch if self.trial.select == "last" else self.best_epoch

    def selected_states(self) -> dict[str, dict[str, torch.Tensor]]:
        """State dicts ``{"F": ..., "G": ...}`` of the selected generators."""
        return self._generator_states() if self.trial.select == "last" else self.best_state

    def selected_generator(self, which: str = "F") -> UNetGenerator:
        """A copy of the selected ``F`` (or ``G``), in eval mode."""
        generator: UNetGenerator = copy.deepcopy(getattr(self.model, which))
        generator.load_state_dict(self.selected_states()[which])
        return generator.eval()

    # ----------------------------------------------------------- checkpointing

    def _training_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "pool_x": list(self.model.pool_x.images),
            "pool_y": list(self.model.pool_y.images),
            # CycleGAN gives both pools one private generator; saving both states is
            # harmless then (they are equal) and right if they ever differ.
            "pool_x_rng": self.model.pool_x.generator.get_state(),
            "pool_y_rng": self.model.pool_y.generator.get_state(),
            "best_state": self.best_state,
            "source_scale": self.source_scale.to_dict(),
            "target_scale": self.target_scale.to_dict(),
        }

    def _load_training_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.model.pool_x.images = [t.to(self.device) for t in state["pool_x"]]
        self.model.pool_y.images = [t.to(self.device) for t in state["pool_y"]]
        self.model.pool_x.generator.set_state(state["pool_x_rng"].cpu())
        self.model.pool_y.generator.set_state(state["pool_y_rng"].cpu())
        self.best_state = {k: dict(v) for k, v in state["best_state"].items()}

    # ---------------------------------------------------------------- testing

    def test(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Score the selected ``F`` on the test splits of source and target.

        Returns
        -------
        metrics : dict
            ``test/frechet_distance`` [feature units²], ``test/histogram_kl`` [nat],
            ``test/power_spectrum_distance`` [decades], each also ``_raw`` for the
            untranslated source, ``test/best_epoch`` (lowest validation FID) and
            ``test/selected_epoch`` (the generators scored).
        examples : dict
            ``source`` (normalised, untranslated), ``translated`` and ``target``
            (normalised) images, (K, H, W) each, with ``source_ids`` and
            ``target_ids``, for :meth:`save_artifacts`.
        """
        generator = self.selected_generator("F")
        source_set = self._image_set(self.source, self.test_ids(self.source))
        target_set = self._image_set(self.target, self.test_ids(self.target))
        raw_source = np.stack(_frames(source_set))
        source = self.source_scale.apply(raw_source)
        target = self.target_scale.apply(np.stack(_frames(target_set)))
        translated = translate_images(
            generator,
            raw_source,
            self.source_scale,
            noise_std=self.sim_noise_std,
            seed=self.seed,
            sample_ids=source_set.sample_ids,
            batch_size=self.batch_size,
            device=str(self.device),
        )
        metrics = self._set_metrics("test", translated, source, target)
        metrics["test/best_epoch"] = float(self.best_epoch)
        metrics["test/selected_epoch"] = float(self.selected_epoch)
        self.test_metrics = dict(metrics)
        shown = min(_EXAMPLES, len(source_set), len(target_set))
        examples = {
            "source": source[:shown],
            "translated": translated[:shown],
            "target": target[:shown],
            "source_ids": source_set.sample_ids[:shown],
            "target_ids": target_set.sample_ids[:shown],
        }
        return metrics, examples

    def save_artifacts(
        self, directory: str | os.PathLike[str], examples: Mapping[str, Any] | None = None
    ) -> list[Path]:
        """Write ``best.pt``, ``trial.json`` and (with examples) ``predictions.png``.

        ``best.pt`` holds ``model`` (the model config), ``F`` and ``G`` (the selected
        generators' state dicts), ``source_scale`` and ``target_scale``
        (:meth:`DomainScale.to_dict`), ``epoch`` (the selected epoch), ``sim_noise_std``,
        ``data_hashes``, ``config`` and ``key`` (if the config has one); see
        :func:`load_translator`. ``trial.json`` holds ``config``, ``history`` and
        ``test`` (the last :meth:`test` metrics).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        states = self.selected_states()
        config = self.config
        content: dict[str, Any] = {
            "model": config["model"],
            "F": states["F"],
            "G": states["G"],
            "source_scale": self.source_scale.to_dict(),
            "target_scale": self.target_scale.to_dict(),
            "epoch": self.selected_epoch,
            "sim_noise_std": self.sim_noise_std,
            "data_hashes": {name: info.hash for name, info in self.trial.datasets.items()},
            "config": config,
        }
        if self.key is not None:
            content["key"] = self.key
        torch.save(content, directory / BEST)
        record = {"config": config, "history": self.history, "test": self.test_metrics}
        (directory / "trial.json").write_text(
            json.dumps(record, indent=2, sort_keys=True, default=_json_default)
        )
        written = [directory / BEST, directory / "trial.json"]
        if examples:
            png = directory / "predictions.png"
            png.write_bytes(translation_figure(examples, self.source, self.target))
            written.append(png)
        return written


def _constant(epoch: int) -> float:
    return 1.0


def _spread(ids: NDArray[np.int64], count: int) -> NDArray[np.int64]:
    """At most ``count`` ids spread evenly over ``ids`` (over its structures, not one)."""
    if ids.size <= count:
        return ids
    picks = np.unique(np.round(np.linspace(0, ids.size - 1, count)).astype(np.int64))
    result: NDArray[np.int64] = ids[picks]
    return result


def _frames(images: ImageSet) -> list[NDArray[np.float32]]:
    return [images.frame(i) for i in range(len(images))]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def translation_figure(examples: Mapping[str, Any], source: str, target: str) -> bytes:
    """PNG with rows of source | F(source) | a target image, on the [-1, 1] scale."""
    rows = max(len(examples["source"]), 1)
    figure = Figure(figsize=(9, 3 * rows), layout="constrained")
    axes = figure.subplots(rows, 3, squeeze=False)
    shown = {"vmin": -1.0, "vmax": 1.0, "cmap": "gray"}
    for row in range(len(examples["source"])):
        left, middle, right = axes[row]
        sid, tid = int(examples["source_ids"][row]), int(examples["target_ids"][row])
        left.imshow(examples["source"][row], **shown)
        left.set_title(f"{source} #{sid} (simulation)")
        middle.imshow(examples["translated"][row], **shown)
        middle.set_title(f"F({source} #{sid})")
        right.imshow(examples["target"][row], **shown)
        right.set_title(f"{target} #{tid} (target)")
        for axis in axes[row]:
            axis.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
