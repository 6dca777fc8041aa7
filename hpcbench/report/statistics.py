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
    ``D(B) = D0 + A·exp(−B/α)``, with ``B`` the dose [e/Å²], ``D0`` the detectability
    without Poisson noise (``B → ∞``), ``A`` the amplitude (negative when the metric
    rises with dose) and ``α`` the characteristic dose [e/Å²].
    :func:`fit_size` fits the saturating power-law learning curve
    ``F(n) = F∞ − a·n^(−b)`` (``b > 0``) of a metric against training-set size ``n``
    [images] (Hestness et al., "Deep learning scaling is predictable, empirically",
    arXiv:1712.00409, 2017), the quantity behind seed 001's dataset-size study.

    Both models are linear in two parameters once the nonlinear one (``α`` or ``b``) is
    fixed, so the starting values come from a grid search over the nonlinear parameter
    (log-spaced), solving the linear pair by least squares at each grid point and
    keeping the best (variable projection). :func:`scipy.optimize.curve_fit` then
    refines all three parameters, with ``α`` handled as ``ln α`` (doses span decades,
    1e4-1e8 e/Å²) and sizes scaled by their geometric mean, and bounds that keep the
    nonlinear parameter inside a range the data can constrain. Standard errors are the
    square roots of the covariance diagonal, carried to the reported parameters by the
    delta method; they are ``inf`` when the covariance cannot be estimated.

No function touches global random state: resampling uses ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

