"""Bad input at the edge answers a 400 naming the field, never a 500 (issue 10, part 1).

Lone UTF-16 surrogates and NUL in JSON bodies, control characters in paths and query strings,
null times on PATCH, bookings spanning years (PostgreSQL's lock table), out-of-range ids.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from bookable.app import RESOURCE_ROUTERS
from bookable.bookings.locks import LOCKED_DAYS_MAX, lock_host_time
from bookable.core.routing import CheckedRoute
from bookable.models import Booking, EventType, Schedule, User
from bookable.settings import Settings
from bookable.v2 import router as v2_router
from tests.conftest import Account

from .booking_helpers import TUESDAY_10, TUESDAY_11, book, frozen_app, hosted_event_type

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

SURROGATE = "\ud800"
TOO_LONG = "a booking may last at most 31 days"


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async for application in frozen_app(make_settings):
        yield application


async def send_json(
    client: httpx.AsyncClient, method: str, path: str, account: Account, body: Any
) -> httpx.Response:
    """Sends ``body`` as JSON with \\u escapes (httpx would refuse to encode a lone surrogate)."""
    return await client.request(
        method,
        path,
        params=account.params,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )


async def count(app: FastAPI, model: type) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def surrogate_message(path: str) -> str:
    return f"custom in '{path}': must not contain lone UTF-16 surrogates (\\ud800)"


# --- 1. lone surrogates and NUL in JSON bodies ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/event-types", {"title": SURROGATE, "slug": "x", "length": 30}, "title"),
        ("POST", "/v1/schedules", {"name": "S", "timeZone": SURROGATE}, "timeZone"),
        ("POST", "/v1/schedules", {"name": SURROGATE, "timeZone": "UTC"}, "name"),
        ("PATCH", "/v1/users/{me}", {"timeFormat": SURROGATE}, "timeFormat"),
        ("PATCH", "/v1/users/{me}", {"timeZone": SURROGATE}, "timeZone"),
        ("PATCH", "/v1/users/{me}", {"name": "A" + SURROGATE + "B"}, "name"),
        ("POST", "/v1/webhooks", {"subscriberUrl": SURROGATE}, "subscriberUrl"),
        ("POST", "/v1/api-keys", {"note": SURROGATE}, "note"),
        # A key, nested: the path shows the key escaped.
        ("POST", "/v1/bookings", {"responses": {"a\ud800": 1}}, "responses,a\\ud800"),
        ("POST", "/v1/bookings", {"responses": {"guests": ["x", SURROGATE]}}, "responses,guests,1"),
        ("POST", "/v1/bookings", {"metadata": {"k": SURROGATE}}, "metadata,k"),
    ],
)
async def test_lone_surrogates_are_refused_naming_the_field(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = (await count(app, EventType), await count(app, Schedule), await count(app, Booking))
    response = await send_json(client, method, path.format(me=alice.id), alice, body)
    assert response.status_code == 400, response.text
    assert response.json() == {"message": surrogate_message(field)}
    after = (await count(app, EventType), await count(app, Schedule), await count(app, Booking))
    assert after == before
    async with app.state.sessions() as session:
        user = await session.get(User, alice.id)
        assert user is not None and user.name != "A" + SURROGATE + "B"


def test_every_route_parses_its_body_through_the_check() -> None:
    # A router made without route_class=CheckedRoute would let NUL and surrogates through.
    routes = [r for router in (*RESOURCE_ROUTERS, v2_router) for r in router.routes]
    assert routes
    assert [r.path for r in routes if not isinstance(r, CheckedRoute)] == []


async def test_a_surrogate_body_without_a_key_is_still_a_400(client: httpx.AsyncClient) -> None:
    # Parsing the body comes before authentication, as for any malformed JSON.
    response = await client.post(
        "/v1/event-types",
        content=json.dumps({"title": SURROGATE}).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"message": surrogate_message("title")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"responses": {"name": "A\x00", "email": "a@example.com"}}, "responses,name"),
        ({"responses": {"n\x00": "A"}}, "responses,n\\u0000"),
        ({"title": "T\x00"}, "title"),
    ],
)
async def test_nul_is_refused_in_the_same_place(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, body: dict[str, Any], field: str
) -> None:
    response = await send_json(client, "POST", "/v1/bookings", alice, body)
    assert response.status_code == 400
    assert response.json() == {"message": f"custom in '{field}': must not contain NUL characters"}


async def test_storable_unicode_passes(app: FastAPI, client: httpx.AsyncClient, alice: Account):
    # A real astral character (a surrogate *pair* in JSON) is fine.
    response = await send_json(client, "PATCH", f"/v1/users/{alice.id}", alice, {"name": "Zoë 😀"})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["name"] == "Zoë 😀"


# --- 2. PATCH with null times ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["startTime", "endTime"])
async def test_patch_null_time_is_a_400(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, field: str
) -> None:
    booking = await book(client, alice, await hosted_event_type(app, alice))
    response = await client.patch(
        f"/v1/bookings/{booking['id']}", params=alice.params, json={field: None}
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": f"invalid_type in '{field}': Expected a value, received null"
    }


# --- 3. what a booking may span, and the locks it takes --------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"startTime": 0}, "startTime"),
        ({"startTime": "1969-12-31T23:59:59Z"}, "startTime"),
        ({"endTime": "8999-01-01T00:00:00Z"}, "endTime"),
        ({"startTime": "2026-01-06T10:00:00Z", "endTime": "2026-03-06T10:00:00Z"}, "endTime"),
    ],
)
async def test_patch_beyond_the_longest_booking_is_a_400(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, body: dict[str, Any], field: str
) -> None:
    booking = await book(client, alice, await hosted_event_type(app, alice))
    response = await client.patch(f"/v1/bookings/{booking['id']}", params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"message": f"custom in '{field}': {TOO_LONG}"}
    got = await client.get(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert got.json()["booking"]["startTime"] == TUESDAY_10


@pytest.mark.parametrize(
    "body",
    [
        {"startTime": "1969-12-31T23:00:00Z", "endTime": "1969-12-31T23:59:59Z"},
        {"startTime": "8998-12-01T00:00:00Z", "endTime": "8998-12-31T00:00:00Z"},
    ],
)
async def test_patch_far_away_but_short_is_fine(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, body: dict[str, Any]
) -> None:
    booking = await book(client, alice, await hosted_event_type(app, alice))
    response = await client.patch(f"/v1/bookings/{booking['id']}", params=alice.params, json=body)
    assert response.status_code == 200, response.text


async def test_a_booking_blocking_decades_books_and_still_refuses_overlaps(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    # 40 years of buffer before the meeting: one lock per day was ~14600 advisory locks, more
    # than PostgreSQL's lock table holds ("out of shared memory", a 500).
    decades = 40 * 365 * 24 * 60
    long_one = await hosted_event_type(app, alice, "long", before_event_buffer=decades)
    first = await book(client, alice, long_one, TUESDAY_11)
    short_one = await hosted_event_type(app, alice, "short")
    # 10:00-10:30 lies inside the first booking's buffer: the host is busy then.
    response = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": short_one,
            "start": TUESDAY_10,
            "timeZone": "UTC",
            "responses": {"name": "G", "email": "g@example.com"},
        },
    )
    assert response.status_code in (400, 409), response.text
    assert await count(app, Booking) == 1
    # Confirming, patching and cancelling it lock the same span: still no 500.
    patched = await client.patch(
        f"/v1/bookings/{first['id']}", params=alice.params, json={"title": "Renamed"}
    )
    assert patched.status_code == 200, patched.text


async def test_confirming_a_booking_blocking_decades_works(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    decades = 40 * 365 * 24 * 60
    pending_type = await hosted_event_type(
        app, alice, "ask", before_event_buffer=decades, requires_confirmation=True
    )
    booking = await book(client, alice, pending_type, TUESDAY_11)
    assert booking["status"] == "PENDING"
    confirmed = await client.post(
        f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirmed.status_code == 200, confirmed.text


async def test_locks_per_host_are_bounded_whatever_the_span(app: FastAPI) -> None:
    async with app.state.sessions() as session, session.begin():
        connection = await session.connection()
        if connection.dialect.name != "postgresql":
            pytest.skip("advisory locks are PostgreSQL's")
        start = datetime(2026, 1, 6, tzinfo=UTC)
        spans = [
            timedelta(hours=1),
            timedelta(days=LOCKED_DAYS_MAX - 1, hours=1),
            timedelta(days=20000),
        ]
        held = []
        for host_id, span in enumerate(spans, start=1):
            await lock_host_time(session, host_id, start, start + span)
            held.append(
                await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND classid = :host"
                    ),
                    {"host": host_id},
                )
            )
    # One shared whole-calendar key plus the days; beyond LOCKED_DAYS_MAX one exclusive key.
    assert held == [2, LOCKED_DAYS_MAX + 1, 1]


_HELD_ADVISORY = text(
    "SELECT classid, objid, mode FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() ORDER BY classid, objid, mode"
)


async def test_the_event_type_query_takes_the_locks_lock_host_time_takes(
    app: FastAPI, alice: Account
) -> None:
    """POST /bookings' event type query takes the owner's day locks itself on PostgreSQL
    (`locks.EVENT_TYPE_LOCK_COLUMN`): the same keys in the same modes as `lock_host_time` for
    the time the booking blocks (buffers across midnight on either side, no end given, a
    week, beyond LOCKED_DAYS_MAX, decades of buffer, before 1970), and none for a team's
    event type or one the caller may not book."""
    from bookable.bookings.create import (
        _event_type_and_owner_statement,
        found_from_rows,
        locks_taken_at,
    )
    from bookable.bookings.locks import event_type_lock_params
    from bookable.models import Team

    async with app.state.sessions() as session:
        if (await session.connection()).dialect.name != "postgresql":
            pytest.skip("advisory locks are PostgreSQL's")
    day = datetime(2026, 1, 6, tzinfo=UTC)
    cases: list[tuple[dict[str, Any], datetime, datetime | None]] = [
        ({}, day + timedelta(hours=10), day + timedelta(hours=10, minutes=30)),
        ({}, day + timedelta(hours=10), None),
        ({}, day + timedelta(hours=23, minutes=30), day + timedelta(days=1)),
        ({"before_event_buffer": 15}, day + timedelta(minutes=10), None),
        ({"after_event_buffer": 1}, day + timedelta(hours=23, minutes=29), None),
        ({"length": 60 * 24 * 6}, day + timedelta(hours=1), None),
        ({"length": 60 * 24 * LOCKED_DAYS_MAX}, day + timedelta(hours=1), None),
        ({"before_event_buffer": 40 * 365 * 24 * 60}, day, None),
        ({}, datetime(1969, 12, 31, 23, 45, tzinfo=UTC), datetime(1970, 1, 1, 0, 15, tzinfo=UTC)),
    ]
    statement = _event_type_and_owner_statement(admin=False, count_emails=False, lock=True)
    for index, (fields, start, end) in enumerate(cases):
        event_type_id = await hosted_event_type(app, alice, f"lock-{index}", **fields)
        params = {"event_type_id": event_type_id, "caller_id": alice.id}
        async with app.state.sessions() as session, session.begin():
            rows = (
                await session.execute(statement, {**params, **event_type_lock_params(start, end)})
            ).all()
            taken = (await session.execute(_HELD_ADVISORY)).all()
        event_type = found_from_rows(rows, counted=False, locking=True).event_type
        blocked_end = (end or start + timedelta(minutes=event_type.length)) + timedelta(
            minutes=event_type.after_event_buffer or 0
        )
        blocked_start = start - timedelta(minutes=event_type.before_event_buffer or 0)
        async with app.state.sessions() as session, session.begin():
            await lock_host_time(session, alice.id, blocked_start, blocked_end)
            expected = (await session.execute(_HELD_ADVISORY)).all()
        assert taken == expected, (fields, start, end)
        assert rows[0][locks_taken_at(counted=False)] == len(expected)

    async with app.state.sessions() as session, session.begin():
        team = Team(name="Lockers", slug="lockers")
        session.add(team)
        await session.flush()
        team_id = team.id
    team_type = await hosted_event_type(app, alice, "lock-team", team_id=team_id)
    mine = await hosted_event_type(app, alice, "lock-mine")
    for event_type_id, caller_id in ((team_type, alice.id), (mine, alice.id + 1000)):
        params = {"event_type_id": event_type_id, "caller_id": caller_id}
        async with app.state.sessions() as session, session.begin():
            rows = (
                await session.execute(statement, {**params, **event_type_lock_params(day, None)})
            ).all()
            taken = (await session.execute(_HELD_ADVISORY)).all()
        assert taken == []
        assert all(row[locks_taken_at(counted=False)] == 0 for row in rows)


# --- 5. ids beyond the database's range --------------------------------------------------------


async def test_api_key_for_a_user_id_beyond_the_range_is_a_400(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.post("/v1/api-keys", params=admin.params, json={"userId": 2**31})
    assert response.status_code == 400
    assert response.json() == {
        "message": "too_big in 'userId': Number must be less than or equal to 2147483647"
    }


# --- 6. control characters in paths and query strings ----------------------------------------


def control_message(name: str, code: str = "0000") -> str:
    return f"custom in '{name}': must not contain control characters (\\u{code})"


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/event-types", "slug=%00", "slug"),
        ("/v1/users", "email=%00", "email"),
        ("/v1/slots", "usernameList=%00", "usernameList"),
        ("/v1/slots", "eventTypeSlug=a%00b", "eventTypeSlug"),
        ("/v1/slots", "rescheduleUid=%00", "rescheduleUid"),
        ("/v1/availability", "username=%00", "username"),
        ("/v1/bookings", "take=5&attendeeName=%1b%5b31m", "attendeeName"),
        ("/v1/api-keys/a%00b", "", "id"),
        ("/v1/bookings/%00/recordings", "", "id"),
        ("/v1/bookings/1/transcripts/%00", "", "recordingId"),
        ("/v1/event-types", "sl%00ug=1", "sl\\u0000ug"),
    ],
)
async def test_control_characters_in_the_url_are_a_400_naming_the_parameter(
    client: httpx.AsyncClient, alice: Account, path: str, query: str, name: str
) -> None:
    code = "001b" if "%1b" in query else "0000"
    url = f"{path}?{query}&apiKey={alice.key}" if query else f"{path}?apiKey={alice.key}"
    response = await client.get(url)
    assert response.status_code == 400, response.text
    assert response.json() == {"message": control_message(name, code)}
    assert response.headers["x-request-id"]


async def test_control_characters_are_refused_before_authentication(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/event-types?slug=%00")
    assert response.status_code == 400
    # The key itself travels in the query string: a NUL there never reaches the key lookup.
    response = await client.get("/v1/me?apiKey=cal_%00")
    assert response.status_code == 400
    assert response.json() == {"message": control_message("apiKey")}


async def test_a_multi_line_cancellation_reason_is_fine(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    booking = await book(client, alice, await hosted_event_type(app, alice))
    response = await client.delete(
        f"/v1/bookings/{booking['id']}",
        params={**alice.params, "cancellationReason": "Sorry,\r\n\tcan't make it"},
    )
    assert response.status_code == 200, response.text
    refused = await client.delete(
        f"/v1/bookings/{booking['id']}", params={**alice.params, "cancellationReason": "a\x00"}
    )
    assert refused.status_code == 400
    assert refused.json() == {"message": control_message("cancellationReason")}


# --- existence oracle --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("DELETE", "/cancel", None),
        ("POST", "/confirm", {"confirmed": True}),
        ("GET", "/recordings", None),
        ("GET", "/transcripts", None),
        ("GET", "/transcripts/rec-1", None),
    ],
)
async def test_someone_elses_booking_answers_as_a_missing_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    booking = await book(client, alice, await hosted_event_type(app, alice))
    for key in (booking["id"], booking["uid"]):
        theirs = await client.request(
            method, f"/v1/bookings/{key}{suffix}", params=bob.params, json=body
        )
        missing = await client.request(
            method, f"/v1/bookings/987654{suffix}", params=bob.params, json=body
        )
        assert theirs.status_code == missing.status_code == 404, theirs.text
        assert theirs.json()["message"].replace(str(key), "KEY") == missing.json()[
            "message"
        ].replace("987654", "KEY")
