"""The CycleGAN section of a report, read from a real SQLite MLflow store."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_helpers import make_cyclegan_runs, make_store

from hpcbench.report.aggregate import (
    CYCLEGAN_COLUMNS,
    cyclegan_history,
    load_cyclegan_runs,
    load_runs,
)
from hpcbench.report.build import build_report, relative_change
from hpcbench.report.figures import per_epoch
from hpcbench.tracking import client_for, record_grid

STUDY = "khan"
PNG = b"\x89PNG\r\n\x1a\n"
SEGMENTATION_AXES: dict[str, list[object]] = {"model": ["fcn", "unet"], "dose": [1e4, 1e5]}


def _store(root: Path) -> str:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_store(uri, STUDY, SEGMENTATION_AXES, repeats=2)
    return uri


def _without_cyclegan_section(text: str) -> str:
    return re.sub(r"## CycleGAN translation\n.*?(?=\n## )\n", "", text, flags=re.S)


def test_cyclegan_runs_are_read_as_logged(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    before = load_runs(uri, STUDY)
    logged = make_cyclegan_runs(uri, STUDY, ["small", "khan"], repeats=2)
    make_cyclegan_runs(uri, STUDY, ["broken"], repeats=1, complete=False)
    runs = load_cyclegan_runs(uri, STUDY)
    assert list(runs.columns) == list(CYCLEGAN_COLUMNS)
    assert len(runs) == 4  # the incomplete run is left out
    assert runs[["model", "repeat"]].values.tolist() == [
        ["khan", 0],
        ["khan", 1],
        ["small", 0],
        ["small", 1],
    ]
    for expected in logged:
        row = runs[runs["run_id"] == expected["run_id"]].iloc[0]
        assert row["trial_key"] == expected["trial_key"]
        assert row["model"] == expected["model"] and row["repeat"] == expected["repeat"]
        assert (row["source"], row["target"]) == ("simulation", "experiment")
        assert row["extractor"] == "spectral-v1"
        assert row["epochs"] == 4 and row["best_epoch"] == 4
        for name in ("frechet_distance", "histogram_kl", "power_spectrum_distance"):
            assert row[f"{name}_raw"] == expected[f"test/{name}_raw"]
            assert row[f"{name}_translated"] == expected[f"test/{name}"]
    # The segmentation table does not see the CycleGAN runs of the same experiment.
    after = load_runs(uri, STUDY)
    pd.testing.assert_frame_equal(before.runs, after.runs)
    assert after.incomplete == before.incomplete == 0
    assert after.configs == before.configs


def test_cyclegan_history_is_the_logged_validation_fid(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    logged = make_cyclegan_runs(uri, STUDY, ["khan"], repeats=2, epochs=5)
    runs = load_cyclegan_runs(uri, STUDY)
    history = cyclegan_history(uri, runs)
    assert len(history) == 2 * 5
    for expected in logged:
        mine = history[history["run_id"] == expected["run_id"]]
        assert mine["epoch"].tolist() == [1, 2, 3, 4, 5]
        np.testing.assert_allclose(mine["translated"], expected["history"])
        np.testing.assert_allclose(mine["raw"], [expected["raw"]] * 5)
    assert cyclegan_history(uri, runs.iloc[:0]).empty


def test_no_cyclegan_runs_is_an_empty_table(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    runs = load_cyclegan_runs(uri, STUDY)
    assert runs.empty and list(runs.columns) == list(CYCLEGAN_COLUMNS)


def test_relative_change() -> None:
    assert relative_change(200.0, 54.0) == pytest.approx(-0.73)
    assert relative_change(0.5, 0.75) == pytest.approx(0.5)
    assert math.isnan(relative_change(0.0, 1.0))
    assert math.isnan(relative_change(math.nan, 1.0))


def test_report_has_a_cyclegan_section(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    plain_tables = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    plain_results = (out / "results.csv").read_bytes()
    plain_text = (out / "report.md").read_text()

    logged = make_cyclegan_runs(uri, STUDY, ["khan", "small"], repeats=3)
    build_report(STUDY, tracking_uri=uri, out=out)

    # Per run: the logged values.
    table = pd.read_csv(out / "tables" / "cyclegan.csv")
    assert len(table) == 6
    for expected in logged:
        row = table[table["run_id"] == expected["run_id"]].iloc[0]
        assert row["frechet_distance_raw"] == pytest.approx(expected["test/frechet_distance_raw"])
        assert row["frechet_distance_translated"] == pytest.approx(
            expected["test/frechet_distance"]
        )
        assert row["histogram_kl_translated"] == pytest.approx(expected["test/histogram_kl"])
    # Per model: means over repeats and the relative change of the means.
    summary = pd.read_csv(out / "tables" / "cyclegan-summary.csv")
    assert summary["model"].tolist() == ["khan", "small"]
    assert summary["runs"].tolist() == [3, 3]
    text = (out / "report.md").read_text()
    for model in ("khan", "small"):
        mine = [e for e in logged if e["model"] == model]
        raw = float(np.mean([e["test/frechet_distance_raw"] for e in mine]))
        translated = float(np.mean([e["test/frechet_distance"] for e in mine]))
        row = summary[summary["model"] == model].iloc[0]
        assert row["frechet_distance_raw"] == pytest.approx(raw)
        assert row["frechet_distance_translated"] == pytest.approx(translated)
        assert row["frechet_distance_change"] == pytest.approx((translated - raw) / raw)
        percent = round(100 * (translated - raw) / raw)
        assert (
            f"| {model} | `spectral-v1` | 3 | {raw:.3f} → {translated:.3f} | −{-percent} % |"
            in (text)
        )
    # Figures are PNGs; each model's examples are its first repeat's artifact.
    assert (out / "figures" / "cyclegan-fid.png").read_bytes()[:8] == PNG
    client = client_for(uri)
    for model in ("khan", "small"):
        first = next(e for e in logged if e["model"] == model and e["repeat"] == 0)
        path = client.download_artifacts(first["run_id"], "predictions.png", str(tmp_path))
        examples = out / "figures" / f"cyclegan-{model}-examples.png"
        assert examples.read_bytes() == Path(path).read_bytes()
        assert examples.read_bytes()[:8] == PNG
    # The section, before the axis sections, names the extractor and its caveat.
    assert "## CycleGAN translation" in text
    assert text.index("## CycleGAN translation") < text.index("## Effect of model")
    assert "`spectral-v1`" in text and "not comparable" in text
    assert "](figures/cyclegan-fid.png)" in text
    assert "](figures/cyclegan-khan-examples.png)" in text
    page = (out / "report.html").read_text()
    assert "<h2>CycleGAN translation</h2>" in page
    # Everything else is as without CycleGAN runs.
    tables = {p.name: p.read_bytes() for p in (out / "tables").glob("*.csv")}
    assert set(tables) - set(plain_tables) == {"cyclegan.csv", "cyclegan-summary.csv"}
    assert {k: tables[k] for k in plain_tables} == plain_tables
    assert (out / "results.csv").read_bytes() == plain_results
    assert _without_cyclegan_section(text) == plain_text


def test_no_complete_cyclegan_run_no_section(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    make_cyclegan_runs(uri, STUDY, ["khan"], repeats=1, complete=False)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    assert "CycleGAN" not in (out / "report.md").read_text()
    assert "CycleGAN" not in (out / "report.html").read_text()
    assert not list(out.rglob("cyclegan*"))


def test_inception_fids_are_not_flagged(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    make_cyclegan_runs(uri, STUDY, ["khan"], repeats=1, extractor="inception")
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    text = (out / "report.md").read_text()
    assert "Inception-v3" in text and "not comparable" not in text


def test_detection_f1_of_other_test_sets_is_drawn(tmp_path: Path) -> None:
    uri = _store(tmp_path)
    client = client_for(uri)
    for run_id, f1 in load_runs(uri, STUDY).runs[["run_id", "test/other/f1"]].values:
        client.log_metric(run_id, "test/other/detection_f1", f1 - 0.05, step=1)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    for axis in ("model", "dose"):
        for metric in ("heldout-f1", "heldout-detection_f1", "test-other-f1"):
            assert (out / "figures" / f"{axis}-{metric}.png").is_file()
        assert (out / "figures" / f"{axis}-test-other-detection_f1.png").read_bytes()[:8] == PNG
    text = (out / "report.md").read_text()
    assert "### detection F1 (test: other)" in text
    assert "### IoU (held-out)" not in text  # IoU stays in the tables


def test_a_dataset_axis_with_translated_levels(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    levels = ["simulation", "simulation-cyclegan"]
    make_store(uri, STUDY, {"dataset": levels}, repeats=2)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    summary = pd.read_csv(out / "tables" / "dataset.csv")
    assert summary[summary["metric"] == "heldout/f1"]["level"].tolist() == levels
    assert (out / "figures" / "dataset-heldout-f1.png").read_bytes()[:8] == PNG
    assert "## Effect of dataset" in (out / "report.md").read_text()


def test_per_epoch_figure() -> None:
    history = pd.DataFrame(
        {
            "run_id": ["a"] * 3 + ["b"] * 3,
            "model": ["khan"] * 3 + ["small"] * 3,
            "epoch": [1, 2, 3] * 2,
            "translated": [250.0, 150.0, 90.0, 260.0, 200.0, 120.0],
            "raw": [280.0] * 3 + [270.0] * 3,
        }
    )
    png = per_epoch(history, value="translated", reference="raw", ylabel="FID")
    assert png[:8] == PNG
    assert per_epoch(history, value="translated", reference="raw", ylabel="FID") == png
    assert per_epoch(history.iloc[:0], value="translated")[:8] == PNG
    with pytest.raises(KeyError, match="raw_fid"):
        per_epoch(history, value="translated", reference="raw_fid")


def test_translated_datasets_are_listed_in_the_setup(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    levels = ["simulation", "simulation-cyclegan"]
    trials = make_store(uri, STUDY, {"dataset": levels}, repeats=1)
    client = client_for(uri)
    spec = {
        "name": STUDY,
        "datasets": {},
        "cyclegan": {"models": {"khan": {}, "small": {}}, "model": None},
        "translate": {
            "simulation-cyclegan": {"source": "simulation", "cyclegan": None, "repeat": 0},
            "simulation-small": {"source": "simulation", "cyclegan": "small", "repeat": 1},
        },
        "train": {"axes": {"dataset": levels}, "repeats": 1},
    }
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    record_grid(client, experiment, study=STUDY, grid="g2", trials=trials, spec=spec)
    out = tmp_path / "report"
    build_report(STUDY, tracking_uri=uri, out=out)
    text = (out / "report.md").read_text()
    assert (
        "- `simulation-cyclegan`: `simulation` through the generator of CycleGAN `khan`, "
        "repeat 0\n- `simulation-small`: `simulation` through the generator of CycleGAN "
        "`small`, repeat 1\n" in text
    )
