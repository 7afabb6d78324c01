"""Published scoring states: what the nightly ``scrm refresh`` hands to the running service.

A publication is a directory ``DATA/published/<as_of>-<run>/`` holding everything the service answers from::

    manifest.json      as_of, run id, model versions, data fingerprint, drift status, file list
    snapshot/          a copy of the feature snapshot (features.parquet, identity.parquet, manifest.json)
    scores.parquet     the batch scores of everyone (training.scoring.score), with feature_as_of and versions
    drift.json/.html   the drift report of the run

``DATA/published/current`` is a relative symlink to the publication being served. It is switched by writing a
new symlink next to it and ``os.replace``-ing it over the old one (an atomic rename), after the publication
directory itself was completely written (under ``.staging-<run>``) and renamed into place: a reader sees the
old publication or the new one, never a half-written one. Nothing but :func:`switch_current` moves the pointer.

:func:`refresh_lock` serialises refreshes of one data directory (``flock``, released when the process dies);
:func:`refresh_running` lets the service see one is in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from features.pipeline import SNAPSHOT_FILES

PUBLISHED = "published"
CURRENT = "current"
MANIFEST = "manifest.json"
SCORES = "scores.parquet"
SNAPSHOT = "snapshot"
STAGING_PREFIX = ".staging-"
LOCK = ".refresh.lock"
#: Publications kept besides the current one (older ones are removed after a successful switch).
KEEP = 3


class RefreshBusyError(RuntimeError):
    """Another refresh of the same data directory is running."""


@dataclass(frozen=True)
class Publication:
    """One publication directory and its manifest."""

    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def as_of(self) -> date:
        return date.fromisoformat(self.manifest["as_of"])

    @property
    def model_versions(self) -> dict[str, str | None]:
        return dict(self.manifest.get("model_versions", {}))

    @property
    def drift_status(self) -> str | None:
        return self.manifest.get("drift_status")

    @property
    def snapshot_dir(self) -> Path:
        return self.path / SNAPSHOT

    @property
    def scores_path(self) -> Path:
        return self.path / SCORES


def published_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / PUBLISHED


def current_name(data_dir: str | Path) -> str | None:
    """The name of the publication ``current`` points at (one ``readlink``: cheap enough to poll), or None."""
    try:
        return os.readlink(published_root(data_dir) / CURRENT)
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_publication(path: Path) -> Publication:
    """A publication directory; ``FileNotFoundError``/``ValueError`` naming what is missing or unreadable."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"publication {path} has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest_path} is not valid JSON: {exc}") from None
    missing = [f for f in (SCORES, *(f"{SNAPSHOT}/{s}" for s in SNAPSHOT_FILES)) if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"publication {path} is incomplete: missing {', '.join(missing)}")
    return Publication(path, manifest)


def current_publication(data_dir: str | Path) -> Publication | None:
    """The publication being served (``DATA/published/current``), or None before the first refresh."""
    name = current_name(data_dir)
    if name is None:
        return None
    return read_publication(published_root(data_dir) / name)


def stage(data_dir: str | Path, run: str) -> Path:
    """A fresh, empty staging directory ``DATA/published/.staging-<run>/`` for a publication being built."""
    path = published_root(data_dir) / f"{STAGING_PREFIX}{run}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def discard(staging: Path) -> None:
    """Remove a staging directory (a failed run leaves nothing behind)."""
    shutil.rmtree(staging, ignore_errors=True)


def copy_snapshot(snapshot_dir: Path, staging: Path) -> Path:
    """Copy the feature snapshot files into the publication (a later rebuild of the snapshot cannot change it)."""
    out = staging / SNAPSHOT
    out.mkdir(exist_ok=True)
    for name in SNAPSHOT_FILES:
        src = Path(snapshot_dir) / name
        if src.is_dir():  # a Spark snapshot: Parquet parts in a directory
            shutil.copytree(src, out / name)
        else:
            shutil.copyfile(src, out / name)
    return out


def _fsync_tree(path: Path) -> None:
    for item in sorted(path.rglob("*")):
        if item.is_file():
            with open(item, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finalize(staging: Path, name: str, manifest: dict) -> Publication:
    """Write the manifest, flush the staging directory to disk and rename it to ``DATA/published/<name>``."""
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str),
                                    encoding="utf-8")
    _fsync_tree(staging)
    final = staging.parent / name
    if final.exists():
        raise FileExistsError(f"publication {final} already exists")
    os.rename(staging, final)
    _fsync_dir(final.parent)
    return read_publication(final)


def switch_current(data_dir: str | Path, name: str) -> None:
    """Point ``DATA/published/current`` at publication ``name`` with one atomic rename."""
    root = published_root(data_dir)
    if not (root / name / MANIFEST).exists():
        raise FileNotFoundError(f"no publication {root / name} to switch to")
    tmp = root / f".{CURRENT}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(name, tmp)
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)


def prune(data_dir: str | Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the newest ``keep`` publications other than the current one, and stale staging dirs.

    Only called by a refresh holding :func:`refresh_lock`, so no staging directory is in use.
    """
    root = published_root(data_dir)
    current = current_name(data_dir)
    removed: list[Path] = []
    for item in root.iterdir():
        if item.is_dir() and item.name.startswith(STAGING_PREFIX):
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
    pubs = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                   and p.name != current and (p / MANIFEST).exists()),
                  key=lambda p: p.stat().st_mtime)
    for old in pubs[: max(0, len(pubs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


@contextlib.contextmanager
def refresh_lock(data_dir: str | Path) -> Iterator[None]:
    """Hold the data directory's refresh lock; :class:`RefreshBusyError` when another refresh holds it."""
    root = published_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+") as fh:
        deadline = time.monotonic() + 2.0  # a service probing the lock holds it for microseconds
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RefreshBusyError(f"another refresh of {data_dir} is running (lock {root / LOCK})") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def refresh_running(data_dir: str | Path) -> bool:
    """True while a refresh of ``data_dir`` holds its lock (tested without waiting)."""
    path = published_root(data_dir) / LOCK
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


__all__ = ["CURRENT", "PUBLISHED", "Publication", "RefreshBusyError", "copy_snapshot", "current_name",
           "current_publication", "discard", "finalize", "prune", "published_root", "read_publication",
           "refresh_lock", "refresh_running", "stage", "switch_current"]
