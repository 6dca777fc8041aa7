"""Defect chemistry from atom coordinates: a bond graph, its defects and their classes.

Seed 004 (Ziatdinov et al. 2017) turns detected atoms into a graph of atoms (nodes) and
chemical bonds (edges) under "simple chemistry rules": a maximum number of bonds per
species, a maximum length per bonded pair, and "vacancy" nodes that are never bonded to
atoms. Unconnected pieces around foreign species are the defects; each is classified by
its chemical structure ("the number of Si-C bonds") and measured (bond lengths [pm],
projected bond angles [°], centre [Å]). This module does the same with numpy/scipy.

Geometry the rules rest on
--------------------------
Graphene with lattice constant a = 2.46 Å (:func:`hpcbench.structures.graphene`): C-C
bond ``b = a/√3`` = 1.42 Å, second neighbours at ``a`` = 2.46 Å, third at ``2b`` = 2.84 Å.

- **3-fold Si**, builder: one C replaced in the plane, unrelaxed, so three Si-C bonds of
  1.42 Å at 120°, next C at 2.46 Å. Seed 004 measures an *apparent* d(Si-C) ≈ 150 pm
  and C-Si-C ≈ 120° (the Si sits out of plane).
- **4-fold Si**, builder: two bonded C removed and one Si put at their midpoint, so four
  Si-C bonds of ``√7/2 · b`` = 1.878 Å with projected C-Si-C angles alternating
  81.8° / 98.2° (mean 90°), next C at ``√(a² + b²/4)`` = 2.56 Å. Seed 004 measures
  d(Si-C) ≈ 172 pm and C-Si-C ≈ 90°.
- **Si-vacancy** (seed 004 Fig. 6f, g): a Si next to a missing C; "distorted 3-fold"
  with angles such as (150°, 115°, 95°). **Si dimer** (Fig. 6h): two Si bonded to each
  other. **Rotor / cluster** (Fig. 7): three or more Si bonded together.

Bond table (:data:`MAX_BOND_LENGTH`, :data:`MAX_BONDS`)
--------------------------------------------------------
Each maximum length lies halfway between the longest first-shell distance and the
shortest non-bonded distance of that pair in the geometries above, so neither shell is
within 0.5 Å of the cut:

- C-C 1.94 Å = (1.42 + 2.46) / 2 (the lattice bond vs the second neighbour).
- C-Si 2.17 Å = (1.878 + 2.46) / 2 (4-fold Si-C, the longest bond, vs the second
  neighbour of a 3-fold Si, the shortest non-bond; the 4-fold Si's next C is at
  2.56 Å). Seed 004's apparent 1.50 and 1.72 Å are inside.
- Si-Si 2.17 Å: two substituted neighbours are 1.42 Å apart, a 3-fold Si on a 4-fold
  Si's neighbour site 1.878 Å; unbonded Si pairs start at 2.46 Å (3-fold/3-fold) and
  2.56 Å (3-fold/4-fold), so the same cut applies.
- Maximum bonds: C 3 (sp², graphene), Si 4 (the 4-fold dopant).

Candidate bonds are the pairs within their maximum length; they are accepted shortest
first while both atoms have a free valence, so no atom exceeds its maximum and the
shortest bonds are kept. Vacancy sites are never bonded.

Defects and classes
-------------------
A *defect node* is any atom of a species other than the lattice species (``"C"``) and
any vacancy site. Defect nodes are joined by (i) accepted bonds between foreign atoms,
(ii) a vacancy within ``MAX_BOND_LENGTH[(X, "C")]`` of a foreign atom X (the vacancy is a
site a bonded C would occupy: within one bond length plus the table's tolerance), and
(iii) two vacancies within the C-C maximum (a vacancy cluster). Each connected component
is one defect; its members are its defect nodes plus the lattice atoms bonded to its
foreign atoms and the lattice atoms within the C-C maximum of its vacancies (the "edge"
atoms of seed 004). An edge atom shared by two defects is listed in both and does not
merge them: two Si that share a C neighbour but no Si-Si bond are two dopants. The
centre is the centroid of the members (seed 004: "centre of the mass" of the nodes).
Rules, in order:

1. no foreign atom: ``vacancy`` (a lone vacancy or a vacancy cluster);
2. a foreign atom other than Si: ``unknown``;
3. three or more Si: ``cluster``;
4. two Si: ``silicon_dimer`` if they are bonded, else ``unknown``;
5. one Si with a vacancy in its defect: ``silicon_vacancy``;
6. one Si with coordination 3: ``silicon_threefold``; 4: ``silicon_fourfold``; other
   coordinations: ``unknown`` (seed 004 assigns 3- vs 4-fold by the number of Si-C bonds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from hpcbench.defects import DEFECT_CODES

if TYPE_CHECKING:
    from ase import Atoms

__all__ = [
    "CLASS_OF_LABEL",
    "DEFECT_CLASSES",
    "LATTICE_SPECIES",
    "MAX_BONDS",
    "MAX_BOND_LENGTH",
    "VACANCY",
    "AtomSites",
    "Defect",
    "DefectAnalysis",
    "DefectClass",
    "SiteGeometry",
    "classify_defects",
    "sites_from_atoms",
]

DefectClass = Literal[
    "silicon_threefold",
    "silicon_fourfold",
    "silicon_vacancy",
    "silicon_dimer",
    "cluster",
    "vacancy",
    "unknown",
]
DEFECT_CLASSES: Final[tuple[str, ...]] = get_args(DefectClass)

VACANCY: Final = "vacancy"
"""Species string of a vacancy site (a missing atom; never bonded)."""
LATTICE_SPECIES: Final = "C"
"""Species of the host lattice (graphene); every other atom species is foreign."""
_SILICON: Final = "Si"

MAX_BOND_LENGTH: Final[Mapping[tuple[str, str], float]] = MappingProxyType(
    {("C", "C"): 1.94, ("C", "Si"): 2.17, ("Si", "Si"): 2.17}
)
"""Maximum bond length [Å] per species pair (keys sorted); see the module docstring."""
MAX_BONDS: Final[Mapping[str, int]] = MappingProxyType({"C": 3, "Si": 4})
"""Maximum number of bonds per species; see the module docstring."""

CLASS_OF_LABEL: Final[Mapping[int, DefectClass]] = MappingProxyType(
    {
        DEFECT_CODES["silicon_threefold"]: "silicon_threefold",
        DEFECT_CODES["silicon_fourfold"]: "silicon_fourfold",
        DEFECT_CODES["carbon_vacancy"]: "vacancy",
    }
)
"""The class an isolated defect of each graphene label code (:data:`DEFECT_CODES`) has."""


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, eq=False)
class AtomSites:
    """Projected atom and vacancy sites, validated.

    Parameters
    ----------
    positions : array_like
        ``(n, 2)`` projected positions (x, y) [Å], finite.
    species : sequence of str
        ``n`` species: chemical symbols (``"C"``, ``"Si"``, ...) or :data:`VACANCY`.
    cell : tuple of float or None
        Orthogonal periodic box ``(Lx, Ly)`` [Å]; positions are wrapped into it and
        distances use the minimum image. ``None`` for an open (non-periodic) patch.
    labels : array_like or None
        Optional ``(n,)`` ground-truth label codes (:data:`hpcbench.defects.DEFECT_CODES`),
        carried along for evaluation; not used by the analysis.

    Raises
    ------
    ValueError
        For a wrong shape, non-finite positions, mismatched lengths, an empty species
        string, or a non-positive or non-finite cell.
    """

    positions: NDArray[np.float64]
    species: tuple[str, ...]
    cell: tuple[float, float] | None = None
    labels: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        positions = np.array(self.positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise ValueError(f"positions must have shape (n, 2), got {positions.shape}")
        if not np.all(np.isfinite(positions)):
            bad = int(np.count_nonzero(~np.all(np.isfinite(positions), axis=1)))
            raise ValueError(f"positions must be finite: {bad} row(s) hold NaN or inf")
        species = tuple(str(s) for s in self.species)
        if len(species) != len(positions):
            raise ValueError(
                f"species has {len(species)} entries but positions has {len(positions)} rows"
            )
        if any(not s for s in species):
            raise ValueError("species must be non-empty strings")
        cell: tuple[float, float] | None = None
        if self.cell is not None:
            lx, ly = (float(v) for v in self.cell)
            if not (np.isfinite(lx) and np.isfinite(ly) and lx > 0 and ly > 0):
                raise ValueError(f"cell must be two positive finite lengths, got {self.cell}")
            cell = (lx, ly)
            box = np.array(cell)
            positions = np.mod(positions, box)
            positions = np.where(positions >= box, positions - box, positions)
        labels: NDArray[np.int64] | None = None
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
            if len(labels) != len(positions):
                raise ValueError(
                    f"labels has {len(labels)} entries but positions has {len(positions)} rows"
                )
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "labels", labels)

    @classmethod
    def from_pixels(
        cls,
        positions: ArrayLike,
        species: Sequence[str],
        pixel_size: float,
        *,
        cell: tuple[float, float] | None = None,
    ) -> AtomSites:
        """Sites from pixel coordinates.

        Parameters
        ----------
        positions : array_like
            ``(n, 2)`` positions [px] in the same (x, y) order as the result.
        species : sequence of str
            ``n`` species, as in :class:`AtomSites`.
        pixel_size : float
            Sampling [Å/px], > 0.
        cell : tuple of float or None
            Periodic box [Å] (not pixels), or ``None``.

        Returns
        -------
        AtomSites
            Positions in [Å].
        """
        size = float(pixel_size)
        if not (np.isfinite(size) and size > 0):
            raise ValueError(f"pixel_size must be a positive finite number, got {pixel_size!r}")
        return cls(np.asarray(positions, dtype=np.float64) * size, tuple(species), cell)

    def __len__(self) -> int:
        return len(self.species)


@dataclass(frozen=True)
class SiteGeometry:
    """Bonds of one atom, neighbours sorted by azimuth (counter-clockwise from +x).

    Attributes
    ----------
    index : int
        The atom's row in the sites.
    species : str
        Its species.
    neighbours : tuple of int
        Rows of its bonded atoms, by increasing azimuth.
    bond_lengths_pm : tuple of float
        Projected bond lengths [pm], in the order of ``neighbours``.
    bond_angles_deg : tuple of float
        Angles [°] between consecutive neighbours (the last to the first closes the
        circle, so they sum to 360°); empty for fewer than two bonds.
    """

    index: int
    species: str
    neighbours: tuple[int, ...]
    bond_lengths_pm: tuple[float, ...]
    bond_angles_deg: tuple[float, ...]

    @property
    def coordination(self) -> int:
        """Number of bonds."""
        return len(self.neighbours)


@dataclass(frozen=True)
class Defect:
    """One defect: a connected group of foreign atoms and vacancy sites.

    Attributes
    ----------
    index : int
        Running number in the analysis.
    defect_class : str
        One of :data:`DEFECT_CLASSES`, by the rules of the module docstring.
    centre : tuple of float
        Centroid (x, y) of the members [Å] (minimum image, wrapped into the cell).
    members : tuple of int
        Rows of every site in the defect: foreign atoms, vacancy sites and edge atoms.
    foreign : tuple of int
        Rows of its non-lattice atoms.
    vacancies : tuple of int
        Rows of its vacancy sites.
    geometry : tuple of SiteGeometry
        Bonds, lengths [pm] and angles [°] of each foreign atom, in the order of
        ``foreign``.
    """

    index: int
    defect_class: DefectClass
    centre: tuple[float, float]
    members: tuple[int, ...]
    foreign: tuple[int, ...]
    vacancies: tuple[int, ...]
    geometry: tuple[SiteGeometry, ...]


def _fmt(values: Sequence[float]) -> str:
    return ";".join(f"{v:.1f}" for v in values)


@dataclass(frozen=True, eq=False)
class DefectAnalysis:
    """A bond graph and its classified defects.

    Attributes
    ----------
    sites : AtomSites
        The input (positions [Å], wrapped into the cell if periodic).
    bonds : numpy.ndarray
        ``(m, 2)`` int64 rows ``(i, j)``, ``i < j``, of accepted bonds.
    bond_lengths : numpy.ndarray
        ``(m,)`` projected bond lengths [Å] (minimum image).
    defects : tuple of Defect
        Ordered by their first member.
    max_bond_length : mapping
        The bond table used: maximum length [Å] per sorted species pair.
    max_bonds : mapping
        The bond table used: maximum bonds per species.
    """

    sites: AtomSites
    bonds: NDArray[np.int64]
    bond_lengths: NDArray[np.float64]
    defects: tuple[Defect, ...]
    max_bond_length: Mapping[tuple[str, str], float]
    max_bonds: Mapping[str, int]
    _neighbours: tuple[tuple[int, ...], ...] = field(repr=False)

    def coordination(self) -> NDArray[np.int64]:
        """Number of bonds of every site (0 for vacancy sites), ``(n,)`` int64."""
        return np.array([len(n) for n in self._neighbours], dtype=np.int64)

    def geometry(self, index: int) -> SiteGeometry:
        """Bonds, lengths [pm] and angles [°] of any site (see :class:`SiteGeometry`)."""
        if not 0 <= index < len(self.sites):
            raise ValueError(f"index {index} out of range for {len(self.sites)} sites")
        return _site_geometry(self.sites, self._neighbours, index)

    def class_counts(self) -> dict[str, int]:
        """Number of defects per class, every class of :data:`DEFECT_CLASSES` listed."""
        counts = dict.fromkeys(DEFECT_CLASSES, 0)
        for defect in self.defects:
            counts[defect.defect_class] += 1
        return counts

    def to_table(self) -> list[dict[str, str | int | float]]:
        """One row per defect, flat values for a CSV.

        Per-atom lists are joined: values of one atom with ``;``, atoms with ``|``, in
        the order of ``foreign``.

        Returns
        -------
        list of dict
            Keys ``defect``, ``class``, ``x_A``, ``y_A`` (centre [Å]), ``n_members``,
            ``n_foreign``, ``n_vacancies``, ``species`` (foreign species, ``|``-joined),
            ``coordination``, ``bond_lengths_pm``, ``bond_angles_deg``,
            ``mean_bond_length_pm`` and ``mean_bond_angle_deg`` (NaN without bonds or
            angles).
        """
        rows: list[dict[str, str | int | float]] = []
        for d in self.defects:
            lengths = [v for g in d.geometry for v in g.bond_lengths_pm]
            angles = [v for g in d.geometry for v in g.bond_angles_deg]
            rows.append(
                {
                    "defect": d.index,
                    "class": d.defect_class,
                    "x_A": d.centre[0],
                    "y_A": d.centre[1],
                    "n_members": len(d.members),
                    "n_foreign": len(d.foreign),
                    "n_vacancies": len(d.vacancies),
                    "species": "|".join(g.species for g in d.geometry),
                    "coordination": "|".join(str(g.coordination) for g in d.geometry),
                    "bond_lengths_pm": "|".join(_fmt(g.bond_lengths_pm) for g in d.geometry),
                    "bond_angles_deg": "|".join(_fmt(g.bond_angles_deg) for g in d.geometry),
                    "mean_bond_length_pm": float(np.mean(lengths)) if lengths else float("nan"),
                    "mean_bond_angle_deg": float(np.mean(angles)) if angles else float("nan"),
                }
            )
        return rows


def _displacements(
    origin: NDArray[np.float64], targets: NDArray[np.float64], cell: tuple[float, float] | None
) -> NDArray[np.float64]:
    """``targets - origin`` [Å], minimum image when periodic."""
    delta = np.asarray(targets - origin, dtype=np.float64)
    if cell is not None:
        box = np.array(cell)
        delta -= box * np.rint(delta / box)
    return delta


def _site_geometry(
    sites: AtomSites, neighbours: Sequence[tuple[int, ...]], index: int
) -> SiteGeometry:
    rows = np.array(neighbours[index], dtype=np.int64)
    if len(rows) == 0:
        return SiteGeometry(index, sites.species[index], (), (), ())
    delta = _displacements(sites.positions[index], sites.positions[rows], sites.cell)
    azimuth = np.degrees(np.arctan2(delta[:, 1], delta[:, 0])) % 360.0
    order = np.lexsort((rows, azimuth))
    rows, delta, azimuth = rows[order], delta[order], azimuth[order]
    lengths = 100.0 * np.hypot(delta[:, 0], delta[:, 1])
    angles: tuple[float, ...] = ()
    if len(rows) >= 2:
        gaps = np.diff(np.append(azimuth, azimuth[0] + 360.0))
        angles = tuple(float(v) for v in gaps)
    return SiteGeometry(
        index,
        sites.species[index],
        tuple(int(r) for r in rows),
        tuple(float(v) for v in lengths),
        angles,
    )


def _bond_table(
    species: Sequence[str],
    max_length: Mapping[tuple[str, str], float] | None,
    max_bonds: Mapping[str, int] | None,
    has_vacancies: bool,
) -> tuple[dict[tuple[str, str], float], dict[str, int]]:
    """Merge overrides over the built-in table and check every species present is in it."""
    lengths = dict(MAX_BOND_LENGTH)
    for key, value in (max_length or {}).items():
        if len(key) != 2:
            raise ValueError(f"max_length keys must be species pairs, got {key!r}")
        limit = float(value)
        if not (np.isfinite(limit) and limit > 0):
            raise ValueError(f"max_length[{key!r}] must be a positive length [Å], got {value!r}")
        lengths[_pair(str(key[0]), str(key[1]))] = limit
    valences = dict(MAX_BONDS)
    for name, count in (max_bonds or {}).items():
        if int(count) != count or count < 0:
            raise ValueError(f"max_bonds[{name!r}] must be a non-negative integer, got {count!r}")
        valences[str(name)] = int(count)
    present = sorted({s for s in species if s != VACANCY})
    missing = [s for s in present if s not in valences]
    if missing:
        raise ValueError(
            f"no bond-table entry for species {', '.join(map(repr, missing))}: pass "
            f"max_bonds={{{missing[0]!r}: n}} and max_length pairs for it "
            f"(built-in table: {', '.join(MAX_BONDS)})"
        )
    needed = {_pair(a, b) for i, a in enumerate(present) for b in present[i:]}
    if has_vacancies:
        needed |= {_pair(s, LATTICE_SPECIES) for s in present}
        needed.add((LATTICE_SPECIES, LATTICE_SPECIES))
    absent = sorted(needed - set(lengths))
    if absent:
        raise ValueError(
            f"no maximum bond length for species pair(s) {', '.join(map(str, absent))}: "
            "pass them in max_length [Å]"
        )
    return lengths, valences


def _class_of(
    species: Sequence[str], dimer_bonded: bool, n_vacancies: int, coordination: int
) -> DefectClass:
    """The class rules of the module docstring, in order."""
    if not species:
        return "vacancy"
    if any(s != _SILICON for s in species):
        return "unknown"
    if len(species) >= 3:
        return "cluster"
    if len(species) == 2:
        return "silicon_dimer" if dimer_bonded else "unknown"
    if n_vacancies:
        return "silicon_vacancy"
    if coordination == 3:
        return "silicon_threefold"
    if coordination == 4:
        return "silicon_fourfold"
    return "unknown"


def classify_defects(
    positions: ArrayLike | AtomSites,
    species: Sequence[str] | None = None,
    *,
    pixel_size: float | None = None,
    cell: tuple[float, float] | None = None,
    max_length: Mapping[tuple[str, str], float] | None = None,
    max_bonds: Mapping[str, int] | None = None,
) -> DefectAnalysis:
    """Bond graph, defects and their classes from projected atom coordinates.

    Parameters
    ----------
    positions : array_like or AtomSites
        ``(n, 2)`` positions (x, y) [Å], or [px] when ``pixel_size`` is given; or
        ready :class:`AtomSites` (then ``species``, ``pixel_size`` and ``cell`` must be
        left out).
    species : sequence of str
        ``n`` species: ``"C"``, ``"Si"``, ... or ``"vacancy"`` for a vacancy site.
    pixel_size : float or None
        Sampling [Å/px] when ``positions`` are in pixels.
    cell : tuple of float or None
        Orthogonal periodic box ``(Lx, Ly)`` [Å]; ``None`` for an open patch.
    max_length : mapping of (str, str) to float or None
        Maximum bond length [Å] per species pair (order free), merged over
        :data:`MAX_BOND_LENGTH`.
    max_bonds : mapping of str to int or None
        Maximum bonds per species, merged over :data:`MAX_BONDS`.

    Returns
    -------
    DefectAnalysis
        Bonds, bond lengths and the classified defects.

    Raises
    ------
    ValueError
        For invalid sites (shape, NaN, mismatched lengths), a species with no entry in
        the bond table, or a cell shorter than twice the longest bond (the minimum
        image would be ambiguous).
    """
    if isinstance(positions, AtomSites):
        if species is not None or pixel_size is not None or cell is not None:
            raise ValueError("pass species, pixel_size and cell in the AtomSites, not again")
        sites = positions
    elif species is None:
        raise ValueError("species is required with raw positions")
    elif pixel_size is not None:
        sites = AtomSites.from_pixels(positions, species, pixel_size, cell=cell)
    else:
        sites = AtomSites(np.asarray(positions, dtype=np.float64), tuple(species), cell)
    kinds = np.array(sites.species, dtype=object)
    is_vacancy = kinds == VACANCY
    lengths, valences = _bond_table(sites.species, max_length, max_bonds, bool(is_vacancy.any()))
    n = len(sites)
    cutoff = max(lengths.values())
    if sites.cell is not None and min(sites.cell) <= 2 * cutoff:
        raise ValueError(
            f"cell {sites.cell} Å must be longer than twice the longest bond ({cutoff:g} Å)"
        )

    pairs = np.zeros((0, 2), dtype=np.int64)
    if n >= 2:
        tree = cKDTree(sites.positions, boxsize=None if sites.cell is None else sites.cell)
        pairs = np.asarray(tree.query_pairs(cutoff, output_type="ndarray"), dtype=np.int64)
        pairs = pairs.reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    delta = _displacements(sites.positions[i], sites.positions[j], sites.cell)
    dist = np.hypot(delta[:, 0], delta[:, 1])
    vac_i, vac_j = is_vacancy[i], is_vacancy[j]
    lattice_cc = lengths[(LATTICE_SPECIES, LATTICE_SPECIES)] if is_vacancy.any() else 0.0

    # Atom-atom candidates: within their pair's maximum; accepted shortest first while
    # both atoms have a free valence.
    atom_pair = ~vac_i & ~vac_j
    limit = np.array(
        [
            lengths[_pair(kinds[a], kinds[b])] if ok else 0.0
            for a, b, ok in zip(i, j, atom_pair, strict=True)
        ],
        dtype=np.float64,
    )
    candidate = np.flatnonzero(atom_pair & (dist <= limit))
    candidate = candidate[np.lexsort((j[candidate], i[candidate], dist[candidate]))]
    free = np.array([valences.get(s, 0) for s in sites.species], dtype=np.int64)
    accepted: list[int] = []
    for k in candidate:
        a, b = i[k], j[k]
        if free[a] > 0 and free[b] > 0:
            free[a] -= 1
            free[b] -= 1
            accepted.append(int(k))
    keep = np.array(sorted(accepted), dtype=np.int64)
    bonds = pairs[keep].reshape(-1, 2)
    bond_lengths = dist[keep]
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in bonds:
        neighbours[a].append(int(b))
        neighbours[b].append(int(a))
    neighbour_rows = tuple(tuple(sorted(r)) for r in neighbours)

    # Defect nodes and the links between them (bonds, vacancy association, clusters).
    foreign = ~is_vacancy & (kinds != LATTICE_SPECIES)
    node = foreign | is_vacancy
    links: list[tuple[int, int]] = [(int(a), int(b)) for a, b in bonds if foreign[a] and foreign[b]]
    edge_of_vacancy: list[list[int]] = [[] for _ in range(n)]
    for a, b, d in zip(i[~atom_pair], j[~atom_pair], dist[~atom_pair], strict=True):
        if is_vacancy[a] and is_vacancy[b]:
            if d <= lattice_cc:
                links.append((int(a), int(b)))
            continue
        vac, atom = (a, b) if is_vacancy[a] else (b, a)
        if foreign[atom]:
            if d <= lengths[_pair(kinds[atom], LATTICE_SPECIES)]:
                links.append((int(vac), int(atom)))
        elif d <= lattice_cc:
            edge_of_vacancy[vac].append(int(atom))
    link = np.array(links, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(link), dtype=np.int8), (link[:, 0], link[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    groups: dict[int, list[int]] = {}
    for row in np.flatnonzero(node):
        groups.setdefault(int(component[row]), []).append(int(row))
    defects: list[Defect] = []
    for rows in sorted(groups.values(), key=lambda r: r[0]):
        atoms_f = tuple(r for r in rows if foreign[r])
        vacancies = tuple(r for r in rows if is_vacancy[r])
        edge = {nb for r in atoms_f for nb in neighbour_rows[r] if not foreign[nb]}
        edge |= {nb for r in vacancies for nb in edge_of_vacancy[r]}
        members = tuple(sorted(set(rows) | edge))
        geometry = tuple(_site_geometry(sites, neighbour_rows, r) for r in atoms_f)
        dimer_bonded = len(atoms_f) == 2 and atoms_f[1] in neighbour_rows[atoms_f[0]]
        coordination = geometry[0].coordination if len(geometry) == 1 else -1
        ref = sites.positions[rows[0]]
        offset = _displacements(ref, sites.positions[list(members)], sites.cell).mean(axis=0)
        centre = ref + offset
        if sites.cell is not None:
            centre = np.mod(centre, np.array(sites.cell))
        defects.append(
            Defect(
                index=len(defects),
                defect_class=_class_of(
                    [sites.species[r] for r in atoms_f], dimer_bonded, len(vacancies), coordination
                ),
                centre=(float(centre[0]), float(centre[1])),
                members=members,
                foreign=atoms_f,
                vacancies=vacancies,
                geometry=geometry,
            )
        )
    return DefectAnalysis(
        sites=sites,
        bonds=bonds,
        bond_lengths=bond_lengths,
        defects=tuple(defects),
        max_bond_length=MappingProxyType(lengths),
        max_bonds=MappingProxyType(valences),
        _neighbours=neighbour_rows,
    )


def sites_from_atoms(atoms: Atoms) -> AtomSites:
    """Projected sites of a labelled structure (e.g. from ``build_structure``).

    Parameters
    ----------
    atoms : ase.Atoms
        With the label conventions of :mod:`hpcbench.defects`: ``arrays["label"]``,
        ``info["vacancy_sites"]`` and ``info["vacancy_labels"]`` (missing entries are
        read as no labels / no vacancies).

    Returns
    -------
    AtomSites
        The atoms' (x, y) [Å] and symbols, then one :data:`VACANCY` site per vacancy
        site (x, y) [Å]; ``labels`` are the atoms' label codes then the vacancy codes.
        Periodic (``cell`` = the cell's x and y lengths) when the structure is periodic
        in x and y (``info["periodic"]``, default ``pbc``); z is dropped.

    Raises
    ------
    ValueError
        For a periodic structure whose cell is not orthogonal in x-y.
    """
    xy = np.asarray(atoms.positions, dtype=np.float64)[:, :2]
    symbols = [str(s) for s in atoms.get_chemical_symbols()]  # type: ignore[no-untyped-call]
    vac = np.asarray(atoms.info.get("vacancy_sites", np.zeros((0, 3))), dtype=np.float64)
    vac = vac.reshape(-1, 3)[:, :2]
    labels = np.asarray(atoms.arrays.get("label", np.zeros(len(atoms))), dtype=np.int64)
    vac_labels = np.asarray(
        atoms.info.get("vacancy_labels", np.full(len(vac), DEFECT_CODES["carbon_vacancy"])),
        dtype=np.int64,
    ).reshape(-1)
    periodic = bool(atoms.info.get("periodic", bool(np.all(atoms.pbc[:2]))))
    cell: tuple[float, float] | None = None
    if periodic:
        matrix = np.asarray(atoms.cell[:], dtype=np.float64)
        if not np.allclose(matrix[:2, :2], np.diag(np.diag(matrix[:2, :2]))):
            raise ValueError("sites_from_atoms needs a cell that is orthogonal in x and y")
        cell = (float(matrix[0, 0]), float(matrix[1, 1]))
    return AtomSites(
        np.concatenate([xy, vac]),
        (*symbols, *([VACANCY] * len(vac))),
        cell,
        np.concatenate([labels, vac_labels]),
    )
