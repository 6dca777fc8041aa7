"""Figures of a statistical ablation report, as PNG bytes.

Every figure is drawn with matplotlib's object-oriented API (a
:class:`matplotlib.figure.Figure` on its own Agg canvas, never pyplot's global state)
and saved at a fixed resolution without the ``Software`` metadata key, so the same
runs give the same bytes. Random jitter comes from ``numpy.random.default_rng(seed)``;
the global random state is never touched.

The functions take the run table of :mod:`hpcbench.report.aggregate`: one row per
trained model with one column per ablation axis (``model``, ``dose``, ``train_size``,
``classes``, ``n_classes``, ``dataset``, ``learning_rate``) and metric columns named
``test/<set>/<metric>`` (or ``heldout/<metric>``). A missing ``dose`` (NaN) means the
dataset's own noise and is shown as ``stored``.

Public functions
----------------
:func:`box_strip`
    Box plot per level of an axis with the individual runs as a jittered strip.
:func:`metric_vs`
    A metric against a numeric axis: runs, level means with the 95 % bootstrap CI of
    the mean that the report's tables give (:func:`level_summaries`), fitted curves.
:func:`per_epoch`
    A metric per epoch, one line per run (e.g. CycleGAN validation FID), raw dashed.
:func:`image_grid`
    Existing PNGs (e.g. example predictions) composed into one titled grid.
:func:`metric_label`, :func:`level_label`
    Readable names of metric columns and axis levels (also used for table headers).
:func:`metric_range`, :func:`fill_metric_unit`
    The range a metric can take (F1 in [0, 1], localisation error >= 0) and its unit.

Runs flagged in the ``degenerate`` column (networks that found no defect pixel, see
:func:`hpcbench.report.aggregate.degenerate_runs`) are drawn as crosses, so a reader sees
which points are collapsed trainings rather than noisy ones.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any, Protocol

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory
from numpy.typing import ArrayLike, NDArray

from hpcbench.report.statistics import summarize

__all__ = [
    "DPI",
    "Fit",
    "box_strip",
    "fill_metric_unit",
    "image_grid",
    "level_label",
    "level_summaries",
    "metric_label",
    "metric_range",
    "metric_vs",
    "per_epoch",
]

#: Resolution every figure is saved at (dots per inch).
DPI = 120

# Readable metric names; units in brackets. Unknown names get underscores as spaces.
METRIC_NAMES: dict[str, str] = {
    "f1": "F1",
    "intersection_over_union": "IoU",
    "precision": "precision",
    "recall": "recall",
    "detection_f1": "detection F1",
    "detection_precision": "detection precision",
    "detection_recall": "detection recall",
    "localisation_error": "localisation error [pm]",
}

# Range of each metric: scores are fractions, the localisation error a distance [pm].
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **{
        name: (0.0, 1.0)
        for name in (
            "f1",
            "intersection_over_union",
            "precision",
            "recall",
            "detection_f1",
            "detection_precision",
            "detection_recall",
        )
    },
    "localisation_error": (0.0, math.inf),
}

# Units of metrics that have one (the others are fractions, unit 1).
METRIC_UNITS: dict[str, str] = {"localisation_error": "pm"}

# Axis titles (x labels, legend titles).
AXIS_NAMES: dict[str, str] = {
    "model": "model",
    "dose": "electron dose [e/Å²]",
    "train_size": "training set size [images]",
    "classes": "classes",
    "n_classes": "number of classes",
    "dataset": "dataset",
    "learning_rate": "learning rate",
}

# Units of the numeric axes (for fit parameters measured in units of the axis).
AXIS_UNITS: dict[str, str] = {"dose": "e/Å²", "train_size": "images"}

# Fit parameters written as Greek letters (or with subscripts) in legends.
GREEK: dict[str, str] = {
    "F_inf": "F∞",
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "lambda": "λ",
    "mu": "μ",
    "sigma": "σ",
    "tau": "τ",
}

# Parameters that are a scale of the x axis (a dose or a size), shown with its unit
# unless the fit names units itself (an optional ``units`` mapping on the fit object).
X_SCALE_PARAMS = frozenset({"alpha", "α", "tau", "τ", "x0", "x_0", "scale"})

STORED = "stored"

#: Run-table column flagging degenerate runs (see hpcbench.report.aggregate).
DEGENERATE = "degenerate"

#: Legend entry of a degenerate run's marker.
DEGENERATE_LABEL = "degenerate run (no defect pixel found)"

#: Confidence of the level intervals drawn as error bars (as in the tables).
CONFIDENCE = 0.95

_BOX_WIDTH = 0.8

# Characters per line of the legend's explanatory entries (x-small font).
_LEGEND_WIDTH = 34


class Fit(Protocol):
    """A fitted curve of a metric against a numeric axis (e.g. a dose–response fit).

    Attributes
    ----------
    model : str
        Name of the fitted model (e.g. ``"exponential"``).
    params : dict of str to float
        Best-fit parameter values by name.
    stderr : dict of str to float
        Standard errors of the parameters by name (NaN where unknown).
    formula : str
        The model as a readable formula, e.g. ``"D = D0 + A·exp(−B/α)"``.
    r_squared : float
        Coefficient of determination of the fit.
    n : int
        Number of runs the fit used.

    A fit may also carry ``variables`` (name → meaning [unit], the abscissa included)
    and ``constraints`` (parameter → the bound it was fitted under), as
    :class:`hpcbench.report.statistics.FitResult` does; :func:`metric_vs` then defines
    them in its legend.
    """

    @property
    def model(self) -> str: ...  # noqa: D102

    @property
    def params(self) -> dict[str, float]: ...  # noqa: D102

    @property
    def stderr(self) -> dict[str, float]: ...  # noqa: D102

    @property
    def formula(self) -> str: ...  # noqa: D102

    @property
    def r_squared(self) -> float: ...  # noqa: D102

    @property
    def n(self) -> int: ...  # noqa: D102

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """Evaluate the fitted curve at ``x``."""
        ...


# --------------------------------------------------------------------------- labels


def metric_label(metric: str) -> str:
    """Readable label of a metric column.

    Parameters
    ----------
    metric : str
        Column name: ``<split>/<set>/<metric>`` (e.g. ``test/wse2-incoherent/f1``),
        ``heldout/<metric>`` or a bare metric name.

    Returns
    -------
    str
        E.g. ``"F1 (test: wse2-incoherent)"``, ``"IoU (held-out)"``, ``"detection F1"``.

    Examples
    --------
    >>> metric_label("test/wse2-haadf/intersection_over_union")
    'IoU (test: wse2-haadf)'
    >>> metric_label("heldout/localisation_error")
    'localisation error [pm] (held-out)'
    """
    parts = metric.split("/")
    name = METRIC_NAMES.get(parts[-1], parts[-1].replace("_", " "))
    if len(parts) == 1:
        return name
    split = parts[0]
    if split == "heldout":
        split = "held-out"
    if len(parts) == 2:
        return f"{name} ({split})"
    return f"{name} ({split}: {'/'.join(parts[1:-1])})"


def level_label(axis: str, value: Any) -> str:
    """Readable label of one level of an ablation axis.

    Parameters
    ----------
    axis : str
        Axis column name (``dose``, ``train_size``, ``model``, ...).
    value : Any
        The level.

    Returns
    -------
    str
        Doses in short scientific notation (``1e4``, ``2.5e5``; a missing dose is
        ``stored``, the dataset's own noise), integers as digits (``1000``), learning
        rates as ``1e-3``, strings unchanged; any other missing value is ``n/a``.

    Examples
    --------
    >>> level_label("dose", 10000.0), level_label("dose", float("nan"))
    ('1e4', 'stored')
    >>> level_label("learning_rate", 0.001), level_label("train_size", 500)
    ('1e-3', '500')
    """
    if _is_missing(value):
        return STORED if axis == "dose" else "n/a"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if axis in ("dose", "learning_rate"):
            return _short_number(number, always_scientific=True)
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return _short_number(number)
    return str(value)


def axis_label(axis: str) -> str:
    """Readable title of an ablation axis (with its unit), e.g. ``electron dose [e/Å²]``."""
    return AXIS_NAMES.get(axis, axis.replace("_", " "))


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric column can take.

    Parameters
    ----------
    metric : str
        Column name (``test/<set>/<metric>``, ``heldout/<metric>``) or bare metric name.

    Returns
    -------
    tuple of float
        ``(0, 1)`` for F1, IoU, precision and recall (pixel or detection), ``(0, inf)``
        for the localisation error, ``(-inf, inf)`` for anything else.

    Examples
    --------
    >>> metric_range("heldout/f1"), metric_range("test/x/localisation_error")
    ((0.0, 1.0), (0.0, inf))
    """
    return METRIC_RANGES.get(metric.split("/")[-1], (-math.inf, math.inf))


def fill_metric_unit(text: str, metric: str, *, dimensionless: str = "1") -> str:
    """Replace ``metric unit`` in ``text`` (a fit variable's description) by the unit.

    Parameters
    ----------
    text : str
        E.g. ``"value as B → ∞ [metric unit]"`` or ``"amplitude [metric unit·images^b]"``.
    metric : str
        The fitted metric column.
    dimensionless : str, default ``"1"``
        What a unitless metric's unit reads as; ``""`` drops a bracket that would hold
        only it (``[metric unit]``) and the factor from a product.

    Returns
    -------
    str
        E.g. ``"value as B → ∞ [1]"``, or ``"value as B → ∞"`` with ``dimensionless=""``.
    """
    unit = METRIC_UNITS.get(metric.split("/")[-1], dimensionless)
    if unit:
        return text.replace("metric unit", unit)
    for pattern in ("metric unit·", " [metric unit]", "metric unit"):
        text = text.replace(pattern, "")
    return text


def _short_number(value: float, *, digits: int = 3, always_scientific: bool = False) -> str:
    """Format a number compactly: ``1e4``, ``2.5e5``, ``0.85``, ``1e-3``."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if always_scientific or exponent >= 4 or exponent <= -3:
        mantissa = round(value / 10.0**exponent, digits - 1)
        if abs(mantissa) >= 10:
            mantissa /= 10
            exponent += 1
        return f"{mantissa:g}e{exponent}" if exponent != 0 else f"{mantissa:g}"
    return f"{value:.{digits}g}"


def _value_pm(value: float, error: float) -> str:
    """Format ``value ± error`` with the error to one significant digit.

    Large and small values share the exponent of the value, e.g. ``3.1e5 ± 0.4e5``.
    """
    if not math.isfinite(value):
        return str(value)
    if not (math.isfinite(error) and error > 0):
        return _short_number(value)
    if error > 10 * abs(value):  # unconstrained: both to three digits, e.g. 681 ± 1.54e7
        return f"{_short_number(value)} ± {_short_number(error)}"
    exponent = 0 if value == 0 else math.floor(math.log10(abs(value)))
    scale = 1.0
    suffix = ""
    if exponent >= 4 or exponent <= -3:
        scale = 10.0**exponent
        suffix = f"e{exponent}"
    scaled_error = error / scale
    decimals = min(max(-math.floor(math.log10(scaled_error)), 0), 4)
    return f"{value / scale:.{decimals}f}{suffix} ± {scaled_error:.{decimals}f}{suffix}"


def _param_name(name: str) -> str:
    return GREEK.get(name, name)


def _fit_legend(fit: Fit, axis: str, prefix: str = "") -> str:
    """Legend text of a fit: formula, parameters ± standard errors, R² and n."""
    units: Mapping[str, str] = getattr(fit, "units", None) or {}
    lines = [f"{prefix}{fit.formula}"]
    for name, value in fit.params.items():
        unit = units.get(name)
        if unit is None and name in X_SCALE_PARAMS:
            unit = AXIS_UNITS.get(axis)
        text = f"{_param_name(name)} = {_value_pm(value, fit.stderr.get(name, math.nan))}"
        lines.append(f"{text} {unit}" if unit else text)
    lines.append(f"R² = {fit.r_squared:.3f}, n = {fit.n}")
    return "\n".join(lines)


def _fit_definitions(fit: Fit, metric: str) -> str:
    """Legend text defining a fit's variables and bounds (when the fit names them)."""
    variables: Mapping[str, str] = getattr(fit, "variables", None) or {}
    constraints: Mapping[str, str] = getattr(fit, "constraints", None) or {}
    entries = [
        f"{_param_name(name)}: {fill_metric_unit(text, metric, dimensionless='')}"
        for name, text in variables.items()
    ]
    # Wrapped to about the width of the fit entries, so the legend leaves the axes room.
    lines = [textwrap.fill(e, width=_LEGEND_WIDTH, subsequent_indent="  ") for e in entries]
    if constraints:
        lines.append("fit bounds:")
        lines += [f"  {text}" for text in dict.fromkeys(constraints.values())]
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _sort_key(value: Any) -> tuple[int, float, str]:
    """Natural order: numbers ascending, then strings alphabetically, missing last."""
    if _is_missing(value):
        return (2, 0.0, "")
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    ):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _levels(runs: pd.DataFrame, column: str, order: Sequence[Any] | None = None) -> list[Any]:
    """Levels of ``column`` in natural order (or ``order``), one missing level at most."""
    if order is not None:
        return list(order)
    levels: list[Any] = []
    missing = False
    for value in runs[column].tolist():
        if _is_missing(value):
            missing = True
        elif value not in levels:
            levels.append(value)
    levels.sort(key=_sort_key)
    if missing:
        levels.append(math.nan)
    return levels


