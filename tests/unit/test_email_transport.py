"""Email transports against a real SMTP server (aiosmtpd on loopback) and a real folder; the
SMTP URL setting. No database."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtplib.protocol import normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bookable.notifications.transport import (
    FolderTransport,
    MailError,
    SmtpTarget,
    SmtpTransport,
    eml_name,
    envelope_sender,
    parse_smtp_url,
    transmitted_size,
    transport_for,
)
from bookable.settings import Settings
from tests.mail_servers import SmtpServer

SECRET = "s3cr3t-P4ss"


def message(message_id: str = "<m1@bookable.test>", body: str = "Hello") -> str:
    """A small RFC 5322 message whose headers name more people than the envelope will."""
    return (
        "From: Bookable <bookable@bookable.test>\r\n"
        "To: Ann Lee <ann@example.com>\r\n"
        "Cc: carl@example.com\r\n"
        "Bcc: dora@example.com\r\n"
        "Subject: Meeting confirmed\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}\r\n"
    )


def smtp(server: SmtpServer, url: str | None = None) -> SmtpTransport:
    return SmtpTransport(
        parse_smtp_url(url or server.smtp_url), 10.0, tls_context=server.client_tls_context()
    )


# --- the URL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25, "plain")),
        ("smtp+starttls://mail.example.com", SmtpTarget("mail.example.com", 587, "starttls")),
        ("smtps://mail.example.com", SmtpTarget("mail.example.com", 465, "tls")),
        ("SMTP://127.0.0.1:2525/", SmtpTarget("127.0.0.1", 2525, "plain")),
        ("smtps://[::1]:4650", SmtpTarget("::1", 4650, "tls")),
        (
            "smtp+starttls://me%40example.com:p%40ss%2Fw%3Ard@mx:587",
            SmtpTarget("mx", 587, "starttls", "me@example.com", "p@ss/w:rd"),
        ),
    ],
)
def test_smtp_urls_parse(url: str, target: SmtpTarget) -> None:
    parsed = parse_smtp_url(url)
    assert parsed == target
    assert parsed.password == target.password  # compared apart: it is left out of repr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://bob:{SECRET}@mail.example.com", "unknown scheme"),
        (f"smtp://bob:{SECRET}@mail.example.com:port", "bad port"),
        (f"smtp://bob:{SECRET}@mail.example.com:99999", "bad port"),
        (f"smtp://bob:{SECRET}@", "no host"),
        (f"smtp://bob:{SECRET}@mail.example.com/inbox", "path"),
        (f"bob:{SECRET}@mail.example.com", "scheme"),
        (f"smtp://:{SECRET}@mail.example.com", "password without a user"),
    ],
)
def test_a_bad_smtp_url_is_named_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_smtp_url(url)
    assert problem in str(raised.value)
    assert SECRET not in str(raised.value)
    assert "***" in str(raised.value)

    with pytest.raises(ValidationError) as invalid:
        Settings(smtp_url=url)
    assert "BOOKABLE_SMTP_URL" in str(invalid.value)
    assert SECRET not in str(invalid.value)


def test_a_bad_smtp_url_stops_the_start_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BOOKABLE_SMTP_URL": f"smtp://bob:{SECRET}@mail.example.com:twenty-five",
        "BOOKABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from bookable.cli import app; app()", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: BOOKABLE_SMTP_URL:")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert "bob:***@mail.example.com" in done.stderr


def test_blank_smtp_url_means_the_folder(tmp_path: Path) -> None:
    settings = Settings(smtp_url="", email_dir=tmp_path / "mail")
    assert settings.smtp_url is None
    transport = transport_for(settings)
    assert isinstance(transport, FolderTransport) and transport.directory == tmp_path / "mail"
    smtp_settings = Settings(smtp_url="smtps://u:p@mx.example.com", email_timeout=7)
    chosen = transport_for(smtp_settings)
    assert isinstance(chosen, SmtpTransport)
    assert chosen.target == SmtpTarget("mx.example.com", 465, "tls", "u", "p")
    assert chosen.timeout == 7


def test_the_envelope_sender_is_the_from_address() -> None:
    assert envelope_sender(Settings(email_from='"Acme, Inc." <cal@acme.test>')) == "cal@acme.test"
    assert envelope_sender(Settings(email_from="cal@acme.test")) == "cal@acme.test"
    with pytest.raises(ValidationError, match="BOOKABLE_EMAIL_FROM"):
        Settings(email_from="Acme")


# --- SMTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
async def test_smtp_sends_to_the_envelope_recipient_only(
    make_smtp_server: object, security: str
) -> None:
    server: SmtpServer = make_smtp_server(security=security, login=("bookable", SECRET))  # type: ignore[operator]
    await smtp(server).send(
        message(), sender="bounces@bookable.test", recipient="ann@example.com", message_id="m1"
    )
    [received] = await server.wait_for(1)
    assert received.sender == "bounces@bookable.test"
    assert received.recipients == ("ann@example.com",)  # not Cc, not Bcc
    assert received.message["Subject"] == "Meeting confirmed"
    assert received.message_id == "<m1@bookable.test>"
    assert received.message.get_content().strip() == "Hello"


async def test_a_wrong_password_is_a_retryable_error_without_the_password(
    make_smtp_server: object,
) -> None:
    server: SmtpServer = make_smtp_server(login=("bookable", "right"))  # type: ignore[operator]
    url = f"smtp://bookable:{SECRET}@127.0.0.1:{server.port}"
    with pytest.raises(MailError) as raised:
        await smtp(server, url).send(
            message(), sender="b@x.test", recipient="a@x.test", message_id="1"
        )
    assert not raised.value.permanent
    assert "login refused" in raised.value.message
    assert SECRET not in raised.value.message
    assert server.logins_refused >= 1 and server.messages == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_verifies_the_certificate(make_smtp_server: object, security: str) -> None:
    server: SmtpServer = make_smtp_server(security=security)  # type: ignore[operator]
    untrusting = SmtpTransport(parse_smtp_url(server.smtp_url), 10.0)  # the system's CAs only
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED") as raised:
        await untrusting.send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert not raised.value.permanent
    assert server.messages == []


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_a_5xx_is_permanent_and_a_4xx_is_not(smtp_server: SmtpServer, stage: str) -> None:
    transport = smtp(smtp_server)
    smtp_server.refuse_next(1, 550, stage=stage)  # type: ignore[arg-type]
    with pytest.raises(MailError) as refused:
        await transport.send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert refused.value.permanent
    assert "550" in refused.value.message

    smtp_server.refuse_next(1, 451, stage=stage)  # type: ignore[arg-type]
    with pytest.raises(MailError) as deferred:
        await transport.send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert not deferred.value.permanent
    assert "451" in deferred.value.message

    await transport.send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert len(await smtp_server.wait_for(1)) == 1
    assert smtp_server.refused == 2


async def test_smtp_down_is_retryable_and_back_on_the_same_port(smtp_server: SmtpServer) -> None:
    url = f"smtp://bookable:{SECRET}@127.0.0.1:{smtp_server.port}"
    transport = smtp(smtp_server, url)
    smtp_server.stop()
    with pytest.raises(MailError) as raised:
        await transport.send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert not raised.value.permanent
    assert "cannot connect" in raised.value.message and SECRET not in raised.value.message
    smtp_server.start()
    await smtp(smtp_server).send(message(), sender="b@x.test", recipient="a@x.test", message_id="1")
    assert len(await smtp_server.wait_for(1)) == 1


# --- the folder -------------------------------------------------------------------------------


async def test_the_folder_writes_one_file_per_message_id(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "mail"
    transport = FolderTransport(folder)
    await transport.send(
        message("<a@x>", "first"),
        sender="b@x.test",
        recipient="ann@example.com",
        message_id="<a@x>",
    )
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # only the server's user
    # A retry of the same message replaces its file; another message gets its own.
    await transport.send(
        message("<a@x>", "again"),
        sender="b@x.test",
        recipient="ann@example.com",
        message_id="<a@x>",
    )
    await transport.send(
        message("<b@x>"), sender="b@x.test", recipient="c@x.test", message_id="<b@x>"
    )
    files = sorted(path.name for path in folder.iterdir())
    assert files == sorted([eml_name("<a@x>"), eml_name("<b@x>")])  # no temporary files left
    written = (folder / eml_name("<a@x>")).read_bytes()
    assert written == message("<a@x>", "again").encode()
    assert b"\r\n" in written
    for name in files:  # each message too: only the server's user reads it
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600


async def test_a_temporary_file_left_behind_does_not_stop_a_write(tmp_path: Path) -> None:
    """A temporary name is tried with O_EXCL: one left by a process that died mid-write
    (with this pid, reused) is passed over for the next name, never written through."""
    folder = tmp_path / "mail"
    folder.mkdir()
    leftover = folder / f".{eml_name('<a@x>')}.{os.getpid()}-0.tmp"
    leftover.write_bytes(b"half a message")
    transport = FolderTransport(folder)
    await transport.send(
        message("<a@x>"), sender="b@x.test", recipient="a@x.test", message_id="<a@x>"
    )
    assert (folder / eml_name("<a@x>")).read_bytes() == message("<a@x>").encode()
    assert leftover.read_bytes() == b"half a message"
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [leftover.name, eml_name("<a@x>")]
    )


async def test_the_sends_of_one_turn_are_one_trip_to_the_writer_each_with_its_outcome(
    tmp_path: Path,
) -> None:
    """A dispatcher's batch starts its deliveries together: their files are written by one
    trip to the writer thread, each complete (fsync'd, renamed), each failure its own."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / eml_name("<bad@x>")).mkdir()  # a file cannot be renamed over this one
    transport = FolderTransport(folder)
    ids = [f"<m{i}@x>" for i in range(5)] + ["<bad@x>"]
    results = await asyncio.gather(
        *(
            transport.send(message(i, f"body {i}"), sender="b@x.test", recipient="a@x.test",
                           message_id=i)
            for i in ids
        ),
        return_exceptions=True,
    )  # fmt: skip
    assert transport.batches_written == 1
    assert results[:5] == [None] * 5
    assert isinstance(results[5], MailError) and "cannot write" in results[5].message
    for i in ids[:5]:
        assert (folder / eml_name(i)).read_bytes() == message(i, f"body {i}").encode()
    assert not [path for path in folder.iterdir() if path.name.startswith(".")]  # no temporaries
    # A send of a later turn is a trip of its own.
    await transport.send(message("<m9@x>"), sender="b@x.test", recipient="a@x.test",
                         message_id="<m9@x>")  # fmt: skip
    assert transport.batches_written == 2
    await transport.aclose()


async def test_a_batch_of_eml_files_syncs_its_folder_once_after_the_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renamed file's name is on disk only once its folder is fsync'd: one fsync of the
    folder per batch, after every rename of the batch (the real fsync, watched)."""
    folder = tmp_path / "mail"
    folder.mkdir()
    synced: list[tuple[bool, int]] = []  # (a folder?, .eml files present then)
    real_fsync = os.fsync

    def watched_fsync(fd: int) -> None:
        is_folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append((is_folder, len(list(folder.glob("*.eml")))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    transport = FolderTransport(folder)
    ids = [f"<s{i}@x>" for i in range(4)]
    await asyncio.gather(
        *(
            transport.send(message(i), sender="b@x.test", recipient="a@x.test", message_id=i)
            for i in ids
        )
    )
    await transport.aclose()
    assert [is_folder for is_folder, _files in synced] == [False] * 4 + [True]
    assert synced[-1] == (True, 4)  # after the four renames


def test_eml_names_are_safe_and_distinct() -> None:
    assert eml_name("<a/b@x>") != eml_name("<a_b@x>")
    assert eml_name("<a/b@x>") == eml_name("<a/b@x>")
    for name in (eml_name("<../../etc/passwd>"), eml_name("<>"), eml_name("x" * 400)):
        assert "/" not in name and not name.startswith(".") and name.endswith(".eml")
        assert len(name) < 160


async def test_an_unwritable_folder_is_a_mail_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MailError, match="cannot write"):
        await FolderTransport(blocker / "mail").send(
            message(), sender="b@x.test", recipient="a@x.test", message_id="1"
        )


# --- SMTP: connections kept between messages -------------------------------------------------


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\xc3\xa9"]), max_size=30))
def test_the_size_counted_is_the_length_of_the_message_as_sent(pieces: list[bytes]) -> None:
    """`transmitted_size` counts what aiosmtplib's normalisation would build (lone CRs and
    LFs, a missing last line end)."""
    data = b"".join(pieces)
    assert transmitted_size(data) == len(normalize_message_line_endings(data))


async def test_the_size_announced_is_the_size_the_server_receives(smtp_server: SmtpServer) -> None:
    """SIZE (RFC 1870) is the message's length as sent, before the dots are doubled: what the
    server keeps. Our messages (CRLF, a line starting with a dot), and messages that are not
    (lone LFs and CRs, no line end at the end) as a transport must take them too."""
    transport = smtp(smtp_server)
    crlf = message("<m0@bookable.test>", ".dotted\r\n..two\r\nend")
    bare = message("<m1@bookable.test>", "lone\nlf\rcr\r\n.dot").replace("\r\n", "\n")
    unended = message("<m2@bookable.test>", "no line end").removesuffix("\r\n")
    for number, text in enumerate((crlf, bare, unended)):
        await transport.send(text, sender="b@x.test", recipient="r@x.test", message_id=f"m{number}")
    received = {mail.message_id: mail for mail in await smtp_server.wait_for(3)}
    for mail in received.values():
        assert mail.mail_options == (f"SIZE={len(mail.raw)}",), mail.message_id
    # The server kept our CRLF message as it is, and the others with line ends added.
    assert received["<m0@bookable.test>"].raw == crlf.encode()
    assert len(received["<m1@bookable.test>"].raw) > len(bare.encode())
    assert len(received["<m2@bookable.test>"].raw) == len(unended.encode()) + 2
    await transport.aclose()


async def send_to(transport: SmtpTransport, number: int) -> None:
    await transport.send(
        message(f"<m{number}@bookable.test>", f"message {number}"),
        sender="b@x.test",
        recipient=f"r{number}@x.test",
        message_id=f"m{number}",
    )


def arrived(server: SmtpServer) -> list[str]:
    return sorted(mail.message_id for mail in server.messages)


def ids(*numbers: int) -> list[str]:
    return sorted(f"<m{number}@bookable.test>" for number in numbers)


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
async def test_one_connection_carries_a_batch_and_the_next(
    make_smtp_server: object, security: str
) -> None:
    server: SmtpServer = make_smtp_server(security=security, login=("bookable", SECRET))  # type: ignore[operator]
    transport = smtp(server)
    for number in range(10):
        await send_to(transport, number)
    assert transport.connections_opened == 1 and server.connections == 1
    # Sent at once: as many connections as messages in flight, kept for the next batch.
    await asyncio.gather(*(send_to(transport, number) for number in range(10, 14)))
    await asyncio.gather(*(send_to(transport, number) for number in range(14, 18)))
    assert transport.connections_opened == server.connections <= 4
    assert arrived(server) == ids(*range(18))
    assert all(
        mail.recipients == (f"r{int(mail.message_id[2:-15])}@x.test",) for mail in server.messages
    )
    await transport.aclose()
    await wait_until(lambda: server.open_connections == 0)


async def wait_until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_a_connection_the_server_dropped_is_opened_again(smtp_server: SmtpServer) -> None:
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    smtp_server.drop_connections()
    await send_to(transport, 2)  # the kept connection is found closed: a fresh one
    assert transport.connections_opened == 2
    await asyncio.gather(*(send_to(transport, number) for number in (3, 4)))
    smtp_server.drop_connections()
    await asyncio.gather(*(send_to(transport, number) for number in (5, 6, 7)))
    assert arrived(smtp_server) == ids(*range(1, 8))
    await transport.aclose()


async def test_a_connection_dropped_unnoticed_is_opened_again(smtp_server: SmtpServer) -> None:
    """The server's close has not reached the client yet: MAIL meets a lost connection."""
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    [(client, _sent, _since)] = transport._free
    assert client.transport is not None
    client.transport.pause_reading()  # the client does not see the close until it reads
    smtp_server.drop_connections()
    await wait_until(lambda: smtp_server.open_connections == 0)
    client.transport.resume_reading()  # read at the loop's next turn: after MAIL is written
    assert client.is_connected
    await send_to(transport, 2)
    assert arrived(smtp_server) == ids(1, 2) and transport.connections_opened == 2
    await transport.aclose()


