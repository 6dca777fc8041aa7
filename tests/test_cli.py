"""The generate, verify, show and calibrate commands, in-process through ``hpcbench.cli.main``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hpcbench.cli import main
from hpcbench.datasets.manifest import Manifest, write_manifest
from hpcbench.datasets.schema import coordinates_type, tensor_column
from hpcbench.datasets.sink import shard_name, write_shard
from hpcbench.plan import dataset_dir
from hpcbench.study import load_study

DATA = Path(__file__).resolve().parent / "data"
STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _dataset(root: Path) -> Path:
    """The quickstart's incoherent dataset (smoke size) written without Ray: 2 shards."""
    study = load_study(STUDIES / "quickstart.yaml", smoke=True)
    spec = study.datasets["wse2-incoherent"]
    directory = dataset_dir(study, root, "wse2-incoherent")
    manifest = Manifest.for_dataset(study, "wse2-incoherent")
    yy, xx = np.mgrid[: spec.image.shape[0], : spec.image.shape[1]]
    for first in range(0, spec.size, spec.shard_size):
        ids = np.arange(first, first + spec.shard_size)
        images = np.stack([np.cos(xx / (2 + i % 3)) * np.cos(yy / 3) for i in ids])
        masks = np.zeros(images.shape, np.uint8)
        masks[:, 20:28, 30:38] = 1  # anion_vacancy
        masks[:, 60:66, 60:66] = 2  # dopant
        sites = [[{"x": 34.0, "y": 24.0, "label": 1}, {"x": 63.0, "y": 63.0, "label": 2}]]
        table = pa.table(
            {
                "sample_id": pa.array(ids),
                "image": tensor_column(images.astype(np.float32)),
                "mask": tensor_column(masks),
                "coordinates": pa.array(sites * len(ids), coordinates_type()),
            }
        )
        record = write_shard(table, directory)
        manifest.shards[first] = record
    write_manifest(directory, manifest)
    return directory


@pytest.mark.parametrize(
    "study", sorted((DATA / "bad_studies").glob("*.yaml")), ids=lambda path: path.stem
)
def test_generate_rejects_a_bad_study_before_creating_anything(
    study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    root = tmp_path / "root"
    code = main(["generate", str(study), "--root", str(root)])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(f"{study.name}: ") for line in err)
    assert not root.exists()
    assert not ray.is_initialized()


def test_generate_fails_fast_on_an_unreachable_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    root = tmp_path / "root"
    study = str(STUDIES / "quickstart.yaml")
    # Port 1 on loopback is closed: a refused connection, not minutes of Ray retries.
    code = main(["generate", study, "--smoke", "--root", str(root), "--address", "127.0.0.1:1"])
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: cannot reach a Ray cluster at 127.0.0.1:1: Connection refused"]
    assert not root.exists()
    assert not ray.is_initialized()


