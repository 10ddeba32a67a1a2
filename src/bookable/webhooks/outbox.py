"""Writing webhook events to the outbox, inside the transaction of the change they announce.

`announce` and `schedule_meeting_events` add `WebhookEvent` rows to the caller's session and
never commit: the events exist exactly when the booking change commits, and vanish with it when
it rolls back. The body is rendered (and a payloadTemplate applied) now, so a delivery sends what
was true when the change happened, even if it is retried a day later.

Who is told (Cal.com's rule, `getWebhooks` with `triggerForUser`): the active webhooks
subscribed to the trigger whose event type is the booking's, plus, when the event type is not a
team event type, the webhooks of the organizer (the booking's host user). For a team event type
(collective or round robin) Cal.com tells the event type's and the team's webhooks, not the
hosts' personal ones; Bookable has no team-wide webhooks, so there it is the event type's alone.

After the caller commits, in-process dispatchers are woken (an SQLAlchemy ``after_commit`` hook)
so a delivery starts at once; dispatchers in other processes find the row on their next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.common import AnyBookedEventType, AnyBooking, Written
from bookable.core.clock import utcnow
from bookable.core.dispatch import mark_written
from bookable.models import (
    Attendee,
    Booking,
    BookingStatus,
    EventType,
    Payment,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)
from bookable.webhooks.payloads import (
    MEETING_TRIGGERS,
    BookingFacts,
    booking_payload,
    envelope,
    js_json,
    load_facts,
    load_facts_many,
    meeting_body,
    no_show_payload,
    template_data,
)
from bookable.webhooks.templates import JSON_CONTENT_TYPE, TemplateError, render_template
from bookable.webhooks.triggers import WebhookTrigger

log = logging.getLogger("bookable.webhooks")

# Cal.com's cron forgets scheduled triggers more than a day overdue; so does Bookable.
MEETING_GRACE = timedelta(days=1)


# --- who is subscribed ----------------------------------------------------------------------------


@cache
def _subscribers_statement(*, by_event_type: bool, by_user: bool) -> Select[tuple[Webhook]]:
    """`subscribers`' query, built once per shape (docs/architecture.md, "Hot paths")."""
    scopes = []
    if by_event_type:
        scopes.append(Webhook.event_type_id == bindparam("event_type_id"))
    if by_user:
        scopes.append(Webhook.user_id == bindparam("user_id"))
    return (
        select(Webhook).where(Webhook.active.is_(True), or_(*scopes)).order_by(Webhook.created_at)
    )


async def subscribers(
    session: AsyncSession,
    booking: AnyBooking,
    triggers: Iterable[str],
    *,
    event_type: AnyBookedEventType | None = None,
) -> list[Webhook]:
    """Active webhooks that want any of ``triggers`` for ``booking`` (see the module docstring).
    ``event_type``: the booking's, when the caller holds it (one query fewer)."""
    wanted = {str(t) for t in triggers}
    team_id = None
    if booking.event_type_id is not None:
        if event_type is not None and event_type.id == booking.event_type_id:
            team_id = event_type.team_id
        else:
            team_id = await session.scalar(
                select(EventType.team_id).where(EventType.id == booking.event_type_id)
            )
    by_event_type = booking.event_type_id is not None
    by_user = booking.user_id is not None and team_id is None
    if not (by_event_type or by_user):
        return []
    hooks = await session.scalars(
        _subscribers_statement(by_event_type=by_event_type, by_user=by_user),
        {"event_type_id": booking.event_type_id, "user_id": booking.user_id},
    )
    # Triggers are a JSON list: filtered here, alike on both databases (a user has few hooks).
    return [h for h in hooks if wanted.intersection(h.event_triggers or [])]


# --- booking events -------------------------------------------------------------------------------


# What a trigger means for the booking's planned MEETING_* events.
_PLANS_MEETINGS = frozenset({WebhookTrigger.BOOKING_CREATED, WebhookTrigger.BOOKING_RESCHEDULED})
_ENDS_MEETINGS = frozenset({WebhookTrigger.BOOKING_CANCELLED, WebhookTrigger.BOOKING_REJECTED})


