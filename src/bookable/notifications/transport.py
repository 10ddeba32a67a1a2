"""Sending one rendered email: over SMTP (aiosmtplib), or as an .eml file into a folder.

A transport takes the message exactly as the outbox row holds it (RFC 5322 text, CRLF) and an
envelope given apart from it: the SMTP envelope is ``sender`` -> ``[recipient]`` and nothing
else; addresses in the message's headers (To, Cc, Bcc) are never read, so nothing goes to an
address the caller did not name.

Errors come back as `MailError`: ``permanent`` when the server refused the recipient or the
message with a 5xx (a retry cannot help), otherwise a retry may. Their messages never hold the
SMTP password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import ssl
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

if TYPE_CHECKING:  # settings imports this module to check BOOKABLE_SMTP_URL
    from bookable.settings import Settings

SmtpMode = Literal["plain", "starttls", "tls"]
_SCHEMES: dict[str, tuple[SmtpMode, int]] = {
    "smtp": ("plain", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
SMTP_URL_FORMS = "smtp://[user:password@]host:port, smtp+starttls://... or smtps://..."


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to hand emails over (from `parse_smtp_url`)."""

    host: str
    port: int
    mode: SmtpMode = "plain"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def mask_smtp_url(url: str) -> str:
    """``url`` with the password (anything between ``user:`` and the last ``@``) as ``***``;
    also for URLs too broken to parse."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:***" if colon else user
    return f"{scheme}{separator}{masked}@{hostpart}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://[user:password@]host[:port]`` (plain, port 25), ``smtp+starttls://...`` (587),
    ``smtps://...`` (implicit TLS, 465); user and password percent-encoded. ValueError (never
    holding the password) when it is none of these."""

    def bad(problem: str) -> ValueError:
        return ValueError(f"{problem} in {mask_smtp_url(url)!r}; expected {SMTP_URL_FORMS}")

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise bad("a bad port or host") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise bad(f"an unknown scheme {scheme!r}" if scheme else "no scheme")
    if not parts.hostname:
        raise bad("no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("a path, query or fragment (not allowed)")
    mode, default_port = _SCHEMES[scheme]
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise bad("a password without a user name")
    return SmtpTarget(
        host=parts.hostname,
        port=port if port is not None else default_port,
        mode=mode,
        username=username,
        password=password,
    )


def envelope_sender(settings: Settings) -> str:
    """The SMTP envelope sender: the address part of ``BOOKABLE_EMAIL_FROM``."""
    return parseaddr(settings.email_from)[1]


class MailError(Exception):
    """An attempt that did not hand the message over. ``permanent``: the server refused the
    recipient or the message for good (an SMTP 5xx); no retry can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class MailTransport(Protocol):
    async def send(self, message: str, *, sender: str, recipient: str, message_id: str) -> None:
        """Hand ``message`` (full RFC 5322 text) over for ``recipient`` alone; MailError if not."""
        ...

    async def aclose(self) -> None:
        """Let go of what sending kept (connections); the dispatcher's stop calls it."""
        ...


# --- SMTP -----------------------------------------------------------------------------------


SMTP_IDLE_SECONDS = 10.0  # a kept connection unused this long is closed (servers wait >= 5 min)
SMTP_MESSAGES_PER_CONNECTION = 100  # then a fresh one, as Postfix's own client does by default
SMTP_QUIT_SECONDS = 2.0  # how long a QUIT at close may take


class _Stale(Exception):
    """A kept connection the server had closed, or closes with 421, before MAIL was answered:
    nothing of the message went out, so it is sent again on a fresh connection."""


class SmtpTransport:
    """Keeps its SMTP connections for the messages that follow: connecting (TCP, EHLO,
    STARTTLS, AUTH, and QUIT at the end) was ~0.7 ms of CPU per message over plain loopback,
    more with TLS. A send takes a kept connection, or opens one when none is free (so as many
    are open as messages are sent at once: the dispatcher's concurrency), and gives it back
    after a transaction that ended cleanly (a refusal is followed by RSET, as aiosmtplib's
    ``sendmail`` does); a connection left in any other state (a timeout, a cancelled send, a
    failed RSET) is closed. A kept connection the server closed meanwhile, or closes with 421
    at MAIL, is replaced and the message sent on the new one; a refusal on any connection is
    classified as on a fresh one. Kept connections are closed after ``SMTP_IDLE_SECONDS``
    unused, after ``SMTP_MESSAGES_PER_CONNECTION`` messages, and by `aclose`."""

    def __init__(
        self,
        target: SmtpTarget,
        timeout: float,
        *,
        tls_context: ssl.SSLContext | None = None,
        idle_seconds: float = SMTP_IDLE_SECONDS,
        messages_per_connection: int = SMTP_MESSAGES_PER_CONNECTION,
    ) -> None:
        self.target = target
        self.timeout = timeout
        # The system's CAs (OpenSSL also honours SSL_CERT_FILE); tests pass their own CA.
        self.tls_context = tls_context or ssl.create_default_context()
        self.idle_seconds = idle_seconds
        self.messages_per_connection = messages_per_connection
        self.connections_opened = 0  # for tests and benchmarks
        # Free connections, the most recently used last: (client, messages sent, idle since).
        self._free: list[tuple[aiosmtplib.SMTP, int, float]] = []
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self) -> aiosmtplib.SMTP:
        target = self.target
        return aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.mode == "tls",
            # Plain means plain: no opportunistic STARTTLS that could fail on a certificate.
            start_tls=target.mode == "starttls",
            tls_context=self.tls_context if target.mode != "plain" else None,
            timeout=self.timeout,
        )

    async def send(self, message: str, *, sender: str, recipient: str, message_id: str) -> None:
        data = message.encode("utf-8")
        try:
            kept = self._take_free()
            if kept is not None:
                try:
                    await self._send_on(*kept, sender, recipient, data, kept=True)
                    return
                except _Stale:
                    pass  # closed; sent on a fresh connection below
            client = self._client()
            try:
                await client.connect()
            except BaseException:
                client.close()
                raise
            self.connections_opened += 1
            await self._send_on(client, 0, sender, recipient, data, kept=False)
        except aiosmtplib.SMTPAuthenticationError as error:
            # The operator's setting, not this email's fault: retried, so a fixed password
            # still sends it.
            raise MailError(self._clean(f"login refused: {error.code} {error.message}")) from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as error:
            stage = "recipient" if isinstance(error, aiosmtplib.SMTPRecipientRefused) else "message"
            raise self._answer(stage, error.code, error.message) from None
        except aiosmtplib.SMTPSenderRefused as error:
            # The sender is our setting: retried like a login failure.
            raise MailError(
                self._clean(f"the server refused the sender: {error.code} {error.message}")
            ) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise MailError(f"{self.target}: no answer within {self.timeout:g} s") from None
        except (aiosmtplib.SMTPConnectError, OSError) as error:
            raise MailError(self._clean(f"{self.target}: cannot connect: {error}")) from None
        except aiosmtplib.SMTPException as error:
            raise MailError(
                self._clean(f"{self.target}: {type(error).__name__}: {error}")
            ) from None

    async def _send_on(
        self,
        client: aiosmtplib.SMTP,
        sent: int,
        sender: str,
        recipient: str,
        data: bytes,
        *,
        kept: bool,
    ) -> None:
        """One transaction on ``client``, which is given back if it ends clean (accepted, or
        refused and then RSET) and closed otherwise."""
        try:
            await self._transaction(client, sender, recipient, data, kept=kept)
        except aiosmtplib.SMTPResponseException:
            if client.is_connected and await _reset(client):
                self._give_back(client, sent + 1)
            else:
                client.close()
            raise
        except BaseException:  # lost, timed out, cancelled, stale: its state is unknown
            client.close()
            raise
        self._give_back(client, sent + 1)

    @staticmethod
    async def _transaction(
        client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, *, kept: bool
    ) -> None:
        """MAIL, RCPT, DATA for one recipient, as aiosmtplib's ``sendmail`` sends them (EHLO
        when needed, SIZE when offered). `_Stale` when a ``kept`` connection was lost, or
        answered 421, before MAIL was accepted: nothing of the message went out."""
        if kept and not client.is_connected:
            raise _Stale  # the server closed it while it was unused
        await _ehlo_if_needed(client)
        options = []
        if client.supports_extension("size"):
            options.append(f"size={transmitted_size(data)}")
        try:
            await client.mail(sender, options=options)
        except aiosmtplib.SMTPServerDisconnected:
            if kept:
                raise _Stale from None
            raise
        except aiosmtplib.SMTPSenderRefused as error:
            if kept and error.code == SMTP_CLOSING:
                raise _Stale from None
            raise
        await client.rcpt(recipient)
        await client.data(data)

    # --- the kept connections ---

    def _take_free(self) -> tuple[aiosmtplib.SMTP, int] | None:
        """The most recently used free connection still open and not idle too long."""
        oldest = asyncio.get_running_loop().time() - self.idle_seconds
        while self._free:
            client, sent, idle_since = self._free.pop()
            if client.is_connected and idle_since > oldest:
                return client, sent
            self._quit_later(client)
        return None

    def _give_back(self, client: aiosmtplib.SMTP, sent: int) -> None:
        if not client.is_connected:
            return
        if sent >= self.messages_per_connection:
            self._quit_later(client)
            return
        loop = asyncio.get_running_loop()
        self._free.append((client, sent, loop.time()))
        if self._idle_timer is None:
            self._idle_timer = loop.call_later(self.idle_seconds, self._close_idle)

    def _close_idle(self) -> None:
        """Close the connections unused for ``idle_seconds``; look again for the others."""
        self._idle_timer = None
        loop = asyncio.get_running_loop()
        oldest = loop.time() - self.idle_seconds
        keep = []
        for entry in self._free:
            if entry[2] > oldest:
                keep.append(entry)
            else:
                self._quit_later(entry[0])
        self._free = keep
        if keep:
            wait = keep[0][2] - oldest  # the least recently used is first
            self._idle_timer = loop.call_later(max(wait, 0.01), self._close_idle)

    def _quit_later(self, client: aiosmtplib.SMTP) -> None:
        task = asyncio.get_running_loop().create_task(_quit(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """QUIT and close every kept connection (the dispatcher's stop)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        free, self._free = self._free, []
        for client, _sent, _idle_since in free:
            self._quit_later(client)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _answer(self, stage: str, code: int, text: str) -> MailError:
        return MailError(
            self._clean(f"the server refused the {stage}: {code} {text}"),
            permanent=500 <= code < 600,
        )

    def _clean(self, text: str) -> str:
        """Server and library texts may quote what they were sent: never the password."""
        password = self.target.password
        if password:
            text = text.replace(password, "***")
        return text.replace("\r", " ").replace("\n", " ").strip()


SMTP_CLOSING = 421  # "service not available, closing transmission channel"


def transmitted_size(data: bytes) -> int:
    """``len(normalize_message_line_endings(data))``: the message's size as aiosmtplib's DATA
    sends it (every lone CR or LF made CRLF, a CRLF added at the end if missing), for SIZE.
    Counted, not built: the regex substitution copied the whole message (~0.1 ms; ours is CRLF
    already) only to take its length, and DATA normalises it again anyway."""
    crlf = data.count(b"\r\n")
    lone = data.count(b"\r") - crlf + data.count(b"\n") - crlf  # each one byte longer
    ends_a_line = data.endswith((b"\n", b"\r"))  # a last lone CR becomes a CRLF too
    return len(data) + lone + (0 if ends_a_line else 2)


async def _ehlo_if_needed(client: aiosmtplib.SMTP) -> None:
    """EHLO once per connection, HELO when the server does not know EHLO (as ``sendmail``)."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused transaction; whether the connection is clean again."""
    try:
        await client.rset()
    except (ConnectionError, aiosmtplib.SMTPException):
        return False
    return client.is_connected


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        async with asyncio.timeout(SMTP_QUIT_SECONDS):
            await client.quit()
    except (ConnectionError, TimeoutError, aiosmtplib.SMTPException):
        pass  # closing anyway
    finally:
        client.close()


# --- a folder of .eml files -------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


def eml_name(message_id: str) -> str:
    """The file name of a message: readable, safe, and one per Message-ID (the hash keeps two
    ids apart that differ only in characters a file name cannot hold)."""
    readable = _UNSAFE.sub("_", message_id.strip().strip("<>")).strip("._")[:120] or "message"
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:16]
    return f"{readable}.{digest}.eml"


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class FolderTransport:
    """Writes each message to ``<directory>/<eml_name(message_id)>``, for a server without an
    SMTP relay (and for development): the same Message-ID always writes the same file, so a
    retry replaces it instead of adding a second one.

    Each file is complete before it appears (a temporary file, written and fsync'd, then
    renamed over the name) and on disk before `send` returns, its name too (the folder is
    fsync'd after the renames), so a message recorded as sent is in the folder. The files of
    the sends made in one turn of the event loop (a dispatcher's batch starts its deliveries
    together) are written by one trip to a worker thread, not one each: the hop was ~0.1-0.25
    ms of CPU per message (the executor, the wake-up of the loop); each file keeps its own
    temporary file, fsync and rename, and its own outcome; the folder's fsync is one a batch.

    A file is written with five system calls (open, write, fsync, close, rename), by `os`
    directly; `tempfile.mkstemp`, a buffered file object and a `mkdir` per message made ~17
    (getpid at each name tried, getrandom, isatty's ioctl, lseek, mkdir and two stats), most
    of them a release and retake of the GIL, which in `serve` the event loop's thread holds:
    0.04-0.09 ms less CPU a message where fsync costs nothing (bench/README, round 12). The
    fsyncs themselves, the folder's promise, cost far more on some disks and stay."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.batches_written = 0  # trips to the writer thread, for tests and benchmarks
        # Sends of this turn of the loop, written together at its end (`_write_queued`).
        self._queued: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._writing: set[asyncio.Task[None]] = set()
        # Temporary names: this process's and a count, tried with O_EXCL (`_write`).
        self._temporaries = itertools.count()

    async def send(self, message: str, *, sender: str, recipient: str, message_id: str) -> None:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        if not self._queued:
            # After the callbacks already scheduled: the other deliveries of the batch.
            loop.call_soon(self._write_queued)
        self._queued.append((message_id, message.encode("utf-8"), written))
        try:
            await written
        except OSError as error:
            raise MailError(
                f"cannot write to {self.directory}: {error.strerror or error}"
            ) from None

    def _write_queued(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._write_batch(batch))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_batch(self, batch: list[tuple[str, bytes, asyncio.Future[None]]]) -> None:
        self.batches_written += 1
        messages = [(message_id, data) for message_id, data, _written in batch]
        try:
            errors = await asyncio.to_thread(self._write_all, messages)
        except Exception as error:  # the thread could not be started
            errors = [error] * len(batch)
        except BaseException:  # cancelled (the loop is closing): so are the sends waiting
            for _message_id, _data, written in batch:
                written.cancel()
            raise
        for (_message_id, _data, written), error in zip(batch, errors, strict=True):
            if written.done():  # its send was cancelled (a timeout): nobody waits
                continue
            if error is None:
                written.set_result(None)
            else:
                written.set_exception(error)

    async def aclose(self) -> None:
        """Nothing is kept between messages; writes under way are waited for."""
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    def _write_all(self, messages: list[tuple[str, bytes]]) -> list[Exception | None]:
        """Each message written as `_write` writes it, then the folder fsync'd once, so that
        the renames survive a power loss too; the error of each, or None."""
        errors: list[Exception | None] = []
        try:
            # Emails hold people's names and addresses: only the server's user reads them.
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            return [error] * len(messages)
        for message_id, data in messages:
            try:
                self._write(message_id, data)
            except Exception as error:  # this message's: the others are written all the same
                errors.append(error)
            else:
                errors.append(None)
        if any(error is None for error in errors):
            try:
                self._sync_folder()
            except OSError as error:  # the names may not be on disk: not sent, to be retried
                errors = [error if mine is None else mine for mine in errors]
        return errors

    def _sync_folder(self) -> None:
        folder = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _write(self, message_id: str, data: bytes) -> None:
        name = eml_name(message_id)
        target = os.path.join(self.directory, name)
        while True:
            temporary = os.path.join(
                self.directory, f".{name}.{os.getpid()}-{next(self._temporaries)}.tmp"
            )
            try:
                handle = os.open(temporary, _NEW_FILE, 0o600)
                break
            except FileExistsError:  # left by a process that had this pid: the next name
                continue
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(handle, view) :]
                os.fsync(handle)
            finally:
                os.close(handle)
            # A reader sees the old file or the new one, never half of one.
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def transport_for(settings: Settings) -> MailTransport:
    """SMTP when ``BOOKABLE_SMTP_URL`` is set, else .eml files in ``BOOKABLE_EMAIL_DIR``."""
    if settings.smtp_url:
        return SmtpTransport(parse_smtp_url(settings.smtp_url), settings.email_timeout)
    return FolderTransport(settings.email_dir)
