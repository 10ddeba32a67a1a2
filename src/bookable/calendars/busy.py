"""Busy times from the calendars hosts selected, read before a request's transaction begins.

`CalendarBusyReader.read` is what a preflight (`core.preflight`) calls for the hosts and the
window a request is about: it loads their selected calendars in a short session of its own,
reads them concurrently (through the cache, `calendars.cache`), records what changed (an error
appeared or cleared, a login was refused) in another short session, and returns `ExternalBusy`.
`slots.service.load_host_calendar` then adds those busy times inside the transaction, so
/slots, booking, reschedule and confirm keep asking one engine with one calendar per host.

Fail closed: a selected calendar that cannot be read is a `CalendarProblem`; unless
``calendar_fail_open`` is set, its host is unavailable for the whole window asked, and the
problem is shown to the caller and stored on the selected calendar (``error``, ``last_error_at``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookable.calendars.cache import BLOCK, BusyCache, CachedBlock, block_starts
from bookable.calendars.connections import provider_for
from bookable.calendars.providers.base import BusyPeriod, BusyRules, CalendarError
from bookable.core.clock import clock
from bookable.core.db import WRITE_OPTION, WriteGate
from bookable.core.encryption import Encryptor
from bookable.core.schemas import format_instant
from bookable.models import Credential, SelectedCalendar, User
from bookable.settings import Settings

log = logging.getLogger("bookable.calendars")

# How often a healthy calendar's ``synced_at`` is written (a write per read would be too many).
SYNCED_AT_EVERY = timedelta(minutes=5)
NOT_READ = "This calendar was not read for this request (it was selected meanwhile); try again."


@dataclass(frozen=True, slots=True)
class CalendarProblem:
    """A selected calendar that could not be read: its host is unavailable (fail closed)."""

    user_id: int
    selected_calendar_id: str
    integration: str
    external_id: str
    error: str
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "integration": self.integration,
            "externalId": self.external_id,
            "error": self.error,
            "lastErrorAt": format_instant(self.since),
        }


@dataclass(frozen=True, slots=True)
class CalendarBusy:
    """A busy period of a host's calendar; ``source`` is the app (``caldav-calendar``)."""

    start: datetime
    end: datetime
    uid: str | None
    source: str


@dataclass(frozen=True, slots=True)
class ExternalBusy:
    """What the selected calendars of some hosts say about [start, end)."""

    start: datetime
    end: datetime
    # Hosts whose calendars were read (hosts without selected calendars included).
    read_for: frozenset[int] = frozenset()
    busy: Mapping[int, tuple[CalendarBusy, ...]] = field(default_factory=dict)
    problems: Mapping[int, tuple[CalendarProblem, ...]] = field(default_factory=dict)
    fail_open: bool = False

    def covers(self, user_id: int, start: datetime, end: datetime) -> bool:
        return user_id in self.read_for and self.start <= start and end <= self.end

    def all_problems(self) -> list[CalendarProblem]:
        return [p for problems in self.problems.values() for p in problems]


def calendar_problems(external: ExternalBusy | None) -> list[dict[str, Any]]:
    """The wire form of the calendars that could not be read (``calendarErrors``)."""
    return [p.to_json() for p in external.all_problems()] if external is not None else []


@dataclass(frozen=True, slots=True)
class _Target:
    selected: SelectedCalendar
    credential: Credential
    rules: BusyRules
    cache_key: str


@dataclass(frozen=True, slots=True)
class _Outcome:
    target: _Target
    busy: tuple[BusyPeriod, ...] = ()
    error: str | None = None
    login_refused: bool = False


