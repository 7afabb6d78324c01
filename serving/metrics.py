"""Prometheus metrics of the service: bounded labels and what marketing operations watch.

BentoML's traffic middleware labels ``request_total``, ``request_duration_seconds`` and ``request_in_progress``
with the raw request path, so every distinct path — even a 401 for ``/x/1``, ``/x/2``, … — adds series for ever
(15,000 paths made a 55 MB scrape). :func:`install_route_labels` makes it label by route instead: the service's
own routes and probes keep their path, static assets become ``/static_content/*`` and every other path becomes
``/{unknown}``. The real path still reaches the application (only the label changes).

:class:`ServedGauges` adds what the traffic counters do not say: the served snapshot's ``feature_as_of`` (as a
Unix timestamp and as an info-style series with the model versions), how many times a snapshot was loaded and
how hot reloads (a new publication or a moved ``champion``, :mod:`serving.reload`) went.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any

from serving.auth import PUBLIC_PATHS, PUBLIC_PREFIXES, ASGIApp, Receive, Scope, Send

UNKNOWN_ROUTE = "/{unknown}"
_RAW_PATH = "scrm.raw_path"


def route_label(path: str, routes: frozenset[str]) -> str:
    """The metrics label of ``path``: itself when it is a route or probe, else a fixed catch-all label."""
    if path in routes or path in PUBLIC_PATHS or path == "/metrics":
        return path
    for prefix in PUBLIC_PREFIXES:
        if path.startswith(prefix):
            return prefix + "*"
    return UNKNOWN_ROUTE


def _restore_path(app: ASGIApp) -> ASGIApp:
    async def restored(scope: Scope, receive: Receive, send: Send) -> None:
        if _RAW_PATH in scope:
            scope = {**scope, "path": scope[_RAW_PATH]}
            del scope[_RAW_PATH]
        await app(scope, receive, send)

    return restored


def install_route_labels(routes: Iterable[str]) -> None:
    """Make BentoML's traffic metrics label requests by route (see the module docstring); idempotent.

    Replaces ``RunnerTrafficMetricsMiddleware`` in ``bentoml._internal.server.http.instruments`` (BentoML 1.4
    looks it up there when it builds a worker's app, after importing the service module) with a subclass that
    hands it the route label as the path and gives the application the real one back.
    """
    from bentoml._internal.server.http import instruments

    known = frozenset(routes)
    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "scrm_routes", None) is not None:
        base.scrm_routes = base.scrm_routes | known
        return

    class RouteLabelledTrafficMetrics(base):  # type: ignore[misc, valid-type]
        scrm_routes: frozenset[str] = known

        def __init__(self, app: ASGIApp, *args: Any, **kwargs: Any) -> None:
            super().__init__(_restore_path(app), *args, **kwargs)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"].startswith("http"):
                scope = {**scope, "path": route_label(scope["path"], self.scrm_routes), _RAW_PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelledTrafficMetrics


class ServedGauges:
    """``scrm_feature_as_of_timestamp_seconds``, ``scrm_served_info``, ``scrm_snapshot_loads_total`` and
    ``scrm_reloads_total{outcome}`` (``ok``: a new state is served; ``failed``: the old one still is).

    Created in the worker (after BentoML has set up Prometheus' multiprocess directory) through BentoML's
    metrics client, so ``/metrics`` serves them next to the traffic counters. One instance per process.
    """

    _instance: ServedGauges | None = None

    def __init__(self) -> None:
        from bentoml._internal.container import BentoMLContainer

        client = BentoMLContainer.metrics_client.get()
        self.as_of = client.Gauge(name="scrm_feature_as_of_timestamp_seconds",
                                  documentation="feature_as_of of the served snapshot (midnight UTC, Unix seconds)",
                                  labelnames=[], multiprocess_mode="mostrecent")
        self.info = client.Gauge(name="scrm_served_info",
                                 documentation="1 for the snapshot date and champion versions being served",
                                 labelnames=["feature_as_of", "churn_version", "clv_version"],
                                 multiprocess_mode="livemax")
        self.loads = client.Counter(name="scrm_snapshot_loads_total",
                                    documentation="Snapshots loaded and scored (start-up and reloads)",
                                    labelnames=[])
        self.reloads = client.Counter(name="scrm_reloads_total",
                                      documentation="Hot reloads of the served state by outcome (ok, failed)",
                                      labelnames=["outcome"])
        self._served: tuple[str, str, str] | None = None

    @classmethod
    def get(cls) -> ServedGauges:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def loaded(self, as_of: date, versions: dict[str, Any]) -> None:
        """Record that the snapshot ``as_of`` is served with champion ``versions``."""
        self.as_of.set(datetime.combine(as_of, time(), tzinfo=UTC).timestamp())
        served = (as_of.isoformat(), str(versions.get("churn")), str(versions.get("clv")))
        if self._served is not None and self._served != served:
            self.info.labels(*self._served).set(0)
        self.info.labels(*served).set(1)
        self._served = served
        self.loads.inc()

    def reloaded(self, ok: bool) -> None:
        """Count one hot reload (``ok=False``: it failed and the previous state is still served)."""
        self.reloads.labels("ok" if ok else "failed").inc()
