"""Labels of a crop: projected atom columns and vacancy sites, coordinates and masks.

The labels follow the crop's :class:`~hpcbench.simulate.crop.CropGeometry` exactly:
:func:`site_table` tiles the cell (for periodic structures), maps every atom and
vacancy site to the crop's pixel coordinates with
:meth:`~hpcbench.simulate.crop.CropGeometry.world_to_pixel`, merges sites that project
onto one column, and keeps the columns inside the crop, each exactly once.

Pixel coordinates are ``(x, y) = (col, row)`` [px] with the pixel ``(r, c)`` centred
at ``(c, r)``; a site is inside the crop when ``-0.5 <= x < cols - 0.5`` and
``-0.5 <= y < rows - 0.5``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES
from hpcbench.simulate.crop import CropGeometry
from hpcbench.study import LabelSpec

__all__ = [
    "Coordinates",
    "Sites",
    "class_map",
    "labelled_coordinates",
    "merge_columns",
    "render_mask",
    "site_table",
]


@dataclass(frozen=True)
class Sites:
    """Atoms and vacancy sites (or projected columns) in a crop's pixel frame.

    Attributes
    ----------
    x, y : ndarray of float32, shape (n,)
        Pixel coordinates [px] (``x`` along columns, ``y`` along rows).
    code : ndarray of int16, shape (n,)
        Defect code (:data:`~hpcbench.defects.DEFECT_CODES`; 0 = lattice).
    z_number : ndarray of int16, shape (n,)
        Atomic number; 0 for a vacancy site; for a merged column, the sum over its atoms.
    vacancy : ndarray of bool, shape (n,)
        True for a vacancy site (for a merged column: no atom in the column).
    """

    x: NDArray[np.float32]
    y: NDArray[np.float32]
    code: NDArray[np.int16]
    z_number: NDArray[np.int16]
    vacancy: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, keep: NDArray[np.bool_] | NDArray[np.intp]) -> Sites:
        """The sites picked by a boolean mask or index array."""
        return Sites(
            self.x[keep], self.y[keep], self.code[keep], self.z_number[keep], self.vacancy[keep]
        )

    def inside(self, shape: tuple[int, int], *, pad: float = 0.0) -> NDArray[np.bool_]:
        """Which sites lie ``pad`` [px] or less outside the crop's pixels (half-open)."""
        rows, cols = shape
        keep: NDArray[np.bool_] = (
            (self.x >= -0.5 - pad)
            & (self.x < cols - 0.5 + pad)
            & (self.y >= -0.5 - pad)
            & (self.y < rows - 0.5 + pad)
        )
        return keep


@dataclass(frozen=True)
class Coordinates:
    """Labelled positions in a crop: one per labelled column.

    Attributes
    ----------
    x, y : ndarray of float32, shape (n,)
        Pixel coordinates [px].
    cls : ndarray of uint8, shape (n,)
        Mask value (class) of each position, ``>= 1``.
    """

    x: NDArray[np.float32]
    y: NDArray[np.float32]
    cls: NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def as_records(self) -> list[dict[str, float | int]]:
        """One ``{"x": [px], "y": [px], "label": mask value}`` dict per position."""
        return [
            {"x": float(x), "y": float(y), "label": int(c)}
            for x, y, c in zip(self.x, self.y, self.cls, strict=True)
        ]


