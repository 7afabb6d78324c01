"""Tiers from predicted value: carried-over spend, the per-person spend distribution, the predicted tier and move
with their probabilities, and threshold suggestions meeting target shares (hand-made frames, no models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from training.decisions.tier_forecast import (
    DEFAULT_TOP_SHARES,
    PREDICTED_TIER_COLUMNS,
    SpendDistribution,
    predict_tiers,
    read_shares,
    rules_yaml,
    spend_carryover,
    suggest_tier_thresholds,
    suggest_tiers,
    tier_forecast,
    tier_shares,
)
from training.decisions.tiers import load_tier_rules

RULES = load_tier_rules()  # 普通 0, 银卡 1000, 金卡 3000, 铂金 8000, 钻石 20000


def frame(spend, carry, mean, p10, p90, *, horizon=90, eligible=None) -> pd.DataFrame:
    n = len(spend)
    return pd.DataFrame({
        "person_id": [f"p{i:05d}" for i in range(n)],
        "eligible": [True] * n if eligible is None else eligible,
        "spend_365d": spend, "spend_carryover": carry, "clv_mean": mean, "clv_p10": p10, "clv_p90": p90,
        "clv_horizon_days": pd.array([horizon] * n, dtype="Int64"),
    })


def sample(dist: SpendDistribution, row: int, n: int = 400_000, seed: int = 0) -> np.ndarray:
    """Draws from one row's distribution by its quantile function (an independent reading of the definition)."""
    u = np.random.default_rng(seed).uniform(size=n)
    k, inv = dist.knots[row], dist.inv_power[row]
    t = np.clip((u - 0.1) / 0.8, 0.0, 1.0)
    body = k[1] + (k[2] - k[1]) * (t ** (1.0 / inv) if inv > 0 else 0.0)
    level = np.where(u < 0.1, k[1] * u / 0.1, np.where(u < 0.9, body, k[2] + (k[3] - k[2]) * (u - 0.9) / 0.1))
    return np.expm1(level)


# --- carried-over spend --------------------------------------------------------------------------------------------


def test_carryover_reads_the_window_or_interpolates_between_two():
    features = pd.DataFrame({"spend_30d": [10.0, 0.0], "spend_90d": [40.0, np.nan], "spend_180d": [100.0, 50.0],
                             "spend_365d": [285.0, 50.0]})
    assert spend_carryover(features, 275).tolist() == [40.0, 0.0]  # 90 days kept: the spend_90d column
    # 90-day horizon: 275 days kept, between the 180- and 365-day windows (95 of their 185 days)
    assert spend_carryover(features, 90) == pytest.approx([100.0 + 185.0 * 95 / 185, 50.0])
    assert spend_carryover(features, 350) == pytest.approx([10.0 * 15 / 30, 0.0])  # below the shortest window
    assert spend_carryover(features, 365).tolist() == [0.0, 0.0]
    assert spend_carryover(features, 500).tolist() == [0.0, 0.0]


def test_carryover_without_a_long_enough_window_names_it():
    with pytest.raises(InputError, match="spend_<w>d") as exc:
        spend_carryover(pd.DataFrame({"spend_30d": [1.0]}), 90)
    assert exc.value.field == ("spend_275d",)
    with pytest.raises(InputError, match="positive"):
        spend_carryover(pd.DataFrame({"spend_365d": [1.0]}), 0)


# --- the spend distribution ----------------------------------------------------------------------------------------


def test_distribution_has_the_interval_and_the_mean():
    mean, p10, p90 = np.array([150.0, 1000.0, 500.0]), np.array([0.0, 300.0, 500.0]), np.array([500.0, 2500.0, 500.0])
    dist = SpendDistribution.from_interval(mean, p10, p90)
    assert dist.mean_matched.all()
    assert dist.mean() == pytest.approx(mean, rel=1e-6)
    assert dist.prob_at_least(p90) == pytest.approx([0.1, 0.1, 0.9])  # the third: p10 = p90, all of the body at 500
    assert dist.prob_at_least(np.array([1e-9, 300.0, 1e-9]))[1] == pytest.approx(0.9)
    assert dist.prob_at_least(0.0).tolist() == [1.0, 1.0, 1.0]
    for row, x in ((0, 100.0), (1, 1500.0), (2, 700.0)):  # the closed form against draws from the quantile function
        draws = sample(dist, row)
        assert draws.mean() == pytest.approx(mean[row], rel=0.02)
        assert dist.prob_at_least(x)[row] == pytest.approx((draws >= x).mean(), abs=0.004)


