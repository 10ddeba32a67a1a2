"""ICS feeds: read-only calendars published at a URL (holiday lists, Outlook and Google "secret
address" feeds). ``webcal://`` is read as ``https://``; only http and https are fetched.

HTTP goes through the guarded client (see `providers.http` for why it is ours): timeout, size
cap, no metadata or link-local addresses. A feed has no ctag, so its version is the HTTP
validator (ETag, else Last-Modified, else a hash of the body). The last answer of each feed is
kept in a small in-process cache so that `version` and `busy_times` revalidate it with a
conditional request (If-None-Match / If-Modified-Since → 304) instead of downloading it again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import cachetools
import icalendar

from bookable.calendars.providers.base import (
    BusyRules,
    CalendarError,
    CalendarRead,
    Connection,
    RemoteCalendar,
)
from bookable.calendars.providers.events import UnreadableCalendarData, busy_periods
from bookable.calendars.providers.http import (
    checked_url,
    fetch,
    open_client,
    shown_url,
)

# The bodies of recently read feeds, for conditional requests: at most this many bytes in all.
FEED_CACHE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Feed:
    body: bytes
    etag: str | None
    last_modified: str | None

    @property
    def version(self) -> str:
        if self.etag:
            return f"etag:{self.etag}"
        if self.last_modified:
            return f"last-modified:{self.last_modified}"
        return f"sha256:{hashlib.sha256(self.body).hexdigest()}"


_feeds: cachetools.LRUCache[str, _Feed] = cachetools.LRUCache(
    maxsize=FEED_CACHE_BYTES, getsizeof=lambda feed: max(len(feed.body), 1)
)
_feeds_lock = threading.Lock()


def feed_url(url: str) -> str:
    """The URL to fetch: ``webcal(s)://`` → ``https://``, surrounding spaces dropped."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("webcal", "webcals"):
        return f"https://{rest}"
    return url


def fallback_name(url: str) -> str:
    """A readable name for a feed without X-WR-CALNAME: its host and path."""
    parts = urlsplit(url)
    path = unquote(parts.path).rstrip("/")
    return f"{parts.hostname or url}{path}" or url


class IcsFeedProvider:
    integration: ClassVar[str] = "ics-feed_calendar"

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        urls = connection.key.get("urls") or []
        if isinstance(urls, str):
            urls = [urls]
        self.urls = [feed_url(str(u)) for u in urls if str(u).strip()]  # type: ignore[union-attr]

    def _own(self, external_id: str) -> str:
        url = feed_url(external_id)
        if url not in self.urls:
            raise CalendarError(f"The feed {shown_url(url)} is not one of this account's feeds.")
        return url

    async def _read(self, url: str) -> _Feed:
        """The feed's current body and validators, revalidating the cached answer if any."""
        checked_url(url, self.connection)
        with _feeds_lock:
            cached = _feeds.get(url)
        headers = {"Accept": "text/calendar, */*;q=0.5"}
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        elif cached is not None and cached.last_modified:
            headers["If-Modified-Since"] = cached.last_modified
        async with open_client(self.connection) as client:
            answer = await fetch(client, self.connection, "GET", url, headers=headers)
        where = shown_url(url)
        if answer.status == 304 and cached is not None:
            return cached
        if answer.status in (401, 403):
            raise CalendarError(
                f"The feed at {where} refused access (HTTP {answer.status}); its link may have "
                "been revoked or changed. Publish the calendar again and use the new link.",
                authentication=True,
            )
        if answer.status in (404, 410):
            raise CalendarError(f"No feed was found at {where} (HTTP {answer.status}).")
        if answer.status >= 500:
            raise CalendarError(
                f"The feed's server at {where} had an internal error (HTTP {answer.status}). "
                "Try again later."
            )
        if answer.status != 200:
            raise CalendarError(f"The feed at {where} could not be read (HTTP {answer.status}).")
        feed = _Feed(
            answer.content, answer.headers.get("ETag"), answer.headers.get("Last-Modified")
        )
        with _feeds_lock:
            _feeds[url] = feed
        return feed

    def _parse(self, url: str, feed: _Feed) -> icalendar.Calendar:
        try:
            calendar = icalendar.Calendar.from_ical(feed.body)
        except (ValueError, IndexError, KeyError) as error:
            raise CalendarError(
                f"The address {shown_url(url)} did not return a calendar (iCalendar data could "
                f"not be read: {error})."
            ) from None
        if calendar.name != "VCALENDAR":
            raise CalendarError(f"The address {shown_url(url)} did not return a calendar.")
        return calendar

    async def list_calendars(self) -> list[RemoteCalendar]:
        calendars: list[RemoteCalendar] = []
        for url in self.urls:
            calendar = self._parse(url, await self._read(url))
            name = str(calendar.get("X-WR-CALNAME", "")).strip() or fallback_name(url)
            calendars.append(RemoteCalendar(external_id=url, name=name, read_only=True))
        return calendars

    async def version(self, external_id: str) -> str | None:
        return (await self._read(self._own(external_id))).version

    async def busy_times(
        self, external_id: str, start: datetime, end: datetime, rules: BusyRules
    ) -> CalendarRead:
        url = self._own(external_id)
        feed = await self._read(url)
        try:
            busy = busy_periods(feed.body, start, end, rules)
        except UnreadableCalendarData as error:
            raise CalendarError(
                f"The feed at {shown_url(url)} could not be read ({error})."
            ) from None
        return CalendarRead(busy=tuple(busy), version=feed.version)
