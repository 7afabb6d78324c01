"""Memory diet on one machine (issue 13): compact dtypes at load, the same features from them, DuckDB's limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from features.backend import DUCKDB_MEMORY_ENV, _remove_spill_directory, connect, duckdb_memory_limit
from features.contract import SCHEMAS, _as_text, load_dataset
from features.pipeline import build_features
from features.simulate import simulate, write_dataset


@pytest.fixture(scope="module")
def brand(tmp_path_factory):
    """A 600-customer simulated brand as Parquet and the same tables as CSV."""
    root = tmp_path_factory.mktemp("memory")
    tables = simulate(600, seed=11)
    write_dataset(tables, root / "parquet")
    write_dataset(tables, root / "csv", fmt="csv")
    return root


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with every categorical column back as plain strings (the pre-issue-13 dtypes)."""
    return df.astype({c: "str" for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_low_cardinality_text_columns_load_as_sorted_categoricals(brand, fmt):
    data = load_dataset(brand / fmt)
    for name, df in data.tables().items():
        for col in SCHEMAS[name].categorical:
            if col not in df.columns:
                continue
            s = df[col]
            assert isinstance(s.dtype, pd.CategoricalDtype), (name, col, s.dtype)
            cats = list(s.cat.categories)
            assert cats == sorted(cats) and set(cats) == set(s.dropna().unique())  # sorted, only those used
        if name != "events":
            assert str(df["customer_key"].dtype) == "str"  # keys stay strings, except the events' (~35 a key)
    # an event row takes its timestamp, its key's code and three one-byte codes
    ev = data.events
    assert all(ev[c].cat.codes.dtype == np.int8 for c in ("event_type", "channel", "campaign_id"))
    assert ev["customer_key"].cat.codes.dtype in (np.int16, np.int32)


def test_parquet_and_csv_give_the_same_values_and_rejects(brand, tmp_path):
    """Dirty enum values in a Parquet file go through the categorical path: same values and rejects as CSV."""
    orders = pd.read_parquet(brand / "parquet" / "orders.parquet")
    orders.loc[:4, "channel"] = [" TMALL", "jd ", "", None, "carrier-pigeon"]
    orders.loc[5:7, "status"] = ["Refunded", " PAID", "lost"]
    for fmt in ("parquet", "csv"):
        d = tmp_path / fmt
        d.mkdir()
        if fmt == "parquet":
            orders.to_parquet(d / "orders.parquet", index=False)
        else:
            orders.to_csv(d / "orders.csv", index=False)
    a, b = load_dataset(tmp_path / "parquet"), load_dataset(tmp_path / "csv")
    assert a.validation.tables["orders"].reasons == b.validation.tables["orders"].reasons == {
        "unknown_channel": 1, "unknown_status": 1}
    pd.testing.assert_frame_equal(_strings(a.orders), _strings(b.orders), check_dtype=False)
    assert a.orders["channel"].iloc[:4].tolist() == ["tmall", "jd", "other", "other"]
    assert a.orders["status"].iloc[4:6].tolist() == ["refunded", "paid"]  # rows 5 and 6 (row 4 was rejected)


def test_clean_string_columns_are_not_copied():
    s = pd.Series(["tmall:a1", "jd:b2", None], dtype="str")
    assert _as_text(s) is s
    dirty = pd.Series(["tmall:a1 ", "", "jd:b2"], dtype="str")
    assert _as_text(dirty).tolist()[0] == "tmall:a1" and pd.isna(_as_text(dirty).iloc[1])


def test_features_from_categorical_tables_equal_those_from_strings(brand):
    """Exact equality: the compact dtypes change nothing in the snapshot."""
    data = load_dataset(brand / "parquet")
    assert isinstance(data.orders["status"].dtype, pd.CategoricalDtype)
    plain = type(data)(**{name: _strings(df) for name, df in data.tables().items()})
    assert not any(isinstance(t, pd.CategoricalDtype) for df in plain.tables().values() for t in df.dtypes)
    for as_of in ("2024-07-01", "2025-10-01"):
        pd.testing.assert_frame_equal(build_features(data, as_of), build_features(plain, as_of))


def test_duckdb_gets_a_memory_limit_and_a_spill_directory(monkeypatch):
    monkeypatch.delenv(DUCKDB_MEMORY_ENV, raising=False)
    assert duckdb_memory_limit() is None or duckdb_memory_limit().endswith("MB")
    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "1GB")
    con = connect()
    try:
        limit, temp = con.raw_sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')"
                                  ).fetchone()
    finally:
        con.disconnect()
    assert limit in ("953.6 MiB", "1.0 GB", "1000.0 MB") or "MiB" in limit
    assert "scrm-duckdb-" in temp
    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "lots'; DROP")
    with pytest.raises(ValueError, match=DUCKDB_MEMORY_ENV):
        duckdb_memory_limit()


