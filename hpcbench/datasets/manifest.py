"""A dataset's ``_manifest.json``: how it was made and a checksum per shard; verification.

The manifest records the resolved dataset spec, the study's root seed, the dataset's
name and hash, the hpcbench, data-format and pyarrow versions, one
:class:`~hpcbench.datasets.sink.ShardRecord` per shard written, and timings. It is
replaced atomically (temporary ``.``-file, then :func:`os.replace`), during generation
every few seconds as shards complete and once at the end, so it always lists only
shards that were fully written.

A shard is *intact* when the manifest lists it with the expected row count and its
file has the recorded size and SHA-256. :func:`verify` checks every shard and reports
missing, damaged and extra files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pyarrow as pa
from pydantic import ValidationError

from hpcbench import __version__
from hpcbench.datasets.schema import DATA_FORMAT_VERSION
from hpcbench.datasets.sink import (
    ShardRecord,
    file_sha256,
    shard_name,
    write_atomic,
)
from hpcbench.study import DatasetSpec, Study

__all__ = [
    "IMPORTED_KIND",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "Manifest",
    "ManifestError",
    "Problem",
    "VerifyReport",
    "imported_hash",
    "read_manifest",
    "shard_layout",
    "shard_problem",
    "simulated_hash",
    "stray_files",
    "translated_hash",
    "verify",
    "verify_cached",
    "write_manifest",
]

MANIFEST_NAME: Final = "_manifest.json"
# The generator a translated dataset was made with (hpcbench.train.translate).
GENERATOR_FILE: Final = "_cyclegan.pt"
# What verify_cached last found intact: every file's size and mtime.
VERIFIED_NAME: Final = "_verified.json"
# Files of a dataset directory besides its shards.
SIDECARS: Final = frozenset({MANIFEST_NAME, GENERATOR_FILE, VERIFIED_NAME})
MANIFEST_FORMAT: Final = "hpcbench.dataset"
# ``spec["kind"]`` of a dataset imported from files (hpcbench.datasets.importer) rather
# than simulated from a study: its spec is the import record, not a DatasetSpec (which
# forbids a ``kind`` key), and its hash is :func:`imported_hash` of that spec.
IMPORTED_KIND: Final = "imported"


def _digest(payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Corruption fields added after format 2, with their defaults: left out of the hash
# while they hold them, so every dataset made before they existed keeps its hash.
_LATER_CORRUPTION_FIELDS = (("correlated_noise", 0.0), ("noise_correlation", 0.5))


def simulated_hash(seed: int, name: str, spec: DatasetSpec) -> str:
    """First 12 hex digits of the SHA-256 of what determines a simulated dataset's bytes.

    That is the data format version, the study's root ``seed``, the dataset's ``name``
    (seeds derive from it) and its resolved ``spec`` with defaults filled in.
    """
    dumped = spec.model_dump(mode="json")
    corruption = dumped.get("corruption")
    if corruption is not None:
        for key, default in _LATER_CORRUPTION_FIELDS:
            if corruption.get(key) == default:
                del corruption[key]
    return _digest({"format": DATA_FORMAT_VERSION, "seed": seed, "name": name, "spec": dumped})


def imported_hash(spec: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of an imported dataset's spec (canonical JSON)."""
    return _digest(spec)


