"""Errors on the wire, shaped like Cal.com v1's.

Handler errors answer ``{"message": ...}``; the API-key checks answer ``{"error": ...}`` exactly as
Cal.com does. Validation problems are 400s whose message names each bad field in Cal.com's
``<code> in '<field>': <message>`` form.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

# The path a client sent without the version, kept in the scope after EdgeMiddleware rewrote it
# to /v1/...: messages quote what the client asked for.
ORIGINAL_PATH_KEY = "bookable.unversioned_path"
log = logging.getLogger("bookable.errors")

# The order Cal.com's handler maps list their methods in ("Allow: GET,POST").
_METHOD_ORDER = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_LOCATIONS = {"body", "query", "path", "header", "cookie"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with any lone surrogate written as ``\\udXXX``: a message that echoes client
    input must always encode as UTF-8 (else rendering the error would itself fail with a 500)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


class ApiError(Exception):
    """An error with a status and a message for the client. ``key`` is the JSON body key."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        key: str = "message",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.key = key
        self.headers = headers
        self.extra = extra or {}


class BadRequest(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class Unauthorized(ApiError):
    def __init__(self, message: str, *, key: str = "message") -> None:
        super().__init__(401, message, key=key)


class Forbidden(ApiError):
    def __init__(self, message: str = "Forbidden", *, key: str = "message") -> None:
        super().__init__(403, message, key=key)


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def _describe_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_EXPECTED = {
    "int": "number",
    "float": "number",
    "decimal": "number",
    "string": "string",
    "str": "string",
    "bool": "boolean",
    "dict": "object",
    "model": "object",
    "model_attributes": "object",
    "list": "array",
    "tuple": "array",
    "datetime": "date",
    "date": "date",
    "time": "time",
    "uuid": "uuid",
}


def _issue(error: dict[str, Any]) -> str:
    """Render one pydantic error the way Cal.com renders one zod issue."""
    kind: str = error.get("type", "")
    loc = [str(part) for part in error.get("loc", ())]
    # Query and path values are always text: zod's coercion reports them as "nan" when not numeric.
    from_url = bool(loc) and loc[0] in {"query", "path"}
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    # Union members add their type name to the location; the field is what the client knows.
    loc = [part for part in loc if not part.startswith(("function-", "is-instance["))]
    path = ",".join(loc)
    ctx = error.get("ctx") or {}
    given = error.get("input")

    if kind == "extra_forbidden":
        return f"Unrecognized key(s) in object: '{loc[-1] if loc else path}'"
    if kind == "missing":
        code, message = "invalid_type", "Required"
    elif kind == "json_invalid":
        return f"Invalid JSON body: {ctx.get('error', 'could not be parsed')}"
    elif kind.endswith(("_type", "_parsing")) and kind.split("_")[0] in _EXPECTED:
        expected = _EXPECTED[kind.split("_")[0]]
        received = "nan" if expected == "number" and from_url else _describe_type(given)
        code, message = "invalid_type", f"Expected {expected}, received {received}"
    elif kind in {"model_attributes_type", "dict_type", "model_type"}:
        code, message = "invalid_type", f"Expected object, received {_describe_type(given)}"
    elif kind in {"enum", "literal_error"}:
        expected = ctx.get("expected", "")
        code = "invalid_enum_value"
        message = f"Invalid enum value. Expected {expected}, received '{given}'"
    elif kind in {"string_too_short", "too_short"}:
        code = "too_small"
        message = f"String must contain at least {ctx.get('min_length')} character(s)"
        if kind == "too_short":
            message = f"Array must contain at least {ctx.get('min_length')} element(s)"
    elif kind in {"string_too_long", "too_long"}:
        code = "too_big"
        message = f"String must contain at most {ctx.get('max_length')} character(s)"
        if kind == "too_long":
            message = f"Array must contain at most {ctx.get('max_length')} element(s)"
    elif kind in {"greater_than_equal", "greater_than"}:
        bound = ctx.get("ge", ctx.get("gt"))
        code = "too_small"
        op = "greater than or equal to" if kind == "greater_than_equal" else "greater than"
        message = f"Number must be {op} {bound}"
    elif kind in {"less_than_equal", "less_than"}:
        bound = ctx.get("le", ctx.get("lt"))
        code = "too_big"
        op = "less than or equal to" if kind == "less_than_equal" else "less than"
        message = f"Number must be {op} {bound}"
    elif kind == "value_error" and "email" in str(error.get("msg", "")).lower():
        code, message = "invalid_string", "Invalid email"
    elif kind == "string_pattern_mismatch":
        code, message = "invalid_string", "Invalid"
    else:
        code = "custom"
        message = str(error.get("msg", "Invalid input")).removeprefix("Value error, ")
    return f"{code} in '{path}': {message}" if path else message


def format_validation_errors(errors: Iterable[dict[str, Any]]) -> str:
    seen: list[str] = []
    for error in errors:
        try:
            rendered = encodable(_issue(error))
        except Exception:  # a message about bad input must never itself become a 500
            log.warning("could not render validation error %r", error.get("type"))
            rendered = "Invalid input"
        if rendered not in seen:
            seen.append(rendered)
    return "; ".join(seen)


def error_response(
    status_code: int, message: str, *, key: str = "message", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({key: encodable(message)}, status_code=status_code, headers=headers)


AllowIndex = list[tuple[re.Pattern[str], frozenset[str]]]


def build_allow_index(routers: Iterable[APIRouter], prefixes: Iterable[str]) -> AllowIndex:
    """Path pattern -> methods, for the 405 message (FastAPI keeps one route per method set)."""
    index: AllowIndex = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                for prefix in prefixes:
                    pattern, _, _ = compile_path(prefix + route.path)
                    index.append((pattern, frozenset(route.methods)))
    return index


def _allowed_methods(request: Request) -> list[str]:
    index: AllowIndex = getattr(request.app.state, "allow_index", [])
    path = request.url.path
    methods = {m for pattern, route_methods in index if pattern.match(path) for m in route_methods}
    return [m for m in _METHOD_ORDER if m in methods]


async def _handle_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        {exc.key: encodable(exc.message), **exc.extra},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _handle_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return error_response(400, format_validation_errors(exc.errors()))


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        return error_response(
            405,
            f"Method Not Allowed (Allow: {','.join(allowed)})",
            headers={"Allow": ", ".join(allowed)},
        )
    if exc.status_code == 404:
        detail = exc.detail if exc.detail and exc.detail != "Not Found" else None
        path = request.scope.get(ORIGINAL_PATH_KEY) or request.url.path
        return error_response(404, detail or f"Not found: {request.method} {path}")
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _handle_integrity(_request: Request, exc: Exception) -> JSONResponse:
    # Services turn the conflicts they expect into precise messages; this is the safety net.
    log.warning("integrity error: %s", exc)
    return error_response(409, "The request conflicts with existing data.")


async def _handle_stale(_request: Request, exc: Exception) -> JSONResponse:
    # A row read by this request was deleted (or changed) by another one before this request's
    # UPDATE/DELETE reached it: the write matched nothing, and the transaction is rolled back.
    log.warning("stale row: %s", exc)
    return error_response(
        409, "The object was changed or deleted by another request meanwhile; nothing was written."
    )


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Unexpected error, please reach out to the server's operator.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(ValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(IntegrityError, _handle_integrity)
    app.add_exception_handler(StaleDataError, _handle_stale)
    app.add_exception_handler(Exception, _handle_unexpected)
