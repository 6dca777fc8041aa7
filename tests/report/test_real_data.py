"""The report's real-data table: pooled counts and a bootstrap CI over images."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from hpcbench.report.build import real_data_table


def test_pooled_scores_and_bootstrap_interval() -> None:
    runs = pd.DataFrame(
        {
            "condition": ["model=a", "model=a", "model=b"],
            "images/pt": [
                json.dumps([[8, 2, 2], [2, 0, 8]]),
                json.dumps([[6, 4, 4], [4, 0, 6]]),
                json.dumps([[10, 0, 0], [10, 0, 0]]),
            ],
        }
    )
    table = real_data_table(runs, seed=1, resamples=500)
    a = table[table["condition"] == "model=a"].iloc[0]
    # Pooled over both repeats and both images: TP 20, FP 6, FN 20.
    assert (a["TP"], a["FP"], a["FN"], a["runs"], a["images"]) == (20, 6, 20, 2, 2)
    assert math.isclose(a["F1"], 40 / 66)
    assert math.isclose(a["precision"], 20 / 26) and math.isclose(a["recall"], 0.5)
    assert a["F1 per run"] == f"{20 / 32:.3f}, {20 / 34:.3f}"
    # Resampling two images: the interval spans the all-image-1 and all-image-0 pools.
    image0 = 2 * 14 / (2 * 14 + 6 + 6)
    image1 = 2 * 6 / (2 * 6 + 0 + 14)
    assert math.isclose(a["F1 low"], image1, rel_tol=1e-9)
    assert math.isclose(a["F1 high"], image0, rel_tol=1e-9)
    assert a["F1 low"] <= a["F1"] <= a["F1 high"]
    b = table[table["condition"] == "model=b"].iloc[0]
    assert b["F1"] == b["F1 low"] == b["F1 high"] == 1.0


def test_runs_without_evaluated_sets_give_an_empty_table() -> None:
    runs = pd.DataFrame({"condition": ["x"], "test/a/f1": [np.nan]})
    assert real_data_table(runs).empty
