"""How networks are trained: segmentation models and sweeps, CycleGAN models and sweeps.

Defaults are the seeds': seed 001's training recipe, seed 003's and 004's networks,
seed 000's CycleGAN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, model_validator

from hpcbench.defects import DefectName
from hpcbench.study._base import Slug, Spec
from hpcbench.study.data import Fidelity
from hpcbench.study.params import NonNegativeFloat, PositiveFloat, at_least, at_most

__all__ = [
    "AugmentSpec",
    "Axes",
    "ClassName",
    "CycleGANAugment",
    "CycleGANAxes",
    "CycleGANConfig",
    "CycleGANSettings",
    "CycleGANSpec",
    "DetectionSpec",
    "FCNConfig",
    "FIDSpec",
    "LossSpec",
    "ModelSpec",
    "NetworkConfig",
    "ResNetUNetConfig",
    "SegmentationSettings",
    "SplitSpec",
    "TrainSpec",
    "UNetConfig",
]


# ------------------------------------------------------------------------- training


class NetworkConfig(Spec):
    """What every segmentation network config shares: ``depth`` 2x down-samplings."""

    depth: int

    @property
    def output_stride(self) -> int:
        """The factor an input's height and width must be divisible by: ``2**depth``."""
        return int(2**self.depth)


class FCNConfig(NetworkConfig):
    """The seed-004 encoder-decoder FCN (Ziatdinov et al. 2017).

    ``depth`` levels of one 3x3 convolution + ReLU + 2x2 max-pool with ``width``,
    ``2 width``, ``4 width`` ... filters, the same filters in reverse with 2x up-sampling,
    then a 3x3 and a 1x1 convolution to the classes (8/16/32 filters by default).
    """

    architecture: Literal["fcn"]
    width: Annotated[int, Field(ge=1, le=1024)] = 8
    depth: Annotated[int, Field(ge=1, le=6)] = 3
    batch_norm: bool = False


class UNetConfig(NetworkConfig):
    """G-UNet (``unet``) and Attention-UNet (``attention_unet``) of seed 003 (Fuhr et al.).

    ``depth`` down-sampling levels of double 3x3 convolutions (+ batch norm + ReLU) with
    ``width · 2^i`` feature maps and a ``width · 2^depth`` bottleneck: the paper's
    64→512 + 1024 is ``width: 64, depth: 4``. ``upsampling`` is a 2x2 stride-2
    transposed convolution or bilinear interpolation.
    """

    architecture: Literal["unet", "attention_unet"]
    width: Annotated[int, Field(ge=1, le=1024)] = 64
    depth: Annotated[int, Field(ge=1, le=6)] = 4
    upsampling: Literal["transpose", "bilinear"] = "transpose"


class ResNetUNetConfig(NetworkConfig):
    """A UNet whose encoder is a ResNet (He et al. 2016), built here, randomly initialised.

    ``layers`` picks ResNet-18/34 (basic blocks) or 50/101/152 (bottlenecks); ``depth``
    (1-5) is the number of encoder stages used (seed 001 used ResNet-18 with 3);
    ``width`` is the stem width (64 in the published ResNets). ``weights`` is a local
    file of ResNet weights in torchvision's key layout (nothing is downloaded).
    """

    architecture: Literal["resnet_unet"]
    layers: Literal[18, 34, 50, 101, 152] = 18
    width: Annotated[int, Field(ge=1, le=1024)] = 64
    depth: Annotated[int, Field(ge=1, le=5)] = 5
    weights: str | None = None


ModelSpec = Annotated[
    Annotated[FCNConfig, Tag("fcn")]
    | Annotated[UNetConfig, Tag("unet")]
    | Annotated[ResNetUNetConfig, Tag("resnet_unet")],
    Discriminator(
        lambda value: _architecture_tag(value),
        custom_error_type="invalid_architecture",
        custom_error_message=("architecture must be one of fcn, unet, attention_unet, resnet_unet"),
    ),
]


def _architecture_tag(value: Any) -> str | None:
    arch = (
        value.get("architecture")
        if isinstance(value, Mapping)
        else getattr(value, "architecture", None)
    )
    if arch == "attention_unet":
        return "unet"
    return None if arch is None else str(arch)


