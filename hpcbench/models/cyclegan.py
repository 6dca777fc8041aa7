"""The CycleGAN of seed 000 with real-space and Fourier-space discriminators.

Khan, A., Lee, C.-H., Huang, P. Y. & Clark, B. K., "Leveraging generative adversarial
networks to create realistic scanning transmission electron microscopy images",
npj Comput. Mater. 9, 85 (2023). The generator ``G: X → Y`` turns experiment-like images
``x`` into simulation-like ones, ``F: Y → X`` the other way round; four discriminators
judge real and generated images of each domain both in real space (``D_img``) and
through the log power spectrum of the image (``D_fft``, see :func:`log_power_spectrum`).

:class:`UNetGenerator`
    The pix2pix U-Net (Isola, P., Zhu, J.-Y., Zhou, T. & Efros, A. A., "Image-to-Image
    Translation with Conditional Adversarial Networks", CVPR 2017, arXiv:1611.07004,
    appendix 6.1.1). Encoder ``C64-C128-C256-C512-C512-C512-C512-C512`` (4x4 convolutions
    with stride 2 and padding 1, LeakyReLU 0.2), decoder
    ``CD512-CD512-CD512-C512-C256-C128-C64`` (ReLU, 4x4 transposed convolutions with
    stride 2, dropout 0.5 on the ``D`` levels), skip concatenation of the encoder feature
    maps of the same resolution, and a last transposed convolution to the output channels
    followed by ``tanh``. Seed 000 uses instance normalisation instead of batch norm.
:class:`PatchDiscriminator`
    The 70x70 PatchGAN of pix2pix (``C64-C128-C256-C512``, then a 1-channel convolution):
    a 256x256 image gives a 30x30 map, one realness score per 70x70 patch.
:class:`CycleGAN`
    The six networks and :meth:`CycleGAN.train_step`, one generator update followed by
    one discriminator update with the losses of seed 000 (:class:`CycleGANLosses`):
    least-squares adversarial losses (Mao et al. 2017) where the generators must fool
    *both* the image and the FFT discriminator of their target domain, an L1
    cycle-consistency loss (``λcyc = 10``) and an L2 identity loss (``λid = 5``).

Images are single-channel by default and scaled to ``[-1, 1]`` (seed 000 normalises
intensities to ``[-1, 1]`` after saturating at ±3.5σ); generators end in ``tanh``. The
paper's schedule is 297 epochs, a constant learning rate for the first 148 and a linear
decay to zero afterwards (:func:`linear_decay_schedule`); Adam with ``β = (0.5, 0.999)``
as in pix2pix/CycleGAN (:func:`make_optimizers`). This module imports only torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSS_NAMES",
    "CycleGAN",
    "CycleGANLosses",
    "ImagePool",
    "PatchDiscriminator",
    "UNetGenerator",
    "cycle_loss",
    "identity_loss",
    "init_weights",
    "linear_decay_schedule",
    "log_power_spectrum",
    "lsgan_loss",
    "make_optimizers",
]

Norm = Literal["instance", "batch", "none"]

#: Keys of the dictionary :meth:`CycleGAN.train_step` returns, in a fixed order.
LOSS_NAMES: tuple[str, ...] = (
    "loss/g_adv",
    "loss/cycle",
    "loss/identity",
    "loss/g_total",
    "loss/d_x_img",
    "loss/d_x_fft",
    "loss/d_y_img",
    "loss/d_y_fft",
)


def _norm(kind: Norm, channels: int) -> nn.Module:
    """A normalisation layer: affine-free instance norm (as pix2pix), batch norm or none."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {kind!r}")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise convolutions as pix2pix/CycleGAN do: weights ``N(0, std²)``, biases 0.

    Batch-norm scales are drawn from ``N(1, std²)`` and their shifts set to 0. Uses
    torch's global RNG (seed it, e.g. with :func:`torch.manual_seed`, before building).

    Parameters
    ----------
    module : torch.nn.Module
        Every sub-module is visited.
    std : float
        Standard deviation of the weights.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class UNetGenerator(nn.Module):
    """The pix2pix U-Net generator with instance normalisation (seed 000).

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    out_channels : int
        Channels of the output images.
    width : int
        Feature maps of the first encoder level; level ``i`` has
        ``width * min(2**i, 8)`` (64, 128, 256, 512, 512, ... for ``width=64``).
    depth : int
        Number of stride-2 down-sampling convolutions (at least 2). ``depth=8`` is
        pix2pix's "U-Net-256", whose innermost feature map is 1x1 for 256x256 inputs.
    norm : {"instance", "batch", "none"}
        Normalisation after every convolution except the first and the innermost encoder
        convolutions and the last decoder convolution (as in pix2pix: the innermost map
        may be 1x1, where instance norm would zero it).
    dropout : float
        Dropout probability on the ``dropout_levels`` innermost decoder levels.
    dropout_levels : int
        How many decoder levels, counted from the innermost, get dropout (3 in pix2pix's
        ``CD512-CD512-CD512``; clipped to the ``depth - 1`` levels there are).

    Notes
    -----
    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)`` in ``(-1, 1)``;
    ``H`` and ``W`` must be divisible by ``2**depth``. Encoder level ``i`` is
    ``LeakyReLU(0.2) → Conv4x4/2 → norm`` (no activation before the first level);
    decoder level ``i`` (``i = depth-2 … 0``) is ``ReLU → ConvT4x4/2 → norm → dropout``
    producing ``width * min(2**i, 8)`` maps, which are concatenated with encoder level
    ``i``'s output; the last level is ``ReLU → ConvT4x4/2 → tanh``. Convolutions carry
    a bias unless followed by batch norm (instance norm here has no affine parameters).
    Weights are initialised by :func:`init_weights`. The skips are the encoder outputs
    before the next level's LeakyReLU (pix2pix's reference code, with its in-place
    LeakyReLU, effectively concatenates the activated maps instead).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        width: int = 64,
        depth: int = 8,
        norm: Norm = "instance",
        dropout: float = 0.5,
        dropout_levels: int = 3,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise ValueError(
                "in_channels, out_channels and width must be >= 1, got "
                f"{in_channels}, {out_channels}, {width}"
            )
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        _norm(norm, 1)  # validate
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = depth
        bias = norm != "batch"
        chans = [width * min(2**i, 8) for i in range(depth)]

        self.down = nn.ModuleList()
        prev = in_channels
        for i, c in enumerate(chans):
            conv = nn.Conv2d(prev, c, kernel_size=4, stride=2, padding=1, bias=bias)
            if i == 0:
                self.down.append(conv)
            else:
                layers: list[nn.Module] = [nn.LeakyReLU(0.2), conv]
                if i < depth - 1:
                    layers.append(_norm(norm, c))
                self.down.append(nn.Sequential(*layers))
            prev = c

        # self.up[j] is decoder level i = depth - 2 - j (innermost first)
        self.up = nn.ModuleList()
        for j, i in enumerate(range(depth - 2, -1, -1)):
            cin = chans[depth - 1] if j == 0 else 2 * chans[i + 1]
            up: list[nn.Module] = [
                nn.ReLU(),
                nn.ConvTranspose2d(cin, chans[i], kernel_size=4, stride=2, padding=1, bias=bias),
                _norm(norm, chans[i]),
            ]
            if j < dropout_levels and dropout > 0:
                up.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*up))
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(2 * chans[0], out_channels, kernel_size=4, stride=2, padding=1),
            nn.Tanh(),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``, ``H, W`` divisible by ``2**depth``,
            intensities nominally in ``[-1, 1]``.

        Returns
        -------
        torch.Tensor
            Translated images in ``(-1, 1)``, shape ``(N, out_channels, H, W)``.

        Raises
        ------
        ValueError
            For a wrongly shaped input.
        """
        _check_image(x, self.in_channels, 2**self.depth)
        skips: list[torch.Tensor] = []
        h = x
        for down in self.down:
            h = down(h)
            skips.append(h)
        for j, up in enumerate(self.up):
            h = torch.cat([skips[self.depth - 2 - j], up(h)], dim=1)
        out: torch.Tensor = self.head(h)
        return out