def translated_hash(identity: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of a translation identity (canonical JSON)."""
    return _digest(identity)


class ManifestError(Exception):
    """A manifest is missing, unreadable or malformed."""


def shard_layout(size: int, shard_size: int) -> list[tuple[int, int]]:
    """``(first_sample_id, rows)`` of every shard of a dataset of ``size`` samples."""
    return [(first, min(shard_size, size - first)) for first in range(0, size, shard_size)]


@dataclass
class Manifest:
    """The manifest of one dataset directory.

    Attributes
    ----------
    name, study, seed, hash : str, str, int, str
        Dataset name, study name, the study's root seed and the dataset hash.
    spec : dict
        The resolved dataset spec (``DatasetSpec.model_dump(mode="json")``).
    shards : dict of int to ShardRecord
        Written shards by first sample id.
    timings : dict of str to float
        ``generate_seconds`` (wall time of the last generation run) and
        ``shard_seconds`` (sum of per-shard build-and-write times) [s].
    """

    name: str
    study: str
    seed: int
    hash: str
    spec: dict[str, Any]
    shards: dict[int, ShardRecord] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    hpcbench_version: str = __version__
    data_format_version: int = DATA_FORMAT_VERSION
    pyarrow_version: str = pa.__version__

    @classmethod
    def for_dataset(cls, study: Study, name: str) -> Manifest:
        """An empty manifest for dataset ``name`` of ``study``."""
        return cls(
            name=name,
            study=study.name,
            seed=study.seed,
            hash=simulated_hash(study.seed, name, study.datasets[name]),
            spec=study.datasets[name].model_dump(mode="json"),
        )

    @property
    def layout(self) -> list[tuple[int, int]]:
        """``(first_sample_id, rows)`` of every shard the spec calls for."""
        return shard_layout(int(self.spec["size"]), int(self.spec["shard_size"]))

    @property
    def complete(self) -> bool:
        """Whether every shard of the layout is recorded with the right row count."""
        return all(
            first in self.shards and self.shards[first].rows == rows for first, rows in self.layout
        )

    @property
    def total_rows(self) -> int:
        """Rows over all recorded shards."""
        return sum(record.rows for record in self.shards.values())

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready mapping (shards in sample order)."""
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "study": self.study,
            "seed": self.seed,
            "hash": self.hash,
            "hpcbench_version": self.hpcbench_version,
            "data_format_version": self.data_format_version,
            "pyarrow_version": self.pyarrow_version,
            "spec": self.spec,
            "complete": self.complete,
            "total_rows": self.total_rows,
            "shard_count": len(self.layout),
            "timings": self.timings,
            "shards": [self.shards[first].to_json() for first in sorted(self.shards)],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse :meth:`to_json` output; raise :class:`ManifestError` if malformed."""
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not an {MANIFEST_FORMAT} manifest")
        try:
            records = [ShardRecord.from_json(item) for item in data["shards"]]
            spec = data["spec"]
            if not isinstance(spec, dict):
                raise ManifestError("spec must be a mapping")
            return cls(
                name=str(data["name"]),
                study=str(data["study"]),
                seed=int(data["seed"]),
                hash=str(data["hash"]),
                spec=spec,
                shards={record.first_sample_id: record for record in records},
                timings={str(k): float(v) for k, v in dict(data["timings"]).items()},
                hpcbench_version=str(data["hpcbench_version"]),
                data_format_version=int(data["data_format_version"]),
                pyarrow_version=str(data["pyarrow_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from None


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read ``directory/_manifest.json``; raise :class:`ManifestError` if missing or bad."""
    path = Path(directory) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_NAME}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"unreadable {MANIFEST_NAME}: {exc}") from None
    return Manifest.from_json(data)


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Replace ``directory/_manifest.json`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest.to_json(), indent=1, sort_keys=False) + "\n"
    write_atomic(directory / MANIFEST_NAME, text.encode("utf-8"))


def shard_problem(directory: Path, record: ShardRecord | None, rows: int) -> str | None:
    """Why a shard is not intact (``None`` if it is).

    Parameters
    ----------
    directory : Path
        Dataset directory.
    record : ShardRecord or None
        The manifest's record of the shard (``None``: not recorded).
    rows : int
        Rows the spec calls for.
    """
    if record is None:
        return "not in the manifest"
    if record.rows != rows:
        return f"manifest records {record.rows} rows, the spec calls for {rows}"
    path = directory / record.file
    try:
        size = path.stat().st_size
        if size != record.bytes:
            return f"size {size} bytes, manifest records {record.bytes}"
        if file_sha256(path) != record.sha256:
            return "sha256 differs from the manifest"
    except FileNotFoundError:
        return "file missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return None


def check_shards(
    directory: Path, manifest: Manifest | None, layout: list[tuple[int, int]]
) -> dict[int, str | None]:
    """:func:`shard_problem` for every shard of ``layout``, hashing files in threads."""

    def check(item: tuple[int, int]) -> str | None:
        first, rows = item
        record = None if manifest is None else manifest.shards.get(first)
        return shard_problem(directory, record, rows)

    # hashlib releases the GIL on large updates: a few threads hash at disk speed.
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(check, layout))
    return {first: problem for (first, _), problem in zip(layout, problems, strict=True)}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset directory.

    ``kind`` is ``manifest`` (missing, unreadable or inconsistent manifest), ``missing``
    (a shard the spec calls for is absent or unrecorded), ``damaged`` (size or checksum
    differs) or ``extra`` (a shard file the layout does not call for).
    """

    kind: Literal["manifest", "missing", "damaged", "extra"]
    file: str
    detail: str

    def line(self, directory: Path) -> str:
        """``directory/file: kind: detail``."""
        return f"{directory / self.file}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`.

    Attributes
    ----------
    directory : Path
        The dataset directory checked.
    shards_ok : int
        Shards found intact.
    rows_ok : int
        Rows in the intact shards.
    problems : list of Problem
        Everything wrong, one entry per file.
    """

    directory: Path
    shards_ok: int
    rows_ok: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """Whether the dataset is complete and intact."""
        return not self.problems

    def lines(self) -> list[str]:
        """One line per problem."""
        return [problem.line(self.directory) for problem in self.problems]


def _spec_problems(directory: Path, manifest: Manifest) -> list[Problem]:
    if manifest.spec.get("kind") == IMPORTED_KIND:
        expected = imported_hash(manifest.spec)
    elif manifest.spec.get("kind") == "translated":  # hpcbench.train.translate
        identity = manifest.spec.get("identity")
        if not isinstance(identity, dict):
            return [Problem("manifest", MANIFEST_NAME, "translated spec has no identity")]
        expected = translated_hash(identity)
    else:
        try:
            spec = DatasetSpec.model_validate(manifest.spec)
        except ValidationError as exc:
            detail = f"spec does not validate: {exc.errors()[0]['msg']}"
            return [Problem("manifest", MANIFEST_NAME, detail)]
        expected = simulated_hash(manifest.seed, manifest.name, spec)
    problems = []
    if manifest.hash != expected:
        detail = f"records hash {manifest.hash}, its spec hashes to {expected}"
        problems.append(Problem("manifest", MANIFEST_NAME, detail))
    if directory.name != f"{manifest.name}-{manifest.hash}":
        detail = f"directory is not named {manifest.name}-{manifest.hash}"
        problems.append(Problem("manifest", MANIFEST_NAME, detail))
    return problems


def verify(dataset_dir: str | os.PathLike[str]) -> VerifyReport:
    """Check a dataset directory against its manifest.

    Parameters
    ----------
    dataset_dir : path
        A directory written by :func:`hpcbench.datasets.generate`.

    Returns
    -------
    VerifyReport
        ``ok`` when the manifest is consistent with its spec and directory name, every
        shard the spec calls for is recorded with the right rows, size and SHA-256, and
        no other ``shard-*.parquet`` file is present.
    """
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such dataset directory")
    try:
        manifest = read_manifest(directory)
    except ManifestError as exc:
        return VerifyReport(directory, 0, 0, [Problem("manifest", MANIFEST_NAME, str(exc))])
    problems = _spec_problems(directory, manifest)
    layout = manifest.layout
    shards_ok = rows_ok = 0
    problems_by_shard = check_shards(directory, manifest, layout)
    for first, rows in layout:
        problem = problems_by_shard[first]
        if problem is None:
            shards_ok += 1
            rows_ok += rows
        elif problem in ("file missing", "not in the manifest"):
            problems.append(Problem("missing", shard_name(first), problem))
        else:
            problems.append(Problem("damaged", shard_name(first), problem))
    problems += [
        Problem("extra", name, "not part of this dataset (readers of the folder would see it)")
        for name in stray_files(directory, layout)
    ]
    return VerifyReport(directory, shards_ok, rows_ok, problems)


def stray_files(directory: Path, layout: list[tuple[int, int]]) -> list[str]:
    """Names in ``directory`` that are neither a shard of ``layout`` nor a known sidecar.

    ``pyarrow.parquet.read_table(directory)`` and ``ray.data.read_parquet`` read every
    visible file of a folder: a foreign ``part-0.parquet`` would join the dataset and a
    ``stray.tmp`` would fail the read.
    """
    expected = {shard_name(first) for first, _ in layout} | SIDECARS
    return sorted(path.name for path in directory.iterdir() if path.name not in expected)


def _stamps(directory: Path) -> dict[str, list[int]]:
    return {
        path.name: [stat.st_size, stat.st_mtime_ns]
        for path in sorted(directory.iterdir())
        if path.name != VERIFIED_NAME and (stat := path.stat())
    }


def verify_cached(dataset_dir: str | os.PathLike[str]) -> VerifyReport:
    """:func:`verify`, skipped when no file changed since the last clean verify.

    A clean report records every file's size and modification time in
    ``_verified.json``; while they all match, the dataset is taken as verified without
    re-reading its shards (a re-run of a large study does not re-hash gigabytes). Any
    write to a shard changes its mtime and brings the full check back.
    """
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such dataset directory")
    stamps = _stamps(directory)
    record = directory / VERIFIED_NAME
    try:
        cached = json.loads(record.read_text(encoding="utf-8"))
        if cached["files"] == stamps:
            return VerifyReport(directory, int(cached["shards"]), int(cached["rows"]), [])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    report = verify(directory)
    if report.ok:
        payload = {"files": stamps, "shards": report.shards_ok, "rows": report.rows_ok}
        with contextlib.suppress(OSError):  # a read-only dataset is verified each time
            write_atomic(record, json.dumps(payload, indent=1).encode())
    return report