__all__ = [
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


@dataclass(frozen=True)
class FitResult:
    """A fitted curve.

    Attributes
    ----------
    model : str
        Name of the model (``"dose_exponential"`` or ``"size_power_law"``).
    params : dict of str to float
        Best-fit parameters, in the units given in ``formula``'s documentation.
    stderr : dict of str to float
        Standard errors of ``params`` (square roots of the covariance diagonal); inf
        or NaN when not estimable.
    r_squared : float
        Coefficient of determination over the fitted points [1]; NaN when the
        metric is constant.
    n : int
        Number of points fitted [1].
    formula : str
        Human-readable model, e.g. ``"D = D0 + A·exp(−B/α)"``.
    """

    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    r_squared: float
    n: int
    formula: str

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
        Why the fit was not made; empty otherwise.
    """

    result: FitResult | None
    note: str = ""


def _clean_xy(
    x: ArrayLike, y: ArrayLike, name: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | str:
    """Drop non-finite pairs and non-positive abscissae; a string is a reason to stop."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        return f"{name} and metric differ in length ({xs.size} vs {ys.size})"
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    xs, ys = xs[keep], ys[keep]
    distinct = np.unique(xs).size
    if distinct < _MIN_DISTINCT_X:
        return (
            f"fit needs >= {_MIN_DISTINCT_X} distinct positive {name} values with a "
            f"finite metric; got {distinct}"
        )
    return xs, ys


def _linear_pair(basis: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float, float]:
    """Least-squares ``y ≈ c0 + c1·basis``; return ``(c0, c1, sse)``."""
    design = np.column_stack([np.ones_like(basis), basis])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(coef[0]), float(coef[1]), float(resid @ resid)


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


def _at_bound(value: float, lo: float, hi: float) -> bool:
    """Whether ``value`` sits (within 1e-6 of the range) on an edge of ``[lo, hi]``."""
    tol = 1e-6 * (hi - lo)
    return value - lo <= tol or hi - value <= tol


def _stderr(pcov: NDArray[np.float64], jac: NDArray[np.float64]) -> NDArray[np.float64]:
    """Standard errors after the delta-method transform ``J·C·Jᵀ`` (diagonal ``J``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        var = np.diag(pcov) * jac**2
        return np.where(var >= 0, np.sqrt(np.abs(var)), np.nan)


def fit_dose_outcome(dose: ArrayLike, metric: ArrayLike) -> FitOutcome:
    """Fit seed 003 eq. 1, ``D(B) = D0 + A·exp(−B/α)``, or say why not.

    The fit works in ``(D0, A, ln α)``. The start is the best point of a grid search
    over ``log α`` (log-spaced from a decade below the smallest dose to a decade above
    the largest), where ``D0`` and ``A`` follow by linear least squares; ``ln α`` is
    bounded to that range during refinement.

    Parameters
    ----------
    dose : array_like
        Electron dose ``B`` of each run [e/Å²]; must be positive.
    metric : array_like
        Metric of each run, e.g. detectability [metric unit].

    Returns
    -------
    FitOutcome
        ``result.params`` has ``D0`` [metric unit], ``A`` [metric unit] and ``alpha``
        [e/Å²]; ``result`` is None with fewer than four distinct doses, when the fit
        fails, or when ``α`` ends on the edge of its range (unconstrained by the data).
    """
    cleaned = _clean_xy(dose, metric, "dose")
    if isinstance(cleaned, str):
        return FitOutcome(None, cleaned)
    x, y = cleaned
    lo = math.log(float(x.min())) - math.log(10.0)
    hi = math.log(float(x.max())) + math.log(10.0)
    best: tuple[float, float, float, float] | None = None
    for log_alpha in np.linspace(lo, hi, _GRID_POINTS):
        d0, amp, sse = _linear_pair(np.exp(-x / math.exp(log_alpha)), y)
        if best is None or sse < best[3]:
            best = (d0, amp, float(log_alpha), sse)
    assert best is not None

    def model(b: NDArray[np.float64], d0: float, amp: float, log_alpha: float) -> Any:
        return _dose_model(b, d0, amp, math.exp(log_alpha))

    refined = _refine(
        model, x, y, [best[0], best[1], best[2]], ([-np.inf, -np.inf, lo], [np.inf, np.inf, hi])
    )
    if isinstance(refined, str):
        return FitOutcome(None, refined)
    popt, pcov = refined
    if _at_bound(float(popt[2]), lo, hi):
        return FitOutcome(
            None,
            f"characteristic dose α = {math.exp(float(popt[2])):.3g} e/Å² hit the edge of the "
            f"searched range [{math.exp(lo):.3g}, {math.exp(hi):.3g}]; the data do not "
            "constrain it",
        )
    alpha = math.exp(float(popt[2]))
    params = {"D0": float(popt[0]), "A": float(popt[1]), "alpha": alpha}
    se = _stderr(pcov, np.array([1.0, 1.0, alpha]))
    result = FitResult(
        model="dose_exponential",
        params=params,
        stderr={k: float(s) for k, s in zip(params, se, strict=True)},
        r_squared=_r_squared(y, _dose_model(x, **params)),
        n=int(x.size),
        formula="D = D0 + A·exp(−B/α)",
    )
    return FitOutcome(result)


def fit_dose(dose: ArrayLike, metric: ArrayLike) -> FitResult | None:
    """Fit seed 003 eq. 1, ``D(B) = D0 + A·exp(−B/α)``; None when it cannot be made.

    See :func:`fit_dose_outcome` for the method and the reason of a failure.

    Parameters
    ----------
    dose : array_like
        Electron dose ``B`` of each run [e/Å²].
    metric : array_like
        Metric of each run [metric unit].

    Returns
    -------
    FitResult or None
        Parameters ``D0``, ``A`` [metric unit] and ``alpha`` [e/Å²].
    """
    return fit_dose_outcome(dose, metric).result


_B_MIN, _B_MAX = 1e-3, 10.0
"""Range of the learning-curve exponent ``b`` [1] searched and allowed in the fit."""


def fit_size_outcome(size: ArrayLike, metric: ArrayLike) -> FitOutcome:
    """Fit the learning curve ``F(n) = F∞ − a·n^(−b)`` (``b > 0``), or say why not.

    Sizes are scaled by their geometric mean ``n̄`` internally, ``F∞ − c·(n/n̄)^(−b)``
    with ``a = c·n̄^b``. The start is the best point of a log-spaced grid search over
    ``b`` in [1e-3, 10], where ``F∞`` and ``c`` follow by linear least squares; ``b``
    stays within that range during refinement.

    Parameters
    ----------
    size : array_like
        Training-set size ``n`` of each run [images]; must be positive.
    metric : array_like
        Metric of each run [metric unit].

    Returns
    -------
    FitOutcome
        ``result.params`` has ``F_inf`` [metric unit], ``a`` [metric unit·images^b]
        and ``b`` [1]; ``result`` is None with fewer than four distinct sizes, when the
        fit fails, or when ``b`` ends on the edge of its range (unconstrained).
    """
    cleaned = _clean_xy(size, metric, "size")
    if isinstance(cleaned, str):
        return FitOutcome(None, cleaned)
    x, y = cleaned
    log_ref = float(np.mean(np.log(x)))
    u = x / math.exp(log_ref)
    best: tuple[float, float, float, float] | None = None
    for b in np.geomspace(_B_MIN, _B_MAX, _GRID_POINTS):
        f_inf, neg_c, sse = _linear_pair(u ** (-b), y)
        if best is None or sse < best[3]:
            best = (f_inf, -neg_c, float(b), sse)
    assert best is not None
    refined = _refine(
        _size_model,
        u,
        y,
        [best[0], best[1], best[2]],
        ([-np.inf, -np.inf, _B_MIN], [np.inf, np.inf, _B_MAX]),
    )
    if isinstance(refined, str):
        return FitOutcome(None, refined)
    popt, pcov = refined
    f_inf, c, b = (float(v) for v in popt)
    if _at_bound(math.log(b), math.log(_B_MIN), math.log(_B_MAX)):
        return FitOutcome(
            None,
            f"exponent b = {b:.3g} hit the edge of the allowed range [{_B_MIN:g}, {_B_MAX:g}]; "
            "the data do not constrain it",
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
    result = FitResult(
        model="size_power_law",
        params=params,
        stderr={k: float(s) for k, s in zip(params, se, strict=True)},
        r_squared=_r_squared(y, _size_model(x, **params)),
        n=int(x.size),
        formula="F = F∞ − a·n^(−b)",
    )
    return FitOutcome(result)


def fit_size(size: ArrayLike, metric: ArrayLike) -> FitResult | None:
    """Fit the learning curve ``F(n) = F∞ − a·n^(−b)``; None when it cannot be made.

    See :func:`fit_size_outcome` for the method and the reason of a failure.

    Parameters
    ----------
    size : array_like
        Training-set size ``n`` of each run [images].
    metric : array_like
        Metric of each run [metric unit].

    Returns
    -------
    FitResult or None
        Parameters ``F_inf`` [metric unit], ``a`` [metric unit·images^b], ``b`` [1].
    """
    return fit_size_outcome(size, metric).result
