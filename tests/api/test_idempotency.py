"""Idempotency-Key on POST, over real databases: a retried request answers the first response
and creates nothing; the key is per user, per request and lives 24 hours."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from bookable.app import RESOURCE_ROUTERS
from bookable.core.clock import clock
from bookable.core.db import WRITE_OPTION
from bookable.core.idempotency import (
    HEADER,
    KEY_LIFETIME,
    REPLAYED_HEADER,
    IdempotentRoute,
    purge_expired,
    purge_forever,
)
from bookable.models import Booking, IdempotencyKey, Schedule
from bookable.v2 import router as v2_router

from .booking_helpers import NOW, frozen_app, hosted_event_type

FRIDAY_10 = "2026-01-09T10:00:00.000Z"
FRIDAY_11 = "2026-01-09T11:00:00.000Z"


@pytest.fixture
async def app(make_settings):
    async for application in frozen_app(make_settings):
        yield application
    clock.freeze(None)


@pytest.fixture
async def meet(app, alice) -> int:
    return await hosted_event_type(app, alice)


def booking_body(event_type_id: int, start: str = FRIDAY_10, email: str = "ann@example.com"):
    return {
        "eventTypeId": event_type_id,
        "start": start,
        "timeZone": "Europe/Paris",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Ann", "email": email},
    }


async def post_booking(client, account, body: dict[str, Any], key: str | bytes | None):
    headers = {HEADER: key} if key is not None else {}
    return await client.post("/v1/bookings", params=account.params, json=body, headers=headers)


async def count(app, model: Any) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- replay ----------------------------------------------------------------------------------


async def test_a_retry_answers_the_first_response_byte_for_byte_and_books_once(
    app, client, alice, meet
):
    first = await post_booking(client, alice, booking_body(meet), "retry-1")
    assert first.status_code == 200, first.text
    assert REPLAYED_HEADER not in first.headers
    again = await post_booking(client, alice, booking_body(meet), "retry-1")
    assert again.status_code == 200
    assert again.content == first.content
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await count(app, Booking) == 1
    async with app.state.sessions() as session:
        row = await session.scalar(select(IdempotencyKey))
        assert row is not None
        assert (row.user_id, row.key, row.method, row.path) == (
            alice.id, "retry-1", "POST", "/v1/bookings",
        )  # fmt: skip
        assert row.response_status == 200
        assert row.response_body == first.text


async def test_a_json_body_counts_by_content_and_the_api_key_is_not_part_of_it(
    app, client, alice, make_account, meet
):
    first = await post_booking(client, alice, booking_body(meet), "same-content")
    assert first.status_code == 200, first.text
    # The same JSON with other spacing and key order, sent with the Bearer header instead.
    body = booking_body(meet)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    again = await client.post(
        "/v1/bookings",
        content=reordered,
        headers={
            HEADER: "same-content",
            "Authorization": f"Bearer {alice.key}",
            "Content-Type": "application/json",
        },
    )
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.content == first.content
    assert await count(app, Booking) == 1


async def test_every_post_takes_part_not_only_bookings(app, client, alice):
    body = {"name": "Evenings", "timeZone": "Europe/Paris"}
    first = await client.post(
        "/v1/schedules", params=alice.params, json=body, headers={HEADER: "s-1"}
    )
    assert first.status_code == 200, first.text
    again = await client.post(
        "/v1/schedules", params=alice.params, json=body, headers={HEADER: "s-1"}
    )
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.content == first.content
    assert await count(app, Schedule) == 1


async def test_without_a_key_nothing_is_remembered(app, client, alice, meet):
    assert (await post_booking(client, alice, booking_body(meet), None)).status_code == 200
    again = await post_booking(client, alice, booking_body(meet), None)
    assert again.status_code == 409  # the slot is taken: a second booking was attempted
    assert await count(app, IdempotencyKey) == 0


# --- conflicts -------------------------------------------------------------------------------


async def test_the_same_key_with_another_body_is_a_409_and_books_nothing(app, client, alice, meet):
    assert (await post_booking(client, alice, booking_body(meet), "k")).status_code == 200
    other = await post_booking(client, alice, booking_body(meet, FRIDAY_11), "k")
    assert other.status_code == 409
    assert other.json() == {
        "message": f"{HEADER} 'k' was already used with a different request body; "
        "send a new key for a new request"
    }
    assert REPLAYED_HEADER not in other.headers
    assert await count(app, Booking) == 1


async def test_the_same_key_on_another_route_is_a_409(app, client, alice, meet):
    assert (await post_booking(client, alice, booking_body(meet), "k")).status_code == 200
    other = await client.post(
        "/v1/schedules", params=alice.params, json={"name": "x"}, headers={HEADER: "k"}
    )
    assert other.status_code == 409
    assert other.json()["message"] == (
        f"{HEADER} 'k' was already used for POST /v1/bookings; send a new key for a new request"
    )
    assert await count(app, Schedule) == 1  # only the one hosted_event_type made


async def test_keys_are_per_user(app, client, alice, bob, meet):
    bobs = await hosted_event_type(app, bob, slug="bobs")
    mine = await post_booking(client, alice, booking_body(meet), "shared")
    theirs = await post_booking(client, bob, booking_body(bobs), "shared")
    assert mine.status_code == theirs.status_code == 200, theirs.text
    assert REPLAYED_HEADER not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["userId"] == bob.id
    # Bob's replay is Bob's answer, never Alice's.
    replay = await post_booking(client, bob, booking_body(bobs), "shared")
    assert replay.content == theirs.content
    assert await count(app, Booking) == 2


# --- failures are not remembered ---------------------------------------------------------------


async def test_a_refused_request_keeps_nothing_so_a_corrected_retry_runs(app, client, alice, meet):
    refused = await post_booking(client, alice, booking_body(meet, "2026-01-09T22:00:00Z"), "fix")
    assert refused.status_code == 409, refused.text  # outside working hours
    assert await count(app, IdempotencyKey) == 0
    fixed = await post_booking(client, alice, booking_body(meet), "fix")
    assert fixed.status_code == 200, fixed.text
    assert REPLAYED_HEADER not in fixed.headers
    invalid = await client.post(
        "/v1/bookings", params=alice.params, json={"eventTypeId": "x"}, headers={HEADER: "v"}
    )
    assert invalid.status_code == 400
    assert await count(app, IdempotencyKey) == 1


# --- the header ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("x" * 256, f"too_big in '{HEADER}': must be 1 to 255 characters, got 256"),
        ("", f"too_big in '{HEADER}': must be 1 to 255 characters, got 0"),
        (b"caf\xc3\xa9", f"invalid_string in '{HEADER}': only printable ASCII characters"),
        (b"tab\there", f"invalid_string in '{HEADER}': only printable ASCII characters"),
    ],
)
async def test_a_bad_key_is_a_400_naming_the_header(app, client, alice, meet, key, message):
    response = await post_booking(client, alice, booking_body(meet), key)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await count(app, Booking) == 0


async def test_the_longest_key_is_accepted(app, client, alice, meet):
    key = "~" * 255
    assert (await post_booking(client, alice, booking_body(meet), key)).status_code == 200
    again = await post_booking(client, alice, booking_body(meet), key)
    assert again.headers[REPLAYED_HEADER] == "true"


async def test_the_key_is_looked_at_only_after_authentication(app, client, meet):
    response = await client.post("/v1/bookings", json={}, headers={HEADER: "x" * 300})
    assert response.status_code == 401


# --- 24 hours --------------------------------------------------------------------------------


async def test_a_key_expires_after_24_hours(app, client, alice, meet):
    assert (await post_booking(client, alice, booking_body(meet), "day")).status_code == 200
    clock.freeze(NOW + KEY_LIFETIME - timedelta(seconds=1))
    still = await post_booking(client, alice, booking_body(meet, FRIDAY_11), "day")
    assert still.status_code == 409
    clock.freeze(NOW + KEY_LIFETIME)
    fresh = await post_booking(client, alice, booking_body(meet, FRIDAY_11), "day")
    assert fresh.status_code == 200, fresh.text
    assert REPLAYED_HEADER not in fresh.headers
    assert await count(app, Booking) == 2
    async with app.state.sessions() as session:
        rows = list(await session.scalars(select(IdempotencyKey)))
    assert [(r.key, r.created_at) for r in rows] == [("day", NOW + KEY_LIFETIME)]


async def test_the_purge_deletes_only_expired_keys(app, client, alice, bob, meet):
    bobs = await hosted_event_type(app, bob, slug="bobs")
    assert (await post_booking(client, alice, booking_body(meet), "old")).status_code == 200
    clock.freeze(NOW + timedelta(hours=2))
    assert (await post_booking(client, bob, booking_body(bobs), "new")).status_code == 200
    clock.freeze(NOW + KEY_LIFETIME + timedelta(hours=1))
    assert await purge_expired(app.state.sessions) == 1
    async with app.state.sessions() as session:
        assert list(await session.scalars(select(IdempotencyKey.key))) == ["new"]


async def test_the_app_purges_in_the_background(app, client, alice, meet):
    assert (await post_booking(client, alice, booking_body(meet), "old")).status_code == 200
    clock.freeze(NOW + KEY_LIFETIME)
    purge = asyncio.create_task(purge_forever(app.state.sessions, 0.01))
    try:
        for _ in range(500):
            if await count(app, IdempotencyKey) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        purge.cancel()
    assert await count(app, IdempotencyKey) == 0
    assert await count(app, Booking) == 1


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrent_duplicates_create_exactly_one_booking(app, client, alice, meet):
    answers = await asyncio.gather(
        *(post_booking(client, alice, booking_body(meet), "burst") for _ in range(10))
    )
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get(REPLAYED_HEADER) == "true" for a in answers) == 9
    assert await count(app, Booking) == 1
    assert await count(app, IdempotencyKey) == 1


async def test_a_retry_while_the_first_request_runs_waits_for_its_answer(app, client, alice, meet):
    """The first request is simulated by a transaction that has taken key "k2" and written its
    answer but not committed yet: the retry waits (PostgreSQL: on the unique index; SQLite: for
    the write lock), then answers that answer instead of booking."""
    assert (await post_booking(client, alice, booking_body(meet), "k1")).status_code == 200
    async with app.state.sessions() as session:
        learned = await session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "k1"))
        assert learned is not None
        request_hash = learned.request_hash
    async with app.state.sessions() as first:
        await first.connection(execution_options={WRITE_OPTION: True})
        first.add(
            IdempotencyKey(
                user_id=alice.id, key="k2", method="POST", path="/v1/bookings",
                request_hash=request_hash, response_status=200,
                response_body='{"from":"the first request"}',
                response_content_type="application/json", created_at=NOW,
            )
        )  # fmt: skip
        await first.flush()
        retry = asyncio.create_task(post_booking(client, alice, booking_body(meet), "k2"))
        await asyncio.sleep(0.5)
        assert not retry.done()
        await first.commit()
    answer = await retry
    assert answer.status_code == 200
    assert answer.content == b'{"from":"the first request"}'
    assert answer.headers[REPLAYED_HEADER] == "true"
    assert await count(app, Booking) == 1


# --- wiring ----------------------------------------------------------------------------------


def test_every_post_route_takes_part_and_documents_the_header(app):
    posts = [
        route
        for router in (*RESOURCE_ROUTERS, v2_router)
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert len(posts) > 10
    assert [r.path for r in posts if not isinstance(r, IdempotentRoute)] == []
    document = app.openapi()
    operations = [(path, ops["post"]) for path, ops in document["paths"].items() if "post" in ops]
    assert operations
    for path, operation in operations:
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert headers == [HEADER], path
    for path, ops in document["paths"].items():
        for method, operation in ops.items():
            if method != "post":
                names = [p["name"] for p in operation.get("parameters", [])]
                assert HEADER not in names, (method, path)
