"""POST /bookings: a new booking, a reschedule (`rescheduleUid`) or a seat in a seated one.
`create_booking` reads as its steps; the availability check is `check` (see `availability`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, bindparam, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bookable.bookings.access import readable
from bookable.bookings.availability import host_refusal, team_check
from bookable.bookings.calendars import CalendarsToRead
from bookable.bookings.common import (
    BOOKED_EVENT_TYPE,
    ORGANIZER,
    AnyBooking,
    AnyOrganizer,
    BookedEventType,
    BookingRefused,
    NewBooking,
    Organizer,
    Written,
    new_uid,
)
from bookable.bookings.locks import (
    EVENT_TYPE_LOCK_COLUMN,
    event_type_lock_params,
    lock_host_time,
    lock_hosts_time,
)
from bookable.bookings.placement import Placement, place_team_booking
from bookable.bookings.schemas import (
    LEGACY_FIELDS,
    MAX_BOOKING_LENGTH,
    TOO_LONG,
    Booker,
    BookingCreate,
    parse_instant,
)
from bookable.bookings.seats import join_seat, refuse_unless_open_team_seat
from bookable.bookings.writes import (
    insert_booking,
    insert_new_booking,
    new_booking,
    unwritten_booking,
)
from bookable.calendars.busy import CalendarBusyReader, ExternalBusy
from bookable.calendars.writes import plan_booking_event
from bookable.core.auth import Caller
from bookable.core.clock import clock
from bookable.core.db import fetch_in_transaction
from bookable.core.errors import BadRequest, Forbidden, NotFound, format_validation_errors
from bookable.core.schemas import is_db_id
from bookable.models import (
    Attendee,
    Availability,
    Booking,
    BookingStatus,
    DestinationCalendar,
    EventType,
    Host,
    Payment,
    Schedule,
    SelectedCalendar,
    User,
    Webhook,
)
from bookable.notifications.outbox import (
    Change,
    MailPolicy,
    NewBookingEmails,
    mail_booking_change,
    new_booking_emails,
    sent_since,
)
from bookable.scheduling import Refusal
from bookable.slots.service import (
    SCHEDULE_COLUMNS,
    Team,
    _readable_by,
    allowed_durations,
    calendar_host_ids,
    calendar_window,
    choose_schedule,
)
from bookable.webhooks.outbox import announce_new_booking


def booker_from(body: BookingCreate) -> Booker:
    """The attendee, from `responses` (modern) or top-level fields (legacy and seed forms)."""
    legacy_present = [
        field for field, name in _LEGACY_ATTRIBUTES if getattr(body, name) not in (None, "", [])
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


# Each legacy field's wire name and `BookingCreate` attribute, converted once (not per booking).
_LEGACY_ATTRIBUTES = tuple((field, _snake(field)) for field in LEGACY_FIELDS)


def given_times(body: BookingCreate) -> tuple[datetime, datetime | None, str]:
    """The body's start and end (None: not given) in UTC, and the end's field name."""
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
    return start.astimezone(UTC), end.astimezone(UTC) if end else None, end_field


def booking_times(body: BookingCreate, length: int) -> tuple[datetime, datetime]:
    start, given_end, end_field = given_times(body)
    end = given_end or start + timedelta(minutes=length)
    if end <= start:
        raise BadRequest(f"custom in '{end_field}': must be after the start")
    if end - start > MAX_BOOKING_LENGTH:
        raise BadRequest(f"custom in '{end_field}': {TOO_LONG}")
    return start, end


def event_type_id_of(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadRequest("Bad request, eventTypeId must be a number")
    return raw


# PostgreSQL, with the day locks: the rest of the booking's transaction plans its statements
# generically (``SET LOCAL plan_cache_mode``, by a column of its first statement: no round trip
# of its own). The busy read names its host by a parameter; where one host holds most of the
# bookings (a main user beside a few others), a custom plan for any other host is estimated
# far cheaper than the generic one, so PostgreSQL never keeps the generic plan and planned the
# read on every booking (0.5-0.6 ms of its CPU), and that custom plan took the span's bookings
# of everyone for the co-host branch (hundreds of buffers, growing with the table). The
# generic plan starts from the host's own rows: bench/README.md, issue 15 round 14.
GENERIC_PLANS_COLUMN = text("set_config('plan_cache_mode', 'force_generic_plan', true)")


@cache
def _event_type_and_owner_statement(
    *, admin: bool, count_emails: bool, lock: bool = False
) -> Select[Any]:
    """`_event_type_and_owner`'s query (`readable_event_types`' rule), built once per shape
    (docs/architecture.md, "Hot paths"). Parameters: ``event_type_id``, ``caller_id``; with
    ``count_emails``, ``emails_since``; with ``lock`` (PostgreSQL), the day locks of a personal
    event type's owner are taken by the statement itself (`locks.EVENT_TYPE_LOCK_COLUMN`, its
    ``lock_*`` parameters): one round trip fewer than `lock`. Its other columns tell the
    outboxes what a personal event type's booking would otherwise ask after the insert
    (`common.Written`): whether an active webhook of the event type or its owner exists,
    whether a destination calendar of either exists, and the owner's emails since
    ``emails_since``; and what the availability check would otherwise ask: whether the owner
    or a host selected a calendar (as `slots.service.find_event_type_for_calendars`), and the
    owner's schedules with their rows (one row each, as GET /slots reads them; schedules are
    not under the day locks, so reading them before the locks changes nothing; the busy read
    is the next statement, whose snapshot sees every booking committed before the locks).
    With ``lock``, a caller's team event type takes no lock here (its hosts' are taken by
    `lock`) and neither does a reschedule (not asked: the rescheduled booking's row lock comes
    first, as before), and the transaction's later statements take their generic plans
    (`GENERIC_PLANS_COLUMN`)."""
    hooked = exists().where(
        Webhook.active.is_(True),
        or_(Webhook.event_type_id == EventType.id, Webhook.user_id == EventType.user_id),
    )
    destined = exists().where(
        or_(
            DestinationCalendar.event_type_id == EventType.id,
            DestinationCalendar.user_id == EventType.user_id,
        )
    )
    # Two levels down: event_types is correlated explicitly, or it would join afresh.
    hosts = select(Host.user_id).where(Host.event_type_id == EventType.id).correlate(EventType)
    selected = exists().where(
        or_(SelectedCalendar.user_id == EventType.user_id, SelectedCalendar.user_id.in_(hosts))
    )
    # Plain columns (`BookedEventType`, `Organizer`), no ORM entity: see `_event_type_and_owner`.
    columns: list[Any] = [*BOOKED_EVENT_TYPE, *ORGANIZER, hooked, destined, selected]
    if count_emails:
        columns.append(sent_since(EventType.user_id))
    if lock:
        columns += [EVENT_TYPE_LOCK_COLUMN, GENERIC_PLANS_COLUMN]
    query = (
        select(*columns, *SCHEDULE_COLUMNS)
        .outerjoin(User, User.id == EventType.user_id)
        .outerjoin(
            Schedule,
            or_(Schedule.user_id == EventType.user_id, Schedule.id == EventType.schedule_id),
        )
        .outerjoin(Availability, Availability.schedule_id == Schedule.id)
        .where(EventType.id == bindparam("event_type_id"))
        .order_by(Schedule.id, Availability.id)
    )
    if not admin:
        query = query.where(_readable_by(bindparam("caller_id")))
    return query


@dataclass(frozen=True, slots=True)
class _Found:
    """The event type the caller may book, its owner, and what its outboxes will need."""

    event_type: BookedEventType
    owner: Organizer | None
    may_have_webhooks: bool
    may_have_destinations: bool
    owner_emails_this_hour: int | None  # None: not counted
    calendars_selected: bool  # False: no owner's or host's calendar to read
    schedule_rows: Sequence[Any]  # the owner's schedules, for `choose_schedule`
    locked: bool = False  # the owner's day locks for the body's times are held (`lock`)


async def _event_type_and_owner(
    session: AsyncSession,
    caller: Caller,
    event_type_id: int,
    emails_since: datetime | None,
    lock_times: tuple[datetime, datetime | None] | None = None,
) -> _Found:
    """The event type the caller may book (their own or their teams'; admins: any: Bookable
    does not let one user's key write into another user's calendar) and its owning user (None
    if gone) in one query, with what `_event_type_and_owner_statement` says of webhooks,
    calendars and emails. ``lock_times`` (PostgreSQL): the body's start and end
    (`given_times`), whose day locks the query takes."""
    params: dict[str, Any] = {"event_type_id": event_type_id}
    if not caller.is_admin:
        params["caller_id"] = caller.user_id
    if emails_since is not None:
        params["emails_since"] = emails_since
    if lock_times is not None:
        params.update(event_type_lock_params(*lock_times))
    query = _event_type_and_owner_statement(
        admin=caller.is_admin, count_emails=emails_since is not None, lock=lock_times is not None
    )
    rows: Sequence[Any] = []
    if is_db_id(event_type_id):
        # Columns only, on the session's connection: past the session's ORM execution path and
        # entity loading (~0.3 ms a booking), and SQLAlchemy's per-execution work. The first
        # statement of the request (nothing pending to flush).
        rows = await fetch_in_transaction(await session.connection(), query, params)
    if not rows:
        raise NotFound(f"Event type with id: {event_type_id} not found")
    return found_from_rows(rows, counted=emails_since is not None, locking=lock_times is not None)


# Where the parts of `_event_type_and_owner_statement`'s rows begin: the owner's columns, then
# the flags (webhooks, destinations, selected calendars), the count, the locks, the schedules.
_OWNER_AT = len(BOOKED_EVENT_TYPE)
_FLAGS_AT = _OWNER_AT + len(ORGANIZER)
_COUNT_AT = _FLAGS_AT + 3


def locks_taken_at(*, counted: bool) -> int:
    """The position of the lock column (`EVENT_TYPE_LOCK_COLUMN`, how many keys it took) in a
    row of `_event_type_and_owner_statement(lock=True)`."""
    return _COUNT_AT + counted


def found_from_rows(rows: Sequence[Any], *, counted: bool, locking: bool) -> _Found:
    """`_Found` from the rows of `_event_type_and_owner_statement` (at least one)."""
    row = rows[0]
    hooked, destined, selected = row[_FLAGS_AT:_COUNT_AT]
    count = int(row[_COUNT_AT] or 0) if counted else None
    locked = locking and bool(row[locks_taken_at(counted=counted)])
    schedules_at = _COUNT_AT + counted + 2 * locking  # the locks', then the plans' column
    schedule_rows = [r[schedules_at:] for r in rows]
    event_type = BookedEventType(*row[:_OWNER_AT])
    # An outer join: no owner (a team's event type, or a user since deleted), no owner columns.
    owner = Organizer(*row[_OWNER_AT:_FLAGS_AT]) if row[_OWNER_AT] is not None else None
    return _Found(
        event_type, owner, bool(hooked), bool(destined), count, bool(selected), schedule_rows,
        locked,
    )  # fmt: skip


def _lock_times(
    session: AsyncSession, body: BookingCreate
) -> tuple[datetime, datetime | None] | None:
    """The times whose day locks the event type query may take (PostgreSQL), or None: other
    databases; a reschedule (its booking's row is locked first, as before); times that do not
    parse (the error is raised where it was, after the event type's own checks)."""
    if body.reschedule_uid or session.get_bind().dialect.name != "postgresql":
        return None
    try:
        start, end, _field = given_times(body)
    except BadRequest:
        return None
    return start, end


def _location(booker: Booker, body: BookingCreate, event_type: BookedEventType) -> str:
    if booker.location_option:
        return booker.location_option
    if booker.location:
        return booker.location
    for location in event_type.locations or []:
        kind = location.get("type")
        if kind:
            return str(location.get("address") or location.get("link") or kind)
    return ""


def _needs_confirmation(event_type: BookedEventType, start: datetime, now: datetime) -> bool:
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
    booking: AnyBooking  # a `NewBooking` on the common path (`_takes_orm_path`)
    host: AnyOrganizer
    payment: Payment | None
    previous: Booking | None
    joined_seat: bool
    lucky_users: list[int] = field(default_factory=list)

    @property
    def payments(self) -> Sequence[Payment]:
        """The booking's payments: a `NewBooking` has none (a priced booking, and a paid one
        rescheduled, take the ORM path)."""
        return self.booking.payments if isinstance(self.booking, Booking) else ()


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """A POST /bookings body, read and judged against its event type (the parse step)."""

    event_type: BookedEventType
    owner: Organizer | None  # the host of a personal event type; None for a team's
    previous: Booking | None  # the booking this one reschedules
    booker: Booker
    start: datetime
    end: datetime
    found: _Found  # the event type query's answers for the outboxes

    @property
    def blocked(self) -> tuple[datetime, datetime]:
        """The time the booking keeps its hosts from other bookings: itself and its buffers."""
        return (
            self.start - timedelta(minutes=self.event_type.before_event_buffer or 0),
            self.end + timedelta(minutes=self.event_type.after_event_buffer or 0),
        )

    @property
    def carried_paid(self) -> bool:
        """A paid booking moved to another time stays paid: its payment moves with it (Cal.com)."""
        return self.previous is not None and self.previous.paid


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the check step found: for a team event type, its hosts and which are free."""

    team: Team | None = None
    free_hosts: tuple[int, ...] = ()


async def create_booking(
    session: AsyncSession,
    caller: Caller,
    body: BookingCreate,
    calendars: CalendarBusyReader,
    external: ExternalBusy | None = None,
    *,
    mail: MailPolicy | None = None,
) -> Created:
    """POST /bookings as its steps: parse, lock, check, place, insert, announce. An open seat of
    a team's seated slot is joined instead of placed; a seated slot found open later (after the
    rescheduled booking is cancelled, or opened by another request meanwhile) is joined too.
    ``external``: the hosts' calendar busy times, read outside the transaction when a first
    run raised `CalendarsToRead` (`calendars.with_host_calendars`); None on a first run."""
    now = clock.now()
    # The organiser's emails of the last hour are counted with the event type (one query).
    emails_since = now - timedelta(hours=1) if mail is not None and mail.enabled else None
    request = await parse(session, caller, body, emails_since=emails_since)
    if external is None:
        external = await _no_calendar_to_read(session, request, calendars)
    event_type, previous = request.event_type, request.previous
    if request.owner is None and event_type.seats_per_time_slot and previous is None:
        joined = await _join_open_team_seat(session, request, body, now, external, mail)
        if joined is not None:
            return joined
    await lock(session, request)
    verdict = await check(session, request, now, external)
    placement = await place(session, request, verdict, now)
    host = placement.organizer

    # Judged before the rescheduled booking is cancelled: its status counts.
    requires_payment, confirmed = _payment_and_confirmation(request, caller, now)
    if previous is not None:
        await _supersede(session, caller, body, previous)
    if event_type.seats_per_time_slot:
        # After the old booking is cancelled: a reschedule into an open seat moves the booker.
        joined_booking = await join_seat(
            session, event_type, request.booker, body, request.start, request.end
        )
        if joined_booking is not None:
            return await _seat_taken(session, request, joined_booking, host, previous, mail)

    payment = _payment(event_type) if requires_payment else None
    values, attendees = _new_booking(request, body, host, confirmed=confirmed, now=now)
    booking: AnyBooking
    if _takes_orm_path(request, payment):
        booking = unwritten_booking(values, attendees)
    else:
        booking = new_booking(values, attendees)
    written = _written(request, booking, placement)
    mailed_with_insert = _mailed_with_insert(session, request, placement)
    emails = (
        await new_booking_emails(session, mail, booking, written) if mailed_with_insert else None
    )
    if isinstance(booking, NewBooking):
        # Sets the ids of the booking and of its attendees, which `written` holds too.
        await insert_new_booking(session, booking, placement.other_hosts, emails=emails)
    else:
        joined_booking = await insert(session, request, body, booking, placement, payment, emails)
        if joined_booking is not None:
            return await _seat_taken(session, request, joined_booking, host, previous, mail)
    await announce_new_booking(
        session, booking, previous=previous, payment=payment, written=written
    )
    # The new booking keeps the rescheduled one's iCal UID: its calendar events move with it.
    await plan_booking_event(session, booking, written=written)
    if not mailed_with_insert:
        change = Change.RESCHEDULED if previous is not None else Change.CREATED
        await mail_booking_change(
            session, mail, change, booking, previous=previous, written=written
        )
    return Created(
        booking, host, payment, previous, joined_seat=False, lucky_users=list(placement.lucky)
    )


async def _no_calendar_to_read(
    session: AsyncSession, request: BookingRequest, calendars: CalendarBusyReader
) -> ExternalBusy:
    """What the hosts' calendars say when the event type query found none selected (most
    event types): nothing, known without asking. Otherwise `CalendarsToRead` leaves the
    transaction (nothing is written yet), so that the calendar servers are asked outside it."""
    event_type = request.event_type
    host_ids = await calendar_host_ids(session, event_type)
    window = calendar_window(event_type, request.start, request.end)
    if request.found.calendars_selected:
        raise CalendarsToRead(host_ids, *window)
    return calendars.none_selected(host_ids, *window)


async def parse(
    session: AsyncSession,
    caller: Caller,
    body: BookingCreate,
    *,
    emails_since: datetime | None = None,
) -> BookingRequest:
    """Step 1: the body read into an event type the caller may book, the booking it
    reschedules, the booker and the times, each judged (a 4xx naming the field). Writes nothing.
    ``emails_since``: count the owner's emails since then too (`Written.emails_this_hour`)."""
    found = await _event_type_and_owner(
        session,
        caller,
        event_type_id_of(body.event_type_id),
        emails_since,
        _lock_times(session, body),
    )
    event_type, owner = found.event_type, found.owner
    if event_type.team_id is not None:
        owner = None
    elif owner is None:
        raise NotFound("The event type's owner no longer exists")
    if (
        body.user_id is not None
        and not caller.is_admin
        and (owner is None or body.user_id != owner.id)
    ):
        raise Forbidden("ADMIN required for `userId`")
    previous = await _rescheduled(session, caller, body, event_type, owner)

    booker = booker_from(body)
    if body.time_zone is None:
        raise BadRequest("invalid_type in 'timeZone': Required")
    start, end = booking_times(body, event_type.length)
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
    return BookingRequest(event_type, owner, previous, booker, start, end, found)


