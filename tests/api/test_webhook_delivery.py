"""Webhook delivery end to end, on SQLite and PostgreSQL: bookings made through the API, the
in-process dispatcher, and a real HTTP receiver in this process.

Settings make retries and polling fast (tens of milliseconds); the server's clock is frozen at a
Monday noon (the dispatcher's own clock runs on from there, so retries come due).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select, text

from bookable.app import create_app
from bookable.core.clock import clock
from bookable.core.db import create_engine
from bookable.core.dispatch import notify_channel
from bookable.models import (
    Attendee,
    Booking,
    BookingStatus,
    Payment,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)
from bookable.webhooks.dispatcher import Dispatcher, DispatcherConfig
from bookable.webhooks.payloads import FACTS_BATCH, js_json, load_facts, meeting_body
from bookable.webhooks.triggers import WebhookTrigger
from tests.conftest import Account, client_for
from tests.statements import recorded_statements
from tests.webhook_receiver import Receiver, receiving

from .scheduling_seed import add_event_type, add_schedule

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
TUESDAY_10 = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)
FAST = {
    "webhook_poll_interval": 0.05,
    "webhook_retry_delays": "0.05",
    "webhook_retry_jitter": 0.0,
    # Generous: a loaded test machine must not turn a slow answer into a retry.
    "webhook_timeout": 10.0,
    "webhook_lease_seconds": 30.0,
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def at(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
async def app(make_settings: Any) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(clock=NOW, **FAST))
    async with application.router.lifespan_context(application):
        yield application
    clock.freeze(None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture
async def meet(app: FastAPI, alice: Account) -> int:
    """Alice's 30-minute event type; she works 09:00-17:00 UTC on weekdays."""
    await add_schedule(app, alice.id, "UTC")
    return await add_event_type(app, alice.id, "meet", description="A short chat")


async def hook(
    client: httpx.AsyncClient, account: Account, url: str, triggers: list[str], **fields: Any
) -> dict[str, Any]:
    body = {"subscriberUrl": url, "eventTriggers": triggers, "active": True, **fields}
    response = await client.post("/v1/webhooks", params=account.params, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json()["webhook"])


async def book(
    client: httpx.AsyncClient,
    account: Account,
    event_type_id: int,
    start: datetime = TUESDAY_10,
    *,
    name: str = "Ann Lee",
    email: str = "ann@example.com",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "eventTypeId": event_type_id,
        "start": at(start),
        "timeZone": "Europe/Paris",
        "language": "fr",
        "metadata": {},
        "responses": {"name": name, "email": email},
        **extra,
    }
    response = await client.post("/v1/bookings", params=account.params, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def events(app: FastAPI) -> list[WebhookEvent]:
    async with app.state.sessions() as session:
        return list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


async def attempts(app: FastAPI, event_id: int) -> list[WebhookDelivery]:
    async with app.state.sessions() as session:
        return list(
            await session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.event_id == event_id)
                .order_by(WebhookDelivery.attempt)
            )
        )


async def settled(app: FastAPI, *, count: int, within: float = 10.0) -> list[WebhookEvent]:
    """Wait until ``count`` events exist and none is PENDING any more."""
    deadline = time.monotonic() + within
    rows: list[WebhookEvent] = []
    while time.monotonic() < deadline:
        rows = await events(app)
        if len(rows) >= count and all(r.status != WebhookEventStatus.PENDING for r in rows):
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"events did not settle: {[(r.trigger, r.status) for r in rows]}")


