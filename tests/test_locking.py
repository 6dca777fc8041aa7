"""One driver per study: the lock names its holder, dies with it, serialises the store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcbench.cli import main
from hpcbench.locking import LOCK_NAME, LockBusyError, hold
from tests.conftest import STUDIES

HOLDER = """
import sys, time
from hpcbench.locking import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(directory: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_is_refused_naming_the_holder(tmp_path: Path) -> None:
    process = _holder(tmp_path)
    try:
        with (
            pytest.raises(LockBusyError, match=rf"in use by .*pid {process.pid}, since"),
            hold(tmp_path, what="study x"),
        ):
            pass
        # A crashed holder leaves no stale lock: the kernel drops it with the process.
        process.send_signal(signal.SIGKILL)
        process.wait()
        with hold(tmp_path) as path:
            assert path == tmp_path / LOCK_NAME
    finally:
        process.kill()


def test_waiting_takes_the_lock_once_it_is_free(tmp_path: Path) -> None:
    process = _holder(tmp_path)
    began = time.monotonic()
    subprocess.Popen(["sh", "-c", f"sleep 1; kill {process.pid}"])
    with hold(tmp_path, wait=30):
        assert time.monotonic() - began >= 0.5
    process.wait()


def test_a_second_driver_of_a_study_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study_dir = tmp_path / "quickstart"
    with hold(study_dir, what="study quickstart"):
        code = main(["generate", str(STUDIES / "quickstart.yaml"), "--root", str(tmp_path)])
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("quickstart: study quickstart is in use by ")
    assert sorted(p.name for p in study_dir.iterdir()) == [LOCK_NAME]  # nothing generated


STORE = """
import sys
from hpcbench.tracking import client_for, ensure_experiment
uri = "sqlite:///" + sys.argv[1]
client = client_for(uri)
print(ensure_experiment(client, sys.argv[2], uri))
"""


def test_two_drivers_create_one_mlflow_store_at_once(tmp_path: Path) -> None:
    database = tmp_path / "root" / "mlflow.db"
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", STORE, str(database), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("study-a", "study-b")
    ]
    outputs = [driver.communicate(timeout=300) for driver in drivers]
    for driver, (out, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err
        assert out.strip().isdigit()
    assert len({out.strip() for out, _ in outputs}) == 2
