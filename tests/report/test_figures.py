from __future__ import annotations

import math
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import imread
from matplotlib.markers import MarkerStyle
from numpy.typing import ArrayLike, NDArray
from report_helpers import bar_ends

from hpcbench.report import statistics as st
from hpcbench.report.figures import (
    Fit,
    _build_box_strip,
    _build_metric_vs,
    box_strip,
    fill_metric_unit,
    image_grid,
    level_label,
    level_summaries,
    metric_label,
    metric_range,
    metric_vs,
)

METRIC = "test/wse2-incoherent/f1"
DOSES = (1e3, 1e4, 1e5, 1e6)


@dataclass
class ExpFit:
    """F1 = F0 − A·exp(−dose/α) (implements the Fit protocol)."""

    params: dict[str, float]
    stderr: dict[str, float]
    model: str = "exponential"
    formula: str = "F1 = F0 − A·exp(−D/α)"
    r_squared: float = 0.93
    n: int = 20
    calls: list[int] = field(default_factory=list)

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        self.calls.append(x.size)
        p = self.params
        return p["F0"] - p["A"] * np.exp(-x / p["alpha"])


def make_fit(alpha: float = 3.1e4) -> ExpFit:
    return ExpFit(
        params={"F0": 0.9, "A": 0.8, "alpha": alpha},
        stderr={"F0": 0.02, "A": 0.05, "alpha": 0.4e4},
    )


@pytest.fixture
def runs() -> pd.DataFrame:
    rng = np.random.default_rng(1234)
    rows = []
    for model, alpha in (("fcn", 3e4), ("unet", 1e4)):
        for dose in DOSES:
            for repeat in range(5):
                f1 = 0.9 - 0.8 * math.exp(-dose / alpha) + rng.normal(0, 0.02)
                rows.append(
                    {
                        "run_id": f"{model}-{dose:g}-{repeat}",
                        "trial_key": f"{model}-{dose:g}",
                        "condition": f"model={model} dose={dose:g}",
                        "repeat": repeat,
                        "model": model,
                        "dose": dose,
                        METRIC: f1,
                        "test/wse2-incoherent/detection_f1": f1 - 0.05,
                    }
                )
    return pd.DataFrame(rows)


def legend_text(figure: object) -> str:
    """Every legend entry of the figure's axes, line breaks as spaces."""
    legend = figure.axes[0].get_legend()  # type: ignore[attr-defined]
    assert legend is not None
    return " | ".join(t.get_text().replace("\n", " ") for t in legend.get_texts())


def crosses(figure: object) -> NDArray[np.float64]:
    """Offsets of the scatter points drawn with the degenerate runs' ``x`` marker."""
    x_path = MarkerStyle("x").get_path().transformed(MarkerStyle("x").get_transform())
    found = [
        c.get_offsets()
        for c in figure.axes[0].collections  # type: ignore[attr-defined]
        if len(c.get_paths()) == 1
        and c.get_paths()[0].vertices.shape == x_path.vertices.shape
        and np.allclose(c.get_paths()[0].vertices, x_path.vertices)
    ]
    return np.concatenate(found) if found else np.empty((0, 2))


def decode(png: bytes) -> NDArray[np.float32]:
    assert png[:4] == b"\x89PNG"
    image = np.asarray(imread(BytesIO(png), format="png"))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 100 < image.shape[0] < 3000 and 100 < image.shape[1] < 3000
    return image


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize(
    ("metric", "label"),
    [
        ("test/wse2-incoherent/f1", "F1 (test: wse2-incoherent)"),
        ("test/wse2-haadf/intersection_over_union", "IoU (test: wse2-haadf)"),
        ("test/wse2-incoherent/detection_f1", "detection F1 (test: wse2-incoherent)"),
        ("test/mos2/localisation_error", "localisation error [pm] (test: mos2)"),
        ("test/mos2/detection_recall", "detection recall (test: mos2)"),
        ("heldout/precision", "precision (held-out)"),
        ("test/x/some_new_metric", "some new metric (test: x)"),
        ("f1", "F1"),
    ],
)
def test_metric_label(metric: str, label: str) -> None:
    assert metric_label(metric) == label