def signed(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- payloads and headers -------------------------------------------------------------------------


async def test_booking_created_is_delivered_signed_and_cal_com_shaped(
    app, client, alice, meet, receiver
):
    await hook(client, alice, receiver.url + "/in", ["BOOKING_CREATED"], secret="s3cret")
    created = await book(client, alice, meet)

    (got,) = await receiver.wait_for(1)
    assert got.path == "/in"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-cal-webhook-version"] == "2021-10-20"
    assert got.headers["x-cal-signature-256"] == signed("s3cret", got.body)
    # Compact, as JSON.stringify writes it: the signature is over these exact bytes.
    assert got.body.decode() == js_json(got.json())

    body = got.json()
    assert list(body) == ["triggerEvent", "createdAt", "payload"]
    assert body["triggerEvent"] == "BOOKING_CREATED"
    assert ISO_MS.match(body["createdAt"])
    payload = body["payload"]
    assert payload["uid"] == created["uid"]
    assert payload["bookingId"] == created["id"]
    assert payload["eventTypeId"] == meet
    assert payload["type"] == "meet"
    assert payload["title"] == created["title"]
    assert payload["status"] == "ACCEPTED"
    assert payload["startTime"] == "2026-01-06T10:00:00Z"
    assert payload["endTime"] == "2026-01-06T10:30:00Z"
    assert payload["length"] == 30
    assert payload["eventTitle"] == "Meet"
    assert payload["eventDescription"] == "A short chat"
    assert payload["description"] == "A short chat"
    assert payload["price"] == 0 and payload["currency"] == "usd"
    assert payload["metadata"] == {}
    assert payload["organizer"]["email"] == alice.email
    assert payload["organizer"]["id"] == alice.id
    assert payload["organizer"]["language"] == {"locale": "en"}
    assert payload["attendees"] == [
        {
            "email": "ann@example.com",
            "name": "Ann Lee",
            "firstName": "Ann",
            "lastName": "Lee",
            "timeZone": "Europe/Paris",
            "language": {"locale": "fr"},
            "utcOffset": 60,  # Paris in January
        }
    ]
    assert payload["responses"]["name"] == {"label": "your_name", "value": "Ann Lee"}
    assert payload["responses"]["email"] == {"label": "email_address", "value": "ann@example.com"}
    assert payload["userFieldsResponses"] == {}

    (event,) = await settled(app, count=1)
    assert event.status == WebhookEventStatus.DELIVERED
    assert event.attempts == 1 and event.delivered_at is not None
    (attempt,) = await attempts(app, event.id)
    assert attempt.ok and attempt.status_code == 200 and attempt.error is None
    assert attempt.response_excerpt == '{"received":true}'
    assert attempt.duration_ms >= 0


async def test_without_a_secret_the_signature_header_says_so(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"])
    await book(client, alice, meet)
    (got,) = await receiver.wait_for(1)
    assert got.headers["x-cal-signature-256"] == "no-secret-provided"


async def test_utc_offsets_follow_each_zone_at_the_booking_start(
    app, client, alice, meet, receiver
):
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"])
    summer = datetime(2026, 7, 7, 10, 0, tzinfo=UTC)  # a Tuesday; Paris is on summer time
    await book(client, alice, meet, summer, timeZone="Asia/Kolkata")
    (got,) = await receiver.wait_for(1)
    (attendee,) = got.json()["payload"]["attendees"]
    assert attendee["timeZone"] == "Asia/Kolkata" and attendee["utcOffset"] == 330


async def test_requested_then_rejected_or_accepted(app, client, alice, receiver):
    await add_schedule(app, alice.id, "UTC")
    gated = await add_event_type(app, alice.id, "gated", requires_confirmation=True)
    await hook(
        client,
        alice,
        receiver.url,
        ["BOOKING_REQUESTED", "BOOKING_REJECTED", "BOOKING_CREATED"],
    )
    first = await book(client, alice, gated)
    second = await book(client, alice, gated, TUESDAY_10 + timedelta(hours=2), email="b@x.io")
    got = await receiver.wait_for(2)
    assert [r.trigger for r in got] == ["BOOKING_REQUESTED", "BOOKING_REQUESTED"]
    assert {r.json()["payload"]["status"] for r in got} == {"PENDING"}
    assert got[0].json()["payload"]["requiresConfirmation"] is True

    r = await client.post(
        f"/v1/bookings/{first['id']}/confirm",
        params=alice.params,
        json={"confirmed": False, "rejectionReason": "Fully booked"},
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/bookings/{second['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert r.status_code == 200, r.text
    got = await receiver.wait_for(4)
    by_trigger = {r.trigger: r.json()["payload"] for r in got[2:]}
    rejected = by_trigger["BOOKING_REJECTED"]
    assert rejected["uid"] == first["uid"]
    assert rejected["status"] == "REJECTED"
    assert rejected["rejectionReason"] == "Fully booked"
    accepted = by_trigger["BOOKING_CREATED"]
    assert accepted["uid"] == second["uid"] and accepted["status"] == "ACCEPTED"


async def test_cancel_sends_reason_and_who(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["BOOKING_CANCELLED"])
    created = await book(client, alice, meet)
    r = await client.delete(
        f"/v1/bookings/{created['id']}/cancel",
        params={**alice.params, "cancellationReason": "Sick", "cancelledBy": "ops@example.com"},
    )
    assert r.status_code == 200, r.text
    (got,) = await receiver.wait_for(1)
    payload = got.json()["payload"]
    assert got.trigger == "BOOKING_CANCELLED"
    assert payload["uid"] == created["uid"]
    assert payload["status"] == "CANCELLED"
    assert payload["cancellationReason"] == "Sick"
    assert payload["cancelledBy"] == "ops@example.com"
    assert payload["requestReschedule"] is False
    assert "metadata" not in payload


async def test_reschedule_and_time_patch_send_rescheduled(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["BOOKING_RESCHEDULED", "BOOKING_CANCELLED"])
    old = await book(client, alice, meet)
    moved_to = TUESDAY_10 + timedelta(hours=3)
    new = await book(client, alice, meet, moved_to, rescheduleUid=old["uid"])
    (got,) = await receiver.wait_for(1)
    payload = got.json()["payload"]
    assert got.trigger == "BOOKING_RESCHEDULED"
    assert payload["uid"] == new["uid"] and payload["bookingId"] == new["id"]
    assert payload["rescheduleUid"] == old["uid"] and payload["rescheduleId"] == old["id"]
    assert payload["rescheduleStartTime"] == "2026-01-06T10:00:00Z"
    assert payload["rescheduleEndTime"] == "2026-01-06T10:30:00Z"
    assert payload["startTime"] == "2026-01-06T13:00:00Z"
    assert payload["rescheduledBy"] == alice.email
    assert payload["status"] == "ACCEPTED"

    later = moved_to + timedelta(hours=1)
    r = await client.patch(
        f"/v1/bookings/{new['id']}",
        params=alice.params,
        json={"startTime": at(later), "endTime": at(later + timedelta(minutes=30))},
    )
    assert r.status_code == 200, r.text
    got = await receiver.wait_for(2)
    payload = got[1].json()["payload"]
    assert got[1].trigger == "BOOKING_RESCHEDULED"
    assert payload["bookingId"] == new["id"] and payload["rescheduleId"] == new["id"]
    assert payload["rescheduleStartTime"] == "2026-01-06T13:00:00Z"
    assert payload["startTime"] == "2026-01-06T14:00:00Z"
    # Rescheduling cancels the old booking, but Cal.com sends no BOOKING_CANCELLED for it.
    assert [r.trigger for r in receiver.all()] == ["BOOKING_RESCHEDULED"] * 2


async def test_no_show_payload_is_only_what_changed(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["BOOKING_NO_SHOW_UPDATED"])
    created = await book(client, alice, meet)
    r = await client.post(
        "/v1/no-show",
        params=alice.params,
        json={
            "bookingUid": created["uid"],
            "attendees": [{"email": "ann@example.com", "noShow": True}],
        },
    )
    assert r.status_code == 200, r.text
    (got,) = await receiver.wait_for(1)
    assert got.json() == {
        "triggerEvent": "BOOKING_NO_SHOW_UPDATED",
        "createdAt": got.json()["createdAt"],
        "payload": {
            "bookingUid": created["uid"],
            "bookingId": created["id"],
            "attendees": [{"email": "ann@example.com", "noShow": True}],
            "message": "ann@example.com marked as no-show",
        },
    }


# --- payload templates ----------------------------------------------------------------------------


async def test_json_template_with_array_index_paths(app, client, alice, meet, receiver):
    template = (
        '{"content": "New booking", "type": "{{type}}", "name": "{{title}}", '
        '"organizer": "{{organizer.name}}", "booker": "{{attendees.0.name}}", '
        '"event": "{{triggerEvent}}", "unknown": "{{email}}", "zone": "{{attendees.0.timeZone}}"}'
    )
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"], payloadTemplate=template,
               secret="k")  # fmt: skip
    created = await book(client, alice, meet, name="Zoë <O'Neil>")
    (got,) = await receiver.wait_for(1)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-cal-signature-256"] == signed("k", got.body)
    assert got.body.decode() == js_json(got.json())  # re-serialised compactly
    assert got.json() == {
        "content": "New booking",
        "type": "meet",
        "name": created["title"].replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;"),
        "organizer": "alice",
        # Handlebars escapes HTML; Cal.com turns only &quot; back.
        "booker": "Zoë &lt;O&#x27;Neil&gt;",
        "event": "BOOKING_CREATED",
        "unknown": "",
        "zone": "Europe/Paris",
    }


async def test_template_that_is_not_json_is_sent_as_a_form(app, client, alice, meet, receiver):
    template = "booker={{attendees.0.name}}&when={{startTime}}&uid={{uid}}"
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"], payloadTemplate=template)
    created = await book(client, alice, meet, name="Ann & Co")
    (got,) = await receiver.wait_for(1)
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert got.body.decode() == (
        f"booker=Ann &amp; Co&when=2026-01-06T10:00:00Z&uid={created['uid']}"
    )


async def test_a_broken_template_fails_the_event_not_the_booking(
    app, client, alice, meet, receiver
):
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"], payloadTemplate="{{#if x}}")
    await book(client, alice, meet)
    (event,) = await settled(app, count=1)
    assert event.status == WebhookEventStatus.FAILED
    (attempt,) = await attempts(app, event.id)
    assert not attempt.ok and "payloadTemplate does not compile" in (attempt.error or "")
    assert receiver.all() == []


# --- retries --------------------------------------------------------------------------------------


async def test_500s_are_retried_until_a_2xx(app, client, alice, meet, receiver):
    receiver.script["/flaky"] = [500, 503]
    await hook(client, alice, receiver.url + "/flaky", ["BOOKING_CREATED"])
    await book(client, alice, meet)
    (event,) = await settled(app, count=1)
    got = receiver.all()
    assert [r.status for r in got] == [500, 503, 200]
    assert got[0].body == got[2].body  # the same event, the same bytes
    assert event.status == WebhookEventStatus.DELIVERED and event.attempts == 3
    tries = await attempts(app, event.id)
    assert [(t.attempt, t.status_code, t.ok) for t in tries] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


async def test_a_timeout_is_a_failed_attempt_then_retried(make_settings, receiver):
    settings = make_settings(clock=NOW, **{**FAST, "webhook_timeout": 0.5})
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as c:
        alice = await _account(application)
        await add_schedule(application, alice.id, "UTC")
        meet = await add_event_type(application, alice.id, "meet")
        receiver.hold = threading.Event()  # requests hang past the timeout until released
        await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        await book(c, alice, meet)
        await receiver.wait_for(1, ok_only=False)
        (event,) = await events(application)
        for _ in range(500):
            if tries := await attempts(application, event.id):
                break
            await asyncio.sleep(0.02)
        first = tries[0]
        assert not first.ok and first.status_code is None
        assert first.error == "timed out after 0.5 s"
        receiver.hold.set()
        receiver.hold = None
        (event,) = await settled(application, count=1)
        assert event.status == WebhookEventStatus.DELIVERED and event.attempts >= 2
    clock.freeze(None)


async def test_after_the_last_attempt_the_event_failed(make_settings, receiver):
    application = create_app(make_settings(clock=NOW, **FAST, webhook_max_attempts=2))
    async with application.router.lifespan_context(application), client_for(application) as c:
        alice = await _account(application)
        await add_schedule(application, alice.id, "UTC")
        meet = await add_event_type(application, alice.id, "meet")
        receiver.default = 500
        await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        await book(c, alice, meet)
        (event,) = await settled(application, count=1)
        assert event.status == WebhookEventStatus.FAILED and event.attempts == 2
        assert [t.status_code for t in await attempts(application, event.id)] == [500, 500]
        assert len(receiver.all()) == 2
    clock.freeze(None)


async def _account(application: FastAPI, username: str = "alice") -> Account:
    from bookable.api_keys.service import issue_key
    from bookable.models import User

    async with application.state.sessions() as session, session.begin():
        user = User(email=f"{username}@example.com", username=username)
        session.add(user)
        await session.flush()
        key, clear = await issue_key(session, user_id=user.id, prefix="cal_")
        return Account(user.id, user.email, username, clear, key.id)


async def test_redirects_are_not_followed(app, client, alice, meet, receiver):
    receiver.script["/moved"] = [302]
    await hook(client, alice, receiver.url + "/moved", ["BOOKING_CREATED"])
    await book(client, alice, meet)
    got = await receiver.wait_for(2, ok_only=False)
    assert [r.path for r in got] == ["/moved", "/moved"]  # retried at the same URL
    (event,) = await settled(app, count=1)
    first, second = await attempts(app, event.id)
    assert first.status_code == 302 and not first.ok
    assert first.error == "redirects are not followed (Location: http://127.0.0.1:9/elsewhere)"
    assert second.ok


# --- who receives what ----------------------------------------------------------------------------


async def test_only_subscribed_active_hooks_of_the_organizer_or_event_type(
    app, client, alice, bob, meet, receiver
):
    other_type = await add_event_type(app, alice.id, "other")
    await hook(client, alice, receiver.url + "/alice", ["BOOKING_CREATED"])
    await hook(client, alice, receiver.url + "/type", ["BOOKING_CREATED"], eventTypeId=meet)
    await hook(client, alice, receiver.url + "/other-type", ["BOOKING_CREATED"],
               eventTypeId=other_type)  # fmt: skip
    await hook(client, alice, receiver.url + "/cancel-only", ["BOOKING_CANCELLED"])
    await hook(client, alice, receiver.url + "/inactive", ["BOOKING_CREATED"], active=False)
    await hook(client, bob, receiver.url + "/bob", ["BOOKING_CREATED"])
    await book(client, alice, meet)
    await receiver.wait_for(2)
    await settled(app, count=2)
    assert sorted(r.path for r in receiver.all()) == ["/alice", "/type"]


async def test_a_hook_deactivated_before_delivery_is_dropped(make_settings, receiver):
    application = create_app(make_settings(clock=NOW, **FAST, webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as c:
        assert application.state.webhook_dispatcher is None
        alice = await _account(application)
        await add_schedule(application, alice.id, "UTC")
        meet = await add_event_type(application, alice.id, "meet")
        created = await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        await book(c, alice, meet)
        (pending,) = await events(application)
        assert pending.status == WebhookEventStatus.PENDING
        r = await c.patch(
            f"/v1/webhooks/{created['id']}", params=alice.params, json={"active": False}
        )
        assert r.status_code == 200, r.text
        dispatcher = Dispatcher(application.state.sessions, DispatcherConfig(timeout=0.5))
        try:
            assert await dispatcher.run_once() == 1
        finally:
            await dispatcher.aclose()
        (dropped,) = await events(application)
        assert dropped.status == WebhookEventStatus.DROPPED
        assert await attempts(application, dropped.id) == []
        assert receiver.all() == []
    clock.freeze(None)


async def test_a_claim_never_takes_more_rows_than_asked(make_settings, receiver):
    """On PostgreSQL the claim's ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` may be
    run again for every candidate row (a nested loop, as planned for small tables), each run
    finding more: a dispatcher would take more rows than its free slots, past its concurrency
    and lease (seen in tests/system/test_calendar_writes.py: 13 rows claimed for 4 slots)."""
    application = create_app(make_settings(clock=NOW, **FAST, webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as c:
        alice = await _account(application)
        made = await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        async with application.state.sessions() as session, session.begin():
            due = NOW - timedelta(minutes=1)
            session.add_all(
                WebhookEvent(
                    webhook_id=made["id"],
                    trigger="BOOKING_CREATED",
                    body="{}",
                    status=WebhookEventStatus.PENDING,
                    next_attempt_at=due,
                    created_at=due,
                )
                for _ in range(10)
            )
        dispatcher = Dispatcher(application.state.sessions, DispatcherConfig(timeout=0.5))
        try:
            claims = [await dispatcher.exchange([], 4) for _ in range(4)]
        finally:
            await dispatcher.aclose()
        assert [len(jobs) for jobs in claims] == [4, 4, 2, 0]
        assert len({job.event_id for jobs in claims for job in jobs}) == 10
    clock.freeze(None)


async def test_a_refused_target_is_a_failed_attempt_without_a_request(make_settings, receiver):
    application = create_app(make_settings(clock=NOW, **FAST, webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as c:
        alice = await _account(application)
        await add_schedule(application, alice.id, "UTC")
        meet = await add_event_type(application, alice.id, "meet")
        await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        await book(c, alice, meet)
        strict = DispatcherConfig(timeout=0.5, allow_private_targets=False)
        dispatcher = Dispatcher(application.state.sessions, strict)
        try:
            assert await dispatcher.run_once() == 1
        finally:
            await dispatcher.aclose()
        (event,) = await events(application)
        assert event.status == WebhookEventStatus.PENDING and event.attempts == 1
        (attempt,) = await attempts(application, event.id)
        assert not attempt.ok and attempt.status_code is None
        assert (attempt.error or "").startswith("delivery refused: private, loopback")
        assert receiver.all() == []
    clock.freeze(None)


async def test_a_named_target_is_reached_at_its_checked_address(app, client, alice, meet, receiver):
    # "localhost" is resolved by the delivering client itself, checked, and connected to;
    # the request still names the host it was sent to.
    named = receiver.url.replace("127.0.0.1", "localhost")
    await hook(client, alice, named + "/named", ["BOOKING_CREATED"])
    await book(client, alice, meet)
    (got,) = await receiver.wait_for(1)
    assert got.path == "/named"
    assert got.headers["host"] == named.removeprefix("http://")


async def test_a_refused_booking_writes_no_event(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["BOOKING_CREATED"])
    await book(client, alice, meet)
    again = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": meet,
            "start": at(TUESDAY_10),
            "timeZone": "UTC",
            "language": "en",
            "metadata": {},
            "responses": {"name": "Bo", "email": "bo@example.com"},
        },
    )
    assert again.status_code == 409, again.text
    await receiver.wait_for(1)
    assert len(await settled(app, count=1)) == 1


async def test_a_hanging_receiver_never_blocks_a_request(app, client, alice, meet, receiver):
    receiver.hold = threading.Event()
    await hook(client, alice, receiver.url, ["BOOKING_CREATED", "BOOKING_CANCELLED"])
    created = await book(client, alice, meet)
    await receiver.wait_for(1, ok_only=False)  # the delivery is in flight, held
    r = await client.delete(f"/v1/bookings/{created['id']}", params=alice.params)
    assert r.status_code == 200, r.text
    assert receiver.answered() == []  # the request finished while the delivery still hangs
    receiver.hold.set()
    receiver.hold = None
    await settled(app, count=2)


# --- MEETING_STARTED / MEETING_ENDED --------------------------------------------------------------


async def test_giving_up_a_seat_announces_the_leaving_attendee(app, client, alice, bob, receiver):
    await add_schedule(app, alice.id, "UTC")
    seated = await add_event_type(app, alice.id, "class", seats_per_time_slot=3)
    await hook(client, alice, receiver.url, ["BOOKING_CANCELLED", "MEETING_STARTED"])
    booking = await book(client, alice, seated, email="one@example.com", name="One Seat")
    await book(client, alice, seated, email=bob.email, name="Bob Seat")
    r = await client.delete(
        f"/v1/bookings/{booking['id']}",
        params={**bob.params, "cancellationReason": "Can't make it"},
    )
    assert r.status_code == 200 and r.json()["onlyRemovedAttendee"] is True, r.text
    (got,) = await receiver.wait_for(1)
    assert got.trigger == "BOOKING_CANCELLED"
    payload = got.json()["payload"]
    # As Cal.com's cancelAttendeeSeat: the booking, with only the attendee who left.
    assert (payload["uid"], payload["bookingId"]) == (booking["uid"], booking["id"])
    assert payload["status"] == "CANCELLED"
    assert [(a["email"], a["name"]) for a in payload["attendees"]] == [(bob.email, "Bob Seat")]
    assert payload["cancellationReason"] == "Can't make it"
    assert payload["cancelledBy"] == bob.email
    assert payload["seatsPerTimeSlot"] == 3
    # The booking goes on: its MEETING_STARTED is planned again, for those who remain.
    meetings = [e for e in await events(app) if e.trigger == "MEETING_STARTED"]
    assert [e.status for e in meetings] == [
        WebhookEventStatus.DROPPED,  # planned for the first seat
        WebhookEventStatus.DROPPED,  # planned again when Bob took his seat
        WebhookEventStatus.PENDING,
    ]
    meeting = meetings[-1]
    assert meeting.next_attempt_at == TUESDAY_10
    body = meeting.body
    assert "one@example.com" in body and bob.email not in body
    # The host cancelling the rest is the usual BOOKING_CANCELLED, with everyone left.
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.json()["onlyRemovedAttendee"] is False
    got = await receiver.wait_for(2)
    assert [a["email"] for a in got[1].json()["payload"]["attendees"]] == ["one@example.com"]


async def test_meeting_events_come_due_at_start_and_end_and_follow_the_booking(
    app, client, alice, meet, receiver
):
    await hook(client, alice, receiver.url, ["MEETING_STARTED", "MEETING_ENDED"], secret="m")
    first = await book(client, alice, meet)
    planned = await events(app)
    assert [(e.trigger, e.next_attempt_at, e.status) for e in planned] == [
        ("MEETING_STARTED", TUESDAY_10, WebhookEventStatus.PENDING),
        ("MEETING_ENDED", TUESDAY_10 + timedelta(minutes=30), WebhookEventStatus.PENDING),
    ]

    # Moving the booking drops its plan and plans the new one.
    moved = await book(client, alice, meet, TUESDAY_10 + timedelta(hours=2),
                       rescheduleUid=first["uid"])  # fmt: skip
    rows = await events(app)
    assert [(e.booking_id, e.trigger, e.status) for e in rows] == [
        (first["id"], "MEETING_STARTED", WebhookEventStatus.DROPPED),
        (first["id"], "MEETING_ENDED", WebhookEventStatus.DROPPED),
        (moved["id"], "MEETING_STARTED", WebhookEventStatus.PENDING),
        (moved["id"], "MEETING_ENDED", WebhookEventStatus.PENDING),
    ]
    assert rows[2].next_attempt_at == TUESDAY_10 + timedelta(hours=2)

    # A PATCH of the time moves the plan too.
    start = TUESDAY_10 + timedelta(hours=4)
    r = await client.patch(
        f"/v1/bookings/{moved['id']}",
        params=alice.params,
        json={"startTime": at(start), "endTime": at(start + timedelta(minutes=30))},
    )
    assert r.status_code == 200, r.text
    pending = [e for e in await events(app) if e.status == WebhookEventStatus.PENDING]
    assert [(e.trigger, e.next_attempt_at) for e in pending] == [
        ("MEETING_STARTED", start),
        ("MEETING_ENDED", start + timedelta(minutes=30)),
    ]

    # Time reaches the start: MEETING_STARTED is sent, flat and signed; MEETING_ENDED waits.
    clock.freeze(start + timedelta(seconds=1))
    (got,) = await receiver.wait_for(1)
    body = got.json()
    assert got.headers["x-cal-signature-256"] == signed("m", got.body)
    assert body["triggerEvent"] == "MEETING_STARTED"
    assert "payload" not in body
    assert body["id"] == moved["id"] and body["uid"] == moved["uid"]
    assert body["startTime"] == at(start)
    assert body["user"]["email"] == alice.email
    assert body["attendees"][0]["email"] == "ann@example.com"
    assert body["payment"] == [] and body["references"] == []

    clock.freeze(start + timedelta(minutes=30, seconds=1))
    got = await receiver.wait_for(2)
    assert got[1].json()["triggerEvent"] == "MEETING_ENDED"
    assert [r.json()["uid"] for r in receiver.all()] == [moved["uid"]] * 2


async def test_cancelling_drops_planned_meeting_events(app, client, alice, meet, receiver):
    await hook(client, alice, receiver.url, ["MEETING_ENDED", "BOOKING_CANCELLED"])
    created = await book(client, alice, meet)
    r = await client.delete(f"/v1/bookings/{created['id']}", params=alice.params)
    assert r.status_code == 200, r.text
    await receiver.wait_for(1)
    rows = await events(app)
    assert [(e.trigger, e.status) for e in rows if e.trigger == "MEETING_ENDED"] == [
        ("MEETING_ENDED", WebhookEventStatus.DROPPED)
    ]
    clock.freeze(TUESDAY_10 + timedelta(hours=1))
    await settled(app, count=2)
    assert [r.trigger for r in receiver.all()] == ["BOOKING_CANCELLED"]


async def test_pending_bookings_plan_no_meeting_events_until_confirmed(
    app, client, alice, receiver
):
    await add_schedule(app, alice.id, "UTC")
    gated = await add_event_type(app, alice.id, "gated", requires_confirmation=True)
    await hook(client, alice, receiver.url, ["MEETING_STARTED"])
    created = await book(client, alice, gated)
    assert await events(app) == []
    r = await client.post(
        f"/v1/bookings/{created['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert r.status_code == 200, r.text
    (planned,) = await events(app)
    assert (planned.trigger, planned.next_attempt_at) == ("MEETING_STARTED", TUESDAY_10)


def test_the_default_retry_schedule_spans_more_than_a_day() -> None:
    from bookable.settings import Settings

    settings = Settings(database_url="sqlite:///unused.db")
    config = DispatcherConfig.from_settings(settings)
    waits = [config.retry_delays[min(n, len(config.retry_delays)) - 1]
             for n in range(1, config.max_attempts)]  # fmt: skip
    assert sum(waits) > 24 * 3600
    assert waits == sorted(waits)


async def test_a_new_hook_plans_meeting_events_for_upcoming_bookings(app, client, alice, meet):
    created = await book(client, alice, meet)
    assert await events(app) == []
    made = await hook(client, alice, "http://127.0.0.1:9/later", ["MEETING_STARTED"])
    (planned,) = await events(app)
    assert (planned.booking_id, planned.trigger) == (created["id"], "MEETING_STARTED")
    assert planned.next_attempt_at == TUESDAY_10

    r = await client.patch(
        f"/v1/webhooks/{made['id']}", params=alice.params, json={"eventTriggers": ["MEETING_ENDED"]}
    )
    assert r.status_code == 200, r.text
    rows = await events(app)
    assert [(e.trigger, e.status) for e in rows] == [
        ("MEETING_STARTED", WebhookEventStatus.DROPPED),
        ("MEETING_ENDED", WebhookEventStatus.PENDING),
    ]
    assert rows[1].next_attempt_at == TUESDAY_10 + timedelta(minutes=30)


async def test_a_new_hook_plans_meeting_events_for_many_bookings(app, client, alice, meet):
    # More bookings than one batch of load_facts_many, in several shapes: with and without an
    # event type, 0-3 attendees, some paid; some cancelled or over (no plan for those).
    count = 2 * FACTS_BATCH + 37
    async with app.state.sessions() as session, session.begin():
        for n in range(count):
            start = TUESDAY_10 + timedelta(hours=n)
            booking = Booking(
                uid=f"many-{n}",
                user_id=alice.id,
                event_type_id=None if n % 5 == 0 else meet,
                title=f"Meeting {n}",
                start_time=start,
                end_time=start + timedelta(minutes=30),
                status=BookingStatus.CANCELLED if n % 11 == 0 else BookingStatus.ACCEPTED,
                responses={"name": f"Guest {n}", "email": f"g{n}@example.com"},
            )
            for k in range(n % 4):
                booking.attendees.append(
                    Attendee(
                        email=f"a{k}-{n}@example.com", name=f"A{k} {n}", time_zone="Asia/Tokyo"
                    )
                )
            if n % 7 == 0:
                booking.payments.append(
                    Payment(uid=f"pay-{n}", amount=100 + n, currency="eur", success=True)
                )
            session.add(booking)
    expected = {n for n in range(count) if n % 11}
    with recorded_statements(app) as statements:
        made = await hook(
            client, alice, "http://127.0.0.1:9/later", ["MEETING_STARTED", "MEETING_ENDED"]
        )
    # The bookings' rows are read in a few batched queries, not a few queries per booking
    # (other statements on the engine are the running dispatcher's polls and the inserts).
    reads = Counter(
        table
        for statement in statements
        for table in ("attendees", "payments", "booking_references", "users", "event_types")
        if statement.startswith("SELECT") and f"FROM {table} " in statement + " "
    )
    assert max(reads.values()) <= 3, reads
    rows = await events(app)
    assert len(rows) == 2 * len(expected)
    async with app.state.sessions() as session:
        bookings = {
            b.id: b
            for b in await session.scalars(select(Booking).where(Booking.uid.like("many-%")))
        }
        assert {int(bookings[e.booking_id].uid.split("-")[1]) for e in rows} == expected
        # Each body is what the booking's own facts render, whichever batch it was loaded in.
        for event in rows:
            assert event.webhook_id == made["id"] and event.status == WebhookEventStatus.PENDING
            booking = bookings[event.booking_id]
            trigger = WebhookTrigger(event.trigger)
            facts = await load_facts(session, booking)
            assert event.body == js_json(meeting_body(trigger, facts)), booking.uid
            due = (
                booking.start_time
                if trigger == WebhookTrigger.MEETING_STARTED
                else booking.end_time
            )
            assert event.next_attempt_at == due


async def test_priced_bookings_announce_the_payment_not_a_request(app, client, alice, receiver):
    await add_schedule(app, alice.id, "UTC")
    paid = await add_event_type(app, alice.id, "paid", price=2500, currency="eur")
    await hook(client, alice, receiver.url, ["BOOKING_PAYMENT_INITIATED", "BOOKING_REQUESTED"])
    created = await book(client, alice, paid)
    (got,) = await receiver.wait_for(1)
    payload = got.json()["payload"]
    assert got.trigger == "BOOKING_PAYMENT_INITIATED"
    assert payload["paymentId"] == created["paymentId"]
    assert payload["paymentData"]["amount"] == 2500
    assert payload["paymentData"]["currency"] == "eur"
    assert payload["price"] == 2500 and payload["currency"] == "eur"
    await settled(app, count=1)
    assert len(receiver.all()) == 1


async def test_team_bookings_tell_the_event_type_hooks_not_the_hosts_own(
    app, client, alice, bob, receiver
):
    from tests.api.test_team_scheduling import team_event_type
    from tests.api.test_teams import add_member, create_team

    team_id = int((await create_team(client, alice, slug="crew"))["team"]["id"])
    await add_member(client, alice, bob, team_id)
    for member in (alice, bob):
        await add_schedule(app, member.id, "UTC")
    panel = await team_event_type(
        client, alice, team_id, "COLLECTIVE", [(alice, True), (bob, True)]
    )
    await hook(client, alice, receiver.url + "/type", ["BOOKING_CREATED"], eventTypeId=panel)
    await hook(client, alice, receiver.url + "/alice", ["BOOKING_CREATED"])
    await hook(client, bob, receiver.url + "/bob", ["BOOKING_CREATED"])
    created = await book(client, alice, panel)
    (got,) = await receiver.wait_for(1)
    await settled(app, count=1)
    assert [r.path for r in receiver.all()] == ["/type"]  # as Cal.com: not the hosts' own hooks
    payload = got.json()["payload"]
    assert payload["uid"] == created["uid"]
    assert payload["schedulingType"] == "COLLECTIVE"
    organizer = payload["organizer"]["email"]
    other = ({alice.email, bob.email} - {organizer}).pop()
    assert payload["team"]["id"] == team_id
    assert [m["email"] for m in payload["team"]["members"]] == [other]


async def test_confirming_a_priced_booking_records_the_payment_and_announces_it(
    app, client, alice, receiver
):
    await add_schedule(app, alice.id, "UTC")
    priced = await add_event_type(app, alice.id, "priced", price=4000, currency="usd")
    await hook(client, alice, receiver.url, ["BOOKING_PAID", "BOOKING_CREATED"])
    created = await book(client, alice, priced)
    r = await client.post(
        f"/v1/bookings/{created['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert r.status_code == 200, r.text
    got = await receiver.wait_for(2)
    # Both are written in one transaction; the dispatcher may deliver them in either order.
    by_trigger = {g.trigger: g.json()["payload"] for g in got}
    assert sorted(by_trigger) == ["BOOKING_CREATED", "BOOKING_PAID"]
    payload = by_trigger["BOOKING_PAID"]
    assert payload["paymentId"] == created["paymentId"]
    assert payload["paymentData"]["success"] is True
    assert payload["status"] == "ACCEPTED"
    payment = await client.get(f"/v1/payments/{created['paymentId']}", params=alice.params)
    assert payment.json()["payment"]["success"] is True
    booking = await client.get(f"/v1/bookings/{created['id']}", params=alice.params)
    assert booking.json()["booking"]["paid"] is True


# --- PostgreSQL: LISTEN/NOTIFY across processes ---------------------------------------------------


async def _committed_elsewhere(application: FastAPI, webhook_id: str, label: str) -> None:
    """An event written and NOTIFYed as another process would: on a connection of an engine
    of its own, outside any ORM session, so no in-process wake-up is involved."""
    engine = create_engine(application.state.settings.database_url)
    try:
        async with engine.begin() as conn:
            now = NOW - timedelta(minutes=1)  # due by the server's (frozen) clock
            await conn.execute(
                insert(WebhookEvent.__table__).values(
                    webhook_id=webhook_id,
                    trigger="BOOKING_CREATED",
                    body=js_json({"label": label}),
                    content_type="application/json",
                    status=WebhookEventStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            await conn.execute(text(f"NOTIFY {notify_channel('webhook')}"))
    finally:
        await engine.dispose()


async def _listening_backends(application: FastAPI) -> set[int]:
    async with application.state.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE 'LISTEN %' AND pid <> pg_backend_pid()"
            )
        )
        return {int(pid) for pid in rows.scalars()}


async def test_a_lost_listen_connection_is_established_again(
    make_settings: Any, database_url: str, receiver: Receiver
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    # Polling once a minute: only a NOTIFY can bring an event within seconds.
    settings = make_settings(clock=NOW, **{**FAST, "webhook_poll_interval": 60.0})
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as c:
        alice = await _account(application)
        made = await hook(c, alice, receiver.url, ["BOOKING_CREATED"])
        await asyncio.sleep(0.2)  # the dispatcher's first look is over; it waits a minute now

        began = time.monotonic()
        await _committed_elsewhere(application, made["id"], "before")
        await receiver.wait_for(1, within=10)
        assert time.monotonic() - began < 10

        # Every dispatcher listens (webhooks and calendar writes): all lose their connection.
        listening = await _listening_backends(application)
        assert listening
        async with application.state.engine.connect() as conn:
            for pid in listening:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = time.monotonic() + 10
        while len(await _listening_backends(application) - listening) < len(listening):
            assert time.monotonic() < deadline, "LISTEN was not established again"
            await asyncio.sleep(0.05)

        began = time.monotonic()
        await _committed_elsewhere(application, made["id"], "after")
        got = await receiver.wait_for(2, within=10)
        assert time.monotonic() - began < 10  # well before the next poll (60 s)
        assert [r.json()["label"] for r in got] == ["before", "after"]
    clock.freeze(None)
