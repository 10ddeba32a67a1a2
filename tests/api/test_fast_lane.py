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
from fastapi import FastAPI
from fastapi.dependencies.utils import request_params_to_args
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, update
from starlette.datastructures import QueryParams

from bookable.api_keys.service import issue_key
from bookable.app import create_app
from bookable.core.auth import authenticate
from bookable.core.errors import ApiError
from bookable.core.fastlane import query_reader
from bookable.core.logging import ACCESS_LOGGER, JsonLogFormatter
from bookable.models import ApiKey, User, UserRole
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

        async def keeping_scope(
            scope: Any, receive: Any, send: Any, app: Any = app, seen: list[Any] = seen
        ) -> None:
            seen.append(scope)
            await app(scope, receive, send)

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=keeping_scope), base_url="http://bookable.test"
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

        async def keeping_scope(
            scope: Any, receive: Any, send: Any, app: Any = app, seen: list[Any] = seen
        ) -> None:
            seen.append(scope)
            await app(scope, receive, send)

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=keeping_scope), base_url="http://bookable.test"
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
