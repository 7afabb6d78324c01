"""Every chart is a Figure with plain-words labels that renders to PNG, without touching pyplot state."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from training import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 600)
    p = np.clip(0.3 * y + 0.7 * rng.uniform(size=600), 0, 1)
    spend = rng.gamma(0.8, 100.0, 600)
    pred = spend * rng.uniform(0.6, 1.4, 600)
    return y, p, spend, pred


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _labels(fig: Figure) -> list[str]:
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return [t for t in texts if t]


def _check(fig: Figure, min_labels: int = 3) -> None:
    assert isinstance(fig, Figure)
    assert _png(fig).startswith(PNG_MAGIC)
    assert len(_labels(fig)) >= min_labels
    main = fig.axes[0]
    assert main.get_xlabel() and main.get_ylabel(), "the main chart needs both axis labels"


def test_all_charts_render(data, tmp_path):
    y, p, spend, pred = data
    rng = np.random.default_rng(1)
    figures = {
        "roc": plots.roc_plot(y, p, baselines={"days since last order": rng.uniform(size=len(y))}),
        "calibration": plots.calibration_plot(y, p),
        "gains": plots.gains_plot(y, p),
        "clv_deciles": plots.clv_decile_plot(spend, pred, currency="CNY"),
        "feature_importance": plots.feature_importance_plot(["recency", "frequency", "T"], [5.0, 3.0, 1.0]),
        "expansion_curve": plots.expansion_curve_plot(metrics.expansion_curve(y, p)),
    }
    for name, fig in figures.items():
        _check(fig)
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_MAGIC)


def test_charts_do_not_use_pyplot_state(data):
    import matplotlib.pyplot as plt

    y, p, *_ = data
    before = plt.get_fignums()
    plots.roc_plot(y, p)
    plots.gains_plot(y, p)
    assert plt.get_fignums() == before


def test_roc_plot_legend_names_model_and_baselines(data):
    y, p, *_ = data
    fig = plots.roc_plot(y, p, baselines={"BTYD": p[::-1].copy()})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lbl.startswith("model (AUC") for lbl in labels)
    assert any(lbl.startswith("BTYD (AUC") for lbl in labels)
    assert any("random" in lbl for lbl in labels)


def test_gains_plot_has_gains_and_lift_panels(data):
    y, p, *_ = data
    fig = plots.gains_plot(y, p)
    titles = [ax.get_title() for ax in fig.axes]
    assert "Cumulative gains" in titles and "Lift by decile" in titles
    lift_ax = fig.axes[titles.index("Lift by decile")]
    assert len(lift_ax.patches) == 10


def test_clv_decile_plot_bars_follow_gains_table(data):
    *_, spend, pred = data
    fig = plots.clv_decile_plot(spend, pred, n=5)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    table = metrics.gains_table(spend, pred, n=5)
    assert heights[:5] == pytest.approx(table["pred_mean"].tolist())
    assert heights[5:] == pytest.approx(table["actual_mean"].tolist())


def test_feature_importance_keeps_top_n_largest_first():
    names = [f"f{i}" for i in range(30)]
    imp = np.arange(30, dtype=float)
    fig = plots.feature_importance_plot(names, imp, top=5)
    ax = fig.axes[0]
    by_height = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert set(by_height.values()) == {"f25", "f26", "f27", "f28", "f29"}
    assert by_height[max(by_height)] == "f29"  # the largest at the top
    with pytest.raises(ValueError, match="names"):
        plots.feature_importance_plot(["a"], [1.0, 2.0])


def test_expansion_curve_plot_accepts_frame_or_arrays(data):
    y, p, *_ = data
    curve = metrics.expansion_curve(y, p, n_points=50)
    from_frame = plots.expansion_curve_plot(curve)
    renamed = plots.expansion_curve_plot(curve.rename(columns={"frac": "fraction"}))
    from_arrays = plots.expansion_curve_plot(curve["frac"], curve["recall"])
    lines = [fig.axes[0].get_lines()[0].get_ydata() for fig in (from_frame, renamed, from_arrays)]
    np.testing.assert_allclose(lines[0], lines[1])
    np.testing.assert_allclose(lines[0], lines[2])
    assert lines[0][-1] == pytest.approx(100.0)


def test_expansion_curve_plot_rejects_wrong_input():
    import pandas as pd

    with pytest.raises(ValueError, match="recall"):
        plots.expansion_curve_plot(pd.DataFrame({"frac": [0.1]}))
    with pytest.raises(ValueError, match="recall"):
        plots.expansion_curve_plot([0.1, 0.2])


def test_empty_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no rows"):
        plots.roc_plot([np.nan], [0.5])
