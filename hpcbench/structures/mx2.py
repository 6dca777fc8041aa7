"""Monolayer MX2 in an orthogonal supercell, and the nine defect classes of seed 003.

The hexagonal MX2 cell (``ase.build.mx2``) is converted to the orthogonal ``a × a√3``
cell holding two formula units and repeated ``supercell`` times. In that cell every
atom, hollow and projected column lies on the grid ``(a/2, a√3/6)``: metals at
``(0, 0)`` and ``(1, 3)``, top anions at ``(1, 1)`` and ``(2, 4)``, bottom anions under
the top ones in 2H and at ``(0, 2)``, ``(1, 5)`` in 1T (grid units, periodic
``(2·nx, 6·ny)``). Defects are placed on these integer sites, so "neighbouring anion
column" is an exact grid offset and no two defects ever share a projected column.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

import numpy as np
from ase import Atoms
from ase.build import make_supercell
from ase.build import mx2 as ase_mx2
from ase.data import atomic_numbers
from numpy.typing import NDArray

from hpcbench.defects import DEFECT_CODES, MX2Defect
from hpcbench.structures._util import (
    add_vacancy_sites,
    append_atoms,
    as_generator,
    check_count,
    copy_atoms,
    delete_atoms,
    grid_keys,
    init_labels,
    validate_counts,
)

__all__ = [
    "MX2_DEFECTS",
    "MX2_PARAMETERS",
    "add_mx2_defects",
    "mx2",
    "mx2_site_count",
]

MX2_DEFECTS: Final[tuple[str, ...]] = get_args(MX2Defect)

# (a [Å], thickness = vertical anion-anion distance [Å]) per formula. Approximate
# (±0.05 Å) room-temperature experimental values of the bulk layered crystals where the
# compound is known (MoS2, MoSe2, MoTe2, WS2, WSe2, NbS2, NbSe2, TaS2, TaSe2, TiS2, TiSe2,
# TiTe2, VSe2, ...), otherwise PBE monolayer values of the kind listed in C2db
# (Haastrup et al., 2D Mater. 5, 042002, 2018). One value per formula for both phases:
# pass ``a=`` where the exact value of a phase matters.
MX2_PARAMETERS: Final = MappingProxyType(
    {
        "MoS2": (3.16, 3.17),
        "MoSe2": (3.29, 3.34),
        "MoTe2": (3.52, 3.60),
        "WS2": (3.15, 3.14),
        "WSe2": (3.28, 3.34),
        "WTe2": (3.55, 3.59),
        "NbS2": (3.31, 3.13),
        "NbSe2": (3.44, 3.36),
        "NbTe2": (3.66, 3.71),
        "TaS2": (3.31, 3.11),
        "TaSe2": (3.44, 3.34),
        "TaTe2": (3.67, 3.68),
        "TiS2": (3.41, 2.85),
        "TiSe2": (3.54, 3.07),
        "TiTe2": (3.78, 3.45),
        "VS2": (3.22, 2.95),
        "VSe2": (3.35, 3.20),
        "VTe2": (3.60, 3.45),
        "CrS2": (3.02, 2.94),
        "CrSe2": (3.21, 3.17),
        "CrTe2": (3.48, 3.43),
    }
)

_METALS = ("Mo", "W", "Nb", "Ta", "Ti", "V", "Cr")
_ANIONS = ("S", "Se", "Te")

# Grid offsets (units a/2, a√3/6) from an anion column to the six same-plane anion
# columns at distance a, and from a metal to its hollow site (0, a/√3).
_ANION_NEIGHBOURS: Final = ((2, 0), (-2, 0), (1, 3), (-1, -3), (1, -3), (-1, 3))
# From a 1T anion to the three anions of the other plane (in-plane distance a/√3).
_CROSS_PLANE: Final = ((1, 1), (-1, 1), (1, -1), (-1, -1), (0, 2), (0, -2))
_HOLLOW: Final = (0, 2)

Arrangement = Literal["random", "pairs", "triplets", "mixed"]
Key = tuple[int, int]


def _split_formula(formula: str) -> tuple[str, str]:
    for metal in _METALS:
        for anion in _ANIONS:
            if formula == f"{metal}{anion}2":
                return metal, anion
    raise ValueError(
        f"formula {formula!r} is not MX2 with M in {', '.join(_METALS)} "
        f"and X in {', '.join(_ANIONS)}"
    )


def mx2(
    formula: str = "WSe2",
    *,
    phase: Literal["2H", "1T"] = "2H",
    a: float | None = None,
    thickness: float | None = None,
    supercell: tuple[int, int] = (8, 5),
    vacuum: float = 5.0,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Defect-free MX2 monolayer in an orthogonal supercell.

    Parameters
    ----------
    formula : str
        ``MX2`` with M in Mo, W, Nb, Ta, Ti, V, Cr and X in S, Se, Te.
    phase : {"2H", "1T"}
        2H (trigonal prismatic: top and bottom anions share x, y) or 1T (octahedral).
    a : float, optional
        Lattice constant [Å]; default from :data:`MX2_PARAMETERS`.
    thickness : float, optional
        Vertical distance between the two anion planes [Å]; default from
        :data:`MX2_PARAMETERS`.
    supercell : tuple of int
        Repeats ``(nx, ny)`` of the orthogonal ``a × a√3`` cell (6 atoms).
    vacuum : float
        Empty space above and below the layer [Å]; adatoms sit ``thickness / 2``
        above the top anion plane, inside it.
    rng : numpy.random.Generator or int or None
        Unused (the lattice is deterministic); accepted so all builders share one
        signature.

    Returns
    -------
    ase.Atoms
        ``6 · nx · ny`` atoms, cell ``(nx·a, ny·a√3, thickness + 2·vacuum)``, pbc in x
        and y, all labels 0, ``info["periodic"] = True`` and ``info["mx2"]`` holding
        the formula, phase, ``a``, ``thickness`` and supercell.
    """
    del rng
    # The lattice is a pure function of its arguments: build it once, hand out copies.
    atoms: Atoms = _pristine(formula, phase, a, thickness, tuple(supercell), vacuum).copy()  # type: ignore[no-untyped-call]
    return atoms


