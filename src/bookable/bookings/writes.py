"""Writing a booking so that no two accepted bookings of a host overlap: PostgreSQL's
exclusion constraint judges every write; SQLite's serialised writers get the same rule in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache, partial
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    JSON,
    Insert,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from bookable.bookings.access import booking_host_ids
from bookable.bookings.common import BookingRefused, NewAttendee, NewBooking
from bookable.bookings.locks import lock_host_days
from bookable.core.db import DriverStatement, fetch_in_transaction
from bookable.core.dispatch import marked_written, notify_column
from bookable.models import Attendee, Booking, BookingHost, BookingStatus, OutboundEmail
from bookable.notifications.outbox import FACTS_HEAD, NewBookingEmails
from bookable.scheduling import Refusal

HOST_OVERLAP_CONSTRAINT = "ex_booking_hosts_overlap"


DEADLOCK_SQLSTATE = "40P01"
INSERT_ATTEMPTS = 3


async def insert_booking(
    session: AsyncSession,
    booking: Booking,
    other_hosts: Sequence[int] = (),
    *,
    recoverable: bool = False,
    emails: NewBookingEmails | None = None,
) -> None:
    """Insert ``booking`` (new, not added to the session) with its attendees and its other
    hosts (`_insert_rows`), then make it one of the session's loaded rows; the host-overlap
    constraint's refusal becomes a 409. ``emails`` (PostgreSQL, not ``recoverable``): its
    email rows, written by the same statement (`outbox.new_booking_emails`). The caller holds
    the hosts' day locks already (`create.lock`, taken before the availability check).

    PostgreSQL checks an exclusion constraint after writing the new index entry: two
    transactions inserting overlapping bookings at the same moment would each find the other's
    uncommitted row and wait for it, until the deadlock detector aborts one (40P01, a 500).
    So writers of one host's bookings on one day first queue on a lock held to the end of
    their transaction: the next one meets the committed row and gets the constraint's clean
    refusal. Should a writer that takes no such lock still deadlock with this insert, the
    whole transaction is run again (`core.retry`).
    ``recoverable``: the caller goes on after a refusal (it joins a seat instead), so the
    insert runs inside a savepoint (two more round trips) that a refusal or a deadlock rolls
    back alone; a deadlocked insert is then tried again in place."""
    assert not (recoverable and emails), "a booking's emails are written after a savepoint"
    if not recoverable:
        with _overlap_refused():
            await _insert_rows(session, booking, other_hosts, emails)
        _loaded(session, booking)
        return
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            with _overlap_refused():
                async with session.begin_nested():
                    await _insert_rows(session, booking, other_hosts)
            _loaded(session, booking)
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != DEADLOCK_SQLSTATE:
                raise
            if attempt == INSERT_ATTEMPTS:
                raise


# The columns a new booking and its attendees are inserted with (every one but the id, as the
# ORM's flush did), and each one's attribute name and default.
_BOOKINGS: Table = Booking.__table__  # type: ignore[assignment]
_ATTENDEES: Table = Attendee.__table__  # type: ignore[assignment]
_EMAILS: Table = OutboundEmail.__table__  # type: ignore[assignment]
_ATTENDEE_FIELDS = ("email", "name", "time_zone", "locale", "phone_number", "no_show")


def _written_columns(model: type[Any]) -> list[tuple[str, str, Any]]:
    """(attribute, column key, default) of every column but the primary key; a default is a
    value or a function of no argument."""
    columns = []
    for attribute in sa_inspect(model).column_attrs:
        column = attribute.columns[0]
        if column.primary_key:
            continue
        default = column.default.arg if column.default is not None else None
        if callable(default):  # SQLAlchemy's wrapper takes an execution context
            default = partial(default, None)
        columns.append((attribute.key, column.key, default))
    return columns


_BOOKING_COLUMNS = _written_columns(Booking)
_ATTENDEE_COLUMNS = _written_columns(Attendee)


def _column_values(obj: Any, columns: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """``obj``'s column values by column key; an attribute never set gets its column's default
    (and is set to it: the object then holds what the row holds)."""
    state = obj.__dict__
    values = {}
    for attribute, key, default in columns:
        if attribute not in state:
            setattr(obj, attribute, default() if callable(default) else default)
        values[key] = state[attribute]
    return values


@cache
def _insert_booking_and_attendees(
    email_columns: tuple[str, ...] = (), *, notify: bool = False
) -> Insert:
    """PostgreSQL: the booking and its attendees in one statement (a data-modifying CTE);
    the attendees come as arrays, in order. Returns the attendees' ids and the booking's.
    With ``email_columns``, the booking's email rows too (`_new_emails`), and with ``notify``
    the NOTIFY that wakes the email dispatchers."""
    new = (
        insert(_BOOKINGS)
        .values(
            {key: bindparam(key, type_=_BOOKINGS.c[key].type) for _a, key, _d in _BOOKING_COLUMNS}
        )
        .returning(_BOOKINGS.c.id)
        .cte("new_booking")
    )
    rows = (
        func.unnest(
            *(
                bindparam(f"attendee_{name}", type_=ARRAY(_ATTENDEES.c[name].type))
                for name in _ATTENDEE_FIELDS
            )
        )
        .table_valued(*_ATTENDEE_FIELDS, with_ordinality="position")
        .render_derived(name="given")
    )
    chosen = (
        select(new.c.id, *(rows.c[name] for name in _ATTENDEE_FIELDS))
        .select_from(new)
        .join(rows, true())
        .order_by(rows.c.position)
    )
    statement = (
        insert(_ATTENDEES)
        .from_select(["booking_id", *_ATTENDEE_FIELDS], chosen)
        .returning(_ATTENDEES.c.id, _ATTENDEES.c.booking_id)
    )
    if email_columns:
        statement = statement.add_cte(_new_emails(new, email_columns))
    if notify:
        statement = statement.returning(notify_column("email"))
    return statement


def _new_emails(new_booking: CTE, columns: tuple[str, ...]) -> CTE:
    """The email rows of the booking `new_booking` inserts (`NewBookingEmails`), as arrays of
    ``columns`` in order: its id in ``booking_id`` and, in the text of ``facts``, between
    `FACTS_HEAD` and each row's tail."""
    given = (
        func.unnest(
            *(bindparam(f"email_{name}", type_=ARRAY(_EMAILS.c[name].type)) for name in columns),
            bindparam("email_facts_tail", type_=ARRAY(Text())),
        )
        .table_valued(*columns, "facts_tail", with_ordinality="position")
        .render_derived(name="given_emails")
    )
    facts = literal(FACTS_HEAD, Text()) + cast(new_booking.c.id, Text()) + given.c.facts_tail
    chosen = (
        select(new_booking.c.id, cast(facts, JSON()), *(given.c[name] for name in columns))
        .select_from(new_booking)
        .join(given, true())
        .order_by(given.c.position)
    )
    return insert(_EMAILS).from_select(["booking_id", "facts", *columns], chosen).cte("new_emails")


