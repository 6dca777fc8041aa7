"""The encoder-decoder fully convolutional network of seed 004.

Ziatdinov, M. et al., "Deep Learning of Atomically Resolved Scanning Transmission
Electron Microscopy Images: Chemical Identification and Tracking Local Transformations",
ACS Nano 11, 12742-12752 (2017).

The paper's network has an encoder of 3 convolutional layers with 8, 16 and 32 kernels
(3x3, stride 1, ReLU), each followed by 2x2 max-pooling with stride 2, a mirrored
decoder of the same convolutions with un-pooling (up-sampling) layers, and a head of a
3x3 convolution to the classes followed, with only a linear activation in between, by a
1x1 convolution from the classes to the classes. There are no skip connections.

:class:`FCN` generalises it to ``depth`` levels of ``width * 2**i`` filters (``width=8,
depth=3`` is the paper) with optional batch normalisation after every hidden
convolution. Layout for ``depth=3``::

    input (N, C_in, H, W)
    conv3x3 C_in→w   + ReLU, maxpool 2   (H/2)
    conv3x3 w→2w     + ReLU, maxpool 2   (H/4)
    conv3x3 2w→4w    + ReLU, maxpool 2   (H/8)       bottleneck: 4w channels
    up x2, conv3x3 4w→4w + ReLU          (H/4)
    up x2, conv3x3 4w→2w + ReLU          (H/2)
    up x2, conv3x3 2w→w  + ReLU          (H)
    conv3x3 w→K (linear), conv1x1 K→K    → logits (N, K, H, W)

Up-sampling is 2x nearest-neighbour interpolation (un-pooling without stored indices).
The network returns logits: softmax belongs to the loss or to inference. ``H`` and ``W``
must be divisible by ``2**depth`` (:func:`hpcbench.models.output_stride`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FCN"]


def _conv_block(in_channels: int, out_channels: int, *, batch_norm: bool) -> nn.Sequential:
    """3x3 convolution (padding 1) + optional batch norm + ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FCN(nn.Module):
    """Encoder-decoder FCN without skip connections (Ziatdinov et al. 2017).

    Parameters
    ----------
    in_channels : int
        Channels of the input images (1 for a single STEM detector).
    num_classes : int
        Number of output classes ``K`` (background included).
    width : int
        Filters of the first level; level ``i`` has ``width * 2**i`` (paper: 8).
    depth : int
        Number of convolution + max-pool levels in the encoder (paper: 3).
    batch_norm : bool
        Put a :class:`~torch.nn.BatchNorm2d` between every hidden convolution and its
        ReLU (the convolution then has no bias). The paper has none.

    Notes
    -----
    ``forward`` maps a float tensor of shape ``(N, in_channels, H, W)`` to logits of
    shape ``(N, num_classes, H, W)``; ``H`` and ``W`` must be divisible by
    ``2**depth``. The output is unnormalised (no softmax).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 8,
        depth: int = 3,
        batch_norm: bool = False,
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
        widths = [width * 2**i for i in range(depth)]

        encoder: list[nn.Module] = []
        channels = in_channels
        for w in widths:
            encoder.append(_conv_block(channels, w, batch_norm=batch_norm))
            encoder.append(nn.MaxPool2d(kernel_size=2, stride=2))
            channels = w
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = []
        for w in reversed(widths):
            decoder.append(nn.Upsample(scale_factor=2, mode="nearest"))
            decoder.append(_conv_block(channels, w, batch_norm=batch_norm))
            channels = w
        self.decoder = nn.Sequential(*decoder)

        # Pre-last 3x3 and last 1x1 convolutions with only a linear activation between.
        self.head = nn.Sequential(
            nn.Conv2d(channels, num_classes, kernel_size=3, padding=1),
            nn.Conv2d(num_classes, num_classes, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``, ``H`` and ``W`` divisible by
            ``2**depth``; intensities in arbitrary (normalised) units.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes, H, W)``.
        """
        _check_input(x, self.in_channels, 2**self.depth)
        out: torch.Tensor = self.head(self.decoder(self.encoder(x)))
        return out


def _check_input(x: torch.Tensor, in_channels: int, stride: int) -> None:
    """Raise a clear ``ValueError`` for a wrongly shaped input batch."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] % stride or x.shape[3] % stride:
        raise ValueError(
            f"input height and width must be divisible by {stride}, got {tuple(x.shape[2:])}"
        )
