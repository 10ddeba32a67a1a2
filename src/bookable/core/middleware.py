"""Pure ASGI middleware (cheap on the hot path): request ids, rate-limit headers, body size,
text no parameter may hold, a complete 500 for an unexpected error, and one timing of each
request for the metrics and the JSON access line."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookable.core.errors import ORIGINAL_PATH_KEY
from bookable.core.logging import ACCESS_LOGGER
from bookable.core.metrics import (
    HTTP_DURATION,
    HTTP_IN_PROGRESS,
    HTTP_REQUESTS,
    method_label,
    route_label,
)
from bookable.core.ratelimit import HEADERS_STATE_KEY

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Control characters no path segment or parameter name holds; NUL and the rest no database can
# compare with or store usefully. Query values may hold TAB, LF and CR (a multi-line
# `cancellationReason`); logs escape those (core.logging).
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_CONTROL_IN_VALUE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Cheap test of the raw query string: only one with a percent-escaped (or raw) control character
# is parsed.
_QUERY_SUSPECT = re.compile(rb"%[01][0-9a-fA-F]|%7[fF]|[\x00-\x1f\x7f]")
UNEXPECTED_MESSAGE = "Unexpected error, please reach out to the server's operator."
log = logging.getLogger("bookable.errors")
access_log = logging.getLogger(ACCESS_LOGGER)


class BodyTooLarge(HTTPException):
    """Raised from the body stream. An HTTPException, because FastAPI's body parsing re-raises
    those but turns any other exception into a 400 "There was an error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large: the limit is {limit} bytes.")


def _escaped(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _refusal(problem: str, character: str) -> str:
    code = f"\\u{ord(character):04x}"
    return f"custom in '{_escaped(problem)}': must not contain control characters ({code})"


def refused_text(scope: Scope) -> str | None:
    """The 400 message for a path or query string holding a control character, else None.

    Names the query parameter, or the path parameter (found with the app's route patterns)."""
    query: bytes = scope.get("query_string", b"")
    if query and _QUERY_SUSPECT.search(query):
        for name, value in parse_qsl(
            query.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"
        ):
            found = _CONTROL.search(name) or _CONTROL_IN_VALUE.search(value)
            if found:
                return _refusal(name, found[0])
    path: str = scope.get("path", "")
    found = _CONTROL.search(path)
    if found is None:
        return None
    app = scope.get("app")
    index = getattr(getattr(app, "state", None), "allow_index", None) or []
    for pattern, _methods in index:
        match = pattern.match(path)
        if match:
            for name, value in match.groupdict().items():
                if _CONTROL.search(value):
                    return _refusal(name, found[0])
    return _refusal("path", found[0])


class EdgeMiddleware:
    """Gives every response a request id and the rate-limit headers, caps body size, and refuses
    control characters in the path and query string.

    A client-sent ``X-Request-ID`` is kept when it is sane, so callers can correlate logs.
    The control-character check comes before authentication: it reads only the request line,
    depends on no data, and so no code behind it (key lookup, rate limiting, routes, the
    database) ever meets a NUL; the API key itself may arrive in the query string.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, unversioned_exempt: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Paths served as they are; every other path is a v1 route called without its version.
        self.unversioned_exempt = ("/v1/", "/v2/", *unversioned_exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        content_length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _CLIENT_ID.match(candidate) else None
            elif name == b"content-length":
                content_length = value
        request_id = request_id or secrets.token_hex(12)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        limit = self.max_body_bytes

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["Calcom-Response-ID"] = request_id
                for key, value in (state.get(HEADERS_STATE_KEY) or {}).items():
                    headers[key] = value
            await send(message)

        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            await _send_json(413, BodyTooLarge(limit).detail, request_id, send)
            return
        refusal = refused_text(scope)
        if refusal is not None:
            await _send_json(400, refusal, request_id, send)
            return

        path: str = scope["path"]
        if path != "/v1" and not path.startswith(self.unversioned_exempt):
            # n8n and other clients call the v1 routes without the version (Cal.com rewrote
            # /<path> to /v1/<path>). Rewritten here, before routing, the app holds each route
            # once: half the routes to build and to walk. In place: the layers around this one
            # read what routing adds to this same scope.
            scope[ORIGINAL_PATH_KEY] = path
            scope["path"] = "/v1" + path
            raw_path = scope.get("raw_path")
            if raw_path is not None:
                scope["raw_path"] = b"/v1" + raw_path

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send_with_headers)


async def _send_json(status: int, message: str, request_id: str, send: Send) -> None:
    payload = json.dumps({"message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"calcom-response-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with a complete JSON 500 and returns normally.

    Starlette's ServerErrorMiddleware sends its 500 and then re-raises, and uvicorn closes a
    connection whose application raised, without `Connection: close`: the client's next request
    on that kept-alive connection then fails too. Installed innermost (inside CORS and the edge
    middleware), so the 500 carries their headers. The traceback goes to the log (redacted).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if started:
                raise  # part of a response is out: only closing the connection ends it cleanly
            log.exception(
                "unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=error
            )
            payload = json.dumps({"message": UNEXPECTED_MESSAGE}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})


class ObserveMiddleware:
    """Times each request once, for the HTTP metrics (``metrics``) and our access line
    (``access_log``, JSON logs), labelled by route template, never the raw path.

    Installed outermost: it sees the edge middleware's own answers (413, 400) and reads, after
    the app returned, the route the router matched (``scope["route"]``), the request id the
    edge middleware chose and the caller authentication found (``scope["state"]``)."""

    def __init__(self, app: ASGIApp, *, metrics: bool, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.metrics or self.access_log):
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raised before answering
        began = time.perf_counter()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if self.metrics:
            HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, observing_send)
        finally:
            elapsed = time.perf_counter() - began
            method, route = method_label(scope), route_label(scope)
            if self.metrics:
                HTTP_IN_PROGRESS.dec()
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_DURATION.labels(method, route).observe(elapsed)
            if self.access_log:
                _log_access(scope, method, route, status, elapsed)


def _log_access(scope: Scope, method: str, route: str, status: int, elapsed: float) -> None:
    state = scope.get("state") or {}
    caller = state.get("caller")
    access_log.info(
        "%s %s %s",
        method,
        route,
        status,
        extra={
            "request_id": state.get("request_id"),
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "user_id": getattr(caller, "user_id", None),
        },
    )