@lru_cache(maxsize=32)
def _driver_insert(
    email_columns: tuple[str, ...], notify: bool, dialect: Dialect
) -> DriverStatement:
    """`_insert_booking_and_attendees` compiled once per shape and engine, its parameters
    processed as SQLAlchemy processes them (`DriverStatement.arguments`), for
    `exec_driver_sql`: the same SQL and values reach the driver, through SQLAlchemy's
    transaction, events and error handling, without its per-execution work on the statement's
    ~40-55 parameters (extracting and matching them to the cached compilation, then processing
    them: ~3.5 thousand bytecodes a booking, more than the rest of the insert's Python work).
    `tests/api/test_bookings_create.py` holds what the driver receives equal to SQLAlchemy's."""
    return DriverStatement(_insert_booking_and_attendees(email_columns, notify=notify), dialect)


def _inserting_every_column(table: Table, columns: list[tuple[str, str, Any]]) -> Insert:
    """SQLite: one row of ``table``, every column of ``columns`` a parameter (no default
    applied by the statement), returning its id."""
    values = {key: bindparam(key, type_=table.c[key].type) for _a, key, _d in columns}
    return insert(table).values(values).returning(table.c.id)


_SQLITE_INSERT_BOOKING = _inserting_every_column(_BOOKINGS, _BOOKING_COLUMNS)
_SQLITE_INSERT_ATTENDEE = _inserting_every_column(_ATTENDEES, _ATTENDEE_COLUMNS)
_INSERT_HOSTS = insert(BookingHost.__table__)


