"""Booking use-cases. One availability path: every create, reschedule and confirm asks the
scheduling engine (`check_booking`) with the same data GET /slots uses, inside the transaction
that writes. Double bookings are refused by the database itself: PostgreSQL's exclusion
constraint on a host's accepted bookings, and SQLite's serialised writers (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select, func, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, raiseload, selectinload

from bookable.bookings.schemas import (
    LEGACY_FIELDS,
    MAX_BOOKING_LENGTH,
    TOO_LONG,
    Booker,
    BookingCreate,
    BookingPatch,
    parse_instant,
)
from bookable.core.auth import Caller
from bookable.core.clock import clock
from bookable.core.errors import ApiError, BadRequest, Forbidden, NotFound, format_validation_errors
from bookable.core.schemas import is_db_id
from bookable.models import (
    Attendee,
    Booking,
    BookingHost,
    BookingStatus,
    EventType,
    Host,
    Membership,
    MembershipRole,
    Payment,
    User,
)
from bookable.scheduling import (
    Refusal,
    SchedulingKind,
    check_booking,
    check_team_booking,
    pick_round_robin_host,
)
from bookable.slots.service import (
    Team,
    allowed_durations,
    event_rules,
    load_host_calendar,
    load_team,
    readable_event_types,
)
from bookable.webhooks.outbox import (
    announce,
    announce_new_booking,
    announce_patch,
    announce_seat_given_up,
)
from bookable.webhooks.triggers import WebhookTrigger

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
HOST_OVERLAP_CONSTRAINT = "ex_booking_hosts_overlap"
BLOCKING_STATUSES = (BookingStatus.ACCEPTED,)
# PostgreSQL: writers of a host's accepted bookings queue on advisory locks (host id, UTC day),
# and an insert aborted as a deadlock victim anyway is tried again: see insert_booking.
# A span of more than LOCKED_DAYS_MAX UTC days takes the host's whole-calendar key exclusively
# instead; every shorter span takes that key shared, so one lock of each pair always conflicts.
LOCKED_DAYS_MAX = 7
_WHOLE_CALENDAR = -(2**31)  # below every day number, so it is always taken first
_LOCK_HOST_DAYS = text(
    "SELECT CASE WHEN day = CAST(:whole AS integer) "
    "THEN pg_advisory_xact_lock_shared(CAST(:host AS integer), day) "
    "ELSE pg_advisory_xact_lock(CAST(:host AS integer), day) END "
    "FROM (SELECT CAST(:whole AS integer) AS day UNION ALL "
    "SELECT generate_series(CAST(:first AS integer), CAST(:last AS integer))) AS days"
)
_LOCK_HOST_CALENDAR = text(
    "SELECT pg_advisory_xact_lock(CAST(:host AS integer), CAST(:whole AS integer))"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEADLOCK_SQLSTATE = "40P01"
INSERT_ATTEMPTS = 3


class BookingRefused(ApiError):
    """A refusal with Cal.com's code as `message` and our plain words as `reason`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status, refusal.code, extra={"reason": refusal.reason})


def new_uid() -> str:
    """22 base58 characters, the shape of Cal.com's booking uids."""
    return "".join(secrets.choice(_BASE58) for _ in range(22))


# --- who may see what ---------------------------------------------------------------------------


def listable(
    caller: Caller, user_ids: Sequence[int] = (), co_hosted: Sequence[int] = ()
) -> Select[tuple[Booking]]:
    """GET /bookings: a user lists the bookings they host (``co_hosted``: the team bookings
    organised by someone else that occupy them too, see `co_hosted_ids`); an admin all, or
    those of ``user_ids`` as host or as attendee (Cal.com v1's rules)."""
    query = select(Booking)
    if not caller.is_admin:
        if co_hosted:
            return query.where(or_(Booking.user_id == caller.user_id, Booking.id.in_(co_hosted)))
        # The common case keeps the plain predicate: an index-only scan of the host's bookings.
        return query.where(Booking.user_id == caller.user_id)
    if user_ids:
        ids = [i for i in user_ids if is_db_id(i)]
        as_attendee = select(Attendee.booking_id).where(
            func.lower(Attendee.email).in_(select(func.lower(User.email)).where(User.id.in_(ids)))
        )
        return query.where(or_(Booking.user_id.in_(ids), Booking.id.in_(as_attendee)))
    return query


async def list_bookings(
    session: AsyncSession,
    caller: Caller,
    *,
    user_ids: Sequence[int],
    attendee_emails: Sequence[str],
    date_from: datetime | None,
    date_to: datetime | None,
    sort_by: str | None,
    descending: bool,
    page: tuple[int, int] | None,
) -> list[Booking]:
    """GET /bookings. ``page`` is (page number, page size)."""
    query = listable(caller, user_ids, await co_hosted_ids(session, caller))
    if attendee_emails:
        query = query.where(
            Booking.id.in_(
                select(Attendee.booking_id).where(
                    func.lower(Attendee.email).in_([e.lower() for e in attendee_emails])
                )
            )
        )
    if date_from is not None:
        query = query.where(Booking.start_time >= date_from)
    if date_to is not None:
        query = query.where(Booking.end_time <= date_to)
    column = {"createdAt": Booking.created_at, "updatedAt": Booking.updated_at}.get(
        sort_by or "", Booking.start_time
    )
    # NULLs (a never-updated booking's updatedAt) sort as PostgreSQL, and so Cal.com, sorts them:
    # last ascending, first descending; SQLite would put them the other way round.
    ordering = (
        (column.desc().nulls_first(), Booking.id.desc())
        if descending
        else (column.asc().nulls_last(), Booking.id.asc())
    )
    if page is not None:
        number, size = page
        # Deferred join: page through ids alone (an index-only scan of (user_id, start_time,
        # id)), then read the full rows of just that page. OFFSET still walks the skipped
        # entries, but index entries, not rows.
        page_ids = (
            query.with_only_columns(Booking.id)
            .order_by(*ordering)
            .offset((number - 1) * size)
            .limit(size)
            .subquery()
        )
        query = select(Booking).where(Booking.id.in_(select(page_ids.c.id)))
    query = query.order_by(*ordering).options(
        selectinload(Booking.attendees), selectinload(Booking.payments)
    )
    return list(await session.scalars(query))


