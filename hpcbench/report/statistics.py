"""Statistics of ablation reports: summaries, bootstrap intervals, tests and curve fits.

An ablation varies one factor (dose, training-set size, architecture, ...) over *levels*
and repeats each level over several seeds; the report needs the spread across seeds as
much as the central value (seed 001, Rangel DaCosta et al. 2024, showed that the effect
of dataset size on a defect-identification network is only interpretable together with
its variance across training seeds). This module turns the per-run metric values of
each level into numbers a report can print, using pure NumPy/SciPy:

Summaries
    :func:`summarize` gives, per level, the number of finite runs, median and
    quartiles (linear interpolation, :func:`numpy.percentile`), the mean and a
    percentile-bootstrap confidence interval of the mean (:func:`bootstrap_ci`; Efron &
    Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13).

Tests
    :func:`kruskal_wallis` asks whether any level differs (Kruskal-Wallis H test, rank
    based, no normality assumption; :func:`scipy.stats.kruskal`).
    :func:`pairwise_mann_whitney` compares every pair of levels with the two-sided
    Mann-Whitney U test (:func:`scipy.stats.mannwhitneyu`) and controls the
    family-wise error rate with the Holm-Bonferroni step-down procedure (:func:`holm`;
    Holm, *Scand. J. Statist.* 6, 65-70, 1979). When there are too few runs a test is
    *skipped* rather than failing: the ``*_outcome`` functions return the reason in a
    ``note`` so a report can print "skipped because ...".

Fits
    :func:`fit_dose` fits eq. 1 of seed 003 (Fuhr et al., digital twins of defects in
    MX2 monolayers), the detectability of defects against electron dose,
    ``D(B) = D0 + A·exp(−B/α)``, in the paper's names: ``B`` the beam electron dose
    [e/Å²] (the abscissa), ``α`` the fitted characteristic decay dose [e/Å²] (at
    ``B = α`` the deficit ``D − D0`` has decayed to ``A/e``), ``D0`` the detectability
    without Poisson noise (``B → ∞``) and ``A`` the amplitude (``D0 + A`` is the value at
    ``B = 0``; negative when the metric rises with dose).
    :func:`fit_size` fits the saturating power-law learning curve
    ``F(n) = F∞ − a·n^(−b)`` (``b > 0``) of a metric against training-set size ``n``
    [images] (Hestness et al., "Deep learning scaling is predictable, empirically",
    arXiv:1712.00409, 2017), the quantity behind seed 001's dataset-size study.

    Both models are linear in two parameters once the nonlinear one (``α`` or ``b``) is
    fixed, so the starting values come from a grid search over the nonlinear parameter
    (log-spaced), solving the linear pair by (bounded) least squares at each grid point
    and keeping the best (variable projection). :func:`scipy.optimize.curve_fit` then
    refines all three parameters, with ``α`` handled as ``ln α`` (doses span decades,
    1e4-1e8 e/Å²) and sizes scaled by their geometric mean, and bounds that keep the
    nonlinear parameter inside a range the data can constrain. Given the metric's range
    (``bounds``, e.g. [0, 1] for F1), the dose fit keeps both ends of its curve, ``D0``
    and ``D0 + A``, inside it, which keeps the whole curve inside it; the size fit keeps
    ``F∞`` inside it. Every result names its variables with units
    (:data:`DOSE_VARIABLES`, :data:`SIZE_VARIABLES`) and the bounds it was fitted
    under. Standard errors are the square roots of the covariance diagonal, carried to
    the reported parameters by the delta method; they are ``inf`` when the covariance
    cannot be estimated.

No function touches global random state: resampling uses ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

__all__ = [
    "DOSE_FORMULA",
    "DOSE_VARIABLES",
    "SIZE_FORMULA",
    "SIZE_VARIABLES",
    "FitOutcome",
    "FitResult",
    "LevelSummary",
    "PairedResult",
    "PairwiseResult",
    "TestOutcome",
    "TestResult",
    "bootstrap_ci",
    "fit_dose",
    "fit_dose_outcome",
    "fit_size",
    "fit_size_outcome",
    "holm",
    "kruskal_wallis",
    "kruskal_wallis_outcome",
    "paired_comparisons",
    "pairwise_mann_whitney",
    "summarize",
]

_MIN_DISTINCT_X = 4
"""Fewest distinct abscissae a three-parameter fit is attempted on."""

_GRID_POINTS = 121
"""Points of the log-spaced grid search for the nonlinear parameter's starting value."""


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    """Return ``values`` as a flat float array with NaNs (and infinities) dropped."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


# --------------------------------------------------------------------------- summaries


def bootstrap_ci(
    values: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Parameters
    ----------
    values : array_like
        Observations [any unit]; NaNs are dropped.
    confidence : float, optional
        Coverage of the interval, in (0, 1) [1].
    n_resamples : int, optional
        Number of bootstrap resamples [1]. All resamples are drawn at once, an integer
        index array of shape ``(n_resamples, n)``.
    seed : int, optional
        Seed of the private generator (``np.random.default_rng(seed)``); the same seed
        gives the same interval.

    Returns
    -------
    tuple of float
        ``(low, high)`` in the unit of ``values``; ``(nan, nan)`` with fewer than two
        finite values.

    Raises
    ------
    ValueError
        If ``confidence`` is not in (0, 1) or ``n_resamples`` < 1.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    x = _finite(values)
    n = x.size
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    means = x[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


@dataclass(frozen=True)
class LevelSummary:
    """Summary of one level's runs.

    Attributes
    ----------
    level : Any
        The level (value of the ablated factor).
    n : int
        Number of finite runs [1].
    median, q1, q3, iqr : float
        Median, first and third quartiles and interquartile range ``q3 − q1``
        [metric unit].
    mean : float
        Mean [metric unit].
    ci_low, ci_high : float
        Percentile-bootstrap confidence interval of the mean [metric unit]; NaN with
        fewer than two runs.
    """

    level: Any
    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    ci_low: float
    ci_high: float


def summarize(
    groups: Mapping[Any, Sequence[float]],
    *,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[LevelSummary]:
    """Summarise each level's runs.

    Parameters
    ----------
    groups : Mapping
        Level → metric values of its runs [metric unit]; NaNs are dropped per level.
    seed : int, optional
        Seed of the bootstrap (the same for every level).
    confidence : float, optional
        Coverage of the bootstrap interval [1].

    Returns
    -------
    list of LevelSummary
        One per level, in the mapping's order; an empty level has ``n = 0`` and NaNs.
    """
    out: list[LevelSummary] = []
    for level, values in groups.items():
        x = _finite(values)
        if x.size == 0:
            nan = math.nan
            out.append(LevelSummary(level, 0, nan, nan, nan, nan, nan, nan, nan))
            continue
        q1, median, q3 = (float(q) for q in np.percentile(x, [25.0, 50.0, 75.0]))
        low, high = bootstrap_ci(x, confidence=confidence, seed=seed)
        out.append(
            LevelSummary(
                level=level,
                n=int(x.size),
                median=median,
                q1=q1,
                q3=q3,
                iqr=q3 - q1,
                mean=float(x.mean()),
                ci_low=low,
                ci_high=high,
            )
        )
    return out


# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class TestResult:
    """Result of a hypothesis test.

    Attributes
    ----------
    test : str
        Name of the test.
    statistic : float
        Test statistic [1].
    p_value : float
        p-value [1].
    """

    __test__ = False  # not a pytest test class

    test: str
    statistic: float
    p_value: float


@dataclass(frozen=True)
class TestOutcome:
    """A test's result, or why it was skipped.

    Attributes
    ----------
    result : TestResult or None
        The result; None when the test was skipped.
    note : str
        Why the test was skipped, or remarks on a run test (e.g. levels left out);
        empty when there is nothing to say.
    """

    __test__ = False  # not a pytest test class

    result: TestResult | None
    note: str = ""


def _usable_groups(
    groups: Mapping[Any, Sequence[float]],
) -> tuple[dict[Any, NDArray[np.float64]], list[Any]]:
    """Split levels into those with >= 2 finite values and the names of the others."""
    usable: dict[Any, NDArray[np.float64]] = {}
    dropped: list[Any] = []
    for level, values in groups.items():
        x = _finite(values)
        if x.size >= 2:
            usable[level] = x
        else:
            dropped.append(level)
    return usable, dropped


def kruskal_wallis_outcome(groups: Mapping[Any, Sequence[float]]) -> TestOutcome:
    """Kruskal-Wallis H test across levels, or the reason it was skipped.

    Levels with fewer than two finite values are left out (and named in the note).

    Parameters
    ----------
    groups : Mapping
        Level → metric values of its runs [metric unit]; NaNs are dropped.

    Returns
    -------
    TestOutcome
        ``result`` is None when fewer than two levels have two or more runs, or when
        all values are identical (the statistic is undefined).
    """
    usable, dropped = _usable_groups(groups)
    counts = ", ".join(f"{level!r}: {_finite(v).size}" for level, v in groups.items())
    if len(usable) < 2:
        return TestOutcome(
            None,
            "Kruskal-Wallis needs >= 2 levels with >= 2 runs each; "
            f"got runs per level {{{counts}}}",
        )
    pooled = np.concatenate(list(usable.values()))
    if np.all(pooled == pooled[0]):
        return TestOutcome(None, "Kruskal-Wallis is undefined: all values are identical")
    res = stats.kruskal(*usable.values())
    note = f"left out levels with < 2 runs: {dropped!r}" if dropped else ""
    return TestOutcome(TestResult("Kruskal-Wallis", float(res.statistic), float(res.pvalue)), note)


def kruskal_wallis(groups: Mapping[Any, Sequence[float]]) -> TestResult | None:
    """Kruskal-Wallis H test across levels; None when skipped.

    See :func:`kruskal_wallis_outcome` for the rules and the reason of a skip.

    Parameters
    ----------
    groups : Mapping
        Level → metric values of its runs [metric unit]; NaNs are dropped.

    Returns
    -------
    TestResult or None
        The test, or None when it cannot be run.
    """
    return kruskal_wallis_outcome(groups).result


def holm(p_values: Sequence[float]) -> NDArray[np.float64]:
    """Holm-Bonferroni step-down adjusted p-values.

    With the ``m`` finite p-values sorted ascending, ``p(1) <= ... <= p(m)``, the
    adjusted value of ``p(i)`` is ``min(1, max_{j <= i} (m − j + 1)·p(j))``.

    Parameters
    ----------
    p_values : sequence of float
        Raw p-values in [0, 1]; NaNs stay NaN and do not count toward ``m``.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values [1], float64, in the order of the input.

    Raises
    ------
    ValueError
        If a finite p-value lies outside [0, 1].
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    finite = p[ok]
    if np.any((finite < 0.0) | (finite > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    m = finite.size
    if m == 0:
        return out
    order = np.argsort(finite, kind="stable")
    scaled = (m - np.arange(m)) * finite[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    out[ok] = adjusted
    return out


@dataclass(frozen=True)
class PairwiseResult:
    """Two-sided Mann-Whitney U test of one pair of levels.

    Attributes
    ----------
    a, b : Any
        The two levels.
    n_a, n_b : int
        Finite runs of each level [1].
    statistic : float
        U statistic of ``a`` [1]; NaN when the pair lacked data.
    p_value : float
        Raw p-value [1]; NaN when the pair lacked data.
    p_holm : float
        Holm-adjusted p-value across all tested pairs [1].
    significant : bool
        ``p_holm < alpha``; False when the pair lacked data.
    """

    a: Any
    b: Any
    n_a: int
    n_b: int
    statistic: float
    p_value: float
    p_holm: float
    significant: bool


def pairwise_mann_whitney(
    groups: Mapping[Any, Sequence[float]], *, alpha: float = 0.05
) -> list[PairwiseResult]:
    """Two-sided Mann-Whitney U tests of every pair of levels, Holm-adjusted.

    Parameters
    ----------
    groups : Mapping
        Level → metric values of its runs [metric unit]; NaNs are dropped.
    alpha : float, optional
        Family-wise significance level [1].

    Returns
    -------
    list of PairwiseResult
        One per pair ``(a, b)`` of levels in mapping order (``a`` before ``b``). Pairs
        where a level has fewer than two runs are listed with NaNs and
        ``significant=False``; they do not count toward the Holm correction.
    """
    data = {level: _finite(values) for level, values in groups.items()}
    pairs = list(itertools.combinations(data, 2))
    raw: list[tuple[float, float]] = []
    for a, b in pairs:
        xa, xb = data[a], data[b]
        if xa.size < 2 or xb.size < 2:
            raw.append((math.nan, math.nan))
            continue
        res = stats.mannwhitneyu(xa, xb, alternative="two-sided")
        raw.append((float(res.statistic), float(res.pvalue)))
    adjusted = holm([p for _, p in raw])
    out: list[PairwiseResult] = []
    for (a, b), (u, p), p_adj in zip(pairs, raw, adjusted, strict=True):
        out.append(
            PairwiseResult(
                a=a,
                b=b,
                n_a=int(data[a].size),
                n_b=int(data[b].size),
                statistic=u,
                p_value=p,
                p_holm=float(p_adj),
                significant=bool(np.isfinite(p_adj) and p_adj < alpha),
            )
        )
    return out


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of two levels over runs that share a seed (and other axes).

    Attributes
    ----------
    a, b : Any
        The two levels; differences are ``b - a``.
    n : int
        Matched pairs with finite values of both [1].
    higher : int
        Pairs where ``b`` scored higher than ``a`` [1].
    lower : int
        Pairs where ``b`` scored lower [1].
    mean_difference : float
        Mean of ``b - a`` [metric unit]; NaN without pairs.
    ci_low, ci_high : float
        95 % percentile-bootstrap CI of the mean difference [metric unit].
    statistic : float
        Wilcoxon signed-rank statistic [1]; NaN when not tested.
    p_value : float
        Two-sided p-value of the signed-rank test (exact for small n) [1]; NaN with
        fewer than two non-zero differences.
    p_holm : float
        Holm-adjusted across the axis's pairs of one metric [1].
    significant : bool
        ``p_holm < alpha``.
    """

    a: Any
    b: Any
    n: int
    higher: int
    lower: int
    mean_difference: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    p_holm: float
    significant: bool


def paired_comparisons(
    pairs: Mapping[tuple[Any, Any], tuple[Sequence[float], Sequence[float]]],
    *,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[PairedResult]:
    """Wilcoxon signed-rank tests of matched runs, one per pair of levels, Holm-adjusted.

    hpcbench gives repeat ``r`` the same seed in every condition (common random
    numbers), so the runs of two levels that share the repeat and every other axis
    differ only by the level: the differences of matched runs are a paired sample, which
    has more power than comparing the two groups as independent (Mann-Whitney).

    Parameters
    ----------
    pairs : Mapping
        ``(a, b)`` → ``(values_a, values_b)``, matched element by element [metric unit];
        pairs where either is NaN are dropped.
    alpha : float, optional
        Family-wise significance level [1].
    seed : int, optional
        Seed of the bootstrap CI.

    Returns
    -------
    list of PairedResult
        In mapping order. Pairs with fewer than two non-zero differences are listed with
        NaN statistics and do not count toward the Holm correction.
    """
    raw: list[tuple[tuple[Any, Any], NDArray[np.float64], float, float]] = []
    for key, (values_a, values_b) in pairs.items():
        xa = np.asarray(values_a, dtype=np.float64).ravel()
        xb = np.asarray(values_b, dtype=np.float64).ravel()
        if xa.shape != xb.shape:
            raise ValueError(f"pair {key}: {xa.size} and {xb.size} values are not matched")
        keep = np.isfinite(xa) & np.isfinite(xb)
        diff = xb[keep] - xa[keep]
        statistic = p_value = math.nan
        if np.count_nonzero(diff) >= 2:
            res = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
            statistic, p_value = float(res.statistic), float(res.pvalue)
        raw.append((key, diff, statistic, p_value))
    adjusted = holm([p for *_, p in raw])
    out: list[PairedResult] = []
    for ((a, b), diff, statistic, p_value), p_adj in zip(raw, adjusted, strict=True):
        low, high = bootstrap_ci(diff, seed=seed)
        out.append(
            PairedResult(
                a=a,
                b=b,
                n=int(diff.size),
                higher=int(np.count_nonzero(diff > 0)),
                lower=int(np.count_nonzero(diff < 0)),
                mean_difference=float(diff.mean()) if diff.size else math.nan,
                ci_low=low,
                ci_high=high,
                statistic=statistic,
                p_value=p_value,
                p_holm=float(p_adj),
                significant=bool(np.isfinite(p_adj) and p_adj < alpha),
            )
        )
    return out


# --------------------------------------------------------------------------- fits


def _dose_model(
    dose: NDArray[np.float64], D0: float, A: float, alpha: float
) -> NDArray[np.float64]:
    """Seed 003 eq. 1: ``D0 + A·exp(−B/α)``, dose ``B`` and ``α`` in [e/Å²]."""
    return D0 + A * np.exp(-dose / alpha)


def _size_model(size: NDArray[np.float64], F_inf: float, a: float, b: float) -> NDArray[np.float64]:
    """Power-law learning curve ``F∞ − a·n^(−b)``, size ``n`` in [images]."""
    return F_inf - a * size ** (-b)


_MODELS: dict[str, Callable[..., NDArray[np.float64]]] = {
    "dose_exponential": _dose_model,
    "size_power_law": _size_model,
}

DOSE_FORMULA = "D = D0 + A·exp(−B/α)"
"""Seed 003 eq. 1, in the paper's symbols (see :data:`DOSE_VARIABLES`)."""

DOSE_VARIABLES: dict[str, str] = {
    "B": "electron dose [e/Å²]",
    "D0": "value as B → ∞ (no Poisson noise) [metric unit]",
    "A": "amplitude: D0 + A is the value at B = 0 [metric unit]",
    "alpha": "characteristic dose: D − D0 = A/e at B = α [e/Å²]",
}
"""Seed 003's names in eq. 1: the abscissa ``B`` and the fitted parameters."""

SIZE_FORMULA = "F = F∞ − a·n^(−b)"
"""The power-law learning curve (see :data:`SIZE_VARIABLES`)."""

SIZE_VARIABLES: dict[str, str] = {
    "n": "training-set size [images]",
    "F_inf": "value as n → ∞ [metric unit]",
    "a": "amplitude [metric unit·images^b]",
    "b": "exponent [1]",
}
"""The learning curve's abscissa ``n`` and fitted parameters."""


@dataclass(frozen=True)
class FitResult:
    """A fitted curve.

    Attributes
    ----------
    model : str
        Name of the model (``"dose_exponential"`` or ``"size_power_law"``).
    params : dict of str to float
        Best-fit parameters, in the units given in ``variables``.
    stderr : dict of str to float
        Standard errors of ``params`` (square roots of the covariance diagonal); inf
        or NaN when not estimable. A parameter whose bound is active (``at_bound``)
        has an error computed as if it were free.
    r_squared : float
        Coefficient of determination over the fitted points [1]; NaN when the
        metric is constant.
    n : int
        Number of points fitted [1].
    formula : str
        Human-readable model, e.g. ``"D = D0 + A·exp(−B/α)"``.
    variables : dict of str to str
        The abscissa and every parameter by name, each with its meaning and unit in
        brackets (``[metric unit]``: the unit of the fitted metric).
    constraints : dict of str to str
        Per parameter, the bound the fit kept it (or an expression of it) within, e.g.
        ``{"A": "0 ≤ D0 + A ≤ 1"}``; a parameter without bounds is absent.
    at_bound : tuple of str
        Parameters whose constraint is active at the optimum (the data pushed them to
        the edge of the allowed range).
    """

    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    r_squared: float
    n: int
    formula: str
    variables: dict[str, str] = field(default_factory=dict)
    constraints: dict[str, str] = field(default_factory=dict)
    at_bound: tuple[str, ...] = ()

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """Evaluate the fitted curve.

        Parameters
        ----------
        x : array_like
            Abscissae, in the unit of the fit (dose [e/Å²] or size [images]).

        Returns
        -------
        numpy.ndarray
            Model values [metric unit], float64, of the shape of ``x``.
        """
        xs = np.asarray(x, dtype=np.float64)
        return np.asarray(_MODELS[self.model](xs, **self.params), dtype=np.float64)


@dataclass(frozen=True)
class FitOutcome:
    """A fit's result, or why it was not made.

    Attributes
    ----------
    result : FitResult or None
        The fit; None when it could not be made.
    note : str
        Why the fit was not made, or remarks on a made fit (a bound it reached);
        empty when there is nothing to say.
    excluded : int
        Runs with a usable dose (or size) and metric that the caller's ``exclude``
        mask left out of the fit [1].
    """

    result: FitResult | None
    note: str = ""
    excluded: int = 0


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """``bounds`` as floats; ValueError unless ``low < high`` (NaN is not a bound)."""
    low, high = (float(b) for b in bounds)
    if not low < high:
        raise ValueError(f"bounds must satisfy low < high, got {bounds}")
    return low, high


def _clean_xy(
    x: ArrayLike, y: ArrayLike, name: str, exclude: ArrayLike | None = None
) -> tuple[tuple[NDArray[np.float64], NDArray[np.float64]] | str, int]:
    """Drop non-finite pairs, non-positive abscissae and excluded runs.

    Returns the cleaned pair (a string is a reason to stop) and the number of usable
    runs that ``exclude`` left out.
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        return f"{name} and metric differ in length ({xs.size} vs {ys.size})", 0
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    excluded = 0
    if exclude is not None:
        drop = np.asarray(exclude, dtype=bool).ravel()
        if drop.shape != xs.shape:
            return f"exclude and {name} differ in length ({drop.size} vs {xs.size})", 0
        excluded = int(np.count_nonzero(keep & drop))
        keep &= ~drop
    xs, ys = xs[keep], ys[keep]
    distinct = np.unique(xs).size
    if distinct < _MIN_DISTINCT_X:
        return (
            f"fit needs >= {_MIN_DISTINCT_X} distinct positive {name} values with a "
            f"finite metric; got {distinct}"
        ), excluded
    return (xs, ys), excluded


def _bounded_lstsq(
    design: NDArray[np.float64],
    y: NDArray[np.float64],
    lower: Sequence[float],
    upper: Sequence[float],
) -> tuple[NDArray[np.float64], float]:
    """Least squares ``y ≈ design·c`` with ``lower ≤ c ≤ upper``; return ``(c, sse)``."""
    if all(math.isinf(v) for v in (*lower, *upper)):
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    else:
        coef = optimize.lsq_linear(design, y, bounds=(lower, upper)).x
    resid = y - design @ coef
    return np.asarray(coef, dtype=np.float64), float(resid @ resid)


def _r_squared(y: NDArray[np.float64], fitted: NDArray[np.float64]) -> float:
    """Coefficient of determination; NaN when ``y`` is constant."""
    sst = float(np.sum((y - y.mean()) ** 2))
    if sst == 0.0:
        return math.nan
    return 1.0 - float(np.sum((y - fitted) ** 2)) / sst


def _refine(
    f: Callable[..., NDArray[np.float64]],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    p0: list[float],
    bounds: tuple[list[float], list[float]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | str:
    """Run :func:`scipy.optimize.curve_fit`; a string is the reason it failed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            popt, pcov = optimize.curve_fit(f, x, y, p0=p0, bounds=bounds, x_scale="jac")
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
        return f"curve_fit failed: {exc}"
    if not np.all(np.isfinite(popt)):
        return "curve_fit returned non-finite parameters"
    return np.asarray(popt, dtype=np.float64), np.asarray(pcov, dtype=np.float64)


def _edge(value: float, lo: float, hi: float) -> str:
    """``"lower"`` or ``"upper"`` when ``value`` sits on that bound, else ``""``.

    The tolerance is 1e-6 of the range when both bounds are finite, else 1e-9 of
    ``max(1, |value|)``.
    """
    if math.isfinite(lo) and math.isfinite(hi):
        tol = 1e-6 * (hi - lo)
    else:
        tol = 1e-9 * max(1.0, abs(value))
    if value - lo <= tol:
        return "lower"
    if hi - value <= tol:
        return "upper"
    return ""


def _at_bound(value: float, lo: float, hi: float) -> bool:
    """Whether ``value`` sits (within 1e-6 of the range) on an edge of ``[lo, hi]``."""
    return bool(_edge(value, lo, hi))


def _stderr(pcov: NDArray[np.float64], jac: NDArray[np.float64]) -> NDArray[np.float64]:
    """Standard errors after the delta-method transform ``J·C·Jᵀ``.

    ``jac`` is the Jacobian of the reported parameters with respect to the fitted ones:
    a full matrix, or its diagonal as a vector. All are inf when ``pcov`` is not finite
    (curve_fit's answer when it cannot estimate the covariance).
    """
    matrix = np.diag(jac) if jac.ndim == 1 else jac
    if not np.all(np.isfinite(pcov)):
        return np.full(matrix.shape[0], np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        var = np.diag(matrix @ pcov @ matrix.T)
        return np.where(var >= 0, np.sqrt(np.abs(var)), np.nan)


def _interval_text(expression: str, low: float, high: float, unit: str = "") -> str:
    """``"0 ≤ D0 ≤ 1"``, ``"D0 ≥ 0"`` or ``"unbounded"``, with an optional unit."""
    suffix = f" {unit}" if unit else ""
    if math.isfinite(low) and math.isfinite(high):
        return f"{low:g} ≤ {expression} ≤ {high:g}{suffix}"
    if math.isfinite(low):
        return f"{expression} ≥ {low:g}{suffix}"
    if math.isfinite(high):
        return f"{expression} ≤ {high:g}{suffix}"
    return f"{expression} unbounded"


def _bound_note(names: Sequence[str], edges: Sequence[str], bounds: Sequence[str]) -> str:
    """Remarks on active bounds, e.g. ``"D0 + A on its lower bound (0 ≤ D0 + A ≤ 1)"``."""
    return "; ".join(
        f"{name} on its {edge} bound ({bound})"
        for name, edge, bound in zip(names, edges, bounds, strict=True)
    )


def fit_dose_outcome(
    dose: ArrayLike,
    metric: ArrayLike,
    *,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    exclude: ArrayLike | None = None,
) -> FitOutcome:
    """Fit seed 003 eq. 1, ``D(B) = D0 + A·exp(−B/α)``, or say why not.

    The names are seed 003's: ``B`` is the electron dose [e/Å²] (the abscissa), ``α``
    the fitted characteristic dose [e/Å²] at which ``D − D0`` has decayed to ``A/e``,
    ``D0`` the value at high dose (``B → ∞``) and ``A`` the amplitude (``D0 + A`` is
    the value at ``B = 0``; ``A < 0`` when the metric rises with dose).

    For ``B ≥ 0`` the curve is the weighted mean ``w·(D0 + A) + (1 − w)·D0`` of its two
    ends, ``w = exp(−B/α)`` in (0, 1]. The fit therefore works in ``(D0, D0 + A, ln α)``
    and bounds both ends to ``bounds``: the whole curve then stays inside ``bounds`` at
    every dose, not only at the fitted ones. (Unbounded, the quickstart's FCN runs,
    0 up to 1e4 e/Å² and 0.8 from 1e5, put ``D0 + A`` at −0.06.)

    The start is the best point of a grid search over ``log α`` (log-spaced from a
    decade below the smallest dose to a decade above the largest), where the two ends
    follow by bounded linear least squares (:func:`scipy.optimize.lsq_linear`); ``ln α``
    stays in that range during refinement (:func:`scipy.optimize.curve_fit`).

    Parameters
    ----------
    dose : array_like
        Electron dose ``B`` of each run [e/Å²]; must be positive.
    metric : array_like
        Metric of each run, e.g. detectability [metric unit].
    bounds : tuple of float, optional
        Range ``(low, high)`` of the metric [metric unit], e.g. ``(0, 1)`` for F1; both
        ``D0`` and ``D0 + A`` are kept in it. Unbounded by default.
    exclude : array_like of bool, optional
        Runs to leave out (e.g. degenerate ones), counted in ``FitOutcome.excluded``.

    Returns
    -------
    FitOutcome
        ``result.params`` has ``D0`` [metric unit], ``A`` [metric unit] and ``alpha``
        [e/Å²]; ``result`` is None with fewer than four distinct doses, when the fit
        fails, or when ``α`` ends on the edge of its range (unconstrained by the data).
        ``note`` names the ends that finished on a bound.

    Raises
    ------
    ValueError
        If ``bounds`` is not ``low < high``.
    """
    low, high = _check_bounds(bounds)
    cleaned, excluded = _clean_xy(dose, metric, "dose", exclude)
    if isinstance(cleaned, str):
        return FitOutcome(None, cleaned, excluded)
    x, y = cleaned
    lo = math.log(float(x.min())) - math.log(10.0)
    hi = math.log(float(x.max())) + math.log(10.0)
    best: tuple[float, float, float, float] | None = None
    for log_alpha in np.linspace(lo, hi, _GRID_POINTS):
        weight = np.exp(-x / math.exp(log_alpha))
        design = np.column_stack([1.0 - weight, weight])
        (d0, d_zero), sse = _bounded_lstsq(design, y, [low, low], [high, high])
        if best is None or sse < best[3]:
            best = (float(d0), float(d_zero), float(log_alpha), sse)
    assert best is not None

    def model(b: NDArray[np.float64], d0: float, d_zero: float, log_alpha: float) -> Any:
        return _dose_model(b, d0, d_zero - d0, math.exp(log_alpha))

    refined = _refine(model, x, y, [best[0], best[1], best[2]], ([low, low, lo], [high, high, hi]))
    if isinstance(refined, str):
        return FitOutcome(None, refined, excluded)
    popt, pcov = refined
    if _at_bound(float(popt[2]), lo, hi):
        return FitOutcome(
            None,
            f"characteristic dose α = {math.exp(float(popt[2])):.3g} e/Å² hit the edge of the "
            f"searched range [{math.exp(lo):.3g}, {math.exp(hi):.3g}]; the data do not "
            "constrain it",
            excluded,
        )
    d0, d_zero = float(popt[0]), float(popt[1])
    alpha = math.exp(float(popt[2]))
    params = {"D0": d0, "A": d_zero - d0, "alpha": alpha}
    # (D0, A, α) = (d0, d_zero − d0, exp(ln α)): the Jacobian of the delta method.
    jac = np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, alpha]])
    se = _stderr(pcov, jac)
    constraints = {
        "D0": _interval_text("D0", low, high),
        "A": _interval_text("D0 + A", low, high),
        # A decade beyond the doses on either side: the range the grid search covers.
        "alpha": _interval_text("α", math.exp(lo), math.exp(hi), "e/Å²"),
    }
    edges = {"D0": _edge(d0, low, high), "A": _edge(d_zero, low, high)}
    active = tuple(name for name, edge in edges.items() if edge)
    note = _bound_note(
        [{"D0": "D0", "A": "D0 + A"}[name] for name in active],
        [edges[name] for name in active],
        [constraints[name] for name in active],
    )
    result = FitResult(
        model="dose_exponential",
        params=params,
        stderr={k: float(s) for k, s in zip(params, se, strict=True)},
        r_squared=_r_squared(y, _dose_model(x, **params)),
        n=int(x.size),
        formula=DOSE_FORMULA,
        variables=dict(DOSE_VARIABLES),
        constraints=constraints,
        at_bound=active,
    )
    return FitOutcome(result, note, excluded)


def fit_dose(
    dose: ArrayLike,
    metric: ArrayLike,
    *,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    exclude: ArrayLike | None = None,
) -> FitResult | None:
    """Fit seed 003 eq. 1, ``D(B) = D0 + A·exp(−B/α)``; None when it cannot be made.

    See :func:`fit_dose_outcome` for the variables, the bounds, the method and the
    reason of a failure.

    Parameters
    ----------
    dose : array_like
        Electron dose ``B`` of each run [e/Å²].
    metric : array_like
        Metric of each run [metric unit].
    bounds : tuple of float, optional
        Range of the metric [metric unit]; ``D0`` and ``D0 + A`` are kept in it.
    exclude : array_like of bool, optional
        Runs to leave out.

    Returns
    -------
    FitResult or None
        Parameters ``D0``, ``A`` [metric unit] and ``alpha`` [e/Å²].
    """
    return fit_dose_outcome(dose, metric, bounds=bounds, exclude=exclude).result


_B_MIN, _B_MAX = 1e-3, 10.0
"""Range of the learning-curve exponent ``b`` [1] searched and allowed in the fit."""


def fit_size_outcome(
    size: ArrayLike,
    metric: ArrayLike,
    *,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    exclude: ArrayLike | None = None,
) -> FitOutcome:
    """Fit the learning curve ``F(n) = F∞ − a·n^(−b)`` (``b > 0``), or say why not.

    Sizes are scaled by their geometric mean ``n̄`` internally, ``F∞ − c·(n/n̄)^(−b)``
    with ``a = c·n̄^b``. The start is the best point of a log-spaced grid search over
    ``b`` in [1e-3, 10], where ``F∞`` and ``c`` follow by linear least squares (``F∞``
    within ``bounds``); ``b`` stays within that range during refinement.

    Only the plateau ``F∞`` is bounded: a power law has no finite value at ``n = 0``,
    so no box bound keeps the curve in range towards small sets; a figure should draw
    it only where it lies in the metric's range.

    Parameters
    ----------
    size : array_like
        Training-set size ``n`` of each run [images]; must be positive.
    metric : array_like
        Metric of each run [metric unit].
    bounds : tuple of float, optional
        Range ``(low, high)`` of the metric [metric unit]; ``F∞`` is kept in it.
        Unbounded by default.
    exclude : array_like of bool, optional
        Runs to leave out (e.g. degenerate ones), counted in ``FitOutcome.excluded``.

    Returns
    -------
    FitOutcome
        ``result.params`` has ``F_inf`` [metric unit], ``a`` [metric unit·images^b]
        and ``b`` [1]; ``result`` is None with fewer than four distinct sizes, when the
        fit fails, or when ``b`` ends on the edge of its range (unconstrained).

    Raises
    ------
    ValueError
        If ``bounds`` is not ``low < high``.
    """
    low, high = _check_bounds(bounds)
    cleaned, excluded = _clean_xy(size, metric, "size", exclude)
    if isinstance(cleaned, str):
        return FitOutcome(None, cleaned, excluded)
    x, y = cleaned
    log_ref = float(np.mean(np.log(x)))
    u = x / math.exp(log_ref)
    best: tuple[float, float, float, float] | None = None
    for b in np.geomspace(_B_MIN, _B_MAX, _GRID_POINTS):
        design = np.column_stack([np.ones_like(u), u ** (-b)])
        (f_inf, neg_c), sse = _bounded_lstsq(design, y, [low, -math.inf], [high, math.inf])
        if best is None or sse < best[3]:
            best = (float(f_inf), -float(neg_c), float(b), sse)
    assert best is not None
    refined = _refine(
        _size_model,
        u,
        y,
        [best[0], best[1], best[2]],
        ([low, -np.inf, _B_MIN], [high, np.inf, _B_MAX]),
    )
    if isinstance(refined, str):
        return FitOutcome(None, refined, excluded)
    popt, pcov = refined
    f_inf, c, b = (float(v) for v in popt)
    if _at_bound(math.log(b), math.log(_B_MIN), math.log(_B_MAX)):
        return FitOutcome(
            None,
            f"exponent b = {b:.3g} hit the edge of the allowed range [{_B_MIN:g}, {_B_MAX:g}]; "
            "the data do not constrain it",
            excluded,
        )
    scale = math.exp(b * log_ref)
    params = {"F_inf": f_inf, "a": c * scale, "b": b}
    # a = c·exp(b·ln n̄): ∂a/∂c = n̄^b, ∂a/∂b = a·ln n̄ (b's variance enters a's too).
    with np.errstate(invalid="ignore", over="ignore"):
        var_a = (
            scale**2 * pcov[1, 1]
            + (params["a"] * log_ref) ** 2 * pcov[2, 2]
            + 2 * scale * params["a"] * log_ref * pcov[1, 2]
        )
    se = _stderr(pcov, np.ones(3))
    se[1] = math.sqrt(var_a) if np.isfinite(var_a) and var_a >= 0 else se[1] * scale
    constraints = {
        "F_inf": _interval_text("F∞", low, high),
        "b": _interval_text("b", _B_MIN, _B_MAX),
    }
    if math.isinf(low) and math.isinf(high):
        del constraints["F_inf"]
    edge = _edge(f_inf, low, high)
    active = ("F_inf",) if edge else ()
    note = _bound_note(["F∞"], [edge], [constraints["F_inf"]]) if edge else ""
    result = FitResult(
        model="size_power_law",
        params=params,
        stderr={k: float(s) for k, s in zip(params, se, strict=True)},
        r_squared=_r_squared(y, _size_model(x, **params)),
        n=int(x.size),
        formula=SIZE_FORMULA,
        variables=dict(SIZE_VARIABLES),
        constraints=constraints,
        at_bound=active,
    )
    return FitOutcome(result, note, excluded)


def fit_size(
    size: ArrayLike,
    metric: ArrayLike,
    *,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    exclude: ArrayLike | None = None,
) -> FitResult | None:
    """Fit the learning curve ``F(n) = F∞ − a·n^(−b)``; None when it cannot be made.

    See :func:`fit_size_outcome` for the method, the bounds and the reason of a failure.

    Parameters
    ----------
    size : array_like
        Training-set size ``n`` of each run [images].
    metric : array_like
        Metric of each run [metric unit].
    bounds : tuple of float, optional
        Range of the metric [metric unit]; ``F∞`` is kept in it.
    exclude : array_like of bool, optional
        Runs to leave out.

    Returns
    -------
    FitResult or None
        Parameters ``F_inf`` [metric unit], ``a`` [metric unit·images^b], ``b`` [1].
    """
    return fit_size_outcome(size, metric, bounds=bounds, exclude=exclude).result
