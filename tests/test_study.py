from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpcbench.cli import main
from hpcbench.plan import dataset_dir, dataset_hash
from hpcbench.study import (
    IntRange,
    Range,
    StudyError,
    load_study,
    sample_param,
    validate_study_data,
)
from tests.conftest import DATA, STUDIES

BAD = sorted((DATA / "bad_studies").glob("*.yaml"))
# Files that cannot carry an "# expect:" comment.
EXPECT_WITHOUT_COMMENT = {
    "empty.yaml": "(top level): empty study file",
    "not_utf8.yaml": "(top level): not UTF-8 text",
}


def _expected(path: Path) -> str:
    if path.name in EXPECT_WITHOUT_COMMENT:
        return EXPECT_WITHOUT_COMMENT[path.name]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks an '# expect:' line"
    return first.removeprefix("# expect: ")


def test_there_are_at_least_20_bad_studies() -> None:
    assert len(BAD) >= 20


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_study_is_rejected_with_one_line_per_problem(
    path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert lines, "no error printed"
    for line in lines:
        assert re.match(rf"^{re.escape(path.name)}: (\(top level\)|[^ ]+): \S", line), line
    assert "Traceback" not in err
    assert any(_expected(path) in line for line in lines), (
        f"expected {_expected(path)!r} in {lines}"
    )
    assert list(tmp_path.iterdir()) == [], "validation must create nothing"


def test_every_problem_is_reported_not_just_the_first() -> None:
    data = yaml.safe_load((STUDIES / "quickstart.yaml").read_text())
    data["seed"] = -4
    data["datasets"]["wse2-haadf"]["simulation"]["energy"] = 0
    data["datasets"]["wse2-incoherent"]["size"] = 0
    data["datasets"]["wse2-incoherent"]["labels"]["radius"] = -1
    with pytest.raises(StudyError) as info:
        validate_study_data(data, source="study.yaml")
    assert sorted(info.value.lines) == sorted(
        [
            "study.yaml: seed: must be >= 0",
            "study.yaml: datasets.wse2-haadf.simulation.energy: must be > 0",
            "study.yaml: datasets.wse2-incoherent.size: must be >= 1",
            "study.yaml: datasets.wse2-incoherent.labels.radius: must be > 0",
        ]
    )


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("smoke", [False, True])
def test_shipped_studies_validate(path: Path, smoke: bool) -> None:
    study = load_study(path, smoke=smoke)
    assert study.datasets
    # Every shipped study carries a smoke: block, so a tiny version of it can be run.
    assert load_study(path).smoke is not None, f"{path.name} has no smoke: block"
    # Its training grid expands (keys unique, train sizes fit the splits).
    if study.train is not None:
        from hpcbench.plan import expand_trials

        trials = expand_trials(study)
        assert len({t.key for t in trials}) == len(trials) > 0


def test_validate_prints_dataset_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(STUDIES / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    study = load_study(STUDIES / "quickstart.yaml")
    for name in study.datasets:
        assert f"{name}-{dataset_hash(study, name)}" in out


def test_traceback_flag_shows_the_stack(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(StudyError):
        main(["--traceback", "validate", str(bad)])


def test_smoke_block_merges_deeply() -> None:
    full = load_study(STUDIES / "quickstart.yaml")
    smoke = load_study(STUDIES / "quickstart.yaml", smoke=True)
    name = "wse2-incoherent"
    assert smoke.datasets[name].size < full.datasets[name].size
    # Keys the smoke block does not mention are kept.
    assert smoke.datasets[name].structure == full.datasets[name].structure
    assert dataset_hash(smoke, name) != dataset_hash(full, name)


def test_models_are_frozen() -> None:
    study = load_study(STUDIES / "quickstart.yaml")
    with pytest.raises(Exception, match="frozen"):
        study.seed = 3  # type: ignore[misc]


def test_dataset_hash_depends_on_what_makes_the_bytes() -> None:
    data = yaml.safe_load((STUDIES / "quickstart.yaml").read_text())
    base = validate_study_data(data)
    name = "wse2-incoherent"
    same = validate_study_data(yaml.safe_load((STUDIES / "quickstart.yaml").read_text()))
    assert dataset_hash(base, name) == dataset_hash(same, name)
    assert re.fullmatch(r"[0-9a-f]{12}", dataset_hash(base, name))

    reseeded = validate_study_data({**data, "seed": 1})
    assert dataset_hash(reseeded, name) != dataset_hash(base, name)

    # Spelling out a default does not change the hash (defaults are filled in first)...
    explicit = yaml.safe_load((STUDIES / "quickstart.yaml").read_text())
    explicit["datasets"][name]["structure"]["phase"] = "2H"
    assert dataset_hash(validate_study_data(explicit), name) == dataset_hash(base, name)
    # ...changing a value does.
    explicit["datasets"][name]["structure"]["phase"] = "1T"
    assert dataset_hash(validate_study_data(explicit), name) != dataset_hash(base, name)
    # Other datasets and non-data fields leave it alone.
    renamed = validate_study_data({**data, "description": "something else"})
    assert dataset_hash(renamed, name) == dataset_hash(base, name)


def test_dataset_dir_layout(tmp_path: Path) -> None:
    study = load_study(STUDIES / "quickstart.yaml")
    name = "wse2-haadf"
    path = dataset_dir(study, tmp_path, name)
    assert path == tmp_path / "quickstart" / "datasets" / f"{name}-{dataset_hash(study, name)}"


def test_sample_param_fixed_values_draw_nothing() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert sample_param(2.5, rng) == 2.5
    assert sample_param(3, rng) == 3.0
    assert rng.bit_generator.state == state


def test_sample_param_ranges_and_choices() -> None:
    rng = np.random.default_rng(1)
    uniform = [sample_param(Range(min=2.0, max=4.0), rng) for _ in range(4000)]
    assert min(uniform) >= 2.0 and max(uniform) < 4.0
    assert np.mean(uniform) == pytest.approx(3.0, abs=0.05)

    log = np.array([sample_param(Range(min=1e2, max=1e6, log=True), rng) for _ in range(4000)])
    # Log-uniform: the median is the geometric mean, 1e4.
    assert np.log10(np.median(log)) == pytest.approx(4.0, abs=0.1)

    ints = [sample_param(IntRange(min=1, max=3), rng) for _ in range(600)]
    assert set(ints) == {1.0, 2.0, 3.0}  # both ends inclusive

    choices = [sample_param([0.0, 30.0, 45.0], rng) for _ in range(600)]
    assert set(choices) == {0.0, 30.0, 45.0}


# A spec from before correlated noise existed and its hash then (format 2): datasets
# made before keep their directories as long as the new fields hold their defaults.
_PINNED_DATA = {
    "name": "pin",
    "seed": 7,
    "datasets": {
        "d": {
            "structure": {"kind": "mx2", "formula": "WSe2", "supercell": [4, 3]},
            "simulation": {"method": "incoherent"},
            "image": {"shape": [32, 32], "pixel_size": 0.2},
            "corruption": {
                "dose": {"min": 1.0e4, "max": 1.0e6, "log": True},
                "read_noise": 0.02,
                "blur": 0.1,
            },
            "labels": {"classes": ["anion_vacancy"]},
            "size": 8,
            "images_per_structure": 4,
            "shard_size": 4,
        }
    },
}
_PINNED_HASH = "07da0f17293b"


def _with_corruption(**fields: object) -> dict[str, object]:
    data = copy.deepcopy(_PINNED_DATA)
    data["datasets"]["d"]["corruption"].update(fields)  # type: ignore[index]
    return data


def test_dataset_hash_of_a_spec_without_correlated_noise_is_unchanged() -> None:
    assert dataset_hash(validate_study_data(_PINNED_DATA), "d") == _PINNED_HASH
    explicit = _with_corruption(correlated_noise=0.0, noise_correlation=0.5)
    assert dataset_hash(validate_study_data(explicit), "d") == _PINNED_HASH
    for fields in [
        {"correlated_noise": 0.1},
        {"correlated_noise": {"min": 0.1, "max": 0.3}},
        {"noise_correlation": 1.0},
    ]:
        changed = validate_study_data(_with_corruption(**fields))
        assert dataset_hash(changed, "d") != _PINNED_HASH, fields


def test_correlated_noise_range_validates() -> None:
    text = yaml.safe_dump(_with_corruption(correlated_noise={"min": 0.1, "max": 0.3}))
    study = validate_study_data(yaml.safe_load(text))
    corruption = study.datasets["d"].corruption
    assert corruption is not None
    assert corruption.correlated_noise == Range(min=0.1, max=0.3)
    assert corruption.noise_correlation == 0.5
    for fields in [{"correlated_noise": -0.1}, {"noise_correlation": 0.0}]:
        with pytest.raises(StudyError, match="must be"):
            validate_study_data(_with_corruption(**fields))


_IMPORT_STUDY = """\
name: real
datasets:
  d:
    structure: {kind: mx2}
    simulation: {method: incoherent}
    labels: {classes: [dopant]}
    size: 40
imports:
  pt:
    path: ../images
    labels: labels
    pairs: pairs.csv
    pixel_size: 0.293
    patch: [64, 64]
  abs: {path: ABS, pixel_size: 1.0}
train:
  models: {fcn: {architecture: fcn}}
  classes: [dopant]
  test_sets: [pt, d]
"""


def test_import_paths_are_relative_to_the_study_file(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    (folder / "labels").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    (folder / "pairs.csv").write_text("Filename,Coords\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study_file = folder / "real.yaml"
    study_file.write_text(_IMPORT_STUDY.replace("ABS", str(elsewhere)))
    study = load_study(study_file)
    pt = study.imports["pt"]
    assert Path(pt.path) == (tmp_path / "images").resolve()
    assert Path(pt.labels or "") == (folder / "labels").resolve()
    assert Path(pt.pairs or "") == (folder / "pairs.csv").resolve()
    assert Path(study.imports["abs"].path) == elsewhere  # absolute paths are kept
    assert (pt.classes, pt.label_radius, pt.patch) == (["atom"], 0.6, (64, 64))
    assert study.dataset_names() == ["d", "pt", "abs"]
    # Without a base folder (a parsed mapping) paths stay as written.
    data = yaml.safe_load(study_file.read_text())
    assert validate_study_data(data).imports["pt"].path == "../images"


def test_import_folder_missing_relative_to_the_study_file(tmp_path: Path) -> None:
    study_file = tmp_path / "real.yaml"
    study_file.write_text(_IMPORT_STUDY.replace("ABS", str(tmp_path)))
    with pytest.raises(StudyError) as info:
        load_study(study_file)
    missing = (tmp_path.parent / "images").resolve()
    assert f"real.yaml: imports.pt.path: no such folder {missing}" in info.value.lines
    assert len(info.value.lines) == 3  # path, labels and pairs, one line each
