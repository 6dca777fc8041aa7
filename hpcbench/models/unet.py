"""UNet segmentation networks: G-UNet, Attention-UNet and a UNet with a ResNet encoder.

G-UNet and A-UNet are the defect-segmentation networks of seed 003 (Fuhr et al., digital
twins of defects in monolayer MX2), built on the UNet of Ronneberger, O., Fischer, P. &
Brox, T., "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015,
arXiv:1505.04597.

:class:`UNet` (G-UNet)
    ``depth`` down-sampling levels of double convolutions (two 3x3 convolutions with
    padding 1, each followed by batch normalisation and ReLU) with ``width * 2**i``
    feature maps, 2x2 max-pooling between levels, and a bottleneck double convolution
    with ``width * 2**depth`` feature maps. Each of the ``depth`` up-sampling blocks
    halves the channels ``C → C/2`` with a 2x2 stride-2 transposed convolution or with
    bilinear x2 interpolation followed by a 1x1 convolution, concatenates the skip of the
    same resolution (``C/2`` channels) and applies a double convolution ``C → C/2``. A 1x1
    convolution classifies every pixel. ``width=64, depth=4`` is the paper's network:
    64, 128, 256, 512, bottleneck 1024, then 512, 256, 128, 64.

:class:`AttentionUNet` (A-UNet)
    The same network with an additive attention gate (Oktay, O. et al., "Attention
    U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv:1804.03999) on every
    skip: with ``g`` the up-sampled decoder features and ``x`` the skip,
    ``alpha = sigmoid(BN(conv3x3(ReLU(BN(W_g g) + BN(W_x x)))))`` (``W_g``, ``W_x`` 1x1
    convolutions to ``F_int = max(1, C_skip // 2)`` channels) and the skip is replaced by
    ``x * alpha`` before concatenation. The maps ``alpha`` of the last forward pass are
    kept in :attr:`AttentionUNet.attention_maps`.

:class:`ResNetUNet`
    A UNet whose encoder is a ResNet (He, K., Zhang, X., Ren, S. & Sun, J., "Deep Residual
    Learning for Image Recognition", CVPR 2016, arXiv:1512.03385) built here with
    torchvision's module names, so that a torchvision ``resnet*`` state dict loads into
    :attr:`ResNetUNet.encoder`. ``depth`` stages are used: 1 the stem (7x7 stride-2 conv +
    BN + ReLU, 1/2 resolution), 2 max-pool + ``layer1`` (1/4), 3 ``layer2`` (1/8),
    4 ``layer3`` (1/16), 5 ``layer4`` (1/32). The decoder goes up one stage at a time:
    bilinear x2 up-sampling, concatenation of the next-shallower stage's features and a
    double convolution, with widths ``(256, 128, 64, 32, 16)[-depth:]`` scaled by
    ``width / 64``; its last block returns to the input resolution without a skip, and a
    1x1 convolution gives the logits.

All networks map ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)`` (no
softmax) and need ``H`` and ``W`` divisible by ``2**depth``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hpcbench.models.fcn import _check_input

__all__ = [
    "RESNET_LAYERS",
    "AttentionGate",
    "AttentionUNet",
    "BasicBlock",
    "Bottleneck",
    "DoubleConv",
    "ResNetEncoder",
    "ResNetUNet",
    "UNet",
    "adapt_resnet_state_dict",
]

Upsampling = Literal["transpose", "bilinear"]


class DoubleConv(nn.Sequential):
    """Two (3x3 convolution with padding 1, batch norm, ReLU) layers.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels of both convolutions.

    Notes
    -----
    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)``. The convolutions have
    no bias (the batch norm that follows has one).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) weighting a skip connection.

    Parameters
    ----------
    gate_channels : int
        Channels ``F_g`` of the gating signal ``g`` (the up-sampled decoder features).
    skip_channels : int
        Channels ``F_l`` of the skip features ``x``.
    inter_channels : int
        Channels ``F_int`` of the joint embedding.

    Notes
    -----
    ``forward(g, x)`` takes ``g`` of shape ``(N, F_g, H, W)`` and ``x`` of shape
    ``(N, F_l, H, W)`` and returns ``(x * alpha, alpha)`` with ``alpha`` in ``(0, 1)``
    of shape ``(N, 1, H, W)``.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.W_g = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, kernel_size=1),
            nn.BatchNorm2d(inter_channels),
        )
        self.W_x = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, kernel_size=1),
            nn.BatchNorm2d(inter_channels),
        )
        self.psi = nn.Sequential(
            nn.Conv2d(inter_channels, 1, kernel_size=3, padding=1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate the skip features.

        Parameters
        ----------
        g : torch.Tensor
            Gating signal, shape ``(N, F_g, H, W)``.
        x : torch.Tensor
            Skip features, shape ``(N, F_l, H, W)``.

        Returns
        -------
        gated : torch.Tensor
            ``x * alpha``, shape ``(N, F_l, H, W)``.
        alpha : torch.Tensor
            Attention coefficients in ``(0, 1)``, shape ``(N, 1, H, W)``.
        """
        alpha: torch.Tensor = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return x * alpha, alpha


class _Up(nn.Module):
    """Up-sampling block ``C → C/2``: up-sample, (gate the skip), concatenate, double conv."""

    def __init__(self, in_channels: int, upsampling: Upsampling, *, attention: bool) -> None:
        super().__init__()
        out_channels = in_channels // 2
        self.up: nn.Module
        if upsampling == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        elif upsampling == "bilinear":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )
        else:
            raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
        self.gate = (
            AttentionGate(out_channels, out_channels, max(1, out_channels // 2))
            if attention
            else None
        )
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        up: torch.Tensor = self.up(x)
        alpha = None
        if self.gate is not None:
            skip, alpha = self.gate(up, skip)
        out: torch.Tensor = self.conv(torch.cat([skip, up], dim=1))
        return out, alpha


class UNet(nn.Module):
    """G-UNet of seed 003 (Fuhr et al.), a UNet with batch-normalised double convolutions.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Number of output classes ``K`` (background included).
    width : int
        Feature maps of the first level; level ``i`` has ``width * 2**i`` and the
        bottleneck ``width * 2**depth`` (paper: 64).
    depth : int
        Number of down-sampling (and of up-sampling) steps (paper: 4).
    upsampling : {"transpose", "bilinear"}
        2x2 stride-2 transposed convolution, or bilinear x2 interpolation followed by a
        1x1 convolution, to go up one level and halve the channels.

    Attributes
    ----------
    encoder : torch.nn.ModuleList
        ``depth`` double convolutions (the first without, the others after, a max-pool).
    bottleneck : torch.nn.Sequential
        Max-pool + double convolution to ``width * 2**depth`` channels.
    decoder : torch.nn.ModuleList
        ``depth`` up-sampling blocks, deepest first.
    head : torch.nn.Conv2d
        1x1 convolution ``width → num_classes``.

    Notes
    -----
    ``forward`` maps ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``;
    ``H`` and ``W`` must be divisible by ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 64,
        depth: int = 4,
        upsampling: Upsampling = "transpose",
        attention: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1 or depth < 1:
            raise ValueError(
                "in_channels, num_classes, width and depth must be >= 1, got "
                f"{in_channels}, {num_classes}, {width}, {depth}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.depth = depth
        self.upsampling = upsampling
        self.attention = attention

        self.encoder = nn.ModuleList()
        channels = in_channels
        for i in range(depth):
            w = width * 2**i
            conv = DoubleConv(channels, w)
            self.encoder.append(conv if i == 0 else nn.Sequential(nn.MaxPool2d(2), conv))
            channels = w
        self.bottleneck = nn.Sequential(nn.MaxPool2d(2), DoubleConv(channels, width * 2**depth))
        self.decoder = nn.ModuleList(
            _Up(width * 2 ** (i + 1), upsampling, attention=attention)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)
        self.attention_maps: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``, ``H`` and ``W`` divisible by
            ``2**depth``.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes, H, W)``.
        """
        _check_input(x, self.in_channels, 2**self.depth)
        skips: list[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(x)
        maps: list[torch.Tensor] = []
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x, alpha = up(x, skip)
            if alpha is not None:
                maps.append(alpha.detach())
        self.attention_maps = maps
        out: torch.Tensor = self.head(x)
        return out


class AttentionUNet(UNet):
    """A-UNet of seed 003: the G-UNet with an additive attention gate on every skip.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Number of output classes ``K`` (background included).
    width : int
        Feature maps of the first level (paper: 64).
    depth : int
        Number of down-sampling (and of up-sampling) steps (paper: 4).
    upsampling : {"transpose", "bilinear"}
        How a decoder block goes up one level (see :class:`UNet`).

    Attributes
    ----------
    attention_maps : list of torch.Tensor
        Filled by every forward pass: the detached attention coefficients in ``(0, 1)``
        of each decoder level, deepest first, level ``j`` of shape
        ``(N, 1, H / 2**(depth - 1 - j), W / 2**(depth - 1 - j))`` (the last one at full
        resolution).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 64,
        depth: int = 4,
        upsampling: Upsampling = "transpose",
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            width=width,
            depth=depth,
            upsampling=upsampling,
            attention=True,
        )


# ------------------------------------------------------------------------ ResNet UNet


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and an identity (or 1x1) shortcut.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels (``expansion = 1``).
    stride : int
        Stride of the first convolution (2 halves the resolution).
    downsample : torch.nn.Module or None
        Shortcut projection (1x1 convolution + batch norm) when the shape changes.
    """

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual mapping, ``(N, inplanes, H, W) → (N, planes, H/stride, W/stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """ResNet bottleneck block (v1.5: stride on the 3x3 convolution), ``expansion = 4``.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Inner channels; the block outputs ``4 * planes``.
    stride : int
        Stride of the 3x3 convolution (2 halves the resolution).
    downsample : torch.nn.Module or None
        Shortcut projection (1x1 convolution + batch norm) when the shape changes.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual mapping, ``(N, inplanes, H, W) → (N, 4 planes, H/stride, W/stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


#: Block type and blocks per layer of the published ResNets.
RESNET_LAYERS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNetEncoder(nn.Module):
    """The first ``depth`` stages of a ResNet, with torchvision's module names.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    layers : {18, 34, 50, 101, 152}
        Which ResNet.
    width : int
        Stem width (64 in the published ResNets); ``layer1..4`` have ``width``,
        ``2 width``, ``4 width``, ``8 width`` planes (times 4 output channels for
        bottleneck blocks).
    depth : int
        Stages built (1-5): the stem (``conv1``, ``bn1``, ``relu``), then ``maxpool`` +
        ``layer1``, ``layer2``, ``layer3``, ``layer4``. Layers past ``depth`` are not
        built and not in the state dict.

    Attributes
    ----------
    channels : list of int
        Output channels of each stage.

    Notes
    -----
    ``forward`` maps ``(N, in_channels, H, W)`` to a list of ``depth`` feature maps, stage
    ``s`` (1-based) of shape ``(N, channels[s-1], H / 2**s, W / 2**s)``.
    """

    def __init__(
        self, in_channels: int = 1, *, layers: int = 18, width: int = 64, depth: int = 5
    ) -> None:
        super().__init__()
        if layers not in RESNET_LAYERS:
            raise ValueError(f"layers must be one of {sorted(RESNET_LAYERS)}, got {layers}")
        if not 1 <= depth <= 5:
            raise ValueError(f"depth must be 1-5, got {depth}")
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels}, {width}")
        block, counts = RESNET_LAYERS[layers]
        self.in_channels = in_channels
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.channels = [width]
        if depth >= 2:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = width
        for i in range(depth - 1):
            layer = self._make_layer(block, width * 2**i, counts[i], stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", layer)
            self.channels.append(self._inplanes)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules: list[nn.Module] = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * block.expansion
        modules.extend(block(self._inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every stage.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``.

        Returns
        -------
        list of torch.Tensor
            ``depth`` maps, stage ``s`` of shape ``(N, channels[s-1], H/2**s, W/2**s)``.
        """
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        for i in range(1, self.depth):
            if i == 1:
                x = self.maxpool(x)
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


class ResNetUNet(nn.Module):
    """UNet with a ResNet encoder (He et al. 2016) built here, optionally pre-trained.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Number of output classes ``K`` (background included).
    layers : {18, 34, 50, 101, 152}
        Which ResNet encoder.
    width : int
        Stem width (64 in the published ResNets); the decoder widths
        ``(256, 128, 64, 32, 16)[-depth:]`` are scaled by ``width / 64`` (at least 4).
    depth : int
        Encoder stages used (1-5); the output stride is ``2**depth``.
    weights : str or pathlib.Path or None
        Local file of ResNet weights in torchvision's key layout (see
        :meth:`load_encoder_weights`); ``None`` keeps the random He initialisation.

    Attributes
    ----------
    encoder : ResNetEncoder
        The ResNet stages (torchvision names: ``conv1``, ``bn1``, ``layer1.0.conv1`` ...).
    decoder : torch.nn.ModuleList
        ``depth`` double convolutions, deepest first; the last is at full resolution.
    head : torch.nn.Conv2d
        1x1 convolution to ``num_classes``.

    Notes
    -----
    ``forward`` maps ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``;
    ``H`` and ``W`` must be divisible by ``2**depth``. Up-sampling is bilinear
    (``align_corners=False``). Convolutions are initialised with
    ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, batch norms with weight 1
    and bias 0 (as torchvision's ResNets).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        layers: int = 18,
        width: int = 64,
        depth: int = 5,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.encoder = ResNetEncoder(in_channels, layers=layers, width=width, depth=depth)
        widths = [max(4, round(w * width / 64)) for w in (256, 128, 64, 32, 16)[-depth:]]
        skips = [*reversed(self.encoder.channels[:-1]), 0]
        self.decoder = nn.ModuleList()
        channels = self.encoder.channels[-1]
        for w, skip in zip(widths, skips, strict=True):
            self.decoder.append(DoubleConv(channels + skip, w))
            channels = w
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)
        self._init_weights()
        if weights is not None:
            self.load_encoder_weights(weights)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``, ``H`` and ``W`` divisible by
            ``2**depth``.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes, H, W)``.
        """
        _check_input(x, self.in_channels, 2**self.depth)
        features: list[torch.Tensor] = self.encoder(x)
        out = features[-1]
        skips: list[torch.Tensor | None] = [*reversed(features[:-1]), None]
        for block, skip in zip(self.decoder, skips, strict=True):
            size = (out.shape[2] * 2, out.shape[3] * 2) if skip is None else skip.shape[2:]
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            if skip is not None:
                out = torch.cat([out, skip], dim=1)
            out = block(out)
        logits: torch.Tensor = self.head(out)
        return logits

    def load_encoder_weights(self, path: str | Path) -> None:
        """Load ResNet weights in torchvision's key layout into :attr:`encoder`.

        ``fc.*`` keys and the keys of layers this encoder does not build are dropped.
        A 3-channel ``conv1.weight`` of shape ``(width, 3, 7, 7)`` is adapted to
        ``in_channels``: summed over the channel axis for 1 channel; for other counts
        each channel gets that sum divided by ``in_channels`` (so that a uniform input
        gives the same response); 3-channel weights load unchanged into 3 channels. Every
        encoder key must be present with its shape (``num_batches_tracked`` buffers may
        be absent).

        Parameters
        ----------
        path : str or pathlib.Path
            A file written by :func:`torch.save` of a ``{name: tensor}`` state dict,
            read with ``torch.load(path, map_location="cpu", weights_only=True)``.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not a state dict, or has missing or unexpected keys or
            tensors of the wrong shape; the message starts with the path.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ResNet weights file not found")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read a state dict: {exc}") from exc
        if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
        ):
            raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
        state = adapt_resnet_state_dict(loaded, self.encoder, str(path))
        self.encoder.load_state_dict(state, strict=True)


