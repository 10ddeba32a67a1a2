"""GET /slots: load a host's hours and commitments, ask the engine, nothing else.

`load_host_calendar` is the one place that turns rows into the engine's inputs; booking creation
uses it too, so the slots offered and the bookings accepted can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from functools import cache, lru_cache
from itertools import repeat
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
    true,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, raiseload

from bookable.core.auth import Caller
from bookable.core.clock import clock
from bookable.core.db import DriverStatement, autocommit_driver_connection, fetch_in_transaction
from bookable.core.errors import BadRequest, NotFound
from bookable.core.schemas import is_db_id
from bookable.models import (
    Attendee,
    Availability,
    Booking,
    BookingHost,
    BookingStatus,
    EventType,
    Host,
    Membership,
    Schedule,
    SelectedCalendar,
    User,
)
from bookable.models.bookings import MAX_BOOKING_DAYS, LongerThanAllowed
from bookable.scheduling import (
    AvailabilityRule,
    BookingWindow,
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodLimits,
    PeriodType,
    SchedulingKind,
    SeatedBooking,
    Slot,
    SlotRequest,
    TeamHost,
    compute_slots,
    compute_team_slots,
)

if TYPE_CHECKING:
    from bookable.calendars.busy import ExternalBusy

MAX_WINDOW = timedelta(days=366)
# The source of the busy time that blocks a host whose selected calendar could not be read.
UNREADABLE_CALENDAR = "unreadable-calendar"
WEEK_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# Working hours used when a user has no schedule at all (Cal.com's fallback).
FALLBACK_RULES = (AvailabilityRule(frozenset({1, 2, 3, 4, 5}), time(9), time(17)),)
# Busy bookings are read this far around the window, so buffers reaching in are seen.
_BUSY_MARGIN = timedelta(days=2)


def _readable_by(user_id: Any) -> ColumnElement[bool]:
    """The rule of `readable_event_types` for a non-admin ``user_id`` (a value or a bindparam)."""
    my_teams = select(Membership.team_id).where(
        Membership.user_id == user_id, Membership.accepted.is_(True)
    )
    return or_(EventType.user_id == user_id, EventType.team_id.in_(my_teams))


def readable_event_types(caller: Caller) -> Select[tuple[EventType]]:
    """Event types whose slots a caller may query and book: their own, those of the teams they
    are an accepted member of; every one for an admin."""
    query = select(EventType)
    if caller.is_admin:
        return query
    return query.where(_readable_by(caller.user_id))


# What `_event_type_statement` reads beside the event type: nothing; whether its owner or
# hosts selected a calendar (a booking's calendar preflight); or (for GET /slots) that and the
# owner with their schedules (one row per schedule row), the event type and the owner as
# `EventTypeSettings` and `HostSettings` columns instead of ORM entities.
EventTypeExtra = Literal["none", "calendars", "slots"]


@dataclass(frozen=True, slots=True)
class EventTypeSettings:
    """What the slots path reads of an event type, under `EventType`'s attribute names, so
    either serves it (`AnyEventType`). GET /slots reads these columns and builds no ORM entity:
    entities need the session's ORM execution path, and with them the event type's other
    columns (JSON ones parsed): ~0.4 ms of a 5-6 ms request on either database (`bench/README.md`,
    round 7). POST /bookings reads these and a few more (`bookings.common.BookedEventType`)."""

    id: int
    user_id: int | None
    team_id: int | None
    length: int
    time_zone: str | None
    scheduling_type: str | None
    schedule_id: int | None
    slot_interval: int | None
    minimum_booking_notice: int
    before_event_buffer: int
    after_event_buffer: int
    offset_start: int
    period_type: str
    period_days: int | None
    period_count_calendar_days: bool | None
    period_start_date: datetime | None
    period_end_date: datetime | None
    requires_confirmation: bool
    seats_per_time_slot: int | None
    only_show_first_available_slot: bool
    meta: dict[str, Any] | None
    booking_limits: dict[str, int] | None
    duration_limits: dict[str, int] | None


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What the slots path reads of a host (`User`'s attribute names; `AnyHost`). POST /bookings
    reads these and the host's names (`bookings.common.Organizer`)."""

    id: int
    email: str
    time_zone: str
    week_start: str
    default_schedule_id: int | None


# The slots path takes the ORM rows (bookings, team hosts, the availability endpoints) or
# GET /slots' plain columns alike: it reads only the attributes both have.
AnyEventType = EventType | EventTypeSettings
AnyHost = User | HostSettings
EVENT_TYPE_SETTINGS = tuple(getattr(EventType, f.name) for f in fields(EventTypeSettings))
HOST_SETTINGS = tuple(getattr(User, f.name) for f in fields(HostSettings))

# A schedule row as `choose_schedule` takes it (GET /slots and POST /bookings read them).
SCHEDULE_COLUMNS = (
    Schedule.id,
    Schedule.user_id,
    Schedule.time_zone,
    Availability.days,
    Availability.start_time,
    Availability.end_time,
    Availability.date,
)


