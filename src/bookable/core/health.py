"""`/healthz` (liveness) and `/readyz` (readiness) for probes and load balancers.

Neither needs an API key, spends a rate-limit budget or appears in the v1 OpenAPI document (they
are not Cal.com routes). Answers name each check and never carry a URL, a credential or data:
a failing check says what failed in a few words; the full error goes to the (redacted) log.

- `/healthz`: the process answers. Touches nothing else, so a slow database never gets a live
  process restarted.
- `/readyz`: this process can serve now: the database answers and is migrated to this code's
  head revision, Redis answers when it is configured, and the inline outbox dispatchers are
  alive where they run here. Every check runs at once, each bounded by
  ``BOOKABLE_HEALTH_TIMEOUT``, so a hung database gives a quick 503, not a hung probe. Once the
  process has begun to stop (SIGTERM), it answers 503 "shutting down" at once, so a load
  balancer takes it out of rotation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bookable import dispatch_process
from bookable.core.dispatch import OutboxDispatcher
from bookable.migrations.runner import head_revisions

log = logging.getLogger("bookable.health")

OK = "ok"
OFF = "off"  # not configured or not run in this process: not a failure
NO_STORE = {"Cache-Control": "no-store"}
DISPATCHER_STATES = ("webhook_dispatcher", "calendar_dispatcher", "email_dispatcher")

router = APIRouter(include_in_schema=False)
HEALTH_PATHS = ("/healthz", "/readyz")


class _Stopping:
    """Whether this process has begun a graceful stop. Process-wide, because the signal reaches
    the server (`bookable.serving`), not the app."""

    def __init__(self) -> None:
        self._since = False

    def begin(self) -> None:
        self._since = True

    def end(self) -> None:
        """Forget a stop (tests that simulate one)."""
        self._since = False

    def __bool__(self) -> bool:
        return self._since


stopping = _Stopping()


@router.api_route("/healthz", methods=["GET", "HEAD"])
async def healthz() -> JSONResponse:
    return JSONResponse({"status": OK}, headers=NO_STORE)


@router.api_route("/readyz", methods=["GET", "HEAD"])
async def readyz(request: Request) -> JSONResponse:
    if stopping:
        return JSONResponse({"status": "shutting down", "checks": {}}, 503, headers=NO_STORE)
    state = request.app.state
    seconds: float = state.settings.health_timeout
    database, redis = await asyncio.gather(
        _bounded("database", _database(state.engine), seconds),
        _bounded("redis", _redis(state.redis), seconds),
    )
    checks = {"database": database[0], "migrations": database[1], "redis": redis[0]}
    checks["dispatchers"] = _dispatchers([getattr(state, name, None) for name in DISPATCHER_STATES])
    ready = all(result in (OK, OFF) for result in checks.values())
    return JSONResponse(
        {"status": OK if ready else "unavailable", "checks": checks},
        200 if ready else 503,
        headers=NO_STORE,
    )


async def _bounded(name: str, check: Awaitable[tuple[str, ...]], seconds: float) -> tuple[str, ...]:
    """Run one check within ``seconds``; a failure becomes a short reason that names no host,
    user or value (those go to the log only)."""
    try:
        async with asyncio.timeout(seconds):
            return await check
    except TimeoutError:
        log.warning("readiness: %s did not answer within %g s", name, seconds)
        reason = f"timed out after {seconds:g} s"
    except Exception as error:  # the driver's, the network's, Redis's: all mean unavailable
        log.warning("readiness: %s check failed: %s", name, error)
        reason = f"unavailable ({_kind(error)})"
    # The database check also stands for the migrations check, which could not run.
    return (reason, "unknown") if name == "database" else (reason,)


def _kind(error: BaseException) -> str:
    """The error's class (the driver's own, under SQLAlchemy's wrapper): no message, which may
    hold a host or a user name."""
    original = getattr(error, "orig", None)
    return type(original if isinstance(original, BaseException) else error).__name__


async def _database(engine: AsyncEngine) -> tuple[str, str]:
    """(database, migrations): the database answers a query, and its Alembic revision is this
    code's head (behind: `bookable db upgrade` has not run; ahead: a newer version migrated)."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        current = frozenset(await connection.run_sync(_current_heads))
    head = head_revisions()
    if current == head:
        return OK, OK
    if not current:
        return OK, "not applied: run `bookable db upgrade`"
    return OK, f"database at {_names(current)}, this version needs {_names(head)}"


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(connection).get_current_heads()


def _names(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions))


async def _redis(redis: Redis | None) -> tuple[str]:
    if redis is None:
        return (OFF,)
    await redis.ping()
    return (OK,)


def _dispatchers(dispatchers: list[OutboxDispatcher[Any, Any] | None]) -> str:
    """The inline dispatchers, or `bookable serve`'s dispatcher process (alive, or being started
    again); `off` where `bookable worker` carries out the outbox."""
    present = [dispatcher for dispatcher in dispatchers if dispatcher is not None]
    if not present:
        child = dispatch_process.current()
        if child is None:
            return OFF
        return OK if child.alive else "not running: dispatcher process"
    stopped = [dispatcher.name for dispatcher in present if not dispatcher.running]
    return f"not running: {', '.join(stopped)}" if stopped else OK