async def _insert_rows(
    session: AsyncSession,
    booking: Booking,
    other_hosts: Sequence[int],
    emails: NewBookingEmails | None = None,
) -> None:
    """`_insert_values` of an ORM booking (a reschedule, a seat, a payment: `unwritten_booking`),
    whose ids are then set on it and its attendees."""
    values = _column_values(booking, _BOOKING_COLUMNS)
    attendees = booking.attendees
    attendee_values = [_column_values(a, _ATTENDEE_COLUMNS) for a in attendees]
    booking_id, attendee_ids = await _insert_values(
        session, values, attendee_values, other_hosts, emails
    )
    booking.id = booking_id
    for attendee, attendee_id in zip(attendees, attendee_ids, strict=True):
        attendee.id, attendee.booking_id = attendee_id, booking_id


async def _insert_values(
    session: AsyncSession,
    values: dict[str, Any],
    attendee_values: list[dict[str, Any]],
    other_hosts: Sequence[int],
    emails: NewBookingEmails | None = None,
) -> tuple[int, list[int]]:
    """The booking (``values``: every column but the id, by column key), its attendees (the
    same, in order) and its other hosts, with Core: no unit of work (its flush was ~10 % of a
    booking's CPU). PostgreSQL: the booking and its attendees in one statement, with ``emails``
    too; SQLite: the booking, then its attendees. Returns the booking's id and its attendees'
    in order. ``values`` and ``attendee_values`` are the statement's: they are changed."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        for name in _ATTENDEE_FIELDS:
            values[f"attendee_{name}"] = [a[name] for a in attendee_values]
        email_columns: tuple[str, ...] = ()
        notify = False
        if emails is not None:
            email_columns = tuple(emails.rows[0])
            for name in email_columns:
                values[f"email_{name}"] = [row[name] for row in emails.rows]
            values["email_facts_tail"] = emails.facts_tails
            notify = emails.wake and marked_written(session, "email")
        statement = _driver_insert(email_columns, notify, connection.dialect)
        arguments = tuple(statement.arguments(values))  # a list would be many rows' parameters
        rows = (await connection.exec_driver_sql(statement.sql, arguments)).all()
        booking_id = rows[0][1]
        # Ids come from one sequence in the order the rows were inserted (by position).
        attendee_ids = sorted(row[0] for row in rows)
    else:
        assert emails is None, "a booking's emails are written with it on PostgreSQL only"
        # By the driver, one trip to aiosqlite's thread each (`fetch_in_transaction`): the
        # booking, then its attendees one by one, in order (few: the booker and their guests).
        ((booking_id,),) = await fetch_in_transaction(connection, _SQLITE_INSERT_BOOKING, values)
        attendee_ids = []
        for row in attendee_values:
            row["booking_id"] = booking_id
            ((attendee_id,),) = await fetch_in_transaction(connection, _SQLITE_INSERT_ATTENDEE, row)
            attendee_ids.append(attendee_id)
    if other_hosts:
        # The organiser's row comes from the insert trigger; the other hosts' here, where the
        # same constraint judges them.
        await connection.execute(
            _INSERT_HOSTS,
            [
                {
                    "booking_id": booking_id,
                    "user_id": user_id,
                    "organizer": False,
                    "status": values["status"],
                    "blocked_start": values["blocked_start"],
                    "blocked_end": values["blocked_end"],
                }
                for user_id in other_hosts
            ],
        )
    return booking_id, attendee_ids


def new_booking(values: dict[str, Any], attendees: list[dict[str, Any]]) -> NewBooking:
    """A new booking holding ``values`` (its attribute values) and its ``attendees`` (theirs,
    in order) as plain values, every column not given at its default (the fields' defaults are
    the columns', what the row will hold), no id yet: for `insert_new_booking`."""
    return NewBooking(**values, attendees=tuple(NewAttendee(**a) for a in attendees))


# A `NewBooking`'s (`NewAttendee`'s) values in the order of `_BOOKING_COLUMNS`
# (`_ATTENDEE_COLUMNS`), read in one call, and the column keys they are written under.
_BOOKING_KEYS = tuple(key for _attribute, key, _default in _BOOKING_COLUMNS)
_booking_values = attrgetter(*(attribute for attribute, _key, _default in _BOOKING_COLUMNS))
_ATTENDEE_KEYS = tuple(key for _attribute, key, _default in _ATTENDEE_COLUMNS)
_attendee_values = attrgetter(*(attribute for attribute, _key, _default in _ATTENDEE_COLUMNS))


async def insert_new_booking(
    session: AsyncSession,
    booking: NewBooking,
    other_hosts: Sequence[int] = (),
    *,
    emails: NewBookingEmails | None = None,
) -> None:
    """`insert_booking` for a `NewBooking` (never ``recoverable``: a seated slot's booking
    takes the ORM path): sets its id and its attendees' on them (`Written.attendees` holds the
    same objects). Nothing joins the session."""
    values = dict(zip(_BOOKING_KEYS, _booking_values(booking), strict=True))
    attendee_values = [
        dict(zip(_ATTENDEE_KEYS, _attendee_values(a), strict=True)) for a in booking.attendees
    ]
    with _overlap_refused():
        booking_id, attendee_ids = await _insert_values(
            session, values, attendee_values, other_hosts, emails
        )
    booking.id = booking_id
    for attendee, attendee_id in zip(booking.attendees, attendee_ids, strict=True):
        attendee.id, attendee.booking_id = attendee_id, booking_id


def unwritten_booking(values: dict[str, Any], attendees: list[dict[str, Any]]) -> Booking:
    """A new booking holding ``values`` (its attribute values) and its ``attendees`` (theirs,
    in order), with no payment and no reference, for `insert_booking`. Built with no change
    history (~20 µs against the constructors' ~100): the rows are written with Core, not the
    unit of work, and `_loaded` then makes them the session's as if read back."""
    booking = _BOOKING_INSTANCE()
    booking.__dict__.update(values)
    rows = []
    for attendee_values in attendees:
        attendee = _ATTENDEE_INSTANCE()
        attendee.__dict__.update(attendee_values)
        set_committed_value(attendee, "booking", booking)
        rows.append(attendee)
    set_committed_value(booking, "attendees", rows)
    set_committed_value(booking, "payments", [])
    set_committed_value(booking, "references", [])
    return booking


_BOOKING_INSTANCE = Booking.__mapper__.class_manager.new_instance
_ATTENDEE_INSTANCE = Attendee.__mapper__.class_manager.new_instance


def _loaded(session: AsyncSession, booking: Booking) -> None:
    """Make the inserted booking and its attendees the session's, as if read back: later
    changes to them (a payment added) are flushed as usual, and nothing is read again."""
    for attendee in booking.attendees:
        make_transient_to_detached(attendee)
    make_transient_to_detached(booking)
    session.add(booking)


# A refusal by the overlap constraint: a rival wrote between our check and our write (a new
# booking), or the change itself overlaps (a reschedule, a confirmation).
RACED = "the host was booked for this time by another request a moment ago"
OVERLAPS = "the host already has an accepted booking overlapping this time"


@contextmanager
def _overlap_refused(message: str = RACED) -> Iterator[None]:
    try:
        yield
    except IntegrityError as error:
        if HOST_OVERLAP_CONSTRAINT in str(error.orig):
            raise BookingRefused(Refusal(409, "no_available_users_found_error", message)) from None
        raise


async def flush_guarded(session: AsyncSession, booking: Booking) -> None:
    await lock_host_days(session, booking)
    with _overlap_refused(OVERLAPS):
        async with session.begin_nested():
            await session.flush()


async def assert_no_overlap(session: AsyncSession, booking: Booking) -> None:
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
