"""The tier-move probabilities are calibrated: the zero-inflated spend distribution (no spend with the churn model's
probability over the CLV horizon, lognormal spend otherwise) and the backtest that judges them
(:mod:`training.tier_backtest`), on synthetic populations whose true spend distribution is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from training.decisions.tier_forecast import (
    SpendDistribution,
    ZeroInflatedSpend,
    pooled_sigma,
    predict_tiers,
    spend_sigma_parts,
    tier_forecast,
)
from training.decisions.tiers import load_tier_rules
from training.tier_backtest import reliability, tier_backtest

RULES = load_tier_rules()  # 普通 0, 银卡 1000, 金卡 3000, 铂金 8000, 钻石 20000
SIGMA = 0.6  # the true log-sd of spend given any spend


def population(n: int = 40_000, seed: int = 0, *, churn_horizon: int = 365):
    """Scores of a known truth (CLV horizon 365): person i spends nothing with probability ``pi_i``, else
    lognormal with mean ``m_i`` and log-sd :data:`SIGMA`; the model is right: ``churn_probability = pi_i``,
    ``clv_mean`` the true mean, ``clv_p10`` / ``clv_p90`` the true 10th / 90th percentiles. Returns the scores and
    one realised trailing-12-month spend per person."""
    rng = np.random.default_rng(seed)
    pi = rng.beta(1.2, 1.5, n)
    positive_mean = np.exp(rng.normal(6.3, 1.0, n))
    mu = np.log(positive_mean) - SIGMA ** 2 / 2

    def quantile(level):  # the unconditional quantile: 0 while the level is inside the mass at no spend
        cond = (level - pi) / (1 - pi)
        return np.where(cond > 0, np.exp(mu + SIGMA * norm.ppf(np.clip(cond, 1e-12, 1 - 1e-12))), 0.0)

    spend_now = np.where(rng.uniform(size=n) < pi, 0.0, np.exp(mu + SIGMA * rng.normal(size=n)))  # last year
    spend_next = np.where(rng.uniform(size=n) < pi, 0.0, np.exp(mu + SIGMA * rng.normal(size=n)))
    scores = pd.DataFrame({
        "person_id": [f"p{i:06d}" for i in range(n)], "eligible": True, "spend_365d": spend_now,
        "spend_carryover": 0.0, "churn_probability": pi, "clv_mean": (1 - pi) * positive_mean,
        "clv_p10": quantile(0.1), "clv_p90": quantile(0.9),
        "churn_horizon_days": pd.array([churn_horizon] * n, dtype="Int64"),
        "clv_horizon_days": pd.array([365] * n, dtype="Int64"),
    })
    return scores, spend_next


@pytest.fixture(scope="module")
def known():
    return population()


def test_zero_inflated_distribution_has_the_mean_and_the_mass_at_no_spend():
    dist = ZeroInflatedSpend.from_scores([500.0, 80.0, 0.0, 30.0], [0.2, 0.9, 0.5, 1.0], 0.7)
    assert dist.mean()[:3] == pytest.approx([500.0, 80.0, 0.0])
    assert dist.mean_matched[:3].all() and not dist.mean_matched[3]  # spend certain to be 0 cannot have mean 30
    assert dist.prob_at_least(1e-9) == pytest.approx([0.8, 0.1, 0.0, 0.0])
    assert dist.prob_at_least(0.0).tolist() == [1.0] * 4
    rng = np.random.default_rng(1)
    draws = np.where(rng.uniform(size=400_000) < 0.2, 0.0,
                     np.exp(np.log(500.0 / 0.8) - 0.7 ** 2 / 2 + 0.7 * rng.normal(size=400_000)))
    for x in (100.0, 625.0, 2000.0):
        assert dist.prob_at_least(x)[0] == pytest.approx((draws >= x).mean(), abs=0.003)
    assert (dist.prob_at_least(dist.upper() + 1e-6) < 1e-8).all()
    with pytest.raises(ValueError, match="sigma"):
        ZeroInflatedSpend.from_scores([1.0], [0.5], 0.0)


def test_the_pooled_log_sd_is_recovered_from_the_interval(known):
    scores, _ = known
    forecast = tier_forecast(scores)
    assert isinstance(forecast.distribution, ZeroInflatedSpend)
    # exact where clv_p90's level q has z_q above the true log-sd; below it the smaller root is taken, a bit low
    assert forecast.distribution.sigma == pytest.approx(SIGMA, abs=0.05)
    assert forecast.no_spend == pytest.approx(scores["churn_probability"].to_numpy())


def test_batches_add_up_to_the_population_log_sd(known):
    scores, _ = known
    parts = [spend_sigma_parts(scores.iloc[i:i + 6_000]) for i in range(0, len(scores), 6_000)]
    sigma = pooled_sigma(sum(p[0] for p in parts), sum(p[1] for p in parts))
    assert sigma == tier_forecast(scores).distribution.sigma
    batch = scores.iloc[:500]
    pd.testing.assert_frame_equal(predict_tiers(batch, RULES, spend_sigma=sigma),
                                  predict_tiers(scores, RULES).iloc[:500])
    assert spend_sigma_parts(scores.drop(columns="churn_probability")) == (0.0, 0)


def test_predicted_movers_match_the_realised_ones_when_the_model_is_right(known):
    scores, realised = known
    block = tier_backtest(scores, realised, RULES)
    for move in ("up", "down"):
        m = block["movers"][move]
        assert m["realised"] > 1000
        assert m["expected"] == pytest.approx(m["realised"], rel=0.05), move
        assert block["moves"][move]["ece"] < 0.02
        assert block["moves"][move]["brier"] < 0.8 * block["moves"][move]["brier_constant"]


def test_the_interval_only_distribution_was_miscalibrated_on_the_same_truth(known):
    """The old distribution (used when the scores carry no no-spend probability over the horizon) from the same,
    exact interval: far too many predicted falls — what the backtest found on the simulator."""
    scores, realised = known
    block = tier_backtest(scores.drop(columns="churn_probability"), realised, RULES)
    assert isinstance(tier_forecast(scores.drop(columns="churn_probability")).distribution, SpendDistribution)
    down = block["movers"]["down"]
    assert down["expected"] > 1.2 * down["realised"]
    fixed = tier_backtest(scores, realised, RULES)
    for move in ("up", "down", "stay"):
        assert fixed["moves"][move]["brier"] < block["moves"][move]["brier"]


def test_a_churn_horizon_other_than_the_clv_one_keeps_the_interval_distribution():
    scores, _ = population(2_000, seed=3, churn_horizon=90)
    assert isinstance(tier_forecast(scores).distribution, SpendDistribution)
    pd.testing.assert_frame_equal(predict_tiers(scores, RULES), predict_tiers(scores.drop(columns="churn_probability"),
                                                                              RULES))


def test_the_btyd_no_purchase_probability_serves_when_the_churn_horizon_differs():
    scores, _ = population(2_000, seed=4, churn_horizon=90)
    pi = scores["churn_probability"].to_numpy()
    btyd = scores.assign(churn_probability=0.5, p_no_purchase=pi)
    forecast = tier_forecast(btyd)
    assert isinstance(forecast.distribution, ZeroInflatedSpend) and forecast.no_spend == pytest.approx(pi)
    same = scores.assign(churn_horizon_days=pd.array([365] * len(scores), dtype="Int64"), p_no_purchase=0.5)
    assert tier_forecast(same).no_spend == pytest.approx(pi)  # over the CLV horizon the churn model comes first
    no_fit = btyd.assign(p_no_purchase=np.nan)  # no BTYD fit
    assert isinstance(tier_forecast(no_fit).distribution, SpendDistribution)


def test_backtest_block_counts_and_reliability_by_hand():
    scores = pd.DataFrame({
        "person_id": ["a", "b", "c", "d"], "eligible": [True, True, True, False],
        "spend_365d": [500.0, 1500.0, 1500.0, 0.0], "spend_carryover": 0.0,
        "clv_mean": [1200.0, 100.0, 2000.0, 0.0], "clv_p10": [np.nan] * 4, "clv_p90": [np.nan] * 4,
        "clv_horizon_days": pd.array([365] * 4, dtype="Int64"),
    })
    block = tier_backtest(scores, [1100.0, 0.0, 900.0, 5000.0], RULES)  # d is not scored
    assert block["members"] == 3
    assert block["movers"] == {"up": {"realised": 1, "expected": 0.0, "tier_move": 1},
                               "down": {"realised": 2, "expected": 0.0, "tier_move": 1}}
    assert block["tier_accuracy"] == {"predicted": pytest.approx(2 / 3, abs=1e-4), "keep_today": 0.0}
    assert block["moves"]["up"] == {"realised_rate": pytest.approx(1 / 3, abs=1e-4)}  # no interval: no probabilities
    bins = reliability([0.05, 0.07, 0.95, 1.0], [0, 1, 1, 1], n_bins=10)
    assert bins == [{"bin": [0.0, 0.1], "n": 2, "mean_p": 0.06, "realised": 0.5},
                    {"bin": [0.9, 1.0], "n": 2, "mean_p": 0.975, "realised": 1.0}]
    with pytest.raises(ValueError, match="rows"):
        tier_backtest(scores, [1.0], RULES)
