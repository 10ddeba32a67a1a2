"""GET /metrics on SQLite and PostgreSQL: route templates as labels, booking and rate-limit
counters, webhook deliveries by outcome, the outbox read at scrape time, the token setting.

Counters are per process and tests share the process: each test compares before and after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from bookable.app import create_app
from bookable.core.clock import clock
from bookable.models import Webhook, WebhookEvent, WebhookEventStatus
from bookable.settings import Settings
from bookable.webhooks.dispatcher import Dispatcher, DispatcherConfig
from tests.conftest import Account, client_for
from tests.webhook_receiver import receiving

from .scheduling_seed import add_event_type, add_schedule

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
TUESDAY_10 = "2026-01-06T10:00:00.000Z"
TOKEN = "scrape-token-0123"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(clock=NOW, metrics="on", webhook_dispatcher="off"))
    async with application.router.lifespan_context(application):
        yield application
    clock.freeze(None)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def booking_body(event_type_id: int, start: str = TUESDAY_10, **extra: Any) -> dict[str, Any]:
    return {
        "eventTypeId": event_type_id,
        "start": start,
        "timeZone": "Europe/Paris",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Guest", "email": "guest@example.com"},
        **extra,
    }


async def test_requests_are_counted_by_route_template_never_the_path_or_key(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    before = await scrape(client)
    assert (await client.get("/v1/me", params=alice.params)).status_code == 200
    assert (await client.get("/me", params=alice.params)).status_code == 200
    missing = await client.get("/v1/bookings/987654", params=alice.params)
    assert missing.status_code == 404
    assert (await client.get("/v1/no-such-thing/5551234")).status_code == 404
    response = await client.get("/metrics", params={"apiKey": alice.key})
    after = parse(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "bookable_http_requests_total"
    # Called without the version, a route is the same route: one series.
    assert delta(total, method="GET", route="/v1/me", status="200") == 2
    assert delta(total, method="GET", route="/me", status="200") == 0
    assert delta(total, method="GET", route="/v1/bookings/{id}", status="404") == 1
    assert delta(total, method="GET", route="unmatched", status="404") == 1
    histogram = "bookable_http_request_duration_seconds_count"
    assert delta(histogram, method="GET", route="/v1/me") == 2
    # Nothing of the request in the output: no key, no id, no raw path, no email.
    for secret in (alice.key, alice.key[-32:], "987654", "5551234", "no-such-thing", alice.email):
        assert secret not in response.text
    routes = {dict(labels).get("route") for (_name, labels) in after}
    assert all(r is None or r == "unmatched" or r.startswith("/") for r in routes)


async def test_an_unknown_method_shares_one_label(app: FastAPI, client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    await client.request("BREW", "/v1/me")
    after = await scrape(client)
    name = "bookable_http_requests_total"
    labels = {(dict(k[1]).get("method")) for k in after if k[0] == name}
    assert "BREW" not in labels
    assert sum(
        v for k, v in after.items() if k[0] == name and dict(k[1])["method"] == "OTHER"
    ) > sum(v for k, v in before.items() if k[0] == name and dict(k[1])["method"] == "OTHER")


async def test_metrics_is_not_in_the_openapi_document(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    assert not any("metrics" in path for path in document["paths"])


async def test_off_by_default_means_404(make_settings: Callable[..., Settings]) -> None:
    application = create_app(make_settings())
    async with application.router.lifespan_context(application), client_for(application) as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_the_token_is_needed_when_set_and_an_api_key_is_never_taken_instead(
    make_settings: Callable[..., Settings], make_account: Callable[..., Any]
) -> None:
    application = create_app(make_settings(metrics="on", metrics_token=TOKEN))
    async with application.router.lifespan_context(application), client_for(application) as c:
        root = await make_account("scraper")
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {root.key}"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ):
            refused = await c.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert "BOOKABLE_METRICS_TOKEN" in refused.json()["message"]
            assert TOKEN not in refused.text
        assert (await c.get("/metrics", params={"apiKey": root.key})).status_code == 401
        allowed = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200
        assert "bookable_http_requests_total" in allowed.text


async def test_metrics_spends_no_rate_limit(make_settings: Callable[..., Settings]) -> None:
    application = create_app(make_settings(metrics="on", rate_limit="1/minute"))
    async with application.router.lifespan_context(application), client_for(application) as c:
        for _ in range(3):
            response = await c.get("/metrics")
            assert response.status_code == 200
            assert "x-ratelimit-limit" not in response.headers


async def test_bookings_created_and_refused_by_reason(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await add_schedule(app, alice.id, "UTC")
    meet = await add_event_type(app, alice.id)
    before = await scrape(client)
    made = await client.post("/v1/bookings", params=alice.params, json=booking_body(meet))
    assert made.status_code == 200, made.text
    # The same slot again: the host is busy.
    taken = await client.post("/v1/bookings", params=alice.params, json=booking_body(meet))
    assert taken.status_code == 409
    # Saturday: outside the working hours is "unavailable" too (Cal.com's code is the same).
    weekend = booking_body(meet, "2026-01-10T10:00:00.000Z")
    assert (await client.post("/v1/bookings", params=alice.params, json=weekend)).status_code == 409
    past = booking_body(meet, "2026-01-02T10:00:00.000Z")
    assert (await client.post("/v1/bookings", params=alice.params, json=past)).status_code == 400
    no_zone = booking_body(meet, "2026-01-06T11:00:00.000Z", timeZone=None)
    assert (await client.post("/bookings", params=alice.params, json=no_zone)).status_code == 400
    unknown = booking_body(999_999)
    assert (await client.post("/v1/bookings", params=alice.params, json=unknown)).status_code == 404
    assert (await client.post("/v1/bookings", json=booking_body(meet))).status_code == 401
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bookable_bookings_created_total") == 1
    refused = "bookable_bookings_refused_total"
    assert delta(refused, reason="unavailable") == 2
    assert delta(refused, reason="out_of_bounds") == 1
    assert delta(refused, reason="validation") == 1
    assert delta(refused, reason="not_found") == 1
    assert delta(refused, reason="unauthenticated") == 1
    # Every reason is a series from the start, at 0 when nothing was refused for it.
    assert ("bookable_bookings_refused_total", frozenset({("reason", "seats_full")})) in after


async def test_an_idempotent_replay_is_not_a_new_booking(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    await add_schedule(app, alice.id, "UTC")
    meet = await add_event_type(app, alice.id)
    before = await scrape(client)
    for _ in range(2):
        response = await client.post(
            "/v1/bookings",
            params=alice.params,
            json=booking_body(meet),
            headers={"Idempotency-Key": "metrics-replay-1"},
        )
        assert response.status_code == 200, response.text
    assert response.headers.get("idempotency-replayed") == "true"
    after = await scrape(client)
    created = "bookable_bookings_created_total"
    assert value(after, created) - value(before, created) == 1


async def test_rate_limit_refusals_are_counted(
    make_settings: Callable[..., Settings], make_account: Callable[..., Any]
) -> None:
    application = create_app(make_settings(metrics="on", rate_limit="2/minute"))
    async with application.router.lifespan_context(application), client_for(application) as c:
        ann = await make_account("ann")
        before = await scrape(c)
        codes = [(await c.get("/v1/me", params=ann.params)).status_code for _ in range(2)]
        refused = await c.post("/v1/bookings", params=ann.params, json=booking_body(1))
        after = await scrape(c)
    assert codes == [200, 200] and refused.status_code == 429
    limited = "bookable_rate_limited_requests_total"
    assert value(after, limited) - value(before, limited) == 1
    reason = {"reason": "rate_limited"}
    refusals = "bookable_bookings_refused_total"
    assert value(after, refusals, **reason) - value(before, refusals, **reason) == 1
    status = {"method": "POST", "route": "/v1/bookings", "status": "429"}
    requests = "bookable_http_requests_total"
    assert value(after, requests, **status) - value(before, requests, **status) == 1


async def _hook(app: FastAPI, user_id: int, url: str, *, active: bool = True) -> str:
    async with app.state.sessions() as session, session.begin():
        hook = Webhook(
            user_id=user_id, subscriber_url=url, event_triggers=["BOOKING_CREATED"], active=active
        )
        session.add(hook)
        await session.flush()
        return hook.id


async def _event(app: FastAPI, hook_id: str, due: datetime, *, attempts: int = 0) -> None:
    async with app.state.sessions() as session, session.begin():
        session.add(
            WebhookEvent(
                webhook_id=hook_id,
                trigger="BOOKING_CREATED",
                body="{}",
                status=WebhookEventStatus.PENDING,
                attempts=attempts,
                next_attempt_at=due,
                created_at=NOW - timedelta(days=3),
            )
        )


async def test_deliveries_are_counted_by_outcome(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    due = NOW - timedelta(minutes=1)
    with receiving(script={"/bad": [500, 500]}) as receiver:
        fine = await _hook(app, alice.id, f"{receiver.url}/ok")
        bad = await _hook(app, alice.id, f"{receiver.url}/bad")
        off = await _hook(app, alice.id, f"{receiver.url}/off", active=False)
        await _event(app, fine, due)  # delivered
        await _event(app, bad, due)  # first of two attempts fails: retried
        await _event(app, bad, due, attempts=1)  # second of two fails: failed for good
        await _event(app, off, due)  # the webhook is off: dropped
        before = await scrape(client)
        dispatcher = Dispatcher(app.state.sessions, DispatcherConfig(timeout=5, max_attempts=2))
        try:
            assert await dispatcher.run_once() == 4
        finally:
            await dispatcher.aclose()
        after = await scrape(client)
    name = "bookable_webhook_deliveries_total"
    deltas = {
        outcome: value(after, name, outcome=outcome) - value(before, name, outcome=outcome)
        for outcome in ("delivered", "retrying", "failed", "dropped")
    }
    assert deltas == {"delivered": 1, "retrying": 1, "failed": 1, "dropped": 1}


async def test_the_outbox_is_read_at_scrape_time(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    empty = await scrape(client)
    assert value(empty, "bookable_webhook_outbox_events", state="due") == 0
    assert value(empty, "bookable_webhook_outbox_events", state="scheduled") == 0
    assert value(empty, "bookable_webhook_outbox_oldest_due_seconds") == 0
    hook = await _hook(app, alice.id, "http://127.0.0.1:9/never")
    await _event(app, hook, NOW - timedelta(minutes=10))
    await _event(app, hook, NOW - timedelta(minutes=2))
    await _event(app, hook, NOW + timedelta(days=1))  # a MEETING_* time, or a retry, later
    async with app.state.sessions() as session, session.begin():
        delivered = WebhookEvent(
            webhook_id=hook,
            trigger="BOOKING_CREATED",
            body="{}",
            status=WebhookEventStatus.DELIVERED,
            next_attempt_at=NOW - timedelta(hours=5),
        )
        session.add(delivered)
    samples = await scrape(client)
    assert value(samples, "bookable_webhook_outbox_events", state="due") == 2
    assert value(samples, "bookable_webhook_outbox_events", state="scheduled") == 1
    # Since it became due (not since it was written, three days ago); the clock runs on from
    # the frozen NOW, so a little more than ten minutes.
    oldest = value(samples, "bookable_webhook_outbox_oldest_due_seconds")
    assert 600 <= oldest < 660
