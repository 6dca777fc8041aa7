"""Every shipped study's dataset hashes and trial keys, pinned.

A dataset's hash names its directory and a trial's key finds its MLflow run: a change
that moves either orphans every dataset and run a user already made. The values in
``data/study_identities.json`` were computed by hpcbench at 94ec153 (before the plan
layer) and must never change unless a change of the bytes or results is intended
(then bump ``DATA_FORMAT_VERSION`` or the trial config, and regenerate them knowingly).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcbench.study import dataset_hash, load_study
from hpcbench.train.grid import expand_cyclegan_trials, expand_trials

STUDIES = Path(__file__).parents[1] / "studies"
PINNED = json.loads((Path(__file__).parent / "data" / "study_identities.json").read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_study_identities_are_unchanged(name: str) -> None:
    stem, _, smoke = name.partition("+")
    study = load_study(STUDIES / f"{stem}.yaml", smoke=bool(smoke))
    pinned = PINNED[name]
    assert {n: dataset_hash(study, n) for n in study.dataset_names()} == pinned["datasets"]
    assert [t.key for t in expand_cyclegan_trials(study)] == pinned["cyclegan_trials"]
    trials = expand_trials(study) if study.train is not None else []
    assert [t.key for t in trials] == pinned["trials"]


def test_every_shipped_study_is_pinned() -> None:
    shipped = {p.stem for p in STUDIES.glob("*.yaml")}
    assert {name.partition("+")[0] for name in PINNED} == shipped
