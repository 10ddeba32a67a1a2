"""Webhook bodies in Cal.com's version 2021-10-20 layout.

A booking event is ``{"triggerEvent", "createdAt", "payload": {...}}``: the payload is Cal.com's
CalendarEvent (booking, organizer, attendees with their UTC offsets, form responses) plus
event-type facts and the extras of the trigger. BOOKING_NO_SHOW_UPDATED carries only
``{bookingUid, bookingId, attendees, message}``. The scheduled MEETING_STARTED / MEETING_ENDED
bodies are flat, as Cal.com's scheduled-trigger path sends them: ``{"triggerEvent", ...booking
columns, "user", "attendees", "payment", "references"}``.

Everything is loaded with explicit queries (relationships here are never lazy-loaded), and
serialised exactly as JavaScript's ``JSON.stringify`` would: receivers verify the signature over
the bytes, and some compare bodies with what Cal.com sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from bookable.core.schemas import format_instant
from bookable.models import (
    Attendee,
    Booking,
    BookingHost,
    BookingReference,
    EventType,
    Payment,
    Team,
    User,
)
from bookable.webhooks.triggers import WebhookTrigger

if TYPE_CHECKING:
    from bookable.bookings.common import AnyBooking

WEBHOOK_VERSION = "2021-10-20"

# Cal.com's default labels of the system booking fields (what its form builder shows).
DEFAULT_LABELS = {
    "name": "your_name",
    "email": "email_address",
    "location": "location",
    "title": "what_is_this_meeting_about",
    "notes": "additional_notes",
    "guests": "additional_guests",
    "rescheduleReason": "reschedule_reason",
    "attendeePhoneNumber": "phone_number",
    "smsReminderNumber": "number_text_notifications",
}
# Fields Cal.com keeps out of `userFieldsResponses` (they are the booker's, not custom ones).
SYSTEM_FIELDS = frozenset(DEFAULT_LABELS)

# Triggers whose payload carries the booking's metadata (Cal.com's 2021-10-20 builder).
_WITH_METADATA = frozenset(
    {
        WebhookTrigger.BOOKING_CREATED,
        WebhookTrigger.BOOKING_REQUESTED,
        WebhookTrigger.BOOKING_RESCHEDULED,
    }
)
_STATUS_OF = {
    WebhookTrigger.BOOKING_CREATED: "ACCEPTED",
    WebhookTrigger.BOOKING_REQUESTED: "PENDING",
    WebhookTrigger.BOOKING_REJECTED: "REJECTED",
    WebhookTrigger.BOOKING_CANCELLED: "CANCELLED",
    WebhookTrigger.BOOKING_RESCHEDULED: "ACCEPTED",
    WebhookTrigger.BOOKING_PAID: "ACCEPTED",
    WebhookTrigger.BOOKING_PAYMENT_INITIATED: "ACCEPTED",
}
MEETING_TRIGGERS = frozenset({WebhookTrigger.MEETING_STARTED, WebhookTrigger.MEETING_ENDED})


# --- JSON as JavaScript writes it -----------------------------------------------------------------


def _js_numbers(value: Any) -> Any:
    """Integral floats as integers: JavaScript has one number type and prints 1.0 as ``1``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_js_numbers(v) for v in value]
    return value


