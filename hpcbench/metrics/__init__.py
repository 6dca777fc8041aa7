"""Metrics on images, masks and detections (plain functions, no Ray or MLflow)."""

from __future__ import annotations

from hpcbench.metrics.lattice import lattice_spacing

__all__ = ["lattice_spacing"]
