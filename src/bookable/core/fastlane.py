"""A fast lane for hot routes: the same answer as FastAPI's, without its per-request machinery.

FastAPI spends ~70 µs on a request before and after a cheap endpoint such as ``GET /v1/me``
(a cache hit and a memoised body): walking its routes, solving the dependencies, wrapping the
request and the response. ``FastLane`` is a pure-ASGI layer, innermost of the middleware (inside
CORS, the edge middleware and the unexpected-error one, so everything those add stays as it is),
that looks the request up in an exact ``(method, path)`` table and, on a hit, does what FastAPI
would do for that route and nothing more:

1. put in the scope what routing puts there (``route``, ``endpoint``, ``path_params``): the
   metrics, the access line and the strict URL check read them;
2. the lane's handler (`endpoint_lane`), inside the route class's own wrappers (the checked
   JSON body, ``Idempotency-Key``, the booking counters): the body read and parsed as FastAPI
   reads it, ``authenticate(request)`` (the very dependency the v1 routes take: key, rate
   limit, URL check), the route's dependencies, the request's session when it takes one
   (`core.db.request_session`, committed before the answer is sent), the query, header and
   body parameters validated by FastAPI's own functions, the route's own endpoint, and its
   result serialized as FastAPI serializes it (``GET /v1/me``, ``GET /v1/slots``,
   ``POST /v1/bookings``);
3. an exception goes to the handler the app registered for its type (``ApiError`` -> its JSON
   error), exactly as Starlette's ExceptionMiddleware would; anything unhandled propagates to
   ``UnexpectedErrorMiddleware``, as it does from the router.

Every other request (another method, a trailing slash, a path not in the table, a mounted root
path, FastAPI telemetry on, dependency overrides set) goes down the full stack untouched, before
anything is spent. The FastAPI route stays: it is the OpenAPI entry and the answer for all of
those.
``tests/api/test_fast_lane.py`` sends the same requests through both and compares the bytes.
"""

from __future__ import annotations

import contextlib
import email.message
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastapi.routing as fastapi_routing
from fastapi import Request, Response, params
from fastapi._compat import ModelField, Undefined
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, serialize_response
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Receive, Scope, Send

from bookable.core.auth import authenticate
from bookable.core.db import request_session

LaneHandler = Callable[[Request], Awaitable[Response]]
ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]]
_open_request_session = contextlib.asynccontextmanager(request_session)


@dataclass(frozen=True, slots=True)
class Lane:
    """One hot route: the FastAPI route it stands for, and the handler that answers for it."""

    route: APIRoute
    handler: LaneHandler


QueryReader = Callable[[QueryParams], tuple[dict[str, Any], list[Any]]]


def query_reader(fields: Sequence[ModelField]) -> QueryReader:
    """FastAPI's `request_params_to_args` for query ``fields``, the same values and errors,
    without its per-field machinery (~7 µs a field, 74 µs for GET /slots' ten) where its
    outcome is known: an optional parameter that is absent is its default (None), and a
    present ``str | None`` one is the text itself (pydantic's str passes any text unchanged).
    Every other present parameter goes through `request_params_to_args`, in the fields'
    order, so errors come in the order FastAPI gives them."""
    absent_is_none: set[str] = set()
    plain_text: set[str] = set()
    for field in fields:
        info = field.field_info
        if (
            _get_param_aliases(field) == [(field.alias, field.alias)]
            and field.alias == field.name
            and _get_param_model(field) is None
            and not info.is_required()
            and field.default is None
            and not info.validate_default
        ):
            absent_is_none.add(field.name)
            if info.annotation == (str | None) and not info.metadata:  # no Json, no bound
                plain_text.add(field.name)

    def read(query: QueryParams) -> tuple[dict[str, Any], list[Any]]:
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for field in fields:
            name = field.name
            if name in absent_is_none:
                if name not in query:
                    values[name] = None
                    continue
                if name in plain_text:
                    values[name] = query[name]
                    continue
            value, field_errors = request_params_to_args((field,), query)
            values.update(value)
            errors += field_errors
        return values, errors

    return read


# Where a lane's function-scoped dependencies (the request's session) are closed: after the
# route class's wrappers, before the answer is sent, as FastAPI's own function stack.
_FUNCTION_STACK = "bookable.lane_function_stack"
# FastAPI's body errors name the endpoint through this; read only when one is raised.
_endpoint_context: Callable[[Any], Any] = fastapi_routing._extract_endpoint_context


