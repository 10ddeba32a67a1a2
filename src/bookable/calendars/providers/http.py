"""HTTP for the calendar providers: one request through the guarded client, with a time limit
for the whole exchange, the answer's size capped while it streams, and every failure turned into
a `CalendarError` a user can act on.

Why our own HTTP and not the caldav library's session: calendar URLs are chosen by users, so
every connection must go through `bookable.core.outbound.guarded_client`, which resolves the name
once, refuses link-local/metadata (and, when configured, private) addresses and connects to
exactly the address it checked. The caldav library's HTTP session cannot pin DNS that way; we use
the library for what it offers without its HTTP stack (the XML request bodies).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from bookable.calendars.providers.base import CalendarError, Connection
from bookable.core.outbound import guarded_client, refusal, url_problem

MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    url: str  # after redirects
    headers: httpx.Headers
    content: bytes


def shown_url(url: str) -> str:
    """The URL for messages: without any user:password@ part or query (which may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def checked_url(url: str, connection: Connection) -> str:
    """``url`` when it may be requested (judged without DNS), else a CalendarError."""
    problem = url_problem(url, allow_private=connection.allow_private)
    if problem is not None:
        raise CalendarError(f"The address {shown_url(url)} cannot be used: {problem}.")
    _refuse_unless_allowed(url, connection)
    return url


def _refuse_unless_allowed(url: str, connection: Connection) -> None:
    """BOOKABLE_CALENDAR_ALLOWED_HOSTS: a host not listed is refused before any lookup."""
    host = (urlsplit(url).hostname or "").lower()
    if connection.allowed_hosts and host not in connection.allowed_hosts:
        raise CalendarError(
            f"The address {shown_url(url)} cannot be used: this server only connects to "
            f"calendar servers on {', '.join(sorted(connection.allowed_hosts))} "
            "(BOOKABLE_CALENDAR_ALLOWED_HOSTS)."
        )


def open_client(connection: Connection) -> httpx.AsyncClient:
    async def allowed_hosts_only(request: httpx.Request) -> None:
        # Every request, redirects included, before its connection is opened.
        _refuse_unless_allowed(str(request.url), connection)

    resolver = connection.extra.get("resolver")
    client = guarded_client(
        allow_private=connection.allow_private,
        timeout=connection.timeout,
        follow_redirects=True,
        verify=_verify(connection),
        # Tests may hand in a resolver (a DNS failure without asking a DNS server).
        **({"resolver": resolver} if callable(resolver) else {}),
    )
    client.max_redirects = MAX_REDIRECTS
    if connection.allowed_hosts:
        client.event_hooks["request"].append(allowed_hosts_only)
    return client


def _verify(connection: Connection) -> ssl.SSLContext | bool:
    # Tests may hand in a context that trusts their own CA; nothing else sets it.
    verify = connection.extra.get("verify")
    return verify if isinstance(verify, ssl.SSLContext) else True


async def fetch(
    client: httpx.AsyncClient,
    connection: Connection,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> Answer:
    """One request; the whole exchange (redirects included) within the connection's timeout and
    the body at most ``max_bytes``. Transport failures raise CalendarError; any HTTP status is
    returned for the caller to judge."""
    try:
        async with asyncio.timeout(connection.timeout):
            async with client.stream(
                method, url, content=content, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
            ) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > connection.max_bytes:
                    raise _too_large(url, connection)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > connection.max_bytes:
                        raise _too_large(url, connection)
                return Answer(
                    response.status_code, str(response.url), response.headers, bytes(body)
                )
    except TimeoutError:
        raise CalendarError(
            f"The calendar server at {shown_url(url)} did not answer within "
            f"{connection.timeout:g} seconds."
        ) from None
    except httpx.TooManyRedirects:
        raise CalendarError(
            f"The calendar server at {shown_url(url)} redirected more than {MAX_REDIRECTS} times."
        ) from None
    except httpx.TimeoutException:
        raise CalendarError(
            f"The calendar server at {shown_url(url)} did not answer within "
            f"{connection.timeout:g} seconds."
        ) from None
    except httpx.HTTPError as error:
        raise transport_error(error, url) from None


def _too_large(url: str, connection: Connection) -> CalendarError:
    return CalendarError(
        f"The answer of {shown_url(url)} is larger than {connection.max_bytes} bytes, the most "
        "this server reads from a calendar."
    )


def _tls_failure(error: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def transport_error(error: httpx.HTTPError, url: str) -> CalendarError:
    where = shown_url(url)
    refused = refusal(error)
    if refused is not None:
        if refused.startswith("could not resolve"):
            return CalendarError(
                f"The calendar server at {where} could not be found ({refused}). Check the address."
            )
        return CalendarError(f"The address {where} cannot be used: {refused}.")
    tls = _tls_failure(error)
    if tls is not None or "SSL" in str(error) or "certificate" in str(error).lower():
        reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(error)
        return CalendarError(
            f"A secure (TLS) connection to {where} failed: {reason}. The server's certificate "
            "must be valid and issued by a trusted authority."
        )
    if isinstance(error, httpx.ConnectError):
        return CalendarError(
            f"Could not connect to the calendar server at {where} (connection refused or the "
            "server is down). Check the address and port."
        )
    return CalendarError(f"The connection to the calendar server at {where} failed ({error}).")


def status_error(answer: Answer, *, apple: bool = False) -> CalendarError | None:
    """The error an HTTP status means for a calendar read, or None for a success."""
    where = shown_url(answer.url)
    if answer.status in (401, 403):
        message = (
            f"The calendar server at {where} refused the user name or password "
            f"(HTTP {answer.status}). Check them and try again."
        )
        if apple:
            message += (
                " iCloud needs an app-specific password (appleid.apple.com → Sign-In and "
                "Security → App-Specific Passwords), not your Apple ID password."
            )
        return CalendarError(message, authentication=True)
    if answer.status >= 500:
        return CalendarError(
            f"The calendar server at {where} had an internal error (HTTP {answer.status}). "
            "Try again later."
        )
    if answer.status == 404:
        return CalendarError(f"Nothing was found at {where} (HTTP 404).")
    if answer.status >= 400:
        return CalendarError(
            f"The calendar server at {where} refused the request (HTTP {answer.status})."
        )
    return None