async def _rescheduled(
    session: AsyncSession,
    caller: Caller,
    body: BookingCreate,
    event_type: BookedEventType,
    owner: Organizer | None,
) -> Booking | None:
    """The booking `rescheduleUid` names, locked, if it may be moved to this event type."""
    if not body.reschedule_uid:
        return None
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
    if event_type.team_id is not None and previous.event_type_id != event_type.id:
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
    return previous


async def _join_open_team_seat(
    session: AsyncSession,
    request: BookingRequest,
    body: BookingCreate,
    now: datetime,
    external: ExternalBusy | None,
    mail: MailPolicy | None,
) -> Created | None:
    """An open seat is joined, not placed: the booking that opened the time chose its hosts.
    The seat must be a slot team /slots offers (time bounds, hosts still free but for it);
    `join_seat` then counts the seats under the booking's row lock. None: no seated booking
    holds this time yet."""
    event_type, start, end = request.event_type, request.start, request.end
    await refuse_unless_open_team_seat(session, event_type, start, end, now, external)
    joined = await join_seat(session, event_type, request.booker, body, start, end)
    if joined is None:
        return None
    organizer = await session.get(User, joined.user_id)
    assert organizer is not None
    await announce_new_booking(session, joined)
    await plan_booking_event(session, joined)
    seat = await _booker_attendees(session, joined, request)
    await mail_booking_change(session, mail, Change.SEAT_TAKEN, joined, attendees=seat)
    return Created(joined, organizer, None, None, joined_seat=True)