def _mask(runs: pd.DataFrame, column: str, level: Any) -> NDArray[np.bool_]:
    values = runs[column]
    if _is_missing(level) or (column == "dose" and level == STORED):
        return np.asarray(values.isna(), dtype=bool)
    return np.asarray(values == level, dtype=bool)


def _check_columns(runs: pd.DataFrame, *columns: str | None) -> None:
    missing = [c for c in columns if c is not None and c not in runs.columns]
    if missing:
        raise KeyError(f"run table has no column {', '.join(map(repr, missing))}")


def _metric_values(runs: pd.DataFrame, metric: str) -> NDArray[np.float64]:
    return np.asarray(pd.to_numeric(runs[metric], errors="coerce"), dtype=np.float64)


def _colour(index: int) -> str:
    return f"C{index % 10}"


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    """Save ``figure`` as PNG bytes at :data:`DPI` without time or version metadata."""
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _flags(runs: pd.DataFrame, column: str | None) -> NDArray[np.bool_]:
    """The degenerate-run flags of ``runs`` (all False without the column)."""
    if column is None or column not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    return np.asarray(runs[column].fillna(False).astype(bool), dtype=bool)


def _degenerate_handle(label: str) -> Line2D:
    return Line2D([], [], marker="x", linestyle="none", color="0.25", markersize=6, label=label)


