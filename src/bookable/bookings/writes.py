"""Writing a booking so that no two accepted bookings of a host overlap: PostgreSQL's
exclusion constraint judges every write; SQLite's serialised writers get the same rule in Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import booking_host_ids
from bookable.bookings.common import BookingRefused
from bookable.bookings.locks import lock_host_days
from bookable.models import Booking, BookingHost, BookingStatus
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
) -> None:
    """Add and flush the booking and its other hosts; the host-overlap constraint's refusal
    becomes a 409. The caller holds the hosts' day locks already (`create.lock`, taken before
    the availability check).

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
    if not recoverable:
        with _overlap_refused():
            await _flush_with_hosts(session, booking, other_hosts)
        return
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            with _overlap_refused():
                async with session.begin_nested():
                    await _flush_with_hosts(session, booking, other_hosts)
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != DEADLOCK_SQLSTATE:
                raise
            if attempt == INSERT_ATTEMPTS:
                raise


async def _flush_with_hosts(
    session: AsyncSession, booking: Booking, other_hosts: Sequence[int]
) -> None:
    session.add(booking)
    await session.flush()
    if not other_hosts:
        return
    # The organiser's row comes from the insert trigger; the other hosts' here, where the same
    # constraint judges them.
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
