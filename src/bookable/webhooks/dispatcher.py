"""Delivering webhook events: POST each due event, record every attempt, retry with backoff.

`Dispatcher` is the webhook outbox's `OutboxDispatcher` (`bookable.core.dispatch`: claims with a
lease, at least once across SIGKILL, woken after the commit). What one attempt is here:

- **Deliver**: one POST with the stored body, signed with the webhook's current secret, through
  a client that checks the subscriber URL again and connects only to addresses its name
  resolves to *and* the rules allow (`bookable.core.outbound`: pinned, so no DNS rebinding);
  redirects are not followed (a 3xx is a failure); the attempt is bounded by the timeout.
- **Record**: a `WebhookDelivery` row per attempt; a 2xx makes the event DELIVERED; otherwise
  it is retried after the next wait of the schedule (with jitter), FAILED after the last
  attempt.

An event whose webhook is inactive, or no longer subscribed to the trigger, when its turn comes
is DROPPED unsent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.core.dispatch import DispatcherConfig, OutboxDispatcher, RunningClock
from bookable.core.outbound import guarded_client, refusal, url_problem
from bookable.models import Webhook, WebhookDelivery, WebhookEvent, WebhookEventStatus
from bookable.webhooks.metrics import (
    DELIVERED,
    DROPPED,
    FAILED,
    RETRYING,
    WEBHOOK_DELIVERIES,
)
from bookable.webhooks.signing import delivery_headers

log = logging.getLogger("bookable.webhooks")

EXCERPT_BYTES = 1024  # how much of a reply is kept with the attempt

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]


@dataclass
class Job:
    """A claimed event and what its delivery needs."""

    event_id: int
    webhook_id: str
    trigger: str
    body: str
    content_type: str
    attempts: int
    lease_until: datetime
    url: str | None
    secret: str | None
    version: str | None
    wanted: bool  # the webhook exists, is active, and still subscribes to the trigger


@dataclass
class Outcome:
    job: Job
    dropped: bool = False
    started_at: datetime | None = None
    duration_ms: int = 0
    status_code: int | None = None
    ok: bool = False
    excerpt: str | None = None
    error: str | None = None


def _describe(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(error, httpx.ConnectError):
        return f"connection failed: {error or type(error).__name__}"
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


def _text(data: bytes) -> str:
    # PostgreSQL text cannot hold NUL; the excerpt is for people to read anyway.
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class Dispatcher(OutboxDispatcher[Job, Outcome]):
    """Delivers due webhook events until stopped. See the module docstring."""

    table = EVENTS
    name = "webhook"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: DispatcherConfig,
        *,
        running_clock: RunningClock | None = None,
    ) -> None:
        super().__init__(sessions, config, running_clock=running_clock)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Each connection goes to an address checked against the URL safety rules at that
            # moment (resolved once: no DNS rebinding between check and connect); no proxies
            # from the environment, no redirects.
            self._client = guarded_client(
                allow_private=self.config.allow_private_targets,
                timeout=self.config.timeout,
                max_keepalive_connections=self.config.concurrency,
            )
        return self._client

    async def _open(self) -> None:
        self._http()

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- 1. claim ---------------------------------------------------------------------------

    def _claimed_columns(self) -> list[Any]:
        return [
            EVENTS.c.id,
            EVENTS.c.webhook_id,
            EVENTS.c.trigger,
            EVENTS.c.body,
            EVENTS.c.content_type,
            EVENTS.c.attempts,
        ]

    async def _jobs(
        self, session: AsyncSession, rows: Sequence[Any], lease_until: datetime
    ) -> list[Job]:
        hooks = {
            hook.id: hook
            for hook in await session.scalars(
                select(Webhook).where(Webhook.id.in_({row.webhook_id for row in rows}))
            )
        }
        jobs = []
        for row in rows:
            hook = hooks.get(row.webhook_id)
            jobs.append(
                Job(
                    event_id=row.id,
                    webhook_id=row.webhook_id,
                    trigger=row.trigger,
                    body=row.body,
                    content_type=row.content_type,
                    attempts=row.attempts,
                    lease_until=lease_until,
                    url=hook.subscriber_url if hook else None,
                    secret=hook.secret if hook else None,
                    version=hook.version if hook else None,
                    wanted=bool(
                        hook and hook.active and row.trigger in (hook.event_triggers or [])
                    ),
                )
            )
        return jobs

    # --- 2. deliver -------------------------------------------------------------------------

    async def deliver(self, job: Job) -> Outcome:
        """One attempt. Never raises for the receiver's or the network's trouble."""
        if not job.wanted or job.url is None:
            return Outcome(job, dropped=True)
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        outcome = Outcome(job, started_at=started_at)
        try:
            problem = url_problem(job.url, allow_private=self.config.allow_private_targets)
            if problem is not None:  # saved before the rules (or the setting) changed
                outcome.error = f"delivery refused: {problem}"
            else:
                await self._post(job, outcome)
        except (TimeoutError, httpx.HTTPError, OSError) as error:
            refused = refusal(error)
            if refused is not None:  # refused before any connection was tried
                outcome.error = f"delivery refused: {refused}"
            else:
                outcome.error = _describe(error, self.config.timeout)
        except Exception as error:
            # Anything else still counts as a failed attempt, or the event would come back
            # after every lease without ever using up its attempts.
            log.exception("webhook dispatcher: delivery of event %s failed", job.event_id)
            outcome.error = f"{type(error).__name__}: {error}"
        outcome.duration_ms = int((time.perf_counter() - began) * 1000)
        return outcome

    async def _post(self, job: Job, outcome: Outcome) -> None:
        assert job.url is not None
        body = job.body.encode("utf-8")
        headers = delivery_headers(
            body, content_type=job.content_type, secret=job.secret, version=job.version
        )
        async with asyncio.timeout(self.config.timeout):
            async with self._http().stream("POST", job.url, content=body, headers=headers) as reply:
                excerpt = b""
                async for chunk in reply.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
        outcome.status_code = reply.status_code
        outcome.excerpt = _text(excerpt[:EXCERPT_BYTES])
        outcome.ok = 200 <= reply.status_code < 300
        if 300 <= reply.status_code < 400:
            location = reply.headers.get("location", "")
            outcome.error = f"redirects are not followed (Location: {location[:200]})"

    # --- 3. record --------------------------------------------------------------------------

    async def _write(self, session: AsyncSession, outcomes: list[Outcome], now: datetime) -> None:
        """A `WebhookDelivery` per attempt, and each event's new state."""
        if not outcomes:
            return
        attempts = [
            {
                "event_id": o.job.event_id,
                "webhook_id": o.job.webhook_id,
                "attempt": o.job.attempts + 1,
                "started_at": o.started_at or now,
                "duration_ms": o.duration_ms,
                "status_code": o.status_code,
                "ok": o.ok,
                "response_excerpt": o.excerpt,
                "error": o.error,
            }
            for o in outcomes
            if not o.dropped
        ]
        if attempts:
            await session.execute(insert(DELIVERIES), attempts)
        pending = EVENTS.c.status == WebhookEventStatus.PENDING.value
        arrived = [o.job.event_id for o in outcomes if o.ok]
        if arrived:
            # Even if the lease ran out meanwhile: it did arrive.
            await session.execute(
                update(EVENTS)
                .where(EVENTS.c.id.in_(arrived), pending)
                .values(
                    status=WebhookEventStatus.DELIVERED.value,
                    attempts=EVENTS.c.attempts + 1,
                    delivered_at=now,
                    locked_until=None,
                )
            )
        dropped = [o.job.event_id for o in outcomes if o.dropped]
        if dropped:
            await session.execute(
                update(EVENTS)
                .where(EVENTS.c.id.in_(dropped), pending)
                .values(status=WebhookEventStatus.DROPPED.value, locked_until=None)
            )
        for outcome in outcomes:
            if not outcome.ok and not outcome.dropped:
                await session.execute(self._event_update(outcome, now))
        self.delivered += len(attempts)

    def _recorded(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            WEBHOOK_DELIVERIES.labels(self._outcome_label(outcome)).inc()

    def _outcome_label(self, outcome: Outcome) -> str:
        if outcome.dropped:
            return DROPPED
        if outcome.ok:
            return DELIVERED
        return FAILED if self._was_last_attempt(outcome.job) else RETRYING

    def _was_last_attempt(self, job: Job) -> bool:
        """The attempt just made was the last allowed: a failure fails the event for good."""
        return job.attempts + 1 >= self.config.max_attempts

    def _event_update(self, outcome: Outcome, now: datetime) -> Any:
        """A failed attempt: retry after the next wait, or FAILED after the last attempt."""
        job = outcome.job
        made = job.attempts + 1
        mine = [
            EVENTS.c.id == job.event_id,
            EVENTS.c.status == WebhookEventStatus.PENDING.value,
            EVENTS.c.locked_until == job.lease_until,  # not if another dispatcher took over
        ]
        if self._was_last_attempt(job):
            return (
                update(EVENTS)
                .where(*mine)
                .values(status=WebhookEventStatus.FAILED.value, attempts=made, locked_until=None)
            )
        return (
            update(EVENTS)
            .where(*mine)
            .values(
                attempts=made,
                next_attempt_at=now + timedelta(seconds=self.config.retry_delay(made, self._rng)),
                locked_until=None,
            )
        )
