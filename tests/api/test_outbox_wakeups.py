"""A commit wakes only the dispatchers of the outboxes it wrote (core/dispatch.py).

Waking all three dispatchers after every outbox commit made a booking that only sends emails
also run a claim transaction in the webhook and the calendar dispatcher. These tests pin who is
woken: in this process (the after-commit hook) and in others (PostgreSQL's NOTIFY payload)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from bookable.core.dispatch import (
    NOTIFY_CHANNELS,
    SHARED_NOTIFY_CHANNEL,
    add_commit_listener,
    mark_written,
)
from bookable.models import User
from bookable.webhooks.dispatcher import Dispatcher, DispatcherConfig

pytestmark = pytest.mark.without_dispatchers


@asynccontextmanager
async def notifications(database_url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The outboxes named by NOTIFYs on the dispatchers' channels (each outbox's own, and the
    shared one of older versions), as another process gets them; on its own channel, an
    outbox's name (PostgreSQL; on SQLite nothing ever arrives)."""
    payloads: asyncio.Queue[str] = asyncio.Queue()
    if not database_url.startswith("postgresql"):
        yield payloads
        return

    def received(_connection: Any, _pid: int, channel: str, payload: str) -> None:
        outbox = {channel: name for name, channel in NOTIFY_CHANNELS.items()}.get(channel)
        assert payload == outbox, (channel, payload)  # the payload names it too
        payloads.put_nowait(outbox)

    listener = await asyncpg.connect(database_url)
    try:
        for channel in (*NOTIFY_CHANNELS.values(), SHARED_NOTIFY_CHANNEL):
            await listener.add_listener(channel, received)
        yield payloads
    finally:
        await listener.close()


async def assert_one_email_notify(database_url: str, payloads: asyncio.Queue[str]) -> None:
    """Other processes' email dispatchers were woken once (PostgreSQL), and nothing else."""
    if database_url.startswith("postgresql"):
        assert await asyncio.wait_for(payloads.get(), 5) == "email"
    await asyncio.sleep(0.1)
    assert payloads.empty()


async def book_once(application: FastAPI, host: Any) -> None:
    """One booking of ``host``'s new event type (09:00-17:00 UTC), through the API."""
    from tests.api.scheduling_seed import add_event_type, add_schedule
    from tests.api.test_bookings_create import at, modern, post
    from tests.conftest import client_for

    await add_schedule(application, host.id, "UTC")
    meet = await add_event_type(application, host.id)
    async with client_for(application) as http:
        r = await post(http, host, modern(meet, at(10)))
    assert r.status_code == 200, r.text


@pytest.fixture
def woken() -> Iterator[Counter[str]]:
    """Which outboxes' commit listeners were called, and how often."""
    calls: Counter[str] = Counter()
    removers = [
        add_commit_listener(name, lambda name=name: calls.update([name]))
        for name in ("webhook", "calendar", "email")
    ]
    yield calls
    for remove in removers:
        remove()


async def test_a_commit_wakes_the_dispatchers_of_the_outboxes_it_wrote(
    app: FastAPI, woken: Counter[str]
) -> None:
    async with app.state.sessions() as session, session.begin():
        await mark_written(session, "email")
        await mark_written(session, "email")  # once per transaction
    assert woken == {"email": 1}

    async with app.state.sessions() as session, session.begin():
        await mark_written(session, "webhook")
        await mark_written(session, "calendar")
    assert woken == {"email": 1, "webhook": 1, "calendar": 1}

    # A commit that wrote no outbox row, and a rolled-back one that did, wake nobody.
    async with app.state.sessions() as session, session.begin():
        session.add(User(email="nobody@example.com", username="nobody"))
    async with app.state.sessions() as session:
        async with session.begin():
            await mark_written(session, "email")
            await session.rollback()
        async with session.begin():  # the next transaction starts with nothing written
            pass
    assert woken == {"email": 1, "webhook": 1, "calendar": 1}


