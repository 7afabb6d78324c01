"""Benchmark: point-in-time features for N customers (default 1M: ~10M orders, ~30M events).

Generates input once (the project simulator with ``--source simulate``, or a fast vectorised generator with
about 10 orders and 30 events per customer), writes it as Parquet, then in a fresh process loads the tables,
runs ``build_features`` and prints wall-clock seconds and the peak resident memory of that process (which
includes the loaded input tables).

    .venv/bin/python benchmarks/bench_features.py --customers 1000000
    .venv/bin/python benchmarks/bench_features.py --customers 1000000 --engine spark   # the same on Spark
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features import vocab  # noqa: E402 - after the path insert

CHANNELS = np.array(vocab.CHANNELS)
EVENT_TYPES = np.array(vocab.EVENT_TYPES)
EVENT_P = np.array([0.40, 0.12, 0.06, 0.10, 0.04, 0.02, 0.10, 0.04, 0.05, 0.02, 0.02, 0.03])


def generate(n_customers: int, *, seed: int, orders_per: float = 10.0, events_per: float = 30.0,
             start: str = "2023-01-01", end: str = "2025-12-31") -> dict[str, pd.DataFrame]:
    """Vectorised synthetic brand: people with 1–3 channel keys, orders, events, identities, campaign touches."""
    return _chunk(np.random.default_rng(seed), n_customers, 0, 0, 0, orders_per=orders_per, events_per=events_per,
                  start=start, end=end)


def generate_chunks(n_customers: int, *, seed: int, chunk_customers: int = 1_000_000, **kw):
    """``generate`` in blocks of ``chunk_customers`` people (yields one table dict per block).

    Ids continue across blocks (people, keys, orders), so the blocks together are one brand; the first block is
    ``generate(min(n, chunk), seed=seed)`` exactly, the others draw from their own streams ``(seed, block)``.
    A block's people, keys, orders and events stay inside it (campaign touches too), so memory is bounded by the
    block size, not by ``n_customers``.
    """
    person0 = key0 = order0 = 0
    for block, first in enumerate(range(0, n_customers, chunk_customers)):
        rng = np.random.default_rng(seed if block == 0 else [seed, block])
        n = min(chunk_customers, n_customers - first)
        tables = _chunk(rng, n, person0, key0, order0, **kw)
        person0, key0, order0 = person0 + n, key0 + len(tables["key_to_person"]), order0 + len(tables["orders"])
        yield tables


def write_generated(n_customers: int, data_dir: Path, *, seed: int, chunk_customers: int = 1_000_000) -> dict[str, int]:
    """``generate_chunks`` written block by block to ``data_dir/<table>.parquet`` (one file per table, one row
    group per block); returns the row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[str, pq.ParquetWriter] = {}
    rows: dict[str, int] = {}
    try:
        for tables in generate_chunks(n_customers, seed=seed, chunk_customers=chunk_customers):
            for name, df in tables.items():
                table = pa.Table.from_pandas(df, preserve_index=False)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(data_dir / f"{name}.parquet", table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
                rows[name] = rows.get(name, 0) + len(df)
            del tables, table
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _chunk(rng, n_customers: int, person0: int, key0: int, order0: int, *, orders_per: float = 10.0,
           events_per: float = 30.0, start: str = "2023-01-01", end: str = "2025-12-31") -> dict[str, pd.DataFrame]:
    """One block of people ``person0 ..`` with keys ``key0 ..`` and orders ``order0 ..``."""
    t0 = pd.Timestamp(start).value // 10**9
    span = pd.Timestamp(end).value // 10**9 + 86399 - t0
    # people and keys
    n_keys_pp = rng.choice([1, 2, 3], size=n_customers, p=[0.7, 0.22, 0.08])
    person_of_key = np.repeat(np.arange(n_customers), n_keys_pp)
    n_keys = len(person_of_key)
    key_names = pd.Series(np.char.add("k", np.arange(key0, key0 + n_keys).astype("U9")), dtype="str")
    person_names = np.char.add("p_", np.arange(person0, person0 + n_customers).astype("U9"))
    # per-person rate heterogeneity and activity span
    rate = rng.gamma(2.0, orders_per / 2.0, size=n_customers)
    birth = rng.integers(0, span, size=n_customers)
    # orders
    n_orders = rng.poisson(rate)
    o_person = np.repeat(np.arange(n_customers), n_orders)
    first_key = np.concatenate([[0], np.cumsum(n_keys_pp)[:-1]])
    o_key = first_key[o_person] + (rng.random(len(o_person)) * n_keys_pp[o_person]).astype(np.int64)
    life = span - birth[o_person]
    o_ts = t0 + birth[o_person] + (rng.random(len(o_person)) * life).astype(np.int64)
    n_o = len(o_person)
    orders = pd.DataFrame({
        "order_id": pd.Series(np.char.add("o", np.arange(order0, order0 + n_o).astype("U10")), dtype="str"),
        "customer_key": key_names.to_numpy()[o_key],
        "order_ts": pd.to_datetime(o_ts, unit="s"),
        "amount": np.round(rng.gamma(2.0, 60.0, size=n_o), 2),
        "channel": pd.Categorical.from_codes(rng.integers(0, 5, n_o), categories=CHANNELS).astype("str"),
        "status": pd.Categorical.from_codes(rng.choice(3, n_o, p=[0.95, 0.03, 0.02]),
                                            categories=["paid", "refunded", "cancelled"]).astype("str"),
        "discount": np.where(rng.random(n_o) < 0.3, np.round(rng.random(n_o) * 20, 2), 0.0),
        "item_count": rng.integers(1, 5, n_o),
        "category": pd.Categorical.from_codes(rng.integers(0, 12, n_o),
                                              categories=[f"cat{i}" for i in range(12)]).astype("str"),
    })
    orders["customer_key"] = orders["customer_key"].astype("str")
    # events
    n_events = rng.poisson(rate * events_per / orders_per)
    e_person = np.repeat(np.arange(n_customers), n_events)
    e_key = first_key[e_person] + (rng.random(len(e_person)) * n_keys_pp[e_person]).astype(np.int64)
    e_life = span - birth[e_person]
    e_ts = t0 + birth[e_person] + (rng.random(len(e_person)) * e_life).astype(np.int64)
    n_e = len(e_person)
    events = pd.DataFrame({
        "customer_key": pd.Series(key_names.to_numpy()[e_key], dtype="str"),
        "event_ts": pd.to_datetime(e_ts, unit="s"),
        "event_type": pd.Categorical.from_codes(rng.choice(len(EVENT_TYPES), n_e, p=EVENT_P),
                                                categories=EVENT_TYPES).astype("str"),
    })
    # identities and campaign touches
    identities = pd.DataFrame({
        "customer_key": key_names,
        "birth_year": rng.integers(1960, 2006, n_keys),
        "join_ts": pd.to_datetime(t0 + rng.integers(0, span, n_keys), unit="s"),
        "marketing_opt_out": rng.random(n_keys) < 0.05,
    })
    n_t = n_customers * 4
    t_key = rng.integers(0, n_keys, n_t)
    touches = pd.DataFrame({
        "campaign_id": pd.Series(np.char.add("cmp", rng.integers(0, 40, n_t).astype("U3")), dtype="str"),
        "customer_key": key_names.to_numpy()[t_key],
        "sent_ts": pd.to_datetime(t0 + rng.integers(0, span, n_t), unit="s"),
        "group": np.where(rng.random(n_t) < 0.8, "treatment", "control"),
    })
    touches["customer_key"] = touches["customer_key"].astype("str")
    key_map = pd.DataFrame({"customer_key": key_names, "person_id": person_names[person_of_key]})
    # a member card on 40% of the keys (drawn last, so the tables above do not depend on it): ``is_member``
    card = pd.Series(np.char.add("m", np.arange(key0, key0 + n_keys).astype("U9")), dtype="str")
    identities["member_card"] = card.where(rng.random(n_keys) < 0.4)
    return {"orders": orders, "events": events, "identities": identities, "campaign_touches": touches,
            "key_to_person": key_map}


def _simulated(n: int, seed: int) -> dict[str, pd.DataFrame]:
    """The project simulator's tables; the true key → person map stands in for One-ID (a perfect link)."""
    from features.simulate import simulate

    tables = simulate(n, seed=seed)
    out = {k: tables[k] for k in ("orders", "events", "identities", "campaign_touches")}
    out["identities"] = out["identities"].drop(columns=["phone", "unionid"], errors="ignore")
    keys = tables["truth_keys"]
    out["key_to_person"] = pd.DataFrame({"customer_key": keys["customer_key"],
                                         "person_id": "p_" + keys["true_person"].astype(str)})
    return out


def _measure(data_dir: Path, as_of: str, use_identity: bool) -> dict:
    """Run in a fresh process: load Parquet, build features, report time and peak RSS."""
    import pyarrow.parquet as pq
    from rich.console import Console

    from features.contract import SCHEMAS
    from features.dataset import Dataset
    from features.pipeline import build_features

    t = time.perf_counter()
    tables = {}
    for p in sorted(data_dir.glob("*.parquet")):  # the contract's compact dtypes: its categoricals as such
        names = set(pq.read_schema(p).names)
        cats = [c for c in SCHEMAS[p.stem].categorical if c in names] if p.stem in SCHEMAS else []
        tables[p.stem] = pd.read_parquet(p, read_dictionary=cats or None)
    load_s = time.perf_counter() - t
    key_map = tables.pop("key_to_person", None) if use_identity else None
    tables.pop("key_to_person", None)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    data = Dataset(**tables)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    t, cpu = time.perf_counter(), time.process_time()
    feats = build_features(data, as_of, identity=key_map, console=Console(stderr=True, quiet=True))
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "people": len(feats), "columns": feats.shape[1], "orders": len(data.orders),
        "events": 0 if data.events is None else len(data.events), "load_seconds": round(load_s, 1),
        "build_seconds": round(secs, 1), "build_cpu_seconds": round(cpu, 1), "peak_rss_gb": round(peak, 2), "rss_after_load_gb": round(rss_loaded, 2),
    }


