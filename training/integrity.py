"""What keeps the model registry honest: one lock around every move of ``champion``, and artifact checksums.

- :func:`registry_lock` is an exclusive ``fcntl`` lock on a file next to the sqlite store
  (``<store>.registry.lock``; for a remote tracking server, a file under the user's cache directory keyed by the
  server's URI, which only serialises gates on the same machine). The promotion gate reads the champion,
  compares and moves the alias under it, so two gates finishing at the same instant cannot both read the old
  champion, and the champion history (a read-modify-write tag) never loses an entry.
- :func:`artifact_sha256` hashes a model's artifact directory (every file, by relative path); the registry tags
  each version with it at registration and :func:`training.registry.load_model` recomputes it on the downloaded
  files *before* anything is unpickled (a pickle runs code when it is loaded).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

#: Written by MLflow into a registry download (``models:/name/version``); not part of the logged model.
_NOT_HASHED = {"registered_model_meta"}


class ArtifactIntegrityError(LookupError):
    """A registered model's artifacts do not match the SHA-256 recorded when it was registered."""


def lock_path(uri: str) -> Path:
    """The lock file guarding registry moves for tracking URI ``uri``."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if str(db) and str(db) != ":memory:":
            return db.with_name(db.name + ".registry.lock")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scrm"
    return cache / f"registry-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"


@contextlib.contextmanager
def registry_lock(uri: str, *, timeout: float = 600.0) -> Iterator[Path]:
    """Hold the exclusive registry lock of ``uri`` for the block (waits up to ``timeout`` seconds).

    Raises
    ------
    TimeoutError
        Another process held the lock for longer than ``timeout`` (the message names the lock file).
    """
    import fcntl
    import time

    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"registry lock {path} held by another process for more than {timeout:.0f} s; if no "
                        "scrm command is running, delete the file"
                    ) from None
                time.sleep(0.05)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def artifact_sha256(directory: str | Path) -> str:
    """SHA-256 over every file of a model directory: relative path and content, in path order.

    The registry's own ``registered_model_meta`` (added by MLflow when a version is downloaded) is skipped,
    so the figure of a logged model and of its registered version agree.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"model artifacts {root} are not a directory")
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in _NOT_HASHED)
    for path in files:
        rel = path.relative_to(root).as_posix()
        file_digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(f"{rel}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()
