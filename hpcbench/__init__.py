"""hpcbench: benchmark studies of machine learning on simulated electron-microscopy images."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