async def co_hosted_ids(session: AsyncSession, caller: Caller) -> list[int]:
    """Team bookings that occupy the caller though another host organises them."""
    if caller.is_admin:
        return []
    return list(
        await session.scalars(
            select(BookingHost.booking_id).where(
                BookingHost.user_id == caller.user_id, ~BookingHost.organizer
            )
        )
    )


def hosted_by(caller: Caller, booking_id: InstrumentedAttribute[int]) -> ColumnElement[bool]:
    """``booking_id`` names a booking the caller hosts: organises (`Booking.user_id`) or
    co-hosts (a `booking_hosts` row with organizer = false, found through its partial index).
    Attendees, references and payments hang off bookings by this rule."""
    organised = select(Booking.id).where(Booking.user_id == caller.user_id)
    co_hosted = select(BookingHost.booking_id).where(
        BookingHost.user_id == caller.user_id, ~BookingHost.organizer
    )
    return or_(booking_id.in_(organised), booking_id.in_(co_hosted))


def managed_team_event_types(caller: Caller) -> Select[tuple[int]]:
    """Ids of the event types of teams the caller is an accepted OWNER or ADMIN of."""
    teams = select(Membership.team_id).where(
        Membership.user_id == caller.user_id,
        Membership.accepted.is_(True),
        Membership.role.in_([MembershipRole.OWNER, MembershipRole.ADMIN]),
    )
    return select(EventType.id).where(EventType.team_id.in_(teams))


def readable(caller: Caller) -> Select[tuple[Booking]]:
    """One booking by id: a host it occupies, an attendee (by the caller's email), the event
    type's owner (for a team event type: the team's OWNER/ADMIN), or a system-wide admin."""
    query = select(Booking)
    if caller.is_admin:
        return query
    as_attendee = select(Attendee.booking_id).where(
        func.lower(Attendee.email) == caller.user.email.lower()
    )
    owned_types = select(EventType.id).where(EventType.user_id == caller.user_id)
    co_hosted = select(BookingHost.booking_id).where(
        BookingHost.user_id == caller.user_id, ~BookingHost.organizer
    )
    return query.where(
        or_(
            Booking.user_id == caller.user_id,
            Booking.id.in_(co_hosted),
            Booking.id.in_(as_attendee),
            Booking.event_type_id.in_(owned_types),
            Booking.event_type_id.in_(managed_team_event_types(caller)),
        )
    )


async def manages(
    session: AsyncSession, caller: Caller, booking: Booking, event_type: EventType | None
) -> bool:
    """A host the booking occupies, the event-type owner (a team's OWNER/ADMIN) or an admin:
    may confirm, patch and cancel for everyone."""
    if (
        caller.is_admin
        or booking.user_id == caller.user_id
        or (event_type is not None and event_type.user_id == caller.user_id)
    ):
        return True
    if caller.user_id in await booking_host_ids(session, booking):
        return True
    if event_type is None or event_type.team_id is None:
        return False
    managed = await session.scalar(
        managed_team_event_types(caller).where(EventType.id == event_type.id)
    )
    return managed is not None


async def booking_host_ids(session: AsyncSession, booking: Booking) -> list[int]:
    """Every host the booking occupies, ascending (the organiser included)."""
    ids = set(
        await session.scalars(
            select(BookingHost.user_id).where(BookingHost.booking_id == booking.id)
        )
    )
    if booking.user_id is not None:
        ids.add(booking.user_id)
    return sorted(ids)


def _by_id_or_uid(
    query: Select[tuple[Booking]], key: str, *, uid_only: bool = False
) -> Select[tuple[Booking]]:
    # Cal.com's routes take the numeric id; the seed documents /bookings/{uid}: accept both.
    if key.isdigit() and not uid_only:
        number = int(key)
        return query.where(Booking.id == number) if is_db_id(number) else query.where(False)
    if "\x00" in key:
        # No uid holds a NUL, and PostgreSQL refuses to compare text with one.
        return query.where(False)
    return query.where(Booking.uid == key)


async def get_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    *,
    for_update: bool = False,
    uid_only: bool = False,
) -> Booking:
    query = _by_id_or_uid(readable(caller), key, uid_only=uid_only).options(
        selectinload(Booking.attendees), selectinload(Booking.payments)
    )
    if for_update:
        query = query.with_for_update(of=Booking)
    booking = await session.scalar(query)
    if booking is None:
        # Someone else's booking answers as a missing one (Cal.com says 403): no existence oracle.
        raise NotFound(f"Booking {key} not found")
    return booking


# --- creating -----------------------------------------------------------------------------------