async def lock(session: AsyncSession, request: BookingRequest) -> None:
    """Step 2: take the hosts' day locks (PostgreSQL, see `lock_host_time`) before their
    calendars are read, so that checking and inserting are one step per host and day."""
    if request.owner is not None:
        if not request.found.locked:  # taken by the event type query already
            await lock_host_time(session, request.owner.id, *request.blocked)
        return
    host_ids = await session.scalars(
        select(Host.user_id).where(Host.event_type_id == request.event_type.id)
    )
    # Every host's days are locked, ascending: concurrent team and personal bookings of a host
    # queue here.
    await lock_hosts_time(session, host_ids, *request.blocked)


async def check(
    session: AsyncSession, request: BookingRequest, now: datetime, external: ExternalBusy | None
) -> Verdict:
    """Step 3: the scheduling engine's verdict on the time (`availability`: the same data
    GET /slots uses); a refusal is raised as `BookingRefused`. The booking being rescheduled
    does not block its own move. The hosts' calendar busy times count too (``external``,
    read before the transaction; a host whose calendar could not be read is unavailable)."""
    ignore_uid = request.previous.uid if request.previous else None
    if request.owner is not None:
        # The owner's schedules came with the event type (`_event_type_and_owner_statement`).
        schedule = choose_schedule(request.found.schedule_rows, request.event_type, request.owner)
        refusal = await host_refusal(
            session, request.event_type, request.owner, request.start, request.end, now,
            ignore_uid=ignore_uid, external=external, schedule=schedule,
        )  # fmt: skip
        if refusal is not None:
            raise BookingRefused(refusal)
        return Verdict()
    team, team_verdict = await team_check(
        session,
        request.event_type,
        request.start,
        request.end,
        now,
        ignore_uid=ignore_uid,
        external=external,
    )
    if team_verdict.refusal is not None:
        raise BookingRefused(team_verdict.refusal)
    return Verdict(team, team_verdict.free_hosts)


