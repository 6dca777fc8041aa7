"""Every ``benchmarks/bench_*.py`` runs in its ``--quick`` mode and prints its ratios.

Each script runs in a subprocess from the repository root, as a user runs it. The test
checks that it exits with 0 and that the ratios it computes against its same-run
reference are there and are positive finite numbers; it never checks a timing (the
machine may be loaded). A new ``bench_*.py`` is picked up by the glob; without an entry
in :data:`RATIOS` it must print a line with the word ``ratio`` followed by its value.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((REPO / "benchmarks").glob("bench_*.py"))
NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
DEFAULT = [rf"\bratio\b[^\d\n]*?{NUMBER}"]
# What each script prints as a ratio against its same-run reference.
RATIOS: dict[str, list[str]] = {
    "bench_corrupt.py": [
        rf"crop \(cubic, prepared\).*= {NUMBER} x scipy cubic",
        rf"corrupt all effects .*= {NUMBER} x fft2",
    ],
    "bench_cyclegan.py": [rf"step / generator\s+{NUMBER}x", rf"trainer / bare\s+{NUMBER}x"],
    "bench_generate.py": [rf"vs loop = {NUMBER}x", rf"5 levels / 1 = {NUMBER}"],
    "bench_hrtem.py": [
        rf"engine multislice \(all configurations\)\s+\S+ s\s+{NUMBER}x floor",
        rf"abTEM PlaneWave\.multislice\s+\S+ s\s+{NUMBER}x engine",
        rf"abTEM potentials \(all configurations\)\s+\S+ s\s+{NUMBER}x engine",
        rf"5-level dose ablation\s+\S+ s\s+{NUMBER}x one level",
        rf"5-level defocus ablation\s+\S+ s\s+{NUMBER}x one level",
        rf"5-level fidelity ablation\s+\S+ s\s+{NUMBER}x one level",
        rf"5-level dose ablation \(stored waves\)\s+\S+ s\s+{NUMBER}x one level",
    ],
    # The ratio column of the table: total / FFT floor.
    "bench_incoherent.py": [rf"^\s*\d+\s+\d+×\d+\s+\S+\s+\S+\s+\S+\s+{NUMBER}\s"],
    "bench_report.py": [rf"ratio {NUMBER} \(<= 1 meets it\)"],
    "bench_stem.py": [rf"simulate_haadf multislice: total\s+\S+\s+{NUMBER}\s*$"],
    "bench_sweep.py": [rf"ratio sweep / bare {NUMBER}"],
    "bench_train.py": [
        rf"Trainer \(train phase\).*?{NUMBER}x bare",
        rf"Tune trial \(train phase\).*?{NUMBER}x Trainer",
    ],
}
TIMEOUT = 600  # [s] per script; each takes 5-50 s on 2 loaded cores


def test_benchmarks_are_found() -> None:
    names = {path.name for path in BENCHMARKS}
    assert names, "no benchmarks/bench_*.py found"
    assert set(RATIOS) <= names, f"RATIOS names missing scripts: {set(RATIOS) - names}"


@pytest.mark.parametrize("script", BENCHMARKS, ids=[path.name for path in BENCHMARKS])
def test_quick_mode_runs_and_prints_its_ratios(script: Path, tmp_path: Path) -> None:
    # Temporary files under tmp_path; Ray keeps its usual directory (its socket paths
    # must stay short) unless RAY_TMPDIR says otherwise.
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", tempfile.gettempdir()),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(script.relative_to(REPO)), "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"exit code {done.returncode}:\n{output[-4000:]}"
    for pattern in RATIOS.get(script.name, DEFAULT):
        found = re.findall(pattern, done.stdout, flags=re.MULTILINE)
        assert found, f"no ratio matching {pattern!r} in:\n{done.stdout[-4000:]}"
        for text in found:
            value = float(text)
            assert math.isfinite(value) and value > 0, f"{pattern!r}: {text}"
