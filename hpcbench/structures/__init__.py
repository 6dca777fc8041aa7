"""ASE structure builders with per-atom defect labels (see :mod:`.defects`)."""

from __future__ import annotations

from hpcbench.structures.defects import DEFECT_CODES, DEFECT_NAMES

__all__ = ["DEFECT_CODES", "DEFECT_NAMES"]
