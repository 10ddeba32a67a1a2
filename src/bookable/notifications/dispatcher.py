"""Sending the email outbox: hand each due message to the transport, record every attempt.

`EmailDispatcher` is an `OutboxDispatcher` (`bookable.core.dispatch`: claims with a lease, at
least once across SIGKILL, woken after the commit) over `outbound_emails`. A row's first
attempt renders its message from the stored facts (`notifications.messages.render_stored`,
outside any transaction; the rows of one change share their facts, read once, and their
invitation). A failed attempt's record stores it: a retry sends those bytes, even after an
upgrade that renders differently. A sent message is not stored (~9 KB a message, two a
booking, written for no later reader: the facts stay, and render the same bytes). (A crash
before the record renders again: the same facts make the same bytes.) One attempt hands the
message, unchanged, to the transport (`bookable.notifications.transport`: SMTP, or an .eml
file), with the envelope ``BOOKABLE_EMAIL_FROM``'s address -> the row's recipient, bounded
by ``BOOKABLE_EMAIL_TIMEOUT``.

Recording: success makes the row SENT with ``sent_at``. A failure is retried after the next
wait of ``BOOKABLE_EMAIL_RETRY_DELAYS`` and is FAILED after ``BOOKABLE_EMAIL_MAX_ATTEMPTS``, or
at once when the server refused the recipient or the message with a 5xx; ``last_error`` says
why (never the SMTP password). A process that dies after the server took a message but before
it was recorded sends it again after the lease, with the same Message-ID (at least once; the
folder transport overwrites its file).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ARRAY, CTE, Table, bindparam, func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.core.dispatch import RECORDED_IDS, DispatcherConfig, OutboxDispatcher, RunningClock
from bookable.models.emails import EmailStatus, OutboundEmail
from bookable.notifications.messages import SharedByChange, render_stored
from bookable.notifications.transport import (
    MailError,
    MailTransport,
    envelope_sender,
    transport_for,
)
from bookable.settings import Settings

log = logging.getLogger("bookable.emails")

ROWS: Table = cast(Table, OutboundEmail.__table__)
ERROR_CHARS = 1000  # how much of a failure's reason is kept
SHARED_CHANGES = 256  # changes whose mail and invitations are kept for their other rows

# A sent row: SENT, even if the lease ran out meanwhile (the server has it). Built once.
_SENT = (
    update(ROWS)
    .where(ROWS.c.id == bindparam("b_id"), ROWS.c.status == EmailStatus.PENDING.value)
    .values(
        status=EmailStatus.SENT.value,
        attempts=bindparam("b_attempts"),
        sent_at=bindparam("b_sent_at"),
        last_error=None,
        locked_until=None,
    )
)


def _sent_in_claim() -> CTE:
    """PostgreSQL: `_SENT` for a batch, as a CTE of the claim statement
    (`OutboxDispatcher._exchange_in_one_statement`): the rows' ids, attempts and ``sent_at``
    as arrays (a sent message is not stored, as in `_write`)."""
    c = ROWS.c
    arrays = (
        bindparam(RECORDED_IDS, type_=ARRAY(c.id.type)),
        bindparam("sent_attempts_each", type_=ARRAY(c.attempts.type)),
        bindparam("sent_at_each", type_=ARRAY(c.sent_at.type)),
    )
    sent = (
        func.unnest(*arrays)
        .table_valued("id", "attempts", "sent_at")
        .render_derived(name="sent_rows")
    )
    return (
        update(ROWS)
        .where(c.id == sent.c.id, c.status == EmailStatus.PENDING.value)
        .values(
            status=EmailStatus.SENT.value,
            attempts=sent.c.attempts,
            sent_at=sent.c.sent_at,
            last_error=None,
            locked_until=None,
        )
        .cte("sent")
    )


def email_dispatcher_config(settings: Settings) -> DispatcherConfig:
    return DispatcherConfig.for_outbox(
        settings,
        timeout=settings.email_timeout,
        max_attempts=settings.email_max_attempts,
        retry_delays=settings.email_retry_delay_seconds,
    )


@dataclass
class EmailJob:
    """A claimed row and what sending it needs."""

    event_id: int
    lease_until: datetime
    recipient: str
    message_id: str
    kind: str
    facts: dict[str, Any] | None
    message: str | None  # None until rendered from ``facts``
    attempts: int
    rendered: bool = False  # this attempt rendered ``message``: its record stores it


@dataclass
class EmailOutcome:
    job: EmailJob
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool = False
    error: str | None = None
    permanent: bool = False  # the server refused it for good (5xx)


class EmailDispatcher(OutboxDispatcher[EmailJob, EmailOutcome]):
    """Sends due emails until stopped. See the module docstring."""

    table = ROWS
    name = "email"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        transport: MailTransport | None = None,
        config: DispatcherConfig | None = None,
        running_clock: RunningClock | None = None,
    ) -> None:
        super().__init__(
            sessions, config or email_dispatcher_config(settings), running_clock=running_clock
        )
        self.settings = settings
        self.transport = transport or transport_for(settings)
        self.sender = envelope_sender(settings)
        # By change (`stored_facts`' "change"): its mail read and invitations built once for
        # all its rows.
        self._by_change: dict[str, SharedByChange] = {}

    async def _close(self) -> None:
        # The SMTP connections kept between messages are closed with the dispatcher.
        await self.transport.aclose()

    # --- 1. claim ---------------------------------------------------------------------------

    def _claimed_columns(self) -> list[Any]:
        c = ROWS.c
        return [c.id, c.recipient, c.message_id, c.kind, c.facts, c.message, c.attempts]

    async def _jobs(
        self, session: AsyncSession, rows: Sequence[Any], lease_until: datetime
    ) -> list[EmailJob]:
        return self._claimed_jobs(rows, lease_until)

    def _claimed_jobs(self, rows: Sequence[Sequence[Any]], lease_until: datetime) -> list[EmailJob]:
        # By position (`_claimed_columns`' order): rows of the ORM session or plain tuples.
        return [
            EmailJob(
                event_id=event_id,
                lease_until=lease_until,
                recipient=recipient,
                message_id=message_id,
                kind=kind,
                facts=facts,
                message=message,
                attempts=attempts,
            )
            for event_id, recipient, message_id, kind, facts, message, attempts in rows
        ]

    # --- 2. send ----------------------------------------------------------------------------

    def render(self, job: EmailJob) -> str:
        """The job's message: as stored, or rendered from its facts (kept on the job)."""
        if job.message is None:
            if job.facts is None:
                raise ValueError("the row holds neither a message nor its facts")
            if len(self._by_change) >= SHARED_CHANGES:
                self._by_change.clear()
            change = str(job.facts.get("change"))
            if (shared := self._by_change.get(change)) is None:
                shared = self._by_change[change] = SharedByChange()
            rendered = render_stored(job.facts, job.kind, job.message_id, shared=shared)
            job.message = rendered.message
            job.rendered = True
        return job.message

    async def deliver(self, job: EmailJob) -> EmailOutcome:
        """One attempt. Never raises for the mail server's or the network's trouble."""
        outcome = EmailOutcome(job, started_at=self.clock.now())
        try:
            message = self.render(job)
            async with asyncio.timeout(self.config.timeout):
                await self.transport.send(
                    message,
                    sender=self.sender,
                    recipient=job.recipient,
                    message_id=job.message_id,
                )
            outcome.ok = True
        except MailError as error:
            outcome.error = error.message
            outcome.permanent = error.permanent
        except TimeoutError:
            outcome.error = f"not sent within {self.config.timeout:g} s"
        except Exception as error:
            # Still a failed attempt, or the row would come back after every lease forever.
            # Only the type: an unknown error's text might quote the connection's secrets.
            log.exception("email dispatcher: sending email %s failed", job.event_id)
            outcome.error = f"unexpected {type(error).__name__}"
        outcome.finished_at = self.clock.now()
        return outcome

    # --- 3. record --------------------------------------------------------------------------

    def _recording(self) -> CTE:
        return _sent_in_claim()

    def _recorded_in_claim(
        self, outcomes: list[EmailOutcome], now: datetime
    ) -> dict[str, Any] | None:
        """Successes only (the usual batch) are recorded in the claim statement on PostgreSQL;
        a batch with a failure goes through `_write` (retry times, errors)."""
        ids: list[int] = []
        attempts: list[int] = []
        sent_at: list[datetime] = []
        for outcome in outcomes:
            if not outcome.ok:
                return None
            job = outcome.job
            ids.append(job.event_id)
            attempts.append(job.attempts + 1)
            sent_at.append(outcome.finished_at or now)
        self.delivered += len(outcomes)
        return {
            RECORDED_IDS: ids,
            "sent_attempts_each": attempts,
            "sent_at_each": sent_at,
        }

    async def _write(
        self, session: AsyncSession, outcomes: list[EmailOutcome], now: datetime
    ) -> None:
        pending = ROWS.c.status == EmailStatus.PENDING.value
        # The sent rows in one executemany, not one UPDATE each: with asyncpg a batch is one
        # round trip. Without the message this attempt rendered: nothing sends it again.
        sent = [
            {
                "b_id": outcome.job.event_id,
                "b_attempts": outcome.job.attempts + 1,
                "b_sent_at": outcome.finished_at or now,
            }
            for outcome in outcomes
            if outcome.ok
        ]
        if sent:
            await session.execute(_SENT, sent)
        for outcome in outcomes:
            if outcome.ok:
                continue
            job = outcome.job
            made = job.attempts + 1
            # The message this attempt rendered, so that a retry sends the same bytes.
            rendered = {"message": job.message} if job.rendered else {}
            values: dict[str, Any] = {
                "attempts": made,
                "last_error": (outcome.error or "failed")[:ERROR_CHARS],
                "locked_until": None,
                **rendered,
            }
            if outcome.permanent or made >= self.config.max_attempts:
                values["status"] = EmailStatus.FAILED.value
            else:
                values["next_attempt_at"] = now + timedelta(
                    seconds=self.config.retry_delay(made, self._rng)
                )
            await session.execute(
                update(ROWS)
                # Not if another dispatcher took the row over after our lease ran out.
                .where(ROWS.c.id == job.event_id, pending, ROWS.c.locked_until == job.lease_until)
                .values(**values)
            )
        self.delivered += len(outcomes)