def test_a_mean_below_the_log_uniform_body_moves_the_body_towards_p10():
    # p90 = 400 says P(S >= 400) = 10%: a mean of 60 is possible, but only with most of the body near p10 = 5
    dist = SpendDistribution.from_interval([60.0], [5.0], [400.0])
    assert dist.mean_matched.all() and 0 < dist.inv_power[0] < 1
    assert dist.mean() == pytest.approx([60.0], rel=1e-6)
    assert dist.prob_at_least(400.0) == pytest.approx([0.1])
    draws = sample(dist, 0)
    assert np.quantile(draws, [0.1, 0.9]) == pytest.approx([5.0, 400.0], rel=0.02)
    assert draws.mean() == pytest.approx(60.0, rel=0.03)


def test_a_mean_no_distribution_with_the_interval_has_is_flagged():
    dist = SpendDistribution.from_interval([20.0], [0.0], [400.0])  # needs a mean of at least 0.1 * 400
    assert not dist.mean_matched[0] and dist.inv_power[0] == 0.0
    assert dist.mean() == pytest.approx([40.0])
    assert dist.prob_at_least(1.0) == pytest.approx([0.1])  # all of the body at p10 = 0


# --- predicted tier and move ---------------------------------------------------------------------------------------


def test_predicted_tier_move_and_probabilities():
    scores = frame(
        spend=[500.0, 2500.0, 2500.0, 25000.0, 900.0, 0.0],
        carry=[400.0, 1200.0, 200.0, 15000.0, 100.0, 0.0],
        mean=[900.0, 100.0, 300.0, 3000.0, 50.0, 0.0],
        p10=[200.0, 0.0, 0.0, 500.0, 0.0, 0.0],
        p90=[2000.0, 400.0, 900.0, 8000.0, 200.0, 0.0],
        eligible=[True, True, True, True, True, False],
    )
    out = predict_tiers(scores, RULES)
    assert list(out.columns) == list(PREDICTED_TIER_COLUMNS)
    assert out["predicted_spend_365d"].iloc[:5].tolist() == pytest.approx([1300.0, 1300.0, 500.0, 18000.0, 150.0])
    assert out["predicted_tier_en"].tolist() == ["silver", "silver", "regular", "platinum", "regular", None]
    assert out["predicted_tier"].iloc[3] == "铂金"
    assert out["tier_move"].tolist() == ["up", "stay", "down", "down", "stay", None]
    dist = SpendDistribution.from_interval(scores["clv_mean"][:5], scores["clv_p10"][:5], scores["clv_p90"][:5])
    # 0: regular now, up = P(400 + S >= 1000); no tier below
    assert out["p_tier_up"][0] == pytest.approx(dist.prob_at_least(600.0)[0]) and out["p_tier_down"][0] == 0
    # 1: silver now with 1,200 already kept: it cannot fall below 1,000; up = P(S >= 1,800)
    assert out["p_tier_down"][1] == 0 and out["p_tier_up"][1] == pytest.approx(dist.prob_at_least(1800.0)[1])
    # 2: silver now, 200 kept: down = P(S < 800), up = P(S >= 2,800)
    assert out["p_tier_down"][2] == pytest.approx(1 - dist.prob_at_least(800.0)[2])
    assert out["p_tier_up"][2] == pytest.approx(dist.prob_at_least(2800.0)[2])
    # 3: diamond now, nothing above
    assert out["p_tier_up"][3] == 0 and out["p_tier_down"][3] == pytest.approx(1 - dist.prob_at_least(5000.0)[3])
    probs = out[["p_tier_up", "p_tier_down", "p_tier_stay"]].iloc[:5].to_numpy()
    assert probs.sum(axis=1) == pytest.approx(np.ones(5)) and (probs >= 0).all()
    assert out.iloc[5].isna().all()  # not scored: nothing predicted