@cache
def _event_type_statement(*, admin: bool, by_slug: bool, extra: EventTypeExtra) -> Select[Any]:
    """`find_event_type`'s query, built once per shape: a statement kept at module level skips
    building the expression and its cache key on every request. Parameters: ``event_type_id``
    or ``username`` and ``slug``; ``caller_id`` unless ``admin``."""
    query: Select[Any]
    if extra != "none":
        # A superset of `calendar_host_ids`' calendars: False means none to read.
        # Two levels down: event_types is correlated explicitly, or it would join afresh.
        hosts = select(Host.user_id).where(Host.event_type_id == EventType.id).correlate(EventType)
        selected = (
            select(SelectedCalendar.id)
            .where(
                or_(
                    SelectedCalendar.user_id == EventType.user_id,
                    SelectedCalendar.user_id.in_(hosts),
                )
            )
            .exists()
        )
        # The owner (None for a team event type) and every schedule `host_schedule` would read
        # for them: theirs and the event type's own.
        if extra == "slots":
            query = select(*EVENT_TYPE_SETTINGS, *HOST_SETTINGS, selected, *SCHEDULE_COLUMNS)
        else:
            query = select(EventType, selected)
    else:
        query = select(EventType)
    if extra != "slots":
        # Slots need none of the event type's relationships: skip their extra queries.
        query = query.options(raiseload(EventType.custom_inputs), raiseload(EventType.hosts))
    if by_slug:
        query = query.join(User, User.id == EventType.user_id).where(
            func.lower(User.username) == bindparam("username"),
            EventType.slug == bindparam("slug"),
        )
    else:
        if extra == "slots":
            query = query.outerjoin(User, User.id == EventType.user_id)
        query = query.where(EventType.id == bindparam("event_type_id"))
    if extra == "slots":
        query = (
            query.outerjoin(
                Schedule,
                or_(Schedule.user_id == EventType.user_id, Schedule.id == EventType.schedule_id),
            )
            .outerjoin(Availability, Availability.schedule_id == Schedule.id)
            .order_by(Schedule.id, Availability.id)
        )
    if not admin:
        query = query.where(_readable_by(bindparam("caller_id")))
    return query


async def _find_event_type_rows(
    session: AsyncSession,
    caller: Caller,
    *,
    event_type_id: int | None,
    usernames: Sequence[str],
    slug: str | None,
    extra: EventTypeExtra,
    busy: tuple[str, datetime, datetime, str | None] | None = None,
) -> Sequence[Any]:
    """The rows of `_event_type_statement` (at least one), or the 400/404 of a lookup. With
    ``busy`` (the dialect, the busy span and the uid to leave out), of `_slots_statement`."""
    params: dict[str, Any] = {} if caller.is_admin else {"caller_id": caller.user_id}

    def statement(by_slug: bool) -> Select[Any]:
        if busy is None:
            return _event_type_statement(admin=caller.is_admin, by_slug=by_slug, extra=extra)
        dialect, busy_from, busy_to, ignore_uid = busy
        params.update(busy_span_params(busy_from, busy_to))
        if ignore_uid:
            params["ignore_uid"] = ignore_uid
        return _slots_statement(
            admin=caller.is_admin, by_slug=by_slug, ignoring=bool(ignore_uid), dialect=dialect
        )

    async def read(query: Select[Any]) -> Sequence[Any]:
        if busy is not None and (driver := autocommit_driver_connection(session)) is not None:
            # GET /slots on PostgreSQL, statement by statement: asyncpg runs it itself.
            dialect = session.bind.dialect
            return await _driver_statement(query, dialect).fetch(driver, params)
        if extra == "slots":
            # Columns only, no ORM entity: on the session's connection, past the session's
            # ORM execution path (~0.3 ms a request, `EventTypeSettings`).
            return (await (await session.connection()).execute(query, params)).all()
        return (await session.execute(query, params)).all()

    if event_type_id is not None:
        rows: Sequence[Any] = ()
        if is_db_id(event_type_id):
            query = statement(by_slug=False)
            params["event_type_id"] = event_type_id
            rows = await read(query)
        if not rows:
            raise NotFound(f"Event type with id: {event_type_id} not found")
        return rows
    if len(usernames) != 1:
        raise BadRequest(
            "custom in 'usernameList': give exactly one username (dynamic group events are not "
            "supported)"
        )
    query = statement(by_slug=True)
    params.update(username=usernames[0].lower(), slug=slug)
    rows = await read(query)
    if not rows:
        raise NotFound(f"Event type '{slug}' of user '{usernames[0]}' not found")
    return rows


async def find_event_type(
    session: AsyncSession,
    caller: Caller,
    *,
    event_type_id: int | None,
    usernames: Sequence[str],
    slug: str | None,
) -> EventType:
    rows = await _find_event_type_rows(
        session, caller, event_type_id=event_type_id, usernames=usernames, slug=slug, extra="none"
    )
    event_type: EventType = rows[0][0]
    return event_type


async def find_event_type_for_calendars(
    session: AsyncSession,
    caller: Caller,
    *,
    event_type_id: int | None,
    usernames: Sequence[str],
    slug: str | None,
) -> tuple[EventType, bool]:
    """`find_event_type`, and whether its owner or hosts selected a calendar (False: there is
    nothing to read for it), in one query."""
    rows = await _find_event_type_rows(
        session,
        caller,
        event_type_id=event_type_id,
        usernames=usernames,
        slug=slug,
        extra="calendars",
    )
    event_type, selected = rows[0]
    return event_type, bool(selected)


@dataclass(frozen=True, slots=True)
class SlotsEventType:
    """What GET /slots reads first, in one query: the event type, its owner (None for a team's),
    the owner's schedule rows (as `choose_schedule` takes them), whether its owner or hosts
    selected a calendar (False: there is nothing to read for it) and, when asked, the owner's
    busy bookings (`BusyRead`)."""

    event_type: EventTypeSettings
    owner: HostSettings | None
    schedule_rows: Sequence[Any]
    calendars_selected: bool
    busy_read: BusyRead | None = None


