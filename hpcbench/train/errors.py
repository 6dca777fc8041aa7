"""The train stage's user error: one line, raised before or between sweeps."""

from __future__ import annotations

__all__ = ["TrainError"]


class TrainError(RuntimeError):
    """A sweep cannot start (missing datasets, nothing to resume); one line."""
