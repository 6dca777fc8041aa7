"""The rows of one shard: structure → clean cell image → crops → corruption → labels.

:func:`build_shard` is a pure function of ``(study, dataset name, shard index)``: every
random draw comes from :mod:`hpcbench.seeding` streams keyed by the structure or sample
index, so a shard built on any node, in any order, has the same bytes.

The expensive step, simulating a structure's periodic cell image, runs once per
structure; ``images_per_structure`` crops (random offset and rotation of the periodic
tiling, as in seed 003) are then cut from it, and each crop is corrupted by a seeded
pure function. The clean crop is stored next to the corrupted one, with the corruption
parameters and seed as columns, so a dose ablation re-corrupts instead of
re-simulating.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from hpcbench.datasets.schema import coordinates_type, tensor_column
from hpcbench.defects import DEFECT_CODES, GrapheneDefect, MX2Defect, SupportedDefect
from hpcbench.seeding import Stream, seed_int, seed_sequence, stream_rng
from hpcbench.simulate.corrupt import (
    CorruptionParams,
    add_noise,
    distort,
    distort_sites,
    distortion_border,
    sample_corruption,
)
from hpcbench.simulate.crop import crop, prepare, random_geometry
from hpcbench.simulate.labels import (
    Coordinates,
    Sites,
    class_map,
    labelled_coordinates,
    render_mask,
    site_table,
)
from hpcbench.simulate.periodic import PeriodicImage
from hpcbench.structures import build_structure
from hpcbench.study import (
    Corruption,
    DatasetSpec,
    HRTEMSimulation,
    IncoherentSimulation,
    NanoparticleStructure,
    Study,
    SupportedAtomsStructure,
)

__all__ = ["atoms_type", "build_shard", "shard_count", "shard_range", "simulate_structure"]


def shard_count(spec: DatasetSpec) -> int:
    """Number of shards of a dataset."""
    return math.ceil(spec.size / spec.shard_size)


def shard_range(spec: DatasetSpec, shard_index: int) -> range:
    """Sample ids of shard ``shard_index``."""
    if not 0 <= shard_index < shard_count(spec):
        raise IndexError(f"shard {shard_index} out of range 0..{shard_count(spec) - 1}")
    start = shard_index * spec.shard_size
    return range(start, min(spec.size, start + spec.shard_size))


def atoms_type() -> pa.DataType:
    """Arrow type of the ``atoms`` column: every atom/vacancy site in the crop [px]."""
    return pa.list_(
        pa.struct(
            [
                pa.field("x", pa.float32()),
                pa.field("y", pa.float32()),
                pa.field("code", pa.int16()),
                pa.field("z_number", pa.int16()),
            ]
        )
    )


def simulate_structure(atoms: Any, spec: DatasetSpec, *, seed: int) -> PeriodicImage:
    """The clean periodic image of one structure with the dataset's simulation."""
    simulation = spec.simulation
    if isinstance(simulation, IncoherentSimulation):
        # lazy: start-up time (each engine loads its own stack; abTEM alone ~2 s)
        from hpcbench.simulate.incoherent import simulate_incoherent

        return simulate_incoherent(atoms, simulation)
    if isinstance(simulation, HRTEMSimulation):
        raise TypeError("an hrtem dataset has no periodic cell image: see _build_hrtem_shard")
    from hpcbench.simulate.stem import simulate_haadf  # lazy: abTEM's start-up time

    return simulate_haadf(atoms, simulation, seed=seed)


