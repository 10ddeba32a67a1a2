"""The fast lane (core/fastlane.py) answers byte for byte what FastAPI answers.

Each case sends the same requests to two apps on the same database, one with the lane and one
without (``create_app(..., fast_lane=False)``), and compares status, every header (in order) and
the body; only the request id (random unless the client sends one) and the rate-limit reset
instant (a clock reading) are normalised. Plus: the lane really serves ``/v1/me`` (the router is
never entered), metrics and the JSON access line say the same for both.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.dependencies.utils import request_params_to_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, update
from starlette.datastructures import QueryParams

from bookable.api_keys.service import issue_key
from bookable.app import create_app
from bookable.core.auth import authenticate
from bookable.core.errors import ApiError
from bookable.core.fastlane import query_reader
from bookable.core.idempotency import request_hash
from bookable.core.logging import ACCESS_LOGGER, JsonLogFormatter
from bookable.models import ApiKey, Booking, BookingStatus, IdempotencyKey, User, UserRole
from bookable.settings import Settings
from bookable.slots.endpoints import router as slots_router
from tests.api.scheduling_seed import add_booking, add_event_type, add_schedule
from tests.conftest import client_for

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
ORIGIN = "https://app.example.com"


@dataclass
class Pair:
    """The same settings twice: with the fast lane and without."""

    lane: FastAPI
    plain: FastAPI
    lane_http: httpx.AsyncClient
    plain_http: httpx.AsyncClient

    @property
    def apps(self) -> tuple[FastAPI, FastAPI]:
        return self.lane, self.plain


@pytest.fixture
async def pairs(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    async with AsyncExitStack() as stack:

        async def _make(**overrides: Any) -> Pair:
            settings = make_settings(**overrides)
            made: list[Any] = []
            for fast_lane in (True, False):
                application = create_app(settings, fast_lane=fast_lane)
                await stack.enter_async_context(application.router.lifespan_context(application))
                made += [application, await stack.enter_async_context(client_for(application))]
            return Pair(made[0], made[2], made[1], made[3])

        yield _make


async def add_user(app: FastAPI, username: str, **key_args: Any) -> tuple[int, str, str]:
    """A user and a key, written straight to the database (shared by both apps)."""
    async with app.state.sessions() as session, session.begin():
        user = User(email=f"{username}@example.com", username=username, role=UserRole.USER)
        session.add(user)
        await session.flush()
        key, clear = await issue_key(session, user_id=user.id, prefix="cal_", **key_args)
        return user.id, key.id, clear


def normalised(response: httpx.Response, *, client_request_id: bool) -> Answer:
    headers = []
    for name, value in response.headers.raw:
        lowered = name.lower()
        if lowered in (b"x-request-id", b"calcom-response-id") and not client_request_id:
            assert re.fullmatch(rb"[0-9a-f]{24}", value), value
            value = b"<request id>"
        elif lowered == b"x-ratelimit-reset":
            assert value.isdigit(), value
            value = b"<reset>"
        elif lowered == b"retry-after":
            assert value.isdigit(), value
            value = b"<seconds>"
        headers.append((lowered, value))
    return response.status_code, headers, response.content


async def both(pair: Pair, method: str, url: str, **kwargs: Any) -> tuple[Answer, Answer]:
    sent_id = "x-request-id" in {k.lower() for k in kwargs.get("headers", {})}
    lane = await pair.lane_http.request(method, url, **kwargs)
    plain = await pair.plain_http.request(method, url, **kwargs)
    return (
        normalised(lane, client_request_id=sent_id),
        normalised(plain, client_request_id=sent_id),
    )


def ask(key: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    """The requests of one case: (method, url, httpx arguments)."""
    query = f"?apiKey={key}" if key is not None else ""
    return [
        ("GET", f"/v1/me{query}", {}),
        ("GET", "/v1/me", {"headers": {"Authorization": f"Bearer {key}"}} if key else {}),
        ("GET", f"/me{query}", {}),
        ("GET", f"/v1/me{query}", {"headers": {"Origin": ORIGIN}}),
        ("GET", f"/v1/me{query}", {"headers": {"X-Request-ID": "trace-7"}}),
        ("GET", f"/v1/me{query}{'&' if query else '?'}unknown=1&unknown=2&take=x", {}),
        ("GET", f"/v1/me/{query}", {}),
        ("GET", f"/me/{query}", {}),
        ("HEAD", f"/v1/me{query}", {}),
        ("OPTIONS", f"/v1/me{query}", {}),
        (
            "OPTIONS",
            f"/v1/me{query}",
            {"headers": {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}},
        ),
        ("POST", f"/v1/me{query}", {"json": {}}),
    ]


async def assert_same(pair: Pair, key: str | None) -> list[int]:
    statuses = []
    for method, url, kwargs in ask(key):
        lane, plain = await both(pair, method, url, **kwargs)
        assert lane == plain, (method, url, kwargs)
        statuses.append(lane[0])
    return statuses


async def test_a_valid_key_in_every_form(pairs: Callable[..., Any]) -> None:
    pair = await pairs()
    _user_id, _key_id, key = await add_user(pair.lane, "alice")
    statuses = await assert_same(pair, key)
    # The lane's answers, then the hand-offs: redirects, 405s and CORS's own preflight answer.
    assert statuses == [200] * 6 + [307, 307, 405, 405, 200, 405], statuses


async def test_no_key_and_a_bad_key(pairs: Callable[..., Any]) -> None:
    pair = await pairs()
    assert (await assert_same(pair, None))[0] == 401
    assert (await assert_same(pair, "cal_" + "0" * 32))[0] == 401
    assert (await assert_same(pair, "nonsense"))[0] == 401


async def test_an_expired_key(pairs: Callable[..., Any]) -> None:
    pair = await pairs()
    expired = datetime.now(UTC) - timedelta(days=1)
    _user_id, _key_id, key = await add_user(pair.lane, "alice", expires_at=expired)
    assert (await assert_same(pair, key))[0] == 401


async def test_a_revoked_key_and_a_locked_user(pairs: Callable[..., Any]) -> None:
    pair = await pairs()
    user_id, key_id, key = await add_user(pair.lane, "alice")
    _other_id, other_key_id, other_key = await add_user(pair.lane, "bob")
    assert (await assert_same(pair, key))[0] == 200  # cached in both apps now
    async with pair.lane.state.sessions() as session, session.begin():
        await session.execute(delete(ApiKey).where(ApiKey.id == key_id))
        await session.execute(update(User).where(User.username == "bob").values(locked=True))
    for app in pair.apps:  # what the services do after such a commit
        await app.state.authenticator.revoke_cached()
    assert (await assert_same(pair, key))[0] == 401
    assert (await assert_same(pair, other_key))[0] == 403
    assert user_id and other_key_id


async def test_rate_limited(pairs: Callable[..., Any]) -> None:
    pair = await pairs(rate_limit="3/minute")
    _user_id, _key_id, key = await add_user(pair.lane, "alice")
    statuses = []
    for _ in range(5):
        lane, plain = await both(pair, "GET", f"/v1/me?apiKey={key}")
        assert lane == plain
        statuses.append(lane[0])
    assert statuses == [200, 200, 200, 429, 429]
    assert (await assert_same(pair, key))[0] == 429


def keeping_scopes(app: Any, seen: list[dict[str, Any]]) -> Any:
    """``app``, keeping the scope of each request it serves in ``seen`` (as the app left it:
    what routing, or the lane, put in it)."""

    async def keeping_scope(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await app(scope, receive, send)

    return keeping_scope


async def test_the_lane_serves_me_without_the_router(pairs: Callable[..., Any]) -> None:
    """Starlette's router marks each scope it handles (``scope["router"]``): a lane answer has
    no such mark, a hand-off (a trailing slash) has."""
    pair = await pairs()
    _user_id, _key_id, key = await add_user(pair.lane, "alice")
    for app, path, routed in (
        (pair.lane, "/v1/me", False),
        (pair.lane, "/me", False),
        (pair.lane, "/v1/me/", True),
        (pair.plain, "/v1/me", True),
    ):
        seen: list[dict[str, Any]] = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=keeping_scopes(app, seen)),
            base_url="http://bookable.test",
        ) as http:
            response = await http.get(path, params={"apiKey": key})
        assert response.status_code in (200, 307), response.text
        assert ("router" in seen[0]) is routed, path


async def test_dependency_overrides_are_never_skipped(pairs: Callable[..., Any]) -> None:
    """The lane calls `authenticate` itself: with an override set, FastAPI answers instead."""
    pair = await pairs()
    _user_id, _key_id, key = await add_user(pair.lane, "alice")

    async def refuse_everyone() -> None:
        raise ApiError(418, "overridden")

    for app in pair.apps:
        app.dependency_overrides[authenticate] = refuse_everyone
    lane, plain = await both(pair, "GET", f"/v1/me?apiKey={key}")
    assert lane == plain
    assert lane[0] == 418


async def test_metrics_count_lane_answers_as_the_router_does(pairs: Callable[..., Any]) -> None:
    pair = await pairs(metrics="on")
    _user_id, _key_id, key = await add_user(pair.lane, "alice")

    async def counted(http: httpx.AsyncClient, url: str) -> dict[Any, float]:
        """The counters (and histogram counts) one request moved, by name and labels."""

        async def scrape() -> dict[Any, float]:
            text = (await http.get("/metrics")).text
            return {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith("bookable_")
                and sample.name.endswith(("_total", "_count"))
            }

        before = await scrape()
        await http.get(url)
        after = await scrape()
        return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}

    for url in (f"/v1/me?apiKey={key}", f"/me?apiKey={key}", "/v1/me"):
        lane = await counted(pair.lane_http, url)
        plain = await counted(pair.plain_http, url)
        assert lane == plain, url
        labels = {dict(labels).get("route") for _name, labels in lane}
        assert "/v1/me" in labels, lane


@pytest.fixture
def access_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    old_level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        stream.seek(0)
        stream.truncate()
        return found

    try:
        yield lines
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)


async def test_json_access_lines_are_the_same(
    pairs: Callable[..., Any], access_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    pair = await pairs(log_format="json", metrics="on")
    user_id, _key_id, key = await add_user(pair.lane, "alice")
    for url in (f"/v1/me?apiKey={key}", f"/me?apiKey={key}", "/v1/me?apiKey=bad"):
        written = []
        for http in (pair.lane_http, pair.plain_http):
            access_lines()
            await http.get(url, headers={"X-Request-ID": "trace-9"})
            (line,) = access_lines()
            assert key not in json.dumps(line)
            written.append({k: v for k, v in line.items() if k not in ("time", "duration_ms")})
        assert written[0] == written[1], url
        assert written[0]["route"] == "/v1/me"
        assert written[0]["user_id"] == (None if url.endswith("bad") else user_id)


# GET /v1/slots: query parameters, the caller and the request's session, through the lane.
SLOTS_NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WINDOW = "startTime=2026-03-27&endTime=2026-03-30"


async def slots_owner(pair: Pair, username: str) -> tuple[int, str, int]:
    """A user with Berlin hours, a 30-minute event type and a booking in the window."""
    user_id, _key_id, key = await add_user(pair.lane, username)
    await add_schedule(pair.lane, user_id, "Europe/Berlin")
    event_type_id = await add_event_type(pair.lane, user_id, length=30)
    await add_booking(
        pair.lane,
        user_id,
        datetime(2026, 3, 27, 10, 0, tzinfo=UTC),
        datetime(2026, 3, 27, 11, 0, tzinfo=UTC),
        event_type_id=event_type_id,
    )
    return user_id, key, event_type_id


def slots_asks(key: str | None, event_type_id: int, username: str) -> list[str]:
    """Query strings of GET /v1/slots: answers with slots, then every kind of refusal."""
    auth = f"apiKey={key}&" if key is not None else ""
    ask = f"{auth}eventTypeId={event_type_id}&{WINDOW}"
    return [
        ask,
        f"{ask}&timeZone=Europe/Berlin",  # the window holds a DST change
        f"{ask}&timeZone=Asia/Kolkata&duration=30",
        f"{ask}&timeZone=%2B00:00",
        f"{auth}usernameList={username}&eventTypeSlug=meet&{WINDOW}",
        # Two usernames: a dynamic group event, refused.
        f"{auth}usernameList={username}&usernameList=x&eventTypeSlug=meet&{WINDOW}",
        f"{auth}eventTypeId={event_type_id}&startDateTime=2026-03-27T00:00:00Z"
        "&endDateTime=2026-03-28T00:00:00Z",
        f"{auth}{WINDOW}",  # no event type named
        f"{auth}eventTypeId=abc&{WINDOW}",
        f"{auth}eventTypeId=1.0&{WINDOW}",
        f"{auth}eventTypeId={event_type_id}&eventTypeId={event_type_id}&{WINDOW}",
        f"{auth}eventTypeId=99999999&{WINDOW}",
        f"{auth}eventTypeId=99999999999999999999999&{WINDOW}",
        f"{auth}usernameList=nobody&eventTypeSlug=meet&{WINDOW}",
        f"{ask}&duration=abc",
        f"{ask}&duration=0",
        f"{ask}&duration=45",
        f"{ask}&timeZone=Mars/Olympus",
        f"{ask}&unknown=1&unknown=2",
        f"{auth}eventTypeId={event_type_id}&endTime=2026-03-30",
        f"{auth}eventTypeId={event_type_id}&startTime=next%20tuesday&endTime=2026-03-30",
        f"{auth}eventTypeId={event_type_id}&startTime=2026-03-30&endTime=2026-03-27",
        f"{auth}eventTypeId={event_type_id}&startTime=2026-01-01&endTime=2027-06-01",
        f"{ask}&rescheduleUid=nothing-such",
    ]


async def assert_same_slots(pair: Pair, key: str | None, event_type_id: int, user: str) -> list:
    statuses = []
    for query in slots_asks(key, event_type_id, user):
        for method, path, kwargs in (
            ("GET", f"/v1/slots?{query}", {}),
            ("GET", f"/slots?{query}", {"headers": {"Origin": ORIGIN}}),
        ):
            lane, plain = await both(pair, method, path, **kwargs)
            assert lane == plain, (method, path)
        statuses.append(lane[0])
    for method, path in (("GET", "/v1/slots/"), ("HEAD", "/v1/slots"), ("POST", "/v1/slots")):
        lane, plain = await both(pair, method, f"{path}?{slots_asks(key, event_type_id, user)[0]}")
        assert lane == plain, (method, path)
    return statuses


async def test_slots_answers_and_refusals_are_the_same(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=SLOTS_NOW)
    _user_id, key, event_type_id = await slots_owner(pair, "alice")
    statuses = await assert_same_slots(pair, key, event_type_id, "alice")
    # An unknown parameter is let be (index 18), as FastAPI does.
    expected = [200] * 5 + [400, 200] + [400] * 4 + [404] * 3 + [400] * 4 + [200]
    assert statuses == expected + [400] * 4 + [200], statuses
    first = (await pair.lane_http.get(f"/v1/slots?{slots_asks(key, event_type_id, 'a')[0]}")).json()
    assert sum(len(day) for day in first["slots"].values()) > 20, first


async def test_slots_of_another_user_and_without_a_good_key(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=SLOTS_NOW)
    _alice_id, _alice_key, alices = await slots_owner(pair, "alice")
    _bob_id, bob_key_id, bob_key = await add_user(pair.lane, "bob")
    # Bob sees none of Alice's event types, by id or by name.
    statuses = await assert_same_slots(pair, bob_key, alices, "alice")
    assert statuses[0] == statuses[4] == 404, statuses
    for key in (None, "cal_" + "0" * 32):
        assert set(await assert_same_slots(pair, key, alices, "alice")) == {401}
    async with pair.lane.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.username == "bob").values(locked=True))
    for app in pair.apps:
        await app.state.authenticator.revoke_cached()
    assert set(await assert_same_slots(pair, bob_key, alices, "alice")) == {403}
    assert bob_key_id


async def test_slots_rate_limited(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=SLOTS_NOW, rate_limit="2/minute")
    _user_id, key, event_type_id = await slots_owner(pair, "alice")
    statuses = []
    for query in slots_asks(key, event_type_id, "alice")[:4]:
        lane, plain = await both(pair, "GET", f"/v1/slots?{query}")
        assert lane == plain
        statuses.append(lane[0])
    assert statuses == [200, 200, 429, 429]


async def test_the_lane_serves_slots_without_the_router(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=SLOTS_NOW)
    _user_id, key, event_type_id = await slots_owner(pair, "alice")
    query = slots_asks(key, event_type_id, "alice")[0]
    for app, routed in ((pair.lane, False), (pair.plain, True)):
        seen: list[dict[str, Any]] = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=keeping_scopes(app, seen)),
            base_url="http://bookable.test",
        ) as http:
            response = await http.get(f"/v1/slots?{query}")
        assert response.status_code == 200, response.text
        assert ("router" in seen[0]) is routed


QUERY_KEYS = [f.alias for f in slots_router.routes[0].dependant.query_params] + ["apiKey", "x"]
QUERY_VALUES = ["", "1", "0", "-1", "1.0", "abc", "2027-03-01", "Europe/Berlin", "1441", " 7"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.sampled_from(QUERY_VALUES))))
def test_the_lanes_query_reader_is_fastapis(pairs_of_query: list[tuple[str, str]]) -> None:
    """Values and errors (their order included) as `request_params_to_args` gives them."""
    fields = slots_router.routes[0].dependant.query_params
    query = QueryParams(pairs_of_query)
    assert query_reader(fields)(query) == request_params_to_args(fields, query)


# POST /v1/bookings: a JSON body, the route class's idempotency and counters, through the lane.
BOOKING_NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday; 2026-12-01 is a Tuesday
# The body's own ids: a booking answered twice (once per app) differs only in these.
_BOOKING_IDS = re.compile(rb'"(id|bookingId)":\d+')


async def booking_owner(pair: Pair, username: str) -> tuple[int, str, int]:
    """A user working 09:00-17:00 UTC on weekdays, with a 30-minute event type."""
    user_id, _key_id, key = await add_user(pair.lane, username)
    await add_schedule(pair.lane, user_id, "UTC")
    return user_id, key, await add_event_type(pair.lane, user_id, length=30)


def booking_bodies(event_type_id: int, hour: int = 10) -> list[dict[str, Any]]:
    """One body of each form Bookable takes, for 2026-12-01 at ``hour`` UTC."""
    start = f"2026-12-01T{hour:02d}:00:00Z"
    return [
        {  # modern
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "Europe/Berlin",
            "language": "de",
            "metadata": {"source": "lane"},
            "responses": {"name": "Ann Booker", "email": "ann@example.com", "guests": ["g@x.io"]},
        },
        {  # legacy, custom inputs
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "America/New_York",
            "language": "en",
            "metadata": {},
            "name": "Leo Legacy",
            "email": "leo@example.com",
            "notes": "legacy notes",
            "customInputs": [{"label": "Company", "value": "Acme"}],
        },
        {  # the seed summary's form
            "eventTypeId": event_type_id,
            "startTime": start,
            "endTime": f"2026-12-01T{hour:02d}:30:00Z",
            "name": "Andre Souza",
            "email": "andre@example.com",
            "timeZone": "America/Chicago",
        },
    ]


def booking_normalised(answer: Answer) -> Answer:
    """A new booking's answer with its ids and uid as placeholders (content-length with them)."""
    status, headers, body = answer
    if (
        status != 200
        or b'"uid":"' not in body
        or any(name == b"idempotency-replayed" for name, _ in headers)
    ):
        return answer
    uid = json.loads(body)["uid"].encode()
    body = _BOOKING_IDS.sub(rb'"\1":<id>', body.replace(uid, b"<uid>"))
    headers = [(n, b"<length>" if n == b"content-length" else v) for n, v in headers]
    return status, headers, body


