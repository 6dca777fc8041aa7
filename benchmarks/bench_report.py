"""Report build time for a study of 500 runs (goal: at most 30 s).

Run ``python benchmarks/bench_report.py [--runs 500]``. A synthetic study — 2 models ×
5 doses × 5 training-set sizes × repeats, F1 from a known monoexponential in dose and a
power law in size — is written to a fresh SQLite MLflow store the way a sweep writes it
(driver-side tracker, one run per trial, the grid recorded); that part is not timed.
Then :func:`hpcbench.report.build.build_report` runs twice and its wall time is printed,
split into reading the runs from MLflow (:func:`hpcbench.report.aggregate.load_runs`,
timed on its own) and the rest (statistics, fits, figures, rendering). The reference
in the same run is the goal, 30 s.

``--quick``: 2 models × 4 doses × 2 training-set sizes × 2 repeats (32 runs), the report
built once: the same code path in a few seconds; its ratio to the goal (which is for
500 runs) says only that nothing got grossly slower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))

GOAL = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="32 runs, one build")
    args = parser.parse_args()
    from report_helpers import make_store

    from hpcbench.report.aggregate import load_runs
    from hpcbench.report.build import build_report

    if args.quick:
        repeats, builds = 2, 1
        axes = {"model": ["fcn", "unet"], "dose": [1e3, 1e4, 1e5, 1e6], "train_size": [32, 128]}
    else:
        repeats, builds = max(1, round(args.runs / 50)), 2
        axes = {
            "model": ["fcn", "unet"],
            "dose": [1e3, 3e3, 1e4, 1e5, 1e6],
            "train_size": [32, 64, 128, 256, 512],
        }
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        began = time.perf_counter()
        trials = make_store(uri, "bench", axes, repeats=repeats)
        written = time.perf_counter() - began
        began = time.perf_counter()
        table = load_runs(uri, "bench")
        read = time.perf_counter() - began
        times = []
        for _ in range(builds):
            began = time.perf_counter()
            build_report("bench", tracking_uri=uri, out=Path(tmp) / "report")
            times.append(time.perf_counter() - began)
        figures = len(list((Path(tmp) / "report" / "figures").glob("*.png")))
    best = min(times)
    print(f"{len(table.runs)} runs ({len(trials)} trials; writing them took {written:.1f} s)")
    print(f"  read runs from MLflow   {read:6.1f} s")
    print(f"  whole report            {best:6.1f} s   (best of {builds}; {figures} figures)")
    print(f"  goal                    {GOAL:6.1f} s   ratio {best / GOAL:.2f} (<= 1 meets it)")


if __name__ == "__main__":
    main()