@pytest.mark.parametrize(
    ("axis", "value", "label"),
    [
        ("dose", 1e4, "1e4"),
        ("dose", 1e6, "1e6"),
        ("dose", 2.5e5, "2.5e5"),
        ("dose", 500.0, "5e2"),
        ("dose", float("nan"), "stored"),
        ("dose", None, "stored"),
        ("train_size", 1000, "1000"),
        ("train_size", np.int64(50), "50"),
        ("train_size", 200.0, "200"),
        ("learning_rate", 1e-3, "1e-3"),
        ("learning_rate", 3e-4, "3e-4"),
        ("model", "fcn", "fcn"),
        ("classes", "W+Se", "W+Se"),
        ("n_classes", 3, "3"),
        ("model", float("nan"), "n/a"),
    ],
)
def test_level_label(axis: str, value: object, label: str) -> None:
    assert level_label(axis, value) == label


def test_fit_protocol_is_satisfied() -> None:
    fit: Fit = make_fit()  # type-checks structurally
    assert fit.predict([0.0]).shape == (1,)


# ------------------------------------------------------------------ box_strip


def test_box_strip_png_and_determinism(runs: pd.DataFrame) -> None:
    png = box_strip(runs, "dose", METRIC, title="F1 by dose")
    decode(png)
    assert box_strip(runs, "dose", METRIC, title="F1 by dose") == png
    assert box_strip(runs, "dose", METRIC, seed=1, title="F1 by dose") != png


def test_box_strip_ticks_levels_and_counts(runs: pd.DataFrame) -> None:
    shuffled = runs.sample(frac=1.0, random_state=0)
    figure = _build_box_strip(shuffled, "dose", METRIC)
    ax = figure.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["1e3\nn=10", "1e4\nn=10", "1e5\nn=10", "1e6\nn=10"]
    assert ax.get_ylabel() == "F1 (test: wse2-incoherent)"
    assert ax.get_xlabel() == "electron dose [e/Å²]"
    # every run is a jittered point
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(runs)


