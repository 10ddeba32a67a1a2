"""Request bodies: booleans are booleans, and free text and JSON objects have documented caps."""

from __future__ import annotations

import pytest

from bookable.core.schemas import MAX_JSON_BYTES, MAX_TEXT


async def event_type(client, account) -> int:
    response = await client.post(
        "/v1/event-types",
        params=account.params,
        json={"title": "Call", "slug": "call", "length": 30},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["event_type"]["id"])


@pytest.mark.parametrize(
    ("value", "received"), [(0, "number"), (1, "number"), ("true", "string"), ("yes", "string")]
)
async def test_a_boolean_is_true_or_false(client, alice, value, received):
    event_type_id = await event_type(client, alice)
    body = {"eventTypeId": event_type_id, "label": "Ok?", "type": "BOOL", "required": value}
    response = await client.post("/v1/custom-inputs", params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "message": f"invalid_type in 'required': Expected boolean, received {received}"
    }
    patched = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"hideBranding": value}
    )
    assert patched.status_code == 400, patched.text
    assert "'hideBranding': Expected boolean" in patched.json()["message"]


async def test_true_and_false_still_work(client, alice):
    event_type_id = await event_type(client, alice)
    body = {"eventTypeId": event_type_id, "label": "Ok?", "type": "BOOL", "required": False}
    response = await client.post("/v1/custom-inputs", params=alice.params, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["event_type_custom_input"]["required"] is False


async def test_free_text_is_capped(client, alice):
    at_cap = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"bio": "b" * MAX_TEXT}
    )
    assert at_cap.status_code == 200, at_cap.text
    over = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"bio": "b" * (MAX_TEXT + 1)}
    )
    assert over.status_code == 400
    assert over.json() == {
        "message": f"too_big in 'bio': String must contain at most {MAX_TEXT} character(s)"
    }
    described = await client.post(
        "/v1/event-types",
        params=alice.params,
        json={"title": "T", "slug": "t", "length": 30, "description": "d" * (MAX_TEXT + 1)},
    )
    assert described.status_code == 400
    assert described.json()["message"].startswith("too_big in 'description'")


async def test_metadata_objects_are_capped(client, alice):
    big = {"notes": "n" * MAX_JSON_BYTES}
    team = await client.post(
        "/v1/teams", params=alice.params, json={"name": "T", "slug": "t", "metadata": big}
    )
    assert team.status_code == 400, team.text
    assert team.json()["message"].startswith("custom in 'metadata': must be at most 65536 bytes")
    small = await client.post(
        "/v1/teams", params=alice.params, json={"name": "T", "slug": "t", "metadata": {"a": "b"}}
    )
    assert small.status_code == 200, small.text


async def test_payload_templates_are_capped(client, alice):
    body = {
        "subscriberUrl": "https://hooks.example.com/x",
        "eventTriggers": ["BOOKING_CREATED"],
        "payloadTemplate": "x" * (MAX_JSON_BYTES + 1),
    }
    response = await client.post("/v1/webhooks", params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("too_big in 'payloadTemplate'")


async def test_the_caps_are_documented(client):
    schemas = (await client.get("/v1/openapi.json")).json()["components"]["schemas"]
    bio = schemas["UserUpdate"]["properties"]["bio"]["anyOf"][0]
    assert bio["maxLength"] == MAX_TEXT
    template = schemas["WebhookCreate"]["properties"]["payloadTemplate"]["anyOf"][0]
    assert template["maxLength"] == MAX_JSON_BYTES
    assert (
        "65536 bytes" in schemas["TeamCreate"]["properties"]["metadata"]["anyOf"][0]["description"]
    )
