"""The backend side of a feature run: the DuckDB connection, input tables and the key-map helpers.

Shared by ``features.pipeline`` (features), ``features.rfm`` (the BTYD summary) and ``features.labels`` (labels),
below all three so none imports another for them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
import weakref
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import ibis
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir


@ibis.udf.scalar.builtin
def sha1(value: str) -> str:  # pragma: no cover - executed by the backend
    """SHA-1 hex digest (built into DuckDB and Spark)."""


def own_person_id(key: ir.StringValue) -> ir.StringValue:
    """``"p_" + sha1(customer_key)[:12]``: the person id of a key linked to no other key."""
    return ibis.literal("p_") + sha1(key).substr(0, 12)


def require(df: pd.DataFrame, cols: list[str], name: str) -> None:
    """``ValueError`` naming the table and the columns of ``cols`` that ``df`` lacks."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; has {list(df.columns)}")


def input_table(df: pd.DataFrame, cols: list[str], inputs: Inputs | None = None) -> ir.Table:
    """An Ibis table over the columns a query needs (customer keys as strings), via Arrow (no copy)."""
    present = [c for c in cols if c in df.columns]
    table = pa.Table.from_pandas(df, columns=present, preserve_index=False)
    key_type = table.schema.field("customer_key").type if "customer_key" in present else None
    if key_type is not None and pa.types.is_dictionary(key_type) and _is_text(key_type.value_type):
        pass  # a categorical of string keys (the contract's events): the backend reads the dictionary as strings
    elif key_type is not None and not _is_text(key_type):
        i = table.schema.get_field_index("customer_key")
        table = table.set_column(i, "customer_key", pa.array(df["customer_key"].astype(str), type=pa.string()))
    return inputs.table(table) if inputs is not None else ibis.memtable(table)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class Inputs:
    """Input tables of one run, registered with the backend.

    On DuckDB an Arrow table is registered as a scan (``register``), which reads it about twice as fast as an
    Ibis in-memory table (scanned through a ``pyarrow.dataset``); other backends get ``ibis.memtable``.
    """

    def __init__(self, con) -> None:
        self.con = con
        self.names: list[str] = []

    def table(self, table: pa.Table) -> ir.Table:
        raw = getattr(self.con, "con", None)
        if getattr(self.con, "name", "") != "duckdb" or not hasattr(raw, "register"):
            return ibis.memtable(table)
        name = f"_scrm_input_{uuid.uuid4().hex[:12]}"
        raw.register(name, table)
        self.names.append(name)
        return self.con.table(name)

    def close(self) -> None:
        for name in self.names:
            try:
                self.con.con.unregister(name)
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass
        self.names.clear()


def check_identity(identity: pd.DataFrame) -> pd.DataFrame:
    """The ``customer_key``/``person_id`` columns of a key map, one row per key (error if a key has two persons)."""
    require(identity, ["customer_key", "person_id"], "identity")
    ident = identity[["customer_key", "person_id"]]
    dup = ident["customer_key"].duplicated(keep=False)
    if dup.any():
        bad = ident.loc[dup].drop_duplicates()
        if bad["customer_key"].duplicated().any():
            keys = bad.loc[bad["customer_key"].duplicated(), "customer_key"].head(5).tolist()
            raise ValueError(f"identity maps some customer_key to several person_id values, e.g. {keys}")
        ident = ident.drop_duplicates("customer_key")
    return ident


def map_keys(keys: list[ir.Table], given: ir.Table | None) -> ir.Table:
    """``customer_key`` → ``person_id``: the given One-ID map plus every other key of ``keys`` as its own person."""
    all_keys = keys[0].union(*keys[1:], distinct=True) if len(keys) > 1 else keys[0].distinct()
    if given is None:
        return all_keys.select("customer_key", person_id=own_person_id(all_keys.customer_key))
    missing = all_keys.anti_join(given, "customer_key")
    own = missing.select("customer_key", person_id=own_person_id(missing.customer_key))
    return given.select("customer_key", "person_id").union(own)


