"""Carrying out the calendar outbox: make each destination calendar show what its row wants.

`CalendarDispatcher` is an `OutboxDispatcher` (`bookable.core.dispatch`: claims with a lease,
at least once across SIGKILL, woken after the commit) over `calendar_events`. One attempt:

- **wanted, never written**: create the event with ``If-None-Match: *`` at the place its UID
  names, so a retry after a crash finds it instead of adding a second one; if it was there
  already (that earlier try), it is replaced by the current revision;
- **wanted, written before**: update it with ``If-Match`` (re-read once on a mismatch; created
  again if someone deleted it);
- **not wanted**: delete it; one already gone counts as deleted.

Recording: success makes the row WRITTEN (or DELETED) and keeps the event's URL and ETag; a
written event becomes a booking reference (type = the integration, uid = the event UID,
externalCalendarId, credentialId), created only now and marked ``deleted`` when the event is
removed. A failure is retried after the next wait (`BOOKABLE_CALENDAR_WRITE_RETRY_DELAYS`) and
is FAILED after the last attempt, or at once when the server refuses the login; the reason is
kept. If the booking changed while an attempt was under way (a new revision), what the
attempt did is kept and the row goes again at once for the new revision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.calendars.connections import provider_for
from bookable.calendars.providers.base import CalendarError, CalendarWriter
from bookable.core.dispatch import DispatcherConfig, OutboxDispatcher, RunningClock
from bookable.core.encryption import Encryptor
from bookable.models import (
    Booking,
    BookingReference,
    CalendarEvent,
    CalendarEventStatus,
    Credential,
)
from bookable.settings import Settings

log = logging.getLogger("bookable.calendars")

ROWS: Table = cast(Table, CalendarEvent.__table__)
REFERENCES: Table = cast(Table, BookingReference.__table__)
# One write is at most a PUT, a GET of the ETag, a second PUT and a GET: bounded as a whole.
REQUESTS_PER_WRITE = 4


def calendar_write_config(settings: Settings) -> DispatcherConfig:
    return DispatcherConfig.for_outbox(
        settings,
        timeout=settings.calendar_timeout * REQUESTS_PER_WRITE,
        max_attempts=settings.calendar_write_max_attempts,
        retry_delays=settings.calendar_write_retry_delay_seconds,
        allow_private_targets=settings.calendar_allow_private_targets,
    )


@dataclass
class CalendarJob:
    """A claimed row and what carrying it out needs."""

    event_id: int
    lease_until: datetime
    uid: str
    booking_id: int
    credential_id: int
    calendar_url: str
    wanted: bool
    ics: str | None
    revision: int
    attempts: int
    event_url: str | None
    etag: str | None
    integration: str
    writer: CalendarWriter | None
    problem: str | None  # why there is no writer


@dataclass
class CalendarOutcome:
    job: CalendarJob
    started_at: datetime
    ok: bool = False
    event_url: str | None = None
    etag: str | None = None
    error: str | None = None
    permanent: bool = False  # no retry can help (the login was refused)


class CalendarDispatcher(OutboxDispatcher[CalendarJob, CalendarOutcome]):
    """Writes due calendar events until stopped. See the module docstring."""

    table = ROWS
    name = "calendar"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        encryptor: Encryptor,
        *,
        config: DispatcherConfig | None = None,
        running_clock: RunningClock | None = None,
    ) -> None:
        super().__init__(
            sessions, config or calendar_write_config(settings), running_clock=running_clock
        )
        self.settings = settings
        self.encryptor = encryptor

    # --- 1. claim ---------------------------------------------------------------------------

    def _claimed_columns(self) -> list[Any]:
        c = ROWS.c
        return [
            c.id,
            c.uid,
            c.booking_id,
            c.credential_id,
            c.integration,
            c.calendar_url,
            c.wanted,
            c.ics,
            c.revision,
            c.attempts,
            c.event_url,
            c.etag,
        ]

    async def _jobs(
        self, session: AsyncSession, rows: Sequence[Any], lease_until: datetime
    ) -> list[CalendarJob]:
        credentials = {
            credential.id: credential
            for credential in await session.scalars(
                select(Credential).where(Credential.id.in_({row.credential_id for row in rows}))
            )
        }
        jobs = []
        for row in rows:
            writer, problem = self._writer(credentials.get(row.credential_id))
            jobs.append(
                CalendarJob(
                    event_id=row.id,
                    lease_until=lease_until,
                    uid=row.uid,
                    booking_id=row.booking_id,
                    credential_id=row.credential_id,
                    calendar_url=row.calendar_url,
                    wanted=row.wanted,
                    ics=row.ics,
                    revision=row.revision,
                    attempts=row.attempts,
                    event_url=row.event_url,
                    etag=row.etag,
                    integration=row.integration,
                    writer=writer,
                    problem=problem,
                )
            )
        return jobs

    def _writer(self, credential: Credential | None) -> tuple[CalendarWriter | None, str | None]:
        if credential is None:  # removed after the claim (the row goes with it)
            return None, "The calendar account was removed."
        try:
            provider = provider_for(credential, self.encryptor, self.settings)
        except CalendarError as error:
            return None, error.message
        except Exception as error:  # an undecryptable key: the operator changed the key
            return None, f"The calendar account's key cannot be read ({type(error).__name__})."
        if not hasattr(provider, "create_event"):
            return None, "This calendar is read-only: Bookable cannot write events into it."
        return cast(CalendarWriter, provider), None

    # --- 2. write ---------------------------------------------------------------------------

    async def deliver(self, job: CalendarJob) -> CalendarOutcome:
        outcome = CalendarOutcome(job, started_at=self.clock.now())
        try:
            if job.writer is None:
                raise CalendarError(job.problem or "No way to write to this calendar.")
            async with asyncio.timeout(self.config.timeout):
                await self._carry_out(job.writer, job, outcome)
            outcome.ok = True
        except CalendarError as error:
            outcome.error = error.message
            outcome.permanent = error.authentication
        except TimeoutError:
            outcome.error = (
                f"The calendar server did not finish the write in {self.config.timeout:g} s."
            )
        except Exception as error:
            # Still a failed attempt, or the row would come back after every lease forever.
            log.exception("calendar dispatcher: writing event %s failed", job.event_id)
            outcome.error = f"{type(error).__name__}: {error}"
        return outcome

    async def _carry_out(
        self, writer: CalendarWriter, job: CalendarJob, outcome: CalendarOutcome
    ) -> None:
        if not job.wanted:
            await writer.delete_event(job.calendar_url, job.uid, job.etag)
            return
        assert job.ics is not None
        ics = job.ics.encode("utf-8")
        if job.event_url is None:
            written = await writer.create_event(job.calendar_url, job.uid, ics)
            if written.existed:
                # An earlier try got through before a crash: make it the current revision.
                written = await writer.update_event(job.calendar_url, job.uid, ics, written.etag)
        else:
            written = await writer.update_event(job.calendar_url, job.uid, ics, job.etag)
        outcome.event_url, outcome.etag = written.url, written.etag

    # --- 3. record --------------------------------------------------------------------------

    async def _write(
        self, session: AsyncSession, outcomes: list[CalendarOutcome], now: datetime
    ) -> None:
        for outcome in outcomes:
            if outcome.ok:
                await self._record_success(session, outcome, now)
            else:
                await self._record_failure(session, outcome, now)
        self.delivered += len(outcomes)

    async def _record_success(
        self, session: AsyncSession, outcome: CalendarOutcome, now: datetime
    ) -> None:
        job = outcome.job
        mine = [ROWS.c.id == job.event_id, ROWS.c.locked_until == job.lease_until]
        where_it_is = {"event_url": outcome.event_url, "etag": outcome.etag}
        done = await session.execute(
            update(ROWS)
            .where(*mine, ROWS.c.revision == job.revision)
            .values(
                status=(
                    CalendarEventStatus.WRITTEN if job.wanted else CalendarEventStatus.DELETED
                ).value,
                attempts=ROWS.c.attempts + 1,
                last_error=None,
                last_attempt_at=outcome.started_at,
                done_at=now,
                locked_until=None,
                **where_it_is,
            )
        )
        if not cast(Any, done).rowcount:
            # Changed meanwhile: the calendar holds this attempt's result; the new revision
            # goes at once.
            await session.execute(
                update(ROWS)
                .where(*mine)
                .values(locked_until=None, next_attempt_at=now, **where_it_is)
            )
            self.wake()
        await self._reference(session, job)

    async def _reference(self, session: AsyncSession, job: CalendarJob) -> None:
        """The booking reference of a written event (once, on the booking it shows now), or its
        mark as deleted."""
        same_event = and_(
            REFERENCES.c.uid == job.uid,
            REFERENCES.c.credential_id == job.credential_id,
            REFERENCES.c.external_calendar_id == job.calendar_url,
        )
        if not job.wanted:
            await session.execute(update(REFERENCES).where(same_event).values(deleted=True))
            return
        # A rescheduled booking hands its event to its successor: one live reference per event.
        await session.execute(
            update(REFERENCES)
            .where(same_event, REFERENCES.c.booking_id != job.booking_id)
            .values(deleted=True)
        )
        current = await session.execute(
            select(REFERENCES.c.id, REFERENCES.c.deleted).where(
                same_event, REFERENCES.c.booking_id == job.booking_id
            )
        )
        found = current.first()
        if found is not None:
            if found.deleted:
                await session.execute(
                    update(REFERENCES).where(REFERENCES.c.id == found.id).values(deleted=False)
                )
            return
        if await session.scalar(select(Booking.id).where(Booking.id == job.booking_id)) is None:
            return  # the booking was deleted meanwhile
        await session.execute(
            insert(REFERENCES).values(
                booking_id=job.booking_id,
                type=job.integration,
                uid=job.uid,
                external_calendar_id=job.calendar_url,
                credential_id=job.credential_id,
                deleted=False,
            )
        )

    async def _record_failure(
        self, session: AsyncSession, outcome: CalendarOutcome, now: datetime
    ) -> None:
        job = outcome.job
        made = job.attempts + 1
        mine = [ROWS.c.id == job.event_id, ROWS.c.locked_until == job.lease_until]
        values: dict[str, Any] = {
            "attempts": made,
            "last_error": outcome.error,
            "last_attempt_at": outcome.started_at,
            "locked_until": None,
        }
        if outcome.permanent or made >= self.config.max_attempts:
            values["status"] = CalendarEventStatus.FAILED.value
        else:
            values["next_attempt_at"] = now + timedelta(
                seconds=self.config.retry_delay(made, self._rng)
            )
        failed = await session.execute(
            update(ROWS).where(*mine, ROWS.c.revision == job.revision).values(**values)
        )
        if not cast(Any, failed).rowcount:
            # A newer revision came meanwhile, with fresh attempts: it goes at once.
            await session.execute(update(ROWS).where(*mine).values(locked_until=None))
            self.wake()
