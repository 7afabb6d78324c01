"""Charts for model runs and reports: ROC, calibration, gains/lift, CLV deciles, feature importance, expansion.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global figure state, no
GUI backend; rendering uses Agg), so it is safe in tests, notebooks, the CLI and threads. Save with
``fig.savefig(path)`` or log with :func:`training.tracking.log_figure`. Titles and axis labels are in plain
words for marketers; the technical name is given in brackets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

from training import metrics

__all__ = [
    "roc_plot",
    "calibration_plot",
    "gains_plot",
    "clv_decile_plot",
    "feature_importance_plot",
    "expansion_curve_plot",
]

_MODEL_COLOR = "#1f5fa8"
_ACTUAL_COLOR = "#e07b39"
_GREY = "#8c8c8c"
_BASELINE_COLORS = ("#e07b39", "#4a9b5c", "#9467bd", "#8c564b", "#d62728")


def _figure(width: float = 6.4, height: float = 4.8, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _clean_pair(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, p = metrics._clean(y, p)
    if len(y) == 0:
        raise ValueError("no rows to plot (all values missing?)")
    return y, p


def roc_plot(
    y: ArrayLike,
    p: ArrayLike,
    *,
    baselines: Mapping[str, ArrayLike] | None = None,
    title: str = "How well the model picks out customers who will stop buying (ROC curve)",
) -> Figure:
    """ROC curve of the model, with optional baseline scores drawn beside it.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcome (1 = churned).
    p : array-like of float
        Model score.
    baselines : mapping of str to array-like, optional
        Other scores for the same rows, e.g. ``{"BTYD": p_btyd, "days since last order": recency}``.
    title : str
    """
    fig, (ax,) = _figure()
    _clean_pair(y, p)
    curves = {"model": np.asarray(p, dtype=float)}
    curves.update({k: np.asarray(v, dtype=float) for k, v in (baselines or {}).items()})
    colors = [_MODEL_COLOR, *_BASELINE_COLORS]
    for (label, scores), color in zip(curves.items(), colors, strict=False):
        yy, ss = metrics._clean(y, scores)
        if len(np.unique(yy)) < 2:
            continue
        fpr, tpr, _ = roc_curve(yy, ss)
        ax.plot(fpr, tpr, color=color, lw=2.2 if label == "model" else 1.4,
                label=f"{label} (AUC {metrics.auc(yy, ss):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color=_GREY, lw=1, label="random guess (AUC 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Share of staying customers wrongly flagged (false positive rate)")
    ax.set_ylabel("Share of leaving customers caught (true positive rate)")
    ax.set_title(_wrap(title), fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def calibration_plot(
    y: ArrayLike,
    p: ArrayLike,
    *,
    n_bins: int = 10,
    title: str = "Do predicted risks match what happened? (calibration)",
) -> Figure:
    """Reliability diagram: mean predicted probability vs observed rate per probability bin, with counts.

    Points on the diagonal mean a predicted 30% risk happens about 30% of the time.
    """
    y, p = _clean_pair(y, p)
    fig, (ax,) = _figure()
    bins = np.minimum((np.clip(p, 0, 1) * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "y": y, "p": p}).groupby("bin").agg(
        predicted=("p", "mean"), observed=("y", "mean"), count=("y", "size")
    )
    ax.plot([0, 1], [0, 1], ls="--", color=_GREY, lw=1, label="perfectly calibrated")
    ax.plot(frame["predicted"], frame["observed"], marker="o", color=_MODEL_COLOR, lw=2,
            label=f"model (ECE {metrics.ece(y, np.clip(p, 0, 1), n_bins=n_bins):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Predicted probability (mean within each bin)")
    ax.set_ylabel("Observed share that happened")
    ax.set_title(_wrap(title), fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    hist = ax.inset_axes((0.58, 0.06, 0.38, 0.22))
    hist.bar(frame.index / n_bins + 0.5 / n_bins, frame["count"], width=0.9 / n_bins, color=_MODEL_COLOR,
             alpha=0.6)
    hist.set_xlim(0, 1)
    hist.set_title("customers per bin", fontsize=7)
    hist.tick_params(labelsize=6)
    return fig


def gains_plot(
    y: ArrayLike,
    p: ArrayLike,
    *,
    n: int = 10,
    title: str = "Targeting the highest scores first (cumulative gains and lift)",
) -> Figure:
    """Cumulative gains curve (left) and lift per decile (right).

    Left: the share of all positives (e.g. churners) captured when contacting the top x% of customers by
    score, against random contact and a perfect ranking. Right: how many times the base rate each decile holds.
    """
    y, p = _clean_pair(y, p)
    table = metrics.gains_table(y, p, n=n)
    fig, (left, right) = _figure(width=11, height=4.6, ncols=2)
    x = np.r_[0.0, table["cum_share_population"].to_numpy()]
    gain = np.r_[0.0, table["cum_gain"].to_numpy()]
    perfect = np.r_[0.0, metrics.gains_table(y, y, n=n)["cum_gain"].to_numpy()]
    left.plot(x * 100, gain * 100, marker="o", color=_MODEL_COLOR, lw=2, label="model")
    left.plot(x * 100, perfect * 100, color=_ACTUAL_COLOR, lw=1.2, ls=":", label="perfect ranking")
    left.plot([0, 100], [0, 100], ls="--", color=_GREY, lw=1, label="random")
    left.set_xlabel("Customers contacted, highest score first (%)")
    left.set_ylabel("Share of all positives reached (%)")
    left.set_title("Cumulative gains", fontsize=10)
    left.legend(loc="lower right", fontsize=8)
    right.bar(table["decile"], table["lift"], color=_MODEL_COLOR, alpha=0.85)
    right.axhline(1.0, ls="--", color=_GREY, lw=1, label="random (lift 1)")
    right.set_xticks(table["decile"])
    right.set_xlabel("Score decile (1 = highest scores)")
    right.set_ylabel("Lift: rate in decile / overall rate")
    right.set_title("Lift by decile", fontsize=10)
    right.legend(loc="upper right", fontsize=8)
    fig.suptitle(_wrap(title, 90), fontsize=11)
    return fig


def clv_decile_plot(
    actual: ArrayLike,
    pred: ArrayLike,
    *,
    n: int = 10,
    currency: str = "",
    title: str = "Predicted vs actual spend per customer, by predicted-value decile",
) -> Figure:
    """Grouped bars of mean predicted and mean actual spend per customer in each predicted-value decile.

    Customers are sorted by predicted value and split into ``n`` equal groups (1 = most valuable predicted).
    Bars of equal height mean the model gets both the ranking and the level right.
    """
    actual, pred = _clean_pair(actual, pred)
    table = metrics.gains_table(actual, pred, n=n)
    fig, (ax,) = _figure(width=8, height=4.8)
    xs = table["decile"].to_numpy()
    width = 0.4
    ax.bar(xs - width / 2, table["pred_mean"], width=width, color=_MODEL_COLOR, label="predicted")
    ax.bar(xs + width / 2, table["actual_mean"], width=width, color=_ACTUAL_COLOR, label="actual")
    ax.set_xticks(xs)
    ax.set_xlabel("Predicted-value decile (1 = highest predicted spend)")
    unit = f" ({currency})" if currency else ""
    ax.set_ylabel(f"Average spend per customer{unit}")
    mape = metrics.decile_mape(actual, pred, n=n)
    total = metrics.total_error_pct(actual, pred)
    ax.set_title(_wrap(f"{title}\n(total error {total:+.1f}%, mean decile error {mape:.1f}%)"), fontsize=11)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def feature_importance_plot(
    names: Sequence[str],
    importances: ArrayLike,
    *,
    top: int = 20,
    title: str = "What drives the prediction most (feature importance)",
    xlabel: str = "Importance (share of total gain)",
) -> Figure:
    """Horizontal bars of the ``top`` most important features, largest at the top.

    Importances are shown as shares of their total (so LightGBM gain and split counts read the same way).
    """
    names = [str(n) for n in names]
    imp = np.asarray(importances, dtype=float)
    if len(names) != len(imp):
        raise ValueError(f"{len(names)} names but {len(imp)} importances")
    if len(names) == 0:
        raise ValueError("no features to plot")
    imp = np.nan_to_num(imp, nan=0.0)
    total = np.abs(imp).sum()
    share = imp / total if total else imp
    order = np.argsort(-np.abs(share), kind="stable")[:top]
    fig, (ax,) = _figure(width=7, height=max(2.5, 0.32 * len(order) + 1.2))
    ys = np.arange(len(order))[::-1]
    ax.barh(ys, share[order], color=_MODEL_COLOR)
    ax.set_yticks(ys)
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Customer attribute used by the model")
    ax.set_title(_wrap(title), fontsize=11)
    return fig


def expansion_curve_plot(
    curve: pd.DataFrame | ArrayLike,
    recall: ArrayLike | None = None,
    *,
    title: str = "How many look-alike customers we find as the audience grows (expansion curve)",
) -> Figure:
    """Recall of held-out seed customers vs audience size, against random selection.

    Parameters
    ----------
    curve : DataFrame or array-like
        Either the output of :func:`training.metrics.expansion_curve` (columns ``frac`` — or ``fraction`` —
        and ``recall``, shares 0..1), or the audience shares themselves with ``recall`` given separately.
    recall : array-like, optional
        Recall at each share, when ``curve`` is an array of shares.

    The top 1%, 5% and 10% points are labelled.
    """
    if isinstance(curve, pd.DataFrame):
        if recall is not None:
            raise ValueError("give either a curve DataFrame or (fractions, recall), not both")
        frac_col = "frac" if "frac" in curve.columns else "fraction"
        missing = {frac_col, "recall"} - set(curve.columns)
        if missing:
            raise ValueError(f"expansion curve lacks column(s) {sorted(missing)}; got {list(curve.columns)}")
        c = pd.DataFrame({"frac": curve[frac_col].to_numpy(float), "recall": curve["recall"].to_numpy(float)})
    else:
        if recall is None:
            raise ValueError("expansion curve: recall values are missing (pass a DataFrame or fractions and recall)")
        c = pd.DataFrame({"frac": np.asarray(curve, float), "recall": np.asarray(recall, float)})
    c = c.dropna().sort_values("frac").reset_index(drop=True)
    if c.empty:
        raise ValueError("expansion curve is empty")
    x = np.r_[0.0, c["frac"].to_numpy()] * 100
    r = np.r_[0.0, c["recall"].to_numpy()] * 100
    fig, (ax,) = _figure(width=7, height=4.8)
    ax.plot(x, r, color=_MODEL_COLOR, lw=2, label="look-alike model")
    ax.plot([0, 100], [0, 100], ls="--", color=_GREY, lw=1, label="random selection")
    for mark in (1, 5, 10):
        row = c.loc[(c["frac"] - mark / 100).abs().idxmin()]
        if abs(row["frac"] * 100 - mark) < 0.5:
            ax.annotate(f"top {mark}%: {row['recall'] * 100:.0f}%", (row["frac"] * 100, row["recall"] * 100),
                        textcoords="offset points", xytext=(8, -4), fontsize=7)
            ax.plot(row["frac"] * 100, row["recall"] * 100, "o", color=_MODEL_COLOR, ms=4)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("Audience size (% of all customers, most similar first)")
    ax.set_ylabel("Held-out seed customers found (%)")
    ax.set_title(_wrap(title), fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _wrap(text: str, width: int = 60) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))
