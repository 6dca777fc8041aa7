"""Degenerate runs: networks whose predictions collapsed, flagged from their scores."""

from __future__ import annotations

import math

import pandas as pd

from hpcbench.report.aggregate import DEGENERATE, degenerate_runs

NAN = math.nan


def test_degenerate_runs_flags_networks_that_found_no_defect_pixel() -> None:
    runs = pd.DataFrame(
        {
            # all background; nothing found; predicts defects where the split has none;
            # works; no score; a low but real score
            "heldout/f1": [0.0, 0.0, 0.0, 0.74, NAN, 0.02],
            "heldout/precision": [NAN, 0.0, 0.0, 0.70, NAN, 0.01],
            "heldout/recall": [0.0, 0.0, NAN, 0.78, NAN, 0.5],
            "test/haadf/f1": [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],
            "test/haadf/precision": [NAN, 0.5, NAN, NAN, NAN, NAN],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    flags = degenerate_runs(runs)
    assert flags.name == DEGENERATE == "degenerate"
    assert flags.dtype == bool
    assert flags.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert flags.tolist() == [True, True, False, False, False, False]
    # Another split: F1 = 0 with an undefined precision; recall not logged.
    assert degenerate_runs(runs, split="test/haadf").tolist() == [
        True,
        False,
        True,
        True,
        True,
        True,
    ]


def test_runs_scored_with_f1_alone_are_flagged_by_it() -> None:
    # A run table without precision and recall columns: F1 = 0 means nothing was found.
    runs = pd.DataFrame({"heldout/f1": [0.0, 0.3, NAN]})
    assert degenerate_runs(runs).tolist() == [True, False, False]