async def free_the_slot(pair: Pair, answer: Answer) -> None:
    """Cancel the booking an answer made (in the database: no request either app counts), so
    that the other app can make it again."""
    if answer[0] == 200 and not any(n == b"idempotency-replayed" for n, _ in answer[1]):
        booking_id = json.loads(answer[2])["id"]
        async with pair.lane.state.sessions() as session, session.begin():
            await session.execute(
                update(Booking)
                .where(Booking.id == booking_id)
                .values(status=BookingStatus.CANCELLED)
            )


async def both_book(
    pair: Pair, url: str, key: str, *, free: bool = True, **kwargs: Any
) -> tuple[Answer, Answer]:
    """The same POST to each app; a booking one app made is cancelled before the other is
    asked (and after, unless ``free`` is False)."""
    sent_id = "x-request-id" in {k.lower() for k in kwargs.get("headers", {})}
    lane = normalised(await pair.lane_http.post(url, **kwargs), client_request_id=sent_id)
    await free_the_slot(pair, lane)
    plain = normalised(await pair.plain_http.post(url, **kwargs), client_request_id=sent_id)
    if free:
        await free_the_slot(pair, plain)
    return booking_normalised(lane), booking_normalised(plain)


async def test_bookings_in_every_form_are_the_same(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=BOOKING_NOW)
    _user_id, key, event_type_id = await booking_owner(pair, "alice")
    statuses = []
    for body in booking_bodies(event_type_id):
        for url, headers in (
            (f"/v1/bookings?apiKey={key}", {}),
            ("/bookings", {"Authorization": f"Bearer {key}", "Origin": ORIGIN}),
            (f"/v1/bookings?apiKey={key}", {"X-Request-ID": "trace-3"}),
        ):
            lane, plain = await both_book(pair, url, key, json=body, headers=headers)
            assert lane == plain, (url, body)
            statuses.append(lane[0])
    assert statuses == [200] * 9, statuses
    # Taken: the slot is booked, then asked for again by both.
    first = await pair.lane_http.post(
        f"/v1/bookings?apiKey={key}", json=booking_bodies(event_type_id)[0]
    )
    assert first.status_code == 200, first.text
    lane, plain = await both_book(
        pair, f"/v1/bookings?apiKey={key}", key, json=booking_bodies(event_type_id)[1]
    )
    assert lane == plain
    assert lane[0] == 409, lane


