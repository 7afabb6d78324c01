"""RFM scores, the 8 classic segments and lifecycle stages on small hand-made tables with known answers."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.dataset import Dataset
from features.pipeline import FeatureConfig, build_features
from features.rfm import SEGMENTS, lifecycle_stage, rfm_scores, rfm_segments

AS_OF = date(2025, 7, 1)

# person: (recency_days, paid orders, total spend, expected segment).
# R is high for A, C, E, G; F for A, B, E, F; M for A, B, C, D (4 of 8 each).
PEOPLE = {
    "A": (1, 10, 1000.0, "重要价值客户"),
    "B": (50, 9, 900.0, "重要保持客户"),
    "C": (2, 1, 800.0, "重要发展客户"),
    "D": (60, 2, 700.0, "重要挽留客户"),
    "E": (3, 8, 10.0, "一般价值客户"),
    "F": (70, 7, 20.0, "一般保持客户"),
    "G": (4, 3, 30.0, "一般发展客户"),
    "H": (80, 4, 40.0, "一般挽留客户"),
}
EN = {
    "重要价值客户": "high value", "重要保持客户": "high retention", "重要发展客户": "high development",
    "重要挽留客户": "high winback", "一般价值客户": "general value", "一般保持客户": "general retention",
    "一般发展客户": "general development", "一般挽留客户": "general winback",
}


def _orders_for(people: dict) -> pd.DataFrame:
    rows = []
    for key, (recency, n, spend, _) in people.items():
        last = pd.Timestamp(AS_OF) - pd.Timedelta(days=recency) + pd.Timedelta(hours=12)
        for i in range(n):
            rows.append((f"{key}{i}", key, last - pd.Timedelta(days=5 * i), spend / n))
    return pd.DataFrame(rows, columns=["order_id", "customer_key", "order_ts", "amount"])


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    orders = _orders_for(PEOPLE)
    keys = pd.DataFrame({"customer_key": list(PEOPLE), "person_id": [f"p_{k}" for k in PEOPLE]})
    # a browser without any order is a person but gets no scores
    events = pd.DataFrame({"customer_key": ["Z"], "event_ts": [pd.Timestamp("2025-06-01")], "event_type": ["view"]})
    keys = pd.concat([keys, pd.DataFrame({"customer_key": ["Z"], "person_id": ["p_Z"]})])
    return build_features(Dataset(orders=orders, events=events), AS_OF, identity=keys).set_index("person_id")


def test_hand_made_table_gets_the_known_segments(features):
    for key, (recency, n, spend, segment) in PEOPLE.items():
        row = features.loc[f"p_{key}"]
        assert row["recency_days"] == recency and row["orders"] == n
        assert row["total_spend"] == pytest.approx(spend)
        assert row["rfm_segment"] == segment, key
        assert row["rfm_segment_en"] == EN[segment]


def test_quintile_scores_on_hand_made_table(features):
    buyers = features.loc[[f"p_{k}" for k in PEOPLE]]
    # 8 distinct values: score = 1 + floor(5 * (rank - 1) / 8) -> 1,1,2,2,3,4,4,5 from worst to best
    assert sorted(buyers["r_score"].astype(int)) == [1, 1, 2, 2, 3, 4, 4, 5]
    assert features.loc["p_A", ["r_score", "f_score", "m_score"]].tolist() == [5, 5, 5]
    # H: least recent (rank 1), 4th of 8 by orders and by spend
    assert features.loc["p_H", ["r_score", "f_score", "m_score"]].tolist() == [1, 2, 2]
    z = features.loc["p_Z"]
    assert z["orders"] == 0 and pd.isna(z["r_score"]) and pd.isna(z["rfm_segment"]) and pd.isna(z["lifecycle_stage"])


def _frame(recency, orders, spend) -> pd.DataFrame:
    return pd.DataFrame({"recency_days": recency, "orders": orders, "total_spend": spend,
                         "avg_spend": np.asarray(spend, float) / np.maximum(orders, 1)})


def test_ties_share_a_score_and_row_order_does_not_matter():
    df = _frame([5, 5, 5, 40, 90, 90], [1, 1, 1, 1, 2, 6], [10.0, 10.0, 20.0, 30.0, 30.0, 99.0])
    s = rfm_scores(df, FeatureConfig())
    # one-time buyers tie at the bottom of F: all score 1; the 2-order buyer ranks 5th of 6
    assert s["f_score"].tolist() == [1, 1, 1, 1, 4, 5]
    # a tie group scores at its lowest position: the three most recent share rank 4 of 6 -> 3
    assert s["r_score"].tolist() == [3, 3, 3, 2, 1, 1]
    perm = np.random.default_rng(3).permutation(len(df))
    s2 = rfm_scores(df.iloc[perm], FeatureConfig())
    pd.testing.assert_frame_equal(s2.sort_index(), s.sort_index())


def test_spend_equal_to_the_cent_scores_equally_whatever_the_order_of_the_additions():
    """0.1 + 0.2 and 0.3 are both 0.30 CNY; summed in another order (another engine, other partitions) a total
    differs in its last bits, and must not move anyone's M score: not in pandas (the DuckDB path), not in the
    Ibis expression (the Spark path), not at a fixed edge."""
    import ibis

    from features.rfm import rfm_scores_expr

    df = _frame([5, 6, 7, 8, 9], [1, 1, 1, 1, 1], [0.1 + 0.2, 0.3, 1.0, 2.0, 3.0])
    assert df["total_spend"][0] != df["total_spend"][1]  # the two bit patterns really differ
    s = rfm_scores(df, FeatureConfig())
    assert s["m_score"].tolist() == [1, 1, 3, 4, 5]  # unrounded, 0.30000000000000004 would rank 2nd: score 2
    expr = rfm_scores_expr(ibis.memtable(df.assign(person_id=list("abcde"))), FeatureConfig())
    got = ibis.duckdb.connect().execute(expr).set_index("person_id").loc[list("abcde")]
    assert got["m_score"].tolist() == s["m_score"].tolist()
    edges = FeatureConfig(monetary_edges=[0.3, 1.5, 2.5, 10.0])
    assert rfm_scores(df, edges)["m_score"].tolist() == [1, 1, 2, 3, 4]
    got = ibis.duckdb.connect().execute(rfm_scores_expr(ibis.memtable(df.assign(person_id=list("abcde"))), edges))
    assert got.set_index("person_id").loc[list("abcde"), "m_score"].tolist() == [1, 1, 2, 3, 4]


def test_fixed_edges_and_high_rules():
    df = _frame([3, 20, 100, 400], [1, 2, 5, 12], [50.0, 150.0, 600.0, 5000.0])
    cfg = FeatureConfig(recency_edges=[7, 30, 90, 180], frequency_edges=[1, 2, 4, 8],
                        monetary_edges=[100, 300, 1000, 3000], high_rule="fixed", high_threshold=4)
    s = rfm_scores(df, cfg)
    assert s["r_score"].tolist() == [5, 4, 2, 1]
    assert s["f_score"].tolist() == [1, 2, 4, 5]
    assert s["m_score"].tolist() == [1, 2, 3, 5]
    zh, en = rfm_segments(s, cfg)
    assert zh.tolist() == ["一般发展客户", "一般发展客户", "一般保持客户", "重要保持客户"]
    assert en.tolist()[-1] == "high retention"
    # the median rule: high when above the median score
    zh_med, _ = rfm_segments(s, FeatureConfig(high_rule="median"))
    assert zh_med.iloc[0] == SEGMENTS[(True, False, False)][0]


def test_config_rejects_unknown_keys_and_bad_edges():
    with pytest.raises(ValidationError):
        FeatureConfig(rfm_binz=5)
    with pytest.raises(ValidationError, match="ascending"):
        FeatureConfig(recency_edges=[30, 7, 90, 180])
    with pytest.raises(ValidationError):
        FeatureConfig(windows=(30, -1))


# --- lifecycle -----------------------------------------------------------------------------------------------------


def _life(rows: dict[str, list[int]]) -> pd.Series:
    """rows: name -> purchase days, as days before as_of (one order per day)."""
    recs = {}
    for name, days_ago in rows.items():
        d = sorted(days_ago, reverse=True)  # oldest first
        gaps = -np.diff(d)
        recs[name] = {
            "orders": len(d), "frequency": len(d) - 1, "recency": d[0] - d[-1],
            "ipi_mean": gaps.mean() if len(gaps) else np.nan, "recency_days": d[-1], "tenure_days": d[0],
            "_gap_before_last": gaps[-1] if len(gaps) else np.nan,
        }
    return lifecycle_stage(pd.DataFrame.from_dict(recs, orient="index"), FeatureConfig())


def test_lifecycle_rules():
    monthly = [25 + 30 * i for i in range(10)]
    stages = _life({
        "new": [20],  # first purchase 20 days ago
        "active": monthly,  # every 30 days, last 25 days ago (<= 1.5 x 30)
        "at_risk": [d + 45 for d in monthly],  # last 70 days ago: > 1.5x, <= 3x the gap
        "lapsed": [d + 175 for d in monthly],  # last 200 days ago: > 3x the gap
        "reactivated": [10, 310, 340, 370, 400],  # back 10 days ago after a 300-day break (gap before: 30)
        "one_timer": [300],  # typical gap (median ipi_mean, 30) -> 300 > 90: lapsed
        "two_days": [40, 200],  # one interval: uses the typical gap 30 -> 40 <= 45: active... but came back
    })
    assert stages["new"] == "new"
    assert stages["active"] == "active"
    assert stages["at_risk"] == "at_risk"
    assert stages["lapsed"] == "lapsed"
    assert stages["reactivated"] == "reactivated"
    assert stages["one_timer"] == "lapsed"
    # one interval of 160 days > 3 x typical 30 before the last purchase 40 days ago (<= 1.5 x 30? no: 40 <= 45)
    assert stages["two_days"] == "reactivated"


def test_lifecycle_personal_gap_beats_typical_gap():
    stages = _life({
        "slow": [100 + 100 * i for i in range(5)],  # buys every 100 days, last 100 days ago: active for them
        "fast_a": [d for d in range(10, 60, 10)],  # typical gap is 10 days
        "fast_b": [d for d in range(12, 62, 10)],
        "fast_c": [d for d in range(14, 64, 10)],
    })
    assert stages["slow"] == "active"


def test_lifecycle_through_build_features():
    base = pd.Timestamp(AS_OF)
    rows = []
    # regular monthly buyer, last order 10 days ago
    rows += [("reg", base - pd.Timedelta(days=10 + 30 * i)) for i in range(8)]
    # came back after a year away
    rows += [("back", base - pd.Timedelta(days=d)) for d in (5, 400, 430, 460)]
    # brand new
    rows += [("fresh", base - pd.Timedelta(days=15))]
    # gone for good
    rows += [("gone", base - pd.Timedelta(days=d)) for d in (500, 530, 560)]
    orders = pd.DataFrame(rows, columns=["customer_key", "order_ts"])
    orders["order_id"] = [str(i) for i in range(len(orders))]
    orders["amount"] = 10.0
    keys = pd.DataFrame({"customer_key": ["reg", "back", "fresh", "gone"],
                         "person_id": ["p_reg", "p_back", "p_fresh", "p_gone"]})
    f = build_features(Dataset(orders=orders), AS_OF, identity=keys).set_index("person_id")
    assert f.loc["p_reg", "lifecycle_stage"] == "active"
    assert f.loc["p_back", "lifecycle_stage"] == "reactivated"
    assert f.loc["p_fresh", "lifecycle_stage"] == "new"
    assert f.loc["p_gone", "lifecycle_stage"] == "lapsed"
    assert f.loc["p_reg", "ipi_mean"] == pytest.approx(30.0)
    assert f.loc["p_reg", "ipi_std"] == pytest.approx(0.0)


def test_segments_cover_all_eight_combinations():
    assert len(SEGMENTS) == 8
    assert len({v[0] for v in SEGMENTS.values()}) == 8 and len({v[1] for v in SEGMENTS.values()}) == 8
    assert date(2025, 7, 1) - timedelta(days=1) < AS_OF