def test_probabilities_match_draws_of_the_predicted_trailing_spend():
    scores = frame([2500.0], [700.0], [1200.0], [100.0], [3000.0])
    out = predict_tiers(scores, RULES)
    dist = SpendDistribution.from_interval([1200.0], [100.0], [3000.0])
    trailing = 700.0 + sample(dist, 0)
    assert out["p_tier_up"][0] == pytest.approx((trailing >= 3000).mean(), abs=0.004)
    assert out["p_tier_down"][0] == pytest.approx((trailing < 1000).mean(), abs=0.004)


def test_a_horizon_beyond_a_year_counts_its_last_365_days():
    scores = frame([0.0], [999.0], [2920.0], [730.0], [7300.0], horizon=730)  # carry ignored: nothing is kept
    out = predict_tiers(scores, RULES)
    pd.testing.assert_frame_equal(predict_tiers(scores.drop(columns="spend_carryover"), RULES), out)
    assert out["predicted_spend_365d"][0] == pytest.approx(1460.0)
    dist = SpendDistribution.from_interval([2920.0], [730.0], [7300.0])
    assert out["p_tier_up"][0] == pytest.approx(dist.prob_at_least(2000.0)[0])  # 1,000 / (365 / 730)


def test_scores_without_the_interval_get_the_tier_but_no_probabilities():
    scores = frame([0.0, 0.0], [0.0, 0.0], [2000.0, 10.0], [np.nan, np.nan], [np.nan, np.nan])
    out = predict_tiers(scores, RULES)
    assert out["predicted_tier_en"].tolist() == ["silver", "regular"]
    assert out["p_tier_up"].isna().all()
    with pytest.raises(InputError, match="no CLV interval"):
        suggest_tiers(scores, RULES)


def test_bad_scores_are_refused_naming_the_column():
    scores = frame([0.0], [0.0], [10.0], [0.0], [20.0])
    with pytest.raises(InputError, match="spend_carryover") as exc:
        predict_tiers(scores.drop(columns="spend_carryover"), RULES)
    assert exc.value.field == ("scores", "spend_carryover")
    bad = frame([0.0, 0.0], [0.0, 0.0], [10.0, -1.0], [0.0, 0.0], [20.0, 20.0])
    with pytest.raises(InputError, match="clv_mean") as exc:
        predict_tiers(bad, RULES)
    assert exc.value.rows == 1
    mixed = pd.concat([frame([0.0], [0.0], [1.0], [0.0], [2.0], horizon=90),
                       frame([0.0], [0.0], [1.0], [0.0], [2.0], horizon=365).assign(person_id="x")])
    with pytest.raises(InputError, match="one CLV horizon"):
        predict_tiers(mixed, RULES)


# --- shares and thresholds -----------------------------------------------------------------------------------------


def test_default_and_given_shares():
    assert tier_shares(RULES) == pytest.approx([0.5, 0.30, 0.15, 0.04, 0.01])
    assert DEFAULT_TOP_SHARES == (0.01, 0.04, 0.15, 0.30)
    given = tier_shares(RULES, {"钻石": 0.02, "platinum": 0.08, "金卡": 0.2, "silver": 0.3})
    assert given == pytest.approx([0.4, 0.3, 0.2, 0.08, 0.02])
    assert tier_shares(RULES, {"regular": 0.4, "钻石": 0.02, "platinum": 0.08, "金卡": 0.2, "silver": 0.3}) \
        == pytest.approx(given)