async def test_a_421_at_mail_on_a_kept_connection_opens_another(smtp_server: SmtpServer) -> None:
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    smtp_server.refuse_next(1, 421, stage="mail")  # as a server closing an idle session
    await send_to(transport, 2)
    assert arrived(smtp_server) == ids(1, 2) and transport.connections_opened == 2
    # On a fresh connection a 421 is what it always was: a failure to retry later.
    await transport.aclose()
    smtp_server.refuse_next(1, 421, stage="mail")
    with pytest.raises(MailError) as raised:
        await send_to(transport, 3)
    assert not raised.value.permanent and "421" in raised.value.message
    await send_to(transport, 4)
    assert arrived(smtp_server) == ids(1, 2, 4)


@pytest.mark.parametrize(("stage", "code"), [("rcpt", 421), ("data", 421), ("mail", 451)])
async def test_a_4xx_mid_batch_is_retryable_and_the_others_go(
    smtp_server: SmtpServer, stage: str, code: int
) -> None:
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    smtp_server.refuse_next(1, code, stage=stage)  # type: ignore[arg-type]
    with pytest.raises(MailError) as raised:
        await send_to(transport, 2)
    assert not raised.value.permanent and str(code) in raised.value.message
    await send_to(transport, 3)
    assert arrived(smtp_server) == ids(1, 3)