async def announce(
    session: AsyncSession,
    trigger: WebhookTrigger,
    booking: AnyBooking,
    *,
    previous: Booking | None = None,
    moved_from: tuple[datetime, datetime] | None = None,
    payment: Payment | None = None,
    no_show: list[tuple[str, bool]] | None = None,
    written: Written | None = None,
) -> int:
    """Add one outbox event per webhook subscribed to ``trigger`` for ``booking``, in the
    caller's transaction (no commit), and keep the booking's MEETING_* plan in step: CREATED and
    RESCHEDULED (re)plan it, CANCELLED and REJECTED drop it, a reschedule drops ``previous``'s.
    Returns how many events were added.

    ``previous``: the booking a reschedule replaced; ``moved_from``: the old (start, end) when
    a booking itself was moved (PATCH); ``payment``: for BOOKING_PAID / PAYMENT_INITIATED;
    ``no_show``: the (email, noShow) pairs changed (BOOKING_NO_SHOW_UPDATED); ``written``:
    what the transaction that has just inserted ``booking`` holds (`bookings.common.Written`).
    """
    hooks = (
        await subscribers(
            session,
            booking,
            [trigger, *MEETING_TRIGGERS],
            event_type=written.event_type if written is not None else None,
        )
        if written is None or written.may_have_webhooks
        else []
    )
    wanting = [h for h in hooks if trigger in (h.event_triggers or [])]
    added = 0
    if wanting:
        created_at = utcnow()
        if trigger == WebhookTrigger.BOOKING_NO_SHOW_UPDATED:
            payload = no_show_payload(booking, no_show or [])
        else:
            facts = await load_facts(session, booking)
            payload = booking_payload(
                trigger, facts, previous=previous, moved_from=moved_from, payment=payment
            )
        added += await _add_events(session, wanting, trigger, booking, payload, created_at)
    if previous is not None:
        await drop_meeting_events(session, previous.id)
    if trigger in _PLANS_MEETINGS:
        meeting_hooks = [h for h in hooks if MEETING_TRIGGERS.intersection(h.event_triggers or [])]
        # A booking inserted just now has no planned events to drop.
        added += await _plan_meetings(
            session, booking, meeting_hooks, planned_before=written is None
        )
    elif trigger in _ENDS_MEETINGS:
        await drop_meeting_events(session, booking.id)
    return added


async def announce_new_booking(
    session: AsyncSession,
    booking: AnyBooking,
    *,
    previous: Booking | None = None,
    payment: Payment | None = None,
    written: Written | None = None,
) -> int:
    """POST /bookings wrote ``booking`` (new, a seat joined, or ``previous`` moved here):
    BOOKING_CREATED when accepted, BOOKING_RESCHEDULED when it replaced ``previous``,
    BOOKING_PAYMENT_INITIATED when it waits for ``payment``, else BOOKING_REQUESTED (as Cal.com's
    handleNewBooking)."""
    if booking.status == BookingStatus.ACCEPTED:
        trigger = WebhookTrigger.BOOKING_RESCHEDULED if previous else WebhookTrigger.BOOKING_CREATED
    elif payment is not None:
        trigger = WebhookTrigger.BOOKING_PAYMENT_INITIATED
    else:
        trigger = WebhookTrigger.BOOKING_REQUESTED
    return await announce(
        session, trigger, booking, previous=previous, payment=payment, written=written
    )


async def announce_patch(
    session: AsyncSession, booking: Booking, *, moved_from: tuple[datetime, datetime]
) -> int:
    """PATCH /bookings/{id}: a change of time is BOOKING_RESCHEDULED (the MEETING_* plan moves
    with it); a booking no longer accepted keeps no MEETING_* plan."""
    if booking.status != BookingStatus.ACCEPTED:
        await drop_meeting_events(session, booking.id)
        return 0
    if (booking.start_time, booking.end_time) == moved_from:
        return 0
    return await announce(
        session, WebhookTrigger.BOOKING_RESCHEDULED, booking, moved_from=moved_from
    )


