"""Prometheus metrics (the `prometheus-client` library) and GET /metrics.

The instruments are module globals, made at import. Under ``bookable serve --workers N`` each
process counts in its own files in ``PROMETHEUS_MULTIPROC_DIR`` (the library's multi-process
mode, chosen when it is imported: `bookable serve` sets the variable before the workers start),
and a scrape sums every process's files, so any worker answers for all of them. A
`bookable worker` given the same directory adds its delivery counters to the sum.

Labels are bounded: a route *template* (never the raw path, which holds ids and maybe a key),
a known method, a status code, a reason from a fixed set. No user id, key or email ever.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import Scope

from bookable.settings import Settings

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"  # the route label of a request no route matched (a 404)
ROUTER_PREFIXES = ("/v1",)  # what app.py includes routers under
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# An API answers in milliseconds; a booking with calendar checks may take seconds.
# No `_created` series beside each counter: they double the scrape, and Prometheus' own text
# format has no use for them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "bookable_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "bookable_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
# livesum: only live processes count (a dead worker's file is removed at the next scrape).
HTTP_IN_PROGRESS = Gauge(
    "bookable_http_requests_in_progress",
    "Requests being answered right now.",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "bookable_rate_limited_requests", "Requests refused with 429 by the per-user rate limit."
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/bookings/{id}``), else ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED
    # Newer FastAPI puts the included router's own route in the scope: `/me` for `/v1/me`.
    # The prefix it was served under comes back only from a fixed list (bounded labels).
    regex = getattr(route, "path_regex", None)
    path: str = scope.get("path", "")
    if regex is not None and not regex.match(path):
        for prefix in ROUTER_PREFIXES:
            if path.startswith(prefix) and regex.match(path[len(prefix) :]):
                return prefix + template
    return template


def method_label(scope: Scope) -> str:
    # A client may send any token as the method: unknown ones share one label.
    method: str = scope.get("method", "")
    return method if method in KNOWN_METHODS else "OTHER"


_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


def forget_dead_processes(directory: str) -> None:
    """Remove the live-gauge files of processes that are gone (a worker that crashed or was
    replaced), as the library asks of a process manager (`mark_process_dead`); their counters
    stay, so totals never go down."""
    for path in Path(directory).iterdir():
        match = _LIVE_FILE.match(path.name)
        if match is None:
            continue
        pid = int(match[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)
        except PermissionError:  # alive, under another user
            pass


class _Scrape:
    """What one scrape writes: the process's (or all processes') instruments, then the values
    computed for this scrape."""

    def __init__(self, base: Collector, extra: list[Metric]) -> None:
        self.base = base
        self.extra = extra

    def collect(self) -> Any:
        yield from self.base.collect()
        yield from self.extra


def exposition(extra: list[Metric]) -> bytes:
    """The text format of every instrument, summed over processes in multi-process mode."""
    directory = multiprocess_dir()
    base: Collector = REGISTRY
    if directory is not None:
        forget_dead_processes(directory)
        base = CollectorRegistry()
        MultiProcessCollector(base, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(_Scrape(base, extra))  # type: ignore[arg-type]


def token_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """GET /metrics when BOOKABLE_METRICS=on: no API key, no rate limit, not in the OpenAPI
    document; behind ``Authorization: Bearer <BOOKABLE_METRICS_TOKEN>`` when that is set."""
    if settings.metrics != "on":
        return
    from bookable.webhooks.metrics import outbox_metrics  # webhooks import core, not the reverse

    token = settings.metrics_token

    async def metrics(request: Request) -> Response:
        if token is not None and not token_matches(request.headers.get("authorization"), token):
            return JSONResponse(
                {"message": "GET /metrics needs Authorization: Bearer <BOOKABLE_METRICS_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        extra = await outbox_metrics(request.app.state.sessions)
        return Response(exposition(extra), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
