"""Seed-003 "messy" transforms: lattice rotation, grain boundaries, beam damage.

All three keep the label conventions of :mod:`.defects`: per-atom labels travel with
their atoms, vacancy sites are transformed with the lattice, and
``info["defect_counts"]`` is recounted from labels and vacancy sites afterwards (a
rotated crop of a tiled cell holds more or fewer copies of each defect than the cell).
Rotated and two-grain structures are not periodic in their cell: they get
``info["periodic"] = False`` and ``pbc = False``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from hpcbench.defects import DEFECT_CODES
from hpcbench.structures._util import (
    add_vacancy_sites,
    as_generator,
    copy_atoms,
    delete_atoms,
    recount_defects,
)
from hpcbench.study import Messy, sample_param

__all__ = ["apply_messy", "beam_damage", "grain_boundary", "rotate_lattice"]


def _cell_lengths(atoms: Atoms) -> NDArray[np.float64]:
    cell = np.asarray(atoms.cell[:])
    if not np.allclose(cell[:2, :2], np.diag(np.diag(cell[:2, :2]))) or np.any(cell[:2, 2]):
        raise ValueError("the structure's cell must be orthogonal with x, y in the plane")
    return np.diag(cell)[:2].astype(np.float64)


def _rotation(angle_deg: float) -> NDArray[np.float64]:
    theta = math.radians(angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _rotated_crop(
    atoms: Atoms,
    angle_deg: float,
    extent: NDArray[np.float64],
    keep: Callable[[NDArray[np.float64]], NDArray[np.bool_]],
) -> tuple[Atoms, NDArray[np.float64], NDArray[np.int64]]:
    """Tile ``atoms``, rotate about its cell centre onto the centre of ``extent``, crop.

    Returns the kept atoms (symbols, positions, labels) and the kept vacancy sites and
    their codes. ``keep`` selects positions (n, 3) inside the target region.
    """
    if not atoms.info.get("periodic", True):
        raise ValueError("rotating needs a periodic structure (this one was already cut)")
    lengths = _cell_lengths(atoms)
    radius = 0.5 * math.hypot(*extent)
    reps = [math.ceil(radius / length) for length in lengths]
    ii, jj = np.meshgrid(
        np.arange(-reps[0], reps[0] + 1), np.arange(-reps[1], reps[1] + 1), indexing="ij"
    )
    offsets = np.zeros((ii.size, 3))
    offsets[:, 0] = ii.ravel() * lengths[0]
    offsets[:, 1] = jj.ravel() * lengths[1]
    rotation = _rotation(angle_deg)

    def transform(points: NDArray[np.float64]) -> NDArray[np.float64]:
        tiled = (points[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
        tiled[:, :2] = (tiled[:, :2] - lengths / 2) @ rotation.T + extent / 2
        return tiled

    positions = transform(atoms.positions)
    inside = keep(positions)
    numbers = np.tile(atoms.numbers, len(offsets))[inside]
    labels = np.tile(atoms.arrays["label"], len(offsets))[inside]
    crop = Atoms(numbers=numbers, positions=positions[inside])
    crop.arrays["label"] = labels.astype(np.int64)
    sites = transform(np.asarray(atoms.info["vacancy_sites"], dtype=np.float64))
    site_inside = keep(sites)
    codes = np.tile(atoms.info["vacancy_labels"], len(offsets))[site_inside]
    return crop, sites[site_inside], codes.astype(np.int64)


def _finish(
    out: Atoms,
    info: Mapping[str, Any],
    extent: NDArray[np.float64],
    height: float,
    names: Sequence[str],
) -> Atoms:
    """Set cell, pbc and info of a cut structure; ``out.info`` holds its vacancy sites."""
    sites = out.info["vacancy_sites"], out.info["vacancy_labels"]
    out.cell = np.diag([extent[0], extent[1], height])
    out.pbc = False
    out.info = copy.deepcopy(dict(info))
    out.info["vacancy_sites"], out.info["vacancy_labels"] = sites
    out.info["periodic"] = False
    out.info["defect_counts"] = recount_defects(out, names)
    return out


def rotate_lattice(
    atoms: Atoms, angle_deg: float, *, extent: tuple[float, float] | None = None
) -> Atoms:
    """Rotate the whole lattice about its cell centre and refill a rectangular cell.

    The periodic structure is tiled over a patch large enough to cover the target
    rectangle at any angle, rotated by ``angle_deg`` about the centre of the original
    cell (which lands on the centre of the target), and the atoms and vacancy sites
    with ``0 <= x < extent[0]`` and ``0 <= y < extent[1]`` are kept.

    Parameters
    ----------
    atoms : ase.Atoms
        Periodic structure with an orthogonal cell (not modified).
    angle_deg : float
        Counter-clockwise rotation about z [deg]. A multiple of 360 with the default
        extent returns an unchanged (still periodic) copy.
    extent : tuple of float, optional
        ``(Lx, Ly)`` of the result's cell [Å]; default the input's cell.

    Returns
    -------
    ase.Atoms
        Not periodic: ``info["periodic"] = False``, ``pbc = False``;
        ``info["defect_counts"]`` recounted.
    """
    lengths = _cell_lengths(atoms)
    target = lengths if extent is None else np.asarray(extent, dtype=np.float64)
    if target.shape != (2,) or np.any(target <= 0):
        raise ValueError(f"extent must be two positive lengths [Å], got {extent}")
    if extent is None and angle_deg % 360.0 == 0.0:
        return copy_atoms(atoms)

    def inside(points: NDArray[np.float64]) -> NDArray[np.bool_]:
        xy = points[:, :2]
        return np.asarray(np.all((xy >= 0) & (xy < target), axis=1), dtype=np.bool_)

    crop, sites, codes = _rotated_crop(atoms, angle_deg, target, inside)
    crop.info = {"vacancy_sites": sites, "vacancy_labels": codes}
    names = list(atoms.info.get("defect_counts", {}))
    return _finish(crop, atoms.info, target, float(atoms.cell[2, 2]), names)


def _shift(atoms: Atoms, shift: NDArray[np.float64]) -> Atoms:
    """Translate a periodic structure in x, y and wrap atoms and vacancy sites."""
    lengths = _cell_lengths(atoms)
    out = copy_atoms(atoms)
    out.positions[:, :2] = (out.positions[:, :2] + shift) % lengths
    sites = np.array(out.info["vacancy_sites"], dtype=np.float64)
    sites[:, :2] = (sites[:, :2] + shift) % lengths
    out.info["vacancy_sites"] = sites
    return out


def grain_boundary(
    left: Atoms,
    right: Atoms | None = None,
    *,
    rotation_deg: float,
    separation: float,
    base_rotation_deg: float = 0.0,
    extent: tuple[float, float] | None = None,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Two grains side by side along x, the right one rotated relative to the left.

    The boundary is the line ``x = extent[0] / 2``. The left grain is ``left`` rotated
    by ``base_rotation_deg`` and keeps ``x < x_b - separation / 2``; the right grain is
    ``right`` (default ``left``), translated by a uniformly random fraction of its cell
    (so a 0° boundary still breaks the lattice registry), rotated by
    ``base_rotation_deg + rotation_deg`` and keeps ``x >= x_b + separation / 2``.
    Both grains stay in their own planes; where they overlap, both are kept (one
    monolayer partly on the other, seen in projection).

    Parameters
    ----------
    left, right : ase.Atoms
        Periodic structures with orthogonal cells (not modified).
    rotation_deg : float
        Rotation of the right grain relative to the left [deg].
    separation : float
        Gap between the grains [Å]; negative values overlap them by ``-separation``.
    base_rotation_deg : float
        Rotation of the left grain [deg].
    extent : tuple of float, optional
        ``(Lx, Ly)`` of the result's cell [Å]; default the left structure's cell.
    rng : numpy.random.Generator or int or None
        Random source for the right grain's translation.

    Returns
    -------
    ase.Atoms
        Not periodic; labels, vacancy sites and recounted ``defect_counts`` of both
        grains.
    """
    gen = as_generator(rng)
    right = left if right is None else right
    target = _cell_lengths(left) if extent is None else np.asarray(extent, dtype=np.float64)
    if target.shape != (2,) or np.any(target <= 0):
        raise ValueError(f"extent must be two positive lengths [Å], got {extent}")
    if abs(separation) >= target[0]:
        raise ValueError(
            f"grain separation {separation:g} Å must be smaller in size than the cell "
            f"width {target[0]:g} Å"
        )
    boundary = target[0] / 2

    def region(low: float, high: float) -> Callable[[NDArray[np.float64]], NDArray[np.bool_]]:
        def inside(points: NDArray[np.float64]) -> NDArray[np.bool_]:
            x, y = points[:, 0], points[:, 1]
            return np.asarray((x >= low) & (x < high) & (y >= 0) & (y < target[1]), dtype=np.bool_)

        return inside

    shifted = _shift(right, gen.uniform(0.0, 1.0, size=2) * _cell_lengths(right))
    left_part, left_sites, left_codes = _rotated_crop(
        left, base_rotation_deg, target, region(0.0, boundary - separation / 2)
    )
    right_part, right_sites, right_codes = _rotated_crop(
        shifted,
        base_rotation_deg + rotation_deg,
        target,
        region(boundary + separation / 2, float(target[0])),
    )
    out = left_part + right_part
    out.info = {"vacancy_sites": np.zeros((0, 3)), "vacancy_labels": np.zeros(0, np.int64)}
    add_vacancy_sites(out, left_sites, left_codes)
    add_vacancy_sites(out, right_sites, right_codes)
    height = float(max(left.cell[2, 2], right.cell[2, 2]))
    names = [*left.info.get("defect_counts", {}), *right.info.get("defect_counts", {})]
    return _finish(out, left.info, target, height, list(dict.fromkeys(names)))


