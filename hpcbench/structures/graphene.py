"""Graphene in an orthogonal supercell with vacancies and Si dopants (seed 004).

The orthogonal ``a × a√3`` cell holds four carbon atoms at ``(0, 0)``, ``(0, a/√3)``,
``(a/2, a√3/2)`` and ``(a/2, a√3/2 + a/√3)``; all lie on the grid ``(a/2, a√3/6)``,
where the three bonded neighbours of an atom are the grid offsets ``(0, ±2)`` and
``(±1, ±1)`` that hold an atom (bond length ``a/√3`` = 1.42 Å for a = 2.46 Å).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, get_args

import numpy as np
from ase import Atoms
from numpy.typing import NDArray

from hpcbench.defects import DEFECT_CODES, GrapheneDefect
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

__all__ = ["GRAPHENE_DEFECTS", "add_graphene_defects", "graphene", "graphene_site_count"]

GRAPHENE_DEFECTS: Final[tuple[str, ...]] = get_args(GrapheneDefect)

_BONDS: Final = ((0, 2), (0, -2), (1, 1), (-1, 1), (1, -1), (-1, -1))

Key = tuple[int, int]


def graphene(
    *,
    a: float = 2.46,
    supercell: tuple[int, int] = (6, 4),
    vacuum: float = 5.0,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Defect-free graphene in an orthogonal supercell.

    Parameters
    ----------
    a : float
        Lattice constant [Å] (C-C bond ``a/√3``).
    supercell : tuple of int
        Repeats ``(nx, ny)`` of the orthogonal ``a × a√3`` cell (4 atoms).
    vacuum : float
        Empty space above and below the sheet [Å].
    rng : numpy.random.Generator or int or None
        Unused (the lattice is deterministic); accepted so all builders share one
        signature.

    Returns
    -------
    ase.Atoms
        ``4 · nx · ny`` carbon atoms in the plane ``z = vacuum``, cell
        ``(nx·a, ny·a√3, 2·vacuum)``, pbc in x and y, all labels 0,
        ``info["periodic"] = True`` and ``info["graphene"]`` holding ``a`` and the
        supercell.
    """
    del rng
    nx, ny = supercell
    if a <= 0 or vacuum <= 0:
        raise ValueError(f"a and vacuum must be > 0, got a={a:g}, vacuum={vacuum:g}")
    if nx < 1 or ny < 1:
        raise ValueError(f"supercell must be two positive integers, got {supercell}")
    h = a * np.sqrt(3)
    basis = np.array(
        [[0, 0, 0], [0, a / np.sqrt(3), 0], [a / 2, h / 2, 0], [a / 2, h / 2 + a / np.sqrt(3), 0]]
    )
    basis[:, 2] = vacuum
    cell = Atoms("C4", positions=basis, cell=[a, h, 2 * vacuum])
    atoms: Atoms = cell.repeat((nx, ny, 1))  # type: ignore[no-untyped-call]
    atoms.pbc = (True, True, False)
    init_labels(atoms)
    atoms.info["graphene"] = {"a": float(a), "supercell": (int(nx), int(ny))}
    return atoms


def graphene_site_count(atoms: Atoms, defect: str) -> int:
    """Number of candidate sites for ``defect``: the carbon atoms of the pristine sheet."""
    if defect not in GRAPHENE_DEFECTS:
        raise ValueError(f"unknown graphene defect {defect!r}; expected one of {GRAPHENE_DEFECTS}")
    nx, ny = atoms.info["graphene"]["supercell"]
    return 4 * int(nx) * int(ny)