class PatchDiscriminator(nn.Module):
    """The pix2pix PatchGAN discriminator (70x70 receptive field for ``layers=3``).

    Parameters
    ----------
    in_channels : int
        Channels of the images judged (1 for an image or its log power spectrum).
    width : int
        Feature maps of the first convolution; then ``width * min(2**n, 8)``.
    layers : int
        Number of stride-2 convolutions (at least 1). ``layers=3`` is the 70x70 PatchGAN
        ``C64-C128-C256-C512``: three stride-2 convolutions and a stride-1 one, then a
        stride-1 convolution to one channel.
    norm : {"instance", "batch", "none"}
        Normalisation after every convolution but the first and the last.

    Notes
    -----
    All convolutions are 4x4 with padding 1, followed by LeakyReLU 0.2 (except the last,
    which outputs raw least-squares scores). A ``(N, C, H, W)`` input gives
    ``(N, 1, H / 2**layers - 2, W / 2**layers - 2)`` when ``H, W`` are divisible by
    ``2**layers``: 256x256 → 30x30 for ``layers=3``. Weights are initialised by
    :func:`init_weights`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        width: int = 64,
        layers: int = 3,
        norm: Norm = "instance",
    ) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or layers < 1:
            raise ValueError(
                f"in_channels, width and layers must be >= 1, got {in_channels}, {width}, {layers}"
            )
        _norm(norm, 1)  # validate
        self.in_channels = in_channels
        bias = norm != "batch"
        seq: list[nn.Module] = [
            nn.Conv2d(in_channels, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        prev = width
        for n in range(1, layers + 1):
            c = width * min(2**n, 8)
            stride = 2 if n < layers else 1
            seq += [
                nn.Conv2d(prev, c, kernel_size=4, stride=stride, padding=1, bias=bias),
                _norm(norm, c),
                nn.LeakyReLU(0.2),
            ]
            prev = c
        seq.append(nn.Conv2d(prev, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*seq)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score every patch of a batch of images.

        Parameters
        ----------
        x : torch.Tensor
            Images, shape ``(N, in_channels, H, W)``.

        Returns
        -------
        torch.Tensor
            Realness scores (1 real, 0 fake under the least-squares loss), shape
            ``(N, 1, H', W')``; ``H' = H / 2**layers - 2`` for divisible ``H``.

        Raises
        ------
        ValueError
            For a wrongly shaped input.
        """
        _check_image(x, self.in_channels, 1)
        out: torch.Tensor = self.model(x)
        return out