def js_json(value: Any) -> str:
    """``JSON.stringify(value)``: no spaces, raw UTF-8, keys in insertion order."""
    return json.dumps(
        _js_numbers(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def iso_ms(value: datetime) -> str:
    """A JavaScript Date in JSON (``toISOString``): ``2023-05-25T09:30:00.000Z``."""
    return format_instant(value)


def iso_seconds(value: datetime) -> str:
    """dayjs(...).utc().format(), Cal.com's CalendarEvent times: ``2023-05-25T09:30:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_offset(zone: str | None, at: datetime) -> int:
    """Minutes east of UTC of ``zone`` at the instant ``at`` (Asia/Dubai: 240); 0 if unknown."""
    if not zone:
        return 0
    try:
        offset = at.astimezone(ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds() // 60) if offset is not None else 0


# --- what a body is built from --------------------------------------------------------------------


@dataclass
class BookingFacts:
    """A booking and everything its payload shows, loaded explicitly."""

    booking: AnyBooking  # a new booking's plain values, or its row
    attendees: list[Attendee]
    payments: list[Payment]
    references: list[BookingReference]
    event_type: EventType | None
    organizer: User | None
    team: Team | None = None
    team_members: list[User] = field(default_factory=list)


async def load_facts(session: AsyncSession, booking: AnyBooking) -> BookingFacts:
    """Read the rows a payload needs, each with its own query (no lazy loading)."""
    attendees = list(
        await session.scalars(
            select(Attendee).where(Attendee.booking_id == booking.id).order_by(Attendee.id)
        )
    )
    payments = list(
        await session.scalars(
            select(Payment).where(Payment.booking_id == booking.id).order_by(Payment.id)
        )
    )
    references = list(
        await session.scalars(
            select(BookingReference)
            .where(BookingReference.booking_id == booking.id)
            .order_by(BookingReference.id)
        )
    )
    event_type = organizer = None
    if booking.event_type_id is not None:
        # The organiser comes with the event type: one round trip, held by the session or not
        # (POST /bookings reads a personal event type's owner as plain columns, not a `User`).
        row = (
            await session.execute(
                select(EventType, User)
                .outerjoin(User, User.id == booking.user_id)
                .where(EventType.id == booking.event_type_id)
                .options(raiseload(EventType.custom_inputs), raiseload(EventType.hosts))
            )
        ).first()
        if row is not None:
            event_type, organizer = row
    if organizer is None and booking.user_id is not None:
        organizer = await session.get(User, booking.user_id)
    facts = BookingFacts(booking, attendees, payments, references, event_type, organizer)
    if event_type is not None and event_type.team_id is not None:
        facts.team = await session.get(Team, event_type.team_id)
        if event_type.scheduling_type == "COLLECTIVE":
            # Cal.com lists a collective booking's other hosts as the team's members.
            facts.team_members = list(
                await session.scalars(
                    select(User)
                    .join(BookingHost, BookingHost.user_id == User.id)
                    .where(BookingHost.booking_id == booking.id, User.id != booking.user_id)
                    .order_by(User.id)
                )
            )
    return facts


# Bookings per query when loading facts for many (keeps IN lists well under drivers' limits).
FACTS_BATCH = 500


async def load_facts_many(session: AsyncSession, bookings: list[Booking]) -> list[BookingFacts]:
    """`load_facts` for many bookings, in a bounded number of queries: per batch of
    ``FACTS_BATCH`` bookings, one query per kind of row (attendees, payments, references,
    collective co-hosts), plus one for all their event types, organizers and teams. In the order
    of ``bookings``; each one's rows in the order `load_facts` gives them."""
    event_type_ids = {b.event_type_id for b in bookings if b.event_type_id is not None}
    event_types: dict[int, EventType] = {}
    for chunk in _chunks(sorted(event_type_ids)):
        for event_type in await session.scalars(
            select(EventType)
            .where(EventType.id.in_(chunk))
            .options(raiseload(EventType.custom_inputs), raiseload(EventType.hosts))
        ):
            event_types[event_type.id] = event_type
    user_ids = sorted({b.user_id for b in bookings if b.user_id is not None})
    users: dict[int, User] = {}
    for chunk in _chunks(user_ids):
        users.update(
            {u.id: u for u in await session.scalars(select(User).where(User.id.in_(chunk)))}
        )
    team_ids = sorted({e.team_id for e in event_types.values() if e.team_id is not None})
    teams: dict[int, Team] = {}
    for chunk in _chunks(team_ids):
        teams.update(
            {t.id: t for t in await session.scalars(select(Team).where(Team.id.in_(chunk)))}
        )

    facts: list[BookingFacts] = []
    for chunk in _chunks(bookings):
        ids = [b.id for b in chunk]
        attendees = await _grouped(session, Attendee, Attendee.booking_id, ids, Attendee.id)
        payments = await _grouped(session, Payment, Payment.booking_id, ids, Payment.id)
        references = await _grouped(
            session, BookingReference, BookingReference.booking_id, ids, BookingReference.id
        )
        collective = [
            b.id
            for b in chunk
            if b.event_type_id in event_types
            and event_types[b.event_type_id].team_id is not None
            and event_types[b.event_type_id].scheduling_type == "COLLECTIVE"
        ]
        co_hosts: dict[int, list[User]] = {}
        if collective:
            rows = await session.execute(
                select(BookingHost.booking_id, User)
                .join(User, BookingHost.user_id == User.id)
                .where(BookingHost.booking_id.in_(collective))
                .order_by(BookingHost.booking_id, User.id)
            )
            for booking_id, user in rows.all():
                co_hosts.setdefault(booking_id, []).append(user)
        for booking in chunk:
            event_type = event_types.get(booking.event_type_id or -1)
            one = BookingFacts(
                booking,
                attendees.get(booking.id, []),
                payments.get(booking.id, []),
                references.get(booking.id, []),
                event_type,
                users.get(booking.user_id) if booking.user_id is not None else None,
            )
            if event_type is not None and event_type.team_id is not None:
                one.team = teams.get(event_type.team_id)
                if event_type.scheduling_type == "COLLECTIVE":
                    # Cal.com lists a collective booking's other hosts as the team's members.
                    one.team_members = [
                        u for u in co_hosts.get(booking.id, []) if u.id != booking.user_id
                    ]
            facts.append(one)
    return facts


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + FACTS_BATCH] for i in range(0, len(items), FACTS_BATCH)]


