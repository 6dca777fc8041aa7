"""An embedded Ray that hpcbench starts leaves no session directory behind."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

CODE = """
from hpcbench.datasets.generate import init_ray, shutdown_ray, _started_sessions
assert init_ray(None)
session = _started_sessions[-1]
assert session is not None and session.is_dir(), session
shutdown_ray()
print(session)
"""


def test_shutdown_removes_the_embedded_rays_session() -> None:
    # A short path: Ray's sockets live under it and AF_UNIX paths stop at 107 bytes.
    with tempfile.TemporaryDirectory(prefix="hb", dir="/tmp") as tmp:
        _check(Path(tmp))


def _check(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    session = Path(done.stdout.strip().splitlines()[-1])
    assert session.parent.parent == tmp_path  # RAY_TMPDIR/ray/session_*: the user's place
    assert not session.exists()
    assert not list((tmp_path / "ray").glob("session_2*"))