def _raw_sites(atoms: Atoms) -> tuple[NDArray[np.float64], Sites]:
    """World positions (n, 2) [Å] and attributes of all atoms then all vacancy sites.

    Atoms of an amorphous support (code ``support``) are left out: they are no site, and
    merging their dense projection into columns would swallow the atoms on it.
    """
    labels = atoms.arrays.get("label")
    codes = np.zeros(len(atoms), np.int64) if labels is None else np.asarray(labels, np.int64)
    if labels is not None and (support := codes == DEFECT_CODES["support"]).any():
        atoms = atoms[~support]
        codes = codes[~support]
    n = len(atoms)
    vac_pos = np.asarray(atoms.info.get("vacancy_sites", np.zeros((0, 3))), np.float64)
    vac_pos = vac_pos.reshape(-1, 3)
    vac_codes = np.asarray(atoms.info.get("vacancy_labels", np.zeros(0)), np.int64).reshape(-1)
    if vac_codes.shape[0] != vac_pos.shape[0]:
        raise ValueError(
            f"{vac_pos.shape[0]} vacancy_sites but {vac_codes.shape[0]} vacancy_labels"
        )
    xy = np.concatenate([np.asarray(atoms.positions, np.float64)[:, :2], vac_pos[:, :2]])
    attrs = Sites(
        x=np.zeros(0, np.float32),
        y=np.zeros(0, np.float32),
        code=np.concatenate([codes, vac_codes]).astype(np.int16),
        z_number=np.concatenate([atoms.numbers, np.zeros(len(vac_codes), np.int64)]).astype(
            np.int16
        ),
        vacancy=np.concatenate([np.zeros(n, bool), np.ones(len(vac_codes), bool)]),
    )
    return xy, attrs


