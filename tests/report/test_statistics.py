"""Tests of hpcbench.report.statistics: summaries, bootstrap, tests, Holm, fits."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from hpcbench.report import statistics as st

# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(1).normal(size=30)
    assert st.bootstrap_ci(x, seed=7) == st.bootstrap_ci(x, seed=7)
    assert st.bootstrap_ci(x, seed=7) != st.bootstrap_ci(x, seed=8)


def test_bootstrap_ci_drops_nans_and_needs_two_values() -> None:
    lo, hi = st.bootstrap_ci([1.0, math.nan])
    assert math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in st.bootstrap_ci([]))
    x = [1.0, 2.0, 3.0, 4.0]
    assert st.bootstrap_ci([*x, math.nan], seed=3) == st.bootstrap_ci(x, seed=3)
    lo, hi = st.bootstrap_ci(x, seed=3)
    assert 1.0 <= lo < 2.5 < hi <= 4.0


def test_bootstrap_ci_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="confidence"):
        st.bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        st.bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(2024)
    draws = rng.normal(loc=3.0, scale=2.0, size=(400, 20))
    covered = 0
    for i, x in enumerate(draws):
        lo, hi = st.bootstrap_ci(x, n_resamples=2000, seed=i)
        covered += lo <= 3.0 <= hi
    # The percentile bootstrap under-covers slightly at n = 20 (about 0.93).
    assert 0.91 <= covered / len(draws) <= 0.98


# --------------------------------------------------------------------------- summaries


def test_summarize_keeps_order_and_handles_missing_levels() -> None:
    groups = {"b": [1.0, 2.0, 3.0, 4.0, math.nan], "a": [], "c": [5.0], "d": [math.nan]}
    out = st.summarize(groups, seed=0)
    assert [s.level for s in out] == ["b", "a", "c", "d"]
    b, a, c, d = out
    assert b.n == 4
    assert b.median == pytest.approx(2.5)
    assert (b.q1, b.q3, b.iqr) == pytest.approx((1.75, 3.25, 1.5))
    assert b.mean == pytest.approx(2.5)
    assert b.ci_low < 2.5 < b.ci_high
    for empty in (a, d):
        assert empty.n == 0
        for v in (empty.median, empty.q1, empty.q3, empty.iqr, empty.mean):
            assert math.isnan(v)
        assert math.isnan(empty.ci_low) and math.isnan(empty.ci_high)
    # One run: location is defined, the interval is not.
    assert c.n == 1 and c.median == 5.0 and c.iqr == 0.0
    assert math.isnan(c.ci_low)


def test_summarize_is_deterministic() -> None:
    groups = {1: list(np.random.default_rng(5).normal(size=10))}
    assert st.summarize(groups, seed=3) == st.summarize(groups, seed=3)


# --------------------------------------------------------------------------- Holm


def test_holm_hand_computed() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # m = 4; sorted ascending: 0.005 (idx 3), 0.01 (idx 0), 0.03 (idx 2), 0.04 (idx 1).
    # Scaled (m - j + 1)·p(j): 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, 1·0.04 = 0.04.
    # Running maximum: 0.02, 0.03, 0.06, 0.06 (0.04 is raised to 0.06 for monotonicity).
    # Back in input order: [0.03, 0.06, 0.06, 0.02].
    np.testing.assert_allclose(st.holm(p), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_is_monotone() -> None:
    # m = 3: 3·0.2 = 0.6, 2·0.5 = 1.0, 1·0.9 = 0.9 → running max 0.6, 1.0, 1.0.
    np.testing.assert_allclose(st.holm([0.9, 0.2, 0.5]), [1.0, 0.6, 1.0])
    p = np.random.default_rng(11).uniform(size=25)
    adj = st.holm(list(p))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p) and np.all(adj <= 1.0)


def test_holm_nan_stays_nan_and_does_not_count() -> None:
    adj = st.holm([0.01, math.nan, 0.04])
    # m = 2 (NaN excluded): 2·0.01 = 0.02, 1·0.04 = 0.04.
    assert math.isnan(adj[1])
    np.testing.assert_allclose(adj[[0, 2]], [0.02, 0.04])
    assert adj.dtype == np.float64
    assert st.holm([]).shape == (0,)
    assert np.isnan(st.holm([math.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        st.holm([1.5])


def test_holm_matches_statsmodels_if_installed() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).uniform(0, 0.2, size=12)
    expected = multitest.multipletests(p, method="holm")[1]
    np.testing.assert_allclose(st.holm(list(p)), expected)


# --------------------------------------------------------------------------- tests


def _three_groups() -> dict[str, list[float]]:
    rng = np.random.default_rng(42)
    return {
        "x": list(rng.normal(0.0, 1.0, size=12)),
        "y": list(rng.normal(0.0, 1.0, size=12)),
        "shifted": list(rng.normal(4.0, 1.0, size=12)),
    }


def test_kruskal_wallis_detects_a_clear_difference() -> None:
    res = st.kruskal_wallis(_three_groups())
    assert res is not None
    assert res.test == "Kruskal-Wallis"
    assert res.p_value < 1e-4 and res.statistic > 0


def test_kruskal_wallis_does_not_flag_a_null() -> None:
    rng = np.random.default_rng(7)
    groups = {k: list(rng.normal(size=15)) for k in range(4)}
    res = st.kruskal_wallis(groups)
    assert res is not None
    assert res.p_value > 0.05


def test_kruskal_wallis_skips_with_a_note() -> None:
    outcome = st.kruskal_wallis_outcome({"a": [1.0, 2.0, 3.0], "b": [4.0]})
    assert outcome.result is None
    assert "needs >= 2 levels with >= 2 runs" in outcome.note
    assert "'b': 1" in outcome.note
    assert st.kruskal_wallis({"a": [1.0, 2.0, 3.0], "b": [4.0, math.nan]}) is None
    identical = st.kruskal_wallis_outcome({"a": [1.0, 1.0], "b": [1.0, 1.0]})
    assert identical.result is None and "identical" in identical.note


def test_kruskal_wallis_leaves_out_thin_levels_and_says_so() -> None:
    groups = {**_three_groups(), "thin": [0.0]}
    outcome = st.kruskal_wallis_outcome(groups)
    assert outcome.result is not None
    assert "thin" in outcome.note


def test_pairwise_mann_whitney_three_groups() -> None:
    out = st.pairwise_mann_whitney(_three_groups())
    assert [(r.a, r.b) for r in out] == [("x", "y"), ("x", "shifted"), ("y", "shifted")]
    by_pair = {(r.a, r.b): r for r in out}
    assert not by_pair["x", "y"].significant
    assert by_pair["x", "shifted"].significant and by_pair["y", "shifted"].significant
    for r in out:
        assert r.n_a == r.n_b == 12
        assert r.p_holm >= r.p_value
    np.testing.assert_allclose([r.p_holm for r in out], st.holm([r.p_value for r in out]))


def test_pairwise_mann_whitney_lists_pairs_lacking_data() -> None:
    groups = {**_three_groups(), "empty": []}
    out = st.pairwise_mann_whitney(groups)
    assert len(out) == 6
    lacking = [r for r in out if r.b == "empty"]
    assert len(lacking) == 3
    for r in lacking:
        assert r.n_b == 0 and not r.significant
        assert math.isnan(r.statistic) and math.isnan(r.p_value) and math.isnan(r.p_holm)
    # The empty level does not enlarge the Holm family (m stays 3).
    full = {(r.a, r.b): r.p_holm for r in st.pairwise_mann_whitney(_three_groups())}
    for r in out:
        if r.b != "empty":
            assert r.p_holm == pytest.approx(full[r.a, r.b])


# --------------------------------------------------------------------------- fits


@pytest.mark.parametrize("alpha", [3e5, 1e4, 1e5, 1e6])
def test_fit_dose_recovers_eq1_parameters(alpha: float) -> None:
    rng = np.random.default_rng(int(alpha))
    d0, amp = 0.9, -0.6
    # Four doses per decade over 1e4-1e8 e/Å², 5 repeats each. With fewer doses, α = 1e4
    # leaves a single dose on the slope and A, α are only known to about 6 % (noise-limited).
    dose = np.repeat(np.logspace(4, 8, 17), 5)
    metric = d0 + amp * np.exp(-dose / alpha) + rng.normal(0.0, 0.01, size=dose.size)
    fit = st.fit_dose(dose, metric)
    assert fit is not None
    # The global minimum was found: no worse than the true parameters.
    assert np.sum((metric - fit.predict(dose)) ** 2) <= np.sum(
        (metric - (d0 + amp * np.exp(-dose / alpha))) ** 2
    )
    assert fit.model == "dose_exponential"
    assert fit.formula == "D = D0 + A·exp(−B/α)"
    assert fit.n == dose.size
    assert fit.params["D0"] == pytest.approx(d0, rel=0.05)
    assert fit.params["A"] == pytest.approx(amp, rel=0.05)
    assert fit.params["alpha"] == pytest.approx(alpha, rel=0.05)
    assert fit.r_squared > 0.9  # most doses sit on the plateau, where only noise varies
    assert all(np.isfinite(v) and v > 0 for v in fit.stderr.values())
    np.testing.assert_allclose(
        fit.predict([1e4, 1e8]),
        [
            fit.params["D0"] + fit.params["A"] * math.exp(-1e4 / fit.params["alpha"]),
            fit.params["D0"] + fit.params["A"] * math.exp(-1e8 / fit.params["alpha"]),
        ],
    )


def test_fit_dose_declines_too_few_doses() -> None:
    dose = [1e4, 1e5, 1e6, 1e6, math.nan, 1e7]
    metric = [0.3, 0.5, 0.8, 0.81, 0.9, math.nan]
    outcome = st.fit_dose_outcome(dose, metric)
    assert outcome.result is None
    assert ">= 4 distinct" in outcome.note and "got 3" in outcome.note
    assert st.fit_dose(dose, metric) is None
    assert st.fit_dose([1.0, 2.0], [1.0]) is None


def test_fits_decline_parameters_the_data_do_not_constrain() -> None:
    noise = [0.1, 0.5, 0.2, 0.9, 0.3, 0.4]
    outcome = st.fit_dose_outcome(np.logspace(4, 8, 6), noise)
    assert outcome.result is None and "do not constrain" in outcome.note
    outcome = st.fit_size_outcome([10, 20, 40, 80, 160], noise[:5])
    assert outcome.result is None and "do not constrain" in outcome.note


def test_fit_of_a_constant_metric_is_flat() -> None:
    fit = st.fit_dose(np.logspace(4, 8, 6), np.full(6, 0.5))
    assert fit is not None
    assert fit.params["D0"] == pytest.approx(0.5)
    np.testing.assert_allclose(fit.predict(np.logspace(3, 9, 7)), 0.5, atol=1e-9)
    assert math.isnan(fit.r_squared)


def test_fit_size_recovers_the_learning_curve() -> None:
    rng = np.random.default_rng(0)
    f_inf, a, b = 0.85, 2.0, 0.5
    size = np.repeat(np.array([50, 100, 200, 500, 1000, 2000, 5000]), 3).astype(float)
    metric = f_inf - a * size ** (-b) + rng.normal(0.0, 0.005, size=size.size)
    fit = st.fit_size(size, metric)
    assert fit is not None
    assert fit.formula == "F = F∞ − a·n^(−b)"
    assert fit.params["F_inf"] == pytest.approx(f_inf, rel=0.05)
    assert fit.params["b"] == pytest.approx(b, rel=0.15)
    assert fit.params["a"] == pytest.approx(a, rel=0.25)
    assert fit.r_squared > 0.95
    np.testing.assert_allclose(
        fit.predict(size), fit.params["F_inf"] - fit.params["a"] * size ** (-fit.params["b"])
    )
    assert st.fit_size([10, 20, 40], [0.1, 0.2, 0.3]) is None
    assert "got 3" in st.fit_size_outcome([10, 20, 40], [0.1, 0.2, 0.3]).note


def test_module_runs_fast() -> None:
    start = time.perf_counter()
    st.summarize({k: list(range(30)) for k in range(10)})
    st.fit_dose(np.logspace(4, 8, 20), 0.9 - 0.6 * np.exp(-np.logspace(4, 8, 20) / 3e5))
    assert time.perf_counter() - start < 5.0


def test_paired_comparisons_match_scipy_and_count_wins() -> None:
    from scipy import stats

    a = [0.50, 0.40, 0.60, 0.55, 0.30, math.nan]
    b = [0.60, 0.60, 0.55, 0.85, 0.45, 0.90]
    (result,) = st.paired_comparisons({("raw", "gan"): (a, b)}, seed=1)
    diff = np.array([0.10, 0.20, -0.05, 0.30, 0.15])  # the NaN pair is dropped
    assert (result.a, result.b, result.n, result.higher, result.lower) == ("raw", "gan", 5, 4, 1)
    assert result.mean_difference == pytest.approx(diff.mean())
    expected = stats.wilcoxon(diff)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.ci_low < diff.mean() < result.ci_high


def test_paired_comparisons_exact_p_of_five_wins_and_holm() -> None:
    wins = ([0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.4, 0.6, 0.8, 1.0])
    ties = ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    first, second = st.paired_comparisons({("x", "y"): wins, ("x", "z"): ties})
    # All five differences positive: the exact two-sided signed-rank p is 2 / 2**5.
    assert first.higher == 5 and first.p_value == pytest.approx(2 / 32)
    # No non-zero difference: not tested, and not counted by Holm.
    assert math.isnan(second.p_value) and second.n == 3 and second.higher == 0
    assert first.p_holm == pytest.approx(first.p_value)
    with pytest.raises(ValueError, match="not matched"):
        st.paired_comparisons({("x", "y"): ([1.0, 2.0], [1.0])})


# --------------------------------------------------------------------------- bounded fits

# The quickstart's FCN runs (held-out F1, two seeds per dose): collapsed at 1e3 and 1e4.
QUICKSTART_DOSE = np.repeat([1e3, 1e4, 1e5, 1e6], 2)
QUICKSTART_FCN = np.array([0.0, 0.0, 0.0, 0.0, 0.6315, 0.6149, 0.7967, 0.8047])


def test_bootstrap_ci_of_two_or_three_runs_is_their_range() -> None:
    # Resample means of n values lie in [min, max], and a resample of only the minimum
    # (maximum) has probability 1/n^n >= 1/27 > 2.5 %: the 95 % interval is the range.
    assert st.bootstrap_ci([0.85, 0.97], seed=0) == (0.85, 0.97)
    assert st.bootstrap_ci([0.4, 0.1, 0.3], seed=4) == pytest.approx((0.1, 0.4), abs=1e-15)
    lo, hi = st.bootstrap_ci([0.1, 0.2, 0.3, 0.4], seed=0)
    assert 0.1 < lo < hi < 0.4  # 1/4^4 < 2.5 %: no longer the range


def test_bounded_dose_fit_keeps_the_curve_in_range_where_the_unbounded_leaves_it() -> None:
    free = st.fit_dose(QUICKSTART_DOSE, QUICKSTART_FCN)
    assert free is not None
    assert free.params["D0"] + free.params["A"] < -0.05  # the committed figure's −0.06
    outcome = st.fit_dose_outcome(QUICKSTART_DOSE, QUICKSTART_FCN, bounds=(0.0, 1.0))
    fit = outcome.result
    assert fit is not None
    # The lower end sits on its bound; the curve stays in [0, 1] far beyond the doses.
    assert fit.params["D0"] + fit.params["A"] == pytest.approx(0.0, abs=1e-9)
    assert fit.at_bound == ("A",)
    assert outcome.note == "D0 + A on its lower bound (0 ≤ D0 + A ≤ 1)"
    curve = fit.predict(np.geomspace(1.0, 1e9, 400))
    assert curve.min() >= 0.0 and curve.max() <= 1.0
    # The bounded optimum, by brute force: with D0 + A = 0 the model is
    # D0·(1 − exp(−B/α)), linear in D0 for each α.
    sse = float(np.sum((QUICKSTART_FCN - fit.predict(QUICKSTART_DOSE)) ** 2))
    best = math.inf
    for alpha in np.geomspace(1e2, 1e7, 20001):
        basis = 1.0 - np.exp(-QUICKSTART_DOSE / alpha)
        d0 = min(1.0, max(0.0, float(basis @ QUICKSTART_FCN / (basis @ basis))))
        best = min(best, float(np.sum((QUICKSTART_FCN - d0 * basis) ** 2)))
    assert sse <= best + 1e-9
    assert sse == pytest.approx(best, rel=1e-4)


def test_bounded_dose_fit_clamps_both_ends() -> None:
    # Scores clipped to [0, 1] from a curve that leaves it at both ends.
    dose = np.repeat(np.logspace(2, 7, 11), 2)
    metric = np.clip(1.1 - 1.2 * np.exp(-dose / 1e4), 0.0, 1.0)
    free = st.fit_dose(dose, metric)
    assert free is not None
    ends = (free.params["D0"], free.params["D0"] + free.params["A"])
    assert ends[0] > 1.0 and ends[1] < 0.0
    fit = st.fit_dose(dose, metric, bounds=(0.0, 1.0))
    assert fit is not None
    assert fit.params["D0"] == pytest.approx(1.0, abs=1e-9)
    assert fit.params["D0"] + fit.params["A"] == pytest.approx(0.0, abs=1e-9)
    assert set(fit.at_bound) == {"D0", "A"}
    curve = fit.predict(np.geomspace(1e-3, 1e12, 400))
    assert curve.min() >= 0.0 and curve.max() <= 1.0
    with pytest.raises(ValueError, match="low < high"):
        st.fit_dose(dose, metric, bounds=(1.0, 0.0))


def test_dose_fit_names_its_variables_units_and_bounds() -> None:
    dose = np.repeat([1e3, 1e4, 1e5, 1e6], 3)
    metric = 0.9 - 0.6 * np.exp(-dose / 3e4) + np.tile([-0.01, 0.0, 0.01], 4)
    fit = st.fit_dose(dose, metric, bounds=(0.0, 1.0))
    assert fit is not None
    assert fit.formula == st.DOSE_FORMULA == "D = D0 + A·exp(−B/α)"
    # Seed 003's names: B the beam dose (abscissa), α the characteristic dose (fitted).
    assert fit.variables["B"] == "electron dose [e/Å²]"
    assert fit.variables["alpha"].startswith("characteristic dose")
    assert fit.variables["alpha"].endswith("[e/Å²]")
    assert list(fit.variables) == ["B", *fit.params]
    # The grid over α spans a decade beyond the doses on either side: 1e2 to 1e7.
    assert fit.constraints == {
        "D0": "0 ≤ D0 ≤ 1",
        "A": "0 ≤ D0 + A ≤ 1",
        "alpha": "100 ≤ α ≤ 1e+07 e/Å²",
    }
    assert fit.at_bound == ()
    assert fit.params["alpha"] == pytest.approx(3e4, rel=0.1)
    unbounded = st.fit_dose(dose, metric)
    assert unbounded is not None
    assert unbounded.constraints["D0"] == "D0 unbounded"


def test_fits_leave_out_excluded_runs_and_count_them() -> None:
    dose = np.append(QUICKSTART_DOSE, [1e3, 1e4])
    unet_like = 0.88 - 0.3 * np.exp(-dose / 9e3) + np.resize([0.004, -0.004], dose.size)
    collapsed = np.zeros(dose.size, dtype=bool)
    collapsed[[0, 3]] = True
    metric = np.where(collapsed, 0.0, unet_like)
    metric[5] = math.nan  # a run without a score is not counted as left out
    collapsed[5] = True
    outcome = st.fit_dose_outcome(dose, metric, bounds=(0.0, 1.0), exclude=collapsed)
    assert outcome.excluded == 2
    kept = st.fit_dose_outcome(dose[~collapsed], metric[~collapsed], bounds=(0.0, 1.0))
    assert outcome.result is not None and kept.result is not None
    assert outcome.result.params == pytest.approx(kept.result.params)
    assert outcome.result.n == dose.size - 3
    # Leaving out every collapsed FCN run leaves two doses: no fit, and the count says why.
    fcn = st.fit_dose_outcome(
        QUICKSTART_DOSE, QUICKSTART_FCN, bounds=(0.0, 1.0), exclude=QUICKSTART_FCN == 0.0
    )
    assert fcn.result is None and fcn.excluded == 4 and "got 2" in fcn.note
    size = st.fit_size_outcome([10, 20, 40, 80, 160], [0.1] * 5, exclude=[True] * 5)
    assert size.result is None and size.excluded == 5
    with pytest.raises(ValueError, match="low < high"):
        st.fit_size_outcome([10, 20, 40, 80], [0.1] * 4, bounds=(0.0, 0.0))


def test_size_fit_keeps_its_plateau_in_range() -> None:
    size = np.repeat(np.array([50, 100, 200, 500, 1000, 2000]), 2).astype(float)
    metric = np.clip(1.08 - 2.0 * size**-0.5, 0.0, 1.0)  # would saturate above 1
    free = st.fit_size(size, metric)
    assert free is not None and free.params["F_inf"] > 1.0
    outcome = st.fit_size_outcome(size, metric, bounds=(0.0, 1.0))
    fit = outcome.result
    assert fit is not None
    assert fit.params["F_inf"] == pytest.approx(1.0, abs=1e-9)
    assert fit.at_bound == ("F_inf",)
    assert fit.constraints["F_inf"] == "0 ≤ F∞ ≤ 1"
    assert outcome.note == "F∞ on its upper bound (0 ≤ F∞ ≤ 1)"
    assert fit.variables["n"] == "training-set size [images]"
    assert fit.predict(np.geomspace(50, 1e9, 50)).max() <= 1.0
