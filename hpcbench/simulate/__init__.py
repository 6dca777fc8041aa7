"""Image simulation: abTEM HAADF-STEM, a fast incoherent model, crops, corruption, labels.

Plain functions; no Ray or MLflow here. A structure's clean cell image
(:class:`PeriodicImage`) comes from :func:`simulate_haadf` (multislice/PRISM) or
:func:`simulate_incoherent`; :func:`crop` cuts samples from its periodic tiling,
:func:`corrupt` (= :func:`add_noise` ∘ :func:`distort`) adds the microscope, and
:func:`site_table` / :func:`render_mask` give labels that follow the same transform.
"""

from __future__ import annotations

from hpcbench.optics import max_scattering_angle, wavelength
from hpcbench.simulate.corrupt import (
    CorruptionParams,
    add_noise,
    corrupt,
    distort,
    distort_sites,
    distortion_border,
    sample_corruption,
    scan_distortion,
)
from hpcbench.simulate.crop import CropGeometry, PreparedImage, crop, prepare, random_geometry
from hpcbench.simulate.incoherent import (
    Calibration,
    calibrate_gamma,
    default_scale,
    probe_intensity,
    simulate_incoherent,
)
from hpcbench.simulate.labels import (
    Coordinates,
    Sites,
    class_map,
    labelled_coordinates,
    render_mask,
    site_table,
)
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.simulate.stem import (
    configure_threads,
    probe_window,
    safe_prism_interpolation,
    simulate_haadf,
)

__all__ = [
    "Calibration",
    "Coordinates",
    "CorruptionParams",
    "CropGeometry",
    "PeriodicImage",
    "PreparedImage",
    "Sites",
    "add_noise",
    "calibrate_gamma",
    "class_map",
    "configure_threads",
    "corrupt",
    "crop",
    "default_scale",
    "distort",
    "distort_sites",
    "distortion_border",
    "labelled_coordinates",
    "max_scattering_angle",
    "prepare",
    "probe_intensity",
    "probe_window",
    "random_geometry",
    "render_mask",
    "safe_prism_interpolation",
    "sample_corruption",
    "scan_distortion",
    "simulate_haadf",
    "simulate_incoherent",
    "site_table",
    "wavelength",
]
