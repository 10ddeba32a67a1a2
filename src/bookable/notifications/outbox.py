"""Which emails a booking change sends, written to the email outbox in the change's transaction.

`mail_booking_change` runs beside the webhook and calendar planning of every booking change and
adds one `OutboundEmail` row per recipient with the facts of its message (what is true now;
`notifications.messages.stored_facts`) and its subject; the email dispatcher renders and sends
them after the commit, with retries (rendering was most of a booking's CPU in the request).
Nothing is sent, or even made, with ``BOOKABLE_EMAILS=off``.

Who gets what (Cal.com's set; `disableStandardEmails` in the event type's metadata honoured:
``all.host`` / ``all.attendee`` silence a side, ``confirmation.host`` / ``confirmation.attendee``
only the emails of a new or confirmed booking):

| change | attendees and guests | hosts (organiser, every host of a team booking) |
|---|---|---|
| new, accepted | confirmed (invite) | new booking (invite) |
| new, awaiting the host | requested | booking request (how to confirm or reject) |
| confirmed | confirmed (invite) | new booking (invite) |
| rejected | rejected (cancel) | — (the host did it) |
| rescheduled, PATCH of the time | rescheduled (invite) | rescheduled (invite) |
| cancelled | cancelled (cancel) | cancelled (cancel) |
| a seat taken | confirmed, to that attendee | new booking (invite) |
| a seat given up | cancelled, to that attendee | — (the meeting goes on) |

Safety: only the booking's own attendees and hosts receive mail (the SMTP envelope is the row's
recipient alone); an address that does not validate is recorded DROPPED, never sent; and a host's
bookings make at most ``BOOKABLE_EMAIL_MAX_PER_HOST_PER_HOUR`` emails an hour (more are DROPPED),
so a runaway script cannot turn the server into a mailer.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, ScalarSelect, Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids
from bookable.bookings.common import AnyAttendee, AnyBooking, Written, booking_attendees
from bookable.bookings.schemas import plain_ascii_email
from bookable.core.clock import utcnow
from bookable.core.dispatch import insert_written
from bookable.models import (
    Booking,
    BookingStatus,
    EmailStatus,
    EventType,
    OutboundEmail,
    User,
)
from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    mail_facts,
    stored_facts,
    subject_for,
)
from bookable.settings import Settings

# Booking responses that the email shows in its own places, not among "other answers".
SHOWN_ELSEWHERE = frozenset({"name", "email", "notes", "guests", "location", "rescheduleReason"})


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """What the server's settings say about booking emails (made once per app)."""

    enabled: bool
    sender: str  # the From header
    max_per_host_per_hour: int

    @classmethod
    def from_settings(cls, settings: Settings) -> MailPolicy:
        return cls(
            enabled=settings.emails == "on",
            sender=settings.email_from,
            max_per_host_per_hour=settings.email_max_per_host_per_hour,
        )

    @property
    def domain(self) -> str:
        return _domain_of(self.sender)