def beam_damage(
    atoms: Atoms, n_atoms: int, *, rng: np.random.Generator | int | None = None
) -> Atoms:
    """Remove a random atom and its ``n_atoms - 1`` nearest neighbours.

    Distances are 3-D, with the minimum image in x and y when the structure is
    periodic; ties are broken by atom order. The removed positions become vacancy sites
    with code ``DEFECT_CODES["beam_damage"]``. A removed defect atom takes its defect
    with it: it is simply gone from the labels and from the recounted
    ``info["defect_counts"]``; vacancy sites already recorded are kept.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure with labels (not modified).
    n_atoms : int
        Number of atoms removed in total, >= 1.
    rng : numpy.random.Generator or int or None
        Random source for the first atom.

    Returns
    -------
    ase.Atoms
        A new structure with ``n_atoms`` fewer atoms.
    """
    gen = as_generator(rng)
    if not 1 <= n_atoms <= len(atoms):
        raise ValueError(f"beam damage must remove 1 to {len(atoms)} atoms, got {n_atoms}")
    first = int(gen.integers(len(atoms)))
    delta = atoms.positions - atoms.positions[first]
    if atoms.info.get("periodic", True):
        lengths = _cell_lengths(atoms)
        delta[:, :2] -= lengths * np.rint(delta[:, :2] / lengths)
    distance = np.linalg.norm(delta, axis=1)
    distance[first] = -1.0  # the chosen atom first even if another sits on top of it
    removed = np.argsort(distance, kind="stable")[:n_atoms]
    out = copy_atoms(atoms)
    add_vacancy_sites(out, atoms.positions[removed], DEFECT_CODES["beam_damage"])
    delete_atoms(out, removed.tolist())
    out.info["defect_counts"] = recount_defects(out, list(atoms.info.get("defect_counts", {})))
    return out


