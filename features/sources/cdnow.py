"""CDNOW: the compact-disc shop transactions that ship with lifetimes, as an orders-only data directory.

CDNOW is the classic BTYD benchmark (Fader, Hardie & Lee 2005): every purchase of a cohort of customers who
made their first purchase at CDNOW in the first quarter of 1997, followed until the end of June 1998. lifetimes
ships two files under ``lifetimes/datasets/``:

* ``CDNOW_sample.txt`` — the 1/10 sample of 2,357 customers used in the papers (and in lifetimes'
  ``cdnow_customers_summary*.csv``, computed for the 39-week calibration period ending 1997-09-30);
  columns: master id, sample id, date, number of CDs, dollar value;
* ``CDNOW_master.txt`` — all 23,570 customers; columns: customer id, date, number of CDs, dollar value.

Mapping onto the ``orders`` contract (one line of the file is one order):

==============  ===============================================================================
``order_id``    ``cdnow-<customer id>-<YYYYMMDD>-<n>``, ``n`` counting the lines of that customer and day
                in file order (deterministic: the same file always gives the same ids)
``customer_key``  ``cdnow:<customer id>`` (the sample id 1…2357 for the sample, which is the ``ID`` of
                lifetimes' summary files)
``order_ts``    the purchase date (the data has no time of day)
``amount``      dollar value
``item_count``  number of CDs
``channel``     ``web`` (CDNOW sold online)
==============  ===============================================================================

The data records neither refunds nor discounts, so ``status`` is left to the contract default (``paid``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import write_tables

SOURCES = ("sample", "master")


def cdnow_path(source: str = "sample") -> Path:
    """Path of the CDNOW file shipped in lifetimes (``source`` is ``"sample"`` or ``"master"``)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    name = "CDNOW_sample.txt" if source == "sample" else "CDNOW_master.txt"
    return Path(str(resources.files("lifetimes").joinpath("datasets", name)))


def read_cdnow(source: str = "sample", *, path: str | Path | None = None) -> pd.DataFrame:
    """Read CDNOW transactions as the ``orders`` contract table.

    Parameters
    ----------
    source : {"sample", "master"}, default "sample"
        The 2,357-customer sample (the one lifetimes' summary files and the BTYD papers use) or all
        23,570 customers.
    path : str or Path, optional
        Read this file instead of the copy in lifetimes (same layout as ``source``).

    Returns
    -------
    pandas.DataFrame
        ``order_id``, ``customer_key``, ``order_ts``, ``amount``, ``item_count``, ``channel``, in file order.
    """
    path = Path(path) if path is not None else cdnow_path(source)
    if source == "sample":
        names = ["master_id", "customer_id", "date", "item_count", "amount"]
        raw = pd.read_csv(path, sep=r"\s+", header=None, names=names, dtype={"date": str})
    elif source == "master":
        names = ["customer_id", "date", "item_count", "amount"]
        raw = pd.read_csv(path, sep=r"\s+", header=None, names=names, dtype={"date": str}, skiprows=1)
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if raw.empty:
        raise ValueError(f"{path}: no transactions")
    order_ts = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce")
    bad = order_ts.isna()
    if bad.any():
        examples = raw.loc[bad, "date"].head(3).tolist()
        raise ValueError(f"{path}: column date: {int(bad.sum())} unparseable date(s), e.g. {examples}")
    customer = raw["customer_id"].astype(np.int64).astype(str)
    # n-th line of the same customer and day, in file order: stable across runs.
    nth = raw.groupby([raw["customer_id"], raw["date"]], sort=False).cumcount() + 1
    orders = pd.DataFrame(
        {
            "order_id": "cdnow-" + customer + "-" + raw["date"] + "-" + nth.astype(str),
            "customer_key": "cdnow:" + customer,
            "order_ts": order_ts,
            "amount": raw["amount"].astype(np.float64),
            "item_count": raw["item_count"].astype(np.int64),
            "channel": "web",
        }
    )
    return orders


def write_cdnow(out_dir: str | Path, *, source: str = "sample", fmt: str = "csv") -> dict[str, Path]:
    """Write the CDNOW transactions shipped in lifetimes as an orders-only data directory.

    Parameters
    ----------
    out_dir : str or Path
        Directory to write ``orders.csv`` (or ``orders.parquet``) into; created when missing.
    source : {"sample", "master"}, default "sample"
        The 2,357-customer sample or all 23,570 customers (see :func:`read_cdnow`).
    fmt : {"csv", "parquet"}, default "csv"
        File format.

    Returns
    -------
    dict of str to Path
        ``{"orders": path}``.

    Examples
    --------
    >>> paths = write_cdnow("data/cdnow")  # doctest: +SKIP
    >>> # then: scrm validate --data data/cdnow
    """
    return write_tables({"orders": read_cdnow(source)}, out_dir, fmt=fmt)
