"""A large simulated brand in shards: K simulations of N customers, one data directory.

One simulation of 1M customers peaks at 9.3 GB (``bench_simulate.py``), so a 3M brand is not simulated in one
process on a 24 GB box. This script runs ``features.simulate.simulate(N, seed=SEED + k)`` for k = 0..K-1, each in
a fresh process, makes every id of shard k distinct from the other shards' (customer keys ``"<channel>:<k><hex>"``,
order ids ``"O<k>…"``, campaign ids ``"<k>-<id>"`` in events and touches, member cards ``"M<k>…"``, unionids
``"o<k>…"``) and appends the shard to one Parquet file per contract table (``orders.parquet``, ``events.parquet``,
``identities.parquet``, ``campaign_touches.parquet``; plus ``truth_keys.parquet`` with ``true_person`` offset by
``k * N``). Phone numbers are left as simulated: a few hundred people of different shards share a number (about
N² · K(K-1)/2 / 7e9) and One-ID links them, as reused numbers are linked in real data.

    python benchmarks/simulate_shards.py --customers 1000000 --shards 3 --seed 7 --out /tmp/sim3m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TABLES = ("orders", "events", "identities", "campaign_touches", "truth_keys")


def _prefix_after(arr: pa.ChunkedArray, sep: str, tag: str) -> pa.ChunkedArray:
    """``"a<sep>b"`` → ``"a<sep><tag>b"`` (nulls stay null)."""
    return pc.replace_substring(arr, sep, sep + tag, max_replacements=1)


def _shard(n: int, seed: int, k: int, out: Path) -> None:
    """Simulate one shard, make its ids distinct, write ``out/shard-k/NAME.parquet``."""
    from features.simulate import simulate

    tables = simulate(n, seed=seed)
    tag = str(k)
    d = out / f"shard-{k}"
    d.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        t = pa.Table.from_pandas(tables.pop(name), preserve_index=False)
        if "customer_key" in t.column_names:
            i = t.schema.get_field_index("customer_key")
            t = t.set_column(i, "customer_key", _prefix_after(t.column(i), ":", tag))
        if name == "orders":
            t = t.set_column(0, "order_id", _prefix_after(t.column("order_id"), "O", tag))
        if "campaign_id" in t.column_names:
            i = t.schema.get_field_index("campaign_id")
            t = t.set_column(i, "campaign_id", pc.binary_join_element_wise(
                pa.scalar(tag + "-", t.schema.field(i).type), t.column(i), pa.scalar("", t.schema.field(i).type)))
        if name == "identities":
            for col, head in (("member_card", "M"), ("unionid", "o")):
                if col in t.column_names:
                    i = t.schema.get_field_index(col)
                    t = t.set_column(i, col, _prefix_after(t.column(i), head, tag))
        if name == "truth_keys":
            i = t.schema.get_field_index("true_person")
            t = t.set_column(i, "true_person", pc.add(t.column(i), pa.scalar(k * n, pa.int64())))
        pq.write_table(t, d / f"{name}.parquet")
        del t


def _combine(out: Path, shards: int) -> dict[str, int]:
    """Append the shards' files into one Parquet file per table (row group by row group, low memory)."""
    rows = {}
    for name in TABLES:
        parts = [pq.ParquetFile(out / f"shard-{k}" / f"{name}.parquet") for k in range(shards)]
        schema = parts[0].schema_arrow
        tmp = out / f"{name}.parquet.tmp"
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                for g in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(g).cast(schema))
        tmp.replace(out / f"{name}.parquet")
        rows[name] = sum(p.metadata.num_rows for p in parts)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000, help="customers per shard")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7, help="shard k uses seed + k")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--_shard", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._shard is not None:
        _shard(args.customers, args.seed + args._shard, args._shard, args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for k in range(args.shards):
        if (args.out / f"shard-{k}" / "truth_keys.parquet").exists():
            continue
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--customers", str(args.customers), "--seed", str(args.seed),
               "--out", str(args.out), "--_shard", str(k)]
        subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        print(f"shard {k} (seed {args.seed + k}): {time.perf_counter() - t:.0f} s", flush=True)
    rows = _combine(args.out, args.shards)
    print(json.dumps({"customers": args.customers * args.shards, "rows": rows,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