# --------------------------------------------------------------------------- box plot


def _build_box_strip(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    hue: str | None = None,
    order: Sequence[Any] | None = None,
    seed: int = 0,
    title: str | None = None,
    degenerate: str | None = DEGENERATE,
    degenerate_label: str = DEGENERATE_LABEL,
) -> Figure:
    """Draw :func:`box_strip`'s figure and return it (unsaved)."""
    _check_columns(runs, axis, metric, hue)
    if hue == axis:
        raise ValueError(f"hue must differ from the axis ({axis!r})")
    levels = _levels(runs, axis, order)
    hues: list[Any] = _levels(runs, hue) if hue is not None else [None]
    values = _metric_values(runs, metric)
    flags = _flags(runs, degenerate)
    any_degenerate = False
    rng = np.random.default_rng(seed)

    n_hues = len(hues)
    width = _BOX_WIDTH / n_hues
    figure = _new_figure(max(4.0, 1.0 + 0.9 * len(levels) * max(1.0, 0.6 * n_hues)), 4.2)
    ax = figure.add_subplot()
    below = blended_transform_factory(ax.transData, ax.transAxes)

    tick_labels = []
    for i, level in enumerate(levels):
        level_mask = _mask(runs, axis, level)
        total = 0
        for j, hue_level in enumerate(hues):
            mask = level_mask if hue is None else level_mask & _mask(runs, hue, hue_level)
            data, bad = values[mask], flags[mask]
            bad = bad[np.isfinite(data)]
            data = data[np.isfinite(data)]
            total += data.size
            position = i + (j - (n_hues - 1) / 2) * width
            if hue is not None:
                ax.text(
                    position,
                    0.01,
                    f"n={data.size}",
                    transform=below,
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                    color="0.3",
                )
            if data.size == 0:
                continue
            colour = _colour(j)
            ax.boxplot(
                [data],
                positions=[position],
                widths=0.8 * width,
                patch_artist=True,
                showfliers=False,
                manage_ticks=False,
                boxprops={"facecolor": colour, "alpha": 0.3, "edgecolor": colour},
                medianprops={"color": colour, "linewidth": 1.5},
                whiskerprops={"color": colour},
                capprops={"color": colour},
            )
            jitter = rng.uniform(-0.25 * width, 0.25 * width, data.size)
            ax.scatter(
                position + jitter[~bad],
                data[~bad],
                s=14,
                color=colour,
                edgecolors="white",
                linewidths=0.4,
                zorder=3,
            )
            if bad.any():
                any_degenerate = True
                ax.scatter(
                    position + jitter[bad], data[bad], s=30, marker="x", color=colour, zorder=4
                )
        label = level_label(axis, level)
        tick_labels.append(label if hue is not None else f"{label}\nn={total}")

    ax.set_xticks(range(len(levels)), tick_labels)
    ax.set_xlim(-0.6, len(levels) - 0.4)
    ax.set_xlabel(axis_label(axis))
    ax.set_ylabel(metric_label(metric))
    handles: list[Any] = []
    if hue is not None:
        ax.margins(y=0.12)
        handles = [
            Patch(facecolor=_colour(j), edgecolor=_colour(j), alpha=0.5, label=level_label(hue, h))
            for j, h in enumerate(hues)
        ]
    if any_degenerate:
        handles.append(_degenerate_handle(degenerate_label))
    if handles:
        title_text = axis_label(hue) if hue is not None else None
        ax.legend(handles=handles, title=title_text, fontsize="small", loc="best")
    if not np.isfinite(values).any():
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center")
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return figure


