"""Feature values on a small hand-made omnichannel dataset, documentation, degradation and snapshots."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.dataset import Dataset, TableFingerprint
from features.interactions import EVENT_TYPES
from features.pipeline import (
    FEATURE_DOCS,
    FeatureConfig,
    build_features,
    build_snapshot,
    feature_docs,
    latest_snapshot,
    load_snapshot,
    model_columns,
    summarize,
    write_snapshot,
)
from features.rfm import CHANNELS

AS_OF = date(2025, 7, 1)
T0 = pd.Timestamp(AS_OF)


def ts(days_before: float, hour: int = 12) -> pd.Timestamp:
    """A timestamp ``days_before`` days before as_of, at ``hour`` o'clock."""
    return T0 - pd.Timedelta(days=days_before) + pd.Timedelta(hours=hour)


def _dataset() -> tuple[Dataset, pd.DataFrame]:
    """Two people: ``p_anna`` (keys tm_anna + wx_anna) and ``p_bo`` (jd_bo); ``ev_only`` only browses."""
    o = [
        # order_id, key, ts, amount, channel, status, discount, category, store_id
        ("o1", "tm_anna", ts(400), 100.0, "tmall", "paid", 0.0, "skin", None),
        ("o2", "tm_anna", ts(200), 50.0, "tmall", "paid", 5.0, "skin", None),
        ("o3", "wx_anna", ts(100), 80.0, "wechat", "paid", 0.0, "hair", None),
        ("o4", "wx_anna", ts(60), 30.0, "store", "paid", 0.0, "hair", "s1"),
        ("o5", "wx_anna", ts(30, 0), 40.0, "wechat", "paid", 10.0, "body", None),  # exactly 30 days: in 30d
        ("o6", "tm_anna", ts(20), 99.0, "tmall", "refunded", 0.0, "skin", None),
        ("o7", "tm_anna", ts(10), 70.0, "tmall", "cancelled", 0.0, "skin", None),
        ("o8", "jd_bo", ts(31, 23), 25.0, "jd", "paid", 0.0, "skin", None),  # 30 days + 1 hour: not in 30d
        ("o9", "jd_bo", ts(1), 75.0, "jd", "paid", 0.0, "skin", None),
        # after as_of: ignored
        ("o10", "jd_bo", ts(0, 0), 500.0, "jd", "paid", 0.0, "skin", None),
        ("o11", "late", ts(-5), 500.0, "jd", "paid", 0.0, "skin", None),
    ]
    orders = pd.DataFrame(o, columns=["order_id", "customer_key", "order_ts", "amount", "channel", "status",
                                      "discount", "category", "store_id"])
    e = [
        ("tm_anna", ts(2), "view"), ("tm_anna", ts(5), "view"), ("wx_anna", ts(20), "view"),
        ("tm_anna", ts(3), "cart"), ("tm_anna", ts(50), "cart"), ("tm_anna", ts(300), "cart"),
        ("wx_anna", ts(40), "message_open"), ("wx_anna", ts(39), "message_click"),
        ("jd_bo", ts(100), "view"),
        ("ev_only", ts(6), "livestream_view"), ("ev_only", ts(95), "livestream_view"),
        ("jd_bo", ts(-1), "cart"),  # after as_of
    ]
    events = pd.DataFrame(e, columns=["customer_key", "event_ts", "event_type"])
    t = [
        # campaign, key, sent, group
        ("c1", "wx_anna", ts(75), "treatment"),  # order o4 at day 60 is 15 days later: not within 14
        ("c2", "wx_anna", ts(35), "treatment"),  # o5 at day 30 within 14 days: responded
        ("c3", "tm_anna", ts(10), "treatment"),  # window ends after as_of: not counted for response
        ("c4", "jd_bo", ts(40), "control"),  # control: ignored
        ("c5", "jd_bo", ts(-2), "treatment"),  # after as_of
    ]
    touches = pd.DataFrame(t, columns=["campaign_id", "customer_key", "sent_ts", "group"])
    identities = pd.DataFrame({
        "customer_key": ["tm_anna", "wx_anna", "jd_bo", "late"],
        "birth_year": [1990, 1990, 1980, 2000],
        "join_ts": [ts(500), ts(-10), ts(100), ts(-5)],  # wx_anna joined after as_of: ignored
        "marketing_opt_out": [False, True, False, False],
        "member_card": ["m1", "m1", None, None],
    })
    identity = pd.DataFrame({
        "customer_key": ["tm_anna", "wx_anna", "jd_bo", "late"],
        "person_id": ["p_anna", "p_anna", "p_bo", "p_late"],
    })
    data = Dataset(orders=orders, events=events, identities=identities, campaign_touches=touches)
    return data, identity


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    data, identity = _dataset()
    return build_features(data, AS_OF, identity=identity).set_index("person_id")


