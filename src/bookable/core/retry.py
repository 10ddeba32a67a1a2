"""Retrying a request's whole transaction when PostgreSQL aborts it as a deadlock victim (40P01)
or for a serialisation failure (40001).

Both say "nothing of yours was written, run again": the transaction is rolled back, begun again
the way the request began it (a write connection, its ``Idempotency-Key``), and the work runs
once more after a short random pause, so that the two parties of a deadlock do not meet again in
step. After `ATTEMPTS` tries the client gets a 503 with ``Retry-After``: the data is unchanged and
the same request may be sent again. SQLite never raises these: its writers take turns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.db import WRITE_OPTION
from bookable.core.errors import ApiError
from bookable.core.idempotency import reclaim_idempotency_key

log = logging.getLogger("bookable.retry")

T = TypeVar("T")
RETRYABLE_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}
ATTEMPTS = 5
# Full jitter: attempt n waits a random time in [0, BACKOFF_SECONDS * 2**(n-1)).
BACKOFF_SECONDS = 0.05
RETRY_AFTER_SECONDS = 1


class TransactionContention(ApiError):
    """Every attempt lost to concurrent writers of the same rows: nothing was written."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(
            503,
            f"The change could not be written after {attempts} attempts because of concurrent "
            f"changes to the same data ({reason}); nothing was written, please retry.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def retryable_reason(error: DBAPIError) -> str | None:
    """'deadlock' or 'serialization failure' when the database says the transaction may rerun."""
    return RETRYABLE_SQLSTATES.get(getattr(error.orig, "sqlstate", None) or "")


async def retry_transaction(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = ATTEMPTS,
    backoff_seconds: float = BACKOFF_SECONDS,
) -> T:
    """Run ``work`` (which uses ``session``, the request's) and rerun it in a new transaction
    while the database aborts it as retryable."""
    attempt = 1
    while True:
        try:
            return await work()
        except DBAPIError as error:
            reason = retryable_reason(error)
            if reason is None:
                raise
            await session.rollback()
            if attempt >= attempts:
                log.warning("giving up after %d attempts: %s", attempt, reason)
                raise TransactionContention(reason, attempt) from error
            log.info("transaction aborted (%s), attempt %d of %d", reason, attempt, attempts)
        await asyncio.sleep(random.uniform(0, backoff_seconds * 2 ** (attempt - 1)))
        attempt += 1
        await begin_again(session)


async def begin_again(session: AsyncSession) -> None:
    """The new transaction as the request's session dependency began the first one (after a
    rollback: a retry here, or a booking that left its transaction to read calendars)."""
    await session.connection(execution_options={WRITE_OPTION: True})
    await reclaim_idempotency_key(session)