def adapt_resnet_state_dict(
    state: Mapping[str, torch.Tensor], encoder: ResNetEncoder, source: str
) -> dict[str, torch.Tensor]:
    """Check and adapt a torchvision ResNet state dict to an encoder.

    Parameters
    ----------
    state : Mapping of str to torch.Tensor
        torchvision-layout state dict (``conv1.weight``, ``layer1.0.conv1.weight``,
        ``fc.weight`` ...).
    encoder : ResNetEncoder
        The encoder to load into.
    source : str
        Where ``state`` came from, to start error messages with.

    Returns
    -------
    dict of str to torch.Tensor
        Exactly the encoder's keys, ready for ``load_state_dict(strict=True)``.

    Raises
    ------
    ValueError
        On missing or unexpected keys or shape mismatches.
    """
    unbuilt = tuple(f"layer{i}." for i in range(encoder.depth, 5))
    if encoder.depth < 2:
        unbuilt = (*unbuilt, "maxpool.")
    kept = {k: v for k, v in state.items() if not k.startswith(("fc.", *unbuilt))}
    target = encoder.state_dict()
    conv1 = kept.get("conv1.weight")
    want = target["conv1.weight"]
    if conv1 is not None and conv1.ndim == 4 and conv1.shape[1] != want.shape[1]:
        if conv1.shape[1] != 3:
            raise ValueError(
                f"{source}: conv1.weight has {conv1.shape[1]} input channels; only 3-channel "
                f"weights can be adapted to {want.shape[1]}"
            )
        kept["conv1.weight"] = _adapt_conv1(conv1, int(want.shape[1]))
    missing = sorted(k for k in target if k not in kept and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in kept if k not in target)
    wrong = sorted(
        f"{k} {tuple(v.shape)} != {tuple(target[k].shape)}"
        for k, v in kept.items()
        if k in target and v.shape != target[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches {_short(wrong)}")
    if problems:
        raise ValueError(f"{source}: not ResNet weights for this encoder: {'; '.join(problems)}")
    out = {k: kept.get(k, v) for k, v in target.items()}
    return {k: v.to(dtype=target[k].dtype) for k, v in out.items()}


def _adapt_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(C, 3, k, k)`` stem weights to ``(C, in_channels, k, k)``.

    Every new channel gets the channel sum divided by ``in_channels`` (the sum itself
    for one channel), so a uniform image gives the same response as before.
    """
    total = weight.sum(dim=1, keepdim=True)
    return total.repeat(1, in_channels, 1, 1) / in_channels


def _short(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")