@pytest.mark.parametrize(("shares", "match"), [
    ({"钻石": 0.01, "铂金": 0.04, "金卡": 0.15, "bronze": 0.3}, "unknown tier 'bronze'"),
    ({"钻石": 0.01, "铂金": 0.04, "金卡": 0.15}, r"no share for tier\(s\) \['银卡'\]"),
    ({"钻石": 1.5, "铂金": 0.04, "金卡": 0.15, "银卡": 0.3}, "must be in"),
    ({"钻石": 0.3, "铂金": 0.3, "金卡": 0.3, "银卡": 0.3}, "leaving nothing"),
    ({"普通": 0.1, "钻石": 0.01, "铂金": 0.04, "金卡": 0.15, "银卡": 0.3}, "add up to 0.6000"),
    ({"钻石": 0.01, "diamond": 0.01, "铂金": 0.04, "金卡": 0.15, "银卡": 0.3}, "given twice"),
])
def test_bad_shares_are_refused(shares, match):
    with pytest.raises(InputError, match=match):
        tier_shares(RULES, shares)


def test_read_shares_from_text_or_file(tmp_path):
    assert read_shares("钻石=1%, 铂金=4%,gold=0.15,银卡=30%") == pytest.approx(
        {"钻石": 0.01, "铂金": 0.04, "gold": 0.15, "银卡": 0.30})
    path = tmp_path / "shares.yaml"
    path.write_text("钻石: 1%\nplatinum: 0.04\n", encoding="utf-8")
    assert read_shares(str(path)) == pytest.approx({"钻石": 0.01, "platinum": 0.04})
    with pytest.raises(InputError, match="name=share"):
        read_shares("钻石 1%")
    with pytest.raises(InputError, match="fraction or a percentage"):
        read_shares("钻石=lots")
    path.write_text("- 钻石\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected a mapping") as exc:
        read_shares(str(path))
    assert exc.value.file == str(path)


def known_trailing_spend(values, horizon: int = 90) -> pd.DataFrame:
    """Members whose trailing spend at as_of + H is known exactly: nothing predicted, only the kept spend."""
    values = np.asarray(values, dtype=float)
    zero = np.zeros(len(values))
    return frame(values, values, zero, zero, zero, horizon=horizon)


@pytest.mark.parametrize("basis", ["point", "distribution"])
def test_thresholds_meet_the_shares_on_a_known_distribution(basis):
    values = np.arange(1, 10_001, dtype=float)  # 1 ... 10,000 CNY, one member each
    forecast = tier_forecast(known_trailing_spend(values))
    target = tier_shares(RULES)
    thresholds = suggest_tier_thresholds(forecast, target, basis=basis, round_to=1.0)
    assert thresholds.tolist() == [0.0, 5001.0, 8001.0, 9501.0, 9901.0]
    at_or_above = np.array([(values >= t).mean() for t in [*thresholds, np.inf]])
    assert -np.diff(at_or_above) == pytest.approx(target, abs=1e-4)  # each tier's share


def test_thresholds_meet_expected_shares_under_uncertain_spend_and_are_monotone():
    rng = np.random.default_rng(7)
    n = 4000
    mean = rng.gamma(0.6, 1500.0, n)
    p10 = mean * rng.uniform(0.0, 0.4, n) * (rng.uniform(size=n) < 0.5)
    p90 = mean * rng.uniform(1.5, 4.0, n)
    carry = rng.gamma(0.5, 800.0, n)
    scores = frame(carry * 1.5, carry, mean, p10, p90)
    forecast = tier_forecast(scores)
    target = np.array([0.55, 0.25, 0.12, 0.06, 0.02])
    at_or_above = np.cumsum(target[::-1])[::-1]
    thresholds = suggest_tier_thresholds(forecast, target, basis="distribution", round_to=0.01)
    assert (np.diff(thresholds) > 0).all() and thresholds[0] == 0
    reach = forecast.prob_reach(thresholds).mean(axis=0)  # expected share at or above each threshold
    assert reach == pytest.approx(at_or_above, abs=2e-4)
    point = suggest_tier_thresholds(forecast, target, basis="point", round_to=0.01)
    assert (np.diff(point) > 0).all()
    assert [(forecast.expected >= t).mean() for t in point] == pytest.approx(at_or_above, abs=1 / n)
    assert not np.allclose(point, thresholds)  # the two bases differ on uncertain spend
    coarse = suggest_tier_thresholds(forecast, target, round_to=500.0)
    assert (coarse % 500 == 0).all() and (np.diff(coarse) > 0).all()
    with pytest.raises(InputError, match="--basis"):
        suggest_tier_thresholds(forecast, target, basis="median")


