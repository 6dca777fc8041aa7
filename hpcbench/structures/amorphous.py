"""Amorphous supports and heavy atoms on them (single-atom catalysts, seed 001 substrates).

:func:`amorphous_slab` fills a slab that is periodic in x and y with atoms by random
sequential insertion (RSI): uniform random candidates, each kept only if it is at least
``min_distance`` from every atom kept before it. Amorphous carbon is RSI at 0.1103
atoms/Å³ (≈ 2.2 g/cm³) with 1.4 Å (seed 001). The insertion is vectorised: candidates
come in batches that grow with the number still missing, conflicts with kept atoms are
found with one periodic :class:`scipy.spatial.cKDTree` query per batch, and conflicts
inside a batch drop the later candidate of each close pair (so the result is exactly
RSI in candidate order). A fixed batch of 256 took 11 s for 54 k atoms; the growing
batch fills the same slab in about a second.

:func:`supported_atoms` puts isolated heavy atoms and small clusters on either surface
of such a slab, labelled ``heavy_atom``; the support's atoms carry the ``support`` code,
which no mask or coordinate label ever includes.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES
from hpcbench.structures._util import as_generator, init_labels

__all__ = [
    "AMORPHOUS_CARBON_DENSITY",
    "amorphous_slab",
    "rough_surface",
    "supported_atoms",
]

AMORPHOUS_CARBON_DENSITY = 0.1103
"""Number density of amorphous carbon [atoms/Å³] (≈ 2.2 g/cm³; seed 001)."""

_SUPPORT = DEFECT_CODES["support"]
_HEAVY = DEFECT_CODES["heavy_atom"]
_MIN_BATCH = 256
_MAX_ROUNDS = 10_000
_SURFACE_MODES = 24
# Nearest-neighbour distance of heavy atoms in a cluster [Å] (Pt-Pt 2.77, Au-Au 2.88).
_CLUSTER_BOND = 2.75
# Height of an adsorbed heavy atom above (or below) the local support surface [Å].
_ADSORPTION_HEIGHT = 2.0


def rough_surface(
    extent: tuple[float, float],
    amplitude: float,
    scale: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A smooth random height field, periodic on the cell, as Fourier modes.

    ``h(x, y) = amplitude · √(2/K) Σ_k cos(2π (m_k x / Lx + n_k y / Ly) + φ_k)``: unit
    variance times ``amplitude`` [Å], with integer wave numbers drawn so that the
    correlation length is about ``scale`` [Å] (periodic on the cell by construction).

    Returns
    -------
    tuple of ndarray
        Wave numbers ``(K, 2)`` [1/Å], phases ``(K,)`` and amplitudes ``(K,)`` [Å];
        evaluate with ``(amp * cos(2π xy @ k.T + φ)).sum(-1)``.
    """
    lx, ly = extent
    freq = rng.normal(0.0, 1.0 / (2.0 * math.pi * scale), size=(_SURFACE_MODES, 2))
    # Snap to the cell's reciprocal lattice so the surface tiles without a seam.
    m = np.round(freq[:, 0] * lx)
    n = np.round(freq[:, 1] * ly)
    k = np.stack([m / lx, n / ly], axis=1)
    phase = rng.uniform(0.0, 2.0 * math.pi, _SURFACE_MODES)
    amp = np.full(_SURFACE_MODES, amplitude * math.sqrt(2.0 / _SURFACE_MODES))
    constant = (m == 0) & (n == 0)
    amp[constant] = 0.0  # a zero wave vector would only shift the mean thickness
    return k, phase, amp


def _height(
    xy: NDArray[np.float64],
    surface: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
) -> NDArray[np.float64]:
    k, phase, amp = surface
    result: NDArray[np.float64] = (amp * np.cos(2.0 * math.pi * (xy @ k.T) + phase)).sum(axis=-1)
    return result