@lru_cache(maxsize=64)
def _domain_of(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "bookable"


class Change(enum.Enum):
    CREATED = "created"  # a new booking (accepted, or awaiting the host)
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    RESCHEDULED = "rescheduled"  # a new booking that replaced another, or a PATCH of the time
    CANCELLED = "cancelled"
    SEAT_TAKEN = "seat_taken"
    SEAT_GIVEN_UP = "seat_given_up"


# (attendee kind, host kind) for each change; None: that side gets nothing.
_KINDS: dict[Change, tuple[MailKind | None, MailKind | None]] = {
    Change.CONFIRMED: (MailKind.ATTENDEE_CONFIRMED, MailKind.HOST_NEW),
    Change.REJECTED: (MailKind.ATTENDEE_REJECTED, None),
    Change.RESCHEDULED: (MailKind.ATTENDEE_RESCHEDULED, MailKind.HOST_RESCHEDULED),
    Change.CANCELLED: (MailKind.ATTENDEE_CANCELLED, MailKind.HOST_CANCELLED),
    Change.SEAT_TAKEN: (MailKind.ATTENDEE_CONFIRMED, MailKind.HOST_NEW),
    Change.SEAT_GIVEN_UP: (MailKind.ATTENDEE_CANCELLED, None),
}
_CONFIRMATIONS = frozenset({MailKind.ATTENDEE_CONFIRMED, MailKind.HOST_NEW})


def kinds_for(change: Change, booking: AnyBooking) -> tuple[MailKind | None, MailKind | None]:
    if change is Change.CREATED or (
        change is Change.RESCHEDULED and booking.status != BookingStatus.ACCEPTED
    ):
        if booking.status == BookingStatus.ACCEPTED:
            return MailKind.ATTENDEE_CONFIRMED, MailKind.HOST_NEW
        return MailKind.ATTENDEE_REQUESTED, MailKind.HOST_REQUEST
    return _KINDS[change]


def _silenced(meta: dict[str, Any] | None, kind: MailKind, side: str) -> bool:
    """Cal.com's ``metadata.disableStandardEmails``: ``all.<side>``, and ``confirmation.<side>``
    for the emails of a new or confirmed booking."""
    disabled = (meta or {}).get("disableStandardEmails")
    if not isinstance(disabled, dict):
        return False
    every = disabled.get("all")
    if isinstance(every, dict) and every.get(side) is True:
        return True
    confirmation = disabled.get("confirmation")
    return (
        kind in _CONFIRMATIONS and isinstance(confirmation, dict) and confirmation.get(side) is True
    )


def _answer(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("value", value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


async def _facts(
    session: AsyncSession,
    booking: AnyBooking,
    host_ids: list[int],
    previous: Booking | None,
    moved_from: tuple[datetime, datetime] | None,
    written: Written | None,
) -> tuple[BookingMail, dict[int, Party], list[AnyAttendee]]:
    if written is not None and all(h in written.users for h in host_ids):
        users = {h: written.users[h] for h in host_ids}
    else:
        users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(host_ids)))}
    hosts = {
        user_id: Party(users[user_id].name or users[user_id].username or "", users[user_id].email,
                       users[user_id].time_zone)
        for user_id in host_ids
        if user_id in users
    }  # fmt: skip
    attendees = await booking_attendees(session, booking, written)
    organizer = hosts.get(booking.user_id or -1) or Party(
        "", booking.user_primary_email or "", "UTC"
    )
    old_start, old_end = moved_from or (
        (previous.start_time, previous.end_time) if previous is not None else (None, None)
    )
    responses = tuple(
        (str(label), _answer(value))
        for label, value in (booking.responses or {}).items()
        if label not in SHOWN_ELSEWHERE and _answer(value)
    )
    mail = BookingMail(
        booking_id=booking.id,
        booking_uid=booking.uid,
        ical_uid=booking.ical_uid or f"{booking.uid}@bookable",
        sequence=booking.ical_sequence or 0,
        title=booking.title,
        start=booking.start_time,
        end=booking.end_time,
        organizer=organizer,
        hosts=tuple(hosts[h] for h in host_ids if h in hosts),
        attendees=tuple(Party(a.name, a.email, a.time_zone) for a in attendees),
        location=booking.location,
        description=booking.description,
        responses=responses,
        cancellation_reason=booking.cancellation_reason,
        rejection_reason=booking.rejection_reason,
        previous_start=old_start,
        previous_end=old_end,
    )
    return mail, hosts, attendees


@lru_cache(maxsize=4096)  # pure, and the same hosts and bookers come back: checked once each
def _valid(address: str) -> bool:
    if plain_ascii_email(address) is not None:  # a booker's, validated the same way already
        return True
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# Built once (docs/architecture.md, "Hot paths"): every booking change counts.
_SENT_SINCE = select(func.count(OutboundEmail.id)).where(
    OutboundEmail.user_id == bindparam("user_id"),
    OutboundEmail.created_at > bindparam("since", type_=OutboundEmail.created_at.type),
    OutboundEmail.status != EmailStatus.DROPPED,
)


