"""The benchmark brand generator (benchmarks/bench_features.py) written in blocks: one brand, ids unique across
blocks, the first block the unchunked generator's output, memory bounded by the block."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_features", ROOT / "benchmarks" / "bench_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chunked_generator_writes_one_consistent_brand(tmp_path):
    bench = _bench()
    rows = bench.write_generated(2_500, tmp_path, seed=3, chunk_customers=1_000)  # blocks of 1,000, 1,000, 500
    t = {name: pd.read_parquet(tmp_path / f"{name}.parquet") for name in rows}
    assert {k: len(v) for k, v in t.items()} == rows
    keys = t["key_to_person"]
    assert keys["customer_key"].is_unique and keys["person_id"].nunique() == 2_500
    assert t["orders"]["order_id"].is_unique
    for name in ("orders", "events", "identities", "campaign_touches"):
        assert t[name]["customer_key"].isin(keys["customer_key"]).all(), name
    # the first block is generate() of its size with the same seed; the next blocks are new people, not copies
    first = bench.generate(1_000, seed=3)
    n = len(first["orders"])
    pd.testing.assert_frame_equal(t["orders"].iloc[:n].reset_index(drop=True), first["orders"], check_dtype=False)
    later = t["orders"].iloc[n:]
    assert not later["customer_key"].isin(first["key_to_person"]["customer_key"]).any()
    assert len(later) > 0


def test_tree_memory_counts_the_jvm_once_and_python_workers_apart():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from proc_memory import tree_part

    assert tree_part("java", "bash") == "jvm"  # the JVM spark-submit started
    assert tree_part("java", "java") is None  # a fork of the JVM before its exec: the JVM's pages again
    assert tree_part("process reaper", "java") is None  # the same, named after the forking Java thread
    assert tree_part("python3", "java") == "python_workers"  # pyspark.daemon
    assert tree_part("python3", "python3") == "python_workers"  # a forked worker
    assert tree_part("bash", "python3") is None and tree_part("chmod", "java") is None
