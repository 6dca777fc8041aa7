"""Segmentation networks in plain PyTorch, built from the typed configs of a study.

:func:`build_model` turns a :data:`hpcbench.study.ModelSpec` into a module:

``fcn``
    :class:`FCN`, the encoder-decoder FCN of seed 004 (Ziatdinov et al., ACS Nano 2017).
``unet`` / ``attention_unet``
    :class:`UNet` / :class:`AttentionUNet`, G-UNet and A-UNet of seed 003 (Fuhr et al.).
``resnet_unet``
    :class:`ResNetUNet`, a UNet with a ResNet-18/34/50/101/152 encoder (He et al. 2016)
    built here in torchvision's key layout; weights come only from a local file.

Every model maps images ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``
(no softmax); ``H`` and ``W`` must be divisible by :func:`output_stride`. This package
imports only torch and :mod:`hpcbench.study`.
"""

from __future__ import annotations

from torch import nn

from hpcbench.models.cyclegan import (
    LOSS_NAMES,
    CycleGAN,
    CycleGANLosses,
    ImagePool,
    PatchDiscriminator,
    UNetGenerator,
    linear_decay_schedule,
    log_power_spectrum,
    make_optimizers,
)
from hpcbench.models.fcn import FCN
from hpcbench.models.unet import (
    AttentionGate,
    AttentionUNet,
    BasicBlock,
    Bottleneck,
    DoubleConv,
    ResNetEncoder,
    ResNetUNet,
    UNet,
)
from hpcbench.study import CycleGANConfig, FCNConfig, ModelSpec, ResNetUNetConfig, UNetConfig

__all__ = [
    "FCN",
    "LOSS_NAMES",
    "AttentionGate",
    "AttentionUNet",
    "BasicBlock",
    "Bottleneck",
    "CycleGAN",
    "CycleGANLosses",
    "DoubleConv",
    "ImagePool",
    "PatchDiscriminator",
    "ResNetEncoder",
    "ResNetUNet",
    "UNet",
    "UNetGenerator",
    "build_cyclegan",
    "build_generator",
    "build_model",
    "count_parameters",
    "linear_decay_schedule",
    "log_power_spectrum",
    "make_optimizers",
    "output_stride",
]


def build_model(config: ModelSpec, *, in_channels: int = 1, num_classes: int) -> nn.Module:
    """Build the network a model config describes, randomly initialised.

    Parameters
    ----------
    config : FCNConfig or UNetConfig or ResNetUNetConfig
        The ``model`` section of a study's training config.
    in_channels : int
        Channels of the input images (1 for one detector).
    num_classes : int
        Number of output classes, background included.

    Returns
    -------
    torch.nn.Module
        Maps ``(N, in_channels, H, W)`` float images to logits
        ``(N, num_classes, H, W)``; ``H`` and ``W`` divisible by :func:`output_stride`.

    Raises
    ------
    ValueError
        For ``in_channels`` or ``num_classes`` below 1, or an unknown config.
    FileNotFoundError
        If a ResNet config names a weights file that does not exist.
    """
    if in_channels < 1 or num_classes < 1:
        raise ValueError(
            f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}"
        )
    if isinstance(config, FCNConfig):
        return FCN(
            in_channels,
            num_classes,
            width=config.width,
            depth=config.depth,
            batch_norm=config.batch_norm,
        )
    if isinstance(config, UNetConfig):
        cls = AttentionUNet if config.architecture == "attention_unet" else UNet
        return cls(
            in_channels,
            num_classes,
            width=config.width,
            depth=config.depth,
            upsampling=config.upsampling,
        )
    if isinstance(config, ResNetUNetConfig):
        return ResNetUNet(
            in_channels,
            num_classes,
            layers=config.layers,
            width=config.width,
            depth=config.depth,
            weights=config.weights,
        )
    raise ValueError(f"unknown model config {config!r}")


def build_generator(config: CycleGANConfig, *, channels: int = 1) -> UNetGenerator:
    """An untrained CycleGAN generator as :func:`build_cyclegan` builds ``F`` and ``G``.

    Parameters
    ----------
    config : CycleGANConfig
        The CycleGAN variant.
    channels : int
        Image channels in and out.
    """
    return UNetGenerator(
        channels,
        channels,
        width=config.gen_width,
        depth=config.gen_depth,
        norm=config.norm,
        dropout=config.dropout,
    )


def build_cyclegan(config: CycleGANConfig, *, channels: int = 1, pool_seed: int = 0) -> CycleGAN:
    """Build the six networks of a CycleGAN variant (seed 000), randomly initialised.

    Parameters
    ----------
    config : CycleGANConfig
        Generator and discriminator sizes, norm, dropout, loss weights, pool size.
    channels : int
        Image channels of both domains.
    pool_seed : int, optional
        Seed of the image pools' private generator.

    Returns
    -------
    CycleGAN
        Generators ``G: X → Y`` and ``F: Y → X``, image and FFT discriminators, losses.
    """
    return CycleGAN(
        channels,
        gen_width=config.gen_width,
        gen_depth=config.gen_depth,
        disc_width=config.disc_width,
        disc_layers=config.disc_layers,
        norm=config.norm,
        dropout=config.dropout,
        losses=CycleGANLosses(
            lambda_cyc=config.lambda_cyc,
            lambda_id=config.lambda_id,
            identity=config.identity,
            fft_weight=config.fft_weight,
        ),
        pool_size=config.pool_size,
        pool_seed=pool_seed,
    )


def output_stride(config: ModelSpec) -> int:
    """The factor an input's height and width must be divisible by.

    Parameters
    ----------
    config : FCNConfig or UNetConfig or ResNetUNetConfig
        A model config.

    Returns
    -------
    int
        ``2**depth`` for every architecture (for the ResNet UNet the stride-2 stem is the
        first of the ``depth`` stages).
    """
    return config.output_stride


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of a module (shared parameters counted once).

    Parameters
    ----------
    module : torch.nn.Module
        Any module.
    trainable_only : bool
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        Total number of parameter elements (buffers such as batch-norm running
        statistics are not parameters).
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