def sent_since(user_id: ColumnElement[int]) -> ScalarSelect[int]:
    """`_sent_this_hour`'s count as a column of another query (the booking's event type
    query asks it for the owner). Parameter: ``emails_since``."""
    return (
        select(func.count(OutboundEmail.id))
        .where(
            OutboundEmail.user_id == user_id,
            OutboundEmail.created_at
            > bindparam("emails_since", type_=OutboundEmail.created_at.type),
            OutboundEmail.status != EmailStatus.DROPPED,
        )
        .scalar_subquery()
    )


_EMAILS: Table = OutboundEmail.__table__  # type: ignore[assignment]


async def _sent_this_hour(
    session: AsyncSession, user_id: int | None, now: datetime, written: Written | None
) -> int:
    if user_id is None:
        return 0
    if written is not None and user_id in written.emails_this_hour:
        return written.emails_this_hour[user_id]
    count = await session.scalar(
        _SENT_SINCE, {"user_id": user_id, "since": now - timedelta(hours=1)}
    )
    return int(count or 0)


async def mail_booking_change(
    session: AsyncSession,
    policy: MailPolicy | None,
    change: Change,
    booking: AnyBooking,
    *,
    previous: Booking | None = None,
    moved_from: tuple[datetime, datetime] | None = None,
    attendees: Iterable[AnyAttendee] | None = None,
    written: Written | None = None,
) -> int:
    """Add the emails ``change`` of ``booking`` sends (call after the change is flushed), in
    the caller's transaction. ``previous``: the booking a reschedule replaced;
    ``moved_from``: the old times of a PATCH; ``attendees``: for a seat taken or given up, the
    attendee(s) concerned (a given-up seat's rows may be deleted already); ``written``: what
    the transaction that has just inserted ``booking`` holds (fewer queries). Returns how many
    emails will be sent."""
    rows, sent = await _email_rows(
        session,
        policy,
        change,
        booking,
        previous=previous,
        moved_from=moved_from,
        attendees=attendees,
        written=written,
    )
    if rows:
        # One INSERT for all of them, no ids read back (nothing here needs them); the wake-up
        # of the email dispatchers rides on it (`insert_written`).
        await insert_written(session, "email", _EMAILS, rows, wake=sent > 0)
    return sent


# A row's facts begin with its booking's id (`messages.stored_facts` puts "mail" first,
# `mail_facts` "booking_id" first): a statement that inserts a booking and its emails together
# writes the new id between this head and the rest of each row's text (`NewBookingEmails`).
FACTS_HEAD = '{"mail": {"booking_id": '


@dataclass(frozen=True, slots=True)
class NewBookingEmails:
    """The email rows of a new booking planned before it is inserted, for the statement that
    inserts it (`bookings.writes`, PostgreSQL). ``rows``: every column but ``booking_id`` (the
    statement's new id) and ``facts``, whose JSON text is `FACTS_HEAD`, the booking's id, then
    the row's ``facts_tails`` entry: byte for byte what `mail_booking_change` writes."""

    rows: list[dict[str, Any]]
    facts_tails: list[str]
    wake: bool  # one is PENDING: wake the email dispatchers (`insert_written`'s ``wake``)


async def new_booking_emails(
    session: AsyncSession, policy: MailPolicy | None, booking: AnyBooking, written: Written
) -> NewBookingEmails | None:
    """The rows `mail_booking_change` would add for ``booking``, a new booking (`CREATED`)
    that is not inserted yet (no id), planned from ``written`` alone (no query when it holds
    the organiser and their emails of the hour). None: no email."""
    rows, sent = await _email_rows(session, policy, Change.CREATED, booking, written=written)
    if not rows:
        return None
    tails = [_facts_after_booking_id(row.pop("facts")) for row in rows]
    for row in rows:
        del row["booking_id"]
    return NewBookingEmails(rows, tails, wake=sent > 0)