def as_date(value) -> date:
    """Accept a ``date``, a ``datetime``/``Timestamp`` or an ISO ``YYYY-MM-DD`` string."""
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, pd.Timestamp | datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"as_of must be a date or YYYY-MM-DD string, got {value!r}")


#: DuckDB's memory limit for a feature run (e.g. ``8GB``); default: :func:`duckdb_memory_limit`.
DUCKDB_MEMORY_ENV = "SCRM_DUCKDB_MEMORY_LIMIT"
#: Share of the memory available when a run starts that DuckDB may use before it spills to disk.
DUCKDB_MEMORY_SHARE = 0.6


def machine_memory_bytes() -> int:
    """Physical memory of this machine (or the cgroup limit of this container, when lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()  # noqa: SIM115 - one short read
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def available_memory_bytes() -> int | None:
    """Memory the kernel says is available now (``MemAvailable``), ``None`` where it does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def duckdb_memory_limit() -> str | None:
    """DuckDB's memory limit for one run: ``$SCRM_DUCKDB_MEMORY_LIMIT``, else 60% of the memory available now.

    The input tables are pandas/Arrow memory DuckDB scans in place and does not count, so its own default (80%
    of the machine) could, on a large brand, add that much on top of them. Past the limit DuckDB spills its
    intermediate tables to a temporary directory (:func:`connect`) instead of growing; a small brand never
    reaches it. ``None`` (DuckDB's default) when the available memory is unknown.
    """
    env = os.environ.get(DUCKDB_MEMORY_ENV, "").strip()
    if env:
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", env, flags=re.IGNORECASE):
            raise ValueError(f"{DUCKDB_MEMORY_ENV}={env!r}: expected a size such as 8GB or 512MB")
        return env
    available = available_memory_bytes()
    return None if available is None else f"{max(256, int(available * DUCKDB_MEMORY_SHARE) >> 20)}MB"


def spill_directory() -> Path:
    """A spill directory of its own for one connection: ``scrm-duckdb-<pid>-<random>`` in the system's temporary
    directory. DuckDB names its spill files the same in every database (``duckdb_temp_storage_*.tmp``), so two
    connections of one process spilling into one directory overwrite each other's files, and the one that created
    it deletes it, the other's files included, when it closes."""
    return Path(tempfile.gettempdir()) / f"scrm-duckdb-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_spill_directory(path: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked child exiting leaves its parent's directory alone
        shutil.rmtree(path, ignore_errors=True)


def connect():
    """A fresh in-process DuckDB connection for one feature run (no progress bar, order-free inserts, a memory
    limit with spilling to a temporary directory of its own: :func:`duckdb_memory_limit`, :func:`spill_directory`).

    The spill directory is removed when the connection is done: DuckDB deletes the one it created when the
    connection closes (``disconnect()``), and a finalizer removes it when the connection object is collected or
    the process exits (atexit) without that. Other connections, which spill elsewhere, are not affected.
    """
    con = ibis.duckdb.connect()
    limit = duckdb_memory_limit()
    if limit is not None:
        con.raw_sql(f"SET memory_limit = '{limit}'")
    spill = spill_directory()
    con.raw_sql(f"SET temp_directory = '{spill}'")
    weakref.finalize(con, _remove_spill_directory, spill, os.getpid())
    try:
        con.raw_sql("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses to touch the setting (and draws no bar anyway)
    con.raw_sql("SET preserve_insertion_order = false")
    # Arrow inputs carry no statistics, so DuckDB may build join hash tables on the big side (e.g. 10M orders
    # with their payload instead of the key map): keep the written order, big table on the left.
    con.raw_sql("SET disabled_optimizers = 'build_side_probe_side'")
    return con


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move ``tmp`` to ``out_dir`` (an existing snapshot there is replaced only once the new one is complete)."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
