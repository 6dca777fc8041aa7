"""``hpcbench evaluate`` and ``predict`` on a trained study: no retraining, same scores."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from hpcbench.apply import AtomFinder, label_files, parse_radius, predict_images
from hpcbench.apply.evaluate import evaluate_study
from hpcbench.apply.resolve import resolve_model
from hpcbench.cli import main
from hpcbench.plan import expand_trials
from hpcbench.study import Study, validate_study_data
from hpcbench.tracking import TAG_IMAGES
from hpcbench.train.sweep import train
from tests.train.train_helpers import write_dataset, wse2_study

PT = Path(__file__).resolve().parents[2] / "data" / "pt-single-atoms-haadf"
TRAIN: dict[str, Any] = {
    "models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 3}},
    "classes": ["dopant"],
    "epochs": 2,
    "batch_size": 8,
    "augment": {"crop": [32, 32]},
    "axes": {"dose": [1e4, 1e6]},
    "repeats": 1,
}


def _with_import(study: Study, folder: Path) -> Study:
    """The same study with an import ``pt`` added (not a test set: keys unchanged)."""
    data = study.model_dump(mode="json")
    data["imports"] = {
        "pt": {
            "path": str(folder),
            "labels": str(folder / "labels"),
            "pixel_size": 0.293,
            "target_pixel_size": 0.586,
            "classes": ["dopant"],
        }
    }
    return validate_study_data(data)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path, Path]:
    """A two-trial study trained through Tune + MLflow, and two real Pt images."""
    root = tmp_path_factory.mktemp("evaluate")
    study = wse2_study(TRAIN, name="evaluated")
    write_dataset(study, "wse2", root)
    result = train(study, root=root, log=lambda line: None)
    assert not result.errored
    folder = tmp_path_factory.mktemp("pt2")
    (folder / "labels").mkdir()
    for stem in sorted(p.stem for p in (PT / "tif_data").glob("*.tif"))[:2]:
        shutil.copy(PT / "tif_data" / f"{stem}.tif", folder)
        shutil.copy(
            PT / "label_coordinates" / f"{stem[:3]}_Results.csv",
            folder / "labels" / f"{stem}_Results.csv",
        )
    return study, root, folder


def _runs(root: Path, name: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "hpcbench.trial_key" in r.data.tags
    ]


def test_evaluate_adds_a_test_set_without_retraining(trained: tuple[Study, Path, Path]) -> None:
    study, root, folder = trained
    extended = _with_import(study, folder)
    assert [t.key for t in expand_trials(extended)] == [t.key for t in expand_trials(study)]
    before = {
        r.info.run_id: (r.info.end_time, r.data.metrics["val/loss"])
        for r in _runs(root, "evaluated")
    }
    result = evaluate_study(extended, "pt", root=root)
    assert sorted(result.scored) == sorted(before) and not result.skipped
    runs = _runs(root, "evaluated")
    assert len(runs) == len(before)  # no trial ran again: same runs, same end times
    for run in runs:
        assert (run.info.end_time, run.data.metrics["val/loss"]) == before[run.info.run_id]
        metrics = run.data.metrics
        f1 = metrics["test/pt/detection_f1"]
        assert 0.0 <= f1 <= 1.0 and math.isclose(f1, result.f1[run.info.run_id])
        counts = json.loads(run.data.tags[f"{TAG_IMAGES}pt"])
        assert len(counts) == 2 and all(len(c) == 3 for c in counts)
        tp = sum(c[0] for c in counts)
        fp = sum(c[1] for c in counts)
        fn = sum(c[2] for c in counts)
        # The pooled score is the pooled per-image counts; labels are the hand labels.
        assert tp + fn == sum(
            len((folder / "labels" / f"{p.stem}_Results.csv").read_text().splitlines()) - 1
            for p in sorted(folder.glob("*.tif"))
        )
        if tp + fp + fn:
            assert math.isclose(f1, 2 * tp / (2 * tp + fp + fn))
    again = evaluate_study(extended, "pt", root=root)
    assert not again.scored and len(again.skipped) == len(before)
    # The report gains a real-data section with each condition's pooled F1.
    from hpcbench.report.build import build_report

    page = build_report(
        "evaluated", tracking_uri=f"sqlite:///{root.resolve() / 'mlflow.db'}", out=root / "r"
    )
    text = (page.parent / "report.md").read_text()
    assert "## Real data" in text
    for run in runs:
        assert run.data.tags["hpcbench.condition"] in text.split("## Real data")[1]


def test_evaluate_errors_are_one_line(
    trained: tuple[Study, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    study, root, folder = trained
    with pytest.raises(ValueError, match="has no dataset 'nope'"):
        evaluate_study(study, "nope", root=root)
    with pytest.raises(ValueError, match="no MLflow store"):
        evaluate_study(_with_import(study, folder), "pt", root=tmp_path)


def test_predict_resolves_the_best_repeat_and_matches_its_own_scoring(
    trained: tuple[Study, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study, root, folder = trained
    path = tmp_path / "study.yaml"
    import yaml

    path.write_text(yaml.safe_dump(study.model_dump(mode="json")))
    with pytest.raises(ValueError, match="2 conditions match"):
        resolve_model(str(path), root=root)
    resolved = resolve_model(str(path), condition="dose=1e6", root=root)
    # the same study edited (another trial key): its old runs are not its models
    edited = study.model_dump(mode="json")
    edited["train"]["epochs"] = 3
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(ValueError, match="no complete run of condition 'dose=1e6'"):
        resolve_model(str(tmp_path / "edited.yaml"), condition="dose=1e6", root=root)
    assert "dose=1e+06" in resolved.description and resolved.run_id
    finder = AtomFinder.load(resolved.path)
    assert finder.pixel_size == pytest.approx(0.1) and finder.tile == (32, 32)
    images = sorted(folder.glob("*.tif"))
    labels = label_files(images, folder / "labels")
    result = predict_images(
        finder,
        images,
        pixel_size=0.293,
        out_dir=tmp_path / "out",
        labels=labels,
        radii=[parse_radius("5px")],
        progress=None,
    )
    for image in images:
        rows = (tmp_path / "out" / f"{image.stem}.csv").read_text().splitlines()
        assert rows[0] == "x,y,x_A,y_A,class,score"
        assert (tmp_path / "out" / f"{image.stem}.png").read_bytes()[:4] == b"\x89PNG"
    pooled = result.pooled()["5px"]
    assert pooled.tp + pooled.fn == sum(
        len(r.labels) for r in result.images if r.labels is not None
    )
    # The CLI prints the same pooled line and writes scores.csv.
    code = main(
        [
            "predict",
            str(path),
            *map(str, images),
            "--condition",
            "dose=1e6",
            "--root",
            str(root),
            "--pixel-size",
            "0.293",
            "--labels",
            str(folder / "labels"),
            "--match-radius",
            "5px",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    assert f"TP {pooled.tp}, FP {pooled.fp}, FN {pooled.fn}" in out
    assert "Downloading artifacts" not in captured.err  # no MLflow progress bar
    assert (tmp_path / "cli" / "scores.csv").read_text().startswith("radius,image,tp,fp,fn")