async def test_a_recipient_refused_mid_batch_loses_and_doubles_nothing(
    smtp_server: SmtpServer,
) -> None:
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    smtp_server.refuse_next(1, 550, stage="rcpt")
    with pytest.raises(MailError) as refused:
        await send_to(transport, 2)
    assert refused.value.permanent and "recipient" in refused.value.message
    smtp_server.refuse_next(1, 554, stage="data")
    with pytest.raises(MailError) as data_refused:
        await send_to(transport, 3)
    assert data_refused.value.permanent and "message" in data_refused.value.message
    for number in (4, 5):
        await send_to(transport, number)
    # RSET after each refusal: the next envelopes hold their own recipient alone.
    assert arrived(smtp_server) == ids(1, 4, 5)
    assert [mail.recipients for mail in smtp_server.messages] == [
        ("r1@x.test",),
        ("r4@x.test",),
        ("r5@x.test",),
    ]
    assert transport.connections_opened == 1
    await transport.aclose()


async def test_kept_connections_close_when_idle_and_at_aclose(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(parse_smtp_url(smtp_server.smtp_url), 10.0, idle_seconds=0.2)
    await asyncio.gather(*(send_to(transport, number) for number in range(3)))
    assert smtp_server.open_connections == 3
    await wait_until(lambda: smtp_server.open_connections == 0)
    await send_to(transport, 3)
    assert transport.connections_opened == 4 and smtp_server.open_connections == 1
    await transport.aclose()
    await wait_until(lambda: smtp_server.open_connections == 0)
    assert arrived(smtp_server) == ids(0, 1, 2, 3)


async def test_a_connection_is_renewed_after_its_messages(smtp_server: SmtpServer) -> None:
    target = parse_smtp_url(smtp_server.smtp_url)
    transport = SmtpTransport(target, 10.0, messages_per_connection=3)
    for number in range(7):
        await send_to(transport, number)
    assert transport.connections_opened == 3
    await transport.aclose()


async def test_a_send_cut_short_closes_its_connection(smtp_server: SmtpServer) -> None:
    transport = smtp(smtp_server)
    await send_to(transport, 1)
    smtp_server.hold()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await send_to(transport, 2)  # the message arrived; its answer did not
    assert transport._free == []  # not kept: its answer is still on the way
    smtp_server.release()
    await send_to(transport, 3)
    assert arrived(smtp_server) == ids(1, 2, 3) and transport.connections_opened == 2
    await transport.aclose()
