"""Hot reload: the service follows ``DATA/published/current`` and the ``champion`` aliases without a restart.

What the service serves is a :class:`Source`: the publication ``current`` points at (``None`` before the first
``scrm refresh``: then the newest snapshot under ``DATA/features``) and the champion versions. :func:`build_state`
turns a source into a :class:`~serving.state.ServingState`:

- a publication whose model versions are today's champions: its snapshot copy and its published batch scores are
  read (no scoring: start-up at 1M people is reading Parquet and indexing);
- a publication made with other versions (``scrm promote``/``rollback`` since): its snapshot, scored again with the
  champions (what the service did at every start before publications existed);
- no publication: the newest snapshot, scored with the champions.

:class:`Reloader` checks the source every ``SCRM_RELOAD_SECONDS`` (default 30; ``0`` turns polling off; a check is
one ``readlink`` and one registry query) and on ``POST /admin/reload``. When it changed it builds the new state
completely, in its own thread, while requests keep reading the old one, then hands it to ``install`` (the service
replaces one attribute; a request holds the state it started with until it answers). A failed build leaves the
old state served and is counted. While a refresh holds its lock (:func:`training.publish.refresh_running`), a
champion move alone is not followed: the refresh's gate may have moved it and its publication comes next (or,
if the refresh fails, the alias is moved back).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.auth import positive_env
from serving.state import ServingSetupError, ServingState, find_snapshot, serving_brand

log = logging.getLogger("bentoml.scrm")

RELOAD_ENV = "SCRM_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 30.0
MODELS = ("churn", "clv")


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    After a swap the old state's frames are freed, but glibc (and Arrow's allocator, which the Parquet reads use)
    keep the pages, so without a release the resident size stays near the two-states peak of the reload.
    """
    import ctypes
    import ctypes.util
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()  # Parquet reads go through Arrow's own allocator
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        return


def reload_seconds_from_env() -> float:
    """``SCRM_RELOAD_SECONDS``: seconds between checks (default 30; 0 = no polling, only ``/admin/reload``)."""
    return positive_env(RELOAD_ENV, DEFAULT_RELOAD_SECONDS, float, zero="turns polling off")


@dataclass(frozen=True)
class Source:
    """What a state is built from: the publication (name under ``DATA/published``, or None) and the champions."""

    publication: str | None
    champions: tuple[tuple[str, str | None], ...]

    @property
    def versions(self) -> dict[str, str | None]:
        return dict(self.champions)

    def describe(self) -> str:
        versions = ", ".join(f"{k} v{v}" for k, v in self.champions)
        return f"{self.publication or 'newest snapshot (no publication)'} with {versions}"


def current_source(data_dir: str | Path, brand: str | None = None) -> Source:
    """The source the service should serve now (cheap: a ``readlink`` and the brand's two champion aliases)."""
    from training import registry
    from training.publish import current_name

    brand = brand or serving_brand(data_dir)
    champions = tuple((kind, None if (v := registry.champion_version(registry.model_name(brand, kind))) is None
                       else str(v)) for kind in MODELS)
    return Source(current_name(data_dir), champions)


def _models(source: Source, data_dir: Path, as_of, brand: str):
    from training.scoring import load_champions

    missing = [name for name, v in source.champions if v is None]
    if missing:
        raise ServingSetupError(f"no champion version of {', '.join(missing)}; create them with "
                                f"`scrm train all --data {data_dir} --as-of {as_of}` or `scrm refresh --data {data_dir}`")
    try:
        models = load_champions("champion", brand=brand, as_of=as_of, data_hint=str(data_dir))
    except LookupError as exc:
        raise ServingSetupError(str(exc)) from None
    if models.versions != source.versions:  # an alias moved between the check and the load: the next poll
        log.info("champions moved while loading (%s → %s)", source.versions, models.versions)
    return models


def _published_snapshot(pub):
    import pyarrow as pa

    from features.pii import PIIKeyError, check_pii_fingerprint
    from features.pipeline import load_snapshot
    from features.snapshot_check import SnapshotError, validate_snapshot

    try:
        validate_snapshot(pub.snapshot_dir)
        snapshot = load_snapshot(pub.snapshot_dir)
        check_pii_fingerprint(snapshot.manifest)
    except (SnapshotError, PIIKeyError, OSError, ValueError, pa.ArrowException) as exc:
        raise ServingSetupError(f"publication {pub.path} cannot be served ({exc}); publish again with "
                                f"`scrm refresh --data {pub.path.parent.parent} --force`") from None
    return snapshot