def _facts_after_booking_id(facts: dict[str, Any]) -> str:
    """``facts`` as the JSON column writes it (SQLAlchemy's default serializer, `json.dumps`),
    after `FACTS_HEAD` and the booking id."""
    text = json.dumps(facts)
    head = FACTS_HEAD + json.dumps(facts["mail"]["booking_id"])
    if not text.startswith(head):
        raise ValueError("an email row's facts no longer begin with the booking id")
    return text[len(head) :]


async def _email_rows(
    session: AsyncSession,
    policy: MailPolicy | None,
    change: Change,
    booking: AnyBooking,
    *,
    previous: Booking | None = None,
    moved_from: tuple[datetime, datetime] | None = None,
    attendees: Iterable[AnyAttendee] | None = None,
    written: Written | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """`mail_booking_change`'s rows (each column by key) and how many of them are PENDING."""
    if policy is None or not policy.enabled:
        return [], 0
    attendee_kind, host_kind = kinds_for(change, booking)
    meta: dict[str, Any] | None = None
    if written is not None and written.event_type.id == booking.event_type_id:
        meta = written.event_type.meta
    elif booking.event_type_id is not None:
        meta = await session.scalar(
            select(EventType.meta).where(EventType.id == booking.event_type_id)
        )
    if attendee_kind is not None and _silenced(meta, attendee_kind, "attendee"):
        attendee_kind = None
    if host_kind is not None and _silenced(meta, host_kind, "host"):
        host_kind = None
    if attendee_kind is None and host_kind is None:
        return [], 0

    host_ids = written.host_ids if written is not None else await booking_host_ids(session, booking)
    mail, hosts, booked = await _facts(session, booking, host_ids, previous, moved_from, written)
    recipients: list[tuple[MailKind, Party]] = []
    if attendee_kind is not None:
        chosen = list(attendees) if attendees is not None else booked
        recipients += [(attendee_kind, Party(a.name, a.email, a.time_zone)) for a in chosen]
    if host_kind is not None:
        ordered = [booking.user_id, *(h for h in host_ids if h != booking.user_id)]
        recipients += [(host_kind, hosts[h]) for h in ordered if h in hosts]

    now = utcnow()
    room = policy.max_per_host_per_hour - await _sent_this_hour(
        session, booking.user_id, now, written
    )
    change_token = secrets.token_hex(6)
    change_key = f"{booking.uid}.{change_token}"  # the rows of this change share an invitation
    seen: set[tuple[MailKind, str]] = set()
    rows: list[dict[str, Any]] = []
    shared_facts = mail_facts(mail)
    sent = 0
    for index, (kind, party) in enumerate(recipients):
        if (kind, party.email.lower()) in seen:  # a host who is also an attendee: once
            continue
        seen.add((kind, party.email.lower()))
        message_id = f"{booking.uid}.{kind.value}.{change_token}.{index}@{policy.domain}"
        status, error = EmailStatus.PENDING, None
        if not _valid(party.email):
            status, error = EmailStatus.DROPPED, "not a valid email address"
        elif room <= 0:
            status, error = (
                EmailStatus.DROPPED,
                f"over the limit of {policy.max_per_host_per_hour} emails an hour for this "
                "host (BOOKABLE_EMAIL_MAX_PER_HOST_PER_HOUR)",
            )
        rows.append(
            {
                "booking_id": booking.id,
                "user_id": booking.user_id,
                "kind": kind.value,
                "recipient": party.email,
                "message_id": message_id,
                "subject": subject_for(mail, kind, party),
                "facts": stored_facts(
                    shared_facts, party, sender=policy.sender, stamp=now, change=change_key
                ),
                "message": None,
                "status": status,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": error,
                "created_at": now,
            }
        )
        if status is EmailStatus.PENDING:
            room -= 1
            sent += 1
    return rows, sent


async def booking_emails(session: AsyncSession, booking: Booking) -> list[OutboundEmail]:
    """The booking's emails, oldest first."""
    return list(
        await session.scalars(
            select(OutboundEmail)
            .where(OutboundEmail.booking_id == booking.id)
            .order_by(OutboundEmail.id)
        )
    )
