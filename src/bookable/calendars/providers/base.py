"""The seam every calendar provider fits: list the calendars of an account, tell cheaply whether a
calendar changed, and read its busy times in a range; and, for calendars that take events
(`CalendarWriter`), write one booking's event: create, update, delete.

Providers do network I/O only: no database, no session, never called while a transaction or a
booking lock is open. Every HTTP request goes through `bookable.core.outbound.guarded_client`, so
calendar URLs follow the webhook rules (link-local and metadata addresses always refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class RemoteCalendar:
    """One calendar of an account, as /connected-calendars lists it."""

    external_id: str  # the calendar's URL (CalDAV collection, ICS feed)
    name: str
    primary: bool = False
    read_only: bool = False
    email: str | None = None


@dataclass(frozen=True, slots=True)
class BusyPeriod:
    """A time the calendar's owner is not free, in UTC. ``uid`` is the event's UID, so a
    booking's own event (written by Bookable) is recognised and does not block that booking."""

    start: datetime
    end: datetime
    uid: str | None = None


@dataclass(frozen=True, slots=True)
class BusyRules:
    """How events become busy times for one host.

    ``zone`` is the host's zone: all-day and floating events are read in it. ``owner_emails`` are
    the addresses that are "the user" among an event's ATTENDEEs (their DECLINED does not block;
    their NEEDS-ACTION/TENTATIVE blocks when ``tentative_is_busy``)."""

    zone: ZoneInfo
    owner_emails: frozenset[str] = frozenset()
    tentative_is_busy: bool = True
    transparent_is_busy: bool = False


@dataclass(frozen=True, slots=True)
class CalendarRead:
    """Busy times of one calendar in a range, with the calendar's version when it was read
    (CalDAV ctag/sync-token, HTTP ETag): an unchanged version means unchanged busy times."""

    busy: tuple[BusyPeriod, ...]
    version: str | None = None


class CalendarError(Exception):
    """A calendar server could not be reached, refused us, or answered something unreadable.

    ``str(error)`` is a sentence a user can act on ("The server refused the user name or password
    ..."); it never contains a password or token."""

    def __init__(self, message: str, *, authentication: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # True when the server refused the login: the credential is then marked invalid.
        self.authentication = authentication


@dataclass(frozen=True, slots=True)
class Connection:
    """What a provider needs to talk to the server: the decrypted key and the outbound rules."""

    key: dict[str, object]
    timeout: float = 10.0
    max_bytes: int = 10_485_760
    allow_private: bool = True
    # Host names / IP addresses the server may contact (empty: any that the address rules allow).
    allowed_hosts: frozenset[str] = frozenset()
    extra: dict[str, object] = field(default_factory=dict)


class CalendarProvider(Protocol):
    integration: ClassVar[str]  # Cal.com's credential type, e.g. "caldav_calendar"

    async def list_calendars(self) -> list[RemoteCalendar]:
        """Every calendar of the account that holds events. Raises CalendarError."""
        ...

    async def version(self, external_id: str) -> str | None:
        """A cheap token that changes whenever the calendar's events change (None: unknown,
        read again). Raises CalendarError."""
        ...

    async def busy_times(
        self, external_id: str, start: datetime, end: datetime, rules: BusyRules
    ) -> CalendarRead:
        """Busy periods overlapping [start, end). Raises CalendarError."""
        ...


@dataclass(frozen=True, slots=True)
class WrittenEvent:
    """Where a written event lives, and its version after the write (for the next If-Match;
    None when the server did not tell). ``existed``: a create found the event already there
    (an earlier try got through); it holds what that try wrote, which may be older."""

    url: str
    etag: str | None = None
    existed: bool = False


class CalendarWriter(Protocol):
    """Writing one booking's event, exactly once: the event's place is derived from its UID
    (``<calendar_url><uid>.ics``), so every call is safe to repeat after a crash or a timeout.
    Every method raises CalendarError on a failure (``authentication`` set for a refused login)."""

    integration: ClassVar[str]

    async def create_event(self, calendar_url: str, uid: str, ics: bytes) -> WrittenEvent:
        """Store the event unless an event with this UID is already there (then that one is
        taken as written: a repeated create is not a duplicate)."""
        ...

    async def update_event(
        self, calendar_url: str, uid: str, ics: bytes, etag: str | None
    ) -> WrittenEvent:
        """Replace the event (only the version ``etag`` when given; a newer one is re-read and
        replaced once). An event that is gone is created again."""
        ...

    async def delete_event(self, calendar_url: str, uid: str, etag: str | None) -> None:
        """Remove the event. One that is already gone counts as removed."""
        ...
