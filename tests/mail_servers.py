"""A real SMTP server for the tests: aiosmtpd on a free loopback port, in a thread of its own.

`smtp_server` (a fixture) keeps every message it accepted (envelope sender and recipients, the
parsed message, the raw bytes). A test can stop it and start it again on the same port (the
server down, then back), make it refuse the next N messages with a 4xx or 5xx (at RCPT or at
DATA), hold its answer to DATA until released (the message has arrived, the client waits: for
crash tests), and wait until N messages have arrived. `make_smtp_server` makes variants: with
a login, with STARTTLS or implicit TLS under a `trustme` CA (`client_tls_context()` trusts it).

As a real server (Postfix) does, a message is kept once its data has arrived, before the answer:
a client that vanishes while the answer is held has still delivered it.
"""

from __future__ import annotations

import asyncio
import email.policy
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any, Literal, cast

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.calendar_servers import free_port

HOST = "127.0.0.1"
Stage = Literal["mail", "rcpt", "data"]
Security = Literal["plain", "starttls", "tls"]


@dataclass(frozen=True)
class ReceivedMail:
    sender: str  # the envelope's MAIL FROM
    recipients: tuple[str, ...]  # the envelope's RCPT TOs
    message: EmailMessage
    raw: bytes
    mail_options: tuple[str, ...] = ()  # MAIL FROM's parameters, such as "SIZE=1234"

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class _Refusal:
    count: int
    reply: str
    stage: Stage


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self,
        _server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        refusal = self.server._refusal("mail")
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self,
        _server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        _options: list[str],
    ) -> str:
        refusal = self.server._refusal("rcpt")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        refusal = self.server._refusal("data")
        if refusal is not None:
            return refusal
        raw = cast(bytes, envelope.original_content or envelope.content)
        self.server._keep(
            ReceivedMail(
                sender=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                message=cast(EmailMessage, message_from_bytes(raw, policy=email.policy.default)),
                raw=raw,
                mail_options=tuple(envelope.mail_options),
            )
        )
        # A threading.Event (set from the test's thread): polled, not awaited.
        while self.server._holding.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return "250 Message accepted for delivery"


class _CountingSmtp(SMTP):
    """aiosmtpd's session, known to its server while connected (to count and to drop)."""

    def __init__(self, server: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bookable_server = server
        self.greeted = False

    async def smtp_EHLO(self, hostname: str) -> None:
        # Counted at the first EHLO: the controller's own check at start never says one.
        if not self.greeted:
            self.greeted = True
            self.bookable_server._greeted()
        await super().smtp_EHLO(hostname)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.bookable_server._connected(self, transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.bookable_server._disconnected(self)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, server: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bookable_server = server

    def factory(self) -> SMTP:
        return _CountingSmtp(self.bookable_server, self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """See the module docstring. Thread-safe: the server runs in aiosmtpd's thread."""

    def __init__(
        self,
        *,
        security: Security = "plain",
        login: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.security = security
        self.login = login
        self.ca = trustme.CA()
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._refusals: list[_Refusal] = []
        self.refused = 0  # messages answered with a refusal
        self.logins_refused = 0
        self._holding = threading.Event()
        self._controller: Controller | None = None
        self.connections = 0  # clients' connections (those that said EHLO) since the start
        self._open: dict[SMTP, asyncio.BaseTransport] = {}

    # --- controlling it -------------------------------------------------------------------------

    @property
    def smtp_url(self) -> str:
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.security]
        user = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"{scheme}://{user}{HOST}:{self.port}"

    def start(self) -> None:
        """Listen (again) on the same port."""
        if self._controller is not None:
            return
        kwargs: dict[str, Any] = {}
        if self.security != "plain":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(HOST, "localhost").configure_cert(context)
            if self.security == "tls":
                kwargs["ssl_context"] = context
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        if self.login is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = _Controller(self, _Handler(self), hostname=HOST, port=self.port, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening (connections are refused until `start`)."""
        self._holding.clear()  # a held answer must not keep the server's loop from stopping
        if self._controller is not None:
            controller, self._controller = self._controller, None
            controller.stop()

    def refuse_next(self, count: int, code: int = 451, *, stage: Stage = "rcpt") -> None:
        """Answer the next ``count`` messages with ``code`` at MAIL FROM, RCPT TO or DATA."""
        text = {421: "Closing the channel"}.get(code) or (
            "Try again later" if code < 500 else "No such user here"
        )
        with self._lock:
            self._refusals.append(_Refusal(count, f"{code} {text}", stage))

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def drop_connections(self) -> None:
        """Close every open connection from the server's side (as an idle timeout does)."""
        controller = self._controller
        assert controller is not None and controller.loop is not None
        with self._lock:
            transports = list(self._open.values())
        done = threading.Event()

        def close() -> None:
            for transport in transports:
                transport.close()
            done.set()

        controller.loop.call_soon_threadsafe(close)
        assert done.wait(5)

    def hold(self) -> None:
        """Keep messages that arrive, but hold the answer to DATA until `release`."""
        self._holding.set()

    def release(self) -> None:
        self._holding.clear()

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and nothing else)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    # --- what arrived ---------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    async def wait_for(self, count: int, within: float = 15.0) -> list[ReceivedMail]:
        """Wait (without blocking the event loop) until ``count`` messages have arrived."""
        deadline = time.monotonic() + within
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} of {count} messages arrived")
            await asyncio.sleep(0.02)
        return self.messages

    # --- the handler's side ---------------------------------------------------------------------

    def _refusal(self, stage: Stage) -> str | None:
        with self._lock:
            if self._refusals and self._refusals[0].stage == stage:
                refusal = self._refusals[0]
                refusal.count -= 1
                if refusal.count <= 0:
                    self._refusals.pop(0)
                self.refused += 1
                return refusal.reply
        return None

    def _connected(self, session: SMTP, transport: asyncio.BaseTransport) -> None:
        with self._lock:
            self._open[session] = transport

    def _greeted(self) -> None:
        with self._lock:
            self.connections += 1

    def _disconnected(self, session: SMTP) -> None:
        with self._lock:
            self._open.pop(session, None)

    def _keep(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        assert self.login is not None
        given = (
            (data.login.decode(), data.password.decode())
            if isinstance(data, LoginPassword)
            else None
        )
        if given == self.login:
            return AuthResult(success=True)
        with self._lock:
            self.logins_refused += 1
        return AuthResult(success=False, handled=False)


@pytest.fixture
def make_smtp_server() -> Iterator[Any]:
    """Start an `SmtpServer` with the options given; each is stopped after the test."""
    started: list[SmtpServer] = []

    def _make(**options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        server.start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def smtp_server(make_smtp_server: Any) -> SmtpServer:
    """A plain SMTP server of this test's own (no login, no TLS)."""
    return cast(SmtpServer, make_smtp_server())