async def _grouped(
    session: AsyncSession, model: Any, booking_column: Any, booking_ids: list[int], order: Any
) -> dict[int, list[Any]]:
    """The rows of ``model`` of these bookings, by booking id, each list in ``order``."""
    grouped: dict[int, list[Any]] = {}
    for row in await session.scalars(
        select(model).where(booking_column.in_(booking_ids)).order_by(order)
    ):
        grouped.setdefault(row.booking_id, []).append(row)
    return grouped


# --- booking payloads (2021-10-20) ----------------------------------------------------------------


def _name_parts(name: str) -> tuple[str, str]:
    """Cal.com's firstName/lastName: the first word, and the rest."""
    trimmed = (name or "").strip()
    first, _, last = trimmed.partition(" ")
    return first, last.strip()


def _time_format(user: User) -> str:
    return "HH:mm" if user.time_format == 24 else "h:mma"


def _organizer(user: User | None, start: datetime) -> dict[str, Any]:
    if user is None:
        return {}
    return {
        "id": user.id,
        "name": user.name or user.username or "Nameless",
        "email": user.email,
        "username": user.username,
        "timeZone": user.time_zone,
        "language": {"locale": user.locale or "en"},
        "timeFormat": _time_format(user),
        "utcOffset": utc_offset(user.time_zone, start),
    }


def _attendee(attendee: Attendee, start: datetime) -> dict[str, Any]:
    first, last = _name_parts(attendee.name)
    person: dict[str, Any] = {
        "email": attendee.email,
        "name": attendee.name,
        "firstName": first,
        "lastName": last,
        "timeZone": attendee.time_zone,
    }
    if attendee.phone_number:
        person["phoneNumber"] = attendee.phone_number
    person["language"] = {"locale": attendee.locale or "en"}
    person["utcOffset"] = utc_offset(attendee.time_zone, start)
    return person


def _team_member(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name or user.username or "",
        "firstName": "",
        "lastName": "",
        "timeZone": user.time_zone,
        "language": {"locale": user.locale or "en"},
    }


def _field_labels(event_type: EventType | None) -> dict[str, tuple[str, bool]]:
    """name -> (label, hidden) from the event type's booking fields."""
    labels: dict[str, tuple[str, bool]] = {}
    for entry in (event_type.booking_fields if event_type else None) or []:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str):
            label = entry.get("label")
            labels[name] = (
                label if isinstance(label, str) and label else DEFAULT_LABELS.get(name, name),
                bool(entry.get("hidden")),
            )
    return labels


