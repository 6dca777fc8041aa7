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
    A metric against a numeric axis: runs, level means with 95 % t-intervals, fits.
:func:`per_epoch`
    A metric per epoch, one line per run (e.g. CycleGAN validation FID), raw dashed.
:func:`image_grid`
    Existing PNGs (e.g. example predictions) composed into one titled grid.
:func:`metric_label`, :func:`level_label`
    Readable names of metric columns and axis levels (also used for table headers).
"""

from __future__ import annotations

import math
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
from scipy import stats

__all__ = [
    "DPI",
    "Fit",
    "box_strip",
    "image_grid",
    "level_label",
    "metric_label",
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

# Fit parameters written as Greek letters in legends.
GREEK: dict[str, str] = {
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

_BOX_WIDTH = 0.8


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


def _t_interval(values: NDArray[np.float64], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval of the mean.

    The half-width is ``t(1 − (1 − level)/2, n − 1) · s / √n`` with the sample standard
    deviation ``s``; NaN for fewer than two values.
    """
    n = values.size
    mean = float(np.mean(values)) if n else math.nan
    if n < 2:
        return mean, math.nan
    sem = float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem


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
) -> Figure:
    """Draw :func:`box_strip`'s figure and return it (unsaved)."""
    _check_columns(runs, axis, metric, hue)
    if hue == axis:
        raise ValueError(f"hue must differ from the axis ({axis!r})")
    levels = _levels(runs, axis, order)
    hues: list[Any] = _levels(runs, hue) if hue is not None else [None]
    values = _metric_values(runs, metric)
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
            data = values[mask]
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
                position + jitter,
                data,
                s=14,
                color=colour,
                edgecolors="white",
                linewidths=0.4,
                zorder=3,
            )
        label = level_label(axis, level)
        tick_labels.append(label if hue is not None else f"{label}\nn={total}")

    ax.set_xticks(range(len(levels)), tick_labels)
    ax.set_xlim(-0.6, len(levels) - 0.4)
    ax.set_xlabel(axis_label(axis))
    ax.set_ylabel(metric_label(metric))
    if hue is not None:
        ax.margins(y=0.12)
        handles = [
            Patch(facecolor=_colour(j), edgecolor=_colour(j), alpha=0.5, label=level_label(hue, h))
            for j, h in enumerate(hues)
        ]
        ax.legend(handles=handles, title=axis_label(hue), fontsize="small", loc="best")
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
) -> bytes:
    r"""Box plot of a metric per level of an axis, with every run as a jittered point.

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
    return _png(_build_box_strip(runs, axis, metric, hue=hue, order=order, seed=seed, title=title))


# --------------------------------------------------------------------------- metric vs axis


def _default_log_x(axis: str, x: NDArray[np.float64]) -> bool:
    if axis == "dose":
        return True
    positive = x[np.isfinite(x) & (x > 0)]
    if axis == "train_size" and positive.size:
        return bool(positive.max() > 10 * positive.min())
    return False


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
) -> Figure:
    """Draw :func:`metric_vs`'s figure and return it (unsaved)."""
    _check_columns(runs, axis, metric, hue)
    if hue == axis:
        raise ValueError(f"hue must differ from the axis ({axis!r})")
    if fits is not None and hue is None:
        raise ValueError("fits (one per hue level) needs hue")
    x_all = np.asarray(pd.to_numeric(runs[axis], errors="coerce"), dtype=np.float64)
    y_all = _metric_values(runs, metric)
    if log_x is None:
        log_x = _default_log_x(axis, x_all)
    placeable = np.isfinite(x_all) & ((x_all > 0) if log_x else True)
    left_out = int(np.count_nonzero(~placeable & np.isfinite(y_all)))
    usable = placeable & np.isfinite(y_all)

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
    for j, hue_level in enumerate(hues):
        colour = _colour(j) if hue is not None else "C0"
        mask = usable if hue is None else usable & _mask(runs, hue, hue_level)
        x, y = x_all[mask], y_all[mask]
        name = level_label(hue, hue_level) if hue is not None else "runs"
        offsets = rng.uniform(-jitter_scale, jitter_scale, x.size)
        x_jittered = x * 10.0**offsets if log_x else x + offsets
        ax.scatter(x_jittered, y, s=12, color=colour, alpha=0.45, linewidths=0, label=name)
        levels = np.unique(x)
        means, halves = [], []
        for level in levels:
            mean, half = _t_interval(y[x == level])
            means.append(mean)
            halves.append(half)
        if levels.size:
            ax.errorbar(
                levels,
                means,
                yerr=np.nan_to_num(np.asarray(halves), nan=0.0),
                fmt="o",
                color=colour,
                markersize=5,
                markeredgecolor="black",
                markeredgewidth=0.6,
                capsize=3,
                elinewidth=1.2,
                zorder=4,
                label="mean ± 95 % CI" if hue is None else None,
            )
        level_fit = fits.get(hue_level) if fits is not None else None
        if level_fit is not None:
            curves.append((level_fit, colour, f"{name}: "))
    if fit is not None:
        curves.append((fit, "black" if hue is not None else "C3", ""))

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
        for curve_fit, colour, prefix in curves:
            predicted = np.asarray(curve_fit.predict(grid), dtype=np.float64)
            ax.plot(
                grid,
                predicted,
                color=colour,
                linewidth=1.6,
                label=_fit_legend(curve_fit, axis, prefix),
            )

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
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
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
) -> bytes:
    """A metric against a numeric axis: runs, level means with 95 % CIs, fitted curves.

    Each run is a point (with a small horizontal jitter: multiplicative, i.e. in log
    space, on a log axis). Each level of the axis gets its mean with a 95 % Student-t
    confidence interval of the mean, ``mean ± t(0.975, n−1)·s/√n`` (no bar for a single
    run). A fit is drawn on a dense grid over the data's range (half a step beyond on a
    log axis) from ``fit.predict``, labelled with its formula, parameters ± standard
    errors, R² and n.

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
        Seed of the jitter.
    title : str, optional
        Figure title.

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
