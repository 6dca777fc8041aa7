"""Random crops and rotations of the periodic tiling of a structure's clean image.

Every image of a dataset is cut from the tiling of one simulated cell by a
:class:`CropGeometry`; labels (:mod:`hpcbench.simulate.labels`) use the same geometry,
so they follow the crop exactly.

Convention: crop pixel ``(r, c)`` sits at the crop-frame position
``p = (c · pixel_size, r · pixel_size)`` [Å] and at the world (cell) position
``offset + R(rotation) · p``, where ``R`` rotates counter-clockwise in the ``(x, y)``
plane. The crop's pixels cover ``[-0.5, cols - 0.5) × [-0.5, rows - 0.5)`` in pixel
coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.random import Generator, SeedSequence
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from hpcbench.simulate._spline import affine_cubic_periodic
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.study import ImageSpec, sample_param

__all__ = ["CropGeometry", "PreparedImage", "crop", "prepare", "random_geometry"]


@dataclass(frozen=True)
class CropGeometry:
    """Where one crop lies in the tiling of a cell.

    Attributes
    ----------
    rotation : float
        Rotation of the crop's axes relative to the cell's axes [deg], counter-clockwise.
    offset : tuple of float
        World position ``(x0, y0)`` of crop pixel ``(0, 0)`` [Å].
    shape : tuple of int
        ``(rows, cols)`` [px].
    pixel_size : float
        Crop pixel size [Å].
    """

    rotation: float
    offset: tuple[float, float]
    shape: tuple[int, int]
    pixel_size: float

    def _matrix(self) -> NDArray[np.float64]:
        theta = math.radians(self.rotation)
        cos, sin = math.cos(theta), math.sin(theta)
        return np.array([[cos, -sin], [sin, cos]])

    def pixel_to_world(self, colrow: ArrayLike) -> NDArray[np.float64]:
        """World positions of pixel coordinates.

        Parameters
        ----------
        colrow : array_like, shape (..., 2)
            Pixel coordinates ``(col, row)`` [px] (fractional allowed).

        Returns
        -------
        ndarray, shape (..., 2)
            World positions ``(x, y)`` [Å].
        """
        p = np.asarray(colrow, dtype=np.float64) * self.pixel_size
        world: NDArray[np.float64] = p @ self._matrix().T + np.asarray(self.offset)
        return world

    def world_to_pixel(self, xy: ArrayLike) -> NDArray[np.float64]:
        """Pixel coordinates of world positions (inverse of :meth:`pixel_to_world`).

        Parameters
        ----------
        xy : array_like, shape (..., 2)
            World positions ``(x, y)`` [Å].

        Returns
        -------
        ndarray, shape (..., 2)
            Fractional pixel coordinates ``(col, row)`` [px].
        """
        d = np.asarray(xy, dtype=np.float64) - np.asarray(self.offset)
        pixel: NDArray[np.float64] = (d @ self._matrix()) / self.pixel_size
        return pixel

    def corners(self) -> NDArray[np.float64]:
        """World positions ``(x, y)`` [Å] of the four outer corners of the crop's pixels."""
        rows, cols = self.shape
        box = np.array(
            [[-0.5, -0.5], [cols - 0.5, -0.5], [-0.5, rows - 0.5], [cols - 0.5, rows - 0.5]]
        )
        return self.pixel_to_world(box)

    def padded(self, pad: int) -> CropGeometry:
        """The same crop grown by ``pad`` pixels on every side.

        Pixel ``(r, c)`` of the padded crop is pixel ``(r - pad, c - pad)`` of this one.
        """
        offset = self.pixel_to_world([-float(pad), -float(pad)])
        rows, cols = self.shape
        return CropGeometry(
            rotation=self.rotation,
            offset=(float(offset[0]), float(offset[1])),
            shape=(rows + 2 * pad, cols + 2 * pad),
            pixel_size=self.pixel_size,
        )


@dataclass(frozen=True)
class PreparedImage:
    """A clean image with its cubic B-spline coefficients, ready for many crops.

    Attributes
    ----------
    coefficients : ndarray of float64, shape (ny, nx)
        Cubic B-spline coefficients of the image (periodic boundary for periodic images,
        mirror otherwise).
    image : PeriodicImage
        The image they were computed from.
    """

    coefficients: NDArray[np.float64]
    image: PeriodicImage


def prepare(image: PeriodicImage) -> PreparedImage:
    """Compute the spline coefficients of ``image`` once, to crop it many times.

    Parameters
    ----------
    image : PeriodicImage
        Clean image of one cell.

    Returns
    -------
    PreparedImage
    """
    mode = "grid-wrap" if image.periodic else "mirror"
    coefficients = ndimage.spline_filter(
        np.asarray(image.array, dtype=np.float64), order=3, mode=mode
    )
    return PreparedImage(coefficients=coefficients, image=image)