async def find_slots_event_type(
    session: AsyncSession,
    caller: Caller,
    *,
    event_type_id: int | None,
    usernames: Sequence[str],
    slug: str | None,
    window: tuple[datetime, datetime] | None = None,
    ignore_booking_uid: str | None = None,
) -> SlotsEventType:
    """The event type GET /slots asks for, its owner and schedules; with ``window`` (the slots
    asked for), also the owner's busy bookings around it, leaving out ``ignore_booking_uid``
    (`_slots_statement`)."""
    if window is None:
        rows = await _find_event_type_rows(
            session, caller, event_type_id=event_type_id, usernames=usernames, slug=slug,
            extra="slots",
        )  # fmt: skip
        busy_read = None
    else:
        busy_from, busy_to = busy_span(*window)
        dialect = session.bind.dialect.name
        rows = await _find_event_type_rows(
            session, caller, event_type_id=event_type_id, usernames=usernames, slug=slug,
            extra="slots", busy=(dialect, busy_from, busy_to, ignore_booking_uid),
        )  # fmt: skip
        busy_read = _busy_read(dialect, rows[0], busy_from, busy_to, ignore_booking_uid)
    first = rows[0]
    event_type = EventTypeSettings(*first[:_OWNER_AT])
    # An outer join: no owner (a team's event type), no owner columns.
    owner = HostSettings(*first[_OWNER_AT:_SELECTED_AT]) if first[_OWNER_AT] is not None else None
    schedule_rows = [row[_SCHEDULE_AT : _SCHEDULE_AT + len(SCHEDULE_COLUMNS)] for row in rows]
    return SlotsEventType(event_type, owner, schedule_rows, bool(first[_SELECTED_AT]), busy_read)


# Where the parts of `_event_type_statement(extra="slots")`'s rows begin.
_OWNER_AT = len(EVENT_TYPE_SETTINGS)
_SELECTED_AT = _OWNER_AT + len(HOST_SETTINGS)
_SCHEDULE_AT = _SELECTED_AT + 1


def event_rules(event_type: AnyEventType) -> EventRules:
    def limits(raw: dict[str, Any] | None) -> PeriodLimits | None:
        if not raw:
            return None
        return PeriodLimits(
            per_day=raw.get("PER_DAY"),
            per_week=raw.get("PER_WEEK"),
            per_month=raw.get("PER_MONTH"),
            per_year=raw.get("PER_YEAR"),
        )

    start = event_type.period_start_date
    end = event_type.period_end_date
    return EventRules(
        length=event_type.length,
        slot_interval=event_type.slot_interval,
        minimum_booking_notice=event_type.minimum_booking_notice or 0,
        before_event_buffer=event_type.before_event_buffer or 0,
        after_event_buffer=event_type.after_event_buffer or 0,
        offset_start=event_type.offset_start or 0,
        window=BookingWindow(
            type=PeriodType(event_type.period_type or "UNLIMITED"),
            days=event_type.period_days,
            count_calendar_days=event_type.period_count_calendar_days is not False,
            # Stored as UTC midnight of the chosen dates (as Cal.com does).
            start_date=start.date() if start else None,
            end_date=end.date() if end else None,
        ),
        seats_per_time_slot=event_type.seats_per_time_slot,
        booking_limits=limits(event_type.booking_limits),
        duration_limits=limits(event_type.duration_limits),
        only_show_first_available_slot=bool(event_type.only_show_first_available_slot),
    )


def allowed_durations(event_type: AnyEventType) -> list[int]:
    durations = (event_type.meta or {}).get("multipleDuration") or []
    return sorted({event_type.length, *(int(d) for d in durations)})


def check_duration(event_type: AnyEventType, duration: int | None) -> None:
    if duration is None:
        return
    allowed = allowed_durations(event_type)
    if duration not in allowed:
        raise BadRequest(
            f"custom in 'duration': {duration} is not a length of this event type "
            f"(allowed: {', '.join(str(d) for d in allowed)})"
        )


def check_window(
    start: datetime, end: datetime, fields: tuple[str, str] = ("startTime", "endTime")
) -> None:
    first, last = fields
    if end <= start:
        raise BadRequest(f"custom in '{last}': {last} must be after {first}")
    if end - start > MAX_WINDOW:
        raise BadRequest(f"custom in '{last}': the window may span at most 366 days")


# Every schedule of some owners (``owners``) or chosen by id (``named``), with its rows.
_SCHEDULES = (
    select(*SCHEDULE_COLUMNS)
    .outerjoin(Availability, Availability.schedule_id == Schedule.id)
    .where(
        or_(
            Schedule.user_id.in_(bindparam("owners", expanding=True)),
            Schedule.id.in_(bindparam("named", expanding=True)),
        )
    )
    .order_by(Schedule.id, Availability.id)
)


async def host_schedule(
    session: AsyncSession,
    event_type: AnyEventType,
    host: AnyHost,
    host_schedule_id: int | None = None,
) -> tuple[ZoneInfo, tuple[AvailabilityRule, ...]]:
    """The host's schedule for this (team) event type, else the event type's schedule, else the
    host's default, else their first, else the fallback.

    One query reads every schedule of the host with its rows; the choice is made here.
    """
    owners = {host.id} | ({event_type.user_id} if event_type.user_id else set())
    named = {i for i in (host_schedule_id, event_type.schedule_id) if i is not None}
    rows = (await session.execute(_SCHEDULES, {"owners": list(owners), "named": list(named)})).all()
    return choose_schedule(rows, event_type, host, host_schedule_id)


