"""Labels: churn, future spend and orders in [as_of, as_of + H), for buyers before as_of only."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from rich.console import Console

from features.dataset import Dataset
from features.labels import build_labels
from features.pipeline import build_features

AS_OF = date(2025, 7, 1)
T0 = pd.Timestamp(AS_OF)


def _data() -> tuple[Dataset, pd.DataFrame]:
    d = lambda n, h=12: T0 + pd.Timedelta(days=n) + pd.Timedelta(hours=h)  # noqa: E731 - day offsets
    rows = [
        # key, ts, amount, status
        ("a1", d(-10), 10.0, "paid"),
        ("a2", d(0, 0), 20.0, "paid"),  # as_of 00:00: the first instant of the window
        ("a1", d(29, 23), 30.0, "paid"),  # the last hour of a 30-day window
        ("a1", d(30, 0), 999.0, "paid"),  # as_of + 30 days: outside
        ("b", d(-50), 5.0, "paid"),
        ("b", d(3), 70.0, "refunded"),  # a refunded order is no purchase
        ("c", d(-5), 5.0, "cancelled"),  # no paid order before as_of: not labelled
        ("c", d(2), 40.0, "paid"),
        ("new", d(1), 15.0, "paid"),  # first order after as_of: not labelled
        ("end", d(100), 1.0, "paid"),  # data runs to as_of + 100 days
    ]
    orders = pd.DataFrame(rows, columns=["customer_key", "order_ts", "amount", "status"])
    orders.insert(0, "order_id", [f"o{i}" for i in range(len(orders))])
    identity = pd.DataFrame({"customer_key": ["a1", "a2", "b", "c", "new", "end"],
                             "person_id": ["p_a", "p_a", "p_b", "p_c", "p_new", "p_end"]})
    events = pd.DataFrame({"customer_key": ["c"], "event_ts": [d(-3)], "event_type": ["view"]})
    return Dataset(orders=orders, events=events), identity


def test_labels_for_buyers_before_as_of():
    data, identity = _data()
    lab = build_labels(data, AS_OF, 30, identity=identity).set_index("person_id")
    assert list(lab.index) == ["p_a", "p_b"]
    assert lab.loc["p_a"].tolist() == [False, 50.0, 2]
    assert lab.loc["p_b"].tolist() == [True, 0.0, 0]
    assert lab["churned"].dtype == bool and lab["future_orders"].dtype == "int64"


def test_labels_match_the_feature_rows():
    data, identity = _data()
    feats = build_features(data, AS_OF, identity=identity, console=Console(quiet=True))
    lab = build_labels(data, AS_OF, 30, identity=identity)
    buyers = feats.loc[feats["orders"] > 0, "person_id"]
    assert sorted(buyers) == sorted(lab["person_id"])
    assert "p_c" in set(feats["person_id"])  # in the features (browsed, cancelled) but not a buyer


def test_longer_horizon_includes_more():
    data, identity = _data()
    lab = build_labels(data, AS_OF, 31, identity=identity).set_index("person_id")
    assert lab.loc["p_a", "future_orders"] == 3 and lab.loc["p_a", "future_spend"] == pytest.approx(1049.0)


def test_data_too_short_raises_with_dates():
    data, identity = _data()
    build_labels(data, AS_OF, 101, identity=identity)  # the data reaches as_of + 100 days: just enough
    with pytest.raises(ValueError, match=r"2025-10-10.*ends 2025-10-09"):
        build_labels(data, AS_OF, 102, identity=identity)
    with pytest.raises(ValueError, match="horizon_days"):
        build_labels(data, AS_OF, 0, identity=identity)


def test_without_identity_each_key_is_a_person():
    data, _ = _data()
    lab = build_labels(Dataset(orders=data.orders), AS_OF, 30)
    assert len(lab) == 2  # a1 and b: a2's first order is at as_of, so a2 is no buyer before it
    assert lab["person_id"].str.match(r"^p_[0-9a-f]{12}$").all()
