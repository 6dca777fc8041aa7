"""The base of every study model and the names a study file uses (slugs, relative paths)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

__all__ = ["RelativePath", "Slug", "Spec"]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class Spec(BaseModel):
    """A part of a study file: unknown keys are errors and values never change.

    Numbers must be finite: ``.nan``, ``.inf`` or ``"inf"`` (a dose, a size) fail here,
    at ``validate``, not inside a worker later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            f"{value!r} must be 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def _relative_path(value: str) -> str:
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r} must be relative to the output root")
    if ".." in path.parts:
        raise ValueError(f"{value!r} escapes the output root")
    if not path.parts:
        raise ValueError("must not be empty")
    return str(path)


Slug = Annotated[str, AfterValidator(_slug)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
