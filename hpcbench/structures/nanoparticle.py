"""Nanoparticles for HRTEM (seed 001): fcc metals and CdSe, with planar defects, on supports.

Spherical particles are built as close-packed layers stacked along one axis (fcc
[111], wurtzite [0001], zinc-blende [111]) with an explicit stacking sequence, cut to a
sphere and turned by a uniform random rotation. Every layer is a triangular lattice of
spacing ``d`` in one of three in-plane positions ``A`` (0), ``B`` ((a1 + a2)/3) or ``C``
(2 (a1 + a2)/3); a structure is the sequence of *steps* between consecutive layers,
``+1`` (A→B→C→A) or ``−1`` (A→C→B→A):

- fcc / zinc blende: every step ``+1`` (``ABCABC…``); wurtzite: steps alternate (``ABAB…``);
- a **twin** reverses every step after its mirror plane: ``ABCAB|ACBA`` (mirror at the
  fifth layer);
- an **intrinsic stacking fault** of an fcc or zinc-blende crystal reverses one step,
  which is one layer removed from the sequence: ``ABCAB|ABC`` (the C after the fifth
  layer is missing);
- a stacking fault of wurtzite (type I1, the lowest-energy one) reverses every step after
  it: ``ABAB|CBCB``, one cubic (zinc-blende) layer in the hexagonal crystal.

CdSe is stacked as Cd–Se bilayers: each layer's Se sits straight above its Cd at the
bond length ``u · c`` along the stacking axis (the polar axis), so both phases have
tetrahedral Cd–Se bonds of 2.63 Å.

:func:`faceted_particle` wraps :mod:`ase.cluster` (Wulff construction, Marks
decahedron, Mackay icosahedron) at a requested volume-equivalent diameter, and
:func:`particle_on_support` puts a particle at a random in-plane position on top of an
amorphous slab from :func:`hpcbench.structures.amorphous.amorphous_slab`, removing the
support atoms it would overlap.

Particle atoms carry :data:`PARTICLE_CODE`: the ``particle`` code of
:mod:`hpcbench.defects` once it exists, ``heavy_atom`` until then; support atoms keep
``support``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal

import numpy as np
from ase import Atoms
from ase.cluster import Decahedron, Icosahedron, wulff_construction
from ase.data import atomic_numbers, reference_states
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES
from hpcbench.structures._util import as_generator, init_labels

__all__ = [
    "CDSE_WURTZITE",
    "CDSE_ZINCBLENDE_A",
    "PARTICLE_CODE",
    "PARTICLE_NAME",
    "FacetedKind",
    "PlanarDefect",
    "cdse_particle",
    "faceted_particle",
    "fcc_lattice_constant",
    "particle_on_support",
    "random_rotation",
    "spherical_particle",
    "stacking_steps",
]

PlanarDefect = Literal["none", "twin", "stacking_fault"]
FacetedKind = Literal["wulff", "decahedron", "icosahedron"]

PARTICLE_NAME: Final[str] = "particle" if "particle" in DEFECT_CODES else "heavy_atom"
"""Label class of particle atoms: ``particle`` once :mod:`hpcbench.defects` has it."""
PARTICLE_CODE: Final[int] = int(DEFECT_CODES[PARTICLE_NAME])
"""Label code of particle atoms (see :data:`PARTICLE_NAME`)."""
_SUPPORT: Final = int(DEFECT_CODES["support"])

CDSE_WURTZITE: Final = MappingProxyType({"a": 4.2985, "c": 7.0152, "u": 0.375})
"""Wurtzite CdSe: lattice constants ``a``, ``c`` [Å] and internal parameter ``u``."""
CDSE_ZINCBLENDE_A: Final = 6.077
"""Zinc-blende CdSe lattice constant [Å] (Cd–Se bond ``a √3 / 4`` = 2.631 Å)."""

# Relative surface energies of the Wulff construction: (111) < (100) < (110), the
# order of fcc metals (ratios of ASE's example; Au's DFT values are ~0.74:0.89:0.91).
_WULFF_ENERGIES: Final = {(1, 1, 1): 0.9, (1, 0, 0): 1.0, (1, 1, 0): 1.1}


def fcc_lattice_constant(element: str) -> float:
    """The fcc lattice constant [Å] of ``element`` from :data:`ase.data.reference_states`.

    Raises
    ------
    ValueError
        If ``element`` is unknown or its reference state is not fcc.
    """
    number = atomic_numbers.get(element)
    if number is None:
        raise ValueError(f"unknown element {element!r}")
    state = reference_states[number]
    if state is None or state.get("symmetry") != "fcc":
        symmetry = None if state is None else state.get("symmetry")
        raise ValueError(
            f"{element} is {symmetry} in ase.data.reference_states, not fcc; "
            "pass lattice_constant to build it as fcc anyway"
        )
    return float(state["a"])  # type: ignore[arg-type]


def random_rotation(rng: np.random.Generator | int | None) -> NDArray[np.float64]:
    """A rotation matrix drawn uniformly from SO(3) (Haar measure).

    A unit quaternion from four independent standard normals is uniform on the
    3-sphere, so its rotation is uniform on SO(3).

    Returns
    -------
    ndarray
        ``(3, 3)`` proper rotation; turn positions with ``positions @ R.T``.
    """
    gen = as_generator(rng)
    q = gen.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def stacking_steps(
    n_layers: int,
    *,
    hexagonal: bool,
    defect: PlanarDefect = "none",
    planes: Sequence[int] | NDArray[np.int64] = (),
) -> NDArray[np.int64]:
    """Layer positions (0 = A, 1 = B, 2 = C) of a close-packed stacking with planar defects.

    Parameters
    ----------
    n_layers : int
        Number of layers.
    hexagonal : bool
        ``ABAB…`` (wurtzite, hcp) instead of ``ABCABC…`` (fcc, zinc blende).
    defect : {"none", "twin", "stacking_fault"}
        Kind of every planar defect.
    planes : sequence of int
        Layer index ``i`` of each defect: the step from layer ``i`` to ``i + 1`` is the
        first one changed (a twin's mirror plane is layer ``i``; an fcc stacking fault
        removes the layer that would follow ``i``).

    Returns
    -------
    ndarray
        ``(n_layers,)`` int64 in {0, 1, 2}, starting at ``A``.
    """
    steps = np.ones(max(n_layers - 1, 0), dtype=np.int64)
    if hexagonal:
        steps[1::2] = -1
    for plane in planes:
        if not 0 <= plane < len(steps):
            raise ValueError(f"defect plane {plane} is outside 0..{len(steps) - 1}")
        if defect == "twin" or (defect == "stacking_fault" and hexagonal):
            steps[plane:] *= -1  # mirror (fcc twin) or I1 fault (hexagonal)
        elif defect == "stacking_fault":
            steps[plane] *= -1  # intrinsic fault: one layer missing
        else:
            raise ValueError(f"defect {defect!r} has no plane; expected twin or stacking_fault")
    letters: NDArray[np.int64] = np.concatenate([[0], np.cumsum(steps)]) % 3
    return letters


def _ball_of_layers(
    *,
    spacing: float,
    layer_height: float,
    basis: Sequence[tuple[str, float]],
    hexagonal: bool,
    diameter: float,
    defect: PlanarDefect,
    defect_count: int,
    defect_range: float,
    rotate: bool,
    vacuum: float,
    gen: np.random.Generator,
    balance: float | None = None,
    bond: float = 0.0,
) -> Atoms:
    """Close-packed layers cut to a sphere of random centre, randomly rotated.

    ``basis`` lists the atoms of one layer site as ``(symbol, height above the layer)``
    [Å]. Positions are built in the stacking frame (layers normal to z), centred on the
    sphere, turned, then shifted into a box with ``vacuum`` on every side. With
    ``balance``, a two-species particle is trimmed to that stoichiometry tolerance
    (:func:`_balanced`).
    """
    radius = 0.5 * diameter
    a1 = np.array([spacing, 0.0])
    a2 = np.array([0.5 * spacing, 0.5 * math.sqrt(3.0) * spacing])
    lattice = np.stack([a1, a2])  # rows: in-plane lattice vectors
    # The sphere's centre: uniform over one unit cell of the lattice.
    f = gen.uniform(0.0, 1.0, 3)
    centre = np.array([*(f[:2] @ lattice), f[2] * layer_height])
    heights = np.array([h for _, h in basis])
    k_min = math.floor((centre[2] - radius - heights.max()) / layer_height)
    k_max = math.ceil((centre[2] + radius - heights.min()) / layer_height)
    layers = np.arange(k_min, k_max + 1)
    # Layer ``i`` straddles height k·h + mean(basis height): defects go between layers
    # whose mid-plane is within ``defect_range`` of the radius from the centre.
    mid = (layers[:-1] + 0.5) * layer_height + heights.mean() - centre[2]
    candidates = np.flatnonzero(np.abs(mid) <= defect_range * radius)
    planes: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
    if defect != "none":
        if defect_count > len(candidates):
            raise ValueError(
                f"cannot place {defect_count} planar defects: only {len(candidates)} layer "
                f"gaps within {defect_range:g} of the radius; use a larger particle"
            )
        planes = np.sort(gen.choice(candidates, size=defect_count, replace=False))
    letters = stacking_steps(len(layers), hexagonal=hexagonal, defect=defect, planes=planes)
    # In-plane lattice points within the radius of the centre's column, all layers at once.
    n = math.ceil(radius / (spacing * math.sqrt(3.0) / 2.0)) + 2
    frac_centre = np.linalg.solve(lattice.T, centre[:2])
    i, j = np.meshgrid(
        np.arange(-n, n + 1) + round(frac_centre[0]),
        np.arange(-n, n + 1) + round(frac_centre[1]),
        indexing="ij",
    )
    grid = np.stack([i.ravel(), j.ravel()], axis=1) @ lattice  # (P, 2)
    shift = letters[:, None] * (a1 + a2)[None, :] / 3.0  # (L, 2)
    xy = (shift[:, None, :] + grid[None, :, :]).reshape(-1, 2)  # (L·P, 2)
    layer_of = np.repeat(np.arange(len(layers)), len(grid))
    symbols: list[str] = []
    parts: list[NDArray[np.float64]] = []
    layer_index: list[NDArray[np.int64]] = []
    for symbol, height in basis:
        z = layers[layer_of] * layer_height + height
        pos = np.column_stack([xy, z]) - centre
        inside = np.einsum("ij,ij->i", pos, pos) <= radius * radius
        parts.append(pos[inside])
        layer_index.append(layer_of[inside])
        symbols += [symbol] * int(inside.sum())
    positions = np.concatenate(parts)
    layer_of_atom = np.concatenate(layer_index)
    removed = 0
    if balance is not None:
        keep = _balanced(np.asarray(symbols), positions, balance, bond)
        removed = int(np.count_nonzero(~keep))
        positions, layer_of_atom = positions[keep], layer_of_atom[keep]
        symbols = [s for s, k in zip(symbols, keep, strict=True) if k]
    occupied = np.unique(layer_of_atom)
    rotation = random_rotation(gen) if rotate else np.eye(3)
    positions = positions @ rotation.T
    offset = vacuum - positions.min(axis=0)
    atoms = Atoms(
        symbols, positions=positions + offset, cell=np.ptp(positions, axis=0) + 2.0 * vacuum
    )
    init_labels(atoms, periodic=False)
    atoms.arrays["label"][:] = PARTICLE_CODE
    atoms.info["defect_counts"] = {PARTICLE_NAME: len(atoms)}
    atoms.info["diameter"] = float(diameter)
    atoms.info["center"] = offset
    atoms.info["rotation"] = rotation
    atoms.info["stacking"] = "".join("ABC"[s] for s in letters[occupied])
    atoms.info["planar_defect"] = defect
    atoms.info["defect_planes"] = (planes - occupied[0]).astype(np.int64)
    atoms.info["layer_spacing"] = float(layer_height)
    if balance is not None:
        atoms.info["removed_for_stoichiometry"] = removed
    return atoms


def _balanced(
    symbols: NDArray[np.str_], positions: NDArray[np.float64], tolerance: float, bond: float
) -> NDArray[np.bool_]:
    """Which atoms to keep so that the two species' counts are within ``tolerance``.

    The majority species loses its atoms with the fewest bonds to the other species
    (within 1.15 bond lengths [Å]), farthest from the origin first, until
    ``n_majority ≤ n_minority · (1 + tolerance)``. Bonds join unlike atoms only, so
    removing majority atoms changes no other majority atom's count: one pass is exact.
    """
    kinds, counts = np.unique(symbols, return_counts=True)
    keep = np.ones(len(symbols), dtype=bool)
    if len(kinds) != 2:
        return keep
    major = kinds[np.argmax(counts)]
    excess = int(counts.max()) - math.floor(int(counts.min()) * (1.0 + tolerance) + 1e-9)
    if excess <= 0:
        return keep
    is_major = symbols == major
    pairs = cKDTree(positions).query_pairs(1.15 * bond, output_type="ndarray")
    unlike = pairs[is_major[pairs[:, 0]] != is_major[pairs[:, 1]]]
    bonds = np.bincount(unlike.ravel(), minlength=len(symbols))
    candidates = np.flatnonzero(is_major)
    radius = np.linalg.norm(positions[candidates], axis=1)
    order = np.lexsort((-radius, bonds[candidates]))  # fewest bonds, then outermost
    keep[candidates[order[:excess]]] = False
    return keep


def _check_particle_args(diameter: float, vacuum: float, defect_count: int) -> None:
    if not diameter > 0:
        raise ValueError(f"diameter must be > 0, got {diameter:g} Å")
    if vacuum < 0:
        raise ValueError(f"vacuum must be >= 0, got {vacuum:g} Å")
    if defect_count < 1:
        raise ValueError(f"defect_count must be >= 1, got {defect_count}")


def spherical_particle(
    element: str,
    diameter: float,
    *,
    rng: np.random.Generator | int | None,
    defect: PlanarDefect = "none",
    defect_count: int = 1,
    defect_range: float = 0.5,
    lattice_constant: float | None = None,
    rotate: bool = True,
    vacuum: float = 5.0,
) -> Atoms:
    """An fcc particle cut to a sphere, with optional twins or stacking faults on {111}.

    The crystal is built as close-packed (111) layers along z with an explicit stacking
    sequence (see the module docstring): perfect ``ABCABC…``, twin ``ABCAB|ACBA…`` or
    intrinsic stacking fault ``ABCAB|ABC…``, each defect at a random layer gap. It is cut
    to a sphere whose centre is uniform over one unit cell (so particles of one size
    differ), then turned by a uniform random rotation.

    Parameters
    ----------
    element : str
        Chemical symbol (e.g. ``"Au"``); fcc in :data:`ase.data.reference_states` unless
        ``lattice_constant`` is given.
    diameter : float
        Diameter of the cutting sphere [Å]; atom centres lie within it.
    rng : numpy.random.Generator or int or None
        Random source (centre, defect planes, rotation).
    defect : {"none", "twin", "stacking_fault"}
        Kind of planar defect.
    defect_count : int
        Number of planar defects (ignored for ``"none"``), at distinct layer gaps.
    defect_range : float
        Defect planes are drawn uniformly among the layer gaps within
        ``defect_range · diameter / 2`` of the centre (so they cross the particle).
    lattice_constant : float or None
        Cubic lattice constant [Å]; ``None`` takes ASE's reference value (Au 4.08).
    rotate : bool
        Apply the random rotation; ``False`` keeps [111] along z (for inspection).
    vacuum : float
        Empty space between the particle's bounding box and its (non-periodic) cell [Å].

    Returns
    -------
    ase.Atoms
        Labelled :data:`PARTICLE_CODE`, no periodic boundaries. ``info``: ``diameter``
        [Å]; ``center``: the sphere's centre in the cell [Å]; ``rotation``: the ``(3, 3)``
        matrix applied (stacking frame → cell: ``(positions - center) @ rotation`` gives
        layers normal to z); ``stacking``: letters of the occupied layers, bottom to top;
        ``defect_planes``: index in ``stacking`` of each defect's layer (a twin's mirror
        plane, the layer after which a fault removed one); ``planar_defect``;
        ``layer_spacing`` ``a/√3`` [Å]; ``defect_counts``.
    """
    _check_particle_args(diameter, vacuum, defect_count)
    a = fcc_lattice_constant(element) if lattice_constant is None else float(lattice_constant)
    if defect not in ("none", "twin", "stacking_fault"):
        raise ValueError(f"defect must be none, twin or stacking_fault, got {defect!r}")
    return _ball_of_layers(
        spacing=a / math.sqrt(2.0),
        layer_height=a / math.sqrt(3.0),
        basis=[(element, 0.0)],
        hexagonal=False,
        diameter=diameter,
        defect=defect,
        defect_count=defect_count,
        defect_range=defect_range,
        rotate=rotate,
        vacuum=vacuum,
        gen=as_generator(rng),
    )


def cdse_particle(
    diameter: float,
    *,
    phase: Literal["wurtzite", "zincblende"] = "wurtzite",
    stacking_fault: bool = False,
    rng: np.random.Generator | int | None,
    defect_count: int = 1,
    defect_range: float = 0.5,
    balance: float | None = 0.05,
    rotate: bool = True,
    vacuum: float = 5.0,
) -> Atoms:
    """A CdSe particle cut to a sphere: wurtzite or zinc blende, optionally faulted.

    Cd–Se bilayers are stacked along the polar axis (wurtzite [0001], zinc blende
    [111]) with Se at the bond length straight above Cd: wurtzite ``a`` 4.2985 Å,
    ``c`` 7.0152 Å, ``u`` 0.375 (bilayers ``c/2`` apart, stacking ``ABAB…``); zinc blende
    ``a`` 6.077 Å (``ABCABC…``). A stacking fault changes the bilayer stacking at a random
    gap: an I1 fault ``ABAB|CBCB`` in wurtzite, an intrinsic fault ``ABCAB|ABC`` in zinc
    blende. The sphere cuts atoms individually, which leaves small particles off
    stoichiometry (Cd:Se 0.87–1.16 over 200 seeds at 2 nm); with ``balance`` the
    majority species then loses its least-bonded, outermost atoms until
    ``majority / minority ≤ 1 + balance`` (``info["cd_se_ratio"]``,
    ``info["removed_for_stoichiometry"]``).

    Parameters
    ----------
    diameter : float
        Diameter of the cutting sphere [Å].
    phase : {"wurtzite", "zincblende"}
        Crystal structure.
    stacking_fault : bool
        Put ``defect_count`` stacking faults in the bilayer sequence.
    rng : numpy.random.Generator or int or None
        Random source (centre, fault planes, rotation).
    defect_count : int
        Number of stacking faults when ``stacking_fault``.
    defect_range : float
        Fault planes are drawn among the bilayer gaps within ``defect_range`` of the
        radius from the centre.
    balance : float or None
        Largest excess of one species over the other after trimming (0.05: at most
        5 % more Cd than Se or Se than Cd; 0: equal counts); ``None`` keeps the raw cut.
    rotate : bool
        Apply a uniform random rotation; ``False`` keeps the stacking axis along z.
    vacuum : float
        Empty space around the particle in its cell [Å].

    Returns
    -------
    ase.Atoms
        As :func:`spherical_particle`, plus ``info["phase"]`` and ``info["cd_se_ratio"]``.
    """
    _check_particle_args(diameter, vacuum, defect_count)
    if phase == "wurtzite":
        a, c, u = CDSE_WURTZITE["a"], CDSE_WURTZITE["c"], CDSE_WURTZITE["u"]
        spacing, layer_height, bond = a, 0.5 * c, u * c
    elif phase == "zincblende":
        a = CDSE_ZINCBLENDE_A
        spacing, layer_height, bond = a / math.sqrt(2.0), a / math.sqrt(3.0), a * math.sqrt(3) / 4
    else:
        raise ValueError(f"phase must be wurtzite or zincblende, got {phase!r}")
    atoms = _ball_of_layers(
        spacing=spacing,
        layer_height=layer_height,
        basis=[("Cd", 0.0), ("Se", bond)],
        hexagonal=phase == "wurtzite",
        diameter=diameter,
        defect="stacking_fault" if stacking_fault else "none",
        defect_count=defect_count,
        defect_range=defect_range,
        rotate=rotate,
        vacuum=vacuum,
        gen=as_generator(rng),
        balance=balance,
        bond=bond,
    )
    numbers = atoms.numbers
    n_se = int(np.count_nonzero(numbers == atomic_numbers["Se"]))
    atoms.info["phase"] = phase
    atoms.info["cd_se_ratio"] = (len(atoms) - n_se) / max(n_se, 1)
    return atoms


@functools.lru_cache(maxsize=256)
def _decahedron_count(p: int, q: int) -> int:
    """Number of atoms of ``Decahedron(p, q, r=1)`` (independent of element and size)."""
    return len(Decahedron("Au", p, q, 1, latticeconstant=4.0))  # type: ignore[no-untyped-call]


def _decahedron_shape(target: float) -> tuple[int, int]:
    """``(p, q)`` of the Marks decahedron (``|p − q| ≤ 1``) closest to ``target`` atoms."""
    best = (2, 2)
    for p in range(2, 64):
        shapes = [(p, q) for q in (p - 1, p, p + 1)]
        for shape in shapes:
            if abs(_decahedron_count(*shape) - target) < abs(_decahedron_count(*best) - target):
                best = shape
        if _decahedron_count(p, p - 1) > target:
            break
    return best


def _volume_per_atom(a: float) -> float:
    return a**3 / 4.0


def faceted_particle(
    element: str,
    kind: FacetedKind,
    size: float,
    *,
    rng: np.random.Generator | int | None,
    surface_energies: Mapping[tuple[int, int, int], float] | None = None,
    lattice_constant: float | None = None,
    rotate: bool = True,
    vacuum: float = 5.0,
) -> Atoms:
    """A faceted fcc particle from :mod:`ase.cluster`, randomly oriented.

    ``size`` is the volume-equivalent diameter: the particle has about
    ``N = π size³ / 6 / (a³ / 4)`` atoms (the bulk volume per atom), which makes sizes
    comparable across shapes and with :func:`spherical_particle`. ``wulff`` is
    :func:`ase.cluster.wulff_construction` with ``surface_energies`` (default (111) 0.9,
    (100) 1.0, (110) 1.1, relative) rounded to the closest size; ``decahedron`` a Marks
    decahedron (``Decahedron(p, q, 1)``, ``|p − q| ≤ 1`` chosen so ``N`` is closest);
    ``icosahedron`` a Mackay icosahedron with the closest number of shells.

    Parameters
    ----------
    element : str
        Chemical symbol (fcc unless ``lattice_constant`` is given).
    kind : {"wulff", "decahedron", "icosahedron"}
        Shape.
    size : float
        Volume-equivalent diameter [Å].
    rng : numpy.random.Generator or int or None
        Random source (rotation).
    surface_energies : mapping of Miller index to float, optional
        Relative surface energies of the Wulff construction.
    lattice_constant : float or None
        Cubic lattice constant [Å]; ``None`` takes ASE's reference value.
    rotate : bool
        Apply a uniform random rotation.
    vacuum : float
        Empty space around the particle in its cell [Å].

    Returns
    -------
    ase.Atoms
        Labelled :data:`PARTICLE_CODE`; ``info``: ``kind``, ``size`` [Å], ``rotation``,
        ``center`` (the cluster's centre in the cell [Å]), ``defect_counts``.
    """
    _check_particle_args(size, vacuum, 1)
    a = fcc_lattice_constant(element) if lattice_constant is None else float(lattice_constant)
    target = math.pi * size**3 / 6.0 / _volume_per_atom(a)
    if target < 13:
        raise ValueError(f"size {size:g} Å is under 13 atoms; faceted shapes need more")
    if kind == "wulff":
        energies = dict(_WULFF_ENERGIES if surface_energies is None else surface_energies)
        cluster = wulff_construction(  # type: ignore[no-untyped-call]
            element,
            list(energies),
            list(energies.values()),
            round(target),
            "fcc",
            rounding="closest",
            latticeconstant=a,
        )
    elif kind == "icosahedron":
        # Mackay icosahedron of n shells: (10n³ − 15n² + 11n − 3) / 3 atoms.
        shells = np.arange(2, 64)
        counts = (10 * shells**3 - 15 * shells**2 + 11 * shells - 3) / 3
        cluster = Icosahedron(  # type: ignore[no-untyped-call]
            element, int(shells[np.argmin(np.abs(counts - target))]), latticeconstant=a
        )
    elif kind == "decahedron":
        p, q = _decahedron_shape(target)
        cluster = Decahedron(element, p, q, 1, latticeconstant=a)  # type: ignore[no-untyped-call]
    else:
        raise ValueError(f"kind must be wulff, decahedron or icosahedron, got {kind!r}")
    positions = np.asarray(cluster.positions, dtype=np.float64)
    positions = positions - positions.mean(axis=0)
    rotation = random_rotation(as_generator(rng)) if rotate else np.eye(3)
    positions = positions @ rotation.T
    offset = vacuum - positions.min(axis=0)
    symbols = cluster.get_chemical_symbols()
    atoms = Atoms(
        symbols,
        positions=positions + offset,
        cell=np.ptp(positions, axis=0) + 2.0 * vacuum,
    )
    init_labels(atoms, periodic=False)
    atoms.arrays["label"][:] = PARTICLE_CODE
    atoms.info["defect_counts"] = {PARTICLE_NAME: len(atoms)}
    atoms.info["kind"] = kind
    atoms.info["size"] = float(size)
    atoms.info["center"] = offset
    atoms.info["rotation"] = rotation
    return atoms


def particle_on_support(
    particle: Atoms,
    support: Atoms,
    *,
    rng: np.random.Generator | int | None,
    min_distance: float = 2.0,
    height: float = 0.0,
    vacuum: float = 5.0,
) -> Atoms:
    """A particle at a random in-plane position on top of an amorphous slab.

    The particle (its centroid) goes to a uniform random ``(x, y)`` in the slab's cell,
    lowered until its lowest point relative to the local top surface under each atom
    (``thickness + h(x, y)`` of the slab, see
    :func:`hpcbench.structures.amorphous.rough_surface`) is ``height`` above it; support
    atoms closer than ``min_distance`` to any particle atom (periodic in x and y) are
    removed. Positions are wrapped into the cell in x and y.

    Parameters
    ----------
    particle : ase.Atoms
        The particle (e.g. :func:`spherical_particle`); its labels are kept if it has
        them, else every atom gets :data:`PARTICLE_CODE`. Not modified.
    support : ase.Atoms
        A slab from :func:`hpcbench.structures.amorphous.amorphous_slab` (uses
        ``info["surface"]`` and ``info["thickness"]``, else the highest support atom as a
        flat top); its labels are kept (``support`` from ``amorphous_slab``), atoms
        without labels get ``support``. Not modified.
    rng : numpy.random.Generator or int or None
        Random source (in-plane position).
    min_distance : float
        Smallest distance kept between a support atom and a particle atom [Å].
    height : float
        Height of the particle's lowest point above the local support surface [Å];
        negative values sink it into the support.
    vacuum : float
        Space between the highest atom and the top of the cell [Å].

    Returns
    -------
    ase.Atoms
        The kept support atoms (``support`` code) then the particle's atoms, the slab's
        cell in x and y (periodic) and height ``max z + vacuum``. ``info``: the slab's
        ``surface`` and ``thickness``; ``particle_center``: the particle's centroid [Å];
        ``removed_support``: number of support atoms removed; ``defect_counts``.

    Raises
    ------
    ValueError
        If the particle (plus ``min_distance``) is wider than the cell in x or y.
    """
    gen = as_generator(rng)
    if len(particle) == 0:
        raise ValueError("particle has no atoms")
    if min_distance < 0:
        raise ValueError(f"min_distance must be >= 0, got {min_distance:g} Å")
    lx, ly = float(support.cell[0, 0]), float(support.cell[1, 1])
    rel = np.asarray(particle.positions, dtype=np.float64)
    rel = rel - rel.mean(axis=0)
    width = np.ptp(rel[:, :2], axis=0) + min_distance
    if width[0] > lx or width[1] > ly:
        raise ValueError(
            f"particle of {width[0] - min_distance:.1f} × {width[1] - min_distance:.1f} Å "
            f"(+{min_distance:g} Å) does not fit the {lx:g} × {ly:g} Å support cell"
        )
    xy = gen.uniform(0.0, 1.0, 2) * [lx, ly]
    under = (rel[:, :2] + xy) % [lx, ly]
    support_z = np.asarray(support.positions[:, 2], dtype=np.float64)
    if "surface" in support.info and "thickness" in support.info:
        k, phase, amp = support.info["surface"]
        top = float(support.info["thickness"]) + (
            amp * np.cos(2.0 * math.pi * (under @ np.asarray(k).T) + phase)
        ).sum(axis=-1)
        top = np.maximum(top, 0.0)
    else:
        top = np.full(len(rel), support_z.max() if len(support) else 0.0)
    z0 = float(np.max(top - rel[:, 2])) + height
    placed = np.column_stack([under, rel[:, 2] + z0])
    # Support atoms near the particle, periodic in x and y (z is never wrapped: the
    # box along z spans both structures twice).
    kept = np.ones(len(support), dtype=bool)
    if len(support) and min_distance > 0:
        z_all = np.concatenate([support_z, placed[:, 2]])
        z_low = float(z_all.min())
        box = [lx, ly, 2.0 * (float(z_all.max()) - z_low) + 2.0 * min_distance + 1.0]

        def _in_box(p: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.column_stack([p[:, 0] % lx, p[:, 1] % ly, p[:, 2] - z_low])

        tree = cKDTree(_in_box(placed), boxsize=box)
        distance, _ = tree.query(
            _in_box(np.asarray(support.positions, dtype=np.float64)),
            distance_upper_bound=min_distance,
        )
        kept = ~(distance < min_distance)
    result = support[np.flatnonzero(kept)]
    result.info = {
        key: support.info[key] for key in ("surface", "thickness") if key in support.info
    }
    if "label" not in result.arrays:
        result.arrays["label"] = np.full(len(result), _SUPPORT, dtype=np.int64)
    symbols = particle.get_chemical_symbols()  # type: ignore[no-untyped-call]
    added = Atoms(symbols, positions=placed)
    if "label" in particle.arrays:
        added.arrays["label"] = np.asarray(particle.arrays["label"], dtype=np.int64).copy()
    else:
        added.arrays["label"] = np.full(len(added), PARTICLE_CODE, dtype=np.int64)
    added_labels = added.arrays["label"]
    result.extend(added)  # type: ignore[no-untyped-call]
    top_z = float(result.positions[:, 2].max())
    cell = [lx, ly, max(top_z + vacuum, float(support.cell[2, 2]))]
    result.set_cell(cell)  # type: ignore[no-untyped-call]
    result.pbc = [True, True, False]
    result.info.update(
        vacancy_sites=np.zeros((0, 3), dtype=np.float64),
        vacancy_labels=np.zeros(0, dtype=np.int64),
        periodic=True,
        particle_center=np.array([*xy, z0]),
        removed_support=int(np.count_nonzero(~kept)),
        defect_counts={PARTICLE_NAME: int(np.count_nonzero(added_labels == PARTICLE_CODE))},
    )
    return result