async def place(
    session: AsyncSession, request: BookingRequest, verdict: Verdict, now: datetime
) -> Placement:
    """Step 4: the hosts the booking occupies: the event type's owner, or the team hosts
    chosen among the free ones (`placement`)."""
    if request.owner is not None:
        return Placement(request.owner, (), ())
    assert verdict.team is not None  # the check step names a team event type's hosts
    return await place_team_booking(
        session, request.event_type, verdict.team, verdict.free_hosts, request.previous, now
    )


def _payment_and_confirmation(
    request: BookingRequest, caller: Caller, now: datetime
) -> tuple[bool, bool]:
    """Whether the booking waits for a payment, and whether it is accepted straight away (a
    host moving their own accepted booking needs no confirmation)."""
    event_type, previous = request.event_type, request.previous
    requires_payment = (event_type.price or 0) > 0 and not request.carried_paid
    confirmed = not requires_payment and (
        not _needs_confirmation(event_type, request.start, now)
        or (previous is not None and previous.user_id == caller.user_id
            and previous.status == BookingStatus.ACCEPTED)
    )  # fmt: skip
    return requires_payment, confirmed


async def _supersede(
    session: AsyncSession, caller: Caller, body: BookingCreate, previous: Booking
) -> None:
    """The rescheduled booking is cancelled, in the same transaction as its successor."""
    previous.status = BookingStatus.CANCELLED
    previous.rescheduled = True
    previous.rescheduled_by = body.rescheduled_by or caller.user.email
    previous.cancellation_reason = previous.cancellation_reason or "Rescheduled"
    await session.flush()