def box_strip(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    hue: str | None = None,
    order: Sequence[Any] | None = None,
    seed: int = 0,
    title: str | None = None,
    degenerate: str | None = DEGENERATE,
    degenerate_label: str = DEGENERATE_LABEL,
) -> bytes:
    r"""Box plot of a metric per level of an axis, with every run as a jittered point.

    Boxes span the quartiles with a line at the median; whiskers reach the furthest run
    within 1.5 IQR of the box (matplotlib's default); runs flagged in ``degenerate``
    are crosses (with a legend entry), the others dots.

    Parameters
    ----------
    runs : pandas.DataFrame
        Run table (one row per trained model).
    axis : str
        Axis column whose levels are the boxes.
    metric : str
        Metric column (``test/<set>/<metric>``); NaN values are left out.
    hue : str, optional
        Second axis column: side-by-side boxes per level of it, with a legend and the
        number of runs written under each box.
    order : sequence, optional
        Levels of ``axis`` to show, in this order (a level without runs gets an empty
        slot). By default the levels present, numbers ascending then strings
        alphabetically, a missing dose (``stored``) last.
    seed : int, default 0
        Seed of the horizontal jitter of the points.
    title : str, optional
        Figure title.
    degenerate : str or None, default ``"degenerate"``
        Boolean column flagging degenerate runs; None (or a missing column) marks none.
    degenerate_label : str
        Legend entry of the degenerate runs' crosses.

    Returns
    -------
    bytes
        The PNG. Without ``hue`` the tick labels carry the run counts (``1e4\nn=5``).

    Raises
    ------
    KeyError
        A named column is missing from ``runs``.
    ValueError
        ``hue`` equals ``axis``.
    """
    return _png(
        _build_box_strip(
            runs,
            axis,
            metric,
            hue=hue,
            order=order,
            seed=seed,
            title=title,
            degenerate=degenerate,
            degenerate_label=degenerate_label,
        )
    )