async def announce_seat_given_up(
    session: AsyncSession,
    booking: Booking,
    leaving: list[Attendee],
    *,
    reason: str,
    cancelled_by: str,
) -> int:
    """An attendee gave up their seat of a seated booking, which goes on for the others (call
    after the attendee rows are deleted and flushed). As Cal.com's cancelAttendeeSeat:
    BOOKING_CANCELLED whose payload is the booking with ``attendees`` holding only the one(s)
    leaving, and ``status: "CANCELLED"``. The booking's MEETING_* plan stays, rendered again for
    the attendees who remain. Returns how many events were added."""
    hooks = await subscribers(
        session, booking, [WebhookTrigger.BOOKING_CANCELLED, *MEETING_TRIGGERS]
    )
    wanting = [h for h in hooks if WebhookTrigger.BOOKING_CANCELLED in (h.event_triggers or [])]
    added = 0
    if wanting:
        facts = await load_facts(session, booking)
        facts.attendees = leaving
        payload = booking_payload(WebhookTrigger.BOOKING_CANCELLED, facts)
        payload.update({"cancelledBy": cancelled_by, "cancellationReason": reason})
        added += await _add_events(
            session, wanting, WebhookTrigger.BOOKING_CANCELLED, booking, payload, utcnow()
        )
    meeting_hooks = [h for h in hooks if MEETING_TRIGGERS.intersection(h.event_triggers or [])]
    if meeting_hooks:
        added += await _plan_meetings(session, booking, meeting_hooks)
    return added


async def _add_events(
    session: AsyncSession,
    hooks: list[Webhook],
    trigger: WebhookTrigger,
    booking: AnyBooking,
    payload: dict[str, Any],
    created_at: datetime,
) -> int:
    default_body: str | None = None
    added = 0
    for hook in hooks:
        if hook.payload_template:
            try:
                body, content_type = render_template(
                    hook.payload_template, template_data(trigger, created_at, payload)
                )
            except TemplateError as error:
                await _unrenderable(session, hook, trigger, booking, created_at, str(error))
                continue
        else:
            if default_body is None:
                default_body = js_json(envelope(trigger, created_at, payload))
            body, content_type = default_body, JSON_CONTENT_TYPE
        session.add(
            WebhookEvent(
                webhook_id=hook.id,
                trigger=str(trigger),
                booking_id=booking.id,
                body=body,
                content_type=content_type,
                status=WebhookEventStatus.PENDING,
                attempts=0,
                next_attempt_at=created_at,
                created_at=created_at,
            )
        )
        added += 1
    await mark_written(session, "webhook")
    return added


