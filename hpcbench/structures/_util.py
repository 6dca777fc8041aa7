"""Helpers shared by the structure builders: generators, label bookkeeping, site grids."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from ase import Atoms
from numpy.typing import ArrayLike, NDArray

from hpcbench.defects import DEFECT_CODES

__all__ = [
    "VACANCY_CLASSES",
    "add_vacancy_sites",
    "append_atoms",
    "as_generator",
    "check_count",
    "concentration_to_count",
    "copy_atoms",
    "delete_atoms",
    "grid_keys",
    "init_labels",
    "recount_defects",
    "validate_counts",
]

# Classes that leave no atom behind: counted by their vacancy sites, not by labels.
# Every other class labels exactly one atom per defect (the substituted, added or
# replacing atom), so its count is the number of atoms carrying its code.
VACANCY_CLASSES = frozenset({"anion_vacancy", "metal_vacancy", "carbon_vacancy"})


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """The caller's generator, or a new one seeded from ``rng`` (never the global RNG)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def copy_atoms(atoms: Atoms) -> Atoms:
    """A copy whose ``info`` is deep-copied (``Atoms.copy`` shares its values)."""
    new: Atoms = atoms.copy()  # type: ignore[no-untyped-call]
    new.info = copy.deepcopy(atoms.info)
    return new


def delete_atoms(atoms: Atoms, indices: Iterable[int]) -> None:
    """``del atoms[indices]`` in place; per-atom arrays (the labels) follow the atoms."""
    del atoms[sorted(indices)]  # type: ignore[no-untyped-call]


def append_atoms(
    atoms: Atoms, symbols: Sequence[str], positions: ArrayLike, labels: Sequence[int]
) -> None:
    """Append atoms [Å] with their labels to ``atoms`` in place."""
    if not symbols:
        return
    extra = Atoms(list(symbols), positions=np.asarray(positions, dtype=np.float64))
    extra.arrays["label"] = np.asarray(labels, dtype=np.int64)
    atoms.extend(extra)  # type: ignore[no-untyped-call]


def init_labels(atoms: Atoms, *, periodic: bool = True) -> Atoms:
    """Give ``atoms`` the label conventions of :mod:`.defects`, all lattice (in place)."""
    atoms.arrays["label"] = np.zeros(len(atoms), dtype=np.int64)
    atoms.info["vacancy_sites"] = np.zeros((0, 3), dtype=np.float64)
    atoms.info["vacancy_labels"] = np.zeros(0, dtype=np.int64)
    atoms.info["defect_counts"] = {}
    atoms.info["periodic"] = periodic
    return atoms


def add_vacancy_sites(atoms: Atoms, positions: ArrayLike, codes: ArrayLike) -> None:
    """Append vacancy sites [Å] with their codes to ``atoms.info`` (in place, new arrays)."""
    sites = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    labels = np.broadcast_to(np.asarray(codes, dtype=np.int64), (len(sites),))
    atoms.info["vacancy_sites"] = np.concatenate([atoms.info["vacancy_sites"], sites])
    atoms.info["vacancy_labels"] = np.concatenate([atoms.info["vacancy_labels"], labels])


def concentration_to_count(concentration: float, n_sites: int) -> int:
    """``round(concentration · n_sites)``, halves rounded up (not to even).

    Parameters
    ----------
    concentration : float
        Fraction of candidate sites that carry the defect, in [0, 1].
    n_sites : int
        Number of candidate sites in the supercell.
    """
    if not 0.0 <= concentration <= 1.0:
        raise ValueError(f"concentration must be in [0, 1], got {concentration:g}")
    return int(np.floor(concentration * n_sites + 0.5))


def recount_defects(atoms: Atoms, names: Iterable[str]) -> dict[str, int]:
    """Count the defects of each class in ``names`` from labels and vacancy sites.

    Used after a transform that duplicates or removes defects (rotation, grain
    boundary, beam damage): vacancy classes count vacancy sites, the others count the
    atoms carrying their code.
    """
    labels = atoms.arrays["label"]
    vacancy_labels = atoms.info["vacancy_labels"]
    counts: dict[str, int] = {}
    for name in names:
        code = DEFECT_CODES[name]
        source = vacancy_labels if name in VACANCY_CLASSES else labels
        counts[name] = int(np.count_nonzero(source == code))
    return counts


def grid_keys(
    positions: NDArray[np.float64], unit: tuple[float, float], shape: tuple[int, int]
) -> NDArray[np.int64]:
    """Integer (column, row) of each position on a periodic grid of spacing ``unit`` [Å].

    The MX2 and graphene lattices in their orthogonal cells put every atom, hollow and
    projected column on the grid ``(a/2, a√3/6)``; indexing sites on it makes
    neighbour look-ups exact integer offsets instead of distance comparisons.
    """
    ix = np.rint(positions[:, 0] / unit[0]).astype(np.int64) % shape[0]
    iy = np.rint(positions[:, 1] / unit[1]).astype(np.int64) % shape[1]
    return np.stack([ix, iy], axis=1)


def check_count(name: str, requested: int, available: int, where: str) -> None:
    """Raise a one-line ValueError when more defects are requested than sites exist."""
    if requested > available:
        raise ValueError(
            f"cannot place {requested} {name} defect(s): only {available} free "
            f"candidate site(s) in {where}; use a larger supercell or fewer defects"
        )


def validate_counts(counts: Mapping[str, int], allowed: Iterable[str]) -> dict[str, int]:
    """Check names and non-negative integer counts; return a plain dict."""
    allowed = tuple(allowed)
    result: dict[str, int] = {}
    for name, value in counts.items():
        if name not in allowed:
            raise ValueError(f"unknown defect {name!r}; expected one of {', '.join(allowed)}")
        if int(value) != value or value < 0:
            raise ValueError(f"count of {name} must be a non-negative integer, got {value!r}")
        result[name] = int(value)
    return result
