"""Webhook metrics: delivery attempts by outcome (counted by the dispatcher once they are
recorded), and the outbox's state, read from the database at scrape time."""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.core.dispatch import RunningClock
from bookable.models import WebhookEvent, WebhookEventStatus

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]

DELIVERED = "delivered"  # a 2xx came back
RETRYING = "retrying"  # failed; another attempt is scheduled
FAILED = "failed"  # failed, and it was the last attempt
DROPPED = "dropped"  # not sent: the webhook was removed, turned off or unsubscribed
OUTCOMES = (DELIVERED, RETRYING, FAILED, DROPPED)

WEBHOOK_DELIVERIES = Counter(
    "bookable_webhook_deliveries",
    "Webhook delivery attempts recorded, by outcome (dropped: the event was not sent).",
    ["outcome"],
)
for _outcome in OUTCOMES:  # every series exists from the start, so rate() sees the first one
    WEBHOOK_DELIVERIES.labels(_outcome)

_clock = RunningClock()


async def outbox_metrics(sessions: async_sessionmaker[AsyncSession]) -> list[Metric]:
    """Undelivered (PENDING) events, due now or scheduled later (a retry, a MEETING_* time),
    and how long the oldest due one has waited for a dispatcher: one indexed query."""
    now = _clock.now()
    due = EVENTS.c.next_attempt_at <= now
    query = select(
        func.count().filter(due),
        func.count().filter(~due),
        func.min(EVENTS.c.next_attempt_at).filter(due),
    ).where(EVENTS.c.status == WebhookEventStatus.PENDING.value)
    async with sessions() as session:
        due_count, scheduled_count, oldest_due = (await session.execute(query)).one()
    events = GaugeMetricFamily(
        "bookable_webhook_outbox_events",
        "Webhook events not delivered yet: due now, or scheduled later (a retry, a MEETING_* "
        "time).",
        labels=["state"],
    )
    events.add_metric(["due"], due_count or 0)
    events.add_metric(["scheduled"], scheduled_count or 0)
    # Since it became due, not since it was written: a MEETING_ENDED event is written with its
    # booking, days before it is due. Near zero while dispatchers keep up.
    waited = max((now - oldest_due).total_seconds(), 0.0) if oldest_due is not None else 0.0
    oldest = GaugeMetricFamily(
        "bookable_webhook_outbox_oldest_due_seconds",
        "Seconds the oldest due, undelivered webhook event has waited (0 when none is due).",
        value=waited,
    )
    return [events, oldest]
