"""Loading a study file: YAML → :class:`~hpcbench.study.Study`, every problem one line.

A study file is YAML read with :func:`yaml.safe_load` (no Python tags) into
:class:`~hpcbench.study.Study`. Every model forbids unknown keys and is frozen.
:func:`load_study` turns every problem into one line ``file: path.to.field: message``
and raises :class:`StudyError` carrying them, before anything is created or Ray is
started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpcbench.study.root import Study

__all__ = ["StudyError", "load_study", "validate_study_data"]


class StudyError(Exception):
    """A study file is invalid; ``lines`` holds one ``file: field: message`` per problem."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


_TAGS = {"structure": {"mx2", "graphene"}, "simulation": {"incoherent", "multislice"}}
_MODEL_TAGS = {"fcn", "unet", "resnet_unet"}

_PARAM_TAGS = {"value", "range", "choices"}

_MESSAGES: dict[str, str] = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required",
    "extra_forbidden": "unknown key",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "literal_error": "must be one of {expected}",
    "finite_number": "must be a finite number",
}


def _location(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        text = str(item)
        if parts and parts[-1] in _TAGS and text in _TAGS[parts[-1]]:
            continue  # the discriminated-union branch, not a key the user wrote
        if len(parts) >= 2 and parts[-2] == "models" and text in _MODEL_TAGS:
            continue  # the architecture branch of a named model
        if text in _PARAM_TAGS or text.startswith(("function-", "nullable[")):
            continue  # a union member tried by pydantic, not a key the user wrote
        if parts and text == "[key]":
            continue
        parts.append(text)
    return ".".join(parts) or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    template = _MESSAGES.get(error["type"])
    if template is not None:
        try:
            return template.format(**ctx)
        except KeyError:
            pass
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _format_errors(source: str, exc: ValidationError) -> list[str]:
    lines: dict[str, None] = {}
    for error in exc.errors():
        loc = error["loc"]
        # A value that may be a number, a list or a range fails as each of them; report
        # the first failure per location only, so one mistake gives one line.
        location = _location(loc)
        if any(line.startswith(f"{source}: {location}: ") for line in lines):
            continue
        message = _message(error)
        if location == "(top level)" and re.match(r"^train[.:]", message):
            lines[f"{source}: {message}"] = None  # a cross-section check names its field
            continue
        lines[f"{source}: {location}: {message}"] = None
    return list(lines)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_study_data(
    data: Any, *, source: str = "<study>", smoke: bool = False, base_dir: Path | None = None
) -> Study:
    """Validate an already-parsed study mapping; see :func:`load_study`.

    ``base_dir`` is the folder relative ``imports`` paths are resolved against (the
    study file's), and then each must exist; without it they stay as written
    (relative to the working directory) and are not checked.
    """
    study = _validate(data, source=source, smoke=smoke)
    if base_dir is None or not study.imports:
        return study
    imports = {name: spec.resolved(base_dir) for name, spec in study.imports.items()}
    study = study.model_copy(update={"imports": imports})
    missing = [
        f"{source}: imports.{name}.{field}: no such {kind} {value}"
        for name, spec in study.imports.items()
        for field, kind, exists in (
            ("path", "folder", Path.is_dir),
            ("labels", "folder", Path.is_dir),
            ("pairs", "file", Path.is_file),
        )
        if (value := getattr(spec, field)) is not None and not exists(Path(value))
    ]
    if missing:
        raise StudyError(missing)
    return study


def _validate(data: Any, *, source: str, smoke: bool) -> Study:
    if data is None:
        raise StudyError([f"{source}: (top level): empty study file"])
    if not isinstance(data, Mapping):
        raise StudyError([f"{source}: (top level): must be a mapping of keys to values"])
    try:
        study = Study.model_validate(data)
    except ValidationError as exc:
        raise StudyError(_format_errors(source, exc)) from None
    if study.smoke is not None:
        # The smoke block must itself give a valid study, whether or not it is used now.
        merged = _deep_merge({k: v for k, v in data.items() if k != "smoke"}, study.smoke)
        try:
            smoked = Study.model_validate(merged)
        except ValidationError as exc:
            errors = _format_errors(source, exc)
            raise StudyError([line.replace(": ", ": smoke.", 1) for line in errors]) from None
        if smoke:
            return smoked
    return study


class _UniqueKeyLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that rejects a key given twice in one mapping.

    PyYAML keeps the last value silently: ``dose: 1e4`` then ``dose: 1e6`` in one
    section would run a different study than the one the reader sees.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (line {seen[key]} and line {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_study(path: str | Path, *, smoke: bool = False) -> Study:
    """Read and validate a study file.

    Parameters
    ----------
    path : str or Path
        YAML study file.
    smoke : bool
        Merge the file's ``smoke:`` block over it (a tiny version of the study).

    Raises
    ------
    StudyError
        With one ``file: path.to.field: message`` line per problem.
    """
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError([f"{path}: (top level): no such file"]) from None
    except IsADirectoryError:
        raise StudyError([f"{path}: (top level): is a directory, not a study file"]) from None
    except UnicodeDecodeError:
        raise StudyError([f"{source}: (top level): not UTF-8 text"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python tags
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        first = str(problem).splitlines()[0]
        raise StudyError([f"{source}: (top level): not valid YAML{where}: {first}"]) from None
    return validate_study_data(data, source=source, smoke=smoke, base_dir=path.resolve().parent)
