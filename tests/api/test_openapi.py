"""The OpenAPI document describes what the server really sends (core/openapi.py).

Every body below comes from a real call and is checked against the schema the document gives
for that operation and status, so a wire change that the document does not follow fails here.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from bookable.core.pagination import MAX_PAGE, MAX_TAKE

from .booking_helpers import TUESDAY_10, book, frozen_app, hosted_event_type

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
async def app(make_settings):
    async for application in frozen_app(make_settings):
        yield application


@pytest.fixture
async def spec(client) -> dict[str, Any]:
    response = await client.get("/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(spec: dict[str, Any]):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def check(spec: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """The response's body matches the schema documented for its status."""
    documented = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered undocumented {status}"
    schema = documented[status]["content"]["application/json"]["schema"]
    root = {**schema, "components": spec["components"]}
    errors = [e.message for e in jsonschema_rs.validator_for(root).iter_errors(response.json())]
    assert not errors, f"{method.upper()} {path} {status}: {errors[:3]}"


async def test_no_operation_documents_422(spec):
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in operations(spec):
        assert "422" not in operation["responses"], (method, path)


async def test_every_operation_documents_its_error_statuses(spec):
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        for status in ("401", "403", "429"):
            assert status in responses, (method, path, status)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), (method, path)
        if method != "get":
            assert "409" in responses, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)


async def test_every_success_body_has_a_precise_schema(spec):
    for path, method, operation in operations(spec):
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("additionalProperties") is not True, (method, path, schema)
        assert schema != {}, (method, path)


async def test_pagination_and_formats_are_documented(spec):
    params = {p["name"]: p["schema"] for p in spec["paths"]["/v1/users"]["get"]["parameters"]}
    assert params["take"]["maximum"] == MAX_TAKE and params["take"]["minimum"] == 1
    assert params["page"]["maximum"] == MAX_PAGE and params["page"]["default"] == 1
    bookings = {p["name"] for p in spec["paths"]["/v1/bookings"]["get"]["parameters"]}
    assert {"take", "page"} <= bookings
    webhook_id = spec["paths"]["/v1/webhooks/{id}"]["get"]["parameters"][0]["schema"]
    assert webhook_id["format"] == "uuid"
    key_id = spec["paths"]["/v1/api-keys/{id}"]["get"]["parameters"][0]["schema"]
    assert key_id["format"] == "uuid"
    membership = spec["paths"]["/v1/memberships/{id}"]["get"]["parameters"][0]["schema"]
    assert membership["pattern"] == "^[0-9]+_[0-9]+$"
    schemas = spec["components"]["schemas"]
    assert schemas["UserOut"]["properties"]["createdDate"]["format"] == "date-time"
    zone = schemas["ScheduleCreate"]["properties"]["timeZone"]
    assert "Europe/London" in zone["enum"]
    # A body key that refuses null is not documented as nullable; one that takes null is.
    update = schemas["UserUpdate"]["properties"]
    assert update["email"]["type"] == "string"
    assert {"type": "null"} in update["name"]["anyOf"]


async def test_bodies_match_the_document(app, client, spec, alice, admin):
    a = alice.params
    check(spec, "/v1/me", "get", await client.get("/v1/me", params=a))
    check(spec, "/v1/users", "get", await client.get("/v1/users", params=admin.params))
    check(spec, "/v1/users/{userId}", "get", await client.get(f"/v1/users/{alice.id}", params=a))
    created = await client.post(
        "/v1/schedules", params=a, json={"name": "Work", "timeZone": "Europe/Paris"}
    )
    check(spec, "/v1/schedules", "post", created)
    check(spec, "/v1/schedules", "get", await client.get("/v1/schedules", params=a))
    event_type_id = await hosted_event_type(app, alice)
    check(spec, "/v1/event-types", "get", await client.get("/v1/event-types", params=a))
    one = await client.get(f"/v1/event-types/{event_type_id}", params=a)
    check(spec, "/v1/event-types/{id}", "get", one)
    slots = await client.get(
        "/v1/slots",
        params={**a, "eventTypeId": event_type_id, "startTime": "2026-01-06",
                "endTime": "2026-01-06", "timeZone": "Europe/Paris"},
    )  # fmt: skip
    check(spec, "/v1/slots", "get", slots)
    booking = await book(client, alice, event_type_id, TUESDAY_10)
    created_booking = await client.post(
        "/v1/bookings",
        params=a,
        json={"eventTypeId": event_type_id, "start": "2026-01-06T11:00:00.000Z",
              "timeZone": "UTC", "language": "en", "metadata": {},
              "responses": {"name": "G", "email": "g@example.com"}},
    )  # fmt: skip
    check(spec, "/v1/bookings", "post", created_booking)
    listed = await client.get("/v1/bookings", params={**a, "expand": "team"})
    check(spec, "/v1/bookings", "get", listed)
    item = await client.get(f"/v1/bookings/{booking['id']}", params=a)
    check(spec, "/v1/bookings/{id}", "get", item)
    availability = await client.get(
        "/v1/availability",
        params={**a, "userId": alice.id, "dateFrom": "2026-01-06", "dateTo": "2026-01-07"},
    )
    check(spec, "/v1/availability", "get", availability)
    check(spec, "/v1/attendees", "get", await client.get("/v1/attendees", params=a))
    check(spec, "/v1/api-keys", "get", await client.get("/v1/api-keys", params=a))
    cancelled = await client.delete(f"/v1/bookings/{booking['id']}", params=a)
    check(spec, "/v1/bookings/{id}", "delete", cancelled)
    team = await client.post("/v1/teams", params=a, json={"name": "Crew", "slug": "crew"})
    check(spec, "/v1/teams", "post", team)
    memberships = await client.get("/v1/memberships", params={**a, "include": "team"})
    check(spec, "/v1/memberships", "get", memberships)
    check(spec, "/v2/me", "get", await client.get("/v2/me", params=a))


async def test_error_bodies_match_the_document(client, spec, alice):
    check(spec, "/v1/users", "get", await client.get("/v1/users"))
    check(spec, "/v1/users", "get", await client.get("/v1/users", params={"apiKey": "cal_bad"}))
    check(
        spec, "/v1/users", "get", await client.get("/v1/users", params={"apiKey": "x", "take": 0})
    )
    bad = await client.get("/v1/users", params={**alice.params, "take": "0"})
    assert bad.status_code == 400
    check(spec, "/v1/users", "get", bad)
    missing = await client.get("/v1/schedules/424242", params=alice.params)
    check(spec, "/v1/schedules/{id}", "get", missing)
    forbidden = await client.get("/v1/users/424242", params=alice.params)
    check(spec, "/v1/users/{userId}", "get", forbidden)