@dataclass(frozen=True, slots=True)
class LaneDependency:
    """A dependency the lane solves itself: `authenticate` (the caller), `request_session`
    (the session, function-scoped) or an ``async def`` whose parameters are the request,
    header and query parameters and those two (``claim_idempotency_key``, a mail policy
    getter). Solved once per request, as FastAPI caches them."""

    call: Callable[..., Any]
    name: str | None
    request_name: str | None = None
    params: tuple[ModelField, ...] = ()  # query, then header parameters (FastAPI's order)
    subs: tuple[LaneDependency, ...] = ()


def _lane_dependency(sub: Dependant, route_path: str) -> LaneDependency:
    if sub.call is authenticate or (sub.call is request_session and sub.scope == "function"):
        return LaneDependency(sub.call, sub.name)
    if (
        sub.call is None
        or not inspect.iscoroutinefunction(sub.call)
        or not sub.use_cache
        or sub.path_params
        or sub.cookie_params
        or sub.body_params
        or sub.response_param_name
        or sub.background_tasks_param_name
        or sub.websocket_param_name
        or sub.http_connection_param_name
        or sub.security_scopes_param_name
        or any(
            inner.call is not authenticate and inner.call is not request_session
            for inner in sub.dependencies
        )
    ):
        raise ValueError(f"{route_path}: a lane cannot solve the dependency {sub.call!r}")
    return LaneDependency(
        sub.call,
        sub.name,
        sub.request_param_name,
        (*sub.query_params, *sub.header_params),
        tuple(_lane_dependency(inner, route_path) for inner in sub.dependencies),
    )


async def _solve(
    dependency: LaneDependency,
    request: Request,
    solved: dict[Callable[..., Any], Any],
    errors: list[Any],
) -> tuple[bool, Any]:
    """``dependency``'s value, from ``solved`` if it was already called; (False, None) when
    its parameters had errors (added to ``errors``; it is not called, as in FastAPI)."""
    call = dependency.call
    if call in solved:
        return True, solved[call]
    if call is authenticate:
        value = await authenticate(request)
    elif call is request_session:
        stack: contextlib.AsyncExitStack = request.scope[_FUNCTION_STACK]
        value = await stack.enter_async_context(_open_request_session(request))
    else:
        values: dict[str, Any] = {}
        own_errors: list[Any] = []
        for sub in dependency.subs:
            ok, sub_value = await _solve(sub, request, solved, own_errors)
            if ok and sub.name is not None:
                values[sub.name] = sub_value
        for field in dependency.params:
            source = request.headers if isinstance(field.field_info, params.Header) else None
            value, field_errors = request_params_to_args(
                (field,), source if source is not None else request.query_params
            )
            values.update(value)
            own_errors += field_errors
        if own_errors:
            errors += own_errors
            return False, None
        if dependency.request_name is not None:
            values[dependency.request_name] = request
        value = await call(**values)
    solved[call] = value
    return True, value