ClassName = DefectName | Literal["lattice"]


class LossSpec(Spec):
    """Weights of the training loss terms (seed 001: cross-entropy + soft F1).

    ``class_weights: balanced`` weighs each class's cross-entropy by the inverse of its
    pixel frequency in the trial's training images, ``N / (C · n_c)`` (scikit-learn's
    "balanced"): where atoms or defects cover ~1 % of the pixels, the unweighted loss
    has an all-background optimum that small networks can fall into. Measured on the
    quickstart (10 epochs, lr 1e-2): it did not cure the FCN's collapse at 1e3-1e4 e/Å²
    (F1 0 -> 0.015) and hurt elsewhere (FCN 1e5: 0.63 -> collapsed; G-UNet 1e3: 0.61 ->
    0.44); ``batch_norm: true`` on the FCN did cure it (F1 0.56 at 1e3, 0.81 at 1e4).
    """

    cross_entropy: NonNegativeFloat = 1.0
    soft_f1: NonNegativeFloat = 1.0
    class_weights: Literal["none", "balanced"] = "none"

    @model_validator(mode="after")
    def _some(self) -> Self:
        if self.cross_entropy == 0 and self.soft_f1 == 0:
            raise ValueError("at least one of cross_entropy, soft_f1 must be > 0")
        return self


class AugmentSpec(Spec):
    """Training-time augmentation: a random crop, then a random rotation by 90° and flip.

    ``crop`` [px] is the training patch (rows, cols); ``null`` trains on whole images.
    Validation and test images are never augmented.
    """

    crop: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] | None = None
    rot90: bool = True
    flips: bool = True


class SplitSpec(Spec):
    """Fractions of each dataset's *structures* held out for validation and test.

    Splitting by structure keeps crops of one simulated structure on one side, so the
    test split never shares a supercell with training. The split depends only on the
    study seed and the dataset, never on the trial.
    """

    validation: Annotated[float, at_least(0.0, strict=True), at_most(0.5)] = 0.1
    test: Annotated[float, at_least(0.0, strict=True), at_most(0.5)] = 0.1


class DetectionSpec(Spec):
    """Atom finding on class probability maps for detection metrics.

    ``method`` is Laplacian-of-Gaussian blobs (seed 004) or local maxima, on each
    class's probability map kept where that class is the most probable one (so
    detections agree with the pixel scores; for two classes that is p ≥ 0.5, seed 004's
    threshold) and at least ``threshold`` (seed 004 used up to 0.8-0.9 on binary maps);
    detections within ``match_radius`` [Å] of a labelled site are matched one-to-one
    (Hungarian algorithm).
    """

    method: Literal["log", "peaks"] = "log"
    threshold: Annotated[float, at_least(0.0), at_most(1.0)] = 0.0
    match_radius: PositiveFloat = 0.5


