"""The shared pagination type and the strict URL parameters (core/pagination.py, core/params.py)."""

from __future__ import annotations

import pytest

from bookable.core.pagination import MAX_PAGE, MAX_TAKE

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

HUGE = "9" * 30  # beyond any integer column: was a 500 (integer overflow) on both lists


@pytest.mark.parametrize("route", ["/v1/users", "/v1/bookings"])
@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"take": HUGE, "page": "1"}, "take", "too_big"),
        ({"take": "1", "page": HUGE}, "page", "too_big"),
        ({"take": str(MAX_TAKE + 1), "page": "1"}, "take", "too_big"),
        ({"take": "1", "page": str(MAX_PAGE + 1)}, "page", "too_big"),
        ({"take": "0", "page": "1"}, "take", "too_small"),
        ({"take": "1", "page": "0"}, "page", "too_small"),
        ({"take": "-5", "page": "1"}, "take", "too_small"),
        ({"take": "1", "page": "-1"}, "page", "too_small"),
        ({"take": "ten", "page": "1"}, "take", "invalid_type"),
        ({"take": "1", "page": "1.0"}, "page", "invalid_type"),
        ({"take": "1e3", "page": "1"}, "take", "invalid_type"),
        ({"take": "1", "page": "1", "take ": "x"}, None, None),
    ],
)
async def test_pagination_bounds(client, admin, route, params, field, code):
    r = await client.get(route, params={**admin.params, **params})
    if field is None:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"{code} in '{field}'"), r.text


@pytest.mark.parametrize("route", ["/v1/users", "/v1/bookings"])
async def test_the_largest_page_is_served(client, admin, route):
    r = await client.get(
        route, params={**admin.params, "take": str(MAX_TAKE), "page": str(MAX_PAGE)}
    )
    assert r.status_code == 200, r.text
    assert r.json()[route.rsplit("/", 1)[1]] == []


async def test_users_page_by_ten_by_default(client, admin, make_account):
    for n in range(11):
        await make_account(f"user{n:02d}")
    r = await client.get("/v1/users", params=admin.params)
    assert r.status_code == 200
    assert len(r.json()["users"]) == 10 and r.json()["total"] == 12
    r = await client.get("/v1/users", params={**admin.params, "page": "2"})
    assert len(r.json()["users"]) == 2


async def test_webhook_deliveries_share_the_type(client, alice):
    r = await client.get("/v1/webhooks/x/deliveries", params={**alice.params, "take": HUGE})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("too_big in 'take'")


DAYS = {"dateFrom": "2026-01-01", "dateTo": "2026-01-02"}


@pytest.mark.parametrize(
    ("route", "params", "message"),
    [
        ("/v1/users", {"take": ["1", "2"]}, "invalid_type in 'take': Expected a single value"),
        ("/v1/availability", {"userId": ["1", "2"], **DAYS},
         "invalid_type in 'userId': Expected a single value"),
        ("/v1/availability", {"userId": "0.0", **DAYS},
         "invalid_type in 'userId': Expected integer, received float"),
        ("/v1/availability", {"userId": "1.0", **DAYS},
         "invalid_type in 'userId': Expected integer, received float"),
        ("/v1/availability", {"userId": "1e2", **DAYS},
         "invalid_type in 'userId': Expected integer, received float"),
        ("/v1/availability", {"userId": " 1", **DAYS},
         "invalid_type in 'userId': Expected integer, received float"),
        ("/v1/bookings", {"userId": ["1", "x"]}, "invalid_type in 'userId,1': Expected number"),
        ("/v1/bookings", {"userId": "1_000"}, "invalid_type in 'userId,0': Expected number, "
         "received nan"),
        ("/v1/slots", {"eventTypeId": "1", "eventTypeSlug": ["a", "b"]},
         "invalid_type in 'eventTypeSlug': Expected a single value"),
        ("/v1/schedules/1.0", {}, "invalid_type in 'id': Expected integer, received float"),
    ],
)  # fmt: skip
async def test_strict_url_parameters(client, admin, route, params, message):
    r = await client.get(route, params={**admin.params, **params})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(message), r.text


async def test_list_parameters_may_repeat(client, admin, alice, bob):
    r = await client.get(
        "/v1/bookings", params={**admin.params, "userId": [str(alice.id), str(bob.id)]}
    )
    assert r.status_code == 200, r.text


async def test_the_key_is_checked_before_the_parameters(client):
    r = await client.get("/v1/users", params={"take": HUGE})
    assert r.status_code == 401
