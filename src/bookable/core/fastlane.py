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
3. the lane's handler, which answers a ``Response`` (for ``/me``: the endpoint itself);
4. an exception goes to the handler the app registered for its type (``ApiError`` -> its JSON
   error), exactly as Starlette's ExceptionMiddleware would; anything unhandled propagates to
   ``UnexpectedErrorMiddleware``, as it does from the router.

Every other request (another method, a trailing slash, a path with parameters, a mounted root
path, FastAPI telemetry on, dependency overrides set) goes down the full stack untouched, before
anything is spent. The FastAPI route stays: it is the OpenAPI entry and the answer for all of
those.
``tests/api/test_fast_lane.py`` sends the same requests through both and compares the bytes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from bookable.core.auth import authenticate

LaneHandler = Callable[[Request], Awaitable[Response]]
ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]]


@dataclass(frozen=True, slots=True)
class Lane:
    """One hot route: the FastAPI route it stands for, and the handler that answers for it."""

    route: APIRoute
    handler: LaneHandler


def endpoint_lane(route: APIRoute) -> Lane:
    """A lane that calls the route's own endpoint: only for one that takes nothing but the
    request (anything else is parsed by FastAPI, which a lane would have to do the same way)."""
    dependant = route.dependant
    takes_only_request = (
        dependant.request_param_name is not None
        and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
            or dependant.response_param_name
            or dependant.background_tasks_param_name
        )
        and inspect.iscoroutinefunction(route.endpoint)
    )
    if not takes_only_request or route.path_regex.groups:
        raise ValueError(f"{route.path}: a lane's endpoint takes nothing but the request")
    return Lane(route, route.endpoint)


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
            await authenticate(request)
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