class Axes(Spec):
    """Ablation axes: each listed value replaces the fixed setting of the same name.

    The trials are the Cartesian product of the axes times ``repeats`` seeds.
    ``dose`` ``null`` means the dataset's own noisy images; a number re-noises the
    stored clean images at that dose [e/Å²] on the fly. ``fidelity`` (HRTEM datasets)
    trains and validates on the dataset's stored images of that simulation fidelity
    (``null``: its own), re-noised with each image's own corruption (or the trial's
    dose); test sets keep their own fidelity.
    """

    model: Annotated[list[Slug], Field(min_length=1)] | None = None
    dataset: Annotated[list[Slug], Field(min_length=1)] | None = None
    train_size: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] | None = None
    dose: Annotated[list[PositiveFloat | None], Field(min_length=1)] | None = None
    fidelity: Annotated[list[Fidelity | None], Field(min_length=1)] | None = None
    classes: (
        Annotated[list[Annotated[list[ClassName], Field(min_length=1)]], Field(min_length=1)] | None
    ) = None
    learning_rate: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None

    def names(self) -> list[str]:
        """The axes that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class SegmentationSettings(Spec):
    """The training settings every segmentation trial carries as they are.

    Every field here is a field of :class:`hpcbench.plan.SegmentationTrial` too, filled
    from the study's ``train`` section (an ablation axis of the same name overrides it
    per condition): a new training hyper-parameter is one field here and the trainer
    code that reads it.

    ``precision`` is the arithmetic of the training forward and backward passes:
    ``fp32``, or mixed precision under :func:`torch.autocast` with ``bf16`` or ``fp16``
    (with a gradient scaler); validation and test always run in fp32. On an H200 the
    31 M-parameter G-UNet (256² px, batch 16) trained at 592 images/s in bf16 and 431 in
    fp32 through the trainer (``benchmarks/gpu_train_check.py``).
    """

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 25
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 16
    learning_rate: PositiveFloat = 1e-3
    lr_decay: Annotated[float, at_least(0.0, strict=True), at_most(1.0)] = 0.8
    loss: LossSpec = LossSpec()
    select: Literal["loss", "f1"] = "loss"
    augment: AugmentSpec = AugmentSpec()
    split: SplitSpec = SplitSpec()
    detection: DetectionSpec = DetectionSpec()
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


class TrainSpec(SegmentationSettings):
    """Training sweeps: models, fixed settings, ablation axes and repeats.

    Defaults follow seed 001 (Rangel DaCosta et al. 2024): Adam, learning rate 1e-3
    decayed by 0.8 each epoch, batch 16, 25 epochs, cross-entropy + soft-F1 loss, the
    checkpoint with the lowest validation loss kept, at least 5 seeds per condition.
    ``model`` and ``dataset`` default to the first declared; ``classes`` to the
    training dataset's label classes (``lattice`` first when it labels the lattice);
    ``train_size`` to the whole training split. Class ``classes[i]`` is output ``i + 1``
    of the network, 0 is background, so N = len(classes) + 1 as in seed 003.
    """

    models: Annotated[dict[Slug, ModelSpec], Field(min_length=1)]
    model: Slug | None = None
    dataset: Slug | None = None
    classes: Annotated[list[ClassName], Field(min_length=1)] | None = None
    train_size: Annotated[int, Field(ge=1)] | None = None
    dose: PositiveFloat | None = None
    fidelity: Fidelity | None = None
    test_sets: list[Slug] = Field(default_factory=list)
    axes: Axes = Axes()
    repeats: Annotated[int, Field(ge=1, le=1000)] = 5

    @model_validator(mode="after")
    def _known_models(self) -> Self:
        names = [self.model] if self.model is not None else []
        names += self.axes.model or []
        unknown = sorted({name for name in names if name not in self.models})
        if unknown:
            raise ValueError(
                f"model {', '.join(unknown)} is not declared in models ({', '.join(self.models)})"
            )
        if self.split.validation + self.split.test >= 1.0:
            raise ValueError("split.validation + split.test must leave structures to train on")
        return self


# ------------------------------------------------------------------------- CycleGAN


class CycleGANConfig(Spec):
    """A CycleGAN variant (seed 000): generator/discriminator sizes and loss weights.

    Defaults are the paper's networks: pix2pix U-Net generators (``gen_width`` 64,
    ``gen_depth`` 8, instance norm, dropout 0.5), 70x70 PatchGAN discriminators
    (``disc_width`` 64, ``disc_layers`` 3) on the image and on its log power spectrum,
    LSGAN losses with ``fft_weight`` 1 on the FFT discriminators' term, L1 cycle loss
    ``lambda_cyc`` 10, L2 identity loss ``lambda_id`` 5, and a history pool of 50 fakes.
    """

    gen_width: Annotated[int, Field(ge=1, le=1024)] = 64
    gen_depth: Annotated[int, Field(ge=1, le=8)] = 8
    disc_width: Annotated[int, Field(ge=1, le=1024)] = 64
    disc_layers: Annotated[int, Field(ge=1, le=6)] = 3
    norm: Literal["instance", "batch", "none"] = "instance"
    dropout: Annotated[float, at_least(0.0), at_most(0.95)] = 0.5
    lambda_cyc: NonNegativeFloat = 10.0
    lambda_id: NonNegativeFloat = 5.0
    identity: Literal["l2", "l1"] = "l2"
    fft_weight: NonNegativeFloat = 1.0
    pool_size: Annotated[int, Field(ge=0, le=10_000)] = 50


class CycleGANAugment(Spec):
    """Random rotations by 90° and flips of the training patches of both domains."""

    rot90: bool = True
    flips: bool = True


class FIDSpec(Spec):
    """How the CycleGAN's Fréchet distances are computed.

    ``features`` names the extractor: ``spectral-v1`` (offline, no weights) or
    ``inception`` (pytorch-fid's Inception-v3, from the local weights file given by
    ``--inception-weights`` or ``HPCBENCH_INCEPTION_WEIGHTS`` at run time). ``images``
    caps the validation images per set of the per-epoch metrics.
    """

    features: Literal["spectral-v1", "inception"] = "spectral-v1"
    images: Annotated[int, Field(ge=2, le=100_000)] = 64


class CycleGANAxes(Spec):
    """CycleGAN ablation axes (the trials are their product times ``repeats``)."""

    model: Annotated[list[Slug], Field(min_length=1)] | None = None

    def names(self) -> list[str]:
        """The axes that are set, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class CycleGANSettings(Spec):
    """The training settings every CycleGAN trial carries as they are.

    Every field here is a field of :class:`hpcbench.plan.CycleGANTrial` too, filled from
    the study's ``cyclegan`` section: a new CycleGAN training hyper-parameter is one field
    here (a network one, one field of :class:`CycleGANConfig`) and the code that reads it.
    """

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 297
    epochs_decay: Annotated[int, Field(ge=1, le=10_000)] = 149
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 1
    learning_rate: PositiveFloat = 2e-4
    betas: tuple[
        Annotated[float, at_least(0.0), at_most(0.9999)],
        Annotated[float, at_least(0.0), at_most(0.9999)],
    ] = (0.5, 0.999)
    patch_size: Annotated[int, Field(ge=8, le=4096)] = 256
    sim_noise_std: NonNegativeFloat = 0.1
    saturation: PositiveFloat = 3.5
    augment: CycleGANAugment = CycleGANAugment()
    select: Literal["last", "fid"] = "last"