# --------------------------------------------------------------------------- metric vs axis


def _default_log_x(axis: str, x: NDArray[np.float64]) -> bool:
    if axis == "dose":
        return True
    positive = x[np.isfinite(x) & (x > 0)]
    if axis == "train_size" and positive.size:
        return bool(positive.max() > 10 * positive.min())
    return False


def level_summaries(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    hue: str | None = None,
    seed: int = 0,
    value_range: tuple[float, float] | None = None,
    degenerate: str | None = DEGENERATE,
) -> pd.DataFrame:
    """The level means and intervals :func:`metric_vs` draws, as a table.

    Per level of ``hue`` (if given) and per distinct finite value of ``axis``, the runs
    with a finite metric are summarised by :func:`hpcbench.report.statistics.summarize`
    with ``seed``: the function, seed, run order and 95 % coverage the report's tables
    use, so the same runs give the same numbers here as in ``tables/<axis>.csv`` (no
    hue) or ``tables/<axis>-by-<hue>.csv``. The interval is the percentile bootstrap of
    the mean; it lies within the runs' range, so clipping it to ``value_range`` only
    guards against metric values outside their range. With n <= 3 runs it is the range
    of the runs itself (e.g. n = 2: ``(min, max)``).

    Parameters
    ----------
    runs : pandas.DataFrame
        Run table (one row per trained model).
    axis : str
        Numeric axis column; runs without a finite value are left out.
    metric : str
        Metric column; NaN values are left out.
    hue : str, optional
        Column splitting the runs (e.g. ``model``).
    seed : int, default 0
        Seed of the bootstrap.
    value_range : tuple of float, optional
        Range the interval is clipped to [metric unit]; default :func:`metric_range`.
    degenerate : str or None, default ``"degenerate"``
        Boolean column flagging degenerate runs, counted per point.

    Returns
    -------
    pandas.DataFrame
        Columns ``[hue,] level, n, degenerate, mean, ci_low, ci_high``; one row per
        point with at least one finite run, hue levels in natural order, levels
        ascending.

    Raises
    ------
    KeyError
        A named column is missing from ``runs``.
    """
    _check_columns(runs, axis, metric, hue)
    low, high = value_range if value_range is not None else metric_range(metric)
    x = np.asarray(pd.to_numeric(runs[axis], errors="coerce"), dtype=np.float64)
    y = _metric_values(runs, metric)
    flags = _flags(runs, degenerate)
    usable = np.isfinite(x) & np.isfinite(y)
    hues: list[Any] = _levels(runs, hue) if hue is not None else [None]
    rows: list[dict[str, Any]] = []
    for hue_level in hues:
        mask = usable if hue is None else usable & _mask(runs, hue, hue_level)
        groups = {float(level): y[mask & (x == level)] for level in np.unique(x[mask])}
        for summary in summarize(groups, seed=seed, confidence=CONFIDENCE):
            row: dict[str, Any] = {} if hue is None else {hue: hue_level}
            row.update(
                level=summary.level,
                n=summary.n,
                degenerate=int(np.count_nonzero(flags[mask & (x == summary.level)])),
                mean=summary.mean,
                ci_low=float(np.clip(summary.ci_low, low, high)),
                ci_high=float(np.clip(summary.ci_high, low, high)),
            )
            rows.append(row)
    columns = [*([hue] if hue is not None else []), "level", "n", "degenerate"]
    return pd.DataFrame(rows, columns=[*columns, "mean", "ci_low", "ci_high"])


def _count_text(counts: Sequence[int]) -> str:
    """``"2"`` or ``"2–5"``: the range of runs per point."""
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}–{high}"