def test_box_strip_hue(runs: pd.DataFrame) -> None:
    figure = _build_box_strip(runs, "dose", METRIC, hue="model")
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["fcn", "unet"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1e3", "1e4", "1e5", "1e6"]
    assert sum(t.get_text() == "n=5" for t in ax.texts) == 8
    decode(box_strip(runs, "dose", METRIC, hue="model"))


def test_box_strip_empty_level_nan_metrics_and_stored_dose(runs: pd.DataFrame) -> None:
    runs = runs.copy()
    runs.loc[runs["dose"] == 1e3, METRIC] = np.nan
    runs.loc[runs.index[5:8], "dose"] = np.nan  # three fcn runs at 1e4
    figure = _build_box_strip(runs, "dose", METRIC, order=[1e3, 1e4, 3e4, 1e5, 1e6, np.nan])
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks[0] == "1e3\nn=0"
    assert ticks[1] == "1e4\nn=7"
    assert ticks[2] == "3e4\nn=0"
    assert ticks[-1] == "stored\nn=3"
    # natural order puts the stored dose last
    figure = _build_box_strip(runs, "dose", METRIC)
    assert figure.axes[0].get_xticklabels()[-1].get_text().startswith("stored")
    decode(box_strip(runs, "dose", METRIC, hue="model"))
    all_nan = runs.assign(**{METRIC: np.nan})
    decode(box_strip(all_nan, "model", METRIC))


def test_box_strip_string_axis_sorted(runs: pd.DataFrame) -> None:
    figure = _build_box_strip(runs.iloc[::-1], "model", METRIC)
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks == ["fcn\nn=20", "unet\nn=20"]


def test_box_strip_marks_degenerate_runs(runs: pd.DataFrame) -> None:
    runs = runs.assign(degenerate=(runs["model"] == "fcn") & (runs["dose"] == 1e3))
    runs.loc[runs["degenerate"], METRIC] = 0.0
    figure = _build_box_strip(runs, "dose", METRIC, hue="model")
    marked = crosses(figure)
    assert len(marked) == 5 and np.all(marked[:, 1] == 0.0)
    assert "degenerate run (no defect pixel found)" in legend_text(figure)
    # Every run is still drawn once: dots plus crosses.
    assert sum(len(c.get_offsets()) for c in figure.axes[0].collections) == len(runs)
    without = _build_box_strip(runs, "dose", METRIC)  # no hue: a legend just for them
    assert legend_text(without) == "degenerate run (no defect pixel found)"


def test_box_strip_errors(runs: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="nope"):
        box_strip(runs, "dose", "nope")
    with pytest.raises(ValueError, match="hue"):
        box_strip(runs, "dose", METRIC, hue="dose")


# ------------------------------------------------------------------ metric_vs


def test_metric_vs_png_and_determinism(runs: pd.DataFrame) -> None:
    png = metric_vs(runs, "dose", METRIC, fit=make_fit())
    decode(png)
    assert metric_vs(runs, "dose", METRIC, fit=make_fit()) == png


def test_metric_vs_draws_fit_with_parameters(runs: pd.DataFrame) -> None:
    fit = make_fit()
    figure = _build_metric_vs(runs, "dose", METRIC, fit=fit)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert fit.calls and fit.calls[0] >= 100  # dense grid
    curve = [line for line in ax.lines if len(line.get_xdata()) == fit.calls[0]]
    assert len(curve) == 1
    legend = ax.get_legend()
    assert legend is not None
    text = "\n".join(t.get_text() for t in legend.get_texts())
    assert "F1 = F0 − A·exp(−D/α)" in text
    assert "α = 3.1e4 ± 0.4e4 e/Å²" in text
    assert "F0 = 0.90 ± 0.02" in text
    assert "A = 0.80 ± 0.05" in text
    assert "R² = 0.930, n = 20" in text
    assert "mean ± 95 % bootstrap CI of the mean, n = 10 runs per point" in legend_text(figure)


def test_metric_vs_legend_defines_the_fit_variables_and_bounds(runs: pd.DataFrame) -> None:
    fit = st.fit_dose(runs["dose"], runs[METRIC], bounds=(0.0, 1.0))
    assert fit is not None
    text = legend_text(_build_metric_vs(runs, "dose", METRIC, fit=fit))
    assert "D = D0 + A·exp(−B/α)" in text
    # α is the fitted characteristic dose, B the dose on the x axis: both defined.
    assert "B: electron dose [e/Å²]" in text
    assert "α: characteristic dose" in text
    assert "fit bounds:   0 ≤ D0 ≤ 1   0 ≤ D0 + A ≤ 1   100 ≤ α ≤ 1e+07 e/Å²" in text


def test_metric_vs_hue_with_per_level_fits(runs: pd.DataFrame) -> None:
    fits: dict[object, ExpFit | None] = {"fcn": make_fit(3e4), "unet": None}
    figure = _build_metric_vs(runs, "dose", METRIC, hue="model", fits=fits)
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:2] == ["fcn", "unet"]
    assert any(t.startswith("fcn: F1 = ") for t in texts)
    assert not any(t.startswith("unet: ") for t in texts)
    assert fits["fcn"] is not None and fits["fcn"].calls
    decode(metric_vs(runs, "dose", METRIC, hue="model", fits=fits))
    with pytest.raises(ValueError, match="hue"):
        metric_vs(runs, "dose", METRIC, fits=fits)