def _is_json(content_type: str) -> bool:
    """FastAPI's test of a body's content type (``application/json``, ``application/*+json``,
    parameters allowed), with the usual header's answer known."""
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def endpoint_lane(route: APIRoute) -> Lane:
    """A lane that calls the route's own endpoint as FastAPI would, for an endpoint that takes
    the request, query and header parameters, a JSON body, the caller (`CurrentCaller`), the
    request's session (`DbSession`) and simple dependencies (`LaneDependency`); anything else
    (path or cookie parameters, a form, other dependencies) is FastAPI's to parse.

    Per request, in FastAPI's order: the body is read and parsed (before the key is looked at:
    a body that is not JSON is refused even without a key), `authenticate` runs (the routers'
    dependency), then the route's dependencies in their order (the session opens when first
    needed; it commits after the answer is built, before it is sent, and rolls back on any
    error), then the query and header parameters are read with FastAPI's own
    `request_params_to_args` and the body validated with its `request_body_to_args` (so a bad
    one is FastAPI's very `RequestValidationError`), the endpoint is called, and what it returns
    is serialized with the route's response field, as FastAPI's default response class does.
    The route class's own wrappers (`CheckedRoute.wrap_handler`: the checked JSON body,
    ``Idempotency-Key``, the booking counters) are put around this handler, as around
    FastAPI's."""
    dependant = route.dependant
    if (
        dependant.path_params
        or dependant.cookie_params
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.security_scopes_param_name
        or route.path_regex.groups
        or not inspect.iscoroutinefunction(route.endpoint)
        or route.status_code is not None
        or not isinstance(route.response_class, DefaultPlaceholder)
        or (route.body_field is not None and isinstance(route.body_field.field_info, params.Form))
        or route.max_body_size is not None
    ):
        raise ValueError(f"{route.path}: a lane takes no path, cookie or form parameter")
    authenticated = LaneDependency(authenticate, None)  # the routers' own, before the route's
    dependencies = tuple(_lane_dependency(sub, route.path) for sub in dependant.dependencies)
    opens_session = any(
        dep.call is request_session or any(s.call is request_session for s in dep.subs)
        for dep in dependencies
    )
    endpoint = route.endpoint
    request_name = dependant.request_param_name
    read_query = query_reader(dependant.query_params)
    header_fields = tuple(dependant.header_params)
    body_field = route.body_field
    body_fields = list(dependant.body_params)
    embed_body_fields = route._embed_body_fields
    strict_content_type = route.strict_content_type
    if isinstance(strict_content_type, DefaultPlaceholder):
        strict_content_type = strict_content_type.value
    response_field = route.response_field

    async def read_body(request: Request) -> Any:
        """As FastAPI's request handler reads a JSON body (its errors too)."""
        try:
            body_bytes = await request.body()
            if not body_bytes:
                return Undefined
            content_type = request.headers.get("content-type")
            if content_type:
                return await request.json() if _is_json(content_type) else body_bytes
            return body_bytes if strict_content_type else await request.json()
        except json.JSONDecodeError as error:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", error.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": error.msg},
                    }
                ],
                body=error.doc,
                endpoint_ctx=_endpoint_context(endpoint),
            ) from error
        except HTTPException:
            raise
        except Exception as error:
            raise HTTPException(400, "There was an error parsing the body") from error

    async def handle(request: Request) -> Response:
        body = await read_body(request) if body_field is not None else Undefined
        solved: dict[Callable[..., Any], Any] = {}
        errors: list[Any] = []
        values: dict[str, Any] = {}
        await _solve(authenticated, request, solved, errors)
        for dependency in dependencies:
            ok, value = await _solve(dependency, request, solved, errors)
            if ok and dependency.name is not None:
                values[dependency.name] = value
        query_values, query_errors = read_query(request.query_params)
        values.update(query_values)
        errors += query_errors
        if header_fields:
            header_values, header_errors = request_params_to_args(header_fields, request.headers)
            values.update(header_values)
            errors += header_errors
        if body_fields:
            body_values, body_errors = await request_body_to_args(
                body_fields, body, embed_body_fields
            )
            values.update(body_values)
            errors += body_errors
        if errors:
            raise RequestValidationError(
                errors,
                body=None if body is Undefined else body,
                endpoint_ctx=_endpoint_context(endpoint),
            )
        if request_name is not None:
            values[request_name] = request
        answer = await endpoint(**values)
        if isinstance(answer, Response):
            return answer
        content = await serialize_response(
            field=response_field,
            response_content=answer,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            dump_json=response_field is not None,
        )
        if response_field is not None:
            return Response(content=content, media_type="application/json")
        return JSONResponse(content)

    wrap_handler: Callable[[LaneHandler], LaneHandler] | None = getattr(route, "wrap_handler", None)
    wrapped = wrap_handler(handle) if wrap_handler is not None else handle
    if not opens_session:
        return Lane(route, wrapped)

    async def handler(request: Request) -> Response:
        async with contextlib.AsyncExitStack() as function_stack:
            request.scope[_FUNCTION_STACK] = function_stack
            return await wrapped(request)

    return Lane(route, handler)


class FastLane:
    """Serves the ``(method, path)`` pairs of ``lanes`` itself; passes everything else on.

    ``exception_handlers`` is the app's own mapping (``app.exception_handlers``), read per error,
    so the lane renders an error with the very handler the full stack would use."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        lanes: Mapping[tuple[str, str], Lane],
        exception_handlers: ExceptionHandlers,
    ) -> None:
        self.app = app
        self.lanes = dict(lanes)
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            lane = self.lanes.get((scope["method"], scope["path"]))
            # A root path, FastAPI's telemetry or dependency overrides (which the lane would
            # not see) change what the full stack does: it answers then.
            if (
                lane is not None
                and not scope.get("root_path")
                and not scope.get("fastapi.telemetry")
                and not scope["app"].dependency_overrides
                and MAX_BODY_SIZE_SCOPE_KEY not in scope  # an app-wide body limit: FastAPI's
            ):
                await self._serve(lane, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, lane: Lane, scope: Scope, receive: Receive, send: Send) -> None:
        route = lane.route
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await lane.handler(request)
        except Exception as error:
            handler = self._handler_for(error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)

    def _handler_for(
        self, error: Exception
    ) -> Callable[[Request, Exception], Awaitable[Response]] | None:
        # As Starlette's ExceptionMiddleware: the nearest class in the MRO; `Exception` itself
        # is the server-error handler's, outside the user middleware.
        for cls in type(error).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None
