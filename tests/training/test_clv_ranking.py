"""The backtest's ``clv.ranking`` block: why a tied baseline (last period's spend) can out-rank a better score."""

from __future__ import annotations

import numpy as np
import pytest

from training.backtest import clv_ranking
from training.metrics import spearman, spend_ranking, ties_broken


def _window(seed: int = 0, n: int = 3000):
    """A window where ~85% spend nothing; last period's spend comes from the same buying probability."""
    rng = np.random.default_rng(seed)
    p_buy = 1.0 - np.exp(-0.8 * rng.gamma(0.3, 1.0, n))
    spend = np.where(rng.random(n) < p_buy, rng.gamma(3.0, 20.0, n), 0.0)
    last = np.where(rng.random(n) < p_buy, rng.gamma(3.0, 20.0, n), 0.0)
    return rng, p_buy, spend, last


def test_a_better_continuous_score_loses_spearman_to_a_tied_one_and_the_note_says_why():
    rng, p_buy, spend, last = _window()
    model = p_buy * np.exp(rng.normal(0.0, 3.0, len(p_buy)))  # a noisy, tie-free view of the buying probability
    out = clv_ranking(spend, model, model, last)
    m, lp = out["model"], out["baselines"]["last_period"]
    assert m["auc_spends"] > lp["auc_spends"] and m["spearman_spenders"] > lp["spearman_spenders"]
    assert spearman(spend, last) > spearman(spend, model) + 0.05  # yet the tied score wins on Spearman
    assert lp["tied_share"] == pytest.approx(np.mean(last == 0)) and lp["tied_share"] > 0.8 and m["tied_share"] < 0.01
    assert lp["spearman_ties_broken"] == pytest.approx(spearman(spend, ties_broken(last, model)))
    assert set(out["baselines"]) == {"btyd_gg", "last_period"}
    note = out["note"]
    assert f"{spearman(spend, last):.4f}" in note and f"{m['auc_spends']:.4f}" in note and "tied" in note


def test_no_note_when_last_period_ranks_better_or_worse_on_its_merits():
    rng, p_buy, spend, last = _window(1)
    good = p_buy * np.exp(rng.normal(0.0, 0.5, len(p_buy)))
    assert spearman(spend, good) > spearman(spend, last) and "note" not in clv_ranking(spend, good, good, last)
    # a score worse at telling who spends at all: no claim that the tie is the reason
    bad = rng.random(len(p_buy))
    assert "note" not in clv_ranking(spend, bad, bad, last)


def test_spend_ranking_and_ties_broken():
    actual = np.array([0.0, 0.0, 0.0, 5.0, 10.0, 20.0])
    pred = np.array([0.0, 0.0, 1.0, 1.0, 3.0, 2.0])
    out = spend_ranking(actual, pred)
    assert out["tied_share"] == pytest.approx(2 / 6)
    assert out["auc_spends"] == pytest.approx((3 + 3 + 2.5) / 9)  # spenders 1, 3, 2 against 0, 0, 1
    assert out["spearman_spenders"] == pytest.approx(spearman([5.0, 10.0, 20.0], [1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(ties_broken(np.array([1.0, 0.0, 0.0, 2.0]), np.array([0.0, 5.0, 1.0, 0.0])),
                                  [2.0, 1.0, 0.0, 3.0])