def _build_metric_vs(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    fit: Fit | None = None,
    fits: Mapping[Any, Fit | None] | None = None,
    hue: str | None = None,
    log_x: bool | None = None,
    seed: int = 0,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
    degenerate: str | None = DEGENERATE,
    degenerate_label: str = DEGENERATE_LABEL,
) -> Figure:
    """Draw :func:`metric_vs`'s figure and return it (unsaved)."""
    _check_columns(runs, axis, metric, hue)
    if hue == axis:
        raise ValueError(f"hue must differ from the axis ({axis!r})")
    if fits is not None and hue is None:
        raise ValueError("fits (one per hue level) needs hue")
    low_value, high_value = value_range if value_range is not None else metric_range(metric)
    x_all = np.asarray(pd.to_numeric(runs[axis], errors="coerce"), dtype=np.float64)
    y_all = _metric_values(runs, metric)
    flags = _flags(runs, degenerate)
    if log_x is None:
        log_x = _default_log_x(axis, x_all)
    placeable = np.isfinite(x_all) & ((x_all > 0) if log_x else True)
    left_out = int(np.count_nonzero(~placeable & np.isfinite(y_all)))
    usable = placeable & np.isfinite(y_all)
    points = level_summaries(
        runs,
        axis,
        metric,
        hue=hue,
        seed=seed,
        value_range=(low_value, high_value),
        degenerate=degenerate,
    )
    if log_x:
        points = points[points["level"] > 0]

    rng = np.random.default_rng(seed)
    figure = _new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    if log_x:
        ax.set_xscale("log")

    x_used = x_all[usable]
    if x_used.size:
        lo, hi = float(x_used.min()), float(x_used.max())
    else:
        lo, hi = (1.0, 10.0) if log_x else (0.0, 1.0)
    if log_x:
        span = math.log10(hi / lo) if hi > lo else 1.0
        jitter_scale = 0.012 * span
    else:
        jitter_scale = 0.012 * (hi - lo if hi > lo else max(abs(hi), 1.0))

    hues: list[Any] = _levels(runs, hue) if hue is not None else [None]
    curves: list[tuple[Fit, str, str]] = []
    handles: list[Any] = []
    bars: Any = None
    counts: list[int] = []
    any_degenerate = False
    for j, hue_level in enumerate(hues):
        colour = _colour(j) if hue is not None else "C0"
        mask = usable if hue is None else usable & _mask(runs, hue, hue_level)
        x, y, bad = x_all[mask], y_all[mask], flags[mask]
        name = level_label(hue, hue_level) if hue is not None else "runs"
        offsets = rng.uniform(-jitter_scale, jitter_scale, x.size)
        x_jittered = x * 10.0**offsets if log_x else x + offsets
        handles.append(
            ax.scatter(
                x_jittered[~bad], y[~bad], s=12, color=colour, alpha=0.45, linewidths=0, label=name
            )
        )
        if bad.any():
            any_degenerate = True
            # Larger than the mean's marker, which sits on them when a whole point collapsed.
            ax.scatter(
                x_jittered[bad], y[bad], s=64, marker="x", color=colour, linewidths=1.5, zorder=5
            )
        part = points if hue is None else points[_mask(points, hue, hue_level)]
        if len(part):
            means = part["mean"].to_numpy(dtype=np.float64)
            below = means - part["ci_low"].to_numpy(dtype=np.float64)
            above = part["ci_high"].to_numpy(dtype=np.float64) - means
            # A single run has no interval (NaN): no bar.
            yerr = np.maximum(np.nan_to_num(np.vstack([below, above]), nan=0.0), 0.0)
            container = ax.errorbar(
                part["level"].to_numpy(dtype=np.float64),
                means,
                yerr=yerr,
                fmt="o",
                color=colour,
                markersize=5,
                markeredgecolor="black",
                markeredgewidth=0.6,
                capsize=3,
                elinewidth=1.2,
                zorder=4,
            )
            bars = bars if bars is not None else container
            counts += part["n"].astype(int).tolist()
        level_fit = fits.get(hue_level) if fits is not None else None
        if level_fit is not None:
            curves.append((level_fit, colour, f"{name}: "))
    if fit is not None:
        curves.append((fit, "black" if hue is not None else "C3", ""))

    if counts:
        label = textwrap.fill(
            f"mean ± {round(CONFIDENCE * 100)} % bootstrap CI of the mean, "
            f"n = {_count_text(counts)} runs per point",
            width=_LEGEND_WIDTH,
        )
        if hue is not None:  # one neutral entry for every colour's bars
            bars = ax.errorbar(
                [], [], yerr=[], fmt="o", color="0.45", markersize=5, markeredgecolor="black"
            )
        handles.append(bars)
        bars.set_label(label)
    if any_degenerate:
        handles.append(_degenerate_handle(textwrap.fill(degenerate_label, width=_LEGEND_WIDTH)))

    if curves:
        if log_x:
            grid = (
                np.geomspace(lo / 1.5, hi * 1.5, 300)
                if hi > lo
                else np.geomspace(lo / 2, lo * 2, 300)
            )
        else:
            pad = 0.05 * (hi - lo) if hi > lo else 1.0
            grid = np.linspace(lo - pad, hi + pad, 300)
        # Only where the curve lies in the metric's range (a bounded dose fit always
        # does; a power law falls without limit towards small sets).
        finite_range = math.isfinite(low_value) and math.isfinite(high_value)
        tolerance = 1e-9 * (max(1.0, high_value - low_value) if finite_range else 1.0)
        for curve_fit, colour, prefix in curves:
            predicted = np.asarray(curve_fit.predict(grid), dtype=np.float64)
            outside = (predicted < low_value - tolerance) | (predicted > high_value + tolerance)
            (line,) = ax.plot(
                grid,
                np.where(outside, np.nan, predicted),
                color=colour,
                linewidth=1.6,
                label=_fit_legend(curve_fit, axis, prefix),
            )
            handles.append(line)
        definitions = _fit_definitions(curves[0][0], metric)
        if definitions:
            handles.append(Line2D([], [], linestyle="none", marker="none", label=definitions))

    ax.set_xlabel(axis_label(axis))
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3)
    if not usable.any():
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center")
    if left_out:
        reason = f"dose {STORED}" if axis == "dose" else "not on the axis"
        ax.text(
            0.99,
            0.01,
            f"{left_out} run(s) not shown ({reason})",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize="x-small",
            color="0.3",
        )
    if handles:
        ax.legend(
            handles=handles,
            fontsize="x-small",
            title=axis_label(hue) if hue is not None else None,
            title_fontsize="x-small",
            # Fit legends are long: beside the axes rather than over the data.
            **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if curves else {"loc": "best"}),
        )
    if title:
        ax.set_title(title)
    return figure