def choose_schedule(
    rows: Sequence[Any],
    event_type: AnyEventType,
    host: AnyHost,
    host_schedule_id: int | None = None,
) -> tuple[ZoneInfo, tuple[AvailabilityRule, ...]]:
    """`host_schedule`'s choice among rows of (schedule id, owner id, zone, and one availability
    row's days, start, end, date); a schedule id of None (an outer join's empty row) is skipped."""
    owners = {host.id} | ({event_type.user_id} if event_type.user_id else set())
    schedules: dict[int, tuple[str | None, list[AvailabilityRule]]] = {}
    own: list[int] = []
    for schedule_id, owner_id, zone_name, days, start, end, on_date in rows:
        if schedule_id is None:
            continue
        if schedule_id not in schedules and owner_id in owners:
            own.append(schedule_id)
        _zone, rules = schedules.setdefault(schedule_id, (zone_name, []))
        if start is not None and end is not None:
            rules.append(AvailabilityRule(frozenset(days or ()), start, end, on_date))
    preferred = [host_schedule_id, event_type.schedule_id, host.default_schedule_id, *own]
    chosen = next((sid for sid in preferred if sid is not None and sid in schedules), None)
    if chosen is None:
        return ZoneInfo(event_type.time_zone or host.time_zone or "UTC"), FALLBACK_RULES
    zone_name, rules = schedules[chosen]
    zone = ZoneInfo(zone_name or event_type.time_zone or host.time_zone or "UTC")
    return zone, tuple(rules)


def busy_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """`calendar_window` of an event type without a rolling window."""
    return start - _BUSY_MARGIN, end + _BUSY_MARGIN


