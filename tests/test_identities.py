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

from hpcbench.plan import make_plan, parse_trial
from hpcbench.study import load_study

STUDIES = Path(__file__).parents[1] / "studies"
PINNED = json.loads((Path(__file__).parent / "data" / "study_identities.json").read_text())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_study_identities_are_unchanged(name: str) -> None:
    stem, _, smoke = name.partition("+")
    study = load_study(STUDIES / f"{stem}.yaml", smoke=bool(smoke))
    pinned = PINNED[name]
    plan = make_plan(study)
    assert {n: plan.dataset_hash(n) for n in plan.dataset_names} == pinned["datasets"]
    assert [t.key for t in plan.cyclegan_trials] == pinned["cyclegan_trials"]
    assert [t.key for t in plan.trials] == pinned["trials"]
    # The typed trial's JSON form round-trips: what a Tune worker parses is what was keyed.
    for spec in plan.all_trials():
        assert parse_trial(spec.config) == spec.trial
        assert parse_trial(spec.config).key == spec.key


def test_every_shipped_study_is_pinned() -> None:
    shipped = {p.stem for p in STUDIES.glob("*.yaml")}
    assert {name.partition("+")[0] for name in PINNED} == shipped
