"""Sending the email outbox, on SQLite and PostgreSQL: rows inserted straight into
`outbound_emails`, the email dispatcher running in the app's lifespan (as in `bookable serve`),
and a real SMTP server (aiosmtpd) on loopback or a real folder.

Settings make polling and retries fast (tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select, update

from bookable.app import create_app
from bookable.models.emails import EmailStatus, OutboundEmail
from bookable.notifications.dispatcher import EmailDispatcher
from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    mail_facts,
    render_stored,
    stored_facts,
)
from bookable.notifications.transport import eml_name
from bookable.settings import Settings
from tests.mail_servers import SmtpServer

FAST = {
    "emails": "on",
    "webhook_poll_interval": 0.05,
    "webhook_retry_jitter": 0.0,
    "email_retry_delays": "0.05",
    # Generous: a loaded test machine must not turn a slow answer into a retry.
    "email_timeout": 10.0,
    "email_from": "Bookable <bounces@bookable.test>",
}
SECRET = "s3cr3t-P4ss"


def rfc5322(message_id: str, to: str) -> str:
    return (
        "From: Bookable <bounces@bookable.test>\r\n"
        f"To: {to}\r\n"
        "Cc: someone-else@example.com\r\n"
        "Subject: Your meeting\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 05 Jan 2026 12:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "See you then.\r\n"
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def email_row(recipient: str, number: int = 1) -> OutboundEmail:
    message_id = f"<booking-1.confirmed.{number}@bookable.test>"
    return OutboundEmail(
        booking_id=1,
        user_id=1,
        kind="attendee.confirmed",
        recipient=recipient,
        message_id=message_id,
        subject="Your meeting",
        message=rfc5322(message_id, recipient),
    )


async def add_emails(app: FastAPI, *rows: OutboundEmail) -> list[int]:
    """``rows`` in one transaction, then the dispatcher woken; their ids."""
    async with app.state.sessions() as session, session.begin():
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows]
    app.state.email_dispatcher.wake()  # the lead's outbox calls mark_written; a wake does here
    return ids


async def add_email(app: FastAPI, recipient: str, number: int = 1) -> int:
    (row_id,) = await add_emails(app, email_row(recipient, number))
    return row_id


ANN = Party("Ann Attendee", "ann@example.com", "Europe/Paris")
OLGA = Party("Olga Organizer", "olga@example.com", "Europe/Paris")


def facts_of(title: str) -> dict[str, Any]:
    mail = BookingMail(
        booking_id=1,
        booking_uid="bk1",
        ical_uid="bk1@bookable",
        sequence=0,
        title=title,
        start=datetime(2026, 1, 6, 10, 0, tzinfo=UTC),
        end=datetime(2026, 1, 6, 10, 30, tzinfo=UTC),
        organizer=OLGA,
        hosts=(OLGA,),
        attendees=(ANN,),
    )
    stamp = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    return stored_facts(
        mail_facts(mail), ANN, sender=FAST["email_from"], stamp=stamp, change="bk1.c0ffee"
    )


async def add_facts_email(app: FastAPI, message_id: str) -> int:
    """A row as a booking writes it: the facts of its message, no message yet."""
    async with app.state.sessions() as session, session.begin():
        email = OutboundEmail(
            booking_id=1,
            user_id=1,
            kind=MailKind.ATTENDEE_CONFIRMED.value,
            recipient=ANN.email,
            message_id=message_id,
            subject="Confirmed: Intro call",
            facts=facts_of("Intro call"),
        )
        session.add(email)
        await session.flush()
        email_id = email.id
    app.state.email_dispatcher.wake()
    return email_id


async def row(app: FastAPI, row_id: int) -> OutboundEmail:
    async with app.state.sessions() as session:
        found = await session.get(OutboundEmail, row_id)
        assert found is not None
        return found


async def until(
    app: FastAPI, row_id: int, check: Callable[[OutboundEmail], bool], within: float = 15.0
) -> OutboundEmail:
    deadline = time.monotonic() + within
    while True:
        current = await row(app, row_id)
        if check(current):
            return current
        assert time.monotonic() < deadline, f"row {row_id} stayed {current.status}"
        await asyncio.sleep(0.05)


async def test_an_email_goes_to_its_recipient_alone(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    async with running(make_settings(**FAST, smtp_url=smtp_server.smtp_url)) as app:
        assert isinstance(app.state.email_dispatcher, EmailDispatcher)
        assert app.state.webhook_dispatcher.name == "webhook"
        assert app.state.calendar_dispatcher.name == "calendar"
        first = await add_email(app, "ann@example.com", 1)
        second = await add_email(app, "Bob.Host@example.org", 2)
        sent = await until(app, second, lambda r: r.status == EmailStatus.SENT)
        sent_first = await until(app, first, lambda r: r.status == EmailStatus.SENT)
    received = {mail.message_id: mail for mail in await smtp_server.wait_for(2)}
    assert len(smtp_server.messages) == 2
    one = received["<booking-1.confirmed.1@bookable.test>"]
    assert one.sender == "bounces@bookable.test"
    assert one.recipients == ("ann@example.com",)  # never the Cc of the headers
    assert received["<booking-1.confirmed.2@bookable.test>"].recipients == ("Bob.Host@example.org",)
    assert one.raw.replace(b"\r\n", b"\n") == rfc5322(
        "<booking-1.confirmed.1@bookable.test>", "ann@example.com"
    ).encode().replace(b"\r\n", b"\n")
    for done in (sent, sent_first):
        assert done.attempts == 1 and done.last_error is None and done.locked_until is None
        assert done.sent_at is not None and done.sent_at <= datetime.now(UTC)


async def test_smtp_down_then_back(
    make_settings: Callable[..., Settings], make_smtp_server: Any
) -> None:
    server: SmtpServer = make_smtp_server(login=("bookable", SECRET))
    server.stop()
    async with running(make_settings(**FAST, smtp_url=server.smtp_url)) as app:
        email = await add_email(app, "ann@example.com")
        waiting = await until(app, email, lambda r: r.attempts >= 2)
        assert waiting.status == EmailStatus.PENDING
        assert waiting.last_error is not None and "cannot connect" in waiting.last_error
        assert SECRET not in waiting.last_error
        assert waiting.sent_at is None
        server.start()
        sent = await until(app, email, lambda r: r.status == EmailStatus.SENT)
    assert sent.attempts >= 3 and sent.last_error is None
    [received] = await server.wait_for(1)
    assert received.recipients == ("ann@example.com",)


async def test_a_5xx_fails_at_once(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    smtp_server.refuse_next(1, 550, stage="rcpt")
    async with running(make_settings(**FAST, smtp_url=smtp_server.smtp_url)) as app:
        email = await add_email(app, "nobody@example.com")
        failed = await until(app, email, lambda r: r.status == EmailStatus.FAILED)
        await asyncio.sleep(0.3)  # several polls: it is not tried again
        assert (await row(app, email)).attempts == 1
    assert failed.attempts == 1
    assert failed.last_error is not None and "550" in failed.last_error
    assert smtp_server.messages == [] and smtp_server.refused == 1


async def test_a_4xx_is_retried(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    smtp_server.refuse_next(2, 451, stage="data")
    async with running(make_settings(**FAST, smtp_url=smtp_server.smtp_url)) as app:
        email = await add_email(app, "ann@example.com")
        sent = await until(app, email, lambda r: r.status == EmailStatus.SENT)
    assert sent.attempts == 3 and sent.last_error is None
    assert smtp_server.refused == 2
    assert len(await smtp_server.wait_for(1)) == 1


async def test_the_last_attempt_fails_the_email(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    smtp_server.refuse_next(10, 421, stage="rcpt")
    settings = make_settings(**FAST, smtp_url=smtp_server.smtp_url, email_max_attempts=3)
    async with running(settings) as app:
        email = await add_email(app, "ann@example.com")
        failed = await until(app, email, lambda r: r.status == EmailStatus.FAILED)
    assert failed.attempts == 3
    assert failed.last_error is not None and "421" in failed.last_error
    assert smtp_server.refused == 3 and smtp_server.messages == []


async def test_a_message_sent_before_a_stop_is_sent_again_with_its_id(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """The server has the message, but its answer never came (held, then the process stops):
    the row stays PENDING, and the next process sends it again with the same Message-ID (at
    least once; mail software recognises the duplicate)."""
    smtp_server.hold()
    settings = make_settings(**FAST, smtp_url=smtp_server.smtp_url)
    async with running(settings) as app:
        email = await add_email(app, "ann@example.com")
        await smtp_server.wait_for(1)
    unanswered = await row(app, email)
    assert unanswered.status == EmailStatus.PENDING and unanswered.attempts == 0
    assert unanswered.locked_until is None  # given back at the stop, not left to the lease
    smtp_server.release()
    async with running(settings) as again:
        sent = await until(again, email, lambda r: r.status == EmailStatus.SENT)
    first, second = await smtp_server.wait_for(2)
    assert first.message_id == second.message_id == "<booking-1.confirmed.1@bookable.test>"
    assert sent.attempts == 1


async def test_the_folder_keeps_one_file_per_message(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    settings = make_settings(**FAST, smtp_url=None, email_dir=folder)
    async with running(settings) as app:
        email = await add_email(app, "ann@example.com")
        await until(app, email, lambda r: r.status == EmailStatus.SENT)
        # As if the process had died before recording it: the next attempt sends it again.
        async with app.state.sessions() as session, session.begin():
            await session.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id == email)
                .values(status=EmailStatus.PENDING, sent_at=None)
            )
        app.state.email_dispatcher.wake()
        resent = await until(app, email, lambda r: r.status == EmailStatus.SENT)
    assert resent.attempts == 2
    name = eml_name("<booking-1.confirmed.1@bookable.test>")
    assert [path.name for path in folder.iterdir()] == [name]
    assert (folder / name).read_text().startswith("From: Bookable <bounces@bookable.test>")


async def test_emails_off_starts_no_email_dispatcher(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    settings = make_settings(**{**FAST, "emails": "off"}, smtp_url=smtp_server.smtp_url)
    async with running(settings) as app:
        assert app.state.email_dispatcher is None
        assert {d.name for d in [app.state.webhook_dispatcher, app.state.calendar_dispatcher]} == {
            "webhook",
            "calendar",
        }
        async with app.state.sessions() as session, session.begin():
            session.add(
                OutboundEmail(
                    booking_id=1,
                    kind="attendee.confirmed",
                    recipient="ann@example.com",
                    message_id="<off@bookable.test>",
                    subject="s",
                    message=rfc5322("<off@bookable.test>", "ann@example.com"),
                )
            )
        await asyncio.sleep(0.3)  # several polls of the other dispatchers
        async with app.state.sessions() as session:
            statuses = list(await session.scalars(select(OutboundEmail.status)))
    assert statuses == [EmailStatus.PENDING]
    assert smtp_server.messages == []


async def test_run_once_sends_what_is_due(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """`run_once` (for the CLI and tests): the dispatcher without its loop."""
    settings = make_settings(**FAST, smtp_url=smtp_server.smtp_url, webhook_dispatcher="off")
    async with running(settings) as app:
        assert app.state.email_dispatcher is None  # no dispatcher runs in this process
        async with app.state.sessions() as session, session.begin():
            for number in (1, 2, 3):
                message_id = f"<once.{number}@bookable.test>"
                session.add(
                    OutboundEmail(
                        booking_id=1,
                        kind="host.confirmed",
                        recipient=f"host{number}@example.com",
                        message_id=message_id,
                        subject="s",
                        message=rfc5322(message_id, f"host{number}@example.com"),
                    )
                )
        dispatcher = EmailDispatcher(app.state.sessions, settings)
        try:
            assert await dispatcher.run_once() == 3
            assert await dispatcher.run_once() == 0
        finally:
            await dispatcher.aclose()
        async with app.state.sessions() as session:
            rows = list(await session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))
    assert [r.status for r in rows] == [EmailStatus.SENT] * 3
    received = await smtp_server.wait_for(3)
    assert sorted(mail.recipients for mail in received) == [
        ("host1@example.com",),
        ("host2@example.com",),
        ("host3@example.com",),
    ]


async def test_the_first_attempt_renders_the_facts_and_a_retry_sends_those_bytes(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """A booking's row holds the facts of its message; the first attempt renders and stores
    the message even though it fails, and the retry sends the stored bytes, not a new
    rendering (here the facts changed in between: the retry still tells the first title)."""
    smtp_server.stop()
    async with running(make_settings(**FAST, smtp_url=smtp_server.smtp_url)) as app:
        email = await add_facts_email(app, "bk1.attendee.confirmed.c0ffee.0@bookable.test")
        failed = await until(app, email, lambda r: r.attempts >= 1)
        assert failed.status == EmailStatus.PENDING and failed.message is not None
        async with app.state.sessions() as session, session.begin():
            await session.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id == email)
                .values(facts=facts_of("Renamed later"))
            )
        smtp_server.start()
        sent = await until(app, email, lambda r: r.status == EmailStatus.SENT)
    [received] = await smtp_server.wait_for(1)
    assert sent.message == failed.message
    assert received.raw.replace(b"\r\n", b"\n") == failed.message.encode().replace(b"\r\n", b"\n")
    assert "Intro call" in str(received.message["Subject"])
    assert (
        failed.message
        == render_stored(facts_of("Intro call"), failed.kind, failed.message_id).message
    )


async def test_a_message_rendered_again_after_a_stop_is_the_same_message(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """The server took the message but its answer never came: nothing was recorded, so the
    next process renders the facts again, and sends the very same bytes."""
    smtp_server.hold()
    settings = make_settings(**FAST, smtp_url=smtp_server.smtp_url)
    async with running(settings) as app:
        email = await add_facts_email(app, "bk1.attendee.confirmed.c0ffee.1@bookable.test")
        await smtp_server.wait_for(1)
    unanswered = await row(app, email)
    assert unanswered.message is None and unanswered.attempts == 0
    smtp_server.release()
    async with running(settings) as again:
        sent = await until(again, email, lambda r: r.status == EmailStatus.SENT)
    first, second = await smtp_server.wait_for(2)
    assert first.raw == second.raw
    # Sent at its (second) first attempt: the row keeps its facts, not the message.
    assert sent.message is None and sent.attempts == 1
    again_rendered = render_stored(sent.facts, sent.kind, sent.message_id).message
    assert second.raw.replace(b"\r\n", b"\n") == again_rendered.encode().replace(b"\r\n", b"\n")


async def test_the_dispatcher_keeps_its_connection_and_closes_it_at_stop(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    async with running(make_settings(**FAST, smtp_url=smtp_server.smtp_url)) as app:
        one_by_one = []
        for number in range(1, 4):
            one_by_one.append(await add_email(app, f"p{number}@example.com", number))
            await until(app, one_by_one[-1], lambda r: r.status == EmailStatus.SENT)
        assert smtp_server.connections == 1  # one connection for the three
        smtp_server.drop_connections()  # as a server's idle timeout would
        smtp_server.refuse_next(1, 550, stage="rcpt")
        refused = await add_email(app, "nobody@example.com", 4)
        failed = await until(app, refused, lambda r: r.status == EmailStatus.FAILED)
        after = await add_email(app, "p5@example.com", 5)
        await until(app, after, lambda r: r.status == EmailStatus.SENT)
        assert smtp_server.connections == 2 and smtp_server.open_connections == 1
    deadline = time.monotonic() + 5  # the server's thread sees the close a moment later
    while smtp_server.open_connections:  # closed with the dispatcher
        assert time.monotonic() < deadline, "a connection stayed open after the stop"
        await asyncio.sleep(0.01)
    assert failed.attempts == 1 and failed.last_error is not None and "550" in failed.last_error
    assert sorted(mail.recipients for mail in smtp_server.messages) == [
        (f"p{number}@example.com",) for number in (1, 2, 3, 5)
    ]


@asynccontextmanager
async def gathering(settings: Settings) -> AsyncIterator[FastAPI]:
    """A running app whose start-up claims (and PostgreSQL's LISTEN) are over: the next row
    committed comes after a quiet spell."""
    async with running(settings) as app:
        await asyncio.sleep(0.5)
        yield app


async def test_wakes_soon_after_a_claim_are_gathered_into_one_claim(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """Under load one claim takes the rows of many commits (`core.dispatch`, gathering): the
    first email after a quiet spell goes at once; emails committed soon after that claim wait
    until ``gather`` has passed since it, then go together. Load only delays, so the bounds
    below hold on a slow machine: the first is sent before the gather ends (it did not wait),
    the others no sooner than a gather after the first commit (the claim came after it)."""
    gather = 3.0
    slow_poll = {**FAST, "webhook_poll_interval": 60.0, "webhook_gather_seconds": gather}
    async with gathering(make_settings(**slow_poll, smtp_url=smtp_server.smtp_url)) as app:
        committed = time.monotonic()
        await add_email(app, "p1@example.com", 1)
        await smtp_server.wait_for(1)
        first_sent = time.monotonic() - committed
        await add_email(app, "p2@example.com", 2)
        await add_email(app, "p3@example.com", 3)
        await smtp_server.wait_for(3)
        others_sent = time.monotonic() - committed
    assert first_sent < gather
    assert others_sent >= gather
    # The two gathered go out concurrently: in either order.
    assert sorted(mail.recipients for mail in smtp_server.messages) == [
        (f"p{number}@example.com",) for number in (1, 2, 3)
    ]


async def test_a_backlog_is_not_held_back_by_gathering(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """More rows than the free slots: each claim that takes all it may is followed at once by
    the next when slots free up; waiting out a gather there would cap sending at
    ``concurrency`` emails per gather (2 per 5 s here: 15 s for six)."""
    gather = 5.0
    narrow = {**FAST, "webhook_gather_seconds": gather, "webhook_concurrency": 2}
    async with gathering(make_settings(**narrow, smtp_url=smtp_server.smtp_url)) as app:
        committed = time.monotonic()
        await add_emails(app, *(email_row(f"p{n}@example.com", n) for n in range(1, 7)))
        await smtp_server.wait_for(6)
        sent = time.monotonic() - committed
    assert sent < gather


async def test_a_sent_email_is_recorded_with_the_next_claim(
    make_settings: Callable[..., Settings], smtp_server: SmtpServer
) -> None:
    """No write transaction of its own for an outcome while nothing waits for a slot: the
    next commit's claim records it (or the next poll; here far away), and the stop does.
    Without gathering: a wake soon after a claim (on PostgreSQL the LISTEN's first one) would
    otherwise claim 0.1 s later, and record the sent email then."""
    slow_poll = {**FAST, "webhook_poll_interval": 60.0, "webhook_gather_seconds": 0}
    async with running(make_settings(**slow_poll, smtp_url=smtp_server.smtp_url)) as app:
        first = await add_email(app, "p1@example.com", 1)
        await smtp_server.wait_for(1)
        await asyncio.sleep(0.3)
        assert (await row(app, first)).status == EmailStatus.PENDING  # sent, not recorded yet
        second = await add_email(app, "p2@example.com", 2)
        recorded = await until(app, first, lambda r: r.status == EmailStatus.SENT)
        await smtp_server.wait_for(2)
    assert recorded.attempts == 1 and recorded.locked_until is None
    async with running(make_settings(**{**FAST, "emails": "off"})) as app:
        assert (await row(app, second)).status == EmailStatus.SENT  # recorded at the stop
    assert len(smtp_server.messages) == 2


async def test_successes_are_recorded_with_the_claim_and_never_claimed_again(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    """A batch of successes is recorded by the claim that follows it. On PostgreSQL that is one
    statement outside any transaction (the record a CTE of the claim). Rows whose lease ran
    out meanwhile are recorded SENT and not claimed again in the same statement (they would be
    due to it: the CTE and the claim see one snapshot). The message a first attempt rendered
    is not stored; a stored message stays as it was."""
    from sqlalchemy import event

    settings = make_settings(**{**FAST, "webhook_dispatcher": "off"})
    async with running(settings) as app:
        async with app.state.sessions() as session, session.begin():
            with_facts = OutboundEmail(
                booking_id=1,
                kind=MailKind.ATTENDEE_CONFIRMED.value,
                recipient=ANN.email,
                message_id="bk1.attendee.confirmed.c0ffee.9@bookable.test",
                subject="Confirmed: Intro call",
                facts=facts_of("Intro call"),
            )
            session.add_all([email_row("stored@example.com", 1), with_facts])
            await session.flush()
            facts_id = with_facts.id
        dispatcher = EmailDispatcher(app.state.sessions, settings)
        try:
            jobs = await dispatcher.exchange([], 10)
            assert len(jobs) == 2
            outcomes = [await dispatcher.deliver(job) for job in jobs]
            assert all(outcome.ok for outcome in outcomes)
            async with app.state.sessions() as session, session.begin():
                await session.execute(
                    update(OutboundEmail).values(locked_until=datetime(2000, 1, 1, tzinfo=UTC))
                )  # every lease ran out: the rows are due again
            isolation: list[str | None] = []

            def seen(conn: Any, *_args: Any) -> None:
                isolation.append(conn.get_execution_options().get("isolation_level"))

            engine = app.state.engine.sync_engine
            event.listen(engine, "before_cursor_execute", seen)
            try:
                claimed = await dispatcher.exchange(outcomes, 10)
            finally:
                event.remove(engine, "before_cursor_execute", seen)
            assert claimed == []
            if database_url.startswith("postgresql"):
                assert isolation == ["AUTOCOMMIT"]  # one statement, no BEGIN or COMMIT
            assert await dispatcher.exchange([], 10) == []
        finally:
            await dispatcher.aclose()
        async with app.state.sessions() as session:
            rows = list(await session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))
    for found in rows:
        assert found.status == EmailStatus.SENT and found.attempts == 1
        assert found.locked_until is None and found.last_error is None
        assert found.sent_at is not None
    assert next(found for found in rows if found.id == facts_id).message is None  # not stored
    stored = next(found for found in rows if found.id != facts_id)
    assert stored.message == rfc5322(stored.message_id, "stored@example.com")
    assert dispatcher.delivered == 2