def calendar_window(
    event_type: AnyEventType, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The span whose bookings and calendar events matter for slots in [start, end): a margin
    for buffers reaching in, and for a rolling window every day from today on."""
    busy_from, busy_to = busy_span(start, end)
    if event_type.period_type == PeriodType.ROLLING_WINDOW:
        # The window counts days with free slots from today on, so the days between now and
        # the window asked need their commitments too (a full day there does not count).
        busy_from = min(busy_from, clock.now() - _BUSY_MARGIN)
    return busy_from, busy_to


async def _own_event_uids(
    session: AsyncSession,
    rows: Sequence[Any],
    ignore_booking_uid: str | None,
    external: ExternalBusy | None,
) -> frozenset[str]:
    # Rows of `_busy_statement(identified=True)`: uid fifth, iCal UID last.
    uids = {row[4] for row in rows} | {row[-1] for row in rows if row[-1]}
    if ignore_booking_uid:
        uids.add(ignore_booking_uid)
        if external is not None:
            ical_uid = await session.scalar(
                select(Booking.ical_uid).where(Booking.uid == ignore_booking_uid)
            )
            if ical_uid:
                uids.add(ical_uid)
    return frozenset(uids)


def is_bookable_event(uid: str | None, booking_uids: frozenset[str]) -> bool:
    """A calendar event Bookable wrote for one of ``booking_uids`` (UID ``<booking uid>@...``):
    the booking itself already counts (or, being moved, must not block its own move)."""
    if not uid:
        return False
    return uid in booking_uids or uid.partition("@")[0] in booking_uids


async def external_busy_times(
    session: AsyncSession,
    host_id: int,
    busy_from: datetime,
    busy_to: datetime,
    external: ExternalBusy | None,
    booking_uids: frozenset[str],
) -> list[BusyTime]:
    """The host's calendar events as busy times; the whole span when a selected calendar could
    not be read (fail closed, unless the server is set to fail open). Events of the bookings in
    ``booking_uids`` are left out: a booking counts once, as itself (a seated one as seats)."""
    if external is not None and external.covers(host_id, busy_from, busy_to):
        problems = external.problems.get(host_id)
        if problems and not external.fail_open:
            return [BusyTime(busy_from, busy_to, source=UNREADABLE_CALENDAR)]
        return [
            BusyTime(p.start, p.end, source=p.source)
            for p in external.busy.get(host_id, ())
            if p.end > busy_from
            and p.start < busy_to
            and not is_bookable_event(p.uid, booking_uids)
        ]
    selected = await session.scalar(
        select(SelectedCalendar.id).where(SelectedCalendar.user_id == host_id).limit(1)
    )
    if selected is None or (external is not None and external.fail_open):
        return []
    # Selected meanwhile, or asked without reading calendars first: never guess "free".
    return [BusyTime(busy_from, busy_to, source=UNREADABLE_CALENDAR)]


def busy_span_params(busy_from: datetime, busy_to: datetime) -> dict[str, datetime]:
    """The parameters of `_busy_branches` for the span [busy_from, busy_to)."""
    return {
        "busy_from": busy_from,
        "busy_to": busy_to,
        "busy_earliest_start": busy_from - _LONGEST_BOOKING,
    }


# A booking overlapping a span starts at most this long before it (every write refuses longer
# ones; older ones are read through their own index): the host's own bookings are a bounded
# range of the (user_id, start_time) index, not every booking they ever had.
_LONGEST_BOOKING = timedelta(days=MAX_BOOKING_DAYS)


@cache
def _busy_statement(
    *, pending_blocks: bool, ignoring: bool, identified: bool
) -> CompoundSelect[Any]:
    """The bookings that keep a host busy, built once per shape. Parameters: ``host_id``,
    ``host_email`` (lower case), those of `busy_span_params`; ``event_type_id`` when PENDING
    bookings of the event type block too; ``ignore_uid`` for the booking being moved.

    Rows: start, end, and the buffers of the booking's event type (0 without one); with
    ``identified``, also its uid, event type id and iCal UID (needed for seats and to match
    calendar events; thousands of strings read for nothing otherwise)."""
    return _busy_branches(
        bindparam("host_id"),
        bindparam("host_email"),
        pending_blocks=pending_blocks,
        ignoring=ignoring,
        identified=identified,
    )


def _busy_branches(
    host_id: ColumnElement[Any],
    host_email: ColumnElement[Any],
    *,
    pending_blocks: bool,
    ignoring: bool,
    identified: bool,
    buffers: bool = True,
) -> CompoundSelect[Any]:
    """`_busy_statement` for a host given as SQL expressions (bind parameters, or the scalar
    subqueries of `_slots_statement`). Without ``buffers``, each row has the booking's event
    type id third instead of the two buffers, and no join (`_slots_statement` maps them).

    Three branches, each row in one only: the host's own bookings starting at most the longest
    booking before the span (a range of the (user_id, start_time) index); their own older
    bookings longer than that, from before the limit (a partial index, nearly always empty);
    the bookings of others the host co-hosts or attends. One OR over them made both databases
    scan every booking."""
    status_blocks: ColumnElement[bool] = Booking.status == BookingStatus.ACCEPTED
    if pending_blocks:
        status_blocks = or_(
            status_blocks,
            and_(
                Booking.status == BookingStatus.PENDING,
                Booking.event_type_id == bindparam("event_type_id"),
            ),
        )
    shared = union(
        # The host's share of team bookings organised by someone else.
        select(BookingHost.booking_id).where(
            BookingHost.user_id == host_id, ~BookingHost.organizer
        ),
        # Bookings the host attends (by email).
        select(Attendee.booking_id).where(func.lower(Attendee.email) == host_email),
    )

    def branch(*whose: ColumnElement[bool]) -> Select[Any]:
        columns: list[ColumnElement[Any]] = [Booking.start_time, Booking.end_time]
        if buffers:
            columns += [
                func.coalesce(EventType.before_event_buffer, 0),
                func.coalesce(EventType.after_event_buffer, 0),
            ]
        else:
            columns.append(Booking.event_type_id)
        if identified:
            columns += [Booking.uid, Booking.event_type_id, Booking.ical_uid]
        query = select(*columns)
        if buffers:
            query = query.outerjoin(EventType, EventType.id == Booking.event_type_id)
        query = query.where(
            *whose,
            status_blocks,
            Booking.start_time < bindparam("busy_to"),
            Booking.end_time > bindparam("busy_from"),
        )
        if ignoring:
            query = query.where(Booking.uid != bindparam("ignore_uid"))
        return query

    earliest = bindparam("busy_earliest_start")
    return union_all(
        branch(Booking.user_id == host_id, Booking.start_time >= earliest),
        branch(Booking.user_id == host_id, LongerThanAllowed(), Booking.start_time < earliest),
        branch(Booking.user_id.is_distinct_from(host_id), Booking.id.in_(shared)),
    )


# What `_slots_statement` reads busy times as: the instants as comma-separated text (UTC, ISO
# with their offset) on both databases; the ids and buffers as arrays on PostgreSQL (asyncpg
# decodes integers in C), comma-separated text on SQLite.
# Per booking: start, end, event type id; per event type read with a buffer: id, buffers.
_BUSY_TIMES = ("busy_starts", "busy_ends", "busy_type_ids")
_BUSY_BUFFERS = ("buffer_type_ids", "buffer_befores", "buffer_afters")
_NO_BUFFERS = (0, 0)


@cache
def _slots_statement(*, admin: bool, by_slug: bool, ignoring: bool, dialect: str) -> Select[Any]:
    """`_event_type_statement(extra="slots")`, which also reads the owner's busy bookings as
    `_busy_statement` would for them (ACCEPTED only, nothing identified): GET /slots' two
    round trips in one. Parameters: those of `_event_type_statement`, ``busy_from``,
    ``busy_to``, and ``ignore_uid`` when ``ignoring``.

    The owner is found again by scalar subqueries (the same lookup, without the readability
    rule: what they read is used only beside a row the caller may read, and only when they
    found that row's owner). The busy times come as aggregates, on the first row only (a row
    per schedule row would repeat them): one value each instead of a row per booking, each
    with SQLAlchemy's per-row work and two type conversions, which cost more than the rows'
    transfer (`BusyRead`): starts, ends and event type ids per booking, and the buffers of
    those event types that have any."""
    looked_up, owner, host = aliased(EventType), aliased(User), aliased(User)
    host_id_query = select(looked_up.user_id)
    if by_slug:
        host_id_query = (
            host_id_query.join(owner, owner.id == looked_up.user_id)
            .where(
                func.lower(owner.username) == bindparam("username"),
                looked_up.slug == bindparam("slug"),
            )
            .limit(1)
        )
    else:
        host_id_query = host_id_query.where(looked_up.id == bindparam("event_type_id"))
    host_id = host_id_query.correlate(None).scalar_subquery()
    host_email = (
        select(func.lower(host.email)).where(host.id == host_id).correlate(None).scalar_subquery()
    )
    # Each booking's event type id, not its buffers: a join per booking (an index probe each on
    # PostgreSQL, ~0.4 ms at 565 bookings) for buffers that are nearly always 0. The buffers
    # come once per event type instead, only for the types read that have any (`_busy_read`
    # maps them); the CTE is read twice, so PostgreSQL computes it once.
    busy = _busy_branches(
        host_id,
        host_email,
        pending_blocks=False,
        ignoring=ignoring,
        identified=False,
        buffers=False,
    ).cte("busy")
    start, end, type_id = busy.c
    typed = aliased(EventType)
    before = func.coalesce(typed.before_event_buffer, 0)
    after = func.coalesce(typed.after_event_buffer, 0)
    aggregates: list[ColumnElement[Any]]
    buffer_aggregates: list[ColumnElement[Any]]
    if dialect == "postgresql":
        integers = ARRAY(Integer())

        def instants(column: ColumnElement[Any]) -> ColumnElement[Any]:
            # As text, the UTC wall time with "+00:00" appended (the connection's DateStyle is
            # ISO: `create_engine`), parsed by `datetime.fromisoformat`: asyncpg's binary
            # timestamptz decoding builds each datetime by arithmetic in Python objects, and
            # 1,128 of them took ~0.45 ms more than the text and its parsing (565 bookings).
            wall = cast(func.timezone("UTC", column), Text())
            return func.string_agg(wall + "+00:00", ",", type_=String())

        aggregates = [
            instants(start),
            instants(end),
            func.array_agg(type_id, type_=integers),  # NULL kept: no event type, no buffers
        ]
        buffer_aggregates = [
            func.array_agg(typed.id, type_=integers),
            func.array_agg(before, type_=integers),
            func.array_agg(after, type_=integers),
        ]
    else:
        # Stored as naive UTC text ("2027-03-01 09:00:00.000000"): with "+00:00" appended,
        # `datetime.fromisoformat` gives the aware instant UTCDateTime would (~10x faster than
        # parsing and replacing the zone after).
        aggregates = [
            func.group_concat(type_coerce(start, String()) + "+00:00", type_=String()),
            func.group_concat(type_coerce(end, String()) + "+00:00", type_=String()),
            # group_concat skips NULLs: an empty item keeps the places (and matches no type).
            func.group_concat(func.coalesce(type_coerce(type_id, String()), ""), type_=String()),
        ]
        buffer_aggregates = [
            func.group_concat(type_coerce(typed.id, String()), type_=String()),
            func.group_concat(before, type_=String()),
            func.group_concat(after, type_=String()),
        ]
    times = select(
        host_id.label("busy_host_id"),
        host_email.label("busy_host_email"),
        *(aggregate.label(name) for aggregate, name in zip(aggregates, _BUSY_TIMES, strict=True)),
    ).subquery("busy_aggregates")
    buffered = (
        select(
            *(
                aggregate.label(name)
                for aggregate, name in zip(buffer_aggregates, _BUSY_BUFFERS, strict=True)
            )
        )
        .where(typed.id.in_(select(type_id)), or_(before != 0, after != 0))
        .correlate(None)
        .subquery("busy_buffers")
    )
    busy_times = (
        select(times, buffered).select_from(times.join(buffered, true())).subquery("busy_times")
    )
    first_row = func.row_number().over() == 1
    query = _event_type_statement(admin=admin, by_slug=by_slug, extra="slots")
    return query.join(busy_times, true()).add_columns(
        *(case((first_row, column)).label(column.name) for column in busy_times.c)
    )


@lru_cache(maxsize=64)
def _driver_statement(statement: Select[Any], dialect: Any) -> DriverStatement:
    """`_slots_statement`'s shapes compiled for asyncpg, once per shape and engine."""
    return DriverStatement(statement, dialect)


@dataclass(frozen=True, slots=True)
class BusyRead:
    """The busy bookings `_slots_statement` read beside the event type: the host it found and
    their e-mail as SQL lower-cased it, the span, the booking left out (by uid), the times.

    `load_host_calendar` takes them instead of asking again only when it would have asked
    exactly this: the same host and e-mail, span and uid, ACCEPTED bookings only, no uids
    needed (no seats, no calendar events to match)."""

    host_id: int | None
    host_email: str | None
    busy_from: datetime
    busy_to: datetime
    ignore_uid: str | None
    busy: tuple[BusyTime, ...]
    # When no booking read has buffers (the usual case): all of them, as `HostCalendar`
    # takes them (`busy` is then empty).
    unbuffered: tuple[tuple[datetime, datetime], ...] = ()

    def answers(
        self, host: AnyHost, busy_from: datetime, busy_to: datetime, ignore_uid: str | None
    ) -> bool:
        return (
            self.host_id == host.id
            # Python's lower() and the database's differ beyond ASCII: then ask again.
            and self.host_email == host.email.lower()
            and self.busy_from == busy_from
            and self.busy_to == busy_to
            and self.ignore_uid == (ignore_uid or None)
        )


def _busy_read(
    dialect: str, row: Sequence[Any], busy_from: datetime, busy_to: datetime, ignore: str | None
) -> BusyRead:
    """`BusyRead` from the first row's `_slots_statement` columns (its last eight)."""
    host_id, host_email, starts, ends, type_ids, buffer_ids, befores, afters = row[-8:]
    busy: tuple[BusyTime, ...] = ()
    unbuffered: tuple[tuple[datetime, datetime], ...] = ()
    if starts is not None:  # else no booking in the span (an aggregate of no rows is NULL)
        # UTC instants as ISO text with their offset, on both databases.
        instant = datetime.fromisoformat
        starts, ends = map(instant, starts.split(",")), map(instant, ends.split(","))
        if dialect != "postgresql":
            # Text items, ids too (an empty one: no event type): they are only matched.
            type_ids = type_ids.split(",")
            if buffer_ids is not None:
                buffer_ids = buffer_ids.split(",")
                befores, afters = map(int, befores.split(",")), map(int, afters.split(","))
        if buffer_ids is None:  # no event type read has a buffer (the usual case)
            # Plain (start, end) pairs, built by zip in C: no named tuple per booking, and the
            # engine takes them as they are (`HostCalendar.unbuffered`).
            unbuffered = tuple(zip(starts, ends, strict=True))
        else:
            buffers = dict(zip(buffer_ids, zip(befores, afters, strict=True), strict=True))
            pairs = [buffers.get(type_id, _NO_BUFFERS) for type_id in type_ids]
            befores_of = [pair[0] for pair in pairs]
            afters_of = [pair[1] for pair in pairs]
            # Every field given, through tuple.__new__ itself: the named tuple's generated
            # __new__ is a Python call per booking, ~3x the time (565 bookings: ~0.3 ms).
            fields = zip(starts, ends, befores_of, afters_of, repeat(None), strict=False)
            busy = tuple(map(tuple.__new__, repeat(BusyTime), fields))
    return BusyRead(host_id, host_email, busy_from, busy_to, ignore or None, busy, unbuffered)


async def load_host_calendar(
    session: AsyncSession,
    event_type: AnyEventType,
    host: AnyHost,
    start: datetime,
    end: datetime,
    *,
    ignore_booking_uid: str | None = None,
    host_schedule_id: int | None = None,
    external: ExternalBusy | None = None,
    schedule: tuple[ZoneInfo, tuple[AvailabilityRule, ...]] | None = None,
    busy_read: BusyRead | None = None,
) -> HostCalendar:
    """Everything the engine needs about one host between ``start`` and ``end``.

    ``external`` holds what the hosts' selected calendars said, read before the transaction
    (`calendars.busy`); it must cover `calendar_window`, else a host with selected calendars is
    unavailable (fail closed). ``schedule``: `host_schedule`'s answer when the caller read it
    already; ``busy_read``: the busy bookings GET /slots' first statement read, taken when
    they are what would be asked here."""
    if schedule is None:
        schedule = await host_schedule(session, event_type, host, host_schedule_id)
    zone, rules = schedule
    busy_from, busy_to = calendar_window(event_type, start, end)
    metadata = event_type.meta or {}
    pending_blocks = bool(
        event_type.requires_confirmation and metadata.get("requiresConfirmationWillBlockSlot")
    )
    # A seated slot waiting PENDING (priced, or to be confirmed) is still the slot seats join.
    pending_blocks = pending_blocks or bool(event_type.seats_per_time_slot)
    seats = bool(event_type.seats_per_time_slot)
    # Calendar events are matched against the host's bookings by uid: only when there are some.
    match_events = external is not None and bool(external.busy.get(host.id))
    identified = seats or match_events
    seated_ids: dict[str, tuple[datetime, datetime]] = {}
    busy: list[BusyTime]
    unbuffered: tuple[tuple[datetime, datetime], ...] = ()
    rows: Sequence[Any] = ()
    if (
        busy_read is not None
        and not (pending_blocks or identified)
        and busy_read.answers(host, busy_from, busy_to, ignore_booking_uid)
    ):
        busy = list(busy_read.busy)
        unbuffered = busy_read.unbuffered
    else:
        query = _busy_statement(
            pending_blocks=pending_blocks,
            ignoring=bool(ignore_booking_uid),
            identified=identified,
        )
        params: dict[str, Any] = {
            "host_id": host.id,
            "host_email": host.email.lower(),
            **busy_span_params(busy_from, busy_to),
        }
        if pending_blocks:
            params["event_type_id"] = event_type.id
        if ignore_booking_uid:
            params["ignore_uid"] = ignore_booking_uid
        # Pending ORM changes first, as `session.execute`'s autoflush would (a reschedule's, a
        # confirmation's; a new booking has none, and the flush finds nothing to do).
        if session.autoflush:
            await session.flush()
        rows = await fetch_in_transaction(await session.connection(), query, params)
        if seats:
            busy = []
            for b_start, b_end, before, after, uid, b_event_type, _ical_uid in rows:
                if b_event_type == event_type.id:
                    seated_ids[uid] = (b_start, b_end)
                else:
                    busy.append(BusyTime(b_start, b_end, before, after))
        else:
            # Start, end and buffers lead every row, whatever the shape.
            busy = [BusyTime(row[0], row[1], row[2], row[3]) for row in rows]

    # The host's bookings read above, and the one being moved or confirmed, by uid and by
    # iCal UID (a rescheduled booking's event keeps the first booking's UID): only needed to
    # leave out calendar events that are these bookings, so only when there are events.
    own_uids: frozenset[str] = frozenset()
    if match_events:
        own_uids = await _own_event_uids(session, rows, ignore_booking_uid, external)
    busy.extend(await external_busy_times(session, host.id, busy_from, busy_to, external, own_uids))

    seated: list[SeatedBooking] = []
    if seated_ids:
        counts = dict(
            (
                await session.execute(
                    select(Booking.uid, func.count(Attendee.id))
                    .join(Attendee, Attendee.booking_id == Booking.id)
                    .where(Booking.uid.in_(seated_ids))
                    .group_by(Booking.uid)
                )
            ).all()
        )
        seated = [
            SeatedBooking(s, e, uid, int(counts.get(uid, 0))) for uid, (s, e) in seated_ids.items()
        ]

    counted: list[BusyTime] = []
    if event_type.booking_limits or event_type.duration_limits:
        # Limits count whole periods (up to a year) around the window.
        query = select(Booking.start_time, Booking.end_time).where(
            Booking.event_type_id == event_type.id,
            Booking.status == BookingStatus.ACCEPTED,
            Booking.start_time >= start - timedelta(days=366),
            Booking.start_time < end + timedelta(days=366),
        )
        if ignore_booking_uid:
            query = query.where(Booking.uid != ignore_booking_uid)
        counted = [BusyTime(s, e) for s, e in (await session.execute(query)).all()]

    week_start = WEEK_DAYS.index(host.week_start) if host.week_start in WEEK_DAYS else 0
    return HostCalendar(
        zone=zone,
        rules=rules,
        busy=tuple(busy),
        seated=tuple(seated),
        counted=tuple(counted),
        week_start=week_start,
        unbuffered=unbuffered,
    )


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """A parsed GET /slots: the window in UTC, the booker's zone (None: answer in UTC)."""

    start: datetime
    end: datetime
    zone: ZoneInfo | None
    duration: int | None = None
    reschedule_uid: str | None = None


async def calendar_host_ids(session: AsyncSession, event_type: AnyEventType) -> list[int]:
    """The users whose calendars decide this event type's slots: its owner, or a team event
    type's hosts."""
    if event_type.team_id is None:
        return [event_type.user_id] if event_type.user_id is not None else []
    return list(
        await session.scalars(select(Host.user_id).where(Host.event_type_id == event_type.id))
    )


async def available_slots(
    session: AsyncSession,
    found: SlotsEventType,
    *,
    query: SlotQuery,
    now: datetime,
    external: ExternalBusy | None = None,
) -> list[Slot]:
    """The slots of ``found`` (`find_slots_event_type`) for the window asked."""
    event_type, owner = found.event_type, found.owner
    check_duration(event_type, query.duration)
    request = SlotRequest(
        query.start, query.end, now, query.zone or ZoneInfo("UTC"), query.duration
    )
    if event_type.team_id is not None:
        team = await load_team(
            session,
            event_type,
            query.start,
            query.end,
            ignore_booking_uid=query.reschedule_uid,
            external=external,
        )
        team_slots = compute_team_slots(event_rules(event_type), team.hosts, team.kind, request)
        return [s.slot for s in team_slots]
    if owner is None:
        raise NotFound("The event type's owner no longer exists")
    calendar = await load_host_calendar(
        session,
        event_type,
        owner,
        query.start,
        query.end,
        ignore_booking_uid=query.reschedule_uid,
        external=external,
        schedule=choose_schedule(found.schedule_rows, event_type, owner),
        busy_read=found.busy_read,
    )
    return compute_slots(event_rules(event_type), calendar, request)


@dataclass(frozen=True, slots=True)
class Team:
    """A team event type's hosts, ready for the engine: fixed hosts first, then by id."""

    kind: SchedulingKind
    hosts: list[TeamHost]
    users: dict[int, User]


def scheduling_kind(event_type: AnyEventType) -> SchedulingKind:
    kind = event_type.scheduling_type
    if kind == "MANAGED":
        raise BadRequest(
            "custom in 'eventTypeId': a managed event type is a template; book one of the "
            "personal event types made from it"
        )
    if kind not in (SchedulingKind.COLLECTIVE, SchedulingKind.ROUND_ROBIN):
        raise BadRequest(
            "custom in 'eventTypeId': this team event type has no schedulingType "
            "(COLLECTIVE or ROUND_ROBIN); set one with PATCH /event-types/{id}"
        )
    return SchedulingKind(kind)


async def load_team(
    session: AsyncSession,
    event_type: AnyEventType,
    start: datetime,
    end: datetime,
    *,
    ignore_booking_uid: str | None = None,
    external: ExternalBusy | None = None,
) -> Team:
    """Every host's calendar between ``start`` and ``end``, each in its own zone and hours."""
    kind = scheduling_kind(event_type)
    rows = (
        await session.execute(
            select(Host, User)
            .join(User, User.id == Host.user_id)
            .where(Host.event_type_id == event_type.id)
            .options(raiseload(Host.event_type))
            .order_by(Host.is_fixed.desc(), User.id)
        )
    ).all()
    hosts: list[TeamHost] = []
    users: dict[int, User] = {}
    for host, user in rows:
        calendar = await load_host_calendar(
            session, event_type, user, start, end,
            ignore_booking_uid=ignore_booking_uid, host_schedule_id=host.schedule_id,
            external=external,
        )  # fmt: skip
        fixed = kind == SchedulingKind.COLLECTIVE or bool(host.is_fixed)
        hosts.append(TeamHost(user.id, calendar, fixed=fixed))
        users[user.id] = user
    return Team(kind, hosts, users)
