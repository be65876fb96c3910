"""Prometheus metrics of the query API (``GET /metrics``): what an operator graphs and alerts on beside the
driver's (docs/kubernetes.md, section 7). Requests and their latency per route *template* (``/objects/{oid}``,
never the object's id: one series per route, not per object) and status; requests in progress.

Each app has its own registry (tests create several apps in one process).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds): a page of objects takes milliseconds, a light curve tens, a cone over a big
#: database or a long upload seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: The route label of a request no route matched (a 404 for a made-up path): one series for all of them.
UNMATCHED = "<unmatched>"


class ApiMetrics:
    """The API's metrics, in a registry of their own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "alert_broker_api_requests_total",
            "API requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "alert_broker_api_request_seconds",
            "Time to answer a request",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "alert_broker_api_requests_in_progress", "Requests being answered", registry=r
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by the route that answered it (pure ASGI: streamed answers, the
    stamps and the explorer's files, are timed to their last byte)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}  # an exception before the answer started is a 500 to the client

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        t0 = time.perf_counter()
        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.in_progress.dec()
            self.metrics.observe(
                route_label(scope), scope.get("method", ""), status["code"], time.perf_counter() - t0
            )


def route_label(scope: Scope) -> str:
    """The route that answered: FastAPI's template (``/objects/{oid}``); a mounted folder's prefix
    (``/static/{path}``); a fixed Starlette route's path (``/openapi.json``); else ``UNMATCHED``."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return UNMATCHED
    if isinstance(endpoint, StaticFiles):
        return f"{scope.get('root_path', '')}/{{path}}"
    return scope.get("path", UNMATCHED)