def calendar_responses(
    responses: Mapping[str, Any] | None, event_type: EventType | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cal.com's (responses, userFieldsResponses): each answer as ``{label, value}``."""
    labels = _field_labels(event_type)
    every: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in (responses or {}).items():
        label, hidden = labels.get(name, (DEFAULT_LABELS.get(name, name), False))
        entry: dict[str, Any] = {"label": label, "value": value}
        if hidden:
            entry["isHidden"] = True
        every[name] = entry
        if name not in SYSTEM_FIELDS:
            custom[name] = entry
    return every, custom


def booking_payload(
    trigger: WebhookTrigger,
    facts: BookingFacts,
    *,
    previous: Booking | None = None,
    moved_from: tuple[datetime, datetime] | None = None,
    payment: Payment | None = None,
) -> dict[str, Any]:
    """The ``payload`` object of a booking trigger (Cal.com's 2021-10-20 builder).
    ``previous``: the booking a reschedule replaced; ``moved_from``: the (start, end) a booking
    had before it was itself moved (PATCH)."""
    booking, event_type = facts.booking, facts.event_type
    start, end = booking.start_time, booking.end_time
    responses, user_fields = calendar_responses(booking.responses, event_type)
    notes = (booking.responses or {}).get("notes")
    additional_notes = notes if isinstance(notes, str) else ""
    payload: dict[str, Any] = {
        "type": event_type.slug if event_type else None,
        "title": booking.title,
        # Cal.com: the event type's description, else the booker's notes (sendPayload's rule).
        "description": (event_type.description if event_type else None)
        or booking.description
        or additional_notes,
        "additionalNotes": additional_notes,
        "customInputs": booking.custom_inputs or {},
        "startTime": iso_seconds(start),
        "endTime": iso_seconds(end),
        "organizer": _organizer(facts.organizer, start),
        "responses": responses,
        "userFieldsResponses": user_fields,
        "attendees": [_attendee(a, start) for a in facts.attendees],
        "location": booking.location,
        # Cal.com's legacy REJECTED payload carried an empty list here.
        "destinationCalendar": [] if trigger == WebhookTrigger.BOOKING_REJECTED else None,
        "hideCalendarNotes": bool(event_type.hide_calendar_notes) if event_type else False,
        "requiresConfirmation": (True if event_type and event_type.requires_confirmation else None),
        "eventTypeId": booking.event_type_id,
        "seatsShowAttendees": event_type.seats_show_attendees if event_type else None,
        "seatsPerTimeSlot": event_type.seats_per_time_slot if event_type else None,
        "seatsShowAvailabilityCount": (
            event_type.seats_show_availability_count if event_type else None
        ),
        "schedulingType": event_type.scheduling_type if event_type else None,
        "iCalUID": booking.ical_uid,
        "iCalSequence": booking.ical_sequence,
        "uid": booking.uid,
    }
    if facts.team is not None:
        payload["team"] = {
            "name": facts.team.name,
            "members": [_team_member(u) for u in facts.team_members],
            "id": facts.team.id,
        }
    payload.update(
        {
            "eventTitle": event_type.title if event_type else None,
            "eventDescription": event_type.description if event_type else None,
            "price": (event_type.price or 0) if event_type else 0,
            "currency": (event_type.currency or "usd") if event_type else "usd",
            "length": int((end - start).total_seconds() // 60),
            "bookingId": booking.id,
            "hashedLink": None,
        }
    )
    if booking.sms_reminder_number:
        payload["smsReminderNumber"] = booking.sms_reminder_number
    payload["assignmentReason"] = None
    if trigger in _WITH_METADATA:
        payload["metadata"] = booking.meta or {}
    payload["status"] = _STATUS_OF.get(trigger, str(booking.status))
    payload.update(_extras(trigger, booking, previous, moved_from, payment))
    return payload


def _extras(
    trigger: WebhookTrigger,
    booking: AnyBooking,
    previous: Booking | None,
    moved_from: tuple[datetime, datetime] | None,
    payment: Payment | None,
) -> dict[str, Any]:
    if trigger == WebhookTrigger.BOOKING_REJECTED:
        return {"rejectionReason": booking.rejection_reason}
    if trigger == WebhookTrigger.BOOKING_CANCELLED:
        return {
            "cancelledBy": booking.cancelled_by,
            "cancellationReason": booking.cancellation_reason,
            "requestReschedule": False,
        }
    if trigger == WebhookTrigger.BOOKING_RESCHEDULED:
        # The booking that moved, and where it was; for a PATCH of the time it is this one.
        old = previous or booking
        old_start, old_end = (
            (previous.start_time, previous.end_time) if previous else moved_from or (None, None)
        )
        return {
            "rescheduleId": old.id,
            "rescheduleUid": old.uid,
            "rescheduleStartTime": iso_seconds(old_start) if old_start else None,
            "rescheduleEndTime": iso_seconds(old_end) if old_end else None,
            "rescheduledBy": previous.rescheduled_by if previous else booking.rescheduled_by,
        }
    if trigger in (WebhookTrigger.BOOKING_PAID, WebhookTrigger.BOOKING_PAYMENT_INITIATED):
        return {
            "paymentId": payment.id if payment else None,
            "paymentData": payment_json(payment) if payment else None,
        }
    return {}


def no_show_payload(booking: Booking, attendees: list[tuple[str, bool]]) -> dict[str, Any]:
    """BOOKING_NO_SHOW_UPDATED: only what changed, with Cal.com's English message."""
    if len(attendees) == 1:
        email, no_show = attendees[0]
        message = f"{email} {'marked' if no_show else 'unmarked'} as no-show"
    else:
        message = "No-show status updated"
    return {
        "bookingUid": booking.uid,
        "bookingId": booking.id,
        "attendees": [{"email": email, "noShow": no_show} for email, no_show in attendees],
        "message": message,
    }


def envelope(trigger: WebhookTrigger | str, created_at: datetime, payload: dict[str, Any]) -> dict:
    """The default body: ``{"triggerEvent", "createdAt", "payload"}``."""
    return {"triggerEvent": str(trigger), "createdAt": iso_ms(created_at), "payload": payload}


def template_data(
    trigger: WebhookTrigger | str, created_at: datetime, payload: dict[str, Any]
) -> dict[str, Any]:
    """What a payloadTemplate sees: the payload's fields at the top, then the two envelope
    fields (which win over payload fields of the same name, as in Cal.com)."""
    return {**payload, "triggerEvent": str(trigger), "createdAt": iso_ms(created_at)}


# --- scheduled MEETING_* bodies (flat) ------------------------------------------------------------


def payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "uid": payment.uid,
        "appId": payment.app_id,
        "bookingId": payment.booking_id,
        "amount": payment.amount,
        "fee": payment.fee,
        "currency": payment.currency,
        "success": payment.success,
        "refunded": payment.refunded,
        "data": payment.data or {},
        "externalId": payment.external_id,
        "paymentOption": payment.payment_option,
    }


def _reference_json(reference: BookingReference) -> dict[str, Any]:
    return {
        "id": reference.id,
        "type": reference.type,
        "uid": reference.uid,
        "meetingId": reference.meeting_id,
        "thirdPartyRecurringEventId": reference.third_party_recurring_event_id,
        "meetingPassword": reference.meeting_password,
        "meetingUrl": reference.meeting_url,
        "bookingId": reference.booking_id,
        "externalCalendarId": reference.external_calendar_id,
        "deleted": reference.deleted,
        "credentialId": reference.credential_id,
    }


def _optional_ms(value: datetime | None) -> str | None:
    return iso_ms(value) if value is not None else None


def meeting_body(trigger: WebhookTrigger, facts: BookingFacts) -> dict[str, Any]:
    """MEETING_STARTED / MEETING_ENDED: ``{triggerEvent, ...booking}``, not wrapped in
    ``payload``; dates as JavaScript Dates serialise (with milliseconds), ``createdAt`` being the
    booking's."""
    booking, user = facts.booking, facts.organizer
    return {
        "triggerEvent": str(trigger),
        "id": booking.id,
        "uid": booking.uid,
        "idempotencyKey": None,
        "userId": booking.user_id,
        "userPrimaryEmail": booking.user_primary_email,
        "eventTypeId": booking.event_type_id,
        "title": booking.title,
        "description": booking.description,
        "customInputs": booking.custom_inputs,
        "responses": booking.responses,
        "startTime": iso_ms(booking.start_time),
        "endTime": iso_ms(booking.end_time),
        "location": booking.location,
        "createdAt": iso_ms(booking.created_at),
        "updatedAt": _optional_ms(booking.updated_at),
        "status": str(booking.status),
        "paid": booking.paid,
        "destinationCalendarId": booking.destination_calendar_id,
        "cancellationReason": booking.cancellation_reason,
        "rejectionReason": booking.rejection_reason,
        "reassignReason": None,
        "rescheduled": booking.rescheduled,
        "fromReschedule": booking.from_reschedule,
        "recurringEventId": booking.recurring_event_id,
        "smsReminderNumber": booking.sms_reminder_number,
        "metadata": booking.meta or {},
        "isRecorded": booking.is_recorded,
        "iCalUID": booking.ical_uid,
        "iCalSequence": booking.ical_sequence,
        "rating": booking.rating,
        "noShowHost": booking.no_show_host,
        "oneTimePassword": None,
        "cancelledBy": booking.cancelled_by,
        "rescheduledBy": booking.rescheduled_by,
        "creationSource": booking.creation_source,
        "user": (
            {
                "email": user.email,
                "name": user.name,
                "timeZone": user.time_zone,
                "username": user.username,
            }
            if user is not None
            else None
        ),
        "attendees": [
            {
                "id": a.id,
                "email": a.email,
                "name": a.name,
                "timeZone": a.time_zone,
                "phoneNumber": a.phone_number,
                "locale": a.locale,
                "bookingId": a.booking_id,
                "noShow": a.no_show,
            }
            for a in facts.attendees
        ],
        "payment": [payment_json(p) for p in facts.payments],
        "references": [_reference_json(r) for r in facts.references],
    }
