"""The BTYD summary equals lifetimes' ``summary_data_from_transaction_data`` (daily, observation end as_of - 1)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from lifetimes.datasets import load_dataset
from lifetimes.utils import summary_data_from_transaction_data

from features.dataset import Dataset
from features.pipeline import build_features
from features.rfm import btyd_summary

SUMMARY = ["frequency", "recency", "T", "monetary_value"]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """The full CDNOW master transaction log shipped with lifetimes (69,659 rows, 23,570 customers)."""
    df = load_dataset(
        "CDNOW_master.txt",
        header=0,
        sep=r"\s+",
        names=["customer_id", "date", "n_cds", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


def _assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.index) == list(theirs.index)
    for col in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy(), err_msg=col)
    # sums of floats in a different order: equal to the last few bits
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("as_of", [date(1997, 4, 1), date(1997, 10, 1), date(1998, 7, 1)])
def test_btyd_summary_matches_lifetimes_on_cdnow(cdnow, as_of):
    end = as_of - timedelta(days=1)
    theirs = summary_data_from_transaction_data(
        cdnow, "customer_id", "date", monetary_value_col="amount", observation_period_end=end
    ).sort_index()
    ours = btyd_summary(
        cdnow, customer_col="customer_id", datetime_col="date", monetary_col="amount", observation_period_end=end
    )
    assert len(theirs) > 20_000
    _assert_same(ours[SUMMARY], theirs[SUMMARY])


def test_build_features_summary_matches_lifetimes_on_cdnow(cdnow):
    as_of = date(1997, 10, 1)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(len(cdnow)).astype(str),
            "customer_key": cdnow["customer_id"],
            "order_ts": cdnow["date"],
            "amount": cdnow["amount"].astype(float),
        }
    )
    feats = build_features(Dataset(orders=orders), as_of)
    theirs = summary_data_from_transaction_data(
        cdnow, "customer_id", "date", monetary_value_col="amount", observation_period_end=as_of - timedelta(days=1)
    )
    # with orders only every customer_key is its own person: p_ + sha1(key)[:12]
    theirs.index = ["p_" + hashlib.sha1(k.encode()).hexdigest()[:12] for k in theirs.index]
    theirs = theirs.sort_index()
    ours = feats.set_index("person_id").loc[theirs.index]
    _assert_same(ours[SUMMARY], theirs[SUMMARY])


def test_intraday_orders_merge_and_cutoff_is_midnight():
    """Orders on one day are one purchase (amounts summed); an order at as_of 00:00 is not used."""
    ts = pd.to_datetime(
        [
            "2024-01-01 09:00",
            "2024-01-01 18:30",  # same day: one purchase of 30
            "2024-01-05 12:00",
            "2024-01-09 23:59",  # the last minute before as_of
            "2024-01-10 00:00",  # as_of itself: excluded
        ]
    )
    tx = pd.DataFrame({"c": ["a"] * 5, "ts": ts, "amount": [10.0, 20.0, 40.0, 60.0, 1000.0]})
    as_of = date(2024, 1, 10)
    theirs = summary_data_from_transaction_data(tx, "c", "ts", monetary_value_col="amount",
                                                observation_period_end=as_of - timedelta(days=1))
    ours = btyd_summary(tx, customer_col="c", datetime_col="ts", monetary_col="amount",
                        observation_period_end=as_of - timedelta(days=1))
    _assert_same(ours[SUMMARY], theirs[SUMMARY])
    row = ours.loc["a"]
    assert (row["frequency"], row["recency"], row["T"]) == (2.0, 8.0, 8.0)
    assert row["monetary_value"] == pytest.approx(50.0)

    orders = pd.DataFrame({"order_id": list("12345"), "customer_key": "a", "order_ts": ts,
                           "amount": tx["amount"]})
    feats = build_features(Dataset(orders=orders), as_of).iloc[0]
    assert feats["orders"] == 4  # orders, not purchase days
    assert feats["total_spend"] == pytest.approx(130.0)
    assert (feats["frequency"], feats["recency"], feats["T"]) == (2.0, 8.0, 8.0)
    assert feats["recency_days"] == 1 and feats["tenure_days"] == 9


def test_people_without_paid_orders_have_missing_summary():
    orders = pd.DataFrame({
        "order_id": ["1", "2"], "customer_key": ["paid", "refund"],
        "order_ts": pd.to_datetime(["2024-01-02", "2024-01-03"]), "amount": [10.0, 20.0],
        "status": ["paid", "refunded"],
    })
    feats = build_features(Dataset(orders=orders), date(2024, 2, 1)).set_index("orders")
    assert feats.loc[0, SUMMARY].isna().all()
    assert feats.loc[1, "frequency"] == 0 and feats.loc[1, "monetary_value"] == 0