def apply_messy(
    structure: Atoms | Callable[[np.random.Generator], Atoms],
    spec: Messy,
    *,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Apply seed 003's messy procedure (Supplementary Materials) to one structure.

    With probability ``spec.grain_boundary_probability`` a grain boundary is made
    (relative rotation from ``spec.grain_rotation`` [deg], separation from
    ``spec.grain_separation`` [Å]), otherwise the lattice is rotated by a draw of
    ``spec.rotation`` [deg]. Then, independently, with probability
    ``spec.beam_damage_probability``, ``spec.beam_damage_atoms`` atoms (a random one
    and its nearest neighbours; at most all atoms of the structure) are removed.

    Parameters
    ----------
    structure : ase.Atoms or callable
        The periodic structure, or a function building one from a generator: then a
        grain boundary's right grain is built anew (its own defect placement) rather
        than a shifted copy of the left.
    spec : Messy
        Probabilities and parameter distributions.
    rng : numpy.random.Generator or int or None
        Random source; draws are made in a fixed order (branch, its parameters, the
        right grain, beam-damage choice, its size, its site).

    Returns
    -------
    ase.Atoms
        The transformed structure; ``info["messy"]`` records numbers only (they become
        dataset columns): ``grain_boundary`` (1 or 0), ``rotation`` [deg],
        ``grain_rotation`` [deg], ``grain_separation`` [Å] (NaN where not applied) and
        ``beam_damage_atoms`` (0 where not applied).
    """
    gen = as_generator(rng)
    left = structure(gen) if callable(structure) else structure
    record: dict[str, float | int] = {
        "grain_boundary": 0,
        "rotation": math.nan,
        "grain_rotation": math.nan,
        "grain_separation": math.nan,
        "beam_damage_atoms": 0,
    }
    if gen.random() < spec.grain_boundary_probability:
        relative = sample_param(spec.grain_rotation, gen)
        separation = sample_param(spec.grain_separation, gen)
        right = structure(gen) if callable(structure) else None
        out = grain_boundary(left, right, rotation_deg=relative, separation=separation, rng=gen)
        record.update(grain_boundary=1, grain_rotation=relative, grain_separation=separation)
    else:
        angle = sample_param(spec.rotation, gen)
        out = rotate_lattice(left, angle)
        record["rotation"] = angle
    if gen.random() < spec.beam_damage_probability:
        n_atoms = min(int(sample_param(spec.beam_damage_atoms, gen)), len(out))
        out = beam_damage(out, n_atoms, rng=gen)
        record["beam_damage_atoms"] = n_atoms
    out.info["messy"] = record
    return out