def _fits(image: PeriodicImage, geometry: CropGeometry) -> tuple[NDArray[np.float64], ...]:
    """Range of offsets that keep the rotated crop inside a non-periodic image's margin."""
    rel = geometry.corners() - np.asarray(geometry.offset)
    lo = image.margin - rel.min(axis=0)
    hi = np.asarray(image.extent) - image.margin - rel.max(axis=0)
    return lo, hi


def random_geometry(
    image: PeriodicImage, spec: ImageSpec, rng: Generator | int | SeedSequence
) -> CropGeometry:
    """Draw a crop of ``image``: rotation from ``spec.rotation``, then a uniform offset.

    Parameters
    ----------
    image : PeriodicImage
        The clean image to crop (its extent, periodicity and margin).
    spec : ImageSpec
        Crop shape [px], pixel size [Å] and rotation [deg] (a parameter drawn per crop).
    rng : Generator, int or SeedSequence
        Randomness; draws are, in order, the rotation, then ``x0``, then ``y0``.

    Returns
    -------
    CropGeometry
        For a periodic image the offset is uniform over the cell; otherwise uniform over
        the offsets for which the whole rotated crop lies in
        ``[margin, extent - margin]``.

    Raises
    ------
    ValueError
        If the rotated crop does not fit inside a non-periodic image's trusted region.
    """
    generator = np.random.default_rng(rng)
    rotation = sample_param(spec.rotation, generator)
    geometry = CropGeometry(
        rotation=rotation, offset=(0.0, 0.0), shape=spec.shape, pixel_size=spec.pixel_size
    )
    if image.periodic:
        lo = np.zeros(2)
        hi = np.asarray(image.extent, dtype=np.float64)
    else:
        lo, hi = _fits(image, geometry)
        if np.any(lo > hi):
            raise ValueError(
                f"a {spec.shape[0]}x{spec.shape[1]} crop at {spec.pixel_size:g} Å rotated "
                f"{rotation:g}° does not fit inside the {image.extent[0]:g}x"
                f"{image.extent[1]:g} Å image with a {image.margin:g} Å margin"
            )
    x0 = float(generator.uniform(lo[0], hi[0]))
    y0 = float(generator.uniform(lo[1], hi[1]))
    return CropGeometry(
        rotation=rotation, offset=(x0, y0), shape=spec.shape, pixel_size=spec.pixel_size
    )


def crop(image: PeriodicImage | PreparedImage, geometry: CropGeometry) -> NDArray[np.float32]:
    """Interpolate the (tiled) clean image at the crop's pixel positions.

    Cubic B-spline interpolation of the cell image (exact on its samples, error of order
    ``(2π · sampling / wavelength)^4`` for band-limited content), wrapping around the cell
    for periodic images.

    Parameters
    ----------
    image : PeriodicImage or PreparedImage
        The cell image; pass a :class:`PreparedImage` (see :func:`prepare`) to reuse its
        spline coefficients over many crops.
    geometry : CropGeometry
        Where to crop.

    Returns
    -------
    ndarray of float32, shape ``geometry.shape``
        ``out[r, c]`` = image at world position ``geometry.pixel_to_world((c, r))``.

    Raises
    ------
    ValueError
        If a non-periodic image is cropped outside ``[margin, extent - margin]``.
    """
    prepared = image if isinstance(image, PreparedImage) else prepare(image)
    source = prepared.image
    if not source.periodic:
        lo, hi = _fits(source, geometry)
        x0, y0 = geometry.offset
        tol = 1e-9
        if x0 < lo[0] - tol or x0 > hi[0] + tol or y0 < lo[1] - tol or y0 > hi[1] + tol:
            raise ValueError(
                f"crop at offset ({x0:g}, {y0:g}) Å leaves the non-periodic image's "
                f"trusted region (margin {source.margin:g} Å)"
            )
    dx, dy = source.sampling
    theta = math.radians(geometry.rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    ps = geometry.pixel_size
    # Output index (r, c) -> input index (row, col) = (y / dy, x / dx) with
    # x = x0 + cos·c·ps − sin·r·ps and y = y0 + sin·c·ps + cos·r·ps.
    matrix = np.array([[cos * ps / dy, sin * ps / dy], [-sin * ps / dx, cos * ps / dx]])
    offset = (geometry.offset[1] / dy, geometry.offset[0] / dx)
    out = np.empty(geometry.shape, dtype=np.float32)
    if source.periodic and affine_cubic_periodic(prepared.coefficients, matrix, offset, out):
        return out
    ndimage.affine_transform(
        prepared.coefficients,
        matrix,
        offset=offset,
        output_shape=geometry.shape,
        output=out,
        order=3,
        mode="grid-wrap" if source.periodic else "mirror",
        prefilter=False,
    )
    return out
