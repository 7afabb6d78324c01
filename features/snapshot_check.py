"""Checks of a feature snapshot directory before it is served: files present, Parquet readable, columns there.

A snapshot written by Spark holds ``features.parquet/`` and ``identity.parquet/`` as directories of Parquet
parts; the first part's footer is checked. Reads only the Parquet footers, so :func:`validate_snapshot` takes milliseconds at any size; ``scrm serve`` and
the service call it before loading a snapshot (``features.pipeline.load_snapshot``).
"""

from __future__ import annotations

from pathlib import Path

from features.pipeline import SNAPSHOT_FILES

#: Columns a served snapshot must have (the models check their own feature columns when they score).
REQUIRED_SNAPSHOT_COLUMNS = {
    "features.parquet": ("person_id", "orders", "tenure_days", "recency_days", "total_spend", "spend_365d"),
    "identity.parquet": ("customer_key", "person_id"),
}


class SnapshotError(ValueError):
    """A snapshot directory that cannot be used: a file is missing, unreadable or lacks a column."""


def validate_snapshot(path: Path) -> None:
    """Check a snapshot directory without loading it: every file exists, both Parquet files are readable
    (footer and schema) and carry :data:`REQUIRED_SNAPSHOT_COLUMNS`.

    Reads only the Parquet footers (milliseconds at any size). Raises :class:`SnapshotError` naming the file
    and the problem.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    missing = [f for f in SNAPSHOT_FILES if not (path / f).is_file() and not (f.endswith(".parquet") and _parts(path / f))]
    if missing:
        raise SnapshotError(f"snapshot {path} is incomplete: missing {', '.join(missing)}")
    for name, required in REQUIRED_SNAPSHOT_COLUMNS.items():
        try:
            file = path / name
            schema = pq.read_schema(_parts(file)[0] if file.is_dir() else file)
        except (OSError, pa.ArrowException) as exc:
            raise SnapshotError(f"snapshot file {path / name} is not readable Parquet ({exc})") from None
        absent = [c for c in required if c not in schema.names]
        if absent:
            raise SnapshotError(f"snapshot file {path / name} has no column(s) {', '.join(absent)}")


def _parts(path: Path) -> list[Path]:
    """The Parquet part files of a Spark-written ``*.parquet`` directory (empty when it is not one)."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.glob("*.parquet") if not p.name.startswith(("_", ".")))
