"""What the rendered report says about where it came from."""

from __future__ import annotations

from pathlib import Path

from hpcbench.report.render import display_uri


def test_display_uri_carries_no_machine_path(tmp_path: Path) -> None:
    inside = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert display_uri(inside, tmp_path) == "sqlite:///runs/mlflow.db"
    assert display_uri("sqlite:////elsewhere/x/mlflow.db", tmp_path) == "sqlite:///mlflow.db"
    assert display_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
