"""The one place request bodies are parsed from JSON: text no database can store is refused there.

Every resource router uses ``CheckedRoute``, so each route's JSON body goes through
``CheckedRequest.json``. A NUL character (PostgreSQL text cannot hold one) or a lone UTF-16
surrogate (``"\\ud800"``: valid JSON, but not encodable as UTF-8, so neither database nor any
response can carry it) anywhere in the body, in a key or a value, nested or not, is a 400 that
names the field path, before any model or service sees the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

# NUL and the surrogate block U+D800..U+DFFF (in a Python str only as lone surrogates).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_OR_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def escape_unstorable(text: str) -> str:
    """``text`` with NUL, other control characters and lone surrogates written as ``\\uXXXX``:
    always encodable, and unable to break a log line or a message."""
    return _UNSTORABLE_OR_CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def find_unstorable(value: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str] | None:
    """The path of the first string (key or value) holding NUL or a lone surrogate, and that
    character; None if every string is storable."""
    if isinstance(value, str):
        found = UNSTORABLE.search(value)
        return (path, found[0]) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = UNSTORABLE.search(key)
            if found:
                return (*path, escape_unstorable(key)), found[0]
            inner = find_unstorable(item, (*path, key))
            if inner:
                return inner
    elif isinstance(value, list):
        for index, item in enumerate(value):
            inner = find_unstorable(item, (*path, str(index)))
            if inner:
                return inner
    return None


class UnstorableText(HTTPException):
    """An HTTPException, because FastAPI's body parsing passes those on as they are (any other
    exception becomes "There was an error parsing the body")."""

    def __init__(self, path: tuple[str, ...], character: str) -> None:
        if character == "\x00":
            problem = "must not contain NUL characters"
        else:
            problem = f"must not contain lone UTF-16 surrogates (\\u{ord(character):04x})"
        field = ",".join(path)
        super().__init__(400, f"custom in '{field}': {problem}" if field else problem)


def check_storable(value: Any) -> None:
    found = find_unstorable(value)
    if found is not None:
        raise UnstorableText(*found)


class CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            parsed = json.loads(await self.body())
            check_storable(parsed)
            self._json = parsed
        return self._json


RouteHandler = Callable[[Request], Coroutine[Any, Any, Response]]


class CheckedRoute(APIRoute):
    """An APIRoute whose handler reads the body through ``CheckedRequest``.

    What a route class adds around FastAPI's handler is `wrap_handler`, so that the fast lane
    (`core/fastlane.py`) puts the very same wrappers around its own handler."""

    def get_route_handler(self) -> RouteHandler:
        return self.wrap_handler(super().get_route_handler())

    def wrap_handler(self, handler: RouteHandler) -> RouteHandler:
        async def checked_handler(request: Request) -> Response:
            return await handler(CheckedRequest(request.scope, request.receive))

        return checked_handler