@dataclass
class _Columns:
    """Column buffers of a shard, filled row by row."""

    sample_id: list[int]
    structure_index: list[int]
    image: list[NDArray[np.float32]]
    clean: list[NDArray[np.float32]]
    mask: list[NDArray[np.uint8]]
    coordinates: list[Coordinates]
    atoms: list[Sites]
    scalars: dict[str, list[Any]]

    @classmethod
    def empty(cls) -> _Columns:
        return cls([], [], [], [], [], [], [], {})

    def add_scalars(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.scalars.setdefault(key, []).append(value)


def _structure_groups(spec: DatasetSpec, ids: range) -> Iterator[tuple[int, range]]:
    per = spec.images_per_structure
    first = ids.start // per
    last = (ids.stop - 1) // per
    for structure in range(first, last + 1):
        yield (
            structure,
            range(max(ids.start, structure * per), min(ids.stop, (structure + 1) * per)),
        )


def build_shard(study: Study, name: str, shard_index: int) -> pa.Table:
    """Build the rows of one shard of dataset ``name``.

    Parameters
    ----------
    study : Study
        The validated study.
    name : str
        Dataset name (a key of ``study.datasets``).
    shard_index : int
        Which shard; its samples are ``shard_range(spec, shard_index)``.

    Returns
    -------
    pyarrow.Table
        One row per image: ``sample_id``, ``structure_index``, tensor columns
        ``image`` (float32, corrupted, or clean without corruption), ``clean`` (only with
        corruption) and ``mask`` (uint8 class map), ``coordinates`` (labelled sites,
        ``x``/``y`` [px] and mask ``label``), ``atoms`` (every atom and vacancy site in
        the crop with its defect code and atomic number), and plain parameter columns
        (structure, crop, simulation, corruption, seeds, defect counts).
    """
    # A multi-threaded BLAS sums matrix products in an order that depends on its thread
    # count (measured: the incoherent structure factor changed a shard's bytes between
    # 1 and 2 OpenBLAS threads), so shards are built with one BLAS thread everywhere.
    with threadpool_limits(limits=1, user_api="blas"):
        return _build_shard(study, name, shard_index)


def _build_shard(study: Study, name: str, shard_index: int) -> pa.Table:
    spec = study.datasets[name]
    if isinstance(spec.simulation, HRTEMSimulation):
        return _build_hrtem_shard(study, name, shard_index)
    ids = shard_range(spec, shard_index)
    mapping = class_map(spec.labels)
    radius_px = spec.labels.radius / spec.image.pixel_size
    columns = _Columns.empty()
    simulation_constants = spec.simulation.model_dump(exclude={"detector", "frozen_phonons"})
    simulation_constants["detector_inner"] = spec.simulation.detector.inner
    simulation_constants["detector_outer"] = spec.simulation.detector.outer

    for structure_index, sample_ids in _structure_groups(spec, ids):
        structure_rng = stream_rng(study.seed, name, structure_index, Stream.STRUCTURE)
        atoms = build_structure(spec.structure, rng=structure_rng)
        simulation_seed = seed_int(
            seed_sequence(study.seed, name, structure_index, Stream.SIMULATION)
        )
        # No timings in rows: a shard's bytes must not depend on how fast it ran (the
        # manifest records per-shard seconds).
        cell_image = simulate_structure(atoms, spec, seed=simulation_seed)
        prepared = prepare(cell_image)
        counts = atoms.info.get("defect_counts", {})
        messy = atoms.info.get("messy", {})
        structure_columns: dict[str, Any] = {
            "formula": str(atoms.get_chemical_formula(mode="metal")),  # type: ignore[no-untyped-call]
            "n_atoms": len(atoms),
            "cell_x": float(cell_image.extent[0]),
            "cell_y": float(cell_image.extent[1]),
            "structure_seed": seed_int(
                seed_sequence(study.seed, name, structure_index, Stream.STRUCTURE)
            ),
            "simulation_seed": simulation_seed,
            **{f"n_{defect}": int(counts.get(defect, 0)) for defect in _defect_names(spec)},
            **{f"messy_{key}": float(value) for key, value in sorted(messy.items())},
            **simulation_constants,
        }

        for sample_id in sample_ids:
            geometry = random_geometry(
                cell_image, spec.image, stream_rng(study.seed, name, sample_id, Stream.CROP)
            )
            row: dict[str, Any] = {
                "rotation": geometry.rotation,
                "offset_x": geometry.offset[0],
                "offset_y": geometry.offset[1],
                "pixel_size": spec.image.pixel_size,
            }
            if spec.corruption is None:
                image = crop(prepared, geometry)
                sites = site_table(atoms, geometry, periodic=cell_image.periodic)
            else:
                params = sample_corruption(
                    spec.corruption,
                    stream_rng(study.seed, name, sample_id, Stream.PARAMETERS),
                )
                corruption_seed = seed_int(
                    seed_sequence(study.seed, name, sample_id, Stream.CORRUPTION)
                )
                # Scan distortion needs real image beyond the frame edge, not a mirror.
                border = distortion_border(params, pixel_size=spec.image.pixel_size)
                padded = crop(prepared, geometry.padded(border))
                # "clean" is the noise-free frame (blur and scan distortion applied), so
                # it is aligned with the mask; add_noise(clean) == corrupt(padded) bit
                # for bit, which lets a dose ablation re-noise it without re-simulating.
                clean = distort(
                    padded,
                    params,
                    pixel_size=spec.image.pixel_size,
                    seed=corruption_seed,
                    border=border,
                )
                image = add_noise(
                    clean, params, pixel_size=spec.image.pixel_size, seed=corruption_seed
                )
                sites = site_table(atoms, geometry, periodic=cell_image.periodic, pad=border)
                sites = distort_sites(
                    sites,
                    params,
                    shape=spec.image.shape,
                    pixel_size=spec.image.pixel_size,
                    seed=corruption_seed,
                )
                row.update(_corruption_columns(params, spec.corruption))
                row["corruption_seed"] = corruption_seed
                columns.clean.append(clean.astype(np.float32, copy=False))
            mask = render_mask(sites, mapping, spec.image.shape, radius_px)
            columns.sample_id.append(sample_id)
            columns.structure_index.append(structure_index)
            columns.image.append(np.asarray(image, dtype=np.float32))
            columns.mask.append(mask)
            columns.coordinates.append(labelled_coordinates(sites, mapping))
            columns.atoms.append(sites)
            columns.add_scalars({**structure_columns, **row})

    return _to_table(columns, corrupted=spec.corruption is not None)


def _build_hrtem_shard(study: Study, name: str, shard_index: int) -> pa.Table:
    """HRTEM rows (seed 001): exit waves once per structure, one image per sample.

    Each sample draws its imaging conditions (:func:`draw_conditions`) and a whole-pixel
    offset into the periodic image, so crops need no interpolation; ``clean`` is the
    noise-free image at the dataset's fidelity and ``clean_<level>`` at each further
    level of ``simulation.fidelities``, with the same conditions. The mask is the crop
    of the particle's blurred phase, thresholded. There are no atom coordinates: the
    label is a region, not sites.
    """
    from hpcbench.simulate.hrtem_data import (  # lazy: torch and abTEM start-up time
        draw_conditions,
        fidelity_image,
        simulate_structure_waves,
        wrap_crop,
    )

    spec = study.datasets[name]
    simulation = spec.simulation
    structure_spec = spec.structure
    assert isinstance(simulation, HRTEMSimulation)
    assert isinstance(structure_spec, NanoparticleStructure)
    ids = shard_range(spec, shard_index)
    value = class_map(spec.labels).get(DEFECT_CODES["particle"], 0)
    pixel = spec.image.pixel_size
    shape = spec.image.shape
    levels = simulation.levels
    columns = _Columns.empty()
    extra: dict[str, list[NDArray[np.float32]]] = {level: [] for level in levels[1:]}
    constants = {
        "energy": simulation.energy,
        "sampling": simulation.sampling,
        "slice_thickness": simulation.slice_thickness,
        "frozen_phonons": simulation.frozen_phonons.count,
        "fidelity": simulation.fidelity,
        "semiangle_cutoff": simulation.semiangle_cutoff,
    }
    empty = Sites(
        np.zeros(0, np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.int16),
        np.zeros(0, np.int16),
        np.zeros(0, np.bool_),
    )
    no_coordinates = Coordinates(
        np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint8)
    )
    for structure_index, sample_ids in _structure_groups(spec, ids):
        structure_rng = stream_rng(study.seed, name, structure_index, Stream.STRUCTURE)
        atoms = build_structure(structure_spec, rng=structure_rng)
        simulation_seed = seed_int(
            seed_sequence(study.seed, name, structure_index, Stream.SIMULATION)
        )
        waves = simulate_structure_waves(atoms, simulation, pixel_size=pixel, seed=simulation_seed)
        info = atoms.info
        structure_columns: dict[str, Any] = {
            "formula": str(atoms.get_chemical_formula(mode="metal")),  # type: ignore[no-untyped-call]
            "n_atoms": len(atoms),
            "n_particle_atoms": int((atoms.arrays["label"] == DEFECT_CODES["particle"]).sum()),
            "material": str(info["material"]),
            "shape": str(info["shape"]),
            "diameter": float(info["diameter"]),
            "planar_defect": str(info["planar_defect"]),
            "planar_defects": int(info["planar_defects"]),
            "support_thickness": float(info["support_thickness"]),
            "cell_x": float(atoms.cell[0, 0]),
            "cell_y": float(atoms.cell[1, 1]),
            "cell_z": float(atoms.cell[2, 2]),
            "structure_seed": seed_int(
                seed_sequence(study.seed, name, structure_index, Stream.STRUCTURE)
            ),
            "simulation_seed": simulation_seed,
            **constants,
        }
        grid = waves.phase.array.shape
        for sample_id in sample_ids:
            conditions = draw_conditions(
                simulation, stream_rng(study.seed, name, sample_id, Stream.IMAGING)
            )
            crop_rng = stream_rng(study.seed, name, sample_id, Stream.CROP)
            offset = (int(crop_rng.integers(grid[0])), int(crop_rng.integers(grid[1])))
            cleans = {
                level: wrap_crop(
                    fidelity_image(waves, simulation, conditions, level, pixel_size=pixel).array,
                    offset,
                    shape,
                ).astype(np.float32)
                for level in levels
            }
            clean = cleans[levels[0]]
            row: dict[str, Any] = {
                "offset_x": offset[1],
                "offset_y": offset[0],
                "pixel_size": pixel,
                **conditions.as_columns(),
            }
            image = clean
            if spec.corruption is not None:
                params = sample_corruption(
                    spec.corruption, stream_rng(study.seed, name, sample_id, Stream.PARAMETERS)
                )
                corruption_seed = seed_int(
                    seed_sequence(study.seed, name, sample_id, Stream.CORRUPTION)
                )
                image = add_noise(clean, params, pixel_size=pixel, seed=corruption_seed)
                row.update(_corruption_columns(params, spec.corruption))
                row["corruption_seed"] = corruption_seed
                columns.clean.append(clean)
            for level in levels[1:]:
                extra[level].append(cleans[level])
            phase = wrap_crop(waves.phase.array, offset, shape)
            mask = (phase > simulation.mask_threshold).astype(np.uint8) * np.uint8(value)
            columns.sample_id.append(sample_id)
            columns.structure_index.append(structure_index)
            columns.image.append(np.asarray(image, dtype=np.float32))
            columns.mask.append(mask)
            columns.coordinates.append(no_coordinates)
            columns.atoms.append(empty)
            columns.add_scalars({**structure_columns, **row})
    table = _to_table(columns, corrupted=spec.corruption is not None)
    for level in levels[1:]:
        table = table.append_column(f"clean_{level}", tensor_column(np.stack(extra[level])))
    return table