def booker_from(body: BookingCreate) -> Booker:
    """The attendee, from `responses` (modern) or top-level fields (legacy and seed forms)."""
    legacy_present = [
        field for field in LEGACY_FIELDS if getattr(body, _snake(field)) not in (None, "", [])
    ]
    if body.responses is not None:
        if legacy_present:
            raise BadRequest(
                f"Legacy Props: {', '.join(legacy_present)}. They can't be used with `responses`"
            )
        if body.custom_inputs:
            raise BadRequest("`customInputs` can't be used with `responses`")
        responses = dict(body.responses)
        raw_name = responses.pop("name", None)
        if isinstance(raw_name, dict):
            raw_name = " ".join(
                str(raw_name.get(part, "")).strip() for part in ("firstName", "lastName")
            ).strip()
        location = responses.pop("location", None)
        value = option = None
        if isinstance(location, dict):
            value, option = location.get("value"), location.get("optionValue")
        elif isinstance(location, str):
            value = location
        fields: dict[str, Any] = {
            "name": raw_name,
            "email": responses.pop("email", None),
            "location": value or None,
            "location_option": option or None,
            "guests": responses.pop("guests", None) or [],
            "notes": responses.pop("notes", None),
            "phone_number": responses.pop("attendeePhoneNumber", None),
            "extra": responses,
        }
        prefix = "responses"
    else:
        fields = {
            "name": body.name,
            "email": body.email,
            "location": body.location if isinstance(body.location, str) and body.location else None,
            "guests": body.guests or [],
            "notes": body.notes,
            "phone_number": body.sms_reminder_number,
            "extra": {},
        }
        prefix = ""
    try:
        return Booker.model_validate(fields)
    except ValidationError as error:
        errors = error.errors()
        if prefix:
            errors = [{**e, "loc": (prefix, *e["loc"])} for e in errors]
        raise BadRequest(format_validation_errors(errors)) from None


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _times(body: BookingCreate, length: int) -> tuple[datetime, datetime]:
    start_text, start_field = (
        (body.start, "start") if body.start else (body.start_time, "startTime")
    )
    end_text, end_field = (body.end, "end") if body.end else (body.end_time, "endTime")
    if not start_text:
        raise BadRequest("invalid_type in 'start': Required")
    try:
        start = parse_instant(start_text, start_field)
        end = parse_instant(end_text, end_field) if end_text else None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    start = start.astimezone(UTC)
    end = end.astimezone(UTC) if end else start + timedelta(minutes=length)
    if end <= start:
        raise BadRequest(f"custom in '{end_field}': must be after the start")
    if end - start > MAX_BOOKING_LENGTH:
        raise BadRequest(f"custom in '{end_field}': {TOO_LONG}")
    return start, end


