"""Reports from a real SQLite MLflow store holding synthetic runs with known truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_helpers import ALPHA, bar_ends, make_store

from hpcbench.report import statistics as st
from hpcbench.report.aggregate import ReportError, load_runs
from hpcbench.report.build import FIT_COLUMNS, build_report
from hpcbench.report.figures import _build_metric_vs
from hpcbench.tracking import (
    client_for,
    ensure_experiment,
    record_grid,
)

STUDY = "synthetic"
DOSES = [1e3, 1e4, 1e5, 1e6]


def _make_store(root: Path, *, doses: list[float], repeats: int = 3) -> str:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_store(uri, STUDY, {"model": ["fcn", "unet"], "dose": doses}, repeats=repeats)
    return uri


def test_report_recovers_the_dose_curve_and_is_deterministic(tmp_path: Path) -> None:
    uri = _make_store(tmp_path, doses=DOSES)
    out = tmp_path / "reports" / STUDY
    html = build_report(STUDY, tracking_uri=uri, out=out)
    assert html == out / "report.html"
    runs = pd.read_csv(out / "results.csv")
    assert len(runs) == 2 * 4 * 3
    assert list(runs.columns[:6]) == ["run_id", "trial_key", "condition", "repeat", "model", "dose"]
    # Per-model dose fits recover the generating curve.
    fits = pd.read_csv(out / "tables" / "fits.csv")
    mine = fits[(fits["metric"] == "heldout/f1") & (fits["group"] == "unet")]
    values = dict(zip(mine["parameter"], mine["value"], strict=True))
    assert values["alpha"] == pytest.approx(ALPHA, rel=0.1)
    assert values["D0"] == pytest.approx(0.9, abs=0.01)
    assert values["A"] == pytest.approx(-0.7, abs=0.02)
    # Every row says what the fit is: variables with units, each parameter's bound.
    assert list(fits.columns) == FIT_COLUMNS
    assert set(mine["formula"]) == {"D = D0 + A·exp(−B/α)"}
    assert set(mine["variables"]) == {"D: heldout/f1 [1]; B: electron dose [e/Å²]"}
    rows = mine.set_index("parameter")
    assert rows.loc["D0", "description"] == "value as B → ∞ (no Poisson noise) [1]"
    assert rows.loc["A", "description"] == "amplitude: D0 + A is the value at B = 0 [1]"
    assert rows.loc["alpha", "description"] == ("characteristic dose: D − D0 = A/e at B = α [e/Å²]")
    assert rows["bounds"].to_dict() == {
        "D0": "0 ≤ D0 ≤ 1",
        "A": "0 ≤ D0 + A ≤ 1",
        "alpha": "100 ≤ α ≤ 1e+07 e/Å²",  # a decade beyond the doses 1e3-1e6
    }
    assert not rows["at_bound"].any() and (rows["degenerate_left_out"] == 0).all()
    # Levels summarised with n and CIs; the dose effect is significant, the pairs named.
    summary = pd.read_csv(out / "tables" / "dose.csv")
    f1 = summary[summary["metric"] == "heldout/f1"]
    assert f1["n"].tolist() == [6, 6, 6, 6]
    assert (f1["ci_low"] <= f1["mean"]).all() and (f1["mean"] <= f1["ci_high"]).all()
    tests = pd.read_csv(out / "tables" / "dose-tests.csv")
    assert tests.loc[tests["metric"] == "heldout/f1", "p_value"].item() < 0.01
    text = (out / "report.md").read_text()
    assert "## Effect of dose" in text and "Kruskal–Wallis" in text and "Holm" in text
    assert "D = D0 + A·exp(−B/α)" in text
    assert "B the electron dose [e/Å²]" in text and "(bounds: 0 ≤ D0 ≤ 1; 0 ≤ D0 + A ≤ 1;" in text
    assert "α = 2" in text and " e/Å²; R² = " in text  # the fitted α with its unit
    assert "seed 001 trained at least 5 per condition" in text  # 3 repeats: a caveat
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<table>" in page
    # Rebuilding from MLflow alone gives the same tables byte for byte.
    before = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    before["results.csv"] = (out / "results.csv").read_bytes()
    build_report(STUDY, tracking_uri=uri, out=out)
    after = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    after["results.csv"] = (out / "results.csv").read_bytes()
    assert before == after
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_missing_level_is_reported_not_fatal(tmp_path: Path) -> None:
    uri = _make_store(tmp_path, doses=[-1.0, *DOSES])  # -1: declared, never run
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    text = (out / "report.md").read_text()
    assert "No complete runs at" in text
    assert "trials have no complete run" in text
    summary = pd.read_csv(out / "tables" / "dose.csv")
    assert summary[summary["metric"] == "heldout/f1"]["n"].tolist() == [0, 6, 6, 6, 6]


def test_only_the_newest_grid_is_reported(tmp_path: Path) -> None:
    uri = _make_store(tmp_path, doses=DOSES)
    client = client_for(uri)
    experiment = ensure_experiment(client, STUDY, uri)
    first = load_runs(uri, STUDY)
    assert len(first.runs) == 24
    unet = first.runs[first.runs["model"] == "unet"]
    keep = set(unet["trial_key"])
    trials = [{"key": k, "condition": "", "repeat": 0} for k in sorted(keep)]
    record_grid(client, experiment, study=STUDY, grid="g2", trials=trials, spec={})
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    assert set(pd.read_csv(out / "results.csv")["trial_key"]) == keep
    build_report(STUDY, tracking_uri=uri, out=out, grid="g1")
    assert len(pd.read_csv(out / "results.csv")) == 24


def test_no_experiment_is_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ReportError, match=r"^no MLflow experiment 'nothing' in sqlite"):
        build_report("nothing", tracking_uri=uri, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_architecture_by_number_of_classes_table(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    classes = [["anion_vacancy"], ["anion_vacancy", "metal_vacancy"]]
    make_store(uri, STUDY, {"model": ["fcn", "unet"], "classes": classes}, repeats=2)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    table = pd.read_csv(out / "tables" / "model-by-classes.csv")
    assert list(table.columns) == ["model", "2", "3"]  # N = classes + background
    runs = pd.read_csv(out / "results.csv")
    expected = runs[(runs["model"] == "unet") & (runs["n_classes"] == 3)]["heldout/f1"].mean()
    assert table.loc[table["model"] == "unet", "3"].item() == pytest.approx(expected)
    assert "## Architecture × number of classes" in (out / "report.md").read_text()


def test_paired_comparison_by_seed(tmp_path: Path) -> None:
    from scipy import stats

    uri = _make_store(tmp_path, doses=DOSES[:2], repeats=4)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    paired = pd.read_csv(out / "tables" / "model-paired.csv")
    row = paired[paired["metric"] == "heldout/f1"].iloc[0]
    assert (row["a"], row["b"], row["n"]) == ("fcn", "unet", 4 * 2)  # repeats x doses
    # The same pairs by hand: match runs on repeat and dose.
    runs = pd.read_csv(out / "results.csv")
    wide = runs.pivot_table(index=["repeat", "dose"], columns="model", values="heldout/f1")
    diff = (wide["unet"] - wide["fcn"]).to_numpy()
    assert row["mean_difference"] == pytest.approx(diff.mean())
    assert row["p_value"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert row["higher"] == int((diff > 0).sum())
    assert "Paired by seed" in (out / "report.md").read_text()


def test_figure_bars_are_the_tables_intervals(tmp_path: Path) -> None:
    uri = _make_store(tmp_path, doses=DOSES, repeats=2)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    points = pd.read_csv(out / "tables" / "dose-by-model.csv")
    assert list(points.columns) == [
        "metric",
        "model",
        "level",
        "n",
        "degenerate",
        "mean",
        "ci_low",
        "ci_high",
    ]
    runs = load_runs(uri, STUDY).runs
    for metric in ("heldout/f1", "test/other/f1"):
        figure = _build_metric_vs(runs, "dose", metric, hue="model", seed=0)
        containers = figure.axes[0].containers  # one per model, then the legend's
        for model, container in zip(["fcn", "unet"], containers, strict=False):
            table = points[(points["metric"] == metric) & (points["model"] == model)]
            drawn = np.array(bar_ends(container))
            np.testing.assert_allclose(drawn[:, 0], table["level"])
            np.testing.assert_allclose(drawn[:, 1], table["ci_low"], rtol=1e-9)
            np.testing.assert_allclose(drawn[:, 2], table["ci_high"], rtol=1e-9)
            # Two runs per point: the 95 % bootstrap interval is their range.
            for dose, low, high in drawn:
                pair = runs.loc[(runs["model"] == model) & (runs["dose"] == dose), metric]
                assert (low, high) == pytest.approx((pair.min(), pair.max()), abs=1e-12)
    # Here a condition is a (model, dose) point: the conditions table agrees.
    conditions = pd.read_csv(out / "tables" / "conditions.csv")
    f1 = points[points["metric"] == "heldout/f1"]
    np.testing.assert_allclose(conditions["heldout/f1 ci_low"], f1["ci_low"], rtol=1e-9)
    np.testing.assert_allclose(conditions["heldout/f1 ci_high"], f1["ci_high"], rtol=1e-9)
    text = (out / "report.md").read_text()
    assert "n = 2 runs (seeded; the numbers of `tables/dose-by-model.csv`)" in text
    assert "Boxes span the quartiles of the runs" in text
    assert "covers it with probability 1 − 2^(1−n), 50 % at n = 2" in text


def _collapsed(condition: dict[str, Any], repeat: int) -> bool:
    """FCN collapses at 1e3 e/Å² and, for one seed, at 1e4 (as the quickstart's did)."""
    dose = condition["dose"]
    return bool(condition["model"] == "fcn" and (dose == 1e3 or (dose == 1e4 and repeat == 0)))


def test_degenerate_runs_are_flagged_counted_and_left_out_of_fits(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doses = [1e3, 1e4, 3e4, 1e5, 1e6]
    make_store(
        uri, STUDY, {"model": ["fcn", "unet"], "dose": doses}, repeats=2, collapse=_collapsed
    )
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    results = pd.read_csv(out / "results.csv")
    flagged = results[results["degenerate"]]
    assert sorted(zip(flagged["model"], flagged["dose"], flagged["repeat"], strict=True)) == [
        ("fcn", 1e3, 0),
        ("fcn", 1e3, 1),
        ("fcn", 1e4, 0),
    ]
    conditions = pd.read_csv(out / "tables" / "conditions.csv")
    assert conditions["degenerate"].tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    summary = pd.read_csv(out / "tables" / "dose.csv")
    assert summary[summary["metric"] == "heldout/f1"]["degenerate"].tolist() == [2, 1, 0, 0, 0]
    points = pd.read_csv(out / "tables" / "dose-by-model.csv")
    fcn_points = points[(points["metric"] == "heldout/f1") & (points["model"] == "fcn")]
    assert fcn_points["degenerate"].tolist() == [2, 1, 0, 0, 0]
    assert fcn_points["n"].tolist() == [2, 2, 2, 2, 2]  # still counted in the means
    # The fits leave them out: the FCN fit is the fit of its 7 working runs.
    runs = load_runs(uri, STUDY).runs
    fits = pd.read_csv(out / "tables" / "fits.csv")
    mine = fits[(fits["metric"] == "heldout/f1") & (fits["group"] == "fcn")]
    assert set(mine["degenerate_left_out"]) == {3} and set(mine["n"]) == {7}
    working = runs[(runs["model"] == "fcn") & ~runs["degenerate"]]
    expected = st.fit_dose(working["dose"], working["heldout/f1"], bounds=(0.0, 1.0))
    assert expected is not None
    values = dict(zip(mine["parameter"], mine["value"], strict=True))
    assert values == pytest.approx(expected.params, rel=1e-8)
    assert values["D0"] == pytest.approx(0.8, abs=0.02)
    assert values["alpha"] == pytest.approx(ALPHA, rel=0.15)
    unet = fits[(fits["metric"] == "heldout/f1") & (fits["group"] == "unet")]
    assert set(unet["degenerate_left_out"]) == {0} and set(unet["n"]) == {10}
    text = (out / "report.md").read_text()
    assert (
        "3 of 20 runs are degenerate — their network found no defect pixel on its held-out "
        "split" in text
    )
    assert "model=fcn dose=1e3: 2 of 2, model=fcn dose=1e4: 1 of 2." in text
    assert "n = 7, 3 degenerate runs left out." in text
    assert "| 1e3 | 4 (2 degenerate) |" in text
    assert "crosses are the 3 degenerate runs (no defect pixel found), left out of the fits" in text