async def _unrenderable(
    session: AsyncSession,
    hook: Webhook,
    trigger: WebhookTrigger,
    booking: AnyBooking,
    now: datetime,
    error: str,
) -> None:
    """A template that cannot render is the subscriber's mistake: the event is recorded as
    failed (visible in the deliveries log) instead of failing the booking."""
    failed = WebhookEvent(
        webhook_id=hook.id,
        trigger=str(trigger),
        booking_id=booking.id,
        body="",
        content_type=JSON_CONTENT_TYPE,
        status=WebhookEventStatus.FAILED,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(failed)
    await session.flush()
    session.add(
        WebhookDelivery(
            event_id=failed.id,
            webhook_id=hook.id,
            attempt=0,
            started_at=now,
            duration_ms=0,
            ok=False,
            error=error,
        )
    )


# --- scheduled MEETING_STARTED / MEETING_ENDED ----------------------------------------------------


def _meeting_event(
    hook: Webhook, trigger: WebhookTrigger, facts: BookingFacts, now: datetime, earliest: datetime
) -> WebhookEvent | None:
    booking = facts.booking
    due = booking.start_time if trigger == WebhookTrigger.MEETING_STARTED else booking.end_time
    if due < earliest:
        return None
    return WebhookEvent(
        webhook_id=hook.id,
        trigger=str(trigger),
        booking_id=booking.id,
        # Cal.com's scheduled path sends this flat body and ignores payload templates.
        body=js_json(meeting_body(trigger, facts)),
        content_type=JSON_CONTENT_TYPE,
        status=WebhookEventStatus.PENDING,
        attempts=0,
        next_attempt_at=due,
        created_at=now,
    )


async def schedule_meeting_events(session: AsyncSession, booking: Booking) -> int:
    """(Re)plan MEETING_STARTED at the booking's start and MEETING_ENDED at its end for the
    webhooks that want them. Drops the booking's earlier plan first, so calling it again after
    a change of time is right; plans nothing unless the booking is ACCEPTED. (`announce` does
    this for CREATED and RESCHEDULED by itself.)"""
    hooks = await subscribers(session, booking, MEETING_TRIGGERS)
    return await _plan_meetings(session, booking, hooks)


async def _plan_meetings(
    session: AsyncSession, booking: AnyBooking, hooks: list[Webhook], *, planned_before: bool = True
) -> int:
    if planned_before:
        await drop_meeting_events(session, booking.id)
    if booking.status != BookingStatus.ACCEPTED or not hooks:
        return 0
    facts = await load_facts(session, booking)
    now = utcnow()
    added = 0
    for hook in hooks:
        for trigger in (WebhookTrigger.MEETING_STARTED, WebhookTrigger.MEETING_ENDED):
            if trigger in (hook.event_triggers or []):
                planned = _meeting_event(hook, trigger, facts, now, now - MEETING_GRACE)
                if planned is not None:
                    session.add(planned)
                    added += 1
    if added:
        await mark_written(session, "webhook")
    return added


async def drop_meeting_events(session: AsyncSession, booking_id: int) -> int:
    """Mark the booking's not-yet-attempted MEETING_* events DROPPED (cancel, reject, move).
    One that already had an attempt goes on with its retries: that meeting did start or end."""
    result: Any = await session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.booking_id == booking_id,
            WebhookEvent.status == WebhookEventStatus.PENDING,
            WebhookEvent.trigger.in_([str(t) for t in MEETING_TRIGGERS]),
            WebhookEvent.attempts == 0,
        )
        .values(status=WebhookEventStatus.DROPPED, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


async def sync_meeting_events(session: AsyncSession, webhook: Webhook) -> int:
    """After a webhook is created or its triggers or scope change: its not-yet-attempted
    MEETING_* events are dropped and planned anew for the upcoming accepted bookings it covers
    now (Cal.com's updateTriggerForExistingBookings). Returns how many were planned."""
    await session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.webhook_id == webhook.id,
            WebhookEvent.status == WebhookEventStatus.PENDING,
            WebhookEvent.trigger.in_([str(t) for t in MEETING_TRIGGERS]),
            WebhookEvent.attempts == 0,
        )
        .values(status=WebhookEventStatus.DROPPED, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    wanted = [t for t in (WebhookTrigger.MEETING_STARTED, WebhookTrigger.MEETING_ENDED)
              if t in (webhook.event_triggers or [])]  # fmt: skip
    if not wanted:
        return 0
    now = utcnow()
    scopes = []
    if webhook.event_type_id is not None:
        scopes.append(Booking.event_type_id == webhook.event_type_id)
    if webhook.user_id is not None:
        # A user's webhooks cover the bookings they organise, except of team event types.
        personal = select(EventType.id).where(EventType.team_id.is_(None))
        scopes.append(
            and_(
                Booking.user_id == webhook.user_id,
                or_(Booking.event_type_id.is_(None), Booking.event_type_id.in_(personal)),
            )
        )
    if not scopes:
        return 0
    bookings = await session.scalars(
        select(Booking)
        .where(or_(*scopes), Booking.status == BookingStatus.ACCEPTED, Booking.end_time > now)
        .order_by(Booking.start_time, Booking.id)
    )
    rows = []
    # All their rows in a bounded number of queries, and the events added at the end: a query
    # per booking (and an autoflush before each) made thousands of round trips.
    for facts in await load_facts_many(session, list(bookings)):
        for trigger in wanted:
            # Only what is still ahead: a meeting that began before the hook existed is past news.
            row = _meeting_event(webhook, trigger, facts, now, now)
            if row is not None:
                rows.append(row)
    session.add_all(rows)
    if rows:
        await mark_written(session, "webhook")
    return len(rows)