def _takes_orm_path(request: BookingRequest, payment: Payment | None) -> bool:
    """Whether the new booking is built as ORM objects (`unwritten_booking`) that join the
    session: a reschedule (its payments may move to it), a seated slot's booking (its insert
    may become joining a seat) and a booking waiting for a payment (added to it, flushed by
    the unit of work). Otherwise it is a `NewBooking`: plain values, no ORM object."""
    return (
        request.previous is not None
        or payment is not None
        or bool(request.event_type.seats_per_time_slot)
    )


def _new_booking(
    request: BookingRequest,
    body: BookingCreate,
    host: AnyOrganizer,
    *,
    confirmed: bool,
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The booking row's values and its attendees' (the booker, then their guests), by
    attribute name, for `new_booking` or `unwritten_booking`."""
    event_type, booker, previous = request.event_type, request.booker, request.previous
    blocked_start, blocked_end = request.blocked
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
    values = dict(
        uid=uid,
        user_id=host.id,
        user_primary_email=host.email,
        event_type_id=event_type.id,
        title=body.title
        or f"{event_type.title} between {host.name or host.username} and {booker.name}",
        description=booker.notes or body.description,
        custom_inputs=_custom_inputs(body),
        responses=responses,
        start_time=request.start,
        end_time=request.end,
        blocked_start=blocked_start,
        blocked_end=blocked_end,
        location=_location(booker, body, event_type),
        status=BookingStatus.ACCEPTED if confirmed else BookingStatus.PENDING,
        paid=request.carried_paid,
        from_reschedule=previous.uid if previous else None,
        recurring_event_id=(
            str(body.recurring_event_id) if body.recurring_event_id is not None else None
        ),
        sms_reminder_number=booker.phone_number,
        meta=body.metadata or {},
        # A reschedule is the same meeting moved (Cal.com keeps the UID too): calendar apps
        # update their copy instead of adding a second one.
        ical_uid=(previous.ical_uid if previous and previous.ical_uid else f"{uid}@bookable"),
        ical_sequence=(previous.ical_sequence + 1) if previous else 0,
        rescheduled_by=body.rescheduled_by if previous else None,
        creation_source="API_V1",
        created_at=now,
    )
    locale = body.language or "en"
    attendees = [
        {
            "email": booker.email,
            "name": booker.name,
            "time_zone": body.time_zone,
            "locale": locale,
            "phone_number": booker.phone_number,
        },
        *(
            {"email": guest, "name": guest, "time_zone": body.time_zone, "locale": locale}
            for guest in booker.guests
        ),
    ]
    return values, attendees


def _payment(event_type: BookedEventType) -> Payment:
    """The payment a priced event type's booking waits for (no provider: see confirm)."""
    return Payment(
        uid=new_uid(),
        amount=event_type.price,
        currency=event_type.currency or "usd",
        success=False,
        refunded=False,
        data={},
        payment_option="ON_BOOKING",
    )


async def insert(
    session: AsyncSession,
    request: BookingRequest,
    body: BookingCreate,
    booking: Booking,
    placement: Placement,
    payment: Payment | None,
    emails: NewBookingEmails | None = None,
) -> Booking | None:
    """Step 5: write the booking and its other hosts (`insert_booking`, guarded against
    overlaps), with ``emails`` (`_mailed_with_insert`), then its ``payment``; a rescheduled
    paid booking's payments move to it. Returns the seated booking joined instead, when
    another request opened this seated slot a moment ago."""
    event_type = request.event_type
    try:
        await insert_booking(
            session,
            booking,
            placement.other_hosts,
            recoverable=bool(event_type.seats_per_time_slot),
            emails=emails,
        )
    except BookingRefused:
        if event_type.seats_per_time_slot:
            # Another request opened this seated slot a moment ago: take a seat in it instead.
            joined = await join_seat(
                session, event_type, request.booker, body, request.start, request.end
            )
            if joined is not None:
                return joined
        raise
    # Added once the booking is the session's (`insert_booking`): the flush writes them.
    if payment is not None:
        booking.payments.append(payment)
    if request.previous is not None and request.carried_paid:
        for moved in [p for p in request.previous.payments if p.success]:
            booking.payments.append(moved)
    if booking.payments:
        await session.flush()
    return None


def _mailed_with_insert(
    session: AsyncSession, request: BookingRequest, placement: Placement
) -> bool:
    """Whether the booking's emails are planned before it is inserted and written by its own
    statement (PostgreSQL: one round trip fewer): a new booking of a personal event type,
    whose owner's emails of the hour the event type query counted (emails on). Not a
    reschedule (it cancels the booking it replaces first), nor a seated slot's (its insert
    may become joining a seat, whose emails differ), nor a team's."""
    return (
        request.owner is not None
        and not placement.other_hosts
        and request.previous is None
        and not request.event_type.seats_per_time_slot
        and request.found.owner_emails_this_hour is not None
        and session.get_bind().dialect.name == "postgresql"
    )


def _written(request: BookingRequest, booking: AnyBooking, placement: Placement) -> Written:
    """What announcing the booking about to be inserted needs and this transaction holds
    already (its attendees' ids are theirs once it is inserted)."""
    organizer, found = placement.organizer, request.found
    # The query's answers are about the event type's owner: they stand for a booking of a
    # personal event type (its owner is the only host); a team's hosts are asked for.
    personal = request.owner is not None and not placement.other_hosts
    counted = personal and found.owner_emails_this_hour is not None
    return Written(
        event_type=request.event_type,
        host_ids=sorted({organizer.id, *placement.other_hosts}),
        users={organizer.id: organizer},
        # Inserted in this order, so their ids ascend in it (`writes._insert_values`).
        attendees=tuple(booking.attendees),
        # A reschedule keeps the moved booking's iCal UID (and so its calendar events).
        new_ical_uid=request.previous is None,
        may_have_webhooks=found.may_have_webhooks or not personal,
        may_have_destinations=found.may_have_destinations or not personal,
        emails_this_hour=({organizer.id: found.owner_emails_this_hour or 0} if counted else {}),
    )


async def _seat_taken(
    session: AsyncSession,
    request: BookingRequest,
    joined: Booking,
    host: AnyOrganizer,
    previous: Booking | None,
    mail: MailPolicy | None,
) -> Created:
    """Step 6 for a seat: announce the booker's seat in ``joined``."""
    await announce_new_booking(session, joined, previous=previous)
    if previous is not None:  # the booker left it for a seat: its event goes
        await plan_booking_event(session, previous)
        await mail_booking_change(session, mail, Change.CANCELLED, previous)
    await plan_booking_event(session, joined)
    seat = await _booker_attendees(session, joined, request)
    await mail_booking_change(session, mail, Change.SEAT_TAKEN, joined, attendees=seat)
    return Created(joined, host, None, previous, joined_seat=True)


async def _booker_attendees(
    session: AsyncSession, joined: Booking, request: BookingRequest
) -> list[Attendee]:
    """The rows of the booker (and their guests) in a seated booking they joined."""
    emails = {request.booker.email.lower(), *(g.lower() for g in request.booker.guests)}
    rows = await session.scalars(
        select(Attendee).where(
            Attendee.booking_id == joined.id, func.lower(Attendee.email).in_(emails)
        )
    )
    return list(rows)


def _custom_inputs(body: BookingCreate) -> dict[str, Any] | None:
    if body.custom_inputs is None:
        return None
    values: dict[str, Any] = {}
    for item in body.custom_inputs:
        label = item.get("label")
        if isinstance(label, str):
            values[label] = item.get("value")
    return values
