"""Behavioural tests of the omnichannel simulator and its oracle (small fixed-seed populations)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features.simulate import CHANNELS, EVENT_TYPES, calendar, oracle, simulate, write_dataset
from features.simulate.dirty import KINDS

ORDER_COLUMNS = [
    "order_id", "customer_key", "order_ts", "amount", "channel", "status", "discount", "item_count", "category",
    "store_id",
]  # fmt: skip
EVENT_COLUMNS = ["customer_key", "event_ts", "event_type", "channel", "campaign_id"]
IDENTITY_COLUMNS = [
    "customer_key", "channel", "phone", "unionid", "member_card", "join_ts", "linked_ts", "birth_year", "gender", "city",
    "marketing_opt_out",
]  # fmt: skip
TOUCH_COLUMNS = ["campaign_id", "customer_key", "sent_ts", "group", "channel", "offer_cost"]


@pytest.fixture(scope="module")
def sim():
    return simulate(4000, seed=11)


@pytest.fixture(scope="module")
def dirty():
    return simulate(1500, seed=12, dirty=0.03)


@pytest.fixture(scope="module")
def orders_by_person(sim):
    keys = sim["truth_keys"][["customer_key", "true_person"]]
    return sim["orders"].merge(keys, on="customer_key", how="left", validate="many_to_one")


def normalise_phone(raw: pd.Series) -> pd.Series:
    digits = raw.str.replace(r"\D", "", regex=True)
    return digits.where(digits.str.len() != 13, digits.str.slice(2))


def test_same_seed_gives_identical_tables_and_another_seed_does_not():
    a, b = simulate(300, seed=3), simulate(300, seed=3)
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    c = simulate(300, seed=4)
    assert not a["orders"]["amount"].equals(c["orders"]["amount"])


def test_tables_follow_the_data_contract(sim):
    orders, events = sim["orders"], sim["events"]
    assert list(orders.columns) == ORDER_COLUMNS
    assert list(events.columns) == EVENT_COLUMNS
    assert list(sim["identities"].columns) == IDENTITY_COLUMNS
    assert list(sim["campaign_touches"].columns) == TOUCH_COLUMNS
    # an account's identifiers are linked at its first use: after joining, at its first order or event if any
    ident = sim["identities"].set_index("customer_key")
    assert (ident["linked_ts"] >= ident["join_ts"]).all()
    used = pd.concat([orders[["customer_key", "order_ts"]].set_axis(["customer_key", "ts"], axis=1),
                      events[["customer_key", "event_ts"]].set_axis(["customer_key", "ts"], axis=1)])
    first_use = used.groupby("customer_key")["ts"].min()
    assert (ident.loc[first_use.index, "linked_ts"] == first_use).all()
    assert orders["order_id"].is_unique
    assert orders["amount"].notna().all() and (orders["amount"] > 0).all()
    assert set(orders["channel"]) == set(CHANNELS)
    assert set(orders["status"]) == {"paid", "refunded", "cancelled"}
    assert set(events["event_type"]) == set(EVENT_TYPES)
    assert set(sim["campaign_touches"]["group"]) == {"treatment", "control"}
    for df, col in ((orders, "order_ts"), (events, "event_ts"), (sim["campaign_touches"], "sent_ts")):
        assert df[col].min() >= pd.Timestamp("2023-01-01") and df[col].max() < pd.Timestamp("2026-01-01")
        assert df[col].is_monotonic_increasing
    # the key names its channel, and every row carries the key of the channel used
    for df in (orders, events, sim["identities"], sim["campaign_touches"]):
        assert (df["customer_key"].str.split(":").str[0] == df["channel"]).all()
    # store ids exactly on store orders; realistic CNY amounts
    assert (orders["store_id"].notna() == (orders["channel"] == "store")).all()
    assert 150 <= orders["amount"].mean() <= 300
    assert 30 <= orders["amount"].median() <= 250
    assert 11 <= orders["category"].nunique() <= 15
    assert (orders["discount"] >= 0).all() and (orders["item_count"] >= 1).all()


def test_volume_per_customer_is_the_documented_one(sim):
    """About 10 orders and 55 behaviour events per customer over the default three years (docs/benchmarks.md)."""
    n = len(sim["truth"])
    assert 8 <= len(sim["orders"]) / n <= 12
    assert 45 <= len(sim["events"]) / n <= 70


@pytest.mark.parametrize("regularity", [1.0, 4.0])
def test_habitual_browsing_has_the_right_mean_and_is_under_dispersed(regularity):
    from features.simulate.activity import renewal_days

    rng = np.random.default_rng(5)
    n, days = 20_000, 400
    cum = np.concatenate([[0.0], np.cumsum(np.full(days, 1.0))])
    rate = np.full(n, 0.05)
    day0 = rng.integers(0, 100, n)
    day1 = day0 + 200
    who, day = renewal_days(rate, day0, day1, cum, rng, regularity=regularity)
    assert np.all((day >= day0[who]) & (day < day1[who]))
    counts = np.bincount(who, minlength=n)
    assert counts.mean() == pytest.approx(10.0, rel=0.03)  # rate x 200 days
    # a renewal process with Gamma(k) gaps has count variance about mean / k
    assert counts.var() / counts.mean() == pytest.approx(1.0 / regularity, rel=0.2)


def test_festival_spikes_and_new_year_dip_are_visible(sim):
    paid = sim["orders"][sim["orders"]["status"] == "paid"]
    daily = paid.groupby(paid["order_ts"].dt.normalize()).size()
    daily = daily.reindex(pd.date_range("2023-01-01", "2025-12-31"), fill_value=0)
    for year in (2023, 2024, 2025):
        median = daily[str(year)].median()
        assert daily[pd.Timestamp(f"{year}-11-11")] > 5 * median
        assert daily[pd.Timestamp(f"{year}-06-18")] > 3 * median
        assert daily[pd.Timestamp(f"{year}-12-12")] > 1.8 * median
    cny = pd.Timestamp("2025-01-29")
    dip = daily[cny - pd.Timedelta(days=8) : cny + pd.Timedelta(days=3)].mean()
    after = daily[cny + pd.Timedelta(days=10) : cny + pd.Timedelta(days=40)].mean()
    assert dip < 0.6 * after
    # deeper discounts on festival peaks
    rate = paid["discount"] / (paid["amount"] + paid["discount"])
    on_peak = paid["order_ts"].dt.strftime("%m-%d").isin(["11-11", "06-18"])
    assert rate[on_peak].mean() > 2 * rate[~on_peak].median()


def test_calendar_marks_the_documented_dates():
    cal = calendar("2023-01-01", "2026-12-31").set_index("date")
    for cny in ("2023-01-22", "2024-02-10", "2025-01-29", "2026-02-17"):
        assert cal.loc[cny, "festival"] == "春节" and cal.loc[cny, "intensity"] < 0.5
    for year in ("2023", "2024", "2025", "2026"):
        assert cal.loc[f"{year}-11-11", "intensity"] == cal.loc[year, "intensity"].max()
    assert cal.loc["2024-06-18", "peak"] and cal.loc["2025-12-12", "peak"]
    june = cal.loc["2025-06-01":"2025-06-17", "intensity"]
    assert june.iloc[-1] > june.iloc[0]  # the 618 ramp
    with pytest.raises(ValueError, match="Chinese-New-Year"):
        calendar("2040-01-01", "2040-12-31")


def test_identity_fragmentation_and_identifiers_never_collide(sim):
    keys, ident = sim["truth_keys"], sim["identities"]
    assert keys["customer_key"].is_unique and ident["customer_key"].is_unique
    assert set(ident["customer_key"]) == set(keys["customer_key"])
    per_person = keys.groupby("true_person").size()
    assert per_person.between(1, 3).all()
    assert (per_person >= 2).mean() > 0.3
    assert keys.groupby("true_person")["channel"].nunique().eq(per_person).all()  # one key per channel
    ident = ident.merge(keys[["customer_key", "true_person"]], on="customer_key")
    phones = normalise_phone(ident["phone"].dropna())
    assert phones.str.fullmatch(r"1[3-9]\d{9}").all()
    assert ident["phone"].dropna().str.contains(r"[ +-]").any()  # messy formats
    assert ident["unionid"].dropna().str.fullmatch(r"o[A-Za-z0-9_-]{27}").all()
    assert set(ident.loc[ident["unionid"].notna(), "channel"]) <= {"wechat", "douyin"}
    assert set(ident.loc[ident["member_card"].notna(), "channel"]) <= {"store", "wechat"}
    for value in (phones, ident["unionid"].dropna(), ident["member_card"].dropna()):
        owners = ident.loc[value.index, "true_person"].groupby(value.to_numpy()).nunique()
        assert (owners == 1).all()
    # configurable missingness leaves some keys with no identifier at all
    none = ident[["phone", "unionid", "member_card"]].isna().all(axis=1)
    assert 0.02 < none.mean() < 0.4


def test_missingness_is_configurable():
    from features.simulate import SimConfig

    cfg = SimConfig(phone_missing=dict.fromkeys(CHANNELS, 0.0))
    ident = simulate(300, seed=2, config=cfg)["identities"]
    assert ident["phone"].notna().all()


def test_opt_outs_are_about_five_percent_consistent_and_never_messaged(sim):
    truth, ident = sim["truth"], sim["identities"]
    assert 0.035 < truth["marketing_opt_out"].mean() < 0.065
    ident = ident.merge(sim["truth_keys"][["customer_key", "true_person"]], on="customer_key")
    assert ident.groupby("true_person")["marketing_opt_out"].nunique().eq(1).all()
    opted = set(ident.loc[ident["marketing_opt_out"], "customer_key"])
    assert opted and not opted & set(sim["campaign_touches"]["customer_key"])
    assert not opted & set(sim["events"].loc[sim["events"]["campaign_id"].notna(), "customer_key"])


def test_refund_and_cancel_rates(sim):
    share = sim["orders"]["status"].value_counts(normalize=True)
    assert 0.02 < share["refunded"] < 0.04
    assert 0.005 < share["cancelled"] < 0.015


def test_campaigns_randomise_a_control_group_and_treatment_raises_purchases(sim, orders_by_person):
    touches = sim["campaign_touches"].merge(
        sim["truth_keys"][["customer_key", "true_person"]], on="customer_key"
    )
    assert 8 <= touches["campaign_id"].nunique() <= 12
    control = touches.groupby("campaign_id")["group"].apply(lambda g: (g == "control").mean())
    assert control.between(0.05, 0.3).all() and 0.1 <= (touches["group"] == "control").mean() <= 0.2
    assert (touches.loc[touches["group"] == "control", "offer_cost"] == 0).all()
    # message events go to treated keys only, tagged with their campaign
    msgs = sim["events"][sim["events"]["campaign_id"].notna()]
    treated = touches[touches["group"] == "treatment"]
    assert set(zip(msgs["campaign_id"], msgs["customer_key"], strict=True)) <= set(
        zip(treated["campaign_id"], treated["customer_key"], strict=True)
    )
    assert {"message_open", "message_click", "coupon_claim"} <= set(msgs["event_type"])
    assert sim["truth"]["tau"].between(0, 0.6).all() and sim["truth"]["tau"].std() > 0.02


def test_treatment_raises_purchases_by_about_the_true_uplift():
    """Purchases within 14 days of a send: treatment above control, by no more than the truth allows.

    A larger brand than the shared fixture: at 4,000 customers the control groups are too small to tell a
    3-point lift from none.
    """
    sim = simulate(20_000, seed=11)
    keys = sim["truth_keys"][["customer_key", "true_person"]]
    touches = sim["campaign_touches"].merge(keys, on="customer_key")
    orders = sim["orders"].merge(keys, on="customer_key")
    paid = orders[orders["status"] == "paid"][["true_person", "order_ts"]]
    pairs = touches.merge(paid, on="true_person", how="left")
    delta = (pairs["order_ts"] - pairs["sent_ts"]).dt.total_seconds() / 86400
    pairs["bought"] = (delta > 0) & (delta <= 14)
    bought = pairs.groupby(["campaign_id", "customer_key", "group"])["bought"].any().groupby("group")
    rate, n = bought.mean(), bought.size()
    lift = rate["treatment"] - rate["control"]
    se = np.sqrt((rate * (1 - rate) / n).sum())
    # the truth: a treated person alive at the send buys because of it with probability tau_send; fewer show
    # as a lift when they would have bought within the 14 days anyway (effect_purchase allows for that)
    effects = sim["truth_campaign_effects"]
    t = touches[touches["group"] == "treatment"].merge(effects, on=["campaign_id", "customer_key"])
    ceiling = (t["tau_send"] * t["alive_at_send"]).mean()
    assert lift > 3 * se, (lift, se)
    assert lift < ceiling + 3 * se, (lift, ceiling, se)
    # the true effect on purchase over the window predicts the measured lift
    assert abs(lift - effects["effect_purchase"].mean()) < 3 * se, (lift, effects["effect_purchase"].mean(), se)


def test_campaign_effects_truth_is_heterogeneous_and_matches_the_caused_orders(sim):
    """One truth row per touch (treated or control); the per-send effect varies by lifecycle and channel
    around the person's base ``tau``, is zero for people gone by the send, and the purchase effect never exceeds
    the probability of a caused paid order."""
    touches, effects = sim["campaign_touches"], sim["truth_campaign_effects"]
    assert len(effects) == len(touches)
    assert (effects[["campaign_id", "customer_key", "group"]].to_numpy() ==
            touches[["campaign_id", "customer_key", "group"]].to_numpy()).all()
    assert effects["tau_send"].between(0, 0.8).all()
    assert (effects.loc[~effects["alive_at_send"], ["p_caused", "effect_purchase", "effect_spend"]] == 0).all().all()
    assert (effects["effect_purchase"] <= effects["p_caused"] + 1e-12).all()
    base = effects.merge(sim["truth"][["true_person", "tau"]], on="true_person")
    ratio = base["tau_send"] / base["tau"]
    # recent buyers are saturated, lapsing members respond most; WeChat messages beat JD pushes
    gap = base["days_since_last_order"]
    assert ratio[gap < 30].median() < 0.7 * ratio[(gap >= 120) & (gap < 365)].median()
    chan = base["customer_key"].str.split(":").str[0]
    if {"wechat", "jd"} <= set(chan):
        assert ratio[chan == "wechat"].median() > ratio[chan == "jd"].median()
    assert sim["truth_campaigns"]["uplift_window_days"].eq(14).all()


def test_behaviour_events_track_the_latent_state(sim, orders_by_person):
    truth, events = sim["truth"], sim["events"]
    ev = events.merge(sim["truth_keys"][["customer_key", "true_person"]], on="customer_key")
    as_of = pd.Timestamp("2025-07-01")
    truth = truth[truth["birth_date"] < as_of - pd.Timedelta(days=200)]
    alive = truth["death_date"].isna() | (truth["death_date"] > as_of)
    # people with the same purchase recency (last order 60-180 days ago) but a different true state
    last = orders_by_person[orders_by_person["order_ts"] < as_of].groupby("true_person")["order_ts"].max()
    gap = (as_of - last.reindex(truth["true_person"])).dt.days.to_numpy()
    same_recency = (gap >= 60) & (gap <= 180)
    browse = ev[ev["event_type"].isin(["view", "search", "favorite"]) & (ev["event_ts"] < as_of)]
    recent = browse[browse["event_ts"] >= as_of - pd.Timedelta(days=30)].groupby("true_person").size()
    active = truth["true_person"].map(recent).fillna(0).to_numpy() > 0
    alive_rate = active[same_recency & alive.to_numpy()].mean()
    dead_rate = active[same_recency & ~alive.to_numpy()].mean()
    assert alive_rate > 3 * dead_rate
    # views precede online orders; livestreams on Douyin, store visits at stores
    online = orders_by_person[(orders_by_person["channel"] != "store")].head(3000)
    views = events[events["event_type"] == "view"][["customer_key", "event_ts"]]
    pairs = online.merge(views, on="customer_key")
    lead = (pairs["order_ts"] - pairs["event_ts"]).dt.total_seconds() / 86400
    viewed = pairs[(lead > 0) & (lead <= 3)]["order_id"].nunique() / len(online)
    assert viewed > 0.5
    assert set(events.loc[events["event_type"] == "livestream_view", "channel"]) == {"douyin"}
    assert set(events.loc[events["event_type"] == "store_visit", "channel"]) == {"store"}


def test_truth_describes_every_person(sim, orders_by_person):
    truth = sim["truth"]
    assert truth["true_person"].is_unique and len(truth) == 4000
    first = orders_by_person.groupby("true_person")["order_ts"].min()
    assert (first.dt.normalize() == truth.set_index("true_person")["birth_date"].reindex(first.index)).all()
    dead = truth.dropna(subset=["death_date"]).set_index("true_person")
    last = orders_by_person.groupby("true_person")["order_ts"].max().reindex(dead.index)
    # organic orders stop at dropout (orders caused by campaigns need the person alive at the send)
    assert (last < dead["death_date"] + pd.Timedelta(days=15)).all()
    assert (
        (truth["p_tmall"] + truth["p_jd"] + truth["p_wechat"] + truth["p_douyin"] + truth["p_store"]) - 1
    ).abs().max() < 1e-9
    assert truth["birth_date"].dt.month.value_counts().idxmax() in (6, 11)  # acquisition bumps at festivals


def test_oracle_matches_the_simulated_future(sim, orders_by_person):
    paid = orders_by_person[orders_by_person["status"] == "paid"]
    for as_of, horizon in (("2025-07-01", 90), ("2024-10-15", 60), ("2024-03-01", 365)):
        a = pd.Timestamp(as_of)
        window = paid[(paid["order_ts"] >= a) & (paid["order_ts"] < a + pd.Timedelta(days=horizon))]
        real = window.groupby("true_person").agg(n=("amount", "size"), spend=("amount", "sum"))
        orc = oracle(sim["truth"], a, horizon, touches=sim["campaign_touches"], truth_keys=sim["truth_keys"],
                     effects=sim["truth_campaign_effects"])
        assert orc["true_person"].isin(sim["truth"]["true_person"]).all()
        r = orc.join(real, on="true_person").fillna({"n": 0, "spend": 0.0})
        bought = (r["n"] > 0).astype(float)
        sd = np.sqrt((r["p_purchase"] * (1 - r["p_purchase"])).sum())
        assert abs(bought.sum() - r["p_purchase"].sum()) < 3.5 * sd
        assert abs(r["n"].sum() / r["expected_orders"].sum() - 1) < 0.06
        assert abs(r["spend"].sum() / r["expected_spend"].sum() - 1) < 0.08
        # calibrated across the range, and sharp: dead people never buy organically
        bins = pd.qcut(r["p_purchase"].rank(method="first"), 5, labels=False)
        by_bin = pd.DataFrame({"p": r["p_purchase"], "y": bought}).groupby(bins).mean()
        assert (by_bin["p"] - by_bin["y"]).abs().max() < 0.06
        assert r.loc[r["p_alive"] == 0, "p_purchase"].max() < 0.5


def test_oracle_agrees_with_a_monte_carlo_resimulation(sim):
    """Re-draw remaining lifetimes and paid orders many times from the latent state and compare."""
    as_of, horizon, draws = pd.Timestamp("2025-03-01"), 120, 4000
    orc = oracle(sim["truth"], as_of, horizon).set_index("true_person")
    truth = sim["truth"].set_index("true_person").loc[orc.index]
    alive = orc.index[orc["p_alive"] == 1][:150]
    cal = calendar(as_of, as_of + pd.Timedelta(days=horizon - 1))
    g = (cal["intensity"] * cal["paid_rate"]).to_numpy()
    value = g * (1 - cal["discount_rate"].to_numpy())
    cum_g, cum_v = np.concatenate([[0], np.cumsum(g)]), np.concatenate([[0], np.cumsum(value)])
    rng = np.random.default_rng(0)
    lam, mu = truth.loc[alive, "lam"].to_numpy(), truth.loc[alive, "mu"].to_numpy()
    alive_days = np.minimum(1 + np.floor(rng.exponential(1.0, (draws, len(alive))) / mu), horizon).astype(int)
    n_orders = rng.poisson(lam * cum_g[alive_days])
    mc_p = (n_orders > 0).mean(axis=0)
    mc_orders = n_orders.mean(axis=0)
    mc_spend = (lam * cum_v[alive_days]).mean(axis=0) * truth.loc[alive, "spend_mean"].to_numpy()
    np.testing.assert_allclose(orc.loc[alive, "p_purchase"], mc_p, atol=0.035)
    np.testing.assert_allclose(orc.loc[alive, "expected_orders"], mc_orders, rtol=0.08, atol=0.03)
    np.testing.assert_allclose(orc.loc[alive, "expected_spend"], mc_spend, rtol=0.05, atol=1.0)


def test_oracle_per_one_id_person_handles_fragments_and_merges(sim):
    """Orders split over accounts by channel weight, so the oracle is exact for any key → person mapping."""
    truth, keys, touches = sim["truth"], sim["truth_keys"], sim["campaign_touches"]
    effects = sim["truth_campaign_effects"]
    as_of, horizon = pd.Timestamp("2025-07-01"), 90
    whole = oracle(truth, as_of, horizon, touches=touches, truth_keys=keys, effects=effects)
    whole = whole.set_index("true_person")
    # every account its own person: fragments add up to the whole person
    own = pd.DataFrame({"customer_key": keys["customer_key"], "person_id": keys["customer_key"]})
    frag = oracle(truth, as_of, horizon, touches=touches, truth_keys=keys, effects=effects,
                  key_to_person=own)
    total = frag.groupby("true_person")[["expected_orders", "expected_spend"]].sum()
    np.testing.assert_allclose(total["expected_orders"], whole.loc[total.index, "expected_orders"], rtol=1e-9)
    np.testing.assert_allclose(total["expected_spend"], whole.loc[total.index, "expected_spend"], rtol=1e-9)
    paid = sim["orders"][(sim["orders"]["status"] == "paid") & (sim["orders"]["order_ts"] >= as_of)]
    paid = paid[paid["order_ts"] < as_of + pd.Timedelta(days=horizon)]
    bought = frag["person_id"].isin(paid["customer_key"]).astype(float)
    sd = np.sqrt((frag["p_purchase"] * (1 - frag["p_purchase"])).sum())
    assert abs(bought.sum() - frag["p_purchase"].sum()) < 3.5 * sd
    # two people merged into one person_id: independent, so P(any) = 1 - (1 - p1)(1 - p2)
    pairs = keys.assign(person_id="m" + (keys["true_person"] // 2).astype(str))
    merged = oracle(truth, as_of, horizon, truth_keys=keys, key_to_person=pairs).set_index("person_id")
    organic = oracle(truth, as_of, horizon).set_index("true_person")
    p = (
        organic["p_purchase"]
        .groupby("m" + (organic.index // 2).astype(str))
        .apply(lambda x: 1 - np.prod(1 - x))
    )
    np.testing.assert_allclose(merged.loc[p.index, "p_purchase"], p, rtol=1e-9, atol=1e-12)
    assert merged["n_true_persons"].max() == 2


def test_oracle_state_and_arguments(sim):
    truth = sim["truth"]
    orc = oracle(truth, "2025-07-01", 30)
    born = truth[truth["birth_date"] < "2025-07-01"]
    assert len(orc) == len(born)
    dead = born["death_date"].notna() & (born["death_date"] <= "2025-07-01")
    assert (orc["p_alive"].to_numpy() == (~dead).to_numpy().astype(float)).all()
    assert (
        (orc.loc[orc["p_alive"] == 0, ["p_purchase", "expected_orders", "expected_spend"]] == 0).all().all()
    )
    later = oracle(truth, "2026-07-01", 30)  # past the simulated end: a survival probability
    assert later["p_alive"].between(0, 1).all() and (later["p_alive"] % 1 != 0).any()
    longer = oracle(truth, "2025-07-01", 60)
    assert (longer["p_purchase"].to_numpy() >= orc["p_purchase"].to_numpy() - 1e-12).all()
    with pytest.raises(ValueError, match="truth_keys"):
        oracle(truth, "2025-07-01", 30, touches=sim["campaign_touches"])
    with pytest.raises(ValueError, match="person_id"):
        oracle(truth, "2025-07-01", 30, truth_keys=sim["truth_keys"], key_to_person=sim["truth_keys"])
    with pytest.raises(ValueError, match="horizon_days"):
        oracle(truth, "2025-07-01", 0)


def test_dirty_mode_adds_every_malformed_kind_and_lists_it(dirty):
    report = dirty["truth_dirty_rows"]
    for table, kinds in KINDS.items():
        listed = report[report["table"] == table]
        assert set(listed["kind"]) == {k for k, _ in kinds}
        df = dirty[table]
        ts_col = {
            "orders": "order_ts",
            "events": "event_ts",
            "campaign_touches": "sent_ts",
            "identities": "join_ts",
        }
        parsed = pd.to_datetime(df[ts_col[table]], format="%Y-%m-%d %H:%M:%S", errors="coerce")
        clean = df.drop(index=listed["row"].to_numpy())
        assert parsed[clean.index].notna().all()
        for kind in set(listed["kind"]):
            rows = listed.loc[listed["kind"] == kind, "row"].to_numpy()
            sub = df.iloc[rows]
            if kind == "bad_timestamp":
                assert parsed.iloc[rows].isna().all()
            elif kind == "empty_customer_key":
                assert (sub["customer_key"].fillna("") == "").all()
            elif kind == "negative_amount":
                assert (sub["amount"] < 0).all()
            elif kind == "nan_amount":
                assert sub["amount"].isna().all()
            elif kind == "duplicate_order_id":
                first = df["order_id"].duplicated(keep="first")
                assert first.iloc[rows].all() and first.sum() == len(rows)
            else:
                column = kind.removeprefix("unknown_")
                valid = {"channel": set(CHANNELS), "status": {"paid", "refunded", "cancelled"},
                         "event_type": set(EVENT_TYPES), "group": {"treatment", "control"}}[column]  # fmt: skip
                assert not sub[column].isin(valid).any()
                assert clean[column].isin(valid).all()
        assert (clean["customer_key"].fillna("") != "").all()
        assert 0.02 < len(listed) / len(df) < 0.04
    orders = dirty["orders"].drop(index=report.loc[report["table"] == "orders", "row"].to_numpy())
    assert orders["order_id"].is_unique and (orders["amount"] >= 0).all()


def test_write_dataset_round_trips_parquet_and_csv(tmp_path, dirty):
    small = simulate(200, seed=5)
    paths = write_dataset(small, tmp_path / "pq")
    assert {p.name for p in paths.values()} >= {
        "orders.parquet", "events.parquet", "identities.parquet", "campaign_touches.parquet", "truth.parquet",
        "truth_keys.parquet",
    }  # fmt: skip
    back = pd.read_parquet(paths["orders"])
    pd.testing.assert_frame_equal(back, small["orders"], check_dtype=False)
    paths = write_dataset(dirty, tmp_path / "csv", fmt="csv")
    assert paths["orders"].suffix == ".csv" and paths["truth"].suffix == ".parquet"
    back = pd.read_csv(paths["orders"], dtype={"order_ts": str})
    assert len(back) == len(dirty["orders"])
    assert back["order_ts"].isin(["not a timestamp", "yesterday", "2024-13-45 25:61:00", "31/02/2024 10:00",
                                  "2025-02-30T10:00:00"]).any()  # fmt: skip
    with pytest.raises(ValueError, match="fmt"):
        write_dataset(small, tmp_path / "x", fmt="json")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="n_customers"):
        simulate(0, seed=1)
    with pytest.raises(ValueError, match="dirty"):
        simulate(10, seed=1, dirty=0.9)
    with pytest.raises(ValueError, match="range"):
        simulate(10, seed=1, start="2025-01-01", end="2025-01-31")


def test_cli_simulate_writes_the_tables(tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, ["simulate", "--customers", "300", "--seed", "3", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "orders.parquet").exists() and (tmp_path / "truth.parquet").exists()
    assert re.search(r"orders\.parquet", result.output)