def amorphous_slab(
    extent: tuple[float, float],
    thickness: float,
    *,
    density: float = AMORPHOUS_CARBON_DENSITY,
    min_distance: float = 1.4,
    roughness: float = 0.0,
    roughness_scale: float = 10.0,
    element: str = "C",
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """An amorphous slab, periodic in x and y, by vectorised random sequential insertion.

    The bottom surface is ``z = 0``; the top is ``z = thickness + h(x, y)`` with ``h`` a
    periodic random height field of std ``roughness`` and correlation length
    ``roughness_scale`` (:func:`rough_surface`), clipped so the slab is at least
    ``min_distance`` thick. The number of atoms is ``round(density · volume)``.

    Parameters
    ----------
    extent : tuple of float
        Cell size ``(Lx, Ly)`` [Å].
    thickness : float
        Mean thickness [Å].
    density : float
        Number density [atoms/Å³].
    min_distance : float
        Smallest distance between two atoms, periodic images included [Å].
    roughness : float
        Std of the top surface's height [Å]; 0 for a flat slab.
    roughness_scale : float
        Correlation length of the surface [Å].
    element : str
        Chemical symbol of every atom.
    rng : numpy.random.Generator or int or None
        Random source.

    Returns
    -------
    ase.Atoms
        Orthogonal cell ``Lx × Ly × (top + 2 · min_distance)``, periodic in x and y,
        with the label conventions of :mod:`hpcbench.defects` (every atom ``support``)
        and ``info["surface"]``: the top surface as Fourier modes (see
        :func:`rough_surface`) and ``info["thickness"]`` [Å].

    Raises
    ------
    ValueError
        If the density cannot be reached with this ``min_distance`` (RSI jams near a
        packing fraction of 0.38).
    """
    gen = as_generator(rng)
    lx, ly = float(extent[0]), float(extent[1])
    if min(lx, ly) < 2.0 * min_distance:
        raise ValueError(f"cell {lx:g} × {ly:g} Å is too small for min_distance {min_distance:g} Å")
    if thickness <= 0:
        raise ValueError(f"thickness must be > 0, got {thickness:g} Å")
    packing = density * math.pi / 6.0 * min_distance**3
    if packing > 0.3:
        raise ValueError(
            f"density {density:g} /Å³ with min_distance {min_distance:g} Å is a packing "
            f"fraction of {packing:.2f}: random insertion jams near 0.38; lower either"
        )
    surface = rough_surface((lx, ly), roughness, roughness_scale, gen)
    top_max = thickness + 4.0 * roughness
    # Volume under the clipped surface, estimated on a grid fine against its scale.
    grid = np.stack(
        np.meshgrid(np.linspace(0, lx, 64, endpoint=False), np.linspace(0, ly, 64, endpoint=False)),
        axis=-1,
    ).reshape(-1, 2)
    top_grid = np.clip(thickness + _height(grid, surface), min_distance, top_max)
    n_target = round(density * lx * ly * float(top_grid.mean()))
    # z is not periodic: a box three times the slab's height never wraps a pair.
    box = np.array([lx, ly, 3.0 * top_max + 3.0 * min_distance])
    kept = np.zeros((0, 3))
    for _ in range(_MAX_ROUNDS):
        missing = n_target - len(kept)
        if missing <= 0:
            break
        size = max(_MIN_BATCH, 2 * missing)
        candidates = gen.uniform(0.0, 1.0, size=(size, 3)) * [lx, ly, top_max]
        top = np.clip(thickness + _height(candidates[:, :2], surface), min_distance, top_max)
        candidates = candidates[candidates[:, 2] < top]
        if len(kept):
            tree = cKDTree(kept, boxsize=box)
            near = tree.query_ball_point(candidates, min_distance, return_length=True)
            candidates = candidates[np.asarray(near) == 0]
        if len(candidates) > 1:
            pairs = cKDTree(candidates, boxsize=box).query_pairs(
                min_distance, output_type="ndarray"
            )
            if len(pairs):
                # Each close pair drops its later candidate: RSI in candidate order.
                keep = np.ones(len(candidates), bool)
                keep[pairs.max(axis=1)] = False
                candidates = candidates[keep]
        kept = np.concatenate([kept, candidates[:missing]])
    else:  # pragma: no cover - guarded by the packing check above
        raise RuntimeError(f"random insertion placed {len(kept)} of {n_target} atoms")
    atoms = Atoms(
        [element] * len(kept),
        positions=kept,
        cell=[lx, ly, top_max + 2.0 * min_distance],
        pbc=[True, True, False],
    )
    init_labels(atoms, periodic=True)
    atoms.arrays["label"][:] = _SUPPORT
    atoms.info["surface"] = surface
    atoms.info["thickness"] = float(thickness)
    return atoms


def _place_in_plane(
    n: int,
    extent: tuple[float, float],
    separation: float,
    rng: np.random.Generator,
    taken: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``n`` uniform in-plane positions [Å], ``separation`` apart and from ``taken``."""
    lx, ly = extent
    placed = [p for p in taken]
    result: list[NDArray[np.float64]] = []
    for _ in range(n):
        for _attempt in range(1000):
            p = rng.uniform(0.0, 1.0, 2) * [lx, ly]
            if all(_periodic_distance(p, q, extent) >= separation for q in placed):
                break
        else:
            raise ValueError(
                f"cannot place {n} heavy atoms {separation:g} Å apart in a "
                f"{lx:g} × {ly:g} Å cell; use a larger cell or fewer atoms"
            )
        placed.append(p)
        result.append(p)
    return np.asarray(result, dtype=np.float64).reshape(-1, 2)


def _periodic_distance(
    p: NDArray[np.float64], q: NDArray[np.float64], extent: tuple[float, float]
) -> float:
    d = np.abs(p - q)
    d = np.minimum(d, np.asarray(extent) - d)
    return float(np.hypot(d[0], d[1]))


def _cluster_offsets(size: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Relative positions [Å] of a compact random cluster grown atom by atom on a surface.

    Each new atom sits one bond length from a random atom of the cluster, in a random
    direction of the upper half-space, and at least 0.9 bond lengths from all others.
    """
    offsets = [np.zeros(3)]
    while len(offsets) < size:
        anchor = offsets[rng.integers(len(offsets))]
        direction = rng.normal(size=3)
        direction[2] = abs(direction[2]) * 0.5
        direction /= np.linalg.norm(direction)
        candidate = anchor + _CLUSTER_BOND * direction
        if all(np.linalg.norm(candidate - o) >= 0.9 * _CLUSTER_BOND for o in offsets):
            offsets.append(candidate)
    return np.asarray(offsets)


def supported_atoms(
    support: Atoms,
    *,
    element: str,
    atoms: int,
    clusters: int = 0,
    cluster_size: tuple[int, ...] = (3,),
    surface: str = "both",
    separation: float = 3.0,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Heavy atoms and small clusters adsorbed on an amorphous slab, labelled ``heavy_atom``.

    Isolated atoms and cluster centres are placed uniformly in the plane, at least
    ``separation`` [Å] apart (periodic), each on the top surface (2 Å above the local
    height) or under the bottom surface (2 Å below ``z = 0``), chosen per site by
    ``surface``; clusters grow from their centre away from the support.

    Parameters
    ----------
    support : ase.Atoms
        A slab from :func:`amorphous_slab` (uses ``info["surface"]`` and
        ``info["thickness"]``); not modified.
    element : str
        Chemical symbol of the heavy atoms.
    atoms : int
        Number of isolated atoms.
    clusters : int
        Number of clusters.
    cluster_size : tuple of int
        Atoms per cluster, one entry per cluster (or one entry for all).
    surface : {"top", "bottom", "both"}
        Where the heavy atoms sit; ``both`` draws top or bottom with equal odds per site.
    separation : float
        Smallest in-plane distance between sites (atoms or cluster centres) [Å].
    rng : numpy.random.Generator or int or None
        Random source.

    Returns
    -------
    ase.Atoms
        The support's atoms then the heavy atoms, ``info["defect_counts"]`` =
        ``{"heavy_atom": number of heavy atoms}``.
    """
    gen = as_generator(rng)
    result: Atoms = support.copy()  # type: ignore[no-untyped-call]
    result.info = dict(support.info)
    extent = (float(support.cell[0, 0]), float(support.cell[1, 1]))
    sites = _place_in_plane(atoms + clusters, extent, separation, gen, np.zeros((0, 2)))
    sizes = [1] * atoms + [int(cluster_size[i % len(cluster_size)]) for i in range(clusters)]
    positions: list[NDArray[np.float64]] = []
    thickness = float(support.info["thickness"])
    min_top = 0.0 if len(support) == 0 else 1.0
    for xy, size in zip(sites, sizes, strict=True):
        on_top = surface == "top" or (surface == "both" and bool(gen.integers(2)))
        offsets = _cluster_offsets(size, gen) if size > 1 else np.zeros((1, 3))
        for offset in offsets:
            at = xy + offset[:2]
            if on_top:
                top = max(
                    thickness + float(_height(at[None, :], support.info["surface"])[0]), min_top
                )
                z = top + _ADSORPTION_HEIGHT + offset[2]
            else:
                z = -_ADSORPTION_HEIGHT - offset[2]
            positions.append(np.array([at[0] % extent[0], at[1] % extent[1], z]))
    if positions:
        heavy = Atoms([element] * len(positions), positions=np.asarray(positions))
        heavy.arrays["label"] = np.full(len(positions), _HEAVY, dtype=np.int64)
        result.extend(heavy)  # type: ignore[no-untyped-call]
    # Bottom-surface atoms sit below z = 0: shift everything into the cell.
    shift = _ADSORPTION_HEIGHT + 2.0 * _CLUSTER_BOND
    result.positions[:, 2] += shift
    result.cell[2, 2] = float(support.cell[2, 2]) + 2.0 * shift
    result.info["defect_counts"] = {"heavy_atom": len(positions)}
    return result
