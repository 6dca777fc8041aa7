"""The train stage's user error: one line, raised before or between sweeps."""

from __future__ import annotations

__all__ = ["Interrupted", "TrainError"]


class TrainError(RuntimeError):
    """A sweep cannot start (missing datasets, nothing to resume); one line."""


class Interrupted(RuntimeError):
    """A sweep was stopped (Ctrl-C, SIGINT) with trials unfinished; one line saying how to go on.

    Its unfinished trials' MLflow runs are marked ``KILLED``; each continues from its last
    epoch checkpoint when the same command runs again.
    """
