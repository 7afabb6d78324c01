"""Write simulated tables to a data directory (Parquet or CSV); ground truth always goes to Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CONTRACT_TABLES = ("orders", "events", "identities", "campaign_touches")


def write_dataset(
    tables: dict[str, pd.DataFrame], out_dir: str | Path, *, fmt: str = "parquet"
) -> dict[str, Path]:
    """Write every table as ``NAME.parquet`` or ``NAME.csv`` under ``out_dir``.

    Parameters
    ----------
    tables : dict of DataFrame
        Output of :func:`features.simulate.simulate`.
    out_dir : str or Path
        Directory (created if needed). Existing files of the same names are replaced.
    fmt : {"parquet", "csv"}
        Format of the data-contract tables (orders, events, identities, campaign_touches). Ground-truth
        tables (``truth``, ``truth_keys``, ``truth_campaigns``, ``truth_dirty_rows``) are always Parquet.

    Returns
    -------
    dict of Path
        Path written per table name.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"write_dataset: fmt must be 'parquet' or 'csv', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, df in tables.items():
        as_csv = fmt == "csv" and name in CONTRACT_TABLES
        path = out / f"{name}.{'csv' if as_csv else 'parquet'}"
        tmp = path.with_name(path.name + ".tmp")
        table = pa.Table.from_pandas(df, preserve_index=False)
        if as_csv:
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
        tmp.replace(path)
        paths[name] = path
    return paths