def test_metric_vs_bars_are_the_tables_bootstrap_intervals(runs: pd.DataFrame) -> None:
    figure = _build_metric_vs(runs, "dose", METRIC, log_x=False, seed=3)
    ax = figure.axes[0]
    assert ax.get_xscale() == "linear"
    drawn = bar_ends(ax.containers[0])
    assert [x for x, _, _ in drawn] == list(DOSES)
    for x, low, high in drawn:
        # The report's tables: summarize → bootstrap_ci of the level's runs in table order.
        y = runs.loc[runs["dose"] == x, METRIC].to_numpy()
        (summary,) = st.summarize({x: list(y)}, seed=3)
        assert (low, high) == pytest.approx((summary.ci_low, summary.ci_high), abs=1e-12)
        assert (low, high) == pytest.approx(st.bootstrap_ci(y, seed=3), abs=1e-12)
    # The points table gives the same numbers.
    points = level_summaries(runs, "dose", METRIC, seed=3)
    assert points["n"].tolist() == [10, 10, 10, 10]
    np.testing.assert_allclose(points["ci_low"], [low for _, low, _ in drawn], atol=1e-12)
    np.testing.assert_allclose(points["ci_high"], [high for _, _, high in drawn], atol=1e-12)


def test_metric_vs_bars_of_two_runs_are_their_range_and_say_so() -> None:
    # Two runs near the top of F1's range: a t-interval (t = 12.7 at n = 2) reaches 1.4.
    two = pd.DataFrame(
        {
            "model": ["unet"] * 4,
            "dose": [1e5, 1e5, 1e6, 1e6],
            METRIC: [0.85, 0.97, 0.90, 0.99],
            "repeat": [0, 1, 0, 1],
        }
    )
    figure = _build_metric_vs(two, "dose", METRIC, hue="model")
    drawn = bar_ends(figure.axes[0].containers[0])
    np.testing.assert_allclose(drawn, [(1e5, 0.85, 0.97), (1e6, 0.90, 0.99)], atol=1e-12)
    assert "mean ± 95 % bootstrap CI of the mean, n = 2 runs per point" in legend_text(figure)
    points = level_summaries(two, "dose", METRIC, hue="model")
    assert list(points.columns) == [
        "model",
        "level",
        "n",
        "degenerate",
        "mean",
        "ci_low",
        "ci_high",
    ]
    np.testing.assert_allclose(
        points[["ci_low", "ci_high"]].to_numpy(), [[0.85, 0.97], [0.90, 0.99]], atol=1e-12
    )
    # Clipped to the metric's range when a value lies outside it (here a logged 1.2).
    wild = two.assign(**{METRIC: [0.85, 1.2, 0.90, 0.99]})
    assert level_summaries(wild, "dose", METRIC)["ci_high"].tolist()[0] == 1.0
    assert metric_range(METRIC) == (0.0, 1.0)
    assert metric_range("heldout/localisation_error") == (0.0, math.inf)


def test_metric_vs_marks_degenerate_runs(runs: pd.DataFrame) -> None:
    runs = runs.copy()
    collapsed = (runs["model"] == "fcn") & (runs["dose"] <= 1e4) & (runs["repeat"] < 2)
    runs.loc[collapsed, METRIC] = 0.0
    runs["degenerate"] = collapsed
    figure = _build_metric_vs(runs, "dose", METRIC, hue="model", degenerate_label="collapsed")
    marked = crosses(figure)
    assert len(marked) == 4 and np.all(marked[:, 1] == 0.0)
    np.testing.assert_allclose(np.sort(marked[:, 0]), [1e3, 1e3, 1e4, 1e4], rtol=0.1)
    assert "collapsed" in legend_text(figure).split(" | ")
    # The other runs stay dots; the means still count the degenerate runs.
    points_drawn = [c for c in figure.axes[0].collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in points_drawn) == len(runs)  # 36 dots, 4 crosses
    points = level_summaries(runs, "dose", METRIC, hue="model")
    first = points.iloc[0]
    assert (first["model"], first["level"], first["n"], first["degenerate"]) == ("fcn", 1e3, 5, 2)
    assert first["mean"] == pytest.approx(
        runs.loc[runs["dose"].eq(1e3) & runs["model"].eq("fcn"), METRIC].mean()
    )
    # Without the column nothing is marked.
    assert len(crosses(_build_metric_vs(runs.drop(columns="degenerate"), "dose", METRIC))) == 0