def test_one_row_per_person_active_before_as_of(feats):
    own = "p_" + hashlib.sha1(b"ev_only").hexdigest()[:12]  # a key One-ID does not cover is its own person
    assert sorted(feats.index) == sorted(["p_anna", "p_bo", own])
    assert feats.loc["p_anna", "n_customer_keys"] == 2


def test_order_features(feats):
    a = feats.loc["p_anna"]
    assert a["orders"] == 5
    assert a["total_spend"] == pytest.approx(300.0)
    assert a["avg_spend"] == pytest.approx(60.0)
    assert a["recency_days"] == 30 and a["tenure_days"] == 400
    assert a["orders_30d"] == 1 and a["spend_30d"] == pytest.approx(40.0)
    assert a["orders_90d"] == 2 and a["orders_180d"] == 3 and a["orders_365d"] == 4
    assert a["spend_365d"] == pytest.approx(200.0)
    assert a["refund_rate"] == pytest.approx(1 / 6)  # 1 refunded of 6 paid-or-refunded orders
    assert a["discount_share"] == pytest.approx(2 / 5)
    assert a["channel_share_tmall"] == pytest.approx(2 / 5)
    assert a["channel_share_wechat"] == pytest.approx(2 / 5)
    assert a["channel_share_store"] == pytest.approx(1 / 5)
    assert a["store_share"] == pytest.approx(1 / 5)
    assert a["n_channels"] == 3 and a["n_categories"] == 3
    assert a["ipi_mean"] == pytest.approx(370 / 4)
    assert a["ipi_std"] == pytest.approx(np.std([200, 100, 40, 30], ddof=1))
    assert (a["frequency"], a["recency"], a["T"]) == (4, 370, 399)
    assert a["monetary_value"] == pytest.approx(50.0)  # (50 + 80 + 30 + 40) / 4
    b = feats.loc["p_bo"]
    assert b["orders"] == 2 and b["orders_30d"] == 1 and b["spend_30d"] == pytest.approx(75.0)
    assert b["recency_days"] == 1 and b["channel_share_jd"] == 1.0


def test_interaction_features(feats):
    a = feats.loc["p_anna"]
    assert a["ev_view_7d"] == 2 and a["ev_view_30d"] == 3 and a["ev_view_90d"] == 3
    assert a["ev_cart_7d"] == 1 and a["ev_cart_90d"] == 2
    assert a["days_since_view"] == 2 and a["days_since_cart"] == 3
    assert a["days_since_message_open"] == 40 and np.isnan(a["days_since_search"])
    assert a["cart_to_order_ratio"] == pytest.approx(5 / 3)
    assert a["campaign_touches"] == 3
    assert a["campaign_response_rate"] == pytest.approx(1 / 2)
    assert a["msg_open_rate"] == pytest.approx(1 / 3) and a["msg_click_rate"] == pytest.approx(1 / 3)
    b = feats.loc["p_bo"]
    assert b["ev_cart_7d"] == 0 and np.isnan(b["days_since_cart"])  # the cart after as_of is not seen
    assert np.isnan(b["campaign_response_rate"]) and b["campaign_touches"] == 0
    browser = feats[feats["orders"] == 0].iloc[0]
    assert browser["ev_livestream_view_7d"] == 1 and browser["ev_livestream_view_90d"] == 1
    assert browser["first_seen_days"] == 95 and np.isnan(browser["recency_days"])
    assert browser["total_spend"] == 0 and browser["orders_365d"] == 0