def _check_image(x: torch.Tensor, channels: int, stride: int) -> None:
    """Raise a clear ``ValueError`` for a wrongly shaped image batch."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected input of shape (N, {channels}, H, W), got {tuple(x.shape)}")
    if x.shape[2] % stride or x.shape[3] % stride:
        raise ValueError(
            f"input height and width must be divisible by {stride}, got {tuple(x.shape[2:])}"
        )


def log_power_spectrum(images: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Standardised log power spectrum ``log(|FT(I)|² + eps)``, the FFT discriminators' input.

    Parameters
    ----------
    images : torch.Tensor
        Real images, shape ``(N, C, H, W)`` (``C = 1`` for seed 000).
    eps : float
        Added to the power before the logarithm (power in units of intensity² · pixels²,
        the unnormalised DFT), so a zero-power frequency stays finite.

    Returns
    -------
    torch.Tensor
        Shape ``(N, C, H, W)``: the 2-D DFT power ``|FFT2(I)|²`` over the last two axes,
        logarithm taken, ``fftshift``-ed so the zero frequency sits at index
        ``(H // 2, W // 2)``, then standardised per image and channel to zero mean and
        unit standard deviation (``(L - mean) / (std + 1e-6)`` over the ``H x W`` values),
        which removes the dependence on the overall intensity scale and image size.
        Differentiable: the power is computed as ``Re² + Im²`` so the gradient stays
        finite where the spectrum vanishes.

    Raises
    ------
    ValueError
        If ``images`` is not 4-D.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    spectrum = torch.fft.fft2(images.float(), dim=(-2, -1))
    power = spectrum.real.square() + spectrum.imag.square()
    log_power = torch.fft.fftshift(torch.log(power + eps), dim=(-2, -1))
    mean = log_power.mean(dim=(-2, -1), keepdim=True)
    std = log_power.std(dim=(-2, -1), keepdim=True)
    out: torch.Tensor = (log_power - mean) / (std + 1e-6)
    return out


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean of ``(D - 1)²`` for real targets, of ``D²`` for fake.

    Parameters
    ----------
    scores : torch.Tensor
        Discriminator outputs, any shape.
    real : bool
        Target label, 1 (``True``) or 0 (``False``).

    Returns
    -------
    torch.Tensor
        Scalar mean squared error to the target.
    """
    target = torch.ones_like(scores) if real else torch.zeros_like(scores)
    return F.mse_loss(scores, target)