class CalendarBusyReader:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write_gate: WriteGate,
        encryptor: Encryptor,
        settings: Settings,
        cache: BusyCache,
    ) -> None:
        self._sessions = sessions
        self._write_gate = write_gate
        self._encryptor = encryptor
        self._settings = settings
        self._cache = cache

    async def forget_cached(self) -> None:
        """Drop every cached read: the next read of each calendar asks its server in full."""
        await self._cache.clear()

    async def read(
        self, user_ids: Iterable[int], start: datetime, end: datetime, *, revalidate: bool
    ) -> ExternalBusy:
        """Busy times of every selected calendar of ``user_ids`` overlapping [start, end).
        ``revalidate``: ask each server whether its calendar changed even when the cached read
        is fresh (bookings)."""
        wanted = frozenset(user_ids)
        targets = await self._targets(wanted)
        outcomes = await asyncio.gather(
            *(self._read_one(t, start, end, revalidate=revalidate) for t in targets)
        )
        now = clock.now()
        busy: dict[int, list[CalendarBusy]] = {}
        problems: dict[int, list[CalendarProblem]] = {}
        for outcome in outcomes:
            selected = outcome.target.selected
            if outcome.error is None:
                source = outcome.target.credential.app_id
                busy.setdefault(selected.user_id, []).extend(
                    CalendarBusy(p.start, p.end, p.uid, source) for p in outcome.busy
                )
                continue
            since = selected.last_error_at if selected.error == outcome.error else None
            problems.setdefault(selected.user_id, []).append(
                CalendarProblem(
                    selected.user_id,
                    selected.id,
                    selected.integration,
                    selected.external_id,
                    outcome.error,
                    since or now,
                )
            )
        await self._record(outcomes, now)
        return ExternalBusy(
            start,
            end,
            wanted,
            {user: tuple(periods) for user, periods in busy.items()},
            {user: tuple(found) for user, found in problems.items()},
            self._settings.calendar_fail_open,
        )

    def none_selected(
        self, user_ids: Iterable[int], start: datetime, end: datetime
    ) -> ExternalBusy:
        """What `read` answers for hosts known to have no selected calendar, without reading."""
        return ExternalBusy(
            start, end, frozenset(user_ids), fail_open=self._settings.calendar_fail_open
        )

    async def _targets(self, user_ids: frozenset[int]) -> list[_Target]:
        if not user_ids:
            return []
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(SelectedCalendar, Credential, User)
                    .join(Credential, Credential.id == SelectedCalendar.credential_id)
                    .join(User, User.id == SelectedCalendar.user_id)
                    .where(SelectedCalendar.user_id.in_(sorted(user_ids)))
                    .order_by(SelectedCalendar.user_id, SelectedCalendar.created_at)
                )
            ).all()
        return [self._target(selected, credential, user) for selected, credential, user in rows]

    def _target(self, selected: SelectedCalendar, credential: Credential, user: User) -> _Target:
        try:
            zone = ZoneInfo(user.time_zone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        owners = {user.email.lower()}
        username = ""
        try:
            username = str(self._encryptor.decrypt_json(credential.encrypted_key).get("username"))
        except Exception:  # an unreadable key fails the read itself, with its message
            username = ""
        if "@" in username:
            owners.add(username.lower())
        settings = credential.settings or {}
        rules = BusyRules(
            zone=zone,
            owner_emails=frozenset(owners),
            tentative_is_busy=bool(settings.get("tentativeIsBusy", True)),
            transparent_is_busy=bool(settings.get("transparentIsBusy", False)),
        )
        # A changed key (new password, URL) or changed rules make earlier reads unusable.
        fingerprint = hashlib.sha256(
            repr(
                (
                    credential.encrypted_key,
                    zone.key,
                    sorted(rules.owner_emails),
                    rules.tentative_is_busy,
                    rules.transparent_is_busy,
                )
            ).encode()
        ).hexdigest()[:16]
        return _Target(selected, credential, rules, f"{selected.id}:{fingerprint}")

    async def _read_one(
        self, target: _Target, start: datetime, end: datetime, *, revalidate: bool
    ) -> _Outcome:
        try:
            # The provider bounds each request; this bounds a read of several requests.
            async with asyncio.timeout(self._settings.calendar_timeout * 3):
                periods = await self._busy_through_cache(target, start, end, revalidate)
        except CalendarError as error:
            return _Outcome(target, error=error.message, login_refused=error.authentication)
        except TimeoutError:
            return _Outcome(target, error="The calendar server did not answer in time.")
        except Exception as error:  # a bug or an unexpected answer: fail closed, visibly
            log.exception("reading calendar %s failed", target.selected.id)
            problem = f"The calendar could not be read ({type(error).__name__})."
            return _Outcome(target, error=problem)
        return _Outcome(target, busy=tuple(p for p in periods if p.end > start and p.start < end))

    async def _busy_through_cache(
        self, target: _Target, start: datetime, end: datetime, revalidate: bool
    ) -> list[BusyPeriod]:
        blocks = block_starts(start, end)
        cached = await self._cache.get_many(target.cache_key, blocks)
        provider = provider_for(target.credential, self._encryptor, self._settings)
        external_id = target.selected.external_id
        now = time.time()
        if all(entry is not None for entry in cached):
            entries = [entry for entry in cached if entry is not None]
            versions = {entry.version for entry in entries}
            oldest = min(entry.checked_at for entry in entries)
            if not revalidate and now - oldest < self._settings.calendar_cache_seconds:
                return _periods(entries)
            if len(versions) == 1 and None not in versions:
                (version,) = versions
                if await provider.version(external_id) == version:
                    checked = [CachedBlock(e.busy, e.version, now) for e in entries]
                    await self._cache.put_many(
                        target.cache_key, dict(zip(blocks, checked, strict=True))
                    )
                    return _periods(entries)
        read = await provider.busy_times(external_id, blocks[0], blocks[-1] + BLOCK, target.rules)
        fresh = {
            block: CachedBlock(
                tuple(p for p in read.busy if p.start < block + BLOCK and p.end > block),
                read.version,
                now,
            )
            for block in blocks
        }
        await self._cache.put_many(target.cache_key, fresh)
        return list(read.busy)

    async def _record(self, outcomes: list[_Outcome], now: datetime) -> None:
        """Store errors that appeared or cleared, and logins refused or accepted again: only
        changes are written, so a healthy calendar costs no write per read."""
        changes: dict[str, dict[str, Any]] = {}
        credentials: dict[int, bool] = {}
        for outcome in outcomes:
            selected, credential = outcome.target.selected, outcome.target.credential
            if outcome.error is not None:
                if selected.error != outcome.error:
                    changes[selected.id] = {"error": outcome.error, "last_error_at": now}
                if outcome.login_refused and not credential.invalid:
                    credentials[credential.id] = True
                continue
            if selected.error is not None or (
                selected.synced_at is None or now - selected.synced_at >= SYNCED_AT_EVERY
            ):
                changes[selected.id] = {"error": None, "synced_at": now}
            if credential.invalid:
                credentials[credential.id] = False
        if not changes and not credentials:
            return
        async with self._write_gate.turn(True), self._sessions() as session:
            await session.connection(execution_options={WRITE_OPTION: True})
            for selected_id, values in changes.items():
                row = await session.get(SelectedCalendar, selected_id)
                if row is not None:  # deleted meanwhile: nothing to record
                    for name, value in values.items():
                        setattr(row, name, value)
            for credential_id, invalid in credentials.items():
                row_credential = await session.get(Credential, credential_id)
                if row_credential is not None:
                    row_credential.invalid = invalid
            await session.commit()


def _periods(entries: list[CachedBlock]) -> list[BusyPeriod]:
    # A period spanning two blocks is kept in both: the set removes the copy.
    return sorted({p for entry in entries for p in entry.busy}, key=lambda p: (p.start, p.end))