def build_state(data_dir: str | Path, source: Source, *, models=None, brand: str | None = None) -> ServingState:
    """A complete :class:`ServingState` for ``source`` (see the module docstring); ``ServingSetupError`` if not.

    ``models`` (``training.scoring.Models``) are used instead of loading the champions again when their versions
    are the source's (a new publication with the same champions).
    """
    import pandas as pd

    from training.publish import published_root, read_publication

    data_dir = Path(data_dir)
    brand = brand or serving_brand(data_dir)
    if source.publication is None:
        snapshot = find_snapshot(data_dir)
        if models is None or models.versions != source.versions:
            models = _models(source, data_dir, snapshot.as_of, brand)
        return ServingState(models, snapshot, data_dir=data_dir)
    try:
        pub = read_publication(published_root(data_dir) / source.publication)
    except (OSError, ValueError) as exc:
        raise ServingSetupError(f"{exc}; publish again with `scrm refresh --data {data_dir} --force`") from None
    snapshot = _published_snapshot(pub)
    if models is None or models.versions != source.versions:
        models = _models(source, data_dir, pub.as_of, brand)
    if {k: (None if v is None else str(v)) for k, v in pub.model_versions.items()} == source.versions:
        scores = pd.read_parquet(pub.scores_path)
        return ServingState(models, snapshot, data_dir=data_dir, scores=scores, publication=pub.name)
    log.info("publication %s was scored with %s; the champions are now %s: scoring its snapshot again",
             pub.name, pub.model_versions, source.versions)
    return ServingState(models, snapshot, data_dir=data_dir, publication=pub.name)


class Reloader:
    """Builds the state of the current source and swaps it in when the source changes (see the module docstring).

    Parameters
    ----------
    data_dir : Path
        The served data directory.
    install : callable
        ``install(state, source)``: make ``state`` the served one (one reference assignment).
    interval : float, optional
        Seconds between checks; default :func:`reload_seconds_from_env`; 0: no polling.
    on_reload : callable, optional
        ``on_reload(ok)`` after each attempted reload (metrics).
    brand : str, optional
        Whose champions to serve (default: ``serving.state.serving_brand``).
    """

    def __init__(self, data_dir: str | Path, install: Callable[[ServingState, Source], None], *,
                 interval: float | None = None, on_reload: Callable[[bool], None] | None = None,
                 brand: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.brand = brand or serving_brand(self.data_dir)
        self.install = install
        self.interval = reload_seconds_from_env() if interval is None else interval
        self.on_reload = on_reload or (lambda ok: None)
        self.served: Source | None = None
        self._models = None  # the served models, reused by a reload to the same champion versions
        self.last_error: str | None = None
        self.reloads = 0
        self._lock = threading.Lock()  # one build at a time (poller and /admin/reload)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, source: Source | None = None) -> ServingState:
        """Build and install the state of ``source`` (default: the current one); the first load of the service."""
        with self._lock:
            source = source or current_source(self.data_dir, self.brand)
            state = build_state(self.data_dir, source, brand=self.brand)
            self.install(state, source)
            self.served, self._models = source, state.models
            return state

    def check(self, *, force: bool = False) -> dict:
        """Reload when the source changed (or ``force``); returns what happened (``reloaded``, ``reason``, ...).

        Raises ``ServingSetupError`` (or whatever building failed with) when the new state cannot be built; the
        previous state stays served.
        """
        with self._lock:
            source = current_source(self.data_dir, self.brand)
            served = self.served
            if not force and source == served:
                return {"reloaded": False, "reason": "unchanged", "source": source.describe()}
            if (not force and served is not None and source.publication == served.publication
                    and self._refresh_running()):
                return {"reloaded": False, "reason": "champion moved while a refresh runs: waiting for its "
                                                     "publication", "source": served.describe()}
            started = time.perf_counter()
            switch = sys.getswitchinterval()
            sys.setswitchinterval(min(switch, 0.001))  # the build is Python-heavy: let requests in more often
            try:
                state = build_state(self.data_dir, source, models=self._models, brand=self.brand)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.on_reload(False)
                log.error("reload to %s failed; still serving %s: %s", source.describe(),
                          served.describe() if served else "nothing", self.last_error)
                raise
            finally:
                sys.setswitchinterval(switch)
            self.install(state, source)
            self.served, self.last_error, self._models = source, None, state.models
            self.reloads += 1
            self.on_reload(True)
            seconds = time.perf_counter() - started
            log.info("reloaded in %.1f s: now serving %s (was %s)", seconds, source.describe(),
                     served.describe() if served else "nothing")
            return {"reloaded": True, "reason": "forced" if force and source == served else "source changed",
                    "source": source.describe(), "seconds": round(seconds, 3)}

    def _refresh_running(self) -> bool:
        from training.publish import refresh_running

        return refresh_running(self.data_dir)

    def start(self) -> None:
        """Poll every ``interval`` seconds in a daemon thread (no-op when the interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="scrm-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - logged and counted in check(); the old state keeps serving
                continue


__all__ = ["RELOAD_ENV", "Reloader", "Source", "build_state", "current_source", "release_memory",
           "reload_seconds_from_env"]
