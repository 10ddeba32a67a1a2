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
