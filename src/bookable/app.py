"""create_app(settings): routers, middleware, shared resources."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from swagger_ui_bundle import swagger_ui_path

from bookable import __version__
from bookable.api_keys.endpoints import router as api_keys_router
from bookable.attendees.endpoints import router as attendees_router
from bookable.availabilities.endpoints import router as availabilities_router
from bookable.availability.endpoints import router as availability_router
from bookable.booking_references.endpoints import router as booking_references_router
from bookable.bookings.endpoints import router as bookings_router
from bookable.calendars.busy import CalendarBusyReader
from bookable.calendars.cache import BusyCache
from bookable.calendars.endpoints import router as calendars_router
from bookable.core.auth import EPOCH_CLIENT_NAME, Authenticator, SharedEpoch, authenticate
from bookable.core.clock import clock
from bookable.core.db import WriteGate, create_engine, is_sqlite, session_factory
from bookable.core.encryption import Encryptor
from bookable.core.errors import build_allow_index, install_error_handlers
from bookable.core.fastlane import FastLane, Lane, endpoint_lane
from bookable.core.health import HEALTH_PATHS
from bookable.core.health import router as health_router
from bookable.core.idempotency import purge_forever
from bookable.core.logging import install_redaction
from bookable.core.metrics import METRICS_PATH, install_metrics
from bookable.core.middleware import EdgeMiddleware, ObserveMiddleware, UnexpectedErrorMiddleware
from bookable.core.openapi import install_openapi
from bookable.core.ratelimit import RateLimiter
from bookable.custom_inputs.endpoints import router as custom_inputs_router
from bookable.event_types.endpoints import router as event_types_router
from bookable.memberships.endpoints import router as memberships_router
from bookable.notifications.outbox import MailPolicy
from bookable.payments.endpoints import router as payments_router
from bookable.schedules.endpoints import router as schedules_router
from bookable.settings import Settings, get_settings
from bookable.slots.endpoints import router as slots_router
from bookable.teams.endpoints import router as teams_router
from bookable.users.endpoints import router as users_router
from bookable.v2 import router as v2_router
from bookable.webhooks.endpoints import router as webhooks_router
from bookable.workers import outbox_dispatchers

RESOURCE_ROUTERS = (
    users_router,
    api_keys_router,
    schedules_router,
    availabilities_router,
    availability_router,
    event_types_router,
    custom_inputs_router,
    slots_router,
    bookings_router,
    attendees_router,
    booking_references_router,
    payments_router,
    teams_router,
    memberships_router,
    webhooks_router,
    calendars_router,
)
IDEMPOTENCY_PURGE_SECONDS = 600.0
# Hot v1 routes the fast lane answers without FastAPI's per-request work (core/fastlane.py):
# (router, method, path in the router). Their FastAPI routes stay, for OpenAPI and every case
# the lane passes on.
FAST_LANE_ROUTES: tuple[tuple[APIRouter, str, str], ...] = (
    (users_router, "GET", "/me"),
    (slots_router, "GET", "/slots"),
    (bookings_router, "POST", "/bookings"),
)


def include_v1(app: FastAPI) -> None:
    """Every v1 resource; each route needs a valid key (checked once per request), then its URL
    parameters are checked strictly (`core/params.py`): by `authenticate`, for the routes listed
    here, so that the two take one dependency (FastAPI's cost grows with each).

    Each resource router is included into the app itself, not through one v1 router: FastAPI
    walks nested included routers (and their change counters) on every request, twice."""
    app.state.url_checked_routes = frozenset(
        id(route) for resource in RESOURCE_ROUTERS for route in resource.routes
    )
    for resource in RESOURCE_ROUTERS:
        app.include_router(resource, prefix="/v1", dependencies=[Depends(authenticate)])


def fast_lanes() -> dict[tuple[str, str], Lane]:
    lanes = {}
    for router, method, path in FAST_LANE_ROUTES:
        (route,) = (
            r
            for r in router.routes
            if isinstance(r, APIRoute) and r.path == path and method in r.methods
        )
        # Called without /v1, a path reaches the lane already rewritten by EdgeMiddleware.
        lanes[(method, "/v1" + path)] = endpoint_lane(route)
    return lanes


def create_app(settings: Settings | None = None, *, fast_lane: bool = True) -> FastAPI:
    """The app. ``fast_lane=False`` leaves every route to FastAPI (the tests compare both)."""
    settings = settings or get_settings()
    install_redaction(settings.api_key_prefix)
    # Always set: an app built without BOOKABLE_CLOCK must not inherit an earlier frozen one.
    clock.freeze(settings.clock)

    # Built first: a bad BOOKABLE_ENCRYPTION_KEY stops the start with a clear message.
    encryptor = Encryptor.from_settings(settings)
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    shared_epoch = (
        SharedEpoch(
            redis,
            Redis.from_url(
                settings.redis_url,
                retry=Retry(NoBackoff(), retries=0),
                client_name=f"{EPOCH_CLIENT_NAME}:{secrets.token_hex(4)}",
            ),
        )
        if redis is not None and settings.redis_url
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Webhook delivery, calendar writes and emails run beside the API in their own tasks and
        # sessions (never inside a request); BOOKABLE_WEBHOOK_DISPATCHER=off leaves them to
        # `bookable worker` (or to `bookable serve`'s dispatcher process, which sets it so).
        dispatchers = []
        if settings.webhook_dispatcher != "off":
            dispatchers = outbox_dispatchers(sessions, settings, encryptor)
            for dispatcher in dispatchers:
                await dispatcher.start()
        by_name = {dispatcher.name: dispatcher for dispatcher in dispatchers}
        _app.state.webhook_dispatcher = by_name.get("webhook")
        _app.state.calendar_dispatcher = by_name.get("calendar")
        _app.state.email_dispatcher = by_name.get("email")
        if shared_epoch is not None:
            shared_epoch.start()
        # Idempotency keys older than 24 h are ignored anyway; this keeps the table small.
        purge = asyncio.create_task(purge_forever(sessions, IDEMPOTENCY_PURGE_SECONDS))
        yield
        purge.cancel()
        with suppress(asyncio.CancelledError):
            await purge
        await asyncio.gather(*(dispatcher.stop() for dispatcher in dispatchers))
        if shared_epoch is not None:
            await shared_epoch.stop()
        await engine.dispose()
        await _app.state.rate_limiter.aclose()
        if redis is not None:
            await redis.aclose()

    app = FastAPI(
        title="Bookable",
        version=__version__,
        description=(
            "Self-hosted scheduling server, wire-compatible with Cal.com's public API v1. "
            "Authenticate with `?apiKey=<key>` or `Authorization: Bearer <key>`."
        ),
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.write_gate = WriteGate(is_sqlite(settings.database_url))
    app.state.encryptor = encryptor
    app.state.mail_policy = MailPolicy.from_settings(settings)
    # Busy times of selected calendars, read by preflights before a request's transaction.
    app.state.calendar_busy = CalendarBusyReader(
        sessions, app.state.write_gate, encryptor, settings, BusyCache(redis)
    )
    app.state.redis = redis
    app.state.authenticator = Authenticator(
        sessions,
        api_key_prefix=settings.api_key_prefix,
        cache_seconds=settings.auth_cache_seconds,
        shared=shared_epoch,
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.redis_url)

    install_error_handlers(app)
    install_openapi(app)
    # Probes first, outside /v1: no key, no rate limit, not in the OpenAPI document.
    app.include_router(health_router)
    app.state.allow_index = build_allow_index(RESOURCE_ROUTERS, prefixes=("/v1", ""))
    # Once: the same routes called without `/v1` are rewritten to it (EdgeMiddleware).
    include_v1(app)
    app.include_router(v2_router, dependencies=[Depends(authenticate)])
    _mount_docs(app)
    install_metrics(app, settings)

    if fast_lane:
        # Innermost: what the layers around it add (CORS, request id, rate-limit headers,
        # metrics, access line) is the same for the lane's answers as for FastAPI's.
        app.add_middleware(FastLane, lanes=fast_lanes(), exception_handlers=app.exception_handlers)
    # Added early, so inner: an unexpected error's 500 still passes CORS and the edge.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=[
            "X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
            "Idempotency-Replayed",
        ],
    )  # fmt: skip
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        unversioned_exempt=(*HEALTH_PATHS, METRICS_PATH),
    )
    # Outermost: times every answer, the edge middleware's own ones too. Only when it has
    # something to do: each layer costs every request a call.
    if settings.metrics == "on" or settings.log_format == "json":
        app.add_middleware(
            ObserveMiddleware,
            metrics=settings.metrics == "on",
            access_log=settings.log_format == "json",
        )
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package: works with no internet."""
    app.mount("/v1/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get("/v1/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/v1/openapi.json",
            title="Bookable API v1",
            swagger_js_url="/v1/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/v1/docs/static/swagger-ui.css",
            swagger_favicon_url="/v1/docs/static/favicon-32x32.png",
        )