def _measure_spark(data_dir: Path, as_of: str, use_identity: bool, keep: Path | None = None) -> dict:
    """Run in a fresh process: the snapshot on Spark (local[*]; Spark reads the Parquet files itself).

    Reports wall seconds per step and the peak RSS of the process tree, sampled every 0.5 s
    (``proc_memory.TreeMemory``): this Python driver, the Spark JVM (driver and executors in local mode; its exact
    high-water mark ``VmHWM`` too) and the Python workers (the PII-hashing pandas UDFs), and of their sum.
    ``keep``: write the snapshot there and keep it (else a temporary directory, removed).
    """
    import shutil

    from proc_memory import TreeMemory
    from rich.console import Console

    from features.spark import build_snapshot_spark, spark_session

    with TreeMemory() as mem:
        t0 = time.perf_counter()
        spark = spark_session()
        # the true key map, read by Spark (stays on the executors; One-ID on the driver is what runs without it)
        key_map = spark.read.parquet(str(data_dir / "key_to_person.parquet")) if use_identity else None
        conf = {k: spark.conf.get(k, None) for k in ("spark.master", "spark.driver.memory",
                                                      "spark.sql.shuffle.partitions", "spark.default.parallelism")}
        start_s = time.perf_counter() - t0
        out = keep if keep is not None else Path(tempfile.mkdtemp(prefix="bench_spark_snapshot_")) / "snapshot"
        t, cpu = time.perf_counter(), time.process_time()
        snap = build_snapshot_spark(data_dir, as_of, out_dir=out, spark=spark, identity=key_map,
                                    console=Console(stderr=True, quiet=True))
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        jvm_pid = spark.sparkContext._gateway.proc.pid
        jvm_hwm = next((int(line.split()[1]) for line in Path(f"/proc/{jvm_pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM")), 0) * 1024 / 1e9
    rows = snap.manifest["rows"]
    spark.stop()
    if keep is None:
        shutil.rmtree(out.parent, ignore_errors=True)
    return {"people": rows["people"], "orders_before_as_of": rows["orders_before_as_of"],
            "customer_keys": rows["customer_keys"], "columns": len(snap.manifest["features"]),
            "session_and_key_map_seconds": round(start_s, 1), "build_seconds": round(secs, 1),
            "driver_cpu_seconds": round(cpu, 1), "step_seconds": snap.seconds, "conf": conf,
            "peak_rss_gb": mem.peaks_gb(), "jvm_vmhwm_gb": round(jvm_hwm, 2), "samples": mem.samples}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000, help="number of people (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--as-of", default="2025-07-01", help="feature cut-off date")
    ap.add_argument("--source", choices=["auto", "simulate", "synthetic"], default="auto",
                    help="input generator: the project simulator, the built-in generator, or simulator if present")
    ap.add_argument("--data", type=Path, default=None, help="reuse/keep the generated Parquet in this directory")
    ap.add_argument("--no-identity", action="store_true",
                    help="do not pass the true key→person map (One-ID then runs inside build_features)")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                    help="duckdb: build_features in process; spark: the snapshot on Spark local[*] (needs the "
                    "spark extra and Java 17)")
    ap.add_argument("--chunk-customers", type=int, default=1_000_000,
                    help="synthetic source: generate and write this many people at a time (bounds the memory)")
    ap.add_argument("--keep-snapshot", type=Path, default=None,
                    help="--engine spark: write the snapshot here and keep it (for bench_spark_score.py --snapshot)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--generate-only", action="store_true", help="write the input to --data and stop")
    ap.add_argument("--_measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("SCRM_PII_KEY", "benchmark-key")  # the identities are hashed under it (Spark contract)

    if args._measure is not None:
        if args.engine == "spark":
            print(json.dumps(_measure_spark(args._measure, args.as_of, not args.no_identity, args.keep_snapshot)))
        else:
            print(json.dumps(_measure(args._measure, args.as_of, not args.no_identity)))
        return

    tmp = None
    data_dir = args.data
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_features_")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "orders.parquet").exists():
        source = args.source
        if source == "auto":
            try:
                import features.simulate  # noqa: F401

                source = "simulate" if hasattr(sys.modules["features.simulate"], "simulate") else "synthetic"
            except ImportError:
                source = "synthetic"
        t = time.perf_counter()
        if source == "simulate":
            tables = _simulated(args.customers, args.seed)
            for name, df in tables.items():
                df.to_parquet(data_dir / f"{name}.parquet", index=False)
            rows = {k: len(v) for k, v in tables.items()}
            del tables
        else:
            rows = write_generated(args.customers, data_dir, seed=args.seed, chunk_customers=args.chunk_customers)
        gen_s = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"generated input with {source} in {gen_s:.1f}s (peak RSS {peak:.2f} GB; load average "
              f"{os.getloadavg()[0]:.1f}): " + ", ".join(f"{k}={v:,}" for k, v in rows.items()), flush=True)
    if args.generate_only:
        return
    cmd = [sys.executable, __file__, "--_measure", str(data_dir), "--as-of", args.as_of, "--engine", args.engine]
    if args.keep_snapshot is not None:
        cmd += ["--keep-snapshot", str(args.keep_snapshot.resolve())]
    if args.no_identity:
        cmd.append("--no-identity")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]))
    load_before = os.getloadavg()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit(res.returncode)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r["load_average_before"] = [round(x, 2) for x in load_before]
    r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json is not None:
        args.json.write_text(json.dumps(r, indent=2))
    if args.engine == "spark":
        pk = r["peak_rss_gb"]
        print(f"people={r['people']:,} keys={r['customer_keys']:,} orders before as_of={r['orders_before_as_of']:,} "
              f"columns={r['columns']}; load average (1/5/15 min) before {r['load_average_before']}, after "
              f"{r['load_average_after']} on {os.cpu_count()} cores; Spark conf {r['conf']}")
        print(f"snapshot on Spark: {r['build_seconds']}s wall (driver CPU {r['driver_cpu_seconds']}s), session start "
              f"+ key map read {r['session_and_key_map_seconds']}s; steps (wall, driver CPU): {r['step_seconds']}")
        print(f"peak RSS (sampled every 0.5 s): Python driver {pk['python_driver']} GB, Spark JVM {pk['jvm']} GB "
              f"(VmHWM {r['jvm_vmhwm_gb']} GB), Python workers {pk['python_workers']} GB; whole tree {pk['total']} GB")
        if tmp is not None:
            tmp.cleanup()
        return
    print(f"people={r['people']:,} orders={r['orders']:,} events={r['events']:,} columns={r['columns']}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"load parquet: {r['load_seconds']}s (RSS after load {r['rss_after_load_gb']} GB)")
    for line in res.stderr.splitlines():
        if "stage seconds" in line:
            print(line)
    print(f"build_features: {r['build_seconds']}s wall, {r['build_cpu_seconds']}s CPU (all threads); peak RSS {r['peak_rss_gb']} GB  (targets: < 60 s, < 8 GB)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