def _event_type_id(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadRequest("Bad request, eventTypeId must be a number")
    return raw


async def bookable_event_type(
    session: AsyncSession, caller: Caller, event_type_id: int
) -> EventType:
    """An event type the caller may book: their own or their teams' (admins: any). Bookable
    does not let one user's key write into another user's calendar."""
    query = readable_event_types(caller).options(
        raiseload(EventType.custom_inputs), raiseload(EventType.hosts)
    )
    event_type = (
        await session.scalar(query.where(EventType.id == event_type_id))
        if is_db_id(event_type_id)
        else None
    )
    if event_type is None:
        raise NotFound(f"Event type with id: {event_type_id} not found")
    return event_type


def _location(booker: Booker, body: BookingCreate, event_type: EventType) -> str:
    if booker.location_option:
        return booker.location_option
    if booker.location:
        return booker.location
    for location in event_type.locations or []:
        kind = location.get("type")
        if kind:
            return str(location.get("address") or location.get("link") or kind)
    return ""


def _needs_confirmation(event_type: EventType, start: datetime, now: datetime) -> bool:
    if not event_type.requires_confirmation:
        return False
    threshold = (event_type.meta or {}).get("requiresConfirmationThreshold")
    if isinstance(threshold, dict) and isinstance(threshold.get("time"), int):
        unit = 60 if threshold.get("unit") == "hours" else 1
        # Far enough ahead, the booking is accepted straight away.
        if start - now > timedelta(minutes=threshold["time"] * unit):
            return False
    return True


@dataclass
class Created:
    booking: Booking
    host: User
    payment: Payment | None
    previous: Booking | None
    joined_seat: bool
    lucky_users: list[int] = field(default_factory=list)


async def _refuse_unless_bookable(
    session: AsyncSession,
    event_type: EventType,
    host: User,
    start: datetime,
    length: int,
    now: datetime,
    *,
    ignore_uid: str | None,
) -> None:
    calendar = await load_host_calendar(
        session, event_type, host, start, start + timedelta(minutes=length),
        ignore_booking_uid=ignore_uid,
    )  # fmt: skip
    refusal = check_booking(event_rules(event_type), calendar, start, length, now)
    if refusal is not None:
        raise BookingRefused(refusal)


async def create_booking(session: AsyncSession, caller: Caller, body: BookingCreate) -> Created:
    now = clock.now()
    event_type = await bookable_event_type(session, caller, _event_type_id(body.event_type_id))
    is_team = event_type.team_id is not None
    owner: User | None = None
    if not is_team:
        owner = await session.get(User, event_type.user_id)
        if owner is None:
            raise NotFound("The event type's owner no longer exists")
    if (
        body.user_id is not None
        and not caller.is_admin
        and (owner is None or body.user_id != owner.id)
    ):
        raise Forbidden("ADMIN required for `userId`")

    previous: Booking | None = None
    if body.reschedule_uid:
        previous = await session.scalar(
            readable(caller)
            .where(Booking.uid == body.reschedule_uid)
            .options(selectinload(Booking.attendees), selectinload(Booking.payments))
            .with_for_update(of=Booking)
        )
        if previous is None:
            raise NotFound(f"Booking to reschedule ({body.reschedule_uid}) not found")
        if previous.status in (BookingStatus.CANCELLED, BookingStatus.REJECTED):
            raise BadRequest("cancelled_bookings_cannot_be_rescheduled")
        if is_team and previous.event_type_id != event_type.id:
            raise BadRequest(
                "custom in 'rescheduleUid': that booking is of another event type; a team "
                "booking can only be rescheduled within its own event type"
            )
        if owner is not None and previous.user_id != owner.id:
            # Moving a booking to another host's calendar would cancel it behind their back.
            raise BadRequest(
                "custom in 'rescheduleUid': that booking belongs to another host; a booking "
                "can only be rescheduled to an event type of its own host"
            )

    booker = booker_from(body)
    if body.time_zone is None:
        raise BadRequest("invalid_type in 'timeZone': Required")
    start, end = _times(body, event_type.length)
    length = int((end - start).total_seconds() // 60)
    durations = allowed_durations(event_type)
    if (end - start) != timedelta(minutes=length) or length not in durations:
        lasts = " or ".join(str(d) for d in durations)
        raise BookingRefused(
            Refusal(
                400, "Invalid event length", f"a booking of this event type lasts {lasts} minutes"
            )
        )
    if event_type.seats_per_time_slot and event_type.recurring_event:
        raise BadRequest("recurring_event_seats_error")

    blocked_start = start - timedelta(minutes=event_type.before_event_buffer or 0)
    blocked_end = end + timedelta(minutes=event_type.after_event_buffer or 0)
    if owner is not None:
        await lock_host_time(session, owner.id, blocked_start, blocked_end)
        await _refuse_unless_bookable(
            session, event_type, owner, start, length, now,
            ignore_uid=previous.uid if previous else None,
        )  # fmt: skip
        placement = Placement(owner, (), ())
    else:
        if event_type.seats_per_time_slot and previous is None:
            # An open seat is joined, not placed: the booking that opened the time chose its
            # hosts. The seat must be a slot team /slots offers (time bounds, hosts still free
            # but for it); `_join_seat` then counts the seats under the booking's row lock.
            await _refuse_unless_open_team_seat(session, event_type, start, length, now)
            joined = await _join_seat(session, event_type, booker, body, start, end)
            if joined is not None:
                organizer = await session.get(User, joined.user_id)
                assert organizer is not None
                await announce_new_booking(session, joined)
                return Created(joined, organizer, None, None, joined_seat=True)
        placement = await _place_team_booking(
            session, event_type, start, length, (blocked_start, blocked_end), now, previous
        )
    host = placement.organizer

    # A paid booking moved to another time stays paid: its payment moves with it (Cal.com).
    carried_paid = previous is not None and previous.paid
    requires_payment = (event_type.price or 0) > 0 and not carried_paid
    confirmed = not requires_payment and (
        not _needs_confirmation(event_type, start, now)
        or (previous is not None and previous.user_id == caller.user_id
            and previous.status == BookingStatus.ACCEPTED)
    )  # fmt: skip
    if previous is not None:
        previous.status = BookingStatus.CANCELLED
        previous.rescheduled = True
        previous.rescheduled_by = body.rescheduled_by or caller.user.email
        previous.cancellation_reason = previous.cancellation_reason or "Rescheduled"
        await session.flush()

    if event_type.seats_per_time_slot:
        # After the old booking is cancelled: a reschedule into an open seat moves the booker.
        joined = await _join_seat(session, event_type, booker, body, start, end)
        if joined is not None:
            await announce_new_booking(session, joined, previous=previous)
            return Created(joined, host, None, previous, joined_seat=True)

    uid = new_uid()
    responses = {"name": booker.name, "email": booker.email, **booker.extra}
    if booker.location or booker.location_option:
        responses["location"] = {
            "value": booker.location,
            "optionValue": booker.location_option or "",
        }
    if booker.guests:
        responses["guests"] = booker.guests
    if booker.notes:
        responses["notes"] = booker.notes
    booking = Booking(
        uid=uid,
        user_id=host.id,
        user_primary_email=host.email,
        event_type_id=event_type.id,
        title=body.title
        or f"{event_type.title} between {host.name or host.username} and {booker.name}",
        description=booker.notes or body.description,
        custom_inputs=_custom_inputs(body),
        responses=responses,
        start_time=start,
        end_time=end,
        blocked_start=blocked_start,
        blocked_end=blocked_end,
        location=_location(booker, body, event_type),
        status=BookingStatus.ACCEPTED if confirmed else BookingStatus.PENDING,
        paid=carried_paid,
        from_reschedule=previous.uid if previous else None,
        recurring_event_id=(
            str(body.recurring_event_id) if body.recurring_event_id is not None else None
        ),
        sms_reminder_number=booker.phone_number,
        meta=body.metadata or {},
        ical_uid=f"{uid}@bookable",
        ical_sequence=(previous.ical_sequence + 1) if previous else 0,
        rescheduled_by=body.rescheduled_by if previous else None,
        creation_source="API_V1",
        created_at=now,
        attendees=[],
        payments=[],
        references=[],
    )
    booking.attendees.append(
        Attendee(
            email=booker.email,
            name=booker.name,
            time_zone=body.time_zone,
            locale=body.language or "en",
            phone_number=booker.phone_number,
        )
    )
    for guest in booker.guests:
        booking.attendees.append(
            Attendee(
                email=guest, name=guest, time_zone=body.time_zone, locale=body.language or "en"
            )
        )
    payment = None
    if requires_payment:
        payment = Payment(
            uid=new_uid(),
            amount=event_type.price,
            currency=event_type.currency or "usd",
            success=False,
            refunded=False,
            data={},
            payment_option="ON_BOOKING",
        )
        booking.payments.append(payment)
    try:
        await insert_booking(session, booking, placement.other_hosts)
    except BookingRefused:
        if event_type.seats_per_time_slot:
            # Another request opened this seated slot a moment ago: take a seat in it instead.
            joined = await _join_seat(session, event_type, booker, body, start, end)
            if joined is not None:
                await announce_new_booking(session, joined, previous=previous)
                return Created(joined, host, None, previous, joined_seat=True)
        raise
    if previous is not None and carried_paid:
        for moved in [p for p in previous.payments if p.success]:
            booking.payments.append(moved)
        await session.flush()
    await announce_new_booking(session, booking, previous=previous, payment=payment)
    return Created(
        booking, host, payment, previous, joined_seat=False, lucky_users=list(placement.lucky)
    )


async def _refuse_unless_open_team_seat(
    session: AsyncSession, event_type: EventType, start: datetime, length: int, now: datetime
) -> None:
    """If a seated booking of this team event type with seats left starts at ``start``, refuse
    unless team slots offer it (Cal.com checks a seat's time bounds too). A full one is left to
    `_join_seat`, which answers `booking_seats_full_error`."""
    seated = await session.execute(
        select(Booking.id, func.count(Attendee.id))
        .outerjoin(Attendee, Attendee.booking_id == Booking.id)
        .where(
            Booking.event_type_id == event_type.id,
            Booking.start_time == start,
            Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
        )
        .group_by(Booking.id)
    )
    row = seated.first()
    if row is None or row[1] >= (event_type.seats_per_time_slot or 0):
        return
    team = await load_team(session, event_type, start, start + timedelta(minutes=length))
    check = check_team_booking(event_rules(event_type), team.hosts, team.kind, start, length, now)
    if check.refusal is not None:
        raise BookingRefused(check.refusal)


@dataclass(frozen=True, slots=True)
class Placement:
    """Who a new booking occupies: its organiser, the other hosts, the round-robin pick."""

    organizer: User
    other_hosts: tuple[int, ...]
    lucky: tuple[int, ...]


async def _place_team_booking(
    session: AsyncSession,
    event_type: EventType,
    start: datetime,
    length: int,
    blocked: tuple[datetime, datetime],
    now: datetime,
    previous: Booking | None,
) -> Placement:
    """Check a team slot and choose its hosts. COLLECTIVE: every host. ROUND_ROBIN: the fixed
    hosts and one free round-robin host (a rescheduled booking keeps its own if free), the one
    with the fewest bookings of this event type this month, then the least recently booked."""
    host_ids = sorted(
        await session.scalars(select(Host.user_id).where(Host.event_type_id == event_type.id))
    )
    # Every host's days are locked, ascending, before their calendars are read (see
    # lock_host_time): concurrent team and personal bookings of a host queue here.
    for host_id in host_ids:
        await lock_host_time(session, host_id, *blocked)
    team = await load_team(
        session, event_type, start, start + timedelta(minutes=length),
        ignore_booking_uid=previous.uid if previous else None,
    )  # fmt: skip
    check = check_team_booking(event_rules(event_type), team.hosts, team.kind, start, length, now)
    if check.refusal is not None:
        raise BookingRefused(check.refusal)
    occupied, lucky = await _choose_hosts(
        session, event_type, team, check.free_hosts, previous, now
    )
    organizer = team.users[occupied[0]]
    return Placement(organizer, tuple(occupied[1:]), lucky)


async def _choose_hosts(
    session: AsyncSession,
    event_type: EventType,
    team: Team,
    free_hosts: Sequence[int],
    previous: Booking | None,
    now: datetime,
) -> tuple[list[int], tuple[int, ...]]:
    fixed = [h.user_id for h in team.hosts if h.fixed]
    floating = [h.user_id for h in team.hosts if not h.fixed and h.user_id in free_hosts]
    if team.kind == SchedulingKind.COLLECTIVE or not floating:
        return fixed, ()
    kept = (
        [i for i in await booking_host_ids(session, previous) if i in floating]
        if previous is not None
        else []
    )
    if kept:
        lucky = kept[0]
    else:
        counts, last = await round_robin_history(session, event_type.id, floating, now)
        lucky = pick_round_robin_host(floating, counts, last)
    return [*fixed, lucky], (lucky,)


async def round_robin_history(
    session: AsyncSession, event_type_id: int, host_ids: Sequence[int], now: datetime
) -> tuple[dict[int, int], dict[int, datetime | None]]:
    """Per host: bookings of this event type made this calendar month (UTC), and when they
    were last booked for it at all. Cancelled and rejected bookings do not count."""
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = (
        await session.execute(
            select(
                BookingHost.user_id,
                func.count().filter(Booking.created_at >= month_start),
                func.max(Booking.created_at),
            )
            .join(Booking, Booking.id == BookingHost.booking_id)
            .where(
                Booking.event_type_id == event_type_id,
                BookingHost.user_id.in_(host_ids),
                Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
            )
            .group_by(BookingHost.user_id)
        )
    ).all()
    counts = {user_id: int(count) for user_id, count, _last in rows}
    last = {user_id: latest for user_id, _count, latest in rows}
    return counts, last


async def insert_booking(
    session: AsyncSession, booking: Booking, other_hosts: Sequence[int] = ()
) -> None:
    """Add and flush inside a savepoint; the host-overlap constraint's refusal becomes a 409.

    PostgreSQL checks an exclusion constraint after writing the new index entry: two
    transactions inserting overlapping bookings at the same moment would each find the other's
    uncommitted row and wait for it, until the deadlock detector aborts one (40P01, a 500).
    So writers of one host's bookings on one day first queue on a lock held to the end of
    their transaction: the next one meets the committed row and gets the constraint's clean
    refusal.
    Should a writer that takes no such lock still deadlock with this insert, the insert has
    lost nothing yet: its savepoint is rolled back and it is tried again."""
    await lock_host_days(session, booking)
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            async with session.begin_nested():
                session.add(booking)
                await session.flush()
                # The organiser's row comes from the insert trigger; the other hosts' here,
                # where the same constraint judges them.
                session.add_all(
                    BookingHost(
                        booking_id=booking.id,
                        user_id=user_id,
                        organizer=False,
                        status=booking.status,
                        blocked_start=booking.blocked_start,
                        blocked_end=booking.blocked_end,
                    )
                    for user_id in other_hosts
                )
                await session.flush()
            return
        except IntegrityError as error:
            if HOST_OVERLAP_CONSTRAINT in str(error.orig):
                raise BookingRefused(
                    Refusal(
                        409,
                        "no_available_users_found_error",
                        "the host was booked for this time by another request a moment ago",
                    )
                ) from None
            raise
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != DEADLOCK_SQLSTATE:
                raise
            if attempt == INSERT_ATTEMPTS:
                raise


async def lock_host_days(session: AsyncSession, booking: Booking) -> None:
    """PostgreSQL: wait for, then hold until commit, the right to write the host's bookings on
    each UTC day that ``booking`` blocks, in ascending order. Two overlapping bookings share a
    day, so their writers queue; a host's bookings on other days are written side by side.
    Every host the booking occupies is locked, in ascending order.
    SQLite needs none: its writers are serialised from their first statement."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return
    host_ids = await booking_host_ids(session, booking) if booking.id is not None else []
    if not host_ids and booking.user_id is not None:
        host_ids = [booking.user_id]
    for host_id in host_ids:
        await lock_host_time(session, host_id, booking.blocked_start, booking.blocked_end)


async def lock_host_time(
    session: AsyncSession, host_id: int | None, start: datetime, end: datetime
) -> None:
    """`lock_host_days` for a time not written yet. Taken before the availability check, it
    makes check-and-insert one step per host and day on PostgreSQL too: a second request for
    the same time waits, then sees the first one's booking (and joins its seats, if any).
    The locks stack: taking them again later in the transaction is free.
    At most LOCKED_DAYS_MAX + 1 locks per host, whatever the span (PostgreSQL's lock table is
    small: one lock per day of a span of years ran it out of shared memory)."""
    if host_id is None:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return
    first, last = locked_days(start, end)
    if last - first + 1 > LOCKED_DAYS_MAX:
        statement, values = _LOCK_HOST_CALENDAR, {"host": host_id, "whole": _WHOLE_CALENDAR}
    else:
        statement = _LOCK_HOST_DAYS
        values = {"host": host_id, "whole": _WHOLE_CALENDAR, "first": first, "last": last}
    await connection.execute(statement, values)


def locked_days(start: datetime, end: datetime) -> tuple[int, int]:
    """The first and last UTC day (days since 1970-01-01) the time from start to end touches."""
    first = (start - _EPOCH).days
    return first, max(first, (end - timedelta(microseconds=1) - _EPOCH).days)


async def _join_seat(
    session: AsyncSession,
    event_type: EventType,
    booker: Booker,
    body: BookingCreate,
    start: datetime,
    end: datetime,
) -> Booking | None:
    """Add the booker to the seated booking at ``start``, under a row lock; None if none yet."""
    existing = await session.scalar(
        select(Booking)
        .where(
            Booking.event_type_id == event_type.id,
            Booking.start_time == start,
            # A priced (or to-be-confirmed) seated slot waits PENDING: later bookers join it too.
            Booking.status.in_([BookingStatus.ACCEPTED, BookingStatus.PENDING]),
        )
        .options(selectinload(Booking.attendees), selectinload(Booking.payments))
        .with_for_update(of=Booking)
        .execution_options(populate_existing=True)
    )
    if existing is None:
        return None
    emails = {a.email.lower() for a in existing.attendees}
    if booker.email.lower() in emails:
        raise BookingRefused(
            Refusal(
                409,
                "already_signed_up_for_this_booking_error",
                f"{booker.email} already holds a seat at this time",
            )
        )
    if len(existing.attendees) >= (event_type.seats_per_time_slot or 0):
        raise BookingRefused(
            Refusal(409, "booking_seats_full_error", "every seat of this slot is taken")
        )
    existing.attendees.append(
        Attendee(
            email=booker.email,
            name=booker.name,
            time_zone=body.time_zone or "UTC",
            locale=body.language or "en",
            phone_number=booker.phone_number,
        )
    )
    await session.flush()
    return existing


def _custom_inputs(body: BookingCreate) -> dict[str, Any] | None:
    if body.custom_inputs is None:
        return None
    values: dict[str, Any] = {}
    for item in body.custom_inputs:
        label = item.get("label")
        if isinstance(label, str):
            values[label] = item.get("value")
    return values


# --- life cycle ---------------------------------------------------------------------------------


async def _event_type_of(session: AsyncSession, booking: Booking) -> EventType | None:
    if booking.event_type_id is None:
        return None
    return await session.scalar(
        select(EventType)
        .where(EventType.id == booking.event_type_id)
        .options(raiseload(EventType.custom_inputs), raiseload(EventType.hosts))
    )


@dataclass
class Cancelled:
    booking: Booking
    only_removed_attendee: bool


async def cancel_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    *,
    reason: str | None,
    cancelled_by: str | None,
    all_remaining: bool,
) -> Cancelled:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if booking.status == BookingStatus.CANCELLED:
        raise BadRequest("This booking has already been cancelled.")
    if booking.status == BookingStatus.REJECTED:
        raise BadRequest("This booking has been rejected and cannot be cancelled.")
    meta = (event_type.meta or {}) if event_type else {}
    if meta.get("disableCancelling"):
        raise BadRequest("This event type does not allow cancellations")

    if not await manages(session, caller, booking, event_type):
        # An attendee of a seated booking gives up their seat; of any other, cancels it.
        mine = [a for a in booking.attendees if a.email.lower() == caller.user.email.lower()]
        if event_type is not None and event_type.seats_per_time_slot and len(booking.attendees) > 1:
            for attendee in mine:
                await session.delete(attendee)
            await session.flush()
            if mine:
                await announce_seat_given_up(
                    session,
                    booking,
                    mine,
                    reason=reason or "Not Provided",
                    cancelled_by=cancelled_by or caller.user.email,
                )
            return Cancelled(booking, only_removed_attendee=True)

    targets = [booking]
    if all_remaining and booking.recurring_event_id:
        targets = list(
            await session.scalars(
                select(Booking)
                .where(
                    Booking.recurring_event_id == booking.recurring_event_id,
                    Booking.user_id == booking.user_id,
                    Booking.start_time >= clock.now(),
                    Booking.status.not_in([BookingStatus.CANCELLED, BookingStatus.REJECTED]),
                )
                .options(selectinload(Booking.payments))
                .with_for_update(of=Booking)
            )
        )
        if booking not in targets:
            targets.append(booking)
    for target in targets:
        target.status = BookingStatus.CANCELLED
        target.cancellation_reason = reason or "Not Provided"
        target.cancelled_by = cancelled_by or caller.user.email
        for payment in target.payments:
            if payment.success and not payment.refunded:
                payment.refunded = True
    await session.flush()
    for target in targets:
        await announce(session, WebhookTrigger.BOOKING_CANCELLED, target)
    return Cancelled(booking, only_removed_attendee=False)


async def confirm_booking(
    session: AsyncSession, caller: Caller, key: str, *, confirmed: bool, reason: str | None
) -> Booking:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    if booking.status != BookingStatus.PENDING:
        raise BadRequest(
            f"Only a pending booking can be confirmed or rejected; this one is {booking.status}"
        )
    if not confirmed:
        booking.status = BookingStatus.REJECTED
        booking.rejection_reason = reason
        await session.flush()
        await announce(session, WebhookTrigger.BOOKING_REJECTED, booking)
        return booking
    if event_type is not None and event_type.team_id is not None:
        await _recheck_team_booking(session, event_type, booking)
    elif event_type is not None and booking.user_id is not None:
        host = await session.get(User, booking.user_id)
        if host is not None:
            # Cal.com #10789: two requests for one slot must not both be accepted.
            length = int((booking.end_time - booking.start_time).total_seconds() // 60)
            calendar = await load_host_calendar(
                session, event_type, host, booking.start_time, booking.end_time,
                ignore_booking_uid=booking.uid,
            )  # fmt: skip
            refusal = check_booking(
                event_rules(event_type), calendar, booking.start_time, length, clock.now()
            )
            if refusal is not None and refusal.code not in (
                "Attempting to book a meeting in the past.",
                "booking_time_out_of_bounds_error",
            ):
                raise BookingRefused(refusal)
    booking.status = BookingStatus.ACCEPTED
    # No payment provider ships with Bookable: the host confirming a priced booking is the
    # record that it was paid (README, "Payments").
    unpaid = [p for p in booking.payments if not p.success and not p.refunded]
    for payment in unpaid:
        payment.success = True
    if unpaid:
        booking.paid = True
    await _flush_guarded(session, booking)
    if unpaid:
        await announce(session, WebhookTrigger.BOOKING_PAID, booking, payment=unpaid[0])
    await announce(session, WebhookTrigger.BOOKING_CREATED, booking)
    return booking


async def _recheck_team_booking(
    session: AsyncSession, event_type: EventType, booking: Booking
) -> None:
    """Confirming a team booking: every host it occupies must still be free (Cal.com #10789)."""
    await lock_host_days(session, booking)
    host_ids = await booking_host_ids(session, booking)
    team = await load_team(
        session, event_type, booking.start_time, booking.end_time, ignore_booking_uid=booking.uid
    )
    occupied = [replace(h, fixed=True) for h in team.hosts if h.user_id in host_ids]
    length = int((booking.end_time - booking.start_time).total_seconds() // 60)
    check = check_team_booking(
        event_rules(event_type),
        occupied,
        SchedulingKind.COLLECTIVE,
        booking.start_time,
        length,
        clock.now(),
    )
    # Time bounds and the grid judged the request when it was made; only hosts' time counts now.
    if check.refusal is not None and check.refusal.code in (
        "fixed_hosts_unavailable_for_booking",
        "booking_limit_reached",
        "booking_seats_full_error",
    ):
        raise BookingRefused(check.refusal)


async def _flush_guarded(session: AsyncSession, booking: Booking) -> None:
    await lock_host_days(session, booking)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if HOST_OVERLAP_CONSTRAINT in str(error.orig):
            raise BookingRefused(
                Refusal(
                    409,
                    "no_available_users_found_error",
                    "the host already has an accepted booking overlapping this time",
                )
            ) from None
        raise


async def _assert_no_overlap(session: AsyncSession, booking: Booking) -> None:
    """The same rule as PostgreSQL's constraint, checked in Python for SQLite, whose writers are
    serialised (BEGIN IMMEDIATE), so the check and the write cannot be interleaved."""
    if booking.status != BookingStatus.ACCEPTED or booking.user_id is None:
        return
    # No autoflush: the pending change is what is being checked; PostgreSQL's constraint
    # judges it again at the (guarded) flush.
    with session.no_autoflush:
        host_ids = await booking_host_ids(session, booking)
        clash = await session.scalar(
            select(BookingHost.booking_id).where(
                BookingHost.user_id.in_(host_ids),
                BookingHost.status == BookingStatus.ACCEPTED,
                BookingHost.booking_id != booking.id,
                BookingHost.blocked_start < booking.blocked_end,
                BookingHost.blocked_end > booking.blocked_start,
            )
        )
    if clash is not None:
        raise BookingRefused(
            Refusal(
                409,
                "no_available_users_found_error",
                f"a host already has an accepted booking (id {clash}) overlapping this time",
            )
        )


async def patch_booking(
    session: AsyncSession, caller: Caller, key: str, body: BookingPatch
) -> Booking:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    values = body.model_dump(exclude_unset=True)
    for name in ("title", "status", "user_id", "event_type_id", "start_time", "end_time"):
        if name in values and values[name] is None:
            raise BadRequest(f"invalid_type in '{_camel(name)}': Expected a value, received null")
    if "user_id" in values and values["user_id"] != booking.user_id:
        if not caller.is_admin:
            raise Forbidden("Only admin can change the organizer of a booking")
        organizer = await session.get(User, values["user_id"])
        if organizer is None:
            raise NotFound(f"User with id: {values['user_id']} not found")
        booking.user_primary_email = organizer.email
    if "event_type_id" in values and values["event_type_id"] is not None:
        target = await session.get(EventType, values["event_type_id"])
        if target is None or (not caller.is_admin and target.user_id != caller.user_id):
            raise NotFound(f"Event type with id: {values['event_type_id']} not found")
        event_type = target
    moved_from = (booking.start_time, booking.end_time)
    for name, value in values.items():
        setattr(booking, name, value)
    if booking.end_time <= booking.start_time:
        raise BadRequest("custom in 'endTime': must be after startTime")
    moved = "start_time" in values or "end_time" in values
    if moved and booking.end_time - booking.start_time > MAX_BOOKING_LENGTH:
        # (Only a change of time is judged: a booking stored before the limit stays editable.)
        field = "endTime" if "end_time" in values else "startTime"
        raise BadRequest(f"custom in '{field}': {TOO_LONG}")
    before = event_type.before_event_buffer if event_type else 0
    after = event_type.after_event_buffer if event_type else 0
    booking.blocked_start = booking.start_time - timedelta(minutes=before or 0)
    booking.blocked_end = booking.end_time + timedelta(minutes=after or 0)
    await _assert_no_overlap(session, booking)
    await _flush_guarded(session, booking)
    await announce_patch(session, booking, moved_from=moved_from)
    return booking


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def mark_no_show(
    session: AsyncSession,
    caller: Caller,
    booking_uid: str,
    attendees: list[tuple[str, bool]] | None,
    no_show_host: bool | None,
) -> tuple[Booking, list[Attendee]]:
    try:
        booking = await get_booking(session, caller, booking_uid, for_update=True, uid_only=True)
    except NotFound:
        # The uid came in the body: the answer names no booking, readable or not.
        raise NotFound("Booking not found") from None
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    if attendees is None and no_show_host is None:
        raise BadRequest("custom in 'attendees': give attendees or noShowHost")
    changed: list[Attendee] = []
    by_email = {a.email.lower(): a for a in booking.attendees}
    for email, no_show in attendees or []:
        attendee = by_email.get(email.lower())
        if attendee is None:
            raise BadRequest(f"custom in 'attendees': {email} is not an attendee of this booking")
        attendee.no_show = no_show
        changed.append(attendee)
    if no_show_host is not None:
        booking.no_show_host = no_show_host
    await session.flush()
    if changed:
        no_show = [(a.email, bool(a.no_show)) for a in changed]
        await announce(session, WebhookTrigger.BOOKING_NO_SHOW_UPDATED, booking, no_show=no_show)
    return booking, changed


def zone_or_utc(name: str | None) -> ZoneInfo:
    return ZoneInfo(name) if name else ZoneInfo("UTC")
