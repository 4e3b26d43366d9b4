"""Prometheus metrics of one app, in its own ``CollectorRegistry`` (not the global one, so several apps in one
process, as in the tests, do not collide), and the ASGI middleware that times every request.

- ``graphrouter_http_requests_total{method, route, status}`` and
  ``graphrouter_http_request_duration_seconds{method, route, status}``: ``route`` is the route's path template as in
  OpenAPI (``/v1/llms/{name}``), never the raw path, so names and ids do not explode the label set; requests that
  match no route are counted under ``<unmatched>`` (a request refused by a middleware, 413 or 429, under the route
  it was for);
- ``graphrouter_routing_decisions_total{candidate, kind}``: the top-1 candidate of every route answer;
- ``graphrouter_proxy_calls_total{candidate, result}``: upstream calls of the chat proxy by candidate and result
  (ok, failed: connection/timeout/5xx, upstream_4xx); never a URL, header or key;
- ``graphrouter_training_runs_total{result}``: background trainings by outcome (succeeded / failed);
- ``graphrouter_explorations_total{candidate, kind}`` and ``graphrouter_exploration_extra_cost_usd_total``: route
  answers whose first candidate is an exploration's pick, and their extra expected cost over the argmax (when
  positive);
- ``graphrouter_change_version`` (a gauge), ``graphrouter_change_resyncs_total`` and
  ``graphrouter_pending_expired_total``: this replica's follower of the store's change log (the last version it
  applied, its full resyncs, the proxied calls' pending outcomes it dropped for want of feedback), as ``/ready``
  shows them; absent while the service has no follower, the version also before it has read the log.

Several workers (``graphrouter serve --workers N``): each worker is a process with its own counters, so the server
gives them a shared directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode; api/server.py)
and :meth:`Metrics.render` sums every worker's counters and histograms, whichever worker answers the scrape. The
change-log follower's figures stay those of the worker that answers (each worker is a replica with its own).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
# The method label's values: any other token a client sends (HTTP lets it make one up) is counted as OTHER, so that
# made-up methods cannot grow the metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set (by api/server.py for workers) before prometheus_client is imported
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's metrics; :meth:`render` gives the Prometheus text format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "graphrouter_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "graphrouter_http_request_duration_seconds",
            "HTTP request latency (seconds) by method, route template and status code",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "graphrouter_routing_decisions",
            "route answers by their top-1 candidate",
            ["candidate", "kind"],
            registry=self.registry,
        )
        self.proxy_calls = Counter(
            "graphrouter_proxy_calls",
            "upstream calls of the chat proxy by candidate and result",
            ["candidate", "result"],
            registry=self.registry,
        )
        self.training_runs = Counter(
            "graphrouter_training_runs", "background trainings by result", ["result"], registry=self.registry
        )

        self.explorations = Counter(
            "graphrouter_explorations",
            "route answers whose first candidate was explored (not the argmax), by that candidate",
            ["candidate", "kind"],
            registry=self.registry,
        )
        self.exploration_cost = Counter(
            "graphrouter_exploration_extra_cost_usd",
            "extra expected cost (USD) of explored picks over the argmax, when positive",
            registry=self.registry,
        )

        self._follower: Any = None  # the change-log follower read at each scrape (set in the app's lifespan)
        self.registry.register(_FollowerCollector(self))

    def follow(self, follower: Any) -> None:
        """Read the change-log figures from ``follower`` (api/replication.py) from now on; None: stop (shutdown)."""
        self._follower = follower

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = {"method": method if method in METHODS else OTHER_METHOD, "route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)

    def decided(self, candidate: str, kind: str) -> None:
        self.decisions.labels(candidate=candidate, kind=kind).inc()

    def proxied(self, candidate: str, result: str) -> None:
        self.proxy_calls.labels(candidate=candidate, result=result).inc()

    def explored(self, candidate: str, kind: str, extra_usd: float) -> None:
        self.explorations.labels(candidate=candidate, kind=kind).inc()
        self.exploration_cost.inc(max(extra_usd, 0.0))

    def render(self) -> bytes:
        """This app's metrics; with several workers (:data:`MULTIPROC_DIR` set), every worker's counters summed."""
        shared = os.environ.get(MULTIPROC_DIR)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=shared)
        registry.register(_FollowerCollector(self))
        return generate_latest(registry)


class _FollowerCollector(Collector):
    """The change-log follower's figures, read at each scrape from whatever follower :class:`Metrics` follows."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        follower = self.metrics._follower
        if follower is None:
            return
        if follower.version is not None:
            yield GaugeMetricFamily(
                "graphrouter_change_version", "the last change-log version this replica applied", value=follower.version
            )
        yield CounterMetricFamily(
            "graphrouter_change_resyncs",
            "full resyncs from the store (the log was pruned past it)",
            value=follower.resyncs,
        )
        yield CounterMetricFamily(
            "graphrouter_pending_expired", "pending outcomes dropped for want of feedback", value=follower.expired
        )


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead on the routing path): times each HTTP request and counts it under
    its route template, which the router leaves in ``scope["route"]``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]  # if the app raises before answering, the server answers 500

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route") or _plain_route(scope)
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            self.metrics.observe(scope.get("method", "?"), template, status[0], time.perf_counter() - start)


def _plain_route(scope: Scope) -> Any:
    """The route matching a request that no route put in the scope: the app's own Starlette routes (``/docs``,
    ``/redoc``, ``/openapi.json``), and any route whose request an outer middleware answered before it ran (a 413 or
    a 429 is counted under its route's path); None when nothing matches (a 404)."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        if isinstance(route, Route) and route.matches(scope)[0] == Match.FULL:
            return route
    return None
