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
import hashlib
import os
import re
import ssl
import tempfile
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


# --- SMTP -----------------------------------------------------------------------------------


class SmtpTransport:
    """One SMTP connection per message: an email is rare next to its booking, and a fresh
    connection never inherits a half-broken session from the previous one."""

    def __init__(
        self, target: SmtpTarget, timeout: float, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.target = target
        self.timeout = timeout
        # The system's CAs (OpenSSL also honours SSL_CERT_FILE); tests pass their own CA.
        self.tls_context = tls_context or ssl.create_default_context()

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
        client = self._client()
        try:
            async with client:
                await client.sendmail(sender, [recipient], message.encode("utf-8"))
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0] if error.recipients else None
            if refused is None:
                raise MailError("the server refused the recipient") from None
            raise self._answer("recipient", refused.code, refused.message) from None
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


# --- a folder of .eml files -------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


def eml_name(message_id: str) -> str:
    """The file name of a message: readable, safe, and one per Message-ID (the hash keeps two
    ids apart that differ only in characters a file name cannot hold)."""
    readable = _UNSAFE.sub("_", message_id.strip().strip("<>")).strip("._")[:120] or "message"
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:16]
    return f"{readable}.{digest}.eml"


class FolderTransport:
    """Writes each message to ``<directory>/<eml_name(message_id)>``, for a server without an
    SMTP relay (and for development): the same Message-ID always writes the same file, so a
    retry replaces it instead of adding a second one."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def send(self, message: str, *, sender: str, recipient: str, message_id: str) -> None:
        try:
            await asyncio.to_thread(self._write, message_id, message.encode("utf-8"))
        except OSError as error:
            raise MailError(
                f"cannot write to {self.directory}: {error.strerror or error}"
            ) from None

    def _write(self, message_id: str, data: bytes) -> None:
        # Emails hold people's names and addresses: only the server's user reads them.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / eml_name(message_id)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            # A reader sees the old file or the new one, never half of one.
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def transport_for(settings: Settings) -> MailTransport:
    """SMTP when ``BOOKABLE_SMTP_URL`` is set, else .eml files in ``BOOKABLE_EMAIL_DIR``."""
    if settings.smtp_url:
        return SmtpTransport(parse_smtp_url(settings.smtp_url), settings.email_timeout)
    return FolderTransport(settings.email_dir)
