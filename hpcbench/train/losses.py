"""Segmentation losses: cross-entropy + soft F1 (seed 001, Rangel DaCosta et al. 2024).

Seed 001 trains with "a mixed categorical cross-entropy and F1-score loss", the F1 in
its non-discretised form ``F1 = 2 f(x)·y / (‖f(x)‖ + ‖y‖)`` (their eq. 6) with
``f(x)`` the softmax probabilities. Here, per class ``c`` over the whole batch,

    soft_F1_c = (2 Σ p_c y_c + ε) / (Σ p_c + Σ y_c + ε),      ε = 1,

and the loss term is ``1 − mean_c soft_F1_c`` over the foreground classes ``c ≥ 1``
(the background would dominate the mean on images where defects cover ~1 % of the
pixels). ``ε`` keeps the term defined — and equal to 0 for a correct empty
prediction — when a class is absent from a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SegmentationLoss", "soft_f1"]


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
    """

    def __init__(self, *, cross_entropy: float = 1.0, soft_f1: float = 1.0) -> None:
        super().__init__()
        self.cross_entropy = float(cross_entropy)
        self.soft_f1 = float(soft_f1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of a batch (a scalar)."""
        loss = logits.new_zeros(())
        if self.cross_entropy:
            loss = loss + self.cross_entropy * F.cross_entropy(logits, target)
        if self.soft_f1:
            scores = soft_f1(logits, target)
            foreground = scores[1:] if scores.numel() > 1 else scores
            loss = loss + self.soft_f1 * (1.0 - foreground.mean())
        return loss