def test_each_connection_spills_into_its_own_directory_removed_when_it_is_done(monkeypatch):
    """Two connections of one process spilling at the same time do not share spill files, closing one does not
    take the other's directory away, and each directory is gone once its connection is closed or collected."""
    import gc
    import os
    from pathlib import Path

    monkeypatch.setenv(DUCKDB_MEMORY_ENV, "40MB")
    rows = 4_000_000  # ≈ 64 MB to sort: spills at a 40 MB limit
    query = f"SELECT i % 1000003 AS k, i::DOUBLE AS x FROM range({rows}) t(i) ORDER BY k, x"

    def opened():
        con = connect()
        con.raw_sql("SET threads = 1")
        return con, Path(con.raw_sql("SELECT current_setting('temp_directory')").fetchone()[0])

    def drain(*batches) -> tuple[int, int]:
        n = k = 0
        for batch in (b for part in batches for b in part):
            n, k = n + batch.num_rows, k + int(pc.sum(batch.column("k")).as_py() or 0)
        return n, k

    want = (rows, int((np.arange(rows) % 1_000_003).sum()))
    (a, spill_a), (b, spill_b) = opened(), opened()
    assert spill_a != spill_b and spill_a.name.startswith("scrm-duckdb-")
    first = a.raw_sql(query).to_arrow_reader(50_000)
    head = next(first)  # a's sort has spilled and is being read back ...
    assert spill_a.is_dir() and any(spill_a.iterdir())
    assert drain(b.raw_sql(query).to_arrow_reader(50_000)) == want  # ... while b spills too
    assert drain([head], first) == want
    a.disconnect()
    assert not spill_a.exists()
    assert drain(b.raw_sql(query).to_arrow_reader(50_000)) == want  # b spills again after a closed
    b.disconnect()
    assert not spill_b.exists()
    c, spill_c = opened()  # never disconnected: removed when the connection object goes
    assert drain(c.raw_sql(query).to_arrow_reader(50_000)) == want and spill_c.is_dir()
    del c
    gc.collect()
    assert not spill_c.exists()
    spill_c.mkdir()  # a forked child's exit (another pid) leaves the directory to its owner
    _remove_spill_directory(spill_c, os.getpid() + 1)
    assert spill_c.is_dir()
    _remove_spill_directory(spill_c, os.getpid())
    assert not spill_c.exists()


def test_one_id_reads_the_tables_in_slices_with_the_same_result(brand, monkeypatch):
    import features.identity as identity

    data = load_dataset(brand / "parquet")
    whole = identity.resolve_identities(data, as_of="2025-01-01").key_to_person
    monkeypatch.setattr(identity, "_CHUNK_ROWS", 997)  # many slices, none aligned with anything
    pd.testing.assert_frame_equal(identity.resolve_identities(data, as_of="2025-01-01").key_to_person, whole)
    plain = type(data)(**{name: _strings(df) for name, df in data.tables().items()})  # string keys: same links
    pd.testing.assert_frame_equal(identity.resolve_identities(plain, as_of="2025-01-01").key_to_person, whole)