def cycle_loss(
    x: torch.Tensor, x_cycled: torch.Tensor, y: torch.Tensor, y_cycled: torch.Tensor
) -> torch.Tensor:
    """Cycle-consistency loss ``mean|F(G(x)) - x| + mean|G(F(y)) - y|`` (L1).

    Parameters
    ----------
    x, y : torch.Tensor
        Real images of domains X and Y, shape ``(N, C, H, W)``.
    x_cycled, y_cycled : torch.Tensor
        ``F(G(x))`` and ``G(F(y))``, same shapes.

    Returns
    -------
    torch.Tensor
        Scalar, in intensity units of the ``[-1, 1]`` images.
    """
    return F.l1_loss(x_cycled, x) + F.l1_loss(y_cycled, y)


def identity_loss(
    x: torch.Tensor,
    f_of_x: torch.Tensor,
    y: torch.Tensor,
    g_of_y: torch.Tensor,
    kind: Literal["l1", "l2"] = "l2",
) -> torch.Tensor:
    """Identity loss ``mean(G(y) - y)² + mean(F(x) - x)²`` (L2 as in seed 000).

    Parameters
    ----------
    x, y : torch.Tensor
        Real images of domains X and Y, shape ``(N, C, H, W)``.
    f_of_x, g_of_y : torch.Tensor
        ``F(x)`` and ``G(y)``, same shapes.
    kind : {"l2", "l1"}
        Seed 000 writes ``||G(y) - y||_2``; the original CycleGAN uses L1.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if kind == "l2":
        return F.mse_loss(g_of_y, y) + F.mse_loss(f_of_x, x)
    if kind == "l1":
        return F.l1_loss(g_of_y, y) + F.l1_loss(f_of_x, x)
    raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")


@dataclass(frozen=True)
class CycleGANLosses:
    """Weights and options of the CycleGAN objective of seed 000.

    The generators jointly minimise
    ``L_adv(G) + L_adv(F) + λcyc · L_cyc(F, G) + λid · (L_id(G) + L_id(F))`` where
    ``L_adv(G) = mean(D_y,img(G(x)) - 1)² + w_fft · mean(D_y,fft(P(G(x))) - 1)²``
    (``P`` = :func:`log_power_spectrum`), symmetrically for ``F``. The cycle term appears
    once although the paper writes it in both ``L(G)`` and ``L(F)``: the two generators
    are optimised together, so only the relative weights matter. Each discriminator
    minimises ``0.5 · (mean(D(real) - 1)² + mean(D(fake)²))`` (the 0.5 of the CycleGAN
    reference code slows the discriminators relative to the generators; the paper's
    formula has none).

    Parameters
    ----------
    lambda_cyc : float
        Weight of the L1 cycle-consistency loss (10 in seed 000).
    lambda_id : float
        Weight of the identity loss (5 in seed 000; 0 disables it and skips ``G(y)``,
        ``F(x)``).
    identity : {"l2", "l1"}
        Norm of the identity loss (L2 in seed 000).
    fft_weight : float
        Weight of the FFT discriminators' terms in the generator loss (1 in seed 000;
        0 gives a plain CycleGAN generator objective, the FFT discriminators still train).
    """

    lambda_cyc: float = 10.0
    lambda_id: float = 5.0
    identity: Literal["l1", "l2"] = "l2"
    fft_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.lambda_cyc < 0 or self.lambda_id < 0 or self.fft_weight < 0:
            raise ValueError("loss weights must be >= 0")
        if self.identity not in ("l1", "l2"):
            raise ValueError(f"identity must be 'l1' or 'l2', got {self.identity!r}")


class ImagePool:
    """History buffer of generated images (Shrivastava et al. 2017, used by CycleGAN).

    Parameters
    ----------
    size : int
        Number of images kept (50 in CycleGAN); 0 disables the pool.
    generator : torch.Generator or None
        RNG of the pool's random choices (never torch's global RNG); a fresh one seeded
        with 0 if ``None``.

    Notes
    -----
    :meth:`query` takes a batch of fakes and returns a batch of the same shape: while the
    pool is filling, every image is stored and returned; afterwards each image is, with
    probability 1/2, swapped with a random stored one (the stored one is returned), or
    returned as is. Images are stored detached.
    """

    def __init__(self, size: int = 50, generator: torch.Generator | None = None) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Mix a batch of fresh fakes with stored ones.

        Parameters
        ----------
        images : torch.Tensor
            Generated images, shape ``(N, C, H, W)``.

        Returns
        -------
        torch.Tensor
            Detached images, shape ``(N, C, H, W)``.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out: list[torch.Tensor] = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            if float(torch.rand((), generator=self.generator)) < 0.5:
                k = int(torch.randint(len(self.images), (), generator=self.generator))
                out.append(self.images[k])
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.stack(out).to(images.device)


class CycleGAN(nn.Module):
    """Two U-Net generators and four PatchGAN discriminators of seed 000.

    Parameters
    ----------
    channels : int
        Image channels of both domains.
    gen_width, gen_depth : int
        ``width`` and ``depth`` of both :class:`UNetGenerator` (64 and 8 in the paper).
    disc_width, disc_layers : int
        ``width`` and ``layers`` of the four :class:`PatchDiscriminator` (64 and 3).
    norm : {"instance", "batch", "none"}
        Normalisation of all six networks ("instance" in seed 000).
    dropout : float
        Generator dropout (0.5 as pix2pix).
    losses : CycleGANLosses or None
        Loss weights; the paper's by default.
    pool_size : int
        Size of each history buffer of fakes fed to the discriminators (50 as in CycleGAN;
        0 uses the current fakes only; seed 000 does not say).
    pool_seed : int
        Seed of the pools' private RNG.

    Attributes
    ----------
    G, F : UNetGenerator
        ``G: X → Y`` (experiment → simulation in seed 000) and ``F: Y → X``.
    D_x_img, D_x_fft, D_y_img, D_y_fft : PatchDiscriminator
        Judges of domain X / Y images and of their :func:`log_power_spectrum`.
    """

    def __init__(
        self,
        channels: int = 1,
        *,
        gen_width: int = 64,
        gen_depth: int = 8,
        disc_width: int = 64,
        disc_layers: int = 3,
        norm: Norm = "instance",
        dropout: float = 0.5,
        losses: CycleGANLosses | None = None,
        pool_size: int = 50,
        pool_seed: int = 0,
    ) -> None:
        super().__init__()

        def generator() -> UNetGenerator:
            return UNetGenerator(
                channels, channels, width=gen_width, depth=gen_depth, norm=norm, dropout=dropout
            )

        def discriminator() -> PatchDiscriminator:
            return PatchDiscriminator(channels, width=disc_width, layers=disc_layers, norm=norm)

        self.G = generator()
        self.F = generator()
        self.D_x_img = discriminator()
        self.D_x_fft = discriminator()
        self.D_y_img = discriminator()
        self.D_y_fft = discriminator()
        self.losses = losses if losses is not None else CycleGANLosses()
        rng = torch.Generator().manual_seed(pool_seed)
        self.pool_x = ImagePool(pool_size, rng)
        self.pool_y = ImagePool(pool_size, rng)

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of ``G`` and ``F``."""
        yield from self.G.parameters()
        yield from self.F.parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the four discriminators."""
        for d in self.discriminators():
            yield from d.parameters()

    def discriminators(self) -> tuple[PatchDiscriminator, ...]:
        """``(D_x_img, D_x_fft, D_y_img, D_y_fft)``."""
        return (self.D_x_img, self.D_x_fft, self.D_y_img, self.D_y_fft)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate domain-X images to domain Y with ``G``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(N, channels, H, W)``, in ``[-1, 1]``.

        Returns
        -------
        torch.Tensor
            ``G(x)``, same shape, in ``(-1, 1)``.
        """
        out: torch.Tensor = self.G(x)
        return out

    def generator_loss(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """The generators' objective on one batch (see :class:`CycleGANLosses`).

        Parameters
        ----------
        x, y : torch.Tensor
            Real images of domains X and Y, shape ``(N, channels, H, W)`` each.

        Returns
        -------
        total : torch.Tensor
            Scalar ``L_adv + λcyc · L_cyc + λid · L_id``, differentiable in ``G``, ``F``.
        parts : dict of str to torch.Tensor
            Detached ``loss/g_adv``, ``loss/cycle``, ``loss/identity`` (unweighted) and
            ``loss/g_total``.
        fake_y, fake_x : torch.Tensor
            ``G(x)`` and ``F(y)`` (attached), for the discriminator update.
        """
        w = self.losses
        fake_y = self.G(x)
        fake_x = self.F(y)
        adv = lsgan_loss(self.D_y_img(fake_y), True) + lsgan_loss(self.D_x_img(fake_x), True)
        if w.fft_weight > 0:
            adv = adv + w.fft_weight * (
                lsgan_loss(self.D_y_fft(log_power_spectrum(fake_y)), True)
                + lsgan_loss(self.D_x_fft(log_power_spectrum(fake_x)), True)
            )
        cyc = cycle_loss(x, self.F(fake_y), y, self.G(fake_x))
        if w.lambda_id > 0:
            idt = identity_loss(x, self.F(x), y, self.G(y), w.identity)
        else:
            idt = torch.zeros((), device=x.device)
        total = adv + w.lambda_cyc * cyc + w.lambda_id * idt
        parts = {
            "loss/g_adv": adv.detach(),
            "loss/cycle": cyc.detach(),
            "loss/identity": idt.detach(),
            "loss/g_total": total.detach(),
        }
        return total, parts, fake_y, fake_x

    def discriminator_losses(
        self, x: torch.Tensor, y: torch.Tensor, fake_x: torch.Tensor, fake_y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The four discriminator losses ``0.5 · (mean(D(real) - 1)² + mean(D(fake)²))``.

        Parameters
        ----------
        x, y : torch.Tensor
            Real images of domains X and Y, shape ``(N, channels, H, W)``.
        fake_x, fake_y : torch.Tensor
            Generated ``F(y)`` and ``G(x)`` (detached here), same shapes.

        Returns
        -------
        dict of str to torch.Tensor
            Scalars ``loss/d_x_img``, ``loss/d_x_fft``, ``loss/d_y_img``, ``loss/d_y_fft``,
            differentiable in the discriminators only.
        """
        fake_x = fake_x.detach()
        fake_y = fake_y.detach()

        def d_loss(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
            return 0.5 * (lsgan_loss(d(real), True) + lsgan_loss(d(fake), False))

        return {
            "loss/d_x_img": d_loss(self.D_x_img, x, fake_x),
            "loss/d_x_fft": d_loss(self.D_x_fft, log_power_spectrum(x), log_power_spectrum(fake_x)),
            "loss/d_y_img": d_loss(self.D_y_img, y, fake_y),
            "loss/d_y_fft": d_loss(self.D_y_fft, log_power_spectrum(y), log_power_spectrum(fake_y)),
        }

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
    ) -> dict[str, float]:
        """One generator update, then one discriminator update.

        Parameters
        ----------
        x, y : torch.Tensor
            Unpaired batches of domains X and Y, shape ``(N, channels, H, W)`` each, in
            ``[-1, 1]``, ``H, W`` divisible by ``2**gen_depth``.
        opt_g, opt_d : torch.optim.Optimizer
            Optimisers over :meth:`generator_parameters` and
            :meth:`discriminator_parameters` (see :func:`make_optimizers`).

        Returns
        -------
        dict of str to float
            The :data:`LOSS_NAMES` values of this step: generator terms evaluated before
            the generator update, discriminator losses on the updated generators' fakes
            (through the history pools) before the discriminator update.

        Notes
        -----
        Puts the module in training mode. The discriminators' ``requires_grad`` is turned
        off during the generator update and back on afterwards.
        """
        self.train()
        discs = self.discriminators()
        for d in discs:
            d.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        total, parts, fake_y, fake_x = self.generator_loss(x, y)
        torch.autograd.backward(total)
        opt_g.step()
        for d in discs:
            d.requires_grad_(True)

        opt_d.zero_grad(set_to_none=True)
        d_losses = self.discriminator_losses(
            x, y, self.pool_x.query(fake_x), self.pool_y.query(fake_y)
        )
        torch.autograd.backward(torch.stack(list(d_losses.values())).sum())
        opt_d.step()
        out = {**parts, **{k: v.detach() for k, v in d_losses.items()}}
        return {k: float(out[k]) for k in LOSS_NAMES}


def make_optimizers(
    model: CycleGAN, lr: float, betas: tuple[float, float] = (0.5, 0.999)
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam optimisers for the generators and the discriminators (pix2pix/CycleGAN).

    Parameters
    ----------
    model : CycleGAN
        The model.
    lr : float
        Learning rate of both (2e-4 in CycleGAN; seed 000 reports 0.032).
    betas : tuple of float
        Adam's ``(β1, β2)``.

    Returns
    -------
    opt_g, opt_d : torch.optim.Adam
        Over ``G`` and ``F``, and over the four discriminators.
    """
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=lr, betas=betas)
    return opt_g, opt_d


def linear_decay_schedule(epochs_constant: int, epochs_decay: int) -> Callable[[int], float]:
    """Learning-rate factor: constant, then linear decay to zero (for ``LambdaLR``).

    Parameters
    ----------
    epochs_constant : int
        Epochs at the full learning rate (148 in seed 000).
    epochs_decay : int
        Epochs over which the rate decays linearly to zero (149 in seed 000: 297 total).

    Returns
    -------
    callable
        ``factor(epoch)`` for a 0-based epoch: 1 for ``epoch <= epochs_constant``, then
        ``(epochs_constant + epochs_decay - epoch) / epochs_decay``, reaching 0 at
        ``epoch = epochs_constant + epochs_decay`` (the first epoch after training) and
        clamped at 0 beyond. The last trained epoch thus runs at ``1 / epochs_decay`` of
        the rate. Use with :class:`torch.optim.lr_scheduler.LambdaLR`, stepping once per
        epoch.
    """
    if epochs_constant < 0 or epochs_decay < 1:
        raise ValueError(
            f"need epochs_constant >= 0 and epochs_decay >= 1, got {epochs_constant}, "
            f"{epochs_decay}"
        )

    def factor(epoch: int) -> float:
        if epoch <= epochs_constant:
            return 1.0
        return max(0.0, (epochs_constant + epochs_decay - epoch) / epochs_decay)

    return factor