def test_profile_features(feats):
    a = feats.loc["p_anna"]
    assert a["age"] == 2025 - 1990
    assert a["member_tenure_days"] == 500  # the join after as_of is ignored
    assert a["is_member"] == 1.0
    assert bool(a["marketing_opt_out"]) is True  # one of the keys opted out
    assert bool(feats.loc["p_bo", "marketing_opt_out"]) is False and feats.loc["p_bo", "is_member"] == 0.0
    # no identity row: consent unknown (<NA>), never taken as "not opted out"
    own = "p_" + hashlib.sha1(b"ev_only").hexdigest()[:12]
    assert feats["marketing_opt_out"].dtype == "boolean" and pd.isna(feats.loc[own, "marketing_opt_out"])


def test_every_column_is_documented_and_model_columns_are_numeric(feats):
    undocumented = [c for c in feats.reset_index().columns if c not in FEATURE_DOCS]
    assert undocumented == []
    cols = model_columns(feats.reset_index())
    for excluded in ("person_id", "rfm_segment", "rfm_segment_en", "lifecycle_stage", "marketing_opt_out"):
        assert excluded not in cols
    assert {"recency_days", "frequency", "r_score", "ev_view_7d", "age"} <= set(cols)
    assert all(pd.api.types.is_numeric_dtype(feats[c]) for c in cols)
    expected = {f"ev_{et}_{w}d" for et in EVENT_TYPES for w in (7, 30, 90)} | {f"channel_share_{c}" for c in CHANNELS}
    assert expected <= set(feats.columns)


def test_orders_only_degrades_and_says_so_once():
    data, identity = _dataset()
    console = Console(record=True, width=200)
    f = build_features(Dataset(orders=data.orders), AS_OF, identity=identity, console=console)
    text = console.export_text()
    assert text.count("note:") == 1 and "interaction features" in text
    assert not any(c.startswith(("ev_", "days_since_", "campaign_", "msg_")) for c in f.columns)
    assert "age" not in f.columns and f["marketing_opt_out"].isna().all()  # orders only: consent unknown
    assert f["marketing_opt_out"].dtype == "boolean" and "consent unknown" in text
    full = build_features(data, AS_OF, identity=identity, console=Console(quiet=True))
    # order features do not depend on the optional tables (first_seen_days also counts events)
    common = [c for c in f.columns if c not in ("person_id", "first_seen_days", "marketing_opt_out")]
    pd.testing.assert_frame_equal(
        f.set_index("person_id")[common], full.set_index("person_id").loc[f["person_id"], common],
        check_dtype=False, rtol=1e-12,
    )


def test_config_windows_change_columns():
    data, identity = _dataset()
    cfg = FeatureConfig(windows=(7, 14), event_windows=(1,))
    f = build_features(data, AS_OF, identity=identity, config=cfg, console=Console(quiet=True))
    assert {"orders_7d", "spend_14d", "ev_view_1d"} <= set(f.columns)
    assert "orders_30d" not in f.columns and "ev_view_7d" not in f.columns
    assert set(f.columns) <= set(feature_docs(cfg))


def test_identity_with_conflicting_keys_is_rejected():
    data, _ = _dataset()
    bad = pd.DataFrame({"customer_key": ["tm_anna", "tm_anna"], "person_id": ["p_1", "p_2"]})
    with pytest.raises(ValueError, match="tm_anna"):
        build_features(data, AS_OF, identity=bad)


# --- snapshots -----------------------------------------------------------------------------------------------------


