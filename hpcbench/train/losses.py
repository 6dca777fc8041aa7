"""Segmentation losses: cross-entropy + soft F1 (seed 001, Rangel DaCosta et al. 2024).

Seed 001 trains with "a mixed categorical cross-entropy and F1-score loss", the F1 in
its non-discretised form ``F1 = 2 f(x)·y / (‖f(x)‖ + ‖y‖)`` (their eq. 6) with
``f(x)`` the softmax probabilities. Here, per class ``c`` over the whole batch,

    soft_F1_c = (2 Σ p_c y_c + ε) / (Σ p_c + Σ y_c + ε),      ε = 1,

and the loss term is ``1 − mean_c soft_F1_c`` over the foreground classes ``c ≥ 1``
*present in the batch's labels*. Two choices differ from a plain multi-class Dice:

- the background is left out: it would dominate the mean where defects cover ~1 % of
  the pixels;
- a class absent from a batch is left out: its soft F1 is ``ε / (Σ p_c + ε)``, near 0
  unless ``p_c`` is ~0 at every one of ~10⁵ pixels, so including it rewards never
  predicting a rare class at all. Measured on the quickstart data (UNet, lr 1e-2, 10
  epochs): with absent classes in the mean, validation F1 stayed 0; without, it
  reached 0.43 (0.87 for Se vacancies). False positives of absent classes are still
  paid for by the cross-entropy term.

``ε`` keeps the term defined. With no foreground class in a batch the term is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SegmentationLoss", "balanced_class_weights", "soft_f1"]


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency class weights ``N / (C · n_c)`` from pixel counts per class.

    Parameters
    ----------
    counts : Tensor, shape (C,)
        Pixels of each class in the training images.

    Returns
    -------
    Tensor of float32, shape (C,)
        The weights; a class with no pixels gets 1 (it never enters the loss anyway).
    """
    counts = counts.to(torch.float64)
    total, classes = counts.sum(), counts.numel()
    weights = torch.where(counts > 0, total / (classes * counts.clamp(min=1)), 1.0)
    return weights.to(torch.float32)


def soft_f1(logits: torch.Tensor, target: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Soft F1 of each class over a batch.

    Parameters
    ----------
    logits : Tensor, shape (N, C, H, W)
        Network outputs (before softmax).
    target : Tensor of int64, shape (N, H, W)
        Class indices in ``[0, C)``.
    smooth : float
        ``ε`` in the module notes.

    Returns
    -------
    Tensor, shape (C,)
        Soft F1 per class, in (0, 1].
    """
    probabilities = logits.softmax(dim=1)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    dims = (0, 2, 3)
    overlap = (probabilities * one_hot).sum(dims)
    total = probabilities.sum(dims) + one_hot.sum(dims)
    return (2 * overlap + smooth) / (total + smooth)


class SegmentationLoss(torch.nn.Module):
    """``cross_entropy · CE + soft_f1 · (1 − mean foreground soft F1)``.

    Parameters
    ----------
    cross_entropy, soft_f1 : float
        Weights of the two terms (seed 001 mixes both; either may be 0).
    class_weights : Tensor, optional
        Weight of each class in the cross-entropy, shape (C,) (see
        :func:`balanced_class_weights`); ``None`` weighs every pixel alike.
    """

    def __init__(
        self,
        *,
        cross_entropy: float = 1.0,
        soft_f1: float = 1.0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cross_entropy = float(cross_entropy)
        self.soft_f1 = float(soft_f1)
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (a scalar)."""
        loss = logits.new_zeros(())
        if self.cross_entropy:
            weights = self.class_weights
            weight = None if weights is None else weights.to(logits.device, logits.dtype)
            loss = loss + self.cross_entropy * F.cross_entropy(logits, target, weight=weight)
        if self.soft_f1:
            scores = soft_f1(logits, target)
            present = torch.bincount(target.reshape(-1), minlength=logits.shape[1]) > 0
            if logits.shape[1] > 1:
                present[0] = False  # background: see the module notes
            # The mean over present classes without asking the device which they are
            # (indexing by a mask, or bool(), would wait for the GPU every step); adding
            # the absent classes' zeros leaves every sum, so every bit, as it was.
            weight = present.to(scores.dtype)
            count = weight.sum()
            mean = (scores * weight).sum() / count.clamp(min=1.0)
            loss = loss + self.soft_f1 * (count > 0).to(scores.dtype) * (1.0 - mean)
        return loss