def metric_vs(
    runs: pd.DataFrame,
    axis: str,
    metric: str,
    *,
    fit: Fit | None = None,
    fits: Mapping[Any, Fit | None] | None = None,
    hue: str | None = None,
    log_x: bool | None = None,
    seed: int = 0,
    title: str | None = None,
    value_range: tuple[float, float] | None = None,
    degenerate: str | None = DEGENERATE,
    degenerate_label: str = DEGENERATE_LABEL,
) -> bytes:
    """A metric against a numeric axis: runs, level means with 95 % CIs, fitted curves.

    Each run is a point (with a small horizontal jitter: multiplicative, i.e. in log
    space, on a log axis); degenerate runs are crosses. Each level of the axis (per hue
    level) gets its mean with the 95 % percentile-bootstrap CI of the mean, seeded with
    ``seed`` — exactly the rows of :func:`level_summaries`, which are the report's table
    numbers (no bar for a single run). The legend says so, with the number of runs per
    point. A fit is drawn on a dense grid over the data's range (half a step beyond on
    a log axis) from ``fit.predict``, where it lies within ``value_range``, labelled
    with its formula, parameters ± standard errors, R² and n; a further entry defines
    its variables and bounds when the fit names them (``variables``, ``constraints``
    attributes, as :class:`hpcbench.report.statistics.FitResult` has).

    Parameters
    ----------
    runs : pandas.DataFrame
        Run table (one row per trained model).
    axis : str
        Numeric axis column (``dose``, ``train_size``, ``learning_rate``, ...). Runs
        without a value (a ``stored`` dose), or with a non-positive one on a log axis,
        are left out and counted in a note.
    metric : str
        Metric column; NaN values are left out.
    fit : Fit, optional
        A fit over all runs (drawn in black when ``hue`` is given).
    fits : mapping of hue level to Fit or None, optional
        Per-hue-level fits, drawn in that level's colour; needs ``hue``.
    hue : str, optional
        Axis column that splits the runs into colours.
    log_x : bool, optional
        Logarithmic x axis. Default: on for ``dose``, on for ``train_size`` when its
        levels span more than a factor of 10, off otherwise.
    seed : int, default 0
        Seed of the jitter and of the bootstrap (the report's seed).
    title : str, optional
        Figure title.
    value_range : tuple of float, optional
        The metric's range [metric unit]: bars are clipped to it, curves drawn only
        inside it. Default :func:`metric_range`.
    degenerate : str or None, default ``"degenerate"``
        Boolean column flagging degenerate runs, drawn as crosses; None marks none.
    degenerate_label : str
        Legend entry of the crosses (say whether the fits left them out).

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    KeyError
        A named column is missing from ``runs``.
    ValueError
        ``hue`` equals ``axis``, or ``fits`` without ``hue``.
    """
    return _png(
        _build_metric_vs(
            runs,
            axis,
            metric,
            fit=fit,
            fits=fits,
            hue=hue,
            log_x=log_x,
            seed=seed,
            title=title,
            value_range=value_range,
            degenerate=degenerate,
            degenerate_label=degenerate_label,
        )
    )


