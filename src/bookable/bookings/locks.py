"""PostgreSQL advisory locks that queue the writers of one host's bookings, per UTC day."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids
from bookable.models import Booking

# PostgreSQL: writers of a host's accepted bookings queue on advisory locks (host id, UTC day),
# and a transaction aborted as a deadlock victim anyway is run again: see insert_booking.
# A span of more than LOCKED_DAYS_MAX UTC days takes the host's whole-calendar key exclusively
# instead; every shorter span takes that key shared, so one lock of each pair always conflicts.
LOCKED_DAYS_MAX = 7
_WHOLE_CALENDAR = -(2**31)  # below every day number, so it is always taken first
# Every host's keys in one statement, hosts ascending and, per host, the whole-calendar key
# first: the subquery's order is the order the locks are taken in.
_LOCK_HOSTS_DAYS = text(
    "SELECT CASE WHEN keys.day = CAST(:whole AS integer) "
    "THEN pg_advisory_xact_lock_shared(keys.host, keys.day) "
    "ELSE pg_advisory_xact_lock(keys.host, keys.day) END "
    "FROM (SELECT hosts.host, days.day "
    "FROM unnest(CAST(:hosts AS integer[])) AS hosts(host) "
    "CROSS JOIN (SELECT CAST(:whole AS integer) AS day UNION ALL "
    "SELECT generate_series(CAST(:first AS integer), CAST(:last AS integer))) AS days "
    "ORDER BY hosts.host, days.day) AS keys"
)
_LOCK_HOSTS_CALENDARS = text(
    "SELECT pg_advisory_xact_lock(keys.host, CAST(:whole AS integer)) "
    "FROM (SELECT host FROM unnest(CAST(:hosts AS integer[])) AS hosts(host) "
    "ORDER BY host) AS keys"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# `lock_host_time` as a column of a statement that reads `event_types` (POST /bookings' event
# type query, PostgreSQL): one round trip fewer per booking. The host is the row's personal
# owner (`event_types.user_id`; no lock for a team's event type) and the time is what the
# booking will block: ``lock_start_us`` and ``lock_end_us`` (microseconds since 1970; NULL: no
# end given, the event type's length) widened by the row's buffers, as `BookingRequest.blocked`.
# Same keys, same order and same rule as `lock_hosts_time` (`locked_days`, LOCKED_DAYS_MAX);
# the subquery's order is the order the locks are taken in. Its value: how many keys it took.
# Evaluated after the row passed the WHERE (an event type the caller may not book locks nothing),
# once per row the statement returns: taking a held lock again does not wait.
EVENT_TYPE_LOCK_COLUMN = text(
    "(SELECT count(*) FROM ("
    "SELECT CASE WHEN keys.day = CAST(:lock_whole AS integer) AND NOT keys.wide "
    "THEN pg_advisory_xact_lock_shared(keys.host, keys.day) "
    "ELSE pg_advisory_xact_lock(keys.host, keys.day) END "
    "FROM (SELECT span.host, span.wide, days.day "
    "FROM (SELECT bounds.host, bounds.first, greatest(bounds.first, bounds.last) AS last, "
    "greatest(bounds.first, bounds.last) - bounds.first + 1 "
    "> CAST(:lock_max_days AS integer) AS wide "
    "FROM (SELECT instants.host, "
    "CAST(floor(instants.s / 86400000000.0) AS integer) AS first, "
    "CAST(floor(instants.e / 86400000000.0) AS integer) AS last "
    "FROM (SELECT event_types.user_id AS host, "
    "CAST(:lock_start_us AS bigint) "
    "- coalesce(event_types.before_event_buffer, 0) * CAST(60000000 AS bigint) AS s, "
    "coalesce(CAST(:lock_end_us AS bigint), "
    "CAST(:lock_start_us AS bigint) + event_types.length * CAST(60000000 AS bigint)) "
    "+ coalesce(event_types.after_event_buffer, 0) * CAST(60000000 AS bigint) - 1 AS e "
    "WHERE event_types.team_id IS NULL AND event_types.user_id IS NOT NULL) AS instants"
    ") AS bounds) AS span "
    "CROSS JOIN LATERAL (SELECT CAST(:lock_whole AS integer) AS day UNION ALL "
    "SELECT generate_series(span.first, span.last) WHERE NOT span.wide) AS days "
    "ORDER BY days.day) AS keys) AS taken)"
)


def event_type_lock_params(start: datetime, end: datetime | None) -> dict[str, int | None]:
    """`EVENT_TYPE_LOCK_COLUMN`'s parameters for a booking from ``start`` to ``end`` (None:
    the event type's length), both before the buffers."""
    return {
        "lock_whole": _WHOLE_CALENDAR,
        "lock_max_days": LOCKED_DAYS_MAX,
        "lock_start_us": (start - _EPOCH) // _MICROSECOND,
        "lock_end_us": None if end is None else (end - _EPOCH) // _MICROSECOND,
    }


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
    await lock_hosts_time(session, host_ids, booking.blocked_start, booking.blocked_end)


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
    await lock_hosts_time(session, [host_id], start, end)


async def lock_hosts_time(
    session: AsyncSession, host_ids: Iterable[int], start: datetime, end: datetime
) -> None:
    """`lock_host_time` for several hosts in one round trip, in ascending host order."""
    hosts = sorted(set(host_ids))
    if not hosts:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return
    first, last = locked_days(start, end)
    if last - first + 1 > LOCKED_DAYS_MAX:
        statement, values = _LOCK_HOSTS_CALENDARS, {"hosts": hosts, "whole": _WHOLE_CALENDAR}
    else:
        statement = _LOCK_HOSTS_DAYS
        values = {"hosts": hosts, "whole": _WHOLE_CALENDAR, "first": first, "last": last}
    await connection.execute(statement, values)


def locked_days(start: datetime, end: datetime) -> tuple[int, int]:
    """The first and last UTC day (days since 1970-01-01) the time from start to end touches."""
    first = (start - _EPOCH).days
    return first, max(first, (end - timedelta(microseconds=1) - _EPOCH).days)