def _defect_names(spec: DatasetSpec) -> list[str]:
    structure = spec.structure
    if isinstance(structure, SupportedAtomsStructure):
        return list(get_args(SupportedDefect))
    if isinstance(structure, NanoparticleStructure):
        return []
    family = MX2Defect if structure.kind == "mx2" else GrapheneDefect
    return [*get_args(family), "beam_damage"] if structure.messy else list(get_args(family))


# Corruption parameters newer than data format 2, with their spec defaults: their
# columns are written only for a spec that sets one of them, so a dataset whose hash is
# unchanged (see ``simulated_hash``) also keeps its bytes. Readers take a missing column
# as the default (``hpcbench.train.data._corruption_params``).
_OPTIONAL_COLUMNS = {"correlated_noise": 0.0, "noise_correlation": 0.5}


def _corruption_columns(params: CorruptionParams, spec: Corruption) -> dict[str, Any]:
    """``corruption_<name>`` columns of one image's drawn parameters."""
    columns = params.as_columns()
    if all(getattr(spec, key) == default for key, default in _OPTIONAL_COLUMNS.items()):
        columns = {k: v for k, v in columns.items() if k not in _OPTIONAL_COLUMNS}
    return {f"corruption_{key}": value for key, value in columns.items()}


def _list_column(
    kind: pa.DataType, lengths: list[int], fields: list[NDArray[np.generic]]
) -> pa.Array:
    """A ``list<struct>`` column of type ``kind`` from each row's length and flat fields.

    The same array as ``pa.array(records, kind)`` from one dict per element, built
    from the concatenated numpy arrays and the row offsets instead of Python objects.
    """
    struct = kind.value_type
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.StructArray.from_arrays(
        [
            pa.array(np.asarray(array, dtype=struct.field(i).type.to_pandas_dtype()))
            for i, array in enumerate(fields)
        ],
        fields=list(struct),
    )
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=kind)


def _to_table(columns: _Columns, *, corrupted: bool) -> pa.Table:
    arrays: dict[str, pa.Array] = {
        "sample_id": pa.array(columns.sample_id, pa.int64()),
        "structure_index": pa.array(columns.structure_index, pa.int64()),
        "image": tensor_column(np.stack(columns.image)),
    }
    if corrupted:
        arrays["clean"] = tensor_column(np.stack(columns.clean))
    arrays["mask"] = tensor_column(np.stack(columns.mask))
    coords, atoms = columns.coordinates, columns.atoms
    arrays["coordinates"] = _list_column(
        coordinates_type(),
        [len(c) for c in coords],
        [np.concatenate([getattr(c, name) for c in coords]) for name in ("x", "y", "cls")],
    )
    arrays["atoms"] = _list_column(
        atoms_type(),
        [len(a) for a in atoms],
        [
            np.concatenate([getattr(a, name) for a in atoms])
            for name in ("x", "y", "code", "z_number")
        ],
    )
    for key, values in columns.scalars.items():
        arrays[key] = pa.array(values)
    return pa.table(arrays)