@pytest.mark.parametrize("basis", ["point", "distribution"])
def test_ties_cannot_be_split_so_the_nearer_side_is_taken_and_thresholds_stay_increasing(basis):
    # 60% spend exactly 100, 30% spend 2,000, 10% spend 9,000
    values = np.repeat([100.0, 2000.0, 9000.0], [600, 300, 100])
    forecast = tier_forecast(known_trailing_spend(values))
    target = np.array([0.5, 0.3, 0.15, 0.04, 0.01])
    thresholds = suggest_tier_thresholds(forecast, target, basis=basis, round_to=1.0)
    assert (np.diff(thresholds) > 0).all()
    # silver wants 50% at or above: 100 gives 100%, 101 gives 40% (nearer); gold wants 20%: 2,000 gives 40%,
    # 2,001 gives 10% (nearer); platinum wants 5%: 9,000 gives 10%, 9,001 gives 0% (as near: the higher)
    assert thresholds[1] == 101.0 and thresholds[2] == 2001.0 and thresholds[3] == 9001.0
    assert thresholds[4] == 9002.0  # diamond (1%) would also be 9,001: it has to sit above platinum


def test_nobody_scored_or_a_bad_rounding_is_refused():
    empty = known_trailing_spend([5.0]).assign(eligible=False)
    with pytest.raises(InputError, match="nobody is scored"):
        suggest_tier_thresholds(tier_forecast(empty), tier_shares(RULES))
    with pytest.raises(InputError, match="round-to"):
        suggest_tier_thresholds(tier_forecast(known_trailing_spend([5.0])), tier_shares(RULES), round_to=0)


def test_suggestion_summary_counts_and_rules_round_trip(tmp_path):
    values = np.arange(1, 2001, dtype=float) * 10.0  # 10 ... 20,000
    scores = known_trailing_spend(values)
    scores["spend_365d"] = values * 1.1  # today's spend: 10% more than what is kept
    result = suggest_tiers(scores, RULES, {"钻石": 0.01, "铂金": 0.04, "金卡": 0.15, "银卡": 0.30}, basis="point",
                          round_to=10.0)
    summary = result.summary
    assert summary["members"] == 2000 and summary["not_scored"] == 0 and summary["horizon_days"] == 90
    tiers = {t["name_en"]: t for t in summary["tiers"]}
    assert [t["suggested"]["min_spend"] for t in summary["tiers"]] == [t.min_spend for t in result.rules.member_tiers]
    assert sum(t["current"]["now"] for t in summary["tiers"]) == 2000
    assert tiers["diamond"]["suggested"]["predicted"] == 20 and tiers["gold"]["suggested"]["predicted"] == 300
    assert tiers["regular"]["current"]["now"] == int((values * 1.1 < 1000).sum())
    # nothing predicted: everyone's trailing spend falls to the kept 1/1.1, so nobody moves up
    assert summary["moves"]["current"]["up"] == 0 and summary["moves"]["current"]["expected_up"] == 0
    assert summary["moves"]["current"]["down"] == int(
        (np.searchsorted([1000, 3000, 8000, 20000], values, side="right")
         < np.searchsorted([1000, 3000, 8000, 20000], values * 1.1, side="right")).sum())
    assert sum(summary["retiered_now"].values()) == 2000
    assert summary["basis"] == "point" and summary["notes"] == []  # the shares are met: nothing to explain
    coarse = suggest_tiers(scores, RULES, basis="point", round_to=5000.0).summary  # too coarse to meet them: said why
    assert coarse["notes"] and "--round-to 5000" in coarse["notes"][0]
    path = tmp_path / "tiers.yaml"
    path.write_text(rules_yaml(result.rules), encoding="utf-8")
    assert load_tier_rules(path) == result.rules