class Chunks:
    """A body sent in chunks without a length (each iteration sends it again)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def refused_bodies(event_type_id: int) -> list[dict[str, Any]]:
    """httpx arguments of POST /v1/bookings that are refused, each for its own reason (and
    one with extra fields, accepted)."""
    good = booking_bodies(event_type_id)[0]
    json_type = {"Content-Type": "application/json"}
    return [
        {"content": b'{"eventTypeId": 1, ', "headers": json_type},  # invalid JSON
        {"content": b"[1, 2]", "headers": json_type},
        {"content": b'"a text"', "headers": json_type},
        {"content": b"null", "headers": json_type},
        {"content": b"17", "headers": json_type},
        {"content": b"", "headers": json_type},  # empty
        {"content": b"", "headers": {}},
        {"content": json.dumps(good).encode(), "headers": {"Content-Type": "text/plain"}},
        {"content": json.dumps(good).encode(), "headers": {}},  # no content type
        {
            "content": json.dumps(good).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        {"content": b'{"eventTypeId": "\xff\xfe"}', "headers": json_type},  # not UTF-8
        {"content": b"\xef\xbb\xbf{}", "headers": json_type},  # a byte order mark
        {"content": b'{"eventTypeId": NaN}', "headers": json_type},
        {"json": good | {"eventTypeId": "abc"}},  # wrong types
        {"json": good | {"eventTypeId": [1]}},
        {"json": good | {"start": 12}},
        {"json": good | {"responses": "Ann"}},
        {"json": good | {"metadata": []}},
        {"json": {}},  # missing fields
        {"json": {"eventTypeId": event_type_id}},
        {"json": {k: v for k, v in good.items() if k != "responses"}},
        {"json": good | {"unknownField": 1, "another": {"x": None}}},  # extra fields
        {"json": good | {"start": "2026-12-01T10:00:00\u0000Z"}},  # NUL
        {  # a lone surrogate, escaped (as JSON may write it; UTF-8 cannot)
            "content": json.dumps(good | {"responses": {"name": "\ud800", "email": "a@b.io"}}),
            "headers": json_type,
        },
        {"json": good | {"start": "2026-12-01T03:00:00Z"}},  # outside working hours
        {"json": good | {"start": "2025-12-01T10:00:00Z"}},  # in the past
        {"json": good | {"eventTypeId": 99999999}},  # no such event type
        {"json": good | {"eventTypeId": 99999999999999999999999}},
        {"content": b"x" * 1_048_577, "headers": json_type},  # over the size limit
        {"content": Chunks([b"{", b" " * 1_048_576, b"}"]), "headers": json_type},  # chunked
    ]


async def test_booking_refusals_are_the_same(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=BOOKING_NOW)
    _user_id, key, event_type_id = await booking_owner(pair, "alice")
    _other_id, other_key, _others = await add_user(pair.lane, "bob")
    statuses = []
    for index, kwargs in enumerate(refused_bodies(event_type_id)):
        for url in (f"/v1/bookings?apiKey={key}", f"/bookings?apiKey={key}"):
            lane, plain = await both_book(pair, url, key, **kwargs)
            assert lane == plain, (index, url)
        statuses.append(lane[0])
    # Extra fields are let be (index 21), as Cal.com does; outside hours is taken (409).
    assert statuses == [400] * 21 + [200, 400, 400, 409, 400, 404, 404, 413, 413], statuses
    # Without a good key, with a good body and with bad ones: the body is read first.
    for url_key in (None, "cal_" + "0" * 32, other_key):
        query = f"?apiKey={url_key}" if url_key else ""
        for kwargs in [
            {"json": booking_bodies(event_type_id)[0]},
            *refused_bodies(event_type_id)[:3],
        ]:
            lane, plain = await both_book(pair, f"/v1/bookings{query}", key, **kwargs)
            assert lane == plain, (url_key, kwargs)
    # What the lane passes on: a trailing slash, other methods.
    for method, path in (
        ("POST", "/v1/bookings/"),
        ("PUT", "/v1/bookings"),
        ("PATCH", "/v1/bookings"),
    ):
        lane, plain = await both(pair, method, f"{path}?apiKey={key}", json={})
        assert lane == plain, (method, path)


async def test_a_locked_user_and_a_rate_limit_book_the_same(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=BOOKING_NOW, rate_limit="3/minute")
    _user_id, key, event_type_id = await booking_owner(pair, "alice")
    statuses = []
    for hour in (10, 11, 12, 13):
        lane, plain = await both_book(
            pair, f"/v1/bookings?apiKey={key}", key, json=booking_bodies(event_type_id, hour)[2]
        )
        assert lane == plain
        statuses.append(lane[0])
    assert statuses == [200, 200, 200, 429], statuses
    async with pair.lane.state.sessions() as session, session.begin():
        await session.execute(update(User).where(User.username == "alice").values(locked=True))
    for app in pair.apps:
        await app.state.authenticator.revoke_cached()
    lane, plain = await both_book(pair, f"/v1/bookings?apiKey={key}", key, json={})
    assert lane == plain


async def test_idempotency_keys_are_the_same(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=BOOKING_NOW)
    user_id, key, event_type_id = await booking_owner(pair, "alice")
    url = f"/v1/bookings?apiKey={key}"
    body = booking_bodies(event_type_id)[0]
    # First use: each app with a key of its own.
    first: dict[str, Answer] = {}
    for name, http, idempotency_key in (
        ("lane", pair.lane_http, "k-lane"),
        ("plain", pair.plain_http, "k-plain"),
    ):
        answer = normalised(
            await http.post(url, json=body, headers={"Idempotency-Key": idempotency_key}),
            client_request_id=False,
        )
        first[name] = booking_normalised(answer)
        if name == "lane":
            await free_the_slot(pair, answer)
    assert first["lane"] == first["plain"]
    assert first["lane"][0] == 200
    # Replays of one stored answer, by either app, and the replays' own refusals.
    statuses = []
    for idempotency_key, sent in (
        ("k-plain", body),  # replayed (the slot is taken by then)
        ("k-lane", body),  # replayed (that booking was cancelled since)
        ("k-plain", body | {"language": "fr"}),  # another body: 409
        ("k-plain", {"content": b"{not json"}),  # no content type: bytes, another body
        ("", body),  # too short
        ("x" * 256, body),
        ("caf\u00e9", body),  # not ASCII: httpx sends it as UTF-8 bytes
        ("k-new", {"json": {}}),  # a new key with a bad body: refused, the key left free
    ):
        kwargs = sent if "content" in sent or "json" in sent else {"json": sent}
        headers = {"Idempotency-Key": idempotency_key.encode()}
        lane, plain = await both_book(pair, url, key, headers=headers, **kwargs)
        assert lane == plain, (idempotency_key, sent)
        replayed = (b"idempotency-replayed", b"true") in lane[1]
        statuses.append((lane[0], replayed))
    assert statuses == [(200, True)] * 2 + [(409, False)] * 2 + [(400, False)] * 4, statuses
    statuses = []
    # A key first used on another route, and one still in flight (a row without an answer,
    # as another process would hold it): 409 from both.
    async with pair.lane.state.sessions() as session, session.begin():
        for idempotency_key, path, status in (
            ("k-route", "/v1/schedules", 200),
            ("k-running", "/v1/bookings", None),
        ):
            session.add(
                IdempotencyKey(
                    user_id=user_id,
                    key=idempotency_key,
                    method="POST",
                    path=path,
                    request_hash=request_hash(
                        Request({"type": "http", "query_string": b""}), json.dumps(body).encode()
                    ),
                    response_status=status,
                    response_body="{}" if status else None,
                    response_content_type="application/json" if status else None,
                    created_at=BOOKING_NOW,
                )
            )
    for idempotency_key in ("k-route", "k-running"):
        lane, plain = await both_book(
            pair, url, key, json=body, headers={"Idempotency-Key": idempotency_key}
        )
        assert lane == plain, idempotency_key
        statuses.append(lane[0])
    assert statuses == [409, 409], statuses


async def test_the_lane_serves_bookings_without_the_router(pairs: Callable[..., Any]) -> None:
    pair = await pairs(clock=BOOKING_NOW)
    _user_id, key, event_type_id = await booking_owner(pair, "alice")
    for app, path, hour, routed in (
        (pair.lane, "/v1/bookings", 10, False),
        (pair.lane, "/bookings", 11, False),
        (pair.plain, "/v1/bookings", 12, True),
    ):
        seen: list[dict[str, Any]] = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=keeping_scopes(app, seen)),
            base_url="http://bookable.test",
        ) as http:
            response = await http.post(
                f"{path}?apiKey={key}", json=booking_bodies(event_type_id, hour)[0]
            )
        assert response.status_code == 200, response.text
        assert ("router" in seen[0]) is routed, path


async def test_booking_metrics_and_access_lines_are_the_same(
    pairs: Callable[..., Any], access_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    """Per request, the same counters move (the booking ones included) and the same JSON
    access line is written."""
    pair = await pairs(clock=BOOKING_NOW, metrics="on", log_format="json")
    user_id, key, event_type_id = await booking_owner(pair, "alice")

    async def scrape(http: httpx.AsyncClient) -> dict[Any, float]:
        text = (await http.get("/metrics")).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("bookable_") and sample.name.endswith(("_total", "_count"))
        }

    body = booking_bodies(event_type_id)[0]
    cases: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/bookings?apiKey={key}", {"json": body}),
        (f"/bookings?apiKey={key}", {"json": body}),
        # A key's first use (one per app), then a replay (of the plain app's answer).
        (f"/v1/bookings?apiKey={key}", {"json": body, "headers": {"Idempotency-Key": "{which}"}}),
        (f"/v1/bookings?apiKey={key}", {"json": body, "headers": {"Idempotency-Key": "plain"}}),
        (f"/v1/bookings?apiKey={key}", {"json": {}}),
        (
            f"/v1/bookings?apiKey={key}",
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
        ),
        (f"/v1/bookings?apiKey={key}", {"json": body | {"eventTypeId": 999999}}),
        (f"/v1/bookings?apiKey={key}", {"json": body | {"start": "2025-12-01T10:00:00Z"}}),
        ("/v1/bookings?apiKey=cal_" + "0" * 32, {"json": body}),
    ]
    booking_counters = []
    user_ids = []
    for url, kwargs in cases:
        moved = []
        written = []
        answers = []
        for which, http in (("lane", pair.lane_http), ("plain", pair.plain_http)):
            before = await scrape(http)
            access_lines()
            headers = {k: v.format(which=which) for k, v in kwargs.get("headers", {}).items()}
            headers["X-Request-ID"] = "trace-5"
            response = await http.post(url, **(kwargs | {"headers": headers}))
            (line,) = access_lines()
            after = await scrape(http)
            moved.append(
                {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
            )
            written.append({k: v for k, v in line.items() if k not in ("time", "duration_ms")})
            answer = normalised(response, client_request_id=True)
            answers.append(booking_normalised(answer))
            await free_the_slot(pair, answer)
        assert moved[0] == moved[1], (url, kwargs)
        assert written[0] == written[1], url
        assert answers[0] == answers[1], url
        assert written[0]["route"] == "/v1/bookings"
        user_ids.append(written[0]["user_id"])
        booking_counters.append(
            {(name, *dict(labels).values()) for name, labels in moved[0] if "bookings" in name}
        )
    # A body that is not JSON is refused before the key is looked at: nobody is named.
    assert user_ids == [user_id] * 5 + [None, user_id, user_id, None], user_ids
    created = {("bookable_bookings_created_total",)}
    assert booking_counters[:4] == [created, created, created, set()], booking_counters
    assert booking_counters[4:] == [
        {("bookable_bookings_refused_total", reason)}
        for reason in ("validation", "validation", "not_found", "out_of_bounds", "unauthenticated")
    ], booking_counters


@pytest.fixture
async def booking_pair(pairs: Callable[..., Any]) -> tuple[Pair, str, int]:
    """A pair, and a key and an event type of its user (shared by a hypothesis test's examples:
    each cancels what it booked)."""
    pair = await pairs(clock=BOOKING_NOW)
    _user_id, key, event_type_id = await booking_owner(pair, "alice")
    return pair, key, event_type_id


BODY_KEYS = [
    "eventTypeId", "start", "end", "startTime", "endTime", "timeZone", "language", "metadata",
    "responses", "name", "email", "guests", "notes", "customInputs", "location", "title",
    "recurringCount", "userId", "rescheduleUid", "hasHashedBookingLink", "x",
]  # fmt: skip
BODY_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:30:00Z",
            "2026-12-01T10:00:00+01:00",
            "2026-12-01",
            "next tuesday",
            "Europe/Berlin",
            "UTC",
            "Mars/Olympus",
            "en",
            "de",
            "ann@example.com",
            "not an email",
            "\u00e9t\u00e9",
            "\x00",
            "a" * 300,
        ]
    ),
    st.text(max_size=8),
)
BODY_VALUES = st.recursive(
    BODY_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "email", "guests", "label", "value", "x"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
async def test_body_shapes_are_answered_the_same(
    booking_pair: tuple[Pair, str, int], data: st.DataObject
) -> None:
    """Whatever JSON a client sends, the lane answers what FastAPI answers (a valid event type
    and start often drawn, so that bookings are made too)."""
    pair, key, event_type_id = booking_pair
    keys = BODY_KEYS
    body = data.draw(
        st.one_of(
            st.dictionaries(st.sampled_from(keys), BODY_VALUES, max_size=8),
            st.fixed_dictionaries(
                {"eventTypeId": st.sampled_from([event_type_id, str(event_type_id), 0])},
                optional={k: BODY_VALUES for k in keys[1:]},
            ),
            BODY_VALUES,
        )
    )
    lane, plain = await both_book(pair, f"/v1/bookings?apiKey={key}", key, json=body)
    assert lane == plain, body
    assert lane[0] < 500, (body, lane)