def test_generate_rejects_an_unknown_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["generate", str(STUDIES / "quickstart.yaml"), "--root", str(tmp_path), "--only", "nope"]
    )
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{STUDIES / 'quickstart.yaml'}: --only: no dataset 'nope' "
        "(the study has wse2-incoherent, wse2-haadf)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_verify_exit_codes_and_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _dataset(tmp_path)
    assert main(["verify", str(directory)]) == 0
    assert capsys.readouterr().out == f"{directory}: intact, 2 shards, 32 rows\n"
    (directory / shard_name(16)).unlink()
    shutil.copy(directory / shard_name(0), directory / shard_name(32))
    assert main(["verify", str(directory)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{directory / shard_name(16)}: missing: file missing",
        f"{directory / shard_name(32)}: extra: not part of this dataset (readers of the "
        "folder would see it)",
    ]
    assert main(["verify", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'absent'}: no such dataset directory\n"


def test_show_writes_a_png_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from matplotlib.image import imread

    directory = _dataset(tmp_path)
    out = tmp_path / "grid.png"
    assert main(["show", str(directory), "--n", "6", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    pixels = imread(out)
    # 6 panels in a 3 × 2 grid of 2.2-inch panels at 100 dpi, plus the legend strip.
    assert pixels.shape[1] == 660
    assert pixels.shape[0] == 2 * 220 + 60
    # The overlay tints pixels red (anion_vacancy) and blue (dopant).
    red = (pixels[..., 0] > pixels[..., 2] + 0.2).sum()
    blue = (pixels[..., 2] > pixels[..., 0] + 0.2).sum()
    assert red > 6 * 30 and blue > 6 * 15


def test_generate_verify_show_on_the_quickstart_smoke_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpcbench.datasets.manifest import read_manifest
    from hpcbench.datasets.samples import build_shard

    study_file = str(STUDIES / "quickstart.yaml")
    args = ["generate", study_file, "--smoke", "--only", "wse2-incoherent", "--root", str(tmp_path)]
    assert main(args) == 0
    study = load_study(STUDIES / "quickstart.yaml", smoke=True)
    directory = dataset_dir(study, tmp_path, "wse2-incoherent")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{directory}: 32 rows in 2 shards (2 generated, 0 skipped) in "
        + captured.out.split(" skipped) in ")[1].splitlines()[0]
    ]
    assert re.findall(r"^wse2-incoherent: (shard-\d+\.parquet) 16 rows", captured.err, re.M) == [
        "shard-00000000.parquet",
        "shard-00000016.parquet",
    ]
    assert not dataset_dir(study, tmp_path, "wse2-haadf").exists()
    # The Ray workers' bytes equal a plain in-process build of the same shards.
    loop = [
        write_shard(build_shard(study, "wse2-incoherent", i), tmp_path / "loop") for i in (0, 1)
    ]
    recorded = read_manifest(directory).shards
    assert [recorded[r.first_sample_id].sha256 for r in loop] == [r.sha256 for r in loop]
    assert main(["verify", str(directory)]) == 0
    assert main(args) == 0  # complete: nothing rebuilt
    assert "(0 generated, 2 skipped)" in capsys.readouterr().out
    assert main(["show", str(directory), "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "study", sorted((DATA / "bad_studies").glob("train_*.yaml")), ids=lambda path: path.stem
)
def test_train_rejects_a_bad_train_section_before_creating_anything(
    study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    root = tmp_path / "root"
    assert main(["train", str(study), "--root", str(root)]) == 2
    expected = study.read_text().splitlines()[0].removeprefix("# expect: ")
    assert capsys.readouterr().err.splitlines() == [f"{study.name}: {expected}"]
    assert not root.exists() and not ray.is_initialized()


def test_train_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    root = tmp_path / "root"
    no_train = tmp_path / "no-train.yaml"
    text = (STUDIES / "quickstart.yaml").read_text()
    no_train.write_text(text[: text.index("train:")])
    assert main(["train", str(no_train), "--root", str(root)]) == 2
    assert (
        capsys.readouterr().err
        == f"{no_train}: (top level): the study has no train or cyclegan section\n"
    )
    # Datasets not generated: one line, nothing created, Ray not started.
    quickstart = str(STUDIES / "quickstart.yaml")
    assert main(["train", quickstart, "--root", str(root), "--smoke"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        len(err) == 1 and "train: datasets wse2-haadf, wse2-incoherent are not generated" in err[0]
    )
    assert not root.exists() and not ray.is_initialized()


def _processes() -> dict[int, tuple[str, int, int]]:
    """Running (not zombie) processes from /proc: pid → (state, parent, group)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_ui_serves_on_loopback_stops_with_its_server_and_refuses_a_busy_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ``hpcbench ui``: serves; SIGTERM stops it and every process it started."""
    import json
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from hpcbench.tracking import client_for, default_tracking_uri, ensure_experiment

    uri = default_tracking_uri(tmp_path)
    ensure_experiment(client_for(uri), "ui-study", uri)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcbench", "ui", "--root", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the UI did not come up"
                time.sleep(0.5)
        request = urllib.request.Request(
            base + "/api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            names = [e["name"] for e in json.loads(response.read())["experiments"]]
        assert "ui-study" in names
        # The MLflow server runs in a process group of its own, with its web workers.
        (server,) = [pid for pid, (_, parent, _) in _processes().items() if parent == process.pid]
        served = [pid for pid, (_, _, group) in _processes().items() if group == server]
        assert server in served and len(served) > 1 and process.pid not in served
        # A second ui on the busy port: exit 2, one line naming the port, nothing started.
        capsys.readouterr()
        assert main(["ui", "--root", str(tmp_path), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"port {port} on 127.0.0.1 is in use (another MLflow UI?): choose another with --port"
        ]
        # SIGTERM to hpcbench alone (not its group) stops the server and all it started.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:  # a failed check: stop it as a user would
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    left = _processes()
    assert [pid for pid in served if pid in left] == []
    assert [pid for pid, (_, _, group) in left.items() if group == server] == []
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))  # nothing listens on the port any more
    out = process.stdout.read().decode()  # type: ignore[union-attr]
    assert f"at http://127.0.0.1:{port}" in out


def test_ui_refuses_to_serve_beyond_this_machine_without_a_login(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from hpcbench.tracking import client_for, default_tracking_uri

    client_for(default_tracking_uri(tmp_path))  # an empty store
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    import importlib.util

    assert main(["ui", "--root", str(tmp_path), "--host", "0.0.0.0", "--port", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    if importlib.util.find_spec("flask_wtf") is None:  # installed without mlflow[auth]
        assert "pip install 'mlflow[auth]'" in line and line.endswith("or pass --no-auth")
    else:
        assert "MLFLOW_AUTH_ADMIN_PASSWORD" in line and line.endswith("or pass --no-auth")
    assert not (tmp_path / "mlflow-auth.ini").exists()
    # --no-auth says what it means; a busy port still stops it before anything starts.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        command = ["ui", "--root", str(tmp_path), "--host", "0.0.0.0", "--no-auth"]
        assert main([*command, "--port", str(port)]) == 2
    warning, busy = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: serving the MLflow UI on 0.0.0.0 without a login")
    assert busy.startswith(f"port {port} on 0.0.0.0 is in use")


@pytest.mark.slow  # starts a real MLflow server with basic auth: 15-60 s
def test_ui_with_a_login_answers_only_the_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from hpcbench.tracking import client_for, default_tracking_uri

    client_for(default_tracking_uri(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": "correct-horse-battery"}
    env.pop("MLFLOW_AUTH_CONFIG_PATH", None)
    command = [sys.executable, "-m", "hpcbench", "ui", "--root", str(tmp_path)]
    command += ["--port", str(port), "--auth"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                raise AssertionError("answered without a login")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the UI did not come up"
                time.sleep(0.5)
        login = base64.b64encode(b"admin:correct-horse-battery").decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "mlflow-auth.db").is_file()  # users live beside the store


def test_ui_without_a_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", "--root", str(tmp_path / "none")]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_run_takes_a_study_from_nothing_to_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole pipeline on a tiny incoherent study: generate, train, report, re-run."""
    import yaml

    study = yaml.safe_load((STUDIES / "quickstart.yaml").read_text())
    incoherent = study["datasets"]["wse2-incoherent"]
    incoherent.update({"size": 48, "shard_size": 16})
    incoherent["image"] = {"shape": [64, 64], "pixel_size": 0.1}
    incoherent["structure"]["supercell"] = [6, 4]
    study["datasets"] = {"wse2-incoherent": incoherent}
    study["name"] = "tiny-run"
    study.pop("smoke")
    study["train"].update(
        {
            "epochs": 1,
            "repeats": 1,
            "train_size": 16,
            "test_sets": [],
            "augment": {"crop": [32, 32]},
        }
    )
    study["train"]["axes"] = {"dose": [1.0e4, 1.0e6]}
    study["train"]["models"] = {"fcn": {"architecture": "fcn", "width": 4}}
    study["train"]["axes"]["model"] = ["fcn"]
    path = tmp_path / "tiny-run.yaml"
    path.write_text(yaml.safe_dump(study))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    assert main(["run", str(path), "--root", str(root)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "[1/3] generate" in out and "[2/3] train" in out and "[3/3] report" in out
    report = tmp_path / "reports" / "tiny-run"
    assert out.rstrip().splitlines()[-2] == "report: reports/tiny-run/report.html"
    assert re.fullmatch(r"done in \d+\.\d min", out.rstrip().splitlines()[-1])
    # hpcbench's own progress, not Tune's boxes, TensorBoard hints or MLflow INFO lines.
    for noise in ("Configuration for experiment", "View detailed results", "TensorBoard", "INFO"):
        assert noise not in out + captured.err, noise
    results = (report / "results.csv").read_bytes()
    assert len(results.decode().splitlines()) == 1 + 2  # header + one run per trial
    # Rebuilt from MLflow alone: the same results.csv.
    shutil.rmtree(report)
    assert main(["report", "tiny-run", "--root", str(root)]) == 0
    assert (report / "results.csv").read_bytes() == results
    # A second run skips generation and training.
    assert main(["run", str(path), "--root", str(root)]) == 0
    again = capsys.readouterr().out
    assert "0 generated" in again and "already complete" in again


def test_compare_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = _dataset(tmp_path / "a")
    assert main(["compare-sets", str(clean), str(clean)]) == 0
    same = capsys.readouterr().out.splitlines()
    assert abs(float(same[1].split()[-1])) < 1e-6  # a set against itself
    assert abs(float(same[2].split()[-2])) < 1e-9 and float(same[3].split()[-1]) == 0.0
    assert len(same) == 4  # no pixel_size column: no frame statistics
    # A noisier copy is farther by every measure.
    from hpcbench.datasets.read import read_dataset
    from hpcbench.datasets.schema import images_to_numpy

    images = images_to_numpy(read_dataset(clean), "image")
    noisy = images + np.random.default_rng(1).normal(0, 0.5, images.shape).astype(np.float32)
    directory = tmp_path / "noisy"
    write_shard(
        pa.table(
            {
                "sample_id": pa.array(np.arange(len(images))),
                "image": tensor_column(noisy),
            }
        ),
        directory,
    )
    assert main(["compare-sets", str(clean), str(directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert float(lines[1].split()[-1]) > 0.1
    assert float(lines[2].split()[-2]) > 0.01 and float(lines[3].split()[-1]) > 0.01


def test_compare_sets_frame_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With pixel sizes: per-set percentiles, and how many of B's frames A's range covers."""
    rng = np.random.default_rng(3)
    directories = []
    for name, rate in (("low", 50.0), ("high", 800.0)):
        frames = rng.poisson(rate, size=(12, 64, 64)).astype(np.float32)
        table = pa.table(
            {
                "sample_id": pa.array(np.arange(12)),
                "image": tensor_column(frames),
                "pixel_size": pa.array(np.full(12, 0.3)),
            }
        )
        write_shard(table, tmp_path / name)
        directories.append(str(tmp_path / name))
    assert main(["compare-sets", *directories]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].startswith("  frame statistics on 64x64 px tiles")
    rows = {line.split()[0]: line for line in lines[5:9]}
    assert list(rows) == ["peak_contrast", "peak_snr", "low_frequency", "counts"]
    counts = rows["counts"].split()
    # counts-equivalent = Poisson rate: ~50 for A, ~800 for B, none of B inside A
    assert 45 < float(counts[4]) < 55 and 720 < float(counts[8]) < 880
    assert counts[-1] == "0%"


@pytest.mark.slow
def test_run_the_khan_cyclegan_smoke_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 000's workflow from the shipped study: CycleGAN, translation, FCNs, report."""
    monkeypatch.chdir(tmp_path)
    study = str(STUDIES / "khan2023-cyclegan.yaml")
    assert main(["validate", study]) == 0
    assert "translated simulation-cyclegan-" in capsys.readouterr().out
    assert main(["run", study, "--smoke", "--root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "FID(translated, target)" in out and "translated dataset simulation-cyclegan" in out
    report = tmp_path / "reports" / "khan2023-cyclegan-smoke"
    text = (report / "report.md").read_text()
    assert "CycleGAN translation" in text and "spectral-v1" in text
    assert (report / "tables" / "cyclegan.csv").is_file()
    assert (report / "figures" / "cyclegan-fid.png").is_file()


def test_translate_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = str(STUDIES / "quickstart.yaml")
    assert main(["translate", quickstart, "--root", str(tmp_path)]) == 2
    assert "the study has no translate section" in capsys.readouterr().err
    khan = str(STUDIES / "khan2023-cyclegan.yaml")
    assert main(["translate", khan, "--smoke", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source dataset simulation is not generated" in err[0]
    assert not list(tmp_path.glob("*/datasets/simulation-cyclegan-*"))


@pytest.mark.slow  # two drivers of a real sweep: 1-2 min on 2 cores
def test_ctrl_c_stops_train_with_exit_130_and_the_same_command_goes_on(tmp_path: Path) -> None:
    """SIGINT mid-sweep: exit 130, one line, runs KILLED, no summary; a re-run completes."""
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from mlflow import MlflowClient

    from hpcbench.study import validate_study_data
    from tests.train.train_helpers import write_dataset, wse2_study

    train = {
        "models": {"fcn": {"architecture": "fcn", "width": 4, "depth": 2}},
        "epochs": 3,
        "batch_size": 8,
        "repeats": 4,
    }
    study = wse2_study(train, name="ctrl-c")
    path = tmp_path / "ctrl-c.yaml"
    path.write_text(yaml.safe_dump(study.model_dump(mode="json", exclude={"smoke"})))
    root = tmp_path / "runs"
    write_dataset(validate_study_data(yaml.safe_load(path.read_text())), "wse2", root)
    command = [sys.executable, "-m", "hpcbench", "train", str(path), "--root", str(root)]
    command += ["--max-concurrent", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 300
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("[1/4]"):  # one trial done
            break
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (experiment,) = client.search_experiments(filter_string="name = 'ctrl-c'")
    trial_runs = "tags.`hpcbench.kind` != 'grid'"
    while time.monotonic() < deadline:  # ... and the next one running
        runs = client.search_runs([experiment.experiment_id], trial_runs)
        if any(run.info.status == "RUNNING" for run in runs):
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    errors = [line for line in err.splitlines() if line.strip()]
    assert errors[-1].startswith("interrupted: 3 of 4 train trials unfinished"), errors
    assert "trials complete in" not in "".join(lines) + out  # no summary as if done
    runs = client.search_runs([experiment.experiment_id], trial_runs)
    statuses = sorted(run.info.status for run in runs)
    assert "RUNNING" not in statuses and "KILLED" in statuses and "FINISHED" in statuses
    # The same command continues: every trial complete, one run each.
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    runs = client.search_runs([experiment.experiment_id], trial_runs)
    keys = [run.data.tags["hpcbench.trial_key"] for run in runs]
    assert len(keys) == len(set(keys)) == 4
    assert all(run.data.tags.get("hpcbench.complete") == "true" for run in runs)


def test_calibrate_prints_spacing_and_pixel_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d100 = 2.46 * np.sqrt(3) / 2  # graphene's {10-10} spacing [Å]
    rows, cols = np.mgrid[0:256, 0:256] * 0.15  # [Å] at 0.15 Å/px
    waves = [np.cos(2 * np.pi * (cols * np.cos(t) + rows * np.sin(t)) / d100)
             for t in np.radians([17.0, 77.0, 137.0])]  # fmt: skip
    rng = np.random.default_rng(3)
    np.save(tmp_path / "lattice.npy", rng.poisson(20 * (3.0 + sum(waves))))
    np.save(tmp_path / "noise.npy", rng.poisson(20.0, (128, 128)))
    assert main(["calibrate", str(tmp_path / "lattice.npy"), "--lattice", "graphene"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "graphene: a = 2.46 Å, first-order {10-10} spacing 2.13 Å"
    found = re.fullmatch(r".*lattice.npy: spacing (\S+) px -> pixel size (\S+) Å/px \(6 .*", out[1])
    assert found is not None, out[1]
    assert float(found.group(1)) == pytest.approx(d100 / 0.15, rel=0.01)
    assert float(found.group(2)) == pytest.approx(0.15, rel=0.01)
    assert main(["calibrate", str(tmp_path / "noise.npy"), "--lattice", "a=2.46"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path / 'noise.npy'}: no spectral peak stands out")
    assert "\n" not in err
    assert main(["calibrate", str(tmp_path / "lattice.npy"), "--lattice", "gold"]) == 2
    assert "calibrate: lattice 'gold': not one of graphene" in capsys.readouterr().err


def test_run_the_dacosta_hrtem_smoke_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 001's pipeline from the shipped study: HRTEM datasets, fidelity trials, report."""
    monkeypatch.chdir(tmp_path)
    study = str(STUDIES / "dacosta2024-hrtem.yaml")
    assert main(["run", study, "--smoke", "--root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "fidelity=baseline" in out and "fidelity=all" in out
    report = tmp_path / "reports" / "dacosta2024-hrtem-smoke"
    text = (report / "report.md").read_text()
    assert "fidelity" in text
    runs = pd.read_csv(report / "results.csv")
    assert sorted(runs["fidelity"]) == ["all", "baseline"]
    assert runs["test/cdse/f1"].between(0.0, 1.0).all()  # composition transfer is scored
    (dataset,) = (tmp_path / "runs").glob("*/datasets/au-*")
    assert main(["show", str(dataset), "--n", "4", "--out", str(tmp_path / "au.png")]) == 0
    assert (tmp_path / "au.png").stat().st_size > 10_000
