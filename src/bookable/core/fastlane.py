"""A fast lane for hot routes: the same answer as FastAPI's, without its per-request machinery.

FastAPI spends ~70 µs on a request before and after a cheap endpoint such as ``GET /v1/me``
(a cache hit and a memoised body): walking its routes, solving the dependencies, wrapping the
request and the response. ``FastLane`` is a pure-ASGI layer, innermost of the middleware (inside
CORS, the edge middleware and the unexpected-error one, so everything those add stays as it is),
that looks the request up in an exact ``(method, path)`` table and, on a hit, does what FastAPI
would do for that route and nothing more:

1. put in the scope what routing puts there (``route``, ``endpoint``, ``path_params``): the
   metrics, the access line and the strict URL check read them;
2. ``authenticate(request)``, the very dependency the v1 routes take (key, rate limit, URL check);
3. the lane's handler (`endpoint_lane`): the route's own endpoint, called with the query
   parameters read as FastAPI reads them, the caller and, when it takes one, the request's
   session (`core.db.request_session`, committed before the answer is sent), its result
   serialized as FastAPI serializes it (``GET /v1/me``, ``GET /v1/slots``);
4. an exception goes to the handler the app registered for its type (``ApiError`` -> its JSON
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
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi._compat import ModelField
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import (
    _get_param_aliases,
    _get_param_model,
    request_params_to_args,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, serialize_response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from bookable.core.auth import Caller, authenticate
from bookable.core.db import request_session

LaneHandler = Callable[[Request, Caller], Awaitable[Response]]
ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]]
_open_request_session = contextlib.asynccontextmanager(request_session)


@dataclass(frozen=True, slots=True)
class Lane:
    """One hot route: the FastAPI route it stands for, and the handler that answers for it
    (given the request and the caller `authenticate` found)."""

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


def endpoint_lane(route: APIRoute) -> Lane:
    """A lane that calls the route's own endpoint as FastAPI would, for an endpoint that takes
    only the request, query parameters, the caller (`CurrentCaller`) and the request's session
    (`DbSession`): anything else (path, header, cookie or body parameters, other dependencies)
    is FastAPI's to parse.

    Per request, in FastAPI's order: the session is opened (it commits when the response is
    built, before it is sent; rolls back on any error), the query parameters are validated by
    FastAPI's own `request_params_to_args` (so a bad one is FastAPI's very
    `RequestValidationError`), the endpoint is called, and what it returns is serialized with
    the route's response field, as FastAPI's default response class does."""
    dependant = route.dependant
    caller_names: list[str] = []
    session_name: str | None = None
    for sub in dependant.dependencies:
        if sub.call is authenticate and sub.name is not None:
            caller_names.append(sub.name)
        elif (
            sub.call is request_session
            and sub.name is not None
            and session_name is None
            and sub.scope == "function"
        ):
            session_name = sub.name
        else:
            raise ValueError(f"{route.path}: a lane cannot solve the dependency {sub.call!r}")
    if (
        dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.security_scopes_param_name
        or route.path_regex.groups
        or not inspect.iscoroutinefunction(route.endpoint)
        or route.status_code is not None
        or not isinstance(route.response_class, DefaultPlaceholder)
    ):
        raise ValueError(f"{route.path}: a lane takes no parameter but the query's")
    endpoint = route.endpoint
    request_name = dependant.request_param_name
    read_query = query_reader(dependant.query_params)
    response_field = route.response_field

    async def call(request: Request, caller: Caller, session: AsyncSession | None) -> Response:
        values, errors = read_query(request.query_params)
        if errors:
            raise RequestValidationError(errors)
        if request_name is not None:
            values[request_name] = request
        for name in caller_names:
            values[name] = caller
        if session_name is not None:
            values[session_name] = session
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

    if session_name is None:

        async def handler(request: Request, caller: Caller) -> Response:
            return await call(request, caller, None)

    else:

        async def handler(request: Request, caller: Caller) -> Response:
            async with _open_request_session(request) as session:
                return await call(request, caller, session)

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
            caller = await authenticate(request)
            response = await lane.handler(request, caller)
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
