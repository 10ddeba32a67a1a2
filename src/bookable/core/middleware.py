"""Pure ASGI middleware (cheap on the hot path): request ids, rate-limit headers, body size."""

from __future__ import annotations

import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookable.core.ratelimit import HEADERS_STATE_KEY

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLarge(HTTPException):
    """Raised from the body stream. An HTTPException, because FastAPI's body parsing re-raises
    those but turns any other exception into a 400 "There was an error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large: the limit is {limit} bytes.")


class EdgeMiddleware:
    """Gives every response a request id and the rate-limit headers, and caps body size.

    A client-sent ``X-Request-ID`` is kept when it is sane, so callers can correlate logs.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

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
            await _send_too_large(limit, request_id, send)
            return

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


async def _send_too_large(limit: int, request_id: str, send: Send) -> None:
    body = BodyTooLarge(limit).detail.encode()
    payload = b'{"message":"' + body + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"calcom-response-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