def test_build_snapshot_writes_features_identity_manifest(tmp_path):
    data, identity = _dataset()
    data.fingerprint = {"orders": TableFingerprint("orders.parquet", "ab" * 32, 11, 11, 0)}
    out = tmp_path / "features" / "as_of=2025-07-01"
    snap = build_snapshot(data, AS_OF, out_dir=out, console=Console(quiet=True), identity=identity)
    assert sorted(p.name for p in out.iterdir()) == ["features.parquet", "identity.parquet", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["as_of"] == "2025-07-01"
    assert manifest["inputs"]["orders"]["sha256"] == "ab" * 32
    assert manifest["rows"]["people"] == len(snap.features) == 3
    assert manifest["rows"]["buyers"] == 2
    assert manifest["features"] == list(snap.features.columns)
    assert manifest["config"]["windows"] == [30, 90, 180, 365]
    # every key in any table is mapped, including those only seen after as_of
    assert set(snap.identity["customer_key"]) == {"tm_anna", "wx_anna", "jd_bo", "late", "ev_only"}
    loaded = load_snapshot(out)
    pd.testing.assert_frame_equal(loaded.features, snap.features)
    assert loaded.as_of == AS_OF

    older = tmp_path / "features" / "as_of=2025-01-01"
    build_snapshot(data, date(2025, 1, 1), out_dir=older, console=Console(quiet=True), identity=identity)
    assert latest_snapshot(tmp_path).as_of == AS_OF
    assert not [p for p in (tmp_path / "features").iterdir() if p.name.startswith(".")]


def test_failed_snapshot_write_leaves_nothing(tmp_path, monkeypatch):
    feats = pd.DataFrame({"person_id": ["p_1"], "orders": [1]})
    ident = pd.DataFrame({"customer_key": ["k"], "person_id": ["p_1"]})

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    out = tmp_path / "snap"
    write_snapshot(feats, ident, out, {"as_of": "2025-07-01"})
    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(feats, ident, tmp_path / "new", {"as_of": "2025-07-01"})
    with pytest.raises(OSError):
        write_snapshot(feats, ident, out, {"as_of": "2025-08-01"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]  # no partial or temporary directory
    assert json.loads((out / "manifest.json").read_text())["as_of"] == "2025-07-01"  # old snapshot intact


def test_latest_snapshot_without_snapshots_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="scrm features build"):
        latest_snapshot(tmp_path)


def test_summarize_prints_segments_and_stages(feats):
    console = Console(record=True, width=200)
    summarize(feats.reset_index(), console=console)
    text = console.export_text()
    assert "people" in text and "buyers" in text
    assert any(seg in text for seg in ("重要价值客户", "一般挽留客户", "重要保持客户", "一般发展客户"))
    assert "lapsed" in text and "(no paid order)" in text


def test_consent_of_a_person_opted_out_recorded_or_unknown():
    """Any key opted out → True; else a recorded False → False; no recorded value on any key → <NA> (unknown)."""
    orders = pd.DataFrame({"order_id": ["o1", "o2", "o3", "o4"], "customer_key": ["a1", "b1", "c1", "c2"],
                           "order_ts": [ts(50), ts(40), ts(30), ts(20)], "amount": [10.0, 20.0, 30.0, 40.0]})
    identities = pd.DataFrame({"customer_key": ["a1", "b1", "c1", "c2"],
                               "marketing_opt_out": pd.array([pd.NA, pd.NA, False, pd.NA], dtype="boolean")})
    identity = pd.DataFrame({"customer_key": ["a1", "b1", "c1", "c2"], "person_id": ["p_a", "p_b", "p_c", "p_c"]})
    identities.loc[0, "marketing_opt_out"] = True
    f = build_features(Dataset(orders=orders, identities=identities), AS_OF, identity=identity,
                       console=Console(quiet=True)).set_index("person_id")["marketing_opt_out"]
    assert f.dtype == "boolean"
    assert bool(f["p_a"]) is True
    assert pd.isna(f["p_b"]) and bool(f["p_c"]) is False  # p_c: one recorded False, one unknown → False