def test_metric_vs_draws_a_curve_only_inside_the_metric_range(runs: pd.DataFrame) -> None:
    fit = ExpFit(params={"F0": 0.9, "A": 1.2, "alpha": 3e4}, stderr={})  # −0.3 at low dose
    figure = _build_metric_vs(runs, "dose", METRIC, fit=fit)
    (curve,) = [line for line in figure.axes[0].lines if len(line.get_xdata()) == 300]
    y = np.asarray(curve.get_ydata(), dtype=float)
    x = np.asarray(curve.get_xdata(), dtype=float)
    expected = 0.9 - 1.2 * np.exp(-x / 3e4)
    inside = expected >= 0.0
    assert inside.any() and not inside.all()
    assert np.all(np.isnan(y[~inside]))
    np.testing.assert_allclose(y[inside], expected[inside])


def test_fill_metric_unit() -> None:
    assert fill_metric_unit("value as B → ∞ [metric unit]", "heldout/f1") == "value as B → ∞ [1]"
    text = fill_metric_unit("value [metric unit]", "heldout/f1", dimensionless="")
    assert text == "value"
    assert fill_metric_unit("a [metric unit·images^b]", "test/x/localisation_error") == (
        "a [pm·images^b]"
    )


def test_metric_vs_log_default_for_train_size(runs: pd.DataFrame) -> None:
    wide = runs.assign(train_size=runs["dose"].map({1e3: 10, 1e4: 50, 1e5: 200, 1e6: 1000}))
    assert _build_metric_vs(wide, "train_size", METRIC).axes[0].get_xscale() == "log"
    narrow = runs.assign(train_size=runs["dose"].map({1e3: 100, 1e4: 200, 1e5: 400, 1e6: 800}))
    assert _build_metric_vs(narrow, "train_size", METRIC).axes[0].get_xscale() == "linear"


def test_metric_vs_nan_dose_and_nan_metrics(runs: pd.DataFrame) -> None:
    runs = runs.copy()
    runs.loc[runs.index[:4], "dose"] = np.nan
    runs.loc[runs["dose"] == 1e6, METRIC] = np.nan
    figure = _build_metric_vs(runs, "dose", METRIC, fit=make_fit())
    assert any(t.get_text() == "4 run(s) not shown (dose stored)" for t in figure.axes[0].texts)
    decode(metric_vs(runs, "dose", METRIC, fit=make_fit(), hue="model"))
    decode(metric_vs(runs.assign(**{METRIC: np.nan}), "dose", METRIC, fit=make_fit()))
    single = runs[runs["repeat"] == 0]
    decode(metric_vs(single, "dose", METRIC))


# ------------------------------------------------------------------ image_grid


def test_image_grid(runs: pd.DataFrame) -> None:
    a = box_strip(runs, "dose", METRIC)
    b = metric_vs(runs, "dose", METRIC)
    png = image_grid([("best run", a), ("median run", b), ("worst run", a)], columns=2)
    image = decode(png)
    assert image.shape[1] > image.shape[0] * 0.7  # two columns, two rows
    assert image_grid([("best run", a), ("median run", b), ("worst run", a)]) == png
    one = decode(image_grid([("only", a)], columns=3))
    assert one.shape[1] < image.shape[1]
    decode(image_grid([("broken", b"not a png")]))


def test_image_grid_empty() -> None:
    png = image_grid([])
    image = decode(png)
    assert image.shape[0] < 300
    assert image_grid([]) == png
    with pytest.raises(ValueError, match="columns"):
        image_grid([], columns=0)
