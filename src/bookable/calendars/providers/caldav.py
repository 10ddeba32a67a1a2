"""CalDAV (RFC 4791): Nextcloud, Fastmail, iCloud, Radicale, Baïkal, SOGo, Zimbra...

Discovery from the URL the user gave: ``current-user-principal`` (else ``/.well-known/caldav``
on the same origin), the principal's ``calendar-home-set``, then the home's calendar collections
that hold events. A URL that is itself a calendar collection (or a principal) works too.

The protocol is spoken here, not through the ``caldav`` package: every request must go through
the guarded client (`bookable.core.outbound.guarded_client`, see `providers.http`), which pins
DNS and refuses metadata and link-local addresses, and the package's own HTTP session cannot;
the package also installs ``urllib3-future`` over ``urllib3``, which breaks ``requests``
(schemathesis, our fuzzer, runs on it). What we need of CalDAV is three PROPFINDs and one
REPORT to read, and PUT/GET/DELETE of one object per booking to write: lxml builds the bodies
and reads the multistatus answers, and `providers.events` turns calendar data into busy times
(recurrences expanded on our side: servers' ``expand`` is unreliable).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
from lxml import etree

from bookable.calendars.providers.base import (
    BusyPeriod,
    BusyRules,
    CalendarError,
    CalendarRead,
    Connection,
    RemoteCalendar,
    WrittenEvent,
)
from bookable.calendars.providers.events import (
    OccurrenceBudget,
    UnreadableCalendarData,
    busy_periods,
)
from bookable.calendars.providers.http import (
    Answer,
    checked_url,
    fetch,
    open_client,
    shown_url,
    status_error,
)

CALENDARSERVER_NS = "http://calendarserver.org/ns/"
DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"

# Privileges that let the user add events to a calendar (RFC 3744 aggregates).
WRITE_PRIVILEGES = frozenset({f"{DAV}all", f"{DAV}write", f"{DAV}write-content", f"{DAV}bind"})

# Statuses that mean "no WebDAV here" during discovery (then the next place is tried).
NOT_DAV_STATUSES = frozenset({400, 404, 405, 406, 410, 415, 501})

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# No DTDs, entities or network while reading the servers' XML.
XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True
)


NAMESPACES = {"D": "DAV:", "C": CALDAV.strip("{}"), "CS": CALENDARSERVER_NS}
GETCTAG = f"{{{CALENDARSERVER_NS}}}getctag"
SYNC_TOKEN = f"{DAV}sync-token"
SCHEDULE_DEFAULT_CALENDAR_URL = f"{CALDAV}schedule-default-calendar-URL"


def _xml(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, xml_declaration=True, encoding="utf-8"))


def _propfind_body(*props: str) -> bytes:
    propfind = etree.Element(f"{DAV}propfind", nsmap=NAMESPACES)
    prop = etree.SubElement(propfind, f"{DAV}prop")
    for tag in props:
        etree.SubElement(prop, tag)
    return _xml(propfind)


DISCOVERY_BODY = _propfind_body(
    f"{DAV}resourcetype",
    f"{DAV}current-user-principal",
    f"{CALDAV}calendar-home-set",
    f"{CALDAV}calendar-user-address-set",
    f"{CALDAV}schedule-inbox-URL",
    SCHEDULE_DEFAULT_CALENDAR_URL,
    f"{DAV}displayname",
    f"{DAV}current-user-privilege-set",
    f"{CALDAV}supported-calendar-component-set",
    GETCTAG,
    SYNC_TOKEN,
)
CALENDARS_BODY = _propfind_body(
    f"{DAV}resourcetype",
    f"{DAV}displayname",
    f"{DAV}current-user-privilege-set",
    f"{CALDAV}supported-calendar-component-set",
    GETCTAG,
    SYNC_TOKEN,
)
DEFAULT_CALENDAR_BODY = _propfind_body(SCHEDULE_DEFAULT_CALENDAR_URL)
# The ctag alone: servers compute each property separately (Radicale: ctag 24 ms, both 60 ms);
# the sync-token is asked only of a server that has no ctag.
VERSION_BODY = _propfind_body(GETCTAG)
SYNC_TOKEN_BODY = _propfind_body(SYNC_TOKEN)

XML_HEADERS = {"Content-Type": 'application/xml; charset="utf-8"'}
ICS_HEADERS = {"Content-Type": "text/calendar; charset=utf-8"}
WRITTEN_STATUSES = frozenset({200, 201, 204})
GONE_STATUSES = frozenset({404, 410})


def _calendar_query_body(start: datetime, end: datetime) -> bytes:
    """REPORT calendar-query: every event object with an instance in [start, end) (RFC 4791
    9.9: the server matches recurring events by their instances), with its data."""
    query = etree.Element(f"{CALDAV}calendar-query", nsmap=NAMESPACES)
    prop = etree.SubElement(query, f"{DAV}prop")
    etree.SubElement(prop, f"{DAV}getetag")
    etree.SubElement(prop, f"{CALDAV}calendar-data")
    calendars = etree.SubElement(
        etree.SubElement(query, f"{CALDAV}filter"), f"{CALDAV}comp-filter", name="VCALENDAR"
    )
    events = etree.SubElement(calendars, f"{CALDAV}comp-filter", name="VEVENT")
    etree.SubElement(
        events,
        f"{CALDAV}time-range",
        start=f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        end=f"{end.astimezone(UTC):%Y%m%dT%H%M%SZ}",
    )
    return _xml(query)


class BasicThenDigestAuth(httpx.Auth):
    """Basic auth on every request (what CalDAV servers expect), switching to Digest for good
    when a server answers 401 with a Digest challenge."""

    requires_request_body = True

    def __init__(self, username: str, password: str) -> None:
        self._basic = httpx.BasicAuth(username, password)
        self._digest = httpx.DigestAuth(username, password)
        self._use_digest = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._use_digest:
            yield from self._digest.auth_flow(request)
            return
        next(self._basic.auth_flow(request))  # sets the Authorization header
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("digest"):
            return
        self._use_digest = True
        del request.headers["Authorization"]
        digest = self._digest.auth_flow(request)
        next(digest)  # the unauthenticated attempt, whose 401 we already have
        try:
            yield digest.send(response)
        except StopIteration:
            return


@dataclass
class _Resource:
    href: str  # absolute URL
    props: dict[str, etree._Element] = field(default_factory=dict)

    def text(self, tag: str) -> str | None:
        element = self.props.get(tag)
        if element is None or element.text is None:
            return None
        return element.text.strip() or None

    def hrefs(self, tag: str) -> list[str]:
        element = self.props.get(tag)
        if element is None:
            return []
        return [h.text.strip() for h in element.iter(f"{DAV}href") if h.text and h.text.strip()]

    def resource_types(self) -> set[str]:
        element = self.props.get(f"{DAV}resourcetype")
        return set() if element is None else {child.tag for child in element}

    def is_calendar(self) -> bool:
        return f"{CALDAV}calendar" in self.resource_types()

    def holds_events(self) -> bool:
        components = self.props.get(f"{CALDAV}supported-calendar-component-set")
        if components is None or len(components) == 0:
            return True  # absent: every component type
        return any(
            (comp.get("name") or "").upper() == "VEVENT"
            for comp in components.iter(f"{CALDAV}comp")
        )

    def writable(self) -> bool:
        privileges = self.props.get(f"{DAV}current-user-privilege-set")
        if privileges is None:
            return True  # not advertised: assume the owner may write
        granted = {child.tag for p in privileges.iter(f"{DAV}privilege") for child in p}
        return bool(granted & WRITE_PRIVILEGES)

    def version(self) -> str | None:
        return self.text(f"{{{CALENDARSERVER_NS}}}getctag") or self.text(f"{DAV}sync-token")


def _same_url(a: str, b: str) -> bool:
    def key(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url)
        return (parts.scheme.lower(), parts.netloc.lower(), unquote(parts.path).rstrip("/"))

    return key(a) == key(b)


def _same_site(url: str, account_url: str) -> bool:
    """Whether the account's password may be sent to ``url``: the account URL's origin, or an
    https host under the same parent domain (iCloud's discovery moves from caldav.icloud.com to
    pNN-caldav.icloud.com). Never to another site: the external id comes from our database, but
    the password must not follow a wrong one."""
    target, account = urlsplit(url), urlsplit(account_url)
    if _origin(url).lower() == _origin(account_url).lower():
        return True
    host, account_host = (target.hostname or ""), (account.hostname or "")
    labels = account_host.split(".")
    if target.scheme != "https" or account.scheme != "https" or len(labels) < 3:
        return False
    if all(label.isdigit() for label in labels):
        return False  # an IPv4 address has no parent domain
    return host.endswith("." + ".".join(labels[1:]))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class CalDavProvider:
    integration: ClassVar[str] = "caldav_calendar"

    def __init__(self, connection: Connection) -> None:
        key = connection.key
        self.connection = connection
        self.url = str(key.get("url", "")).strip()
        self.username = str(key.get("username", ""))
        self.apple = bool(key.get("apple", False))
        self._auth = BasicThenDigestAuth(self.username, str(key.get("password", "")))
        # The principal's mailto: addresses, found during discovery (an email when the user
        # name is not one).
        self._addresses: list[str] = []

    # --- requests -----------------------------------------------------------------------------

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        body: bytes,
        depth: str,
    ) -> Answer:
        answer = await fetch(
            client,
            self.connection,
            method,
            checked_url(url, self.connection),
            content=body,
            headers={**XML_HEADERS, "Depth": depth},
            auth=self._auth,
        )
        if answer.status in (401, 403) or answer.status >= 500:
            raise status_error(answer, apple=self.apple)  # type: ignore[misc]
        return answer

    def _multistatus(self, answer: Answer) -> list[_Resource]:
        """The resources of a 207 answer with their found (200) properties."""
        try:
            root = etree.fromstring(answer.content, parser=XML_PARSER)
        except etree.XMLSyntaxError:
            root = None
        if root is None or root.tag != f"{DAV}multistatus":
            raise CalendarError(
                f"The calendar server at {shown_url(answer.url)} answered with XML that could not "
                "be read (not a WebDAV multistatus)."
            )
        resources: list[_Resource] = []
        for response in root.iterfind(f"{DAV}response"):
            href = (response.findtext(f"{DAV}href") or "").strip()
            if not href:
                continue
            resource = _Resource(urljoin(answer.url, href))
            for propstat in response.iterfind(f"{DAV}propstat"):
                status = (propstat.findtext(f"{DAV}status") or "").split()
                if len(status) < 2 or status[1] != "200":
                    continue
                for prop in propstat.iterfind(f"{DAV}prop"):
                    for element in prop:
                        resource.props[element.tag] = element
            resources.append(resource)
        return resources

    async def _probe(self, client: httpx.AsyncClient, url: str) -> _Resource | None:
        """The Depth:0 discovery properties of ``url``, or None when no WebDAV answers there."""
        answer = await self._send(client, "PROPFIND", url, DISCOVERY_BODY, "0")
        if answer.status != 207:
            return None
        resources = self._multistatus(answer)
        for resource in resources:
            if _same_url(resource.href, answer.url):
                return resource
        return resources[0] if resources else None

    # --- discovery ----------------------------------------------------------------------------

    def _no_home(self) -> CalendarError:
        return CalendarError(
            f"No CalDAV calendar home was found at {shown_url(self.url)}. Check the address: "
            "usual forms are https://cloud.example.com/remote.php/dav (Nextcloud), "
            "https://dav.example.com/ or https://dav.example.com/<user>/ (Radicale) and "
            "https://dav.example.com/dav.php (Baïkal)."
        )

    async def _discover(
        self, client: httpx.AsyncClient
    ) -> tuple[list[str], _Resource | None, str | None]:
        """(calendar home URLs, the URL's own resource when it is a calendar, the default
        calendar's URL when the server advertises one)."""
        start = await self._probe(client, self.url)
        if start is not None and start.is_calendar():
            return [], start, None
        principal: _Resource | None = None
        if start is not None and start.hrefs(f"{CALDAV}calendar-home-set"):
            principal = start
        elif start is not None and start.hrefs(f"{DAV}current-user-principal"):
            principal = await self._probe(
                client, urljoin(start.href, start.hrefs(f"{DAV}current-user-principal")[0])
            )
        else:
            well_known = f"{_origin(self.url)}/.well-known/caldav"
            if not _same_url(well_known, self.url):
                found = await self._probe(client, well_known)
                if found is not None and found.is_calendar():
                    return [], found, None
                if found is not None and found.hrefs(f"{CALDAV}calendar-home-set"):
                    principal = found
                elif found is not None and found.hrefs(f"{DAV}current-user-principal"):
                    principal = await self._probe(
                        client, urljoin(found.href, found.hrefs(f"{DAV}current-user-principal")[0])
                    )
        if principal is None:
            raise self._no_home()
        homes = [urljoin(principal.href, h) for h in principal.hrefs(f"{CALDAV}calendar-home-set")]
        if not homes:
            raise self._no_home()
        default = await self._default_calendar(client, principal)
        self._addresses = [
            h.removeprefix("mailto:")
            for h in principal.hrefs(f"{CALDAV}calendar-user-address-set")
            if h.lower().startswith("mailto:")
        ]
        return homes, None, default

    async def _default_calendar(
        self, client: httpx.AsyncClient, principal: _Resource
    ) -> str | None:
        """RFC 6638's schedule-default-calendar-URL: on the principal for some servers, on the
        scheduling inbox per the RFC. Its absence (or an inbox we cannot read) is not an error."""
        found = principal.hrefs(f"{CALDAV}schedule-default-calendar-URL")
        if found:
            return urljoin(principal.href, found[0])
        inboxes = principal.hrefs(f"{CALDAV}schedule-inbox-URL")
        if not inboxes:
            return None
        try:
            answer = await self._send(
                client, "PROPFIND", urljoin(principal.href, inboxes[0]), DEFAULT_CALENDAR_BODY, "0"
            )
            if answer.status != 207:
                return None
            for resource in self._multistatus(answer):
                found = resource.hrefs(f"{CALDAV}schedule-default-calendar-URL")
                if found:
                    return urljoin(resource.href, found[0])
        except CalendarError as error:
            if error.authentication:
                raise
        return None

    def _email(self) -> str | None:
        if EMAIL_PATTERN.match(self.username):
            return self.username
        return self._addresses[0] if self._addresses else None

    def _remote(self, resource: _Resource, *, primary: bool) -> RemoteCalendar:
        name = resource.text(f"{DAV}displayname")
        if not name:
            name = (
                unquote(urlsplit(resource.href).path.rstrip("/").rsplit("/", 1)[-1])
                or resource.href
            )
        return RemoteCalendar(
            external_id=resource.href,
            name=name,
            primary=primary,
            read_only=not resource.writable(),
            email=self._email(),
        )

    async def list_calendars(self) -> list[RemoteCalendar]:
        checked_url(self.url, self.connection)
        async with open_client(self.connection) as client:
            homes, single, default = await self._discover(client)
            if single is not None:
                return [self._remote(single, primary=single.writable())]
            calendars: dict[str, _Resource] = {}
            for home in homes:
                answer = await self._send(client, "PROPFIND", home, CALENDARS_BODY, "1")
                if answer.status != 207:
                    raise self._no_home()
                for resource in self._multistatus(answer):
                    if resource.is_calendar() and resource.holds_events():
                        calendars.setdefault(resource.href, resource)
        ordered = sorted(calendars.values(), key=lambda r: r.href)
        primary_href = next(
            (r.href for r in ordered if default is not None and _same_url(r.href, default)), None
        ) or next((r.href for r in ordered if r.writable()), None)
        return [self._remote(r, primary=r.href == primary_href) for r in ordered]

    # --- reading ------------------------------------------------------------------------------

    def _own(self, external_id: str) -> str:
        checked_url(external_id, self.connection)
        if not _same_site(external_id, self.url):
            raise CalendarError(
                f"The calendar {shown_url(external_id)} is not on this account's server "
                f"({shown_url(self.url)})."
            )
        return external_id

    def _not_found(self, external_id: str) -> CalendarError:
        return CalendarError(
            f"The calendar {shown_url(external_id)} was not found on the server; it may have been "
            "deleted or moved. Choose it again from the connected calendars."
        )

    async def _version(self, client: httpx.AsyncClient, external_id: str) -> str | None:
        version = await self._version_property(client, external_id, VERSION_BODY)
        if version is None:
            version = await self._version_property(client, external_id, SYNC_TOKEN_BODY)
        return version

    async def _version_property(
        self, client: httpx.AsyncClient, external_id: str, body: bytes
    ) -> str | None:
        answer = await self._send(client, "PROPFIND", external_id, body, "0")
        if answer.status in (404, 410):
            raise self._not_found(external_id)
        if answer.status != 207:
            raise status_error(answer, apple=self.apple) or CalendarError(
                f"The calendar server at {shown_url(answer.url)} did not answer as CalDAV "
                f"(HTTP {answer.status})."
            )
        resources = self._multistatus(answer)
        for resource in resources:
            if _same_url(resource.href, answer.url):
                return resource.version()
        return resources[0].version() if resources else None

    async def version(self, external_id: str) -> str | None:
        self._own(external_id)
        async with open_client(self.connection) as client:
            return await self._version(client, external_id)

    async def busy_times(
        self, external_id: str, start: datetime, end: datetime, rules: BusyRules
    ) -> CalendarRead:
        self._own(external_id)
        async with open_client(self.connection) as client:
            version = await self._version(client, external_id)
            answer = await self._send(
                client, "REPORT", external_id, _calendar_query_body(start, end), "1"
            )
        if answer.status in (404, 410):
            raise self._not_found(external_id)
        if answer.status != 207:
            raise status_error(answer, apple=self.apple) or CalendarError(
                f"The calendar server at {shown_url(answer.url)} did not answer the calendar "
                f"query (HTTP {answer.status})."
            )
        busy = self._busy(answer, start, end, rules)
        return CalendarRead(busy=tuple(busy), version=version)

    def _busy(
        self, answer: Answer, start: datetime, end: datetime, rules: BusyRules
    ) -> list[BusyPeriod]:
        budget = OccurrenceBudget()
        busy: list[BusyPeriod] = []
        for resource in self._multistatus(answer):
            for text in _texts(resource.props.get(f"{CALDAV}calendar-data")):
                try:
                    busy.extend(busy_periods(text, start, end, rules, budget=budget))
                except UnreadableCalendarData as error:
                    raise CalendarError(
                        f"An event in {shown_url(answer.url)} could not be read ({error})."
                    ) from None
        busy.sort(key=lambda period: (period.start, period.end))
        return busy

    # --- writing ------------------------------------------------------------------------------
    # One object per booking at <calendar><uid>.ics (RFC 4791 5.3.2), so a repeated call finds
    # its own earlier write instead of adding another event.

    def _event_url(self, calendar_url: str, uid: str) -> str:
        if not uid:
            raise CalendarError("An event cannot be written without a UID.")
        base = self._own(calendar_url)
        if not base.endswith("/"):
            base += "/"
        return checked_url(f"{base}{quote(uid, safe='')}.ics", self.connection)

    async def _request(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        return await fetch(
            client,
            self.connection,
            method,
            checked_url(url, self.connection),
            content=body,
            headers=headers,
            auth=self._auth,
        )

    def _write_error(self, answer: Answer, calendar_url: str, doing: str) -> CalendarError:
        """The error a refused write means (the caller handles 412 and gone events itself)."""
        if answer.status == 403:
            # On a write, 403 is a calendar that does not take our events (read-only, or a
            # CalDAV precondition), not a wrong password: the credential stays valid.
            return CalendarError(
                f"The calendar {shown_url(calendar_url)} refused to {doing} (HTTP 403): it may be "
                "read-only for this account. Choose a calendar this account can write to."
            )
        if answer.status == 409:
            return self._not_found(calendar_url)
        if answer.status == 413:
            return CalendarError(
                f"The calendar {shown_url(calendar_url)} refused the event as too large (HTTP 413)."
            )
        return status_error(answer, apple=self.apple) or CalendarError(
            f"The calendar server at {shown_url(answer.url)} did not {doing} "
            f"(HTTP {answer.status})."
        )

    async def _stored_etag(
        self, client: httpx.AsyncClient, url: str, calendar_url: str
    ) -> tuple[bool, str | None]:
        """(whether the event exists, its ETag when the server gives one)."""
        answer = await self._request(client, "GET", url)
        if answer.status in GONE_STATUSES:
            return False, None
        if answer.status != 200:
            raise self._write_error(answer, calendar_url, "read the event back")
        return True, answer.headers.get("ETag")

    async def _written(
        self, client: httpx.AsyncClient, answer: Answer, url: str, calendar_url: str
    ) -> WrittenEvent:
        etag = answer.headers.get("ETag")
        if etag is None:
            # Servers that change what they store (or do not say) send no ETag: read it.
            _exists, etag = await self._stored_etag(client, url, calendar_url)
        return WrittenEvent(url=url, etag=etag)

    async def _create(
        self, client: httpx.AsyncClient, calendar_url: str, url: str, ics: bytes
    ) -> WrittenEvent:
        answer = await self._request(
            client, "PUT", url, body=ics, headers={**ICS_HEADERS, "If-None-Match": "*"}
        )
        if answer.status in WRITTEN_STATUSES:
            return await self._written(client, answer, url, calendar_url)
        if answer.status == 412:
            # Already there: an earlier try of this same write got through.
            exists, etag = await self._stored_etag(client, url, calendar_url)
            if exists:
                return WrittenEvent(url=url, etag=etag, existed=True)
            raise CalendarError(
                f"The event in {shown_url(calendar_url)} was removed while it was being "
                "written; the write will be tried again."
            )
        if answer.status in GONE_STATUSES:
            raise self._not_found(calendar_url)
        raise self._write_error(answer, calendar_url, "add the event")

    async def create_event(self, calendar_url: str, uid: str, ics: bytes) -> WrittenEvent:
        url = self._event_url(calendar_url, uid)
        async with open_client(self.connection) as client:
            return await self._create(client, calendar_url, url, ics)

    async def update_event(
        self, calendar_url: str, uid: str, ics: bytes, etag: str | None
    ) -> WrittenEvent:
        url = self._event_url(calendar_url, uid)
        async with open_client(self.connection) as client:
            expected = etag
            for attempt in range(2):
                headers = {**ICS_HEADERS, **({"If-Match": expected} if expected else {})}
                answer = await self._request(client, "PUT", url, body=ics, headers=headers)
                if answer.status in WRITTEN_STATUSES:
                    return await self._written(client, answer, url, calendar_url)
                if answer.status in GONE_STATUSES:
                    return await self._create(client, calendar_url, url, ics)
                if answer.status != 412:
                    raise self._write_error(answer, calendar_url, "change the event")
                if attempt == 1:
                    break
                # Another version is stored (or none: If-Match on a missing object is a 412
                # too): replace the current one once, or create it again.
                exists, expected = await self._stored_etag(client, url, calendar_url)
                if not exists:
                    return await self._create(client, calendar_url, url, ics)
        raise CalendarError(
            f"The event in {shown_url(calendar_url)} kept changing while it was being updated "
            "(HTTP 412); the write will be tried again."
        )

    async def delete_event(self, calendar_url: str, uid: str, etag: str | None) -> None:
        url = self._event_url(calendar_url, uid)
        async with open_client(self.connection) as client:
            answer = await self._request(
                client, "DELETE", url, headers={"If-Match": etag} if etag else None
            )
            if answer.status == 412:
                # Changed since we wrote it (an app touched it): the booking is gone all the
                # same, and the object at its UID's place is its event.
                answer = await self._request(client, "DELETE", url)
        if answer.status in WRITTEN_STATUSES | GONE_STATUSES | {202}:
            return
        raise self._write_error(answer, calendar_url, "remove the event")


def _texts(element: etree._Element | None) -> Iterable[str]:
    if element is not None and element.text and element.text.strip():
        yield element.text
