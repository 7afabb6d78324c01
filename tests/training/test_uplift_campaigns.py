"""Campaign uplift from the brand's own tables: the time layout, point-in-time rows, the policies and the backtest
block, on small simulated brands."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from model_data import small

from features.pipeline import build_features
from training.frames import FeatureCache, derive_features
from training.uplift_campaigns import (
    campaign_learner,
    campaign_rows,
    campaign_sends,
    evaluate_policies,
    feature_columns,
    fit_campaign_model,
    plan_campaigns,
    uplift_backtest,
    window_end,
)

N, SEED = 3000, 5


@pytest.fixture(scope="module")
def brand():
    return small(N, SEED)


def test_campaign_sends_keeps_campaigns_with_both_groups():
    touches = pd.DataFrame({
        "campaign_id": ["A"] * 4 + ["B"] * 3,
        "customer_key": list("abcdefg"),
        "sent_ts": pd.to_datetime(["2024-03-02 10:00", "2024-03-01 11:00", "2024-03-01 12:00", "2024-03-03 09:00",
                                   "2024-05-01 10:00", "2024-05-01 10:00", "2024-05-01 10:00"]),
        "group": ["treatment", "control", "Treatment", "control", "treatment", "treatment", "treatment"],
    })
    sends = campaign_sends(touches, min_group=1)
    assert sends["campaign_id"].tolist() == ["A"]  # B has no control group
    assert sends["send_date"].iloc[0] == pd.Timestamp("2024-03-01")  # the first send's day
    assert (sends["n_treatment"].iloc[0], sends["n_control"].iloc[0]) == (2, 2)
    assert campaign_sends(touches, min_group=3).empty and campaign_sends(None).empty


def test_plan_trains_only_on_campaigns_whose_window_ended_before_the_evaluation_send():
    sends = pd.DataFrame({"campaign_id": ["a", "b", "c", "d"],
                          "send_date": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-03-10", "2024-06-01"])})
    assert window_end("2024-03-01", 14) == pd.Timestamp("2024-03-16")
    # d's window ends 2024-06-16: beyond the bound, so c is judged; b's window (to 03-16) has not ended by c's send
    assert plan_campaigns(sends, "2024-06-10", window_days=14) == ("c", ["a"])
    assert plan_campaigns(sends, "2024-07-01", window_days=14) == ("d", ["a", "b", "c"])
    assert plan_campaigns(sends, "2024-01-20", window_days=14) is None  # nothing earlier to learn from
    # a backtest as of 2024-03-12 learns only from windows ended by then, even for a later evaluation campaign
    assert plan_campaigns(sends, "2024-07-01", train_until="2024-03-12", window_days=14) == ("d", ["a"])


def test_rows_are_point_in_time_and_outcomes_follow_the_send(brand):
    cache = brand.cache
    sends = campaign_sends(brand.dataset.campaign_touches)
    cid, send = sends["campaign_id"].iloc[-3], sends["send_date"].iloc[-3]
    rows = campaign_rows(cache, cid)
    assert rows["person_id"].is_unique and set(rows["treated"]) == {0, 1}
    assert (rows["send_date"] == send).all() and "touch_channel" in feature_columns(rows)
    # features: the snapshot strictly before the send date (nothing from the send day on)
    snap = derive_features(build_features(brand.dataset, send.date(), identity=cache.identity_at(send.date())))
    got = rows.set_index("person_id")["recency_days"]
    want = snap.set_index("person_id")["recency_days"].reindex(got.index)
    np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), equal_nan=True)
    # outcome: a paid order from the person's send to the end of the 14th day after the send date
    orders = brand.dataset.orders
    key_to_person = cache.identity_at(send.date()).set_index("customer_key")["person_id"]
    paid = orders[orders["status"] == "paid"].assign(person_id=lambda o: o["customer_key"].map(key_to_person))
    paid = paid.merge(rows[["person_id", "sent_ts"]], on="person_id")
    inside = paid[(paid["order_ts"] >= paid["sent_ts"]) & (paid["order_ts"] < window_end(send))]
    spend = inside.groupby("person_id")["amount"].sum()
    r = rows.set_index("person_id")
    assert set(r.index[r["converted"] == 1]) == set(spend.index)
    np.testing.assert_allclose(r.loc[spend.index, "spend"], spend.to_numpy())
    # engagement: an event attributed to the campaign, from the person's send to the end of the window; an
    # outcome (it trains the engagement model), never a feature
    events = brand.dataset.events
    ev = events[events["campaign_id"] == cid].assign(person_id=lambda e: e["customer_key"].astype(str).map(
        key_to_person)).merge(rows[["person_id", "sent_ts"]], on="person_id")
    ev = ev[(ev["event_ts"] >= ev["sent_ts"]) & (ev["event_ts"] < window_end(send))]
    assert set(r.index[r["engaged"] == 1]) == set(ev["person_id"]) and len(ev)
    assert r.loc[r["treated"] == 0, "engaged"].eq(0).all()  # the control got no message
    assert "engaged" not in feature_columns(rows)


@pytest.mark.slow
def test_model_beats_random_and_the_oracle_is_the_ceiling(brand):
    block = uplift_backtest(brand.cache, "2025-09-29", n_boot=30)
    assert block is not None and "skipped" not in block
    assert block["evaluation_campaign"] == "C2025_winback" and block["send_date"] == "2025-08-20"
    assert "C2025_618" in block["training_campaigns"] and block["learner"] == "txl" and set(block["validation_qini"]) == {"t", "x", "tx", "l", "txl"}
    assert block["validation_campaign"] == block["training_campaigns"][-1]
    assert 0 < block["engaged_share"] < 1  # the simulator's campaigns have attributed opens, clicks and claims
    assert block["n_eval"] == block["n_eval_treatment"] + block["n_eval_control"]
    model, rand, oracle = block["model"], block["baselines"]["random"], block["oracle"]
    top = int(block["n_eval"] * 0.3)
    assert model["incremental_at_30pct"] == pytest.approx(model["uplift_at_30pct"] * top)
    # the true figures are noise-free: the model finds more of the people the winback moves than random does,
    # and nobody beats the truth
    assert model["true_incremental_at_30pct"] > 1.3 * rand["true_incremental_at_30pct"]
    assert oracle["true_incremental_at_30pct"] >= model["true_incremental_at_30pct"]
    assert block["true_ate"] == pytest.approx(block["ate"]["estimate"], abs=0.03)
    assert oracle["true_qini"] == pytest.approx(1.0) and model["true_qini"] > rand["true_qini"]
    lo, hi = block["model_ci"]["qini"]
    assert lo <= model["qini"] <= hi


def test_no_control_groups_no_block(brand):
    data = brand.dataset
    touches = data.campaign_touches.assign(group="treatment")
    cache = FeatureCache(dataclasses.replace(data, campaign_touches=touches))
    assert uplift_backtest(cache, "2025-09-29") is None
    # campaigns exist but none has an earlier one to learn from
    assert "skipped" in uplift_backtest(brand.cache, "2023-04-01")


def test_policies_are_judged_on_the_same_rows():
    rng = np.random.default_rng(1)  # not the random policy's seed (0): its ranking would be x itself
    n = 4000
    x = rng.random(n)
    t = (rng.random(n) < 0.5).astype(int)
    y = (rng.random(n) < 0.1 + 0.3 * x * t).astype(int)
    rows = pd.DataFrame({"person_id": np.arange(n), "campaign_id": "c", "send_date": pd.Timestamp("2025-01-01"),
                         "treated": t, "converted": y, "spend": 0.0, "x": x})
    two = rows.assign(campaign_id=np.where(np.arange(n) < n // 2, "a", "b"),
                      send_date=pd.to_datetime(np.where(np.arange(n) < n // 2, "2024-01-01", "2024-06-01")))
    model, info = fit_campaign_model(two)
    assert info["validation_campaign"] == "b" and set(info["validation_qini"]) == {"t", "x", "tx", "l", "txl"}
    assert info["learner"] == model.learner_ == "txl"  # the default averages the learners, no choice
    assert (model.num_leaves, model.min_child_samples) == (7, 100)  # coarse trees, at least 100 rows a leaf
    _, chosen = fit_campaign_model(two, learner="auto")
    assert chosen["learner"] == max(("t", "x"), key=chosen["validation_qini"].get)
    truth = pd.DataFrame({"effect_purchase": 0.3 * x, "effect_spend": 30 * x})
    block = evaluate_policies(rows, model, baselines={"by_x": x, "reverse": -x}, truth=truth, n_boot=20)
    assert set(block["baselines"]) == {"by_x", "reverse", "random"}
    assert block["baselines"]["by_x"]["true_incremental_at_30pct"] == pytest.approx(
        block["oracle"]["true_incremental_at_30pct"])
    assert block["model"]["qini"] > block["baselines"]["random"]["qini"] > block["baselines"]["reverse"]["qini"]
    assert block["oracle"]["true_qini"] == pytest.approx(1.0) and block["baselines"]["by_x"]["true_qini"] == 1.0
    assert block["baselines"]["reverse"]["true_qini"] < 0 < block["model"]["true_qini"] < 1
    assert abs(block["baselines"]["random"]["true_qini"]) < 0.1


def test_campaign_trees_get_coarser_with_more_rows():
    assert campaign_learner("tx", 2_000).min_child_samples == 100
    big = campaign_learner("t", 45_000, random_state=3)
    assert (big.learner, big.num_leaves, big.min_child_samples, big.random_state) == ("t", 7, 450, 3)