async def test_other_processes_learn_which_outbox_was_written(
    app: FastAPI, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's")
    async with notifications(database_url) as payloads:
        async with app.state.sessions() as session, session.begin():
            await mark_written(session, "email")
            await mark_written(session, "calendar")
        received = {await asyncio.wait_for(payloads.get(), 5) for _ in range(2)}
        assert received == {"email", "calendar"}
        await asyncio.sleep(0.1)
        assert payloads.empty()  # one NOTIFY per outbox, not per call


async def test_an_outbox_insert_carries_its_notify_sent_on_commit_only(
    app: FastAPI, database_url: str, woken: Counter[str]
) -> None:
    """`insert_written`: the rows and, the first time in a transaction, the wake-up (on
    PostgreSQL a NOTIFY within the INSERT's statement); delivered at the commit, once, and not
    at all after a rollback; ``wake=False`` wakes nobody."""
    from sqlalchemy import func, select

    from bookable.core.clock import utcnow
    from bookable.core.dispatch import insert_written
    from bookable.models import EmailStatus, OutboundEmail

    now = utcnow()

    def rows(tag: str) -> list[dict[str, Any]]:
        return [
            {"booking_id": 1, "user_id": None, "kind": "attendee.confirmed", "recipient": "a@x.org",
             "message_id": f"{tag}.{n}@test", "subject": "s", "facts": {}, "message": None,
             "status": EmailStatus.PENDING, "attempts": 0, "next_attempt_at": now,
             "last_error": None, "created_at": now}
            for n in range(2)
        ]  # fmt: skip

    table = OutboundEmail.__table__
    async with notifications(database_url) as payloads:
        async with app.state.sessions() as session:
            async with session.begin():
                await insert_written(session, "email", table, rows("a"), wake=True)
                await insert_written(session, "email", table, rows("b"), wake=True)
                await asyncio.sleep(0.1)
                assert payloads.empty()  # not before the commit
            async with session.begin():
                await insert_written(session, "email", table, rows("c"), wake=True)
                await session.rollback()
            async with session.begin():
                await insert_written(session, "email", table, rows("d"), wake=False)
            count = await session.scalar(select(func.count(OutboundEmail.id)))
        assert count == 6  # a, b and d
        assert woken == {"email": 1}
        await assert_one_email_notify(database_url, payloads)


async def test_a_dispatcher_wakes_for_its_own_outbox_or_an_unnamed_notify(app: FastAPI) -> None:
    """On the shared channel of older versions, which names the outbox in the payload."""
    dispatcher: Any = Dispatcher(app.state.sessions, DispatcherConfig())
    for payload, wakes in (("calendar", False), ("email", False), ("webhook", True), ("", True)):
        dispatcher._wakeup.clear()
        dispatcher._notified(None, 0, SHARED_NOTIFY_CHANNEL, payload)
        assert dispatcher._wakeup.is_set() is wakes, payload


async def test_a_notify_wakes_the_dispatchers_of_its_outbox_only(
    app: FastAPI, make_settings: Any, database_url: str
) -> None:
    """Across connections, for real: the dispatchers of a worker (all three outboxes, each
    LISTENing on its own connection) and a NOTIFY sent by another connection, as a commit in
    another process sends it. Each outbox's channel wakes its own dispatcher and no other; the
    shared channel of older versions (a writer not yet upgraded) wakes the one its payload
    names, or all for an empty one."""
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's")
    from bookable.core.encryption import Encryptor
    from bookable.workers import outbox_dispatchers

    # Polling once a minute: within the test only a NOTIFY starts a claim.
    settings = make_settings(emails="on", webhook_poll_interval=60.0)
    encryptor = Encryptor.from_settings(settings)
    dispatchers = outbox_dispatchers(app.state.sessions, settings, encryptor)
    claims: Counter[str] = Counter()  # the dispatchers' claim transactions, each a wake-up

    def counted(dispatcher: Any) -> None:
        exchange = dispatcher.exchange

        async def counting(outcomes: list[Any], limit: int) -> list[Any]:
            claims.update([dispatcher.name])
            return await exchange(outcomes, limit)

        dispatcher.exchange = counting

    async def settled() -> Counter[str]:
        before = None
        while before != claims:  # no claim for 0.3 s: every dispatcher waits
            before = Counter(claims)
            await asyncio.sleep(0.3)
        return before

    for dispatcher in dispatchers:
        counted(dispatcher)
        await dispatcher.start()
    sender = await asyncpg.connect(database_url)
    try:
        assert set(await settled()) == {"webhook", "calendar", "email"}  # the first look

        async def woken_by(channel: str, payload: str) -> set[str]:
            before = await settled()
            await sender.execute("SELECT pg_notify($1, $2)", channel, payload)
            deadline = asyncio.get_running_loop().time() + 5
            while claims == before:
                assert asyncio.get_running_loop().time() < deadline, "nobody woke"
                await asyncio.sleep(0.01)
            return set(await settled() - before)

        for outbox, channel in NOTIFY_CHANNELS.items():
            assert await woken_by(channel, outbox) == {outbox}, channel
        for outbox in NOTIFY_CHANNELS:
            assert await woken_by(SHARED_NOTIFY_CHANNEL, outbox) == {outbox}, outbox
        assert await woken_by(SHARED_NOTIFY_CHANNEL, "") == {"webhook", "calendar", "email"}
    finally:
        await sender.close()
        for dispatcher in dispatchers:
            await dispatcher.stop()


async def test_a_wake_up_in_the_loops_thread_is_set_at_once_and_from_another_thread_soon(
    app: FastAPI,
) -> None:
    """`wake` from the commit hook, in the loop's own thread, sets the event there and then
    (not through the loop's self-pipe); from another thread it goes through the loop."""
    dispatcher: Any = Dispatcher(app.state.sessions, DispatcherConfig())
    dispatcher._loop = asyncio.get_running_loop()
    dispatcher.wake()
    assert dispatcher._wakeup.is_set()

    dispatcher._wakeup.clear()
    await asyncio.to_thread(dispatcher.wake)
    await asyncio.wait_for(dispatcher._wakeup.wait(), 5)


async def test_a_booking_wakes_the_email_dispatchers_once_on_its_commit(
    make_settings: Any, database_url: str, alice: Any, woken: Counter[str]
) -> None:
    """A new booking's emails ride on its INSERT statement on PostgreSQL, with their NOTIFY
    (`bookings.writes._insert_values`): the email dispatchers of this process and of others are
    woken once, at the commit, and no other outbox's (nobody subscribed to anything else)."""
    from bookable.app import create_app
    from tests.api.test_bookings_create import NOW

    application = create_app(make_settings(clock=NOW, emails="on", webhook_dispatcher="off"))
    async with notifications(database_url) as payloads:
        async with application.router.lifespan_context(application):
            await book_once(application, alice)
        assert woken == {"email": 1}
        await assert_one_email_notify(database_url, payloads)


async def test_no_notify_while_a_dispatcher_of_the_outbox_runs_here(
    app: FastAPI, database_url: str
) -> None:
    """`core.dispatch.dispatched_here`: a commit wakes this process's running dispatcher of an
    outbox and sends no NOTIFY for it (PostgreSQL holds a cluster-wide lock through a notifying
    commit's WAL flush); an outbox without one here, or whose dispatcher has stopped, is still
    NOTIFYed to the other processes."""
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's")
    from bookable.core.clock import utcnow
    from bookable.core.dispatch import insert_written
    from bookable.models import EmailStatus, OutboundEmail

    running = True
    woken: Counter[str] = Counter()
    remove = add_commit_listener(
        "email", lambda: woken.update(["email"]), dispatcher_running=lambda: running
    )
    now = utcnow()
    row = {"booking_id": 1, "user_id": None, "kind": "attendee.confirmed", "recipient": "a@x.org",
           "message_id": "here.1@test", "subject": "s", "facts": {}, "message": None,
           "status": EmailStatus.PENDING, "attempts": 0, "next_attempt_at": now,
           "last_error": None, "created_at": now}  # fmt: skip
    try:
        async with notifications(database_url) as payloads:
            async with app.state.sessions() as session, session.begin():
                await mark_written(session, "email")
                await mark_written(session, "calendar")  # no dispatcher of it here
            assert await asyncio.wait_for(payloads.get(), 5) == "calendar"
            async with app.state.sessions() as session, session.begin():
                await insert_written(session, "email", OutboundEmail.__table__, [row], wake=True)
            await asyncio.sleep(0.2)
            assert payloads.empty()
            assert woken == {"email": 2}

            running = False  # stopped (or serve's child restarting): the NOTIFY again
            async with app.state.sessions() as session, session.begin():
                await mark_written(session, "email")
            assert await asyncio.wait_for(payloads.get(), 5) == "email"
            assert woken == {"email": 3}
    finally:
        remove()


async def test_a_booking_with_a_dispatcher_here_sends_its_emails_without_a_notify(
    make_settings: Any, database_url: str, alice: Any, tmp_path: Any
) -> None:
    """`serve` with its dispatchers inline (or in its running child): the booking's commit
    wakes them directly, they send its two emails, and no other process is NOTIFYed."""
    from bookable.app import create_app
    from tests.api.test_bookings_create import NOW

    mail = tmp_path / "sent"
    settings = make_settings(clock=NOW, emails="on", webhook_dispatcher="inline", email_dir=mail)
    application = create_app(settings)
    async with notifications(database_url) as payloads:
        async with application.router.lifespan_context(application):
            await book_once(application, alice)
            for _ in range(500):
                if mail.exists() and len(list(mail.glob("*.eml"))) == 2:
                    break
                await asyncio.sleep(0.01)
            assert len(list(mail.glob("*.eml"))) == 2  # the attendee's and the host's
        await asyncio.sleep(0.2)
        assert payloads.empty()
