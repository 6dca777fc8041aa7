"""Reports from a real SQLite MLflow store holding synthetic runs with known truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from report_helpers import ALPHA, make_store

from hpcbench.report.aggregate import ReportError, load_runs
from hpcbench.report.build import build_report
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