def _tile(
    xy: NDArray[np.float64], lattice: NDArray[np.float64], geometry: CropGeometry, pad_px: float
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Positions of all periodic images of ``xy`` near the crop, and their source indices.

    Each site is first wrapped into the cell (fractional coordinates in ``[0, 1)``), so
    that every physical site of the tiling is produced once.
    """
    inverse = np.linalg.inv(lattice)  # rows of ``lattice`` are the in-plane cell vectors
    frac = xy @ inverse
    frac -= np.floor(frac)
    base = frac @ lattice
    grow = (pad_px + 1.0) * geometry.pixel_size
    corners = geometry.corners()
    steps = np.array([[-grow, -grow], [-grow, grow], [grow, -grow], [grow, grow]])
    # corners of the crop grown by ``grow`` in every direction
    box = (corners[:, None, :] + steps[None, :, :]).reshape(-1, 2)
    fbox = box @ inverse
    # A site kept by the caller lies at least one pixel inside the grown box, so its
    # fractional position f = w + n (w in [0, 1], the wrapped site; n the shift) is in
    # (min, max) of ``fbox`` with room to spare: floor(min) <= n < ceil(max). Tiles
    # outside that range only produce sites the caller drops.
    lo = np.floor(fbox.min(axis=0)).astype(int)
    hi = np.ceil(fbox.max(axis=0)).astype(int)
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]))
    shifts = np.stack([n1.ravel(), n2.ravel()], axis=1) @ lattice
    tiled = (base[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    index = np.tile(np.arange(len(xy)), len(shifts))
    return tiled, index


def _first_of_component(n: int, pairs: NDArray[np.intp]) -> NDArray[np.intp]:
    """The smallest site index of each site's connected component.

    Min-label propagation with pointer jumping over the ``(m, 2)`` edge list ``pairs``:
    a few vectorised sweeps for the small components of projected columns, without the
    validation overhead of a sparse-graph call per crop.
    """
    label = np.arange(n, dtype=np.intp)
    a = pairs[:, 0].astype(np.intp)
    b = pairs[:, 1].astype(np.intp)
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, label):
            return label
        label = new


def merge_columns(sites: Sites, *, distance: float) -> Sites:
    """Merge sites closer than ``distance`` in projection into one column each.

    Sites are 2-D projections: two Se atoms of an MX2 column, a metal antisite and the
    vacancy site of the anion it replaced, or the remaining Se and the vacancy site of
    an anion vacancy all project onto one position and must be one label.

    Parameters
    ----------
    sites : Sites
        Sites in pixel coordinates [px].
    distance : float
        Merge distance [px]; sites linked by chains of closer pairs form one column.

    Returns
    -------
    Sites
        One entry per column at the mean position of its sites. Its ``code`` is the
        defect code of the column: lattice (0) only if every site is lattice; otherwise
        the most frequent non-zero code, ties going to the larger code. ``z_number`` is
        the sum over the column's atoms; ``vacancy`` is true if it holds no atom.
        Columns are ordered by their first site.
    """
    n = len(sites)
    if n == 0:
        return sites
    points = np.stack([sites.x, sites.y], axis=1).astype(np.float64)
    pairs = cKDTree(points).query_pairs(distance, output_type="ndarray")
    if len(pairs) == 0:
        return sites
    # Columns numbered in order of their first site, so the output order is stable.
    roots, column = np.unique(_first_of_component(n, pairs), return_inverse=True)
    n_columns = len(roots)
    count = np.bincount(column, minlength=n_columns).astype(np.float64)
    x = np.bincount(column, weights=points[:, 0], minlength=n_columns) / count
    y = np.bincount(column, weights=points[:, 1], minlength=n_columns) / count
    z = np.bincount(column, weights=sites.z_number.astype(np.float64), minlength=n_columns)
    atoms = np.bincount(column, weights=(~sites.vacancy).astype(np.float64), minlength=n_columns)
    code = np.zeros(n_columns, np.int16)
    defect = sites.code != 0
    if defect.any():
        n_codes = int(sites.code.max()) + 1
        votes = np.zeros((n_columns, n_codes), np.int64)
        np.add.at(votes, (column[defect], sites.code[defect].astype(np.intp)), 1)
        has = votes.sum(axis=1) > 0
        # argmax of the reversed vote table: most votes, ties to the larger code
        best = n_codes - 1 - np.argmax(votes[:, ::-1], axis=1)
        code[has] = best[has].astype(np.int16)
    return Sites(
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        code=code,
        z_number=z.astype(np.int16),
        vacancy=atoms == 0,
    )


def site_table(
    atoms: Atoms,
    geometry: CropGeometry,
    *,
    periodic: bool | None = None,
    merge_distance: float | None = 0.5,
    pad: float = 0.0,
) -> Sites:
    """All atom columns and vacancy sites of the (tiled) structure inside a crop.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure, with ``arrays["label"]`` and ``info["vacancy_sites"]`` /
        ``info["vacancy_labels"]`` as made by :mod:`hpcbench.structures` (missing labels
        mean lattice, missing vacancy sites mean none).
    geometry : CropGeometry
        The crop (the same one given to :func:`~hpcbench.simulate.crop.crop`).
    periodic : bool, optional
        Tile the cell's in-plane vectors (``atoms.cell[0]``, ``atoms.cell[1]``). Pass the
        image's ``periodic`` flag; ``None`` uses ``all(atoms.pbc[:2])``.
    merge_distance : float or None
        Sites closer than this in projection [Å] are one column (see
        :func:`merge_columns`); ``None`` keeps every atom and vacancy site separate.
    pad : float
        Also keep sites up to ``pad`` pixels outside the crop [px] (for
        :func:`~hpcbench.simulate.corrupt.distort_sites`, which may move them in).

    Returns
    -------
    Sites
        Columns with pixel coordinates in
        ``[-0.5 - pad, cols - 0.5 + pad) × [-0.5 - pad, rows - 0.5 + pad)``; each
        physical site of the tiling appears once.
    """
    xy, attrs = _raw_sites(atoms)
    if periodic is None:
        periodic = bool(np.all(atoms.pbc[:2]))
    merge_px = 0.0 if merge_distance is None else merge_distance / geometry.pixel_size
    # Gather sites a little beyond the kept region so a column straddling the border is
    # merged before it is kept or dropped as a whole.
    gather = pad + merge_px + 1.0
    if periodic:
        lattice = np.asarray(atoms.cell.array, np.float64)[:2, :2]
        if abs(np.linalg.det(lattice)) < 1e-12:
            raise ValueError("a periodic structure needs two independent in-plane cell vectors")
        xy, index = _tile(xy, lattice, geometry, gather)
    else:
        index = np.arange(len(xy))
    pixel = geometry.world_to_pixel(xy)
    sites = Sites(
        x=pixel[:, 0].astype(np.float32),
        y=pixel[:, 1].astype(np.float32),
        code=attrs.code[index],
        z_number=attrs.z_number[index],
        vacancy=attrs.vacancy[index],
    )
    sites = sites.select(sites.inside(geometry.shape, pad=gather))
    if merge_distance is not None:
        sites = merge_columns(sites, distance=merge_px)
    return sites.select(sites.inside(geometry.shape, pad=pad))


def class_map(spec: LabelSpec) -> dict[int, int]:
    """Mask value of each defect code.

    Parameters
    ----------
    spec : LabelSpec
        ``classes[i]`` gets value ``i + 1``; with ``lattice: true``, lattice columns
        (code 0 with at least one atom) get 1 and ``classes[i]`` gets ``i + 2``.

    Returns
    -------
    dict of int to int
        Code → mask value; codes not listed map to 0 (unlabelled).
    """
    first = 2 if spec.lattice else 1
    mapping = {DEFECT_CODES[name]: first + i for i, name in enumerate(spec.classes)}
    if spec.lattice:
        mapping[DEFECT_CODES["lattice"]] = 1
    return mapping


def labelled_coordinates(sites: Sites, mapping: Mapping[int, int]) -> Coordinates:
    """The labelled sites (mask value > 0) as coordinates [px] and classes.

    Lattice code 0 is labelled only for columns holding an atom (a vacancy site never
    carries code 0 by construction, but is not lattice if it did).
    """
    if len(sites) == 0:
        empty = np.zeros(0, np.float32)
        return Coordinates(empty, empty.copy(), np.zeros(0, np.uint8))
    table = np.zeros(max(int(sites.code.max()), *mapping.keys(), 0) + 1, np.uint8)
    for code, value in mapping.items():
        table[code] = value
    cls = table[sites.code.astype(np.intp)]
    cls[(sites.code == 0) & sites.vacancy] = 0
    keep = cls > 0
    return Coordinates(sites.x[keep], sites.y[keep], cls[keep])


def render_mask(
    sites: Sites | Coordinates,
    mapping: Mapping[int, int] | None,
    shape: tuple[int, int],
    radius: float,
) -> NDArray[np.uint8]:
    """Rasterise labelled sites as disks.

    Parameters
    ----------
    sites : Sites or Coordinates
        Sites (classified with ``mapping``) or already labelled coordinates [px].
    mapping : dict or None
        Code → mask value (:func:`class_map`); ignored for :class:`Coordinates`.
    shape : tuple of int
        ``(rows, cols)`` [px].
    radius : float
        Disk radius [px]: pixels whose centre is within ``radius`` of a site. The pixel
        containing the site is always set, so every labelled site inside the crop is
        visible however small the radius.

    Returns
    -------
    ndarray of uint8, shape ``shape``
        0 for background; where disks overlap, the higher class wins (independent of
        the order of the sites).
    """
    if isinstance(sites, Coordinates):
        coords = sites
    else:
        if mapping is None:
            raise ValueError("a mapping is needed to classify Sites")
        coords = labelled_coordinates(sites, mapping)
    rows, cols = shape
    mask = np.zeros(shape, np.uint8)
    if len(coords) == 0:
        return mask
    x = coords.x.astype(np.float64)
    y = coords.y.astype(np.float64)
    reach = int(np.ceil(radius)) + 1
    d = np.arange(-reach, reach + 1)
    dr, dc = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    r0 = np.floor(y + 0.5).astype(np.intp)  # the pixel containing the site
    c0 = np.floor(x + 0.5).astype(np.intp)
    rr = r0[:, None] + dr[None, :]
    cc = c0[:, None] + dc[None, :]
    near = (rr - y[:, None]) ** 2 + (cc - x[:, None]) ** 2 <= radius**2
    near |= (dr == 0) & (dc == 0)
    near &= (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
    value = np.broadcast_to(coords.cls[:, None], rr.shape)
    np.maximum.at(mask, (rr[near], cc[near]), value[near])
    return mask