def add_graphene_defects(
    atoms: Atoms,
    counts: Mapping[str, int],
    *,
    rng: np.random.Generator | int | None = None,
) -> Atoms:
    """Place vacancies and Si dopants on distinct carbon sites of :func:`graphene`.

    Classes are placed in the order ``silicon_fourfold`` (it needs two bonded free
    sites), ``silicon_threefold``, ``carbon_vacancy``; no site hosts two defects.

    - ``carbon_vacancy``: one C removed; its position is a vacancy site.
    - ``silicon_threefold``: one C replaced by Si in the plane (labelled). Seed 004
      reports an apparent Si-C distance of 1.50 Å from the Si's out-of-plane
      displacement; the sheet is left unrelaxed, as seed 004's training data were.
    - ``silicon_fourfold``: two bonded C removed and one Si put at their midpoint
      (labelled, no vacancy sites): a planar divacancy-Si with four Si-C distances
      ``√7/2 · a/√3`` = 1.88 Å (seed 004 measures 1.72 Å after relaxation).

    Parameters
    ----------
    atoms : ase.Atoms
        Defect-free structure from :func:`graphene` (not modified).
    counts : mapping of str to int
        Number of defects per class.
    rng : numpy.random.Generator or int or None
        Random source for the sites.

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
    wanted = validate_counts(counts, GRAPHENE_DEFECTS)
    meta = atoms.info.get("graphene")
    if meta is None:
        raise ValueError("add_graphene_defects needs a structure made by graphene()")
    if (
        not atoms.info.get("periodic", False)
        or np.any(atoms.arrays["label"] != 0)
        or len(atoms.info["vacancy_sites"])
    ):
        raise ValueError(
            "add_graphene_defects needs a defect-free periodic structure made by graphene()"
        )
    a = float(meta["a"])
    nx, ny = meta["supercell"]
    shape = (2 * int(nx), 6 * int(ny))
    where = f"a {nx}×{ny} supercell"
    keys: list[Key] = [
        (int(i), int(j)) for i, j in grid_keys(atoms.positions, (a / 2, a * np.sqrt(3) / 6), shape)
    ]
    index_of = {key: index for index, key in enumerate(keys)}
    claimed: set[Key] = set()
    out = copy_atoms(atoms)
    lengths = out.cell.lengths()[:2]
    remove: list[int] = []
    vacancies: list[int] = []
    silicon: list[tuple[int, NDArray[np.float64]]] = []  # (label code, position)

    def free() -> list[Key]:
        return [k for k in keys if k not in claimed]

    n4 = wanted.get("silicon_fourfold", 0)
    for _ in range(n4):
        candidates = free()
        check_count("silicon_fourfold", 1, len(candidates) // 2, where)
        bond: tuple[Key, Key] | None = None
        for seed in (candidates[i] for i in gen.permutation(len(candidates))):
            partners = [
                k
                for k in dict.fromkeys(
                    ((seed[0] + o[0]) % shape[0], (seed[1] + o[1]) % shape[1]) for o in _BONDS
                )
                if k in index_of and k not in claimed and k != seed
            ]
            if partners:
                bond = (seed, partners[int(gen.integers(len(partners)))])
                break
        if bond is None:
            raise ValueError(
                f"cannot place {n4} silicon_fourfold defect(s): no free C-C bond left in "
                f"{where}; use a larger supercell or fewer defects"
            )
        claimed.update(bond)
        first, second = (index_of[k] for k in bond)
        delta = out.positions[second] - out.positions[first]
        delta[:2] -= lengths * np.rint(delta[:2] / lengths)  # minimum image across the cell
        midpoint = out.positions[first] + delta / 2
        midpoint[:2] %= lengths
        silicon.append((DEFECT_CODES["silicon_fourfold"], midpoint))
        remove += [first, second]
    for name in ("silicon_threefold", "carbon_vacancy"):
        n = wanted.get(name, 0)
        candidates = free()
        check_count(name, n, len(candidates), where)
        for key in (candidates[i] for i in gen.permutation(len(candidates))[:n]):
            claimed.add(key)
            index = index_of[key]
            if name == "carbon_vacancy":
                vacancies.append(index)
            else:
                out.symbols[index] = "Si"
                out.arrays["label"][index] = DEFECT_CODES[name]
    if vacancies:
        add_vacancy_sites(out, out.positions[vacancies], DEFECT_CODES["carbon_vacancy"])
    append_atoms(
        out,
        ["Si"] * len(silicon),
        np.array([p for _, p in silicon]).reshape(-1, 3),
        [c for c, _ in silicon],
    )
    delete_atoms(out, remove + vacancies)
    out.info["defect_counts"] = {name: wanted[name] for name in GRAPHENE_DEFECTS if name in wanted}
    return out