@functools.lru_cache(maxsize=16)
def _pristine(
    formula: str,
    phase: Literal["2H", "1T"],
    a: float | None,
    thickness: float | None,
    supercell: tuple[int, int],
    vacuum: float,
) -> Atoms:
    """The lattice :func:`mx2` returns (cached; callers must copy it)."""
    metal, anion = _split_formula(formula)
    default_a, default_t = MX2_PARAMETERS[formula]
    a = default_a if a is None else float(a)
    thickness = default_t if thickness is None else float(thickness)
    nx, ny = supercell
    if a <= 0 or thickness <= 0:
        raise ValueError(f"a and thickness must be > 0, got a={a:g}, thickness={thickness:g}")
    if nx < 1 or ny < 1:
        raise ValueError(f"supercell must be two positive integers, got {supercell}")
    if vacuum < thickness / 2:
        raise ValueError(f"vacuum {vacuum:g} Å leaves no room for adatoms; use >= thickness/2")
    unit = ase_mx2(  # type: ignore[no-untyped-call]
        formula, kind=phase, a=a, thickness=thickness, vacuum=vacuum
    )
    # Rows of P: a1 and a1 + 2·a2 = (0, a√3); the orthogonal cell of two formula units.
    transform = np.array([[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    ortho = make_supercell(unit, transform)  # type: ignore[no-untyped-call]
    atoms: Atoms = ortho.repeat((nx, ny, 1))
    # Snap to the exact (a/2, a√3/6) grid: make_supercell leaves ~1e-16 Å residues
    # that would wrap an atom at x = 0 to x = nx·a.
    step = np.array([a / 2, a * np.sqrt(3) / 6])
    xy = np.rint(atoms.positions[:, :2] / step) * step
    xy %= np.array([nx * a, ny * a * np.sqrt(3)])
    atoms.positions[:, :2] = xy
    atoms.cell = np.diag([nx * a, ny * a * np.sqrt(3), atoms.cell[2, 2]])
    atoms.pbc = (True, True, False)
    init_labels(atoms)
    atoms.info["mx2"] = {
        "formula": formula,
        "metal": metal,
        "anion": anion,
        "phase": phase,
        "a": a,
        "thickness": thickness,
        "supercell": (int(nx), int(ny)),
    }
    return atoms


# ------------------------------------------------------------------------- sites


@dataclass
class _Lattice:
    """The pristine lattice as integer grid sites, with the columns already claimed."""

    metal: str
    anion: str
    a: float
    thickness: float
    shape: tuple[int, int]
    z_metal: float
    metal_of: dict[Key, int]  # metal column -> atom index
    anion_of: dict[Key, list[int]]  # anion column -> atom indices, top first
    metal_keys: list[Key]
    anion_keys: list[Key]
    hollow_keys: list[Key]
    claimed: set[Key] = field(default_factory=set)

    def shift(self, key: Key, offset: tuple[int, int]) -> Key:
        return ((key[0] + offset[0]) % self.shape[0], (key[1] + offset[1]) % self.shape[1])

    def position(self, key: Key, z: float) -> NDArray[np.float64]:
        return np.array([key[0] * self.a / 2, key[1] * self.a * np.sqrt(3) / 6, z])

    def free(self, keys: Sequence[Key]) -> list[Key]:
        return [k for k in keys if k not in self.claimed]


def _lattice(atoms: Atoms) -> _Lattice:
    meta = atoms.info.get("mx2")
    if meta is None:
        raise ValueError("add_mx2_defects needs a structure made by mx2() (no info['mx2'])")
    if (
        not atoms.info.get("periodic", False)
        or np.any(atoms.arrays["label"] != 0)
        or len(atoms.info["vacancy_sites"])
    ):
        raise ValueError("add_mx2_defects needs a defect-free periodic structure made by mx2()")
    nx, ny = meta["supercell"]
    a = float(meta["a"])
    shape = (2 * nx, 6 * ny)
    keys = grid_keys(atoms.positions, (a / 2, a * np.sqrt(3) / 6), shape)
    metal_number = atomic_numbers[meta["metal"]]
    metal_of: dict[Key, int] = {}
    anion_of: dict[Key, list[int]] = {}
    for index, (number, key) in enumerate(
        zip(atoms.numbers, map(tuple, keys.tolist()), strict=True)
    ):
        if number == metal_number:
            metal_of[key] = index
        else:
            anion_of.setdefault(key, []).append(index)
    z = atoms.positions[:, 2]
    for column in anion_of.values():
        column.sort(key=lambda i: -z[i])
    metal_keys = list(metal_of)
    lattice = _Lattice(
        metal=meta["metal"],
        anion=meta["anion"],
        a=a,
        thickness=float(meta["thickness"]),
        shape=shape,
        z_metal=float(z[next(iter(metal_of.values()))]),
        metal_of=metal_of,
        anion_of=anion_of,
        metal_keys=metal_keys,
        anion_keys=list(anion_of),
        hollow_keys=[],
    )
    lattice.hollow_keys = [lattice.shift(k, _HOLLOW) for k in metal_keys]
    return lattice


def mx2_site_count(atoms: Atoms, defect: str) -> int:
    """Number of candidate sites for ``defect`` in a structure made by :func:`mx2`.

    Anion-site classes (``anion_vacancy``, ``metal_antisite``,
    ``metal_antisite_anion_vacancy``) count anion columns (one per formula unit in 2H,
    where top and bottom anion share a column; two in 1T); metal-site classes and
    interstitials count metal atoms (one hollow site per metal).
    """
    if defect not in MX2_DEFECTS:
        raise ValueError(f"unknown MX2 defect {defect!r}; expected one of {MX2_DEFECTS}")
    meta = atoms.info["mx2"]
    n_metal = 2 * int(meta["supercell"][0]) * int(meta["supercell"][1])
    if defect in ("anion_vacancy", "metal_antisite", "metal_antisite_anion_vacancy"):
        return n_metal if meta["phase"] == "2H" else 2 * n_metal
    return n_metal


def _cluster_sizes(n: int, arrangement: Arrangement, gen: np.random.Generator) -> list[int]:
    if arrangement == "random":
        return [1] * n
    if arrangement == "pairs":
        return [2] * (n // 2) + [1] * (n % 2)
    if arrangement == "triplets":
        return [3] * (n // 3) + ([n % 3] if n % 3 else [])
    if arrangement == "mixed":
        sizes: list[int] = []
        while n > 0:
            size = int(gen.integers(1, min(3, n), endpoint=True))
            sizes.append(size)
            n -= size
        return sizes
    raise ValueError(f"arrangement must be random, pairs, triplets or mixed, got {arrangement!r}")


def _clusters_at(lattice: _Lattice, seed: Key, size: int) -> list[list[Key]]:
    """Every free cluster of ``size`` anion columns, mutually at distance a, with seed."""
    if size == 1:
        return [[seed]]
    neighbours = [
        k
        for k in dict.fromkeys(lattice.shift(seed, o) for o in _ANION_NEIGHBOURS)
        if k != seed and k in lattice.anion_of and k not in lattice.claimed
    ]
    if size == 2:
        return [[seed, k] for k in neighbours]
    triangles = []
    for i, first in enumerate(neighbours):
        around = {lattice.shift(first, o) for o in _ANION_NEIGHBOURS}
        triangles += [[seed, first, second] for second in neighbours[i + 1 :] if second in around]
    return triangles


@dataclass
class _Edits:
    remove: list[int] = field(default_factory=list)
    substitute: dict[int, tuple[str, int]] = field(default_factory=dict)
    add: list[tuple[str, NDArray[np.float64], int]] = field(default_factory=list)
    vacancies: list[tuple[NDArray[np.float64], int]] = field(default_factory=list)


def _where(lattice: _Lattice) -> str:
    return f"a {lattice.shape[0] // 2}×{lattice.shape[1] // 6} supercell"


def _anion_vacancies(
    lattice: _Lattice,
    edits: _Edits,
    atoms: Atoms,
    n: int,
    arrangement: Arrangement,
    gen: np.random.Generator,
) -> None:
    code = DEFECT_CODES["anion_vacancy"]
    check_count("anion_vacancy", n, len(lattice.free(lattice.anion_keys)), _where(lattice))
    for size in _cluster_sizes(n, arrangement, gen):
        free = lattice.free(lattice.anion_keys)
        cluster: list[Key] | None = None
        for seed in (free[i] for i in gen.permutation(len(free))):
            options = _clusters_at(lattice, seed, size)
            if options:
                cluster = options[int(gen.integers(len(options)))]
                break
        if cluster is None:
            raise ValueError(
                f"cannot place an anion-vacancy cluster of {size} on free neighbouring "
                f"anion columns in {_where(lattice)}; use a larger supercell or fewer defects"
            )
        for key in cluster:
            lattice.claimed.add(key)
            column = lattice.anion_of[key]
            index = column[int(gen.integers(len(column)))]
            edits.remove.append(index)
            edits.vacancies.append((atoms.positions[index].copy(), code))


def _pick(
    lattice: _Lattice, name: str, keys: Sequence[Key], n: int, gen: np.random.Generator
) -> list[Key]:
    free = lattice.free(keys)
    check_count(name, n, len(free), _where(lattice))
    chosen = [free[i] for i in gen.permutation(len(free))[:n]]
    lattice.claimed.update(chosen)
    return chosen


def _antisite_vacancy(
    lattice: _Lattice, edits: _Edits, atoms: Atoms, n: int, gen: np.random.Generator
) -> None:
    """M_2A: a metal takes one anion of a column, the column's other anion is removed.

    In 1T, where a column holds one anion, the removed one is a free anion of the other
    plane next to it (in-plane distance a/√3).
    """
    name = "metal_antisite_anion_vacancy"
    code = DEFECT_CODES[name]
    for _ in range(n):
        free = lattice.free(lattice.anion_keys)
        check_count(name, 1, len(free), _where(lattice))
        placed = False
        for seed in (free[i] for i in gen.permutation(len(free))):
            column = lattice.anion_of[seed]
            if len(column) == 2:
                keep, drop = column[:: 1 if gen.integers(2) else -1]
                partner = seed
            else:
                partners = [
                    k
                    for k in dict.fromkeys(lattice.shift(seed, o) for o in _CROSS_PLANE)
                    if k in lattice.anion_of and k not in lattice.claimed and k != seed
                ]
                if not partners:
                    continue
                partner = partners[int(gen.integers(len(partners)))]
                keep, drop = column[0], lattice.anion_of[partner][0]
            lattice.claimed.update({seed, partner})
            edits.substitute[keep] = (lattice.metal, code)
            edits.remove.append(drop)
            edits.vacancies.append((atoms.positions[drop].copy(), code))
            placed = True
            break
        if not placed:
            raise ValueError(
                f"cannot place {n} {name} defect(s): no free pair of neighbouring anion "
                f"sites left in {_where(lattice)}; use a larger supercell or fewer defects"
            )


def add_mx2_defects(
    atoms: Atoms,
    counts: Mapping[str, int],
    *,
    arrangement: Arrangement = "random",
    dopants: Iterable[str] = ("Mo",),
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Place seed-003 defects on distinct sites of a structure made by :func:`mx2`.

    Classes are placed in the order of :data:`MX2_DEFECTS` (clustered vacancies first,
    while neighbouring columns are still free). Each defect claims the projected
    column(s) it sits on and no column hosts two defects.

    - ``anion_vacancy``: one anion of a free column is removed (top or bottom at
      random); its position is a vacancy site. ``arrangement`` groups the vacancies:
      ``"pairs"`` two columns at distance a, ``"triplets"`` three columns mutually at
      distance a (remainders as smaller clusters), ``"mixed"`` random sizes 1-3.
    - ``metal_vacancy``: a metal atom is removed (vacancy site).
    - ``metal_antisite``: the host metal replaces one anion of a column (labelled).
    - ``anion_antisite``: the host anion replaces a metal (labelled).
    - ``metal_interstitial`` / ``anion_interstitial``: a host metal / anion is added in
      the metal plane at the hollow site ``(0, a/√3)`` from a metal (the empty hexagon
      centre in 2H; under a bottom anion in 1T, where no projected hollow is empty).
    - ``dopant``: a metal is replaced by an element of ``dopants`` other than the host.
    - ``adatom``: an element of ``dopants`` (host included) is added on top of a metal,
      ``thickness / 2`` above the top anion plane (its three nearest anions then sit at
      the M-X bond length).
    - ``metal_antisite_anion_vacancy``: the host metal replaces one anion of a column
      and the other is removed; the new atom is labelled and the removed position is a
      vacancy site with the same code.

    Parameters
    ----------
    atoms : ase.Atoms
        Defect-free structure from :func:`mx2` (not modified).
    counts : mapping of str to int
        Number of defects per class (vacancies, not clusters, for ``anion_vacancy``).
    arrangement : {"random", "pairs", "triplets", "mixed"}
        Clustering of anion vacancies.
    dopants : iterable of str
        Candidate elements for dopants and adatoms, drawn uniformly.
    rng : numpy.random.Generator or int or None
        Random source for sites and elements.

    Returns
    -------
    ase.Atoms
        A new structure with labels, vacancy sites and ``info["defect_counts"]``.

    Raises
    ------
    ValueError
        For an unknown class, or more defects than free sites (one line).
    """
    gen = as_generator(rng)
    wanted = validate_counts(counts, MX2_DEFECTS)
    dopants = tuple(dopants)
    lattice = _lattice(atoms)
    out = copy_atoms(atoms)
    edits = _Edits()
    metal, anion = lattice.metal, lattice.anion
    z_top = lattice.z_metal + lattice.thickness / 2
    for name in MX2_DEFECTS:
        n = wanted.get(name, 0)
        if n == 0:
            continue
        code = DEFECT_CODES[name]
        if name == "anion_vacancy":
            _anion_vacancies(lattice, edits, out, n, arrangement, gen)
        elif name == "metal_antisite_anion_vacancy":
            _antisite_vacancy(lattice, edits, out, n, gen)
        elif name == "metal_antisite":
            for key in _pick(lattice, name, lattice.anion_keys, n, gen):
                column = lattice.anion_of[key]
                edits.substitute[column[int(gen.integers(len(column)))]] = (metal, code)
        elif name in ("metal_vacancy", "anion_antisite", "dopant"):
            elements = [e for e in dopants if e != metal]
            if name == "dopant" and not elements:
                raise ValueError(f"dopants {list(dopants)} hold no element other than {metal}")
            for key in _pick(lattice, name, lattice.metal_keys, n, gen):
                index = lattice.metal_of[key]
                if name == "metal_vacancy":
                    edits.remove.append(index)
                    edits.vacancies.append((out.positions[index].copy(), code))
                else:
                    element = anion
                    if name == "dopant":
                        element = elements[int(gen.integers(len(elements)))]
                    edits.substitute[index] = (element, code)
        elif name in ("metal_interstitial", "anion_interstitial"):
            element = metal if name == "metal_interstitial" else anion
            for key in _pick(lattice, name, lattice.hollow_keys, n, gen):
                edits.add.append((element, lattice.position(key, lattice.z_metal), code))
        elif name == "adatom":
            if not dopants:
                raise ValueError("adatoms need at least one element in dopants")
            for key in _pick(lattice, name, lattice.metal_keys, n, gen):
                element = dopants[int(gen.integers(len(dopants)))]
                z = z_top + lattice.thickness / 2
                edits.add.append((element, lattice.position(key, z), code))
    _apply(out, edits)
    out.info["defect_counts"] = {
        name: wanted.get(name, 0) for name in MX2_DEFECTS if name in wanted
    }
    return out


def _apply(atoms: Atoms, edits: _Edits) -> None:
    labels = atoms.arrays["label"]
    for index, (element, code) in edits.substitute.items():
        atoms.symbols[index] = element
        labels[index] = code
    append_atoms(
        atoms,
        [element for element, _, _ in edits.add],
        np.array([position for _, position, _ in edits.add]).reshape(-1, 3),
        [code for _, _, code in edits.add],
    )
    delete_atoms(atoms, edits.remove)
    if edits.vacancies:
        add_vacancy_sites(
            atoms,
            np.array([position for position, _ in edits.vacancies]),
            np.array([code for _, code in edits.vacancies]),
        )
