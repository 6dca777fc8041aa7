"""Per-sample parameters: a fixed value, a list of choices or a range, and their bounds.

Parameters that may vary per sample (defect counts, rotations, dose, noise) accept a
fixed value, a list of choices, or a range ``{min, max, log}``; :func:`sample_param`
draws from any of them with a caller's generator. :func:`at_least` and :func:`at_most`
check the bounds of every value a parameter can take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

import numpy as np
from pydantic import AfterValidator, Discriminator, Field, Tag, model_validator

from hpcbench.study._base import Spec

__all__ = [
    "FloatParam",
    "IntParam",
    "IntRange",
    "NonNegativeFloat",
    "NonNegativeIntParam",
    "NonNegativeParam",
    "PositiveFloat",
    "PositiveParam",
    "Probability",
    "Range",
    "at_least",
    "at_most",
    "sample_param",
]


class Range(Spec):
    """A continuous range sampled uniformly, or log-uniformly when ``log`` is true."""

    min: float
    max: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) must be <= max ({self.max:g})")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self


class IntRange(Spec):
    """An integer range ``[min, max]`` (both inclusive) sampled uniformly."""

    min: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


def _param_tag(value: Any) -> str:
    if isinstance(value, Mapping | Range | IntRange):
        return "range"
    if isinstance(value, list | tuple):
        return "choices"
    return "value"


_PARAM_ERROR = {
    "custom_error_type": "invalid_param",
    "custom_error_message": "must be a number, a list of choices or {min, max}",
}

FloatParam = Annotated[
    Annotated[float, Tag("value")]
    | Annotated[Range, Tag("range")]
    | Annotated[list[float], Field(min_length=1), Tag("choices")],
    Discriminator(_param_tag, **_PARAM_ERROR),
]
IntParam = Annotated[
    Annotated[int, Tag("value")]
    | Annotated[IntRange, Tag("range")]
    | Annotated[list[int], Field(min_length=1), Tag("choices")],
    Discriminator(_param_tag, **_PARAM_ERROR),
]


def _bounds(param: FloatParam | IntParam) -> tuple[float, float]:
    if isinstance(param, Range | IntRange):
        return float(param.min), float(param.max)
    if isinstance(param, list):
        return float(min(param)), float(max(param))
    return float(param), float(param)


def at_least(low: float, *, strict: bool = False) -> Any:
    """A validator: every value the parameter can take is >= ``low`` (> with ``strict``)."""
    op = ">" if strict else ">="

    def check(param: Any) -> Any:
        if param is None:
            return param
        smallest, _ = _bounds(param)
        if smallest < low or (strict and smallest == low):
            raise ValueError(f"must be {op} {low:g}")
        return param

    return AfterValidator(check)


def at_most(high: float) -> Any:
    """A validator: every value the parameter can take is <= ``high``."""

    def check(param: Any) -> Any:
        if param is None:
            return param
        _, largest = _bounds(param)
        if largest > high:
            raise ValueError(f"must be <= {high:g}")
        return param

    return AfterValidator(check)


PositiveFloat = Annotated[float, at_least(0.0, strict=True)]
NonNegativeFloat = Annotated[float, at_least(0.0)]
NonNegativeParam = Annotated[FloatParam, at_least(0.0)]
PositiveParam = Annotated[FloatParam, at_least(0.0, strict=True)]
NonNegativeIntParam = Annotated[IntParam, at_least(0.0)]
Probability = Annotated[float, at_least(0.0), at_most(1.0)]


def sample_param(param: FloatParam | IntParam, rng: np.random.Generator) -> float:
    """Draw one value of a per-sample parameter.

    Parameters
    ----------
    param : float, int, list or Range/IntRange
        A fixed value (returned as is, no draw), a list of choices (uniform), a
        :class:`Range` (uniform, or log-uniform) or an :class:`IntRange` (inclusive).
    rng : numpy.random.Generator
        The caller's generator.
    """
    if isinstance(param, Range):
        if param.log:
            return float(np.exp(rng.uniform(np.log(param.min), np.log(param.max))))
        return float(rng.uniform(param.min, param.max))
    if isinstance(param, IntRange):
        return float(rng.integers(param.min, param.max, endpoint=True))
    if isinstance(param, list):
        return float(param[int(rng.integers(len(param)))])
    return float(param)
