"""Campaign evaluation against synthetic campaigns with a known true effect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.decisions.campaigns import (
    conversion_lift,
    evaluate_campaign,
    newcombe_interval,
    revenue_lift,
    wilson_interval,
)

AMOUNT_MU, AMOUNT_SIGMA = 5.0, 0.6
MEAN_AMOUNT = math.exp(AMOUNT_MU + AMOUNT_SIGMA**2 / 2)


def synthetic_campaign(
    n: int, p_control: float, p_treatment: float, seed: int, *, campaign_id: str = "cmp-A"
) -> dict[str, pd.DataFrame]:
    """A randomised campaign over ``n`` people, some holding two customer keys.

    Each person converts (one paid order inside the 30-day window) with the probability of their group; noise
    orders fall before the send, after the window, or are refunded inside the window, and must not count.
    """
    rng = np.random.default_rng(seed)
    person = np.array([f"p_{i:06d}" for i in range(n)])
    group = np.where(rng.uniform(size=n) < 0.5, "treatment", "control")
    two_keys = rng.uniform(size=n) < 0.3
    key_a = np.char.add("tmall:", person)
    key_b = np.char.add("wechat:", person)
    keys = pd.DataFrame(
        {
            "customer_key": np.concatenate([key_a, key_b[two_keys]]),
            "person_id": np.concatenate([person, person[two_keys]]),
        }
    )
    sent = pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.integers(0, 72, size=n), unit="h")
    touches = pd.DataFrame({"campaign_id": campaign_id, "customer_key": key_a, "sent_ts": sent, "group": group})
    # a later second send to the other key of the same person, same group: the first send opens the window
    touches = pd.concat(
        [
            touches,
            pd.DataFrame(
                {
                    "campaign_id": campaign_id,
                    "customer_key": key_b[two_keys],
                    "sent_ts": sent[two_keys] + pd.Timedelta(days=3),
                    "group": group[two_keys],
                }
            ),
            pd.DataFrame(  # another campaign on the same people must not leak in
                {"campaign_id": "cmp-other", "customer_key": key_a, "sent_ts": sent, "group": "treatment"}
            ),
        ],
        ignore_index=True,
    )
    p = np.where(group == "treatment", p_treatment, p_control)
    conv = rng.uniform(size=n) < p
    buy_key = np.where(two_keys & (rng.uniform(size=n) < 0.5), key_b, key_a)
    frames = [
        pd.DataFrame(
            {
                "customer_key": buy_key[conv],
                "order_ts": sent[conv] + pd.to_timedelta(rng.uniform(0, 29.9, size=int(conv.sum())), unit="D"),
                "amount": rng.lognormal(AMOUNT_MU, AMOUNT_SIGMA, size=int(conv.sum())),
                "status": "paid",
            }
        )
    ]
    for offset, status in ((-5.0, "paid"), (31.0, "paid"), (2.0, "refunded")):
        noise = rng.uniform(size=n) < 0.2
        frames.append(
            pd.DataFrame(
                {
                    "customer_key": key_a[noise],
                    "order_ts": sent[noise] + pd.Timedelta(days=offset),
                    "amount": 999.0,
                    "status": status,
                }
            )
        )
    orders = pd.concat(frames, ignore_index=True)
    return {"touches": touches, "orders": orders, "keys": keys}


def evaluate(data, campaign_id="cmp-A", **kwargs):
    return evaluate_campaign(data["touches"], data["orders"], data["keys"], campaign_id, **kwargs)


def test_known_effect_is_recovered():
    data = synthetic_campaign(6000, p_control=0.10, p_treatment=0.14, seed=1)
    res = evaluate(data, data_end="2026-01-01")
    conv, rev = res["conversion"], res["revenue_per_head"]
    lo, hi = conv["absolute_ci"]
    assert lo <= 0.04 <= hi and lo > 0
    assert conv["p_value"] < 0.001
    rlo, rhi = conv["relative_ci"]
    assert rlo <= 0.4 <= rhi
    true_rev_lift = 0.04 * MEAN_AMOUNT
    assert rev["absolute_ci"][0] <= true_rev_lift <= rev["absolute_ci"][1]
    assert rev["relative_ci"][0] <= 0.4 <= rev["relative_ci"][1]
    assert rev["p_value"] < 0.01
    assert res["treatment"]["persons"] + res["control"]["persons"] == 6000
    assert res["incremental_conversions"] == pytest.approx(conv["absolute_lift"] * res["treatment"]["persons"])
    assert res["censored_persons"] == 0 and res["mixed_group_persons"] == 0


def test_no_effect_interval_covers_zero():
    data = synthetic_campaign(4000, p_control=0.12, p_treatment=0.12, seed=2)
    res = evaluate(data, data_end="2026-01-01")
    lo, hi = res["conversion"]["absolute_ci"]
    assert lo < 0 < hi
    assert res["conversion"]["p_value"] > 0.05
    rlo, rhi = res["revenue_per_head"]["absolute_ci"]
    assert rlo < 0 < rhi


def test_interval_coverage_and_false_positive_rate_over_many_campaigns():
    """95% intervals cover the true lift in about 95% of simulated campaigns; null p < 0.05 about 5% of the time."""
    rng = np.random.default_rng(99)
    n_sims, n_t, n_c = 400, 900, 700
    p_c, p_t = 0.06, 0.09
    covered = {"abs": 0, "rel": 0, "rev": 0, "rev_rel": 0}
    false_pos = {"conv": 0, "rev": 0}
    for _ in range(n_sims):
        conv_t, conv_c = rng.uniform(size=n_t) < p_t, rng.uniform(size=n_c) < p_c
        rev_t = np.where(conv_t, rng.lognormal(AMOUNT_MU, AMOUNT_SIGMA, size=n_t), 0.0)
        rev_c = np.where(conv_c, rng.lognormal(AMOUNT_MU, AMOUNT_SIGMA, size=n_c), 0.0)
        conv = conversion_lift(int(conv_t.sum()), n_t, int(conv_c.sum()), n_c)
        rev = revenue_lift(rev_t, rev_c)
        covered["abs"] += conv["absolute_ci"][0] <= p_t - p_c <= conv["absolute_ci"][1]
        covered["rel"] += conv["relative_ci"][0] <= p_t / p_c - 1 <= conv["relative_ci"][1]
        covered["rev"] += rev["absolute_ci"][0] <= (p_t - p_c) * MEAN_AMOUNT <= rev["absolute_ci"][1]
        covered["rev_rel"] += rev["relative_ci"][0] <= p_t / p_c - 1 <= rev["relative_ci"][1]
        # null: both groups convert at p_c
        null_t = rng.uniform(size=n_t) < p_c
        null_rev_t = np.where(null_t, rng.lognormal(AMOUNT_MU, AMOUNT_SIGMA, size=n_t), 0.0)
        false_pos["conv"] += conversion_lift(int(null_t.sum()), n_t, int(conv_c.sum()), n_c)["p_value"] < 0.05
        false_pos["rev"] += revenue_lift(null_rev_t, rev_c)["p_value"] < 0.05
    # binomial(400, 0.95) lies in [366, 393] and binomial(400, 0.05) below 35 with probability > 0.99
    for name, count in covered.items():
        assert 366 <= count <= 393, (name, covered)
    for name, count in false_pos.items():
        assert count <= 34, (name, false_pos)


def test_end_to_end_coverage_over_simulated_campaigns():
    """The whole path (keys, windows, noise orders) keeps its coverage: 20 campaigns, at most 4 misses."""
    misses = 0
    for seed in range(20):
        data = synthetic_campaign(1000, p_control=0.08, p_treatment=0.12, seed=1000 + seed)
        lo, hi = evaluate(data, data_end="2026-01-01")["conversion"]["absolute_ci"]
        misses += not lo <= 0.04 <= hi
    assert misses <= 4  # P(binomial(20, 0.05) > 4) < 0.003


def test_window_and_status_rules_on_a_hand_made_campaign():
    keys = pd.DataFrame({"customer_key": ["a1", "a2", "b", "c", "d"], "person_id": ["pa", "pa", "pb", "pc", "pd"]})
    touches = pd.DataFrame(
        {
            "campaign_id": "c1",
            "customer_key": ["a1", "a2", "b", "c", "d"],
            "sent_ts": pd.to_datetime(["2025-01-10", "2025-01-05", "2025-01-10", "2025-01-10", "2025-01-10"]),
            "group": ["treatment", "treatment", "treatment", "control", "control"],
        }
    )
    orders = pd.DataFrame(
        {
            "customer_key": ["a1", "a1", "b", "b", "c", "d"],
            # pa's window opens at the earlier send (01-05) on key a2 and ends before 02-04
            "order_ts": pd.to_datetime(
                ["2025-02-03 23:00", "2025-02-05 00:00", "2025-01-10 09:00", "2025-01-12 00:00",
                 "2025-01-09 00:00", "2025-02-09 00:00"]
            ),
            "amount": [100.0, 50.0, 30.0, 20.0, 70.0, 10.0],
            "status": ["paid", "paid", "paid", "refunded", "paid", "paid"],
        }
    )
    res = evaluate_campaign(touches, orders, keys, "c1", window_days=30)
    assert res["treatment"] == {
        "persons": 2,
        "converters": 2,
        "conversion_rate": 1.0,
        "revenue": 130.0,
        "revenue_per_head": 65.0,
    }
    # pc ordered before the send, pd after the 30-day window
    assert res["control"]["converters"] == 0 and res["control"]["revenue"] == 0.0
    assert res["conversion"]["absolute_lift"] == 1.0
    assert res["conversion"]["relative_lift"] is None  # no control converters: ratio undefined
    assert res["first_sent"] == "2025-01-05T00:00:00"
    assert any("small groups" in w for w in res["warnings"])
    # a longer window catches pd's order
    assert evaluate_campaign(touches, orders, keys, "c1", window_days=31)["control"]["converters"] == 1


def test_person_sent_to_both_groups_is_dropped_and_counted():
    data = synthetic_campaign(400, p_control=0.1, p_treatment=0.2, seed=4)
    touches = data["touches"].copy()
    two_key_rows = touches.index[touches["customer_key"].str.startswith("wechat:")][:5]
    touches.loc[two_key_rows, "group"] = np.where(
        touches.loc[two_key_rows, "group"] == "treatment", "control", "treatment"
    )
    res = evaluate_campaign(touches, data["orders"], data["keys"], "cmp-A")
    assert res["mixed_group_persons"] == 5
    assert res["treatment"]["persons"] + res["control"]["persons"] == 395


def test_censored_windows_are_reported():
    data = synthetic_campaign(300, p_control=0.1, p_treatment=0.2, seed=5)
    res = evaluate(data, data_end="2025-03-20")
    assert res["censored_persons"] == 300
    assert any("past the data end" in w for w in res["warnings"])


def test_unknown_campaign_and_missing_control_are_clear_errors():
    data = synthetic_campaign(200, p_control=0.1, p_treatment=0.2, seed=6)
    with pytest.raises(ValueError, match=r"campaign_id 'nope': unknown campaign \(2 campaign\(s\) in campaign_touches") as exc:
        evaluate(data, "nope")
    assert "cmp-A" not in str(exc.value) and "cmp-other" not in str(exc.value)  # counted, never listed
    with pytest.raises(ValueError, match="campaign_id 'cmp-other': no control group"):
        evaluate(data, "cmp-other")


def test_bad_inputs_name_the_problem():
    data = synthetic_campaign(200, p_control=0.1, p_treatment=0.2, seed=7)
    with pytest.raises(ValueError, match=r"campaign_touches: missing column\(s\) \['group'\]"):
        evaluate_campaign(data["touches"].drop(columns="group"), data["orders"], data["keys"], "cmp-A")
    bad = data["touches"].copy()
    bad.loc[0, "group"] = "holdout"
    with pytest.raises(ValueError, match="column 'group'.*holdout"):
        evaluate_campaign(bad, data["orders"], data["keys"], "cmp-A")
    with pytest.raises(ValueError, match="key_to_person: .* have no person_id"):
        evaluate_campaign(data["touches"], data["orders"], data["keys"].iloc[5:], "cmp-A")
    with pytest.raises(ValueError, match="window_days"):
        evaluate(data, window_days=0)


def test_orders_without_status_all_count_as_paid():
    data = synthetic_campaign(500, p_control=0.1, p_treatment=0.2, seed=8)
    with_status = evaluate(data)
    data["orders"] = data["orders"].drop(columns="status")
    without = evaluate(data)
    assert without["treatment"]["converters"] >= with_status["treatment"]["converters"]


def test_newcombe_matches_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II example (56/70 vs 48/80), method 10
    lo, hi = newcombe_interval(56, 70, 48, 80, 1.959964)
    assert lo == pytest.approx(0.0524, abs=5e-4)
    assert hi == pytest.approx(0.3339, abs=5e-4)
    # Wilson for 0/10 has a zero lower bound and a positive upper bound
    assert wilson_interval(0, 10, 1.959964) == pytest.approx((0.0, 0.2775), abs=5e-4)


def test_simulated_brand_campaigns_show_their_positive_true_uplift():
    """On the project simulator (randomised controls, true uplift > 0) every campaign evaluates cleanly and the
    inverse-variance pooled conversion lift across campaigns is positive."""
    from features.simulate import simulate

    tables = simulate(2500, seed=3)
    keys = tables["truth_keys"].assign(person_id=lambda d: "p" + d["true_person"].astype(str))
    touches = tables["campaign_touches"]
    estimates, weights = [], []
    for campaign_id in tables["truth_campaigns"]["campaign_id"]:
        res = evaluate_campaign(touches, tables["orders"], keys, campaign_id, window_days=30)
        sent = touches.loc[touches["campaign_id"] == campaign_id, "customer_key"].map(
            keys.set_index("customer_key")["person_id"]
        )
        assert res["treatment"]["persons"] + res["control"]["persons"] + res["mixed_group_persons"] == sent.nunique()
        conv = res["conversion"]
        lo, hi = conv["absolute_ci"]
        assert lo <= conv["absolute_lift"] <= hi
        assert 0 <= conv["p_value"] <= 1
        se = (hi - lo) / (2 * 1.959964)
        estimates.append(conv["absolute_lift"])
        weights.append(1 / se**2)
    pooled = np.average(estimates, weights=weights)
    pooled_se = 1 / math.sqrt(sum(weights))
    assert pooled - 1.959964 * pooled_se > 0, (pooled, pooled_se)