# --------------------------------------------------------------------------- image grid


def _build_image_grid(images: Sequence[tuple[str, bytes]], *, columns: int = 2) -> Figure:
    """Draw :func:`image_grid`'s figure and return it (unsaved)."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if not images:
        figure = _new_figure(4.0, 1.2)
        figure.text(0.5, 0.5, "no example predictions", ha="center", va="center")
        return figure
    decoded: list[tuple[str, NDArray[Any] | None]] = []
    for title, data in images:
        try:
            decoded.append((title, np.asarray(imread(BytesIO(data), format="png"))))
        except (OSError, ValueError, SyntaxError):
            decoded.append((title, None))
    columns = min(columns, len(decoded))
    rows = math.ceil(len(decoded) / columns)
    aspects = [img.shape[0] / img.shape[1] for _, img in decoded if img is not None]
    aspect = max(aspects) if aspects else 1.0
    cell = 5.0
    figure = _new_figure(cell * columns, rows * (cell * aspect + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= len(decoded):
            continue
        title, image = decoded[index]
        ax.set_title(title, fontsize="medium")
        if image is None:
            ax.text(0.5, 0.5, "unreadable image", ha="center", va="center")
        else:
            ax.imshow(image)
    return figure


def image_grid(images: Sequence[tuple[str, bytes]], *, columns: int = 2) -> bytes:
    """Compose existing PNGs into one titled grid.

    Parameters
    ----------
    images : sequence of (str, bytes)
        Title and PNG bytes of each image (e.g. the predictions of the best and the
        median run), filled row by row. Undecodable bytes get a note instead.
    columns : int, default 2
        Images per row (fewer when there are fewer images).

    Returns
    -------
    bytes
        The PNG; a small one saying ``no example predictions`` when ``images`` is empty.

    Raises
    ------
    ValueError
        ``columns`` is less than 1.
    """
    return _png(_build_image_grid(images, columns=columns))


# --------------------------------------------------------------------------- per epoch


def _build_per_epoch(
    history: pd.DataFrame,
    *,
    value: str,
    reference: str | None,
    hue: str,
    ylabel: str,
    reference_label: str,
    title: str | None,
) -> Figure:
    """Draw :func:`per_epoch`'s figure and return it (unsaved)."""
    _check_columns(history, "run_id", "epoch", value, reference, hue)
    figure = _new_figure(6.4, 4.2)
    ax = figure.add_subplot()
    hues = _levels(history, hue)
    handles: list[Any] = []
    for index, level in enumerate(hues):
        colour = _colour(index)
        part = history[_mask(history, hue, level)]
        for run_id in dict.fromkeys(part["run_id"].tolist()):  # runs in table order
            run = part[part["run_id"] == run_id].sort_values("epoch", kind="mergesort")
            epochs = run["epoch"].to_numpy(dtype=np.float64)
            ax.plot(epochs, _metric_values(run, value), color=colour, lw=1.2, alpha=0.85)
            if reference is not None:
                ax.plot(
                    epochs, _metric_values(run, reference), color=colour, lw=1.0, ls="--", alpha=0.7
                )
        handles.append(Patch(color=colour, label=level_label(hue, level)))
    handles.append(Line2D([], [], color="0.3", lw=1.2, label="translated"))
    if reference is not None:
        handles.append(Line2D([], [], color="0.3", lw=1.0, ls="--", label=reference_label))
    if history.empty:
        ax.text(0.5, 0.5, "no history logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, title=axis_label(hue), fontsize="small")
    if title is not None:
        ax.set_title(title)
    return figure


def per_epoch(
    history: pd.DataFrame,
    *,
    value: str,
    reference: str | None = None,
    hue: str = "model",
    ylabel: str = "",
    reference_label: str = "raw",
    title: str | None = None,
) -> bytes:
    """A metric per epoch, one line per run, with an optional dashed reference line.

    Parameters
    ----------
    history : pandas.DataFrame
        One row per run and epoch: ``run_id``, ``epoch``, ``value``, ``hue`` (and
        ``reference``) columns, e.g. :func:`hpcbench.report.aggregate.cyclegan_history`.
    value : str
        Column drawn as solid lines (e.g. the FID of the translated images).
    reference : str, optional
        Column drawn dashed in the run's colour (e.g. the FID of the raw simulations).
    hue : str, default ``"model"``
        Column colouring the runs.
    ylabel : str
        Title of the y axis.
    reference_label : str, default ``"raw"``
        Legend entry of the dashed lines.
    title : str, optional
        Figure title.

    Returns
    -------
    bytes
        The PNG.

    Raises
    ------
    KeyError
        A named column is missing from ``history``.
    """
    return _png(
        _build_per_epoch(
            history,
            value=value,
            reference=reference,
            hue=hue,
            ylabel=ylabel,
            reference_label=reference_label,
            title=title,
        )
    )