class CycleGANSpec(CycleGANSettings):
    """Unpaired translation between simulated (``source``) and experiment-like images.

    Seed 000's workflow: train a CycleGAN on the simulated ``source`` dataset (domain Y)
    and the unlabelled ``target`` images (domain X), then translate the simulated
    training set with the generator F: Y → X (a ``translate`` entry) and train the
    segmentation networks on the translated images with the original labels. Only the
    training splits of both datasets are trained on (the target's test split stays
    unseen for the segmentation networks' held-out scores).

    Each domain is saturated at ±``saturation`` σ of its training pixels and mapped to
    [-1, 1]; ``sim_noise_std`` Gaussian noise (in those units) is added to the
    simulations. Training uses random ``patch_size`` [px] crops, ``batch_size`` 1 and
    Adam (``learning_rate``, ``betas``) for ``epochs`` epochs, the last ``epochs_decay``
    of them with a linear decay to zero (seed 000: 297 epochs, 149 decaying). The
    paper's learning rate of 0.032 reads as a typo for a GAN under Adam: the default is
    CycleGAN's 2e-4. ``select: fid`` keeps the generators of the epoch with the lowest
    validation FID instead of the last ones. ``train_size``/``target_size`` cap the
    training images of each domain (default: the whole training split).
    """

    source: Slug
    target: Slug
    models: Annotated[dict[Slug, CycleGANConfig], Field(min_length=1)]
    model: Slug | None = None
    train_size: Annotated[int, Field(ge=1)] | None = None
    target_size: Annotated[int, Field(ge=1)] | None = None
    fid: FIDSpec = FIDSpec()
    axes: CycleGANAxes = CycleGANAxes()
    repeats: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [self.model] if self.model is not None else []
        names += self.axes.model or []
        unknown = sorted({name for name in names if name not in self.models})
        if unknown:
            raise ValueError(
                f"model {', '.join(unknown)} is not declared in models ({', '.join(self.models)})"
            )
        if self.epochs_decay > self.epochs:
            raise ValueError(
                f"epochs_decay ({self.epochs_decay}) must not exceed epochs ({self.epochs})"
            )
        if self.source == self.target:
            raise ValueError("source and target must be different datasets")
        return self

    def default_model(self) -> str:
        """``model``, else the first declared model."""
        return self.model if self.model is not None else next(iter(self.models))
