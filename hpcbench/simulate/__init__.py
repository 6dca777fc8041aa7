"""Image simulation: abTEM HAADF-STEM, a fast incoherent model, corruption and labels.

Plain functions; no Ray or MLflow here.
"""

from __future__ import annotations

from hpcbench.simulate.optics import max_scattering_angle, wavelength
from hpcbench.simulate.periodic import PeriodicImage

__all__ = ["PeriodicImage", "max_scattering_angle", "wavelength"]
