"""Compare two feature snapshots of any size with DuckDB: the engine-parity check of the tests, at scale.

The Spark/DuckDB parity tests (``tests/features/test_spark.py``) compare snapshots of a 2,000-customer brand in
pandas. This script makes the same comparison out of core, for snapshots of millions of people (a single Parquet
file or Spark's partitioned directory, read with ``read_parquet``): the same people (``person_id``), the same
columns, numbers equal within ``--rtol`` relative (NULL where the other is NULL), text and flags equal, and the
same customer key → person map in ``identity.parquet``. Prints one line per column that differs and a summary;
exits 1 when anything differs.

    .venv/bin/python benchmarks/compare_snapshots.py /tmp/snap5m /tmp/snap5m-spark
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb


def parquet_glob(snapshot: Path, name: str) -> str:
    """``name`` inside ``snapshot``: the single file, or every part of Spark's partitioned directory."""
    path = snapshot / name
    if not path.exists():
        raise SystemExit(f"{path}: not found (is {snapshot} a feature snapshot?)")
    return str(path / "*.parquet") if path.is_dir() else str(path)


def compare(a: Path, b: Path, *, rtol: float = 1e-9, memory_limit: str = "4GB") -> dict:
    """Per-column mismatch counts between snapshots ``a`` and ``b`` (0 everywhere when they are the same)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"CREATE VIEW fa AS SELECT * FROM read_parquet('{parquet_glob(a, 'features.parquet')}')")
    con.execute(f"CREATE VIEW fb AS SELECT * FROM read_parquet('{parquet_glob(b, 'features.parquet')}')")
    types_a = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE fa)").fetchall())
    types_b = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE fb)").fetchall())
    result: dict = {"columns_only_in_a": sorted(set(types_a) - set(types_b)),
                    "columns_only_in_b": sorted(set(types_b) - set(types_a))}
    rows = con.execute("""SELECT count(*) FILTER (WHERE fb.person_id IS NULL),
                                 count(*) FILTER (WHERE fa.person_id IS NULL),
                                 count(*) FILTER (WHERE fa.person_id IS NOT NULL AND fb.person_id IS NOT NULL)
                          FROM fa FULL OUTER JOIN fb USING (person_id)""").fetchone()
    result["people"] = {"only_in_a": rows[0], "only_in_b": rows[1], "in_both": rows[2]}

    numeric = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
               "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
    checks = []
    for col in (c for c in types_a if c in types_b and c != "person_id"):
        q = f'"{col}"'
        if types_a[col].startswith(numeric) and types_b[col].startswith(numeric):
            x, y = f"CAST(fa.{q} AS DOUBLE)", f"CAST(fb.{q} AS DOUBLE)"
            differs = (f"(({x} IS NULL) <> ({y} IS NULL)) OR (isnan({x}) <> isnan({y})) OR "
                       f"(NOT isnan({x}) AND abs({x} - {y}) > {rtol} * greatest(abs({x}), abs({y})))")
        else:  # text, flags, dates: exactly equal, NULL where the other is NULL
            differs = f"CAST(fa.{q} AS VARCHAR) IS DISTINCT FROM CAST(fb.{q} AS VARCHAR)"
        checks.append((col, f"count(*) FILTER (WHERE {differs})"))
    counts = con.execute(f"SELECT {', '.join(expr for _, expr in checks)} FROM fa JOIN fb USING (person_id)"
                         ).fetchone()
    result["column_mismatches"] = {col: n for (col, _), n in zip(checks, counts, strict=True) if n}
    result["columns_compared"] = len(checks)

    ia, ib = parquet_glob(a, "identity.parquet"), parquet_glob(b, "identity.parquet")
    keys = con.execute(f"""SELECT count(*) FILTER (WHERE x.customer_key IS NULL OR y.customer_key IS NULL),
                                  count(*) FILTER (WHERE x.person_id IS DISTINCT FROM y.person_id), count(*)
                           FROM read_parquet('{ia}') x FULL OUTER JOIN read_parquet('{ib}') y
                           USING (customer_key)""").fetchone()
    result["identity"] = {"keys_in_one_only": keys[0], "keys_mapped_differently": keys[1], "keys": keys[2]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="first snapshot directory (e.g. the DuckDB one)")
    parser.add_argument("b", type=Path, help="second snapshot directory (e.g. the Spark one)")
    parser.add_argument("--rtol", type=float, default=1e-9, help="relative tolerance for numbers (default 1e-9)")
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit (it spills beyond it)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    r = compare(args.a, args.b, rtol=args.rtol, memory_limit=args.memory_limit)
    people, ident = r["people"], r["identity"]
    print(f"people: {people['in_both']:,} in both, {people['only_in_a']:,} only in a, {people['only_in_b']:,} only in b")
    print(f"columns: {r['columns_compared']} compared; only in a {r['columns_only_in_a']}, "
          f"only in b {r['columns_only_in_b']}")
    for col, n in r["column_mismatches"].items():
        print(f"  {col}: {n:,} rows differ (rtol {args.rtol:g})")
    print(f"identity: {ident['keys']:,} keys, {ident['keys_in_one_only']:,} in one only, "
          f"{ident['keys_mapped_differently']:,} mapped to another person")
    same = (not r["columns_only_in_a"] and not r["columns_only_in_b"] and not r["column_mismatches"]
            and people["only_in_a"] == people["only_in_b"] == 0 and ident["keys_in_one_only"] == 0
            and ident["keys_mapped_differently"] == 0)
    print(("SAME" if same else "DIFFERENT") + f" ({time.perf_counter() - start:.1f} s)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
