"""/v1/webhooks and /v1/hooks: envelopes, the clients' forms (Pipedream, n8n), validation, who may
see and change what (own, event type, team event type, admin), URL safety, the delivery log."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.app import create_app
from bookable.models import (
    Membership,
    MembershipRole,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)
from bookable.settings import Settings
from bookable.webhooks.triggers import WebhookTrigger
from tests.api.scheduling_seed import add_booking, add_event_type
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account, client_for

FORBIDDEN = {"message": "Forbidden"}
URL = "https://hooks.example.com/cal"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def create(
    client: httpx.AsyncClient, account: Account, *, base: str = "/v1/webhooks", **fields: Any
) -> httpx.Response:
    body = {"subscriberUrl": URL, "eventTriggers": ["BOOKING_CREATED"], **fields}
    return await client.post(base, params=account.params, json=body)


async def create_ok(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    response = await create(client, account, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json()["webhook"])


async def stored(app: FastAPI, webhook_id: str) -> Webhook | None:
    async with app.state.sessions() as session:
        return await session.get(Webhook, webhook_id)


async def make_event_type(
    client: httpx.AsyncClient, account: Account, slug: str = "intro", **fields: Any
) -> int:
    body = {"title": "Intro", "slug": slug, "length": 30, **fields}
    response = await client.post("/v1/event-types", params=account.params, json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["event_type"]["id"])


# --- create and read -------------------------------------------------------------------------


async def test_create_answers_cal_com_envelope_with_data_beside_it(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await create(
        client, alice, eventTriggers=["BOOKING_CREATED", "BOOKING_CANCELLED"], active=True
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"webhook", "message", "data"}
    assert body["message"] == "Webhook created successfully"
    assert body["data"] == body["webhook"]
    webhook = body["webhook"]
    assert str(uuid.UUID(webhook["id"])) == webhook["id"]
    assert ISO_MS.match(webhook.pop("createdAt"))
    assert webhook == {
        "id": webhook["id"],
        "userId": alice.id,
        "eventTypeId": None,
        "payloadTemplate": None,
        "eventTriggers": ["BOOKING_CREATED", "BOOKING_CANCELLED"],
        "appId": None,
        "subscriberUrl": URL,
        "version": "2021-10-20",
        "active": True,
        "time": None,
        "timeUnit": None,
    }


async def test_active_may_be_left_out_and_means_true(
    client: httpx.AsyncClient, alice: Account
) -> None:
    assert (await create_ok(client, alice))["active"] is True
    other = await create_ok(client, alice, subscriberUrl=URL + "/2", active=False)
    assert other["active"] is False


async def test_every_field_is_stored_and_read_back(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    created = await create_ok(
        client,
        alice,
        payloadTemplate='{"who": "{{attendees.0.name}}"}',
        secret="hush",
        appId="n8n",
        version="2021-10-20",
        time=5,
        timeUnit="minute",
        eventTriggers=["AFTER_HOSTS_CAL_VIDEO_NO_SHOW"],
    )
    got = await client.get(f"/v1/webhooks/{created['id']}", params=alice.params)
    assert got.status_code == 200
    assert got.json() == {"webhook": created}
    assert created["payloadTemplate"] == '{"who": "{{attendees.0.name}}"}'
    assert (created["appId"], created["time"], created["timeUnit"]) == ("n8n", 5, "MINUTE")
    row = await stored(app, created["id"])
    assert (
        row is not None
        and row.secret == "hush"
        and row.event_triggers == ["AFTER_HOSTS_CAL_VIDEO_NO_SHOW"]
    )


async def test_triggers_are_deduplicated_keeping_order(
    client: httpx.AsyncClient, alice: Account
) -> None:
    webhook = await create_ok(
        client,
        alice,
        eventTriggers=["MEETING_ENDED", "BOOKING_CREATED", "meeting_ended", "BOOKING_CREATED"],
    )
    assert webhook["eventTriggers"] == ["MEETING_ENDED", "BOOKING_CREATED"]


async def test_every_cal_com_trigger_is_accepted_and_round_trips(
    client: httpx.AsyncClient, alice: Account
) -> None:
    names = [trigger.value for trigger in WebhookTrigger]
    assert len(names) == 26
    webhook = await create_ok(client, alice, eventTriggers=names)
    assert webhook["eventTriggers"] == names


async def test_list_shows_own_webhooks(
    client: httpx.AsyncClient, alice: Account, bob: Account, make_account: Callable[..., Any]
) -> None:
    first = await create_ok(client, alice)
    second = await create_ok(client, alice, subscriberUrl=URL + "/2")
    bobs = await create_ok(client, bob)
    response = await client.get("/v1/webhooks", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"webhooks": [first, second]}
    assert (await client.get("/v1/webhooks", params=bob.params)).json() == {"webhooks": [bobs]}
    newcomer = await make_account("newcomer")
    assert (await client.get("/v1/webhooks", params=newcomer.params)).json() == {"webhooks": []}


# --- the clients' forms ----------------------------------------------------------------------


async def test_pipedream_registers_with_triggers_and_unregisters_by_data_id(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        "/v1/webhooks",
        params=alice.params,
        json={
            "subscriberUrl": "https://abc.m.pipedream.net",
            "triggers": ["BOOKING_CREATED", "BOOKING_RESCHEDULED", "BOOKING_CREATED"],
            "active": True,
            "payloadTemplate": None,
        },
    )
    assert response.status_code == 200, response.text
    hook_id = response.json()["data"]["id"]
    assert response.json()["data"]["eventTriggers"] == ["BOOKING_CREATED", "BOOKING_RESCHEDULED"]
    deleted = await client.delete(f"/v1/webhooks/{hook_id}", params=alice.params)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": f"Webhook with id: {hook_id} deleted successfully"}
    assert await stored(app, hook_id) is None


async def test_triggers_and_event_triggers_together_must_agree(
    client: httpx.AsyncClient, alice: Account
) -> None:
    same = await create(
        client,
        alice,
        eventTriggers=["BOOKING_CREATED", "BOOKING_PAID"],
        triggers=["BOOKING_PAID", "BOOKING_CREATED"],
    )
    assert same.status_code == 200
    assert same.json()["webhook"]["eventTriggers"] == ["BOOKING_CREATED", "BOOKING_PAID"]
    differ = await create(
        client,
        alice,
        subscriberUrl=URL + "/2",
        eventTriggers=["BOOKING_CREATED"],
        triggers=["BOOKING_PAID"],
    )
    assert differ.status_code == 400
    assert differ.json() == {
        "message": "custom in 'triggers': differs from 'eventTriggers' (an alias of it); send one"
    }


async def test_n8n_subscribes_through_hooks_with_app_id(
    client: httpx.AsyncClient, alice: Account
) -> None:
    # n8n's Cal.com trigger: POST /hooks with appId, finds its hook in GET /hooks, DELETE /hooks/id.
    response = await client.post(
        "/hooks",
        params=alice.params,
        json={
            "subscriberUrl": "http://n8n.internal:5678/webhook/abc",
            "eventTriggers": ["BOOKING_CREATED"],
            "active": True,
            "appId": "n8n",
        },
    )
    assert response.status_code == 200, response.text
    webhook = response.json()["webhook"]
    assert webhook["appId"] == "n8n"
    listed = await client.get("/hooks", params=alice.params)
    assert listed.json() == {"webhooks": [webhook]}
    assert (await client.get(f"/v1/hooks/{webhook['id']}", params=alice.params)).json() == {
        "webhook": webhook
    }
    patched = await client.patch(
        f"/hooks/{webhook['id']}", params=alice.params, json={"active": False}
    )
    assert patched.json()["webhook"]["active"] is False
    deleted = await client.delete(f"/hooks/{webhook['id']}", params=alice.params)
    assert deleted.json() == {"message": f"Webhook with id: {webhook['id']} deleted successfully"}
    assert (await client.get("/v1/webhooks", params=alice.params)).json() == {"webhooks": []}


async def test_hooks_alias_answers_like_webhooks(client: httpx.AsyncClient, alice: Account) -> None:
    webhook = await create_ok(client, alice)
    for path in ("", f"/{webhook['id']}", f"/{webhook['id']}/deliveries"):
        canonical = await client.get(f"/v1/webhooks{path}", params=alice.params)
        for alias in (f"/v1/hooks{path}", f"/hooks{path}", f"/webhooks{path}"):
            response = await client.get(alias, params=alice.params)
            assert (response.status_code, response.json()) == (200, canonical.json())
    wrong = await client.put("/v1/hooks", params=alice.params, json={})
    assert wrong.status_code == 405
    assert wrong.json() == {"message": "Method Not Allowed (Allow: GET,POST)"}


# --- validation ------------------------------------------------------------------------------

CREATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"subscriberUrl": None}, "invalid_type in 'subscriberUrl': Expected string, received null"),
    ({"subscriberUrl": ""}, "too_small in 'subscriberUrl': String must contain at least 1"),
    ({"subscriberUrl": 5}, "invalid_type in 'subscriberUrl': Expected string, received number"),
    ({"subscriberUrl": "not a url"}, "custom in 'subscriberUrl': must be a URL without spaces"),
    ({"subscriberUrl": "ftp://x.example/"}, "custom in 'subscriberUrl': only http and https"),
    ({"subscriberUrl": "https://u:p@x.example/"}, "custom in 'subscriberUrl': credentials"),
    ({"subscriberUrl": "https:///x"}, "custom in 'subscriberUrl': a host is required"),
    ({"eventTriggers": ["BOOKING_CONFIRMED"]}, "invalid_enum_value in 'eventTriggers,0': "),
    ({"eventTriggers": "BOOKING_CREATED"}, "invalid_type in 'eventTriggers': Expected array"),
    ({"eventTriggers": None}, "custom in 'eventTriggers': Expected a value, received null"),
    ({"triggers": ["NOPE"]}, "invalid_enum_value in 'triggers,0': "),
    ({"active": "maybe"}, "invalid_type in 'active': Expected boolean, received string"),
    ({"active": None}, "invalid_type in 'active': Expected boolean, received null"),
    ({"payloadTemplate": 5}, "invalid_type in 'payloadTemplate': Expected string, received"),
    ({"secret": 5}, "invalid_type in 'secret': Expected string, received number"),
    ({"eventTypeId": "abc"}, "invalid_type in 'eventTypeId': Expected number, received string"),
    ({"eventTypeId": 0}, "too_small in 'eventTypeId': Number must be greater than 0"),
    ({"userId": "me"}, "invalid_type in 'userId': Expected number, received string"),
    ({"appId": "x" * 256}, "too_big in 'appId': String must contain at most 255"),
    ({"version": "2024-01-01"}, "invalid_enum_value in 'version': "),
    ({"version": None}, "custom in 'version': Expected a value, received null"),
    ({"time": 0}, "too_small in 'time': Number must be greater than 0"),
    ({"timeUnit": "WEEK"}, "invalid_enum_value in 'timeUnit': "),
    ({"teamId": 1}, "Unrecognized key(s) in object: 'teamId'"),
    ({"platform": True}, "Unrecognized key(s) in object: 'platform'"),
    ({"subscriber_url": URL}, "Unrecognized key(s) in object: 'subscriber_url'"),
]


@pytest.mark.parametrize(("fields", "message"), CREATE_ERRORS)
async def test_create_refusals_name_the_field(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, fields: dict[str, Any], message: str
) -> None:
    response = await create(client, alice, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(message), response.json()
    async with app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Webhook)) == 0


@pytest.mark.parametrize("missing", ["subscriberUrl", "eventTriggers"])
async def test_create_requires_url_and_triggers(
    client: httpx.AsyncClient, alice: Account, missing: str
) -> None:
    body = {"subscriberUrl": URL, "eventTriggers": ["BOOKING_CREATED"]}
    del body[missing]
    response = await client.post("/v1/webhooks", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": f"invalid_type in '{missing}': Required"}


UPDATE_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"subscriberUrl": None}, "custom in 'subscriberUrl': Expected a value, received null"),
    ({"active": None}, "custom in 'active': Expected a value, received null"),
    ({"eventTypeId": None}, "custom in 'eventTypeId': Expected a value, received null"),
    ({"userId": None}, "custom in 'userId': Expected a value, received null"),
    ({"eventTriggers": ["NOPE"]}, "invalid_enum_value in 'eventTriggers,0': "),
    ({"subscriberUrl": "http://169.254.169.254/"}, "custom in 'subscriberUrl': cloud metadata"),
    ({"secrets": "x"}, "Unrecognized key(s) in object: 'secrets'"),
]


@pytest.mark.parametrize(("fields", "message"), UPDATE_ERRORS)
async def test_update_refusals_name_the_field_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, fields: dict[str, Any], message: str
) -> None:
    webhook = await create_ok(client, alice)
    response = await client.patch(f"/v1/webhooks/{webhook['id']}", params=alice.params, json=fields)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(message), response.json()
    after = await client.get(f"/v1/webhooks/{webhook['id']}", params=alice.params)
    assert after.json() == {"webhook": webhook}


async def test_malformed_id_is_a_400_for_everyone(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for account in (alice, admin):
        for method in ("GET", "PATCH", "DELETE"):
            response = await client.request(
                method,
                "/v1/webhooks/42",
                params=account.params,
                json={} if method == "PATCH" else None,
            )
            assert response.status_code == 400
            assert response.json() == {"message": "invalid_string in 'id': Invalid uuid"}


async def test_needs_a_key(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/v1/webhooks"), ("POST", "/hooks")):
        response = await client.request(method, path)
        assert (response.status_code, response.json()) == (401, {"message": "No apiKey provided"})


# --- update and delete -----------------------------------------------------------------------


async def test_patch_changes_only_what_is_sent(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    webhook = await create_ok(client, alice, secret="one", payloadTemplate="a={{title}}")
    response = await client.patch(
        f"/v1/webhooks/{webhook['id']}",
        params=alice.params,
        json={"active": False, "eventTriggers": ["BOOKING_PAID", "BOOKING_PAID"]},
    )
    assert response.status_code == 200
    expected = {**webhook, "active": False, "eventTriggers": ["BOOKING_PAID"]}
    assert response.json() == {"webhook": expected}
    row = await stored(app, webhook["id"])
    assert row is not None and row.secret == "one"

    cleared = await client.patch(
        f"/v1/webhooks/{webhook['id']}",
        params=alice.params,
        json={"payloadTemplate": None, "secret": None, "subscriberUrl": URL + "/new"},
    )
    assert cleared.json()["webhook"]["payloadTemplate"] is None
    assert cleared.json()["webhook"]["subscriberUrl"] == URL + "/new"
    row = await stored(app, webhook["id"])
    assert row is not None and row.secret is None


async def test_patch_with_triggers_alias(client: httpx.AsyncClient, alice: Account) -> None:
    webhook = await create_ok(client, alice)
    response = await client.patch(
        f"/v1/webhooks/{webhook['id']}", params=alice.params, json={"triggers": ["MEETING_STARTED"]}
    )
    assert response.json()["webhook"]["eventTriggers"] == ["MEETING_STARTED"]


async def test_delete_removes_its_events_and_delivery_log(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    webhook = await create_ok(client, alice)
    await add_deliveries(app, webhook["id"], 2)
    response = await client.delete(f"/v1/webhooks/{webhook['id']}", params=alice.params)
    assert response.json() == {"message": f"Webhook with id: {webhook['id']} deleted successfully"}
    async with app.state.sessions() as session:
        for table in (Webhook, WebhookEvent, WebhookDelivery):
            assert await session.scalar(select(func.count()).select_from(table)) == 0
    again = await client.get(f"/v1/webhooks/{webhook['id']}", params=alice.params)
    assert (again.status_code, again.json()) == (403, FORBIDDEN)


async def test_same_url_twice_for_one_user_is_a_409(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    first = await create_ok(client, alice)
    clash = await create(client, alice, eventTriggers=["BOOKING_PAID"])
    assert clash.status_code == 409
    assert clash.json() == {
        "message": "custom in 'subscriberUrl': a webhook with this subscriberUrl already exists "
        f"for user {alice.id}"
    }
    assert (await create(client, bob)).status_code == 200  # another user may use the same URL
    second = await create_ok(client, alice, subscriberUrl=URL + "/2")
    moved = await client.patch(
        f"/v1/webhooks/{second['id']}", params=alice.params, json={"subscriberUrl": URL}
    )
    assert moved.status_code == 409
    assert (await client.get("/v1/webhooks", params=alice.params)).json()["webhooks"] == [
        first,
        second,
    ]


async def test_same_url_twice_on_one_event_type_is_a_409(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    intro = await make_event_type(client, alice)
    other = await make_event_type(client, alice, "other")
    first = await create_ok(client, alice, eventTypeId=intro)
    clash = await create(client, alice, eventTypeId=intro, eventTriggers=["BOOKING_PAID"])
    conflict = {
        "message": "custom in 'subscriberUrl': a webhook with this subscriberUrl already exists "
        f"for event type {intro}"
    }
    assert (clash.status_code, clash.json()) == (409, conflict)
    on_other = await create_ok(client, alice, eventTypeId=other)  # another event type: fine
    own = await create_ok(client, alice)  # alice's own webhook (no event type): fine too
    second = await create_ok(client, alice, eventTypeId=intro, subscriberUrl=URL + "/2")
    new_url = await client.patch(
        f"/v1/webhooks/{second['id']}", params=alice.params, json={"subscriberUrl": URL}
    )
    assert (new_url.status_code, new_url.json()) == (409, conflict)
    new_event_type = await client.patch(
        f"/v1/webhooks/{on_other['id']}", params=alice.params, json={"eventTypeId": intro}
    )
    assert (new_event_type.status_code, new_event_type.json()) == (409, conflict)
    assert (await client.get("/v1/webhooks", params=alice.params)).json()["webhooks"] == [
        first,
        on_other,
        own,
        second,
    ]
    async with app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Webhook)) == 4


# --- the secret ------------------------------------------------------------------------------


async def test_secret_is_never_returned(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    secret = "s3cr3t-signing-key"
    response = await create(client, alice, secret=secret)
    hook_id = response.json()["webhook"]["id"]
    await add_deliveries(app, hook_id, 1)
    responses = [
        response,
        await client.get("/v1/webhooks", params=alice.params),
        await client.get("/hooks", params=alice.params),
        await client.get(f"/v1/webhooks/{hook_id}", params=alice.params),
        await client.get(f"/v1/webhooks/{hook_id}/deliveries", params=alice.params),
        await client.get("/v1/webhooks", params=admin.params),
        await client.patch(f"/v1/webhooks/{hook_id}", params=alice.params, json={"secret": secret}),
        await client.patch(f"/v1/webhooks/{hook_id}", params=alice.params, json={"secret": 1}),
        await create(client, alice, secret=secret),  # the 409
        await client.delete(f"/v1/webhooks/{hook_id}", params=alice.params),
    ]
    for answer in responses:
        assert answer.status_code < 500
        assert secret not in answer.text
        assert "secret" not in answer.text.replace("'secret'", "")


# --- who sees and changes what ---------------------------------------------------------------


async def test_other_users_webhooks_are_forbidden_and_unchanged(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    webhook = await create_ok(client, alice)
    base = f"/v1/webhooks/{webhook['id']}"
    assert (await client.get("/v1/webhooks", params=bob.params)).json() == {"webhooks": []}
    for method, path, body in (
        ("GET", base, None),
        ("GET", base + "/deliveries", None),
        ("PATCH", base, {"subscriberUrl": "https://evil.example/"}),
        ("DELETE", base, None),
        ("DELETE", f"/hooks/{webhook['id']}", None),
    ):
        response = await client.request(method, path, params=bob.params, json=body)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    missing = await client.get(f"/v1/webhooks/{uuid.uuid4()}", params=bob.params)
    assert (missing.status_code, missing.json()) == (403, FORBIDDEN)
    assert (await client.get(base, params=alice.params)).json() == {"webhook": webhook}


async def test_list_user_filter_is_for_admins(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    mine = await create_ok(client, alice)
    bobs = await create_ok(client, bob)
    refused = await client.get("/v1/webhooks", params={**alice.params, "userId": bob.id})
    assert (refused.status_code, refused.json()) == (403, {"message": "ADMIN required"})
    own = await client.get("/v1/webhooks", params={**alice.params, "userId": alice.id})
    assert own.json() == {"webhooks": [mine]}

    everyone = await client.get("/v1/webhooks", params=admin.params)
    assert {w["id"] for w in everyone.json()["webhooks"]} == {mine["id"], bobs["id"]}
    one = await client.get("/v1/webhooks", params={**admin.params, "userId": bob.id})
    assert one.json() == {"webhooks": [bobs]}
    both = await client.get(
        "/v1/webhooks", params=[("apiKey", admin.key), ("userId", alice.id), ("userId", bob.id)]
    )
    assert {w["id"] for w in both.json()["webhooks"]} == {mine["id"], bobs["id"]}
    bad = await client.get("/v1/webhooks", params={**admin.params, "userId": "x"})
    assert bad.status_code == 400 and "'userId" in bad.json()["message"]


async def test_admin_acts_for_a_user_and_on_any_webhook(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    refused = await create(client, alice, userId=bob.id)
    assert (refused.status_code, refused.json()) == (403, {"message": "ADMIN required for userId"})
    assert (await create(client, alice, userId=alice.id)).status_code == 200

    for_bob = await create_ok(client, admin, userId=bob.id, subscriberUrl=URL + "/bob")
    assert for_bob["userId"] == bob.id
    assert (await client.get("/v1/webhooks", params=bob.params)).json() == {"webhooks": [for_bob]}
    missing_user = await create(client, admin, userId=999_999)
    assert (missing_user.status_code, missing_user.json()) == (
        404,
        {"message": "User with id: 999999 not found"},
    )

    base = f"/v1/webhooks/{for_bob['id']}"
    clash = await client.patch(
        base, params=admin.params, json={"userId": alice.id, "subscriberUrl": URL}
    )
    assert clash.status_code == 409  # alice has a webhook for URL already
    patched = await client.patch(base, params=admin.params, json={"userId": alice.id})
    assert patched.json()["webhook"]["userId"] == alice.id
    moved = await client.patch(base, params=alice.params, json={"userId": bob.id})
    assert (moved.status_code, moved.json()) == (403, {"message": "ADMIN required for userId"})
    gone = await client.get(f"/v1/webhooks/{uuid.uuid4()}", params=admin.params)
    assert (gone.status_code, gone.json()) == (404, {"message": "Webhook not found"})
    assert (await client.delete(base, params=admin.params)).status_code == 200


async def test_webhook_on_own_event_type(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    event_type = await make_event_type(client, alice)
    webhook = await create_ok(client, alice, eventTypeId=event_type)
    # As Cal.com: a webhook on an event type has no user; the event type's owner still manages it.
    assert (webhook["userId"], webhook["eventTypeId"]) == (None, event_type)
    assert (await client.get("/v1/webhooks", params=alice.params)).json() == {"webhooks": [webhook]}
    base = f"/v1/webhooks/{webhook['id']}"
    assert (await client.get(base, params=alice.params)).status_code == 200
    patched = await client.patch(base, params=alice.params, json={"active": False})
    assert patched.status_code == 200
    filtered = await client.get("/v1/webhooks", params={**admin.params, "userId": alice.id})
    assert [w["id"] for w in filtered.json()["webhooks"]] == [webhook["id"]]

    # Nobody attaches a webhook to an event type that is not theirs.
    refused = await create(client, bob, eventTypeId=event_type)
    assert refused.status_code == 403
    assert refused.json() == {
        "message": f"Forbidden: event type {event_type} (`eventTypeId`) is not one you manage"
    }
    missing = await create(client, bob, eventTypeId=987_654)
    assert (missing.status_code, missing.json()["message"]) == (
        403,
        refused.json()["message"].replace(str(event_type), "987654"),
    )
    bobs = await create_ok(client, bob)
    move = await client.patch(
        f"/v1/webhooks/{bobs['id']}", params=bob.params, json={"eventTypeId": event_type}
    )
    assert move.status_code == 403
    assert (await client.get(base, params=bob.params)).status_code == 403

    by_admin = await create_ok(client, admin, eventTypeId=event_type, subscriberUrl=URL + "/a")
    assert by_admin["eventTypeId"] == event_type and by_admin["userId"] is None
    no_such = await create(client, admin, eventTypeId=987_654)
    assert (no_such.status_code, no_such.json()) == (
        404,
        {"message": "Event type with id: 987654 not found"},
    )
    assert (await client.delete(base, params=alice.params)).status_code == 200


@pytest.fixture
async def team_world(
    client: httpx.AsyncClient, make_account: Callable[..., Any], alice: Account
) -> dict[str, Any]:
    """Team "sales": owner OWNER, manager ADMIN, member MEMBER, invitee pending (ADMIN); and
    a team event type."""
    owner, manager, member, invitee = [
        await make_account(name) for name in ("owner", "manager", "member", "invitee")
    ]
    team_id = int((await create_team(client, owner, slug="sales"))["team"]["id"])
    await add_member(client, owner, manager, team_id, role="ADMIN")
    await add_member(client, owner, member, team_id)
    invited = await client.post(
        "/v1/memberships",
        params=owner.params,
        json={"teamId": team_id, "userId": invitee.id, "role": "ADMIN"},
    )
    assert invited.status_code == 200
    event_type = await make_event_type(client, owner, slug="team-call", teamId=team_id)
    return {
        "OWNER": owner,
        "ADMIN": manager,
        "MEMBER": member,
        "invitee": invitee,
        "outsider": alice,
        "event_type": event_type,
    }


async def test_team_event_type_webhooks_members_read_managers_change(
    app: FastAPI, client: httpx.AsyncClient, team_world: dict[str, Any]
) -> None:
    event_type = team_world["event_type"]
    # Attaching one takes the team's OWNER or ADMIN.
    for role in ("MEMBER", "invitee", "outsider"):
        refused = await create(client, team_world[role], eventTypeId=event_type)
        assert refused.status_code == 403, role
    webhook = await create_ok(client, team_world["ADMIN"], eventTypeId=event_type)
    assert webhook["userId"] is None
    await add_deliveries(app, webhook["id"], 1)
    base = f"/v1/webhooks/{webhook['id']}"

    for role in ("OWNER", "ADMIN", "MEMBER"):
        account = team_world[role]
        assert (await client.get(base, params=account.params)).json() == {"webhook": webhook}
        listed = await client.get("/v1/webhooks", params=account.params)
        assert webhook["id"] in {w["id"] for w in listed.json()["webhooks"]}, role
        log = await client.get(base + "/deliveries", params=account.params)
        assert log.status_code == 200 and len(log.json()["deliveries"]) == 1
    for role in ("invitee", "outsider"):
        account = team_world[role]
        assert (await client.get(base, params=account.params)).status_code == 403, role
        assert (await client.get("/v1/webhooks", params=account.params)).json() == {"webhooks": []}

    # A plain member reads but does not change or delete it.
    member = team_world["MEMBER"]
    for method, body in (("PATCH", {"active": False}), ("DELETE", None)):
        response = await client.request(method, base, params=member.params, json=body)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    row = await stored(app, webhook["id"])
    assert row is not None and row.active is True

    changed = await client.patch(base, params=team_world["ADMIN"].params, json={"active": False})
    assert changed.json()["webhook"]["active"] is False
    deleted = await client.delete(base, params=team_world["OWNER"].params)
    assert deleted.status_code == 200


async def test_leaving_the_team_ends_access(
    app: FastAPI, client: httpx.AsyncClient, team_world: dict[str, Any]
) -> None:
    webhook = await create_ok(client, team_world["OWNER"], eventTypeId=team_world["event_type"])
    manager = team_world["ADMIN"]
    async with app.state.sessions() as session, session.begin():
        membership = await session.scalar(
            select(Membership).where(Membership.user_id == manager.id)
        )
        assert membership is not None
        membership.role = MembershipRole.MEMBER
    base = f"/v1/webhooks/{webhook['id']}"
    assert (await client.delete(base, params=manager.params)).status_code == 403
    async with app.state.sessions() as session, session.begin():
        membership = await session.scalar(
            select(Membership).where(Membership.user_id == manager.id)
        )
        assert membership is not None
        await session.delete(membership)
    assert (await client.get(base, params=manager.params)).status_code == 403


# --- URL safety ------------------------------------------------------------------------------

ALWAYS_REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata addresses are not allowed"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata addresses"),
    ("http://[fd00:ec2::254]/", "cloud metadata addresses"),
    ("http://100.100.100.200/", "cloud metadata addresses"),
    ("http://2852039166/", "cloud metadata addresses"),  # 169.254.169.254 as one number
    ("http://[::ffff:169.254.169.254]/", "cloud metadata addresses"),
    ("http://169.254.10.20:8080/", "link-local addresses are not allowed"),
    ("http://[fe80::1]/", "link-local addresses are not allowed"),
    ("javascript:alert(1)", "only http and https URLs are allowed"),
    ("file:///etc/passwd", "only http and https URLs are allowed"),
]
PRIVATE = [
    "http://localhost:5678/webhook",
    "http://127.0.0.1:8080/x",
    "http://10.1.2.3/hook",
    "http://192.168.1.20:1880/cal",
    "http://[::1]/",
]


@pytest.mark.parametrize(("url", "reason"), ALWAYS_REFUSED)
async def test_metadata_and_link_local_targets_are_always_refused(
    client: httpx.AsyncClient, alice: Account, url: str, reason: str
) -> None:
    response = await create(client, alice, subscriberUrl=url)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"custom in 'subscriberUrl': {reason}")


@pytest.mark.parametrize("url", PRIVATE)
async def test_private_targets_are_allowed_by_default(
    client: httpx.AsyncClient, alice: Account, url: str
) -> None:
    assert (await create(client, alice, subscriberUrl=url)).status_code == 200


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with application.router.lifespan_context(application), client_for(application) as http:
        yield http


async def test_private_targets_refused_when_the_setting_is_off(
    client: httpx.AsyncClient, make_settings: Callable[..., Settings], alice: Account
) -> None:
    allowed = await create_ok(client, alice, subscriberUrl="http://10.0.0.9/already")
    async with running(make_settings(webhook_allow_private_targets=False)) as strict:
        for url in PRIVATE:
            response = await create(strict, alice, subscriberUrl=url)
            assert response.status_code == 400
            assert response.json()["message"].startswith(
                "custom in 'subscriberUrl': private, loopback and other non-public addresses "
                "are not allowed on this server (BOOKABLE_WEBHOOK_ALLOW_PRIVATE_TARGETS is off)"
            )
        assert (
            await create(strict, alice, subscriberUrl="https://public.example/")
        ).status_code == 200
        edit = await strict.patch(
            f"/v1/webhooks/{allowed['id']}",
            params=alice.params,
            json={"subscriberUrl": "http://10.0.0.10/moved"},
        )
        assert edit.status_code == 400
        # Other edits of an existing private hook still work; its URL is not re-judged.
        other = await strict.patch(
            f"/v1/webhooks/{allowed['id']}", params=alice.params, json={"active": False}
        )
        assert other.status_code == 200


# --- the delivery log ------------------------------------------------------------------------

T0 = datetime(2030, 3, 1, 12, tzinfo=UTC)


async def add_deliveries(app: FastAPI, webhook_id: str, count: int) -> list[int]:
    """``count`` attempts of one event, one minute apart; the last one succeeds. Their ids."""
    async with app.state.sessions() as session, session.begin():
        event = WebhookEvent(
            webhook_id=webhook_id,
            trigger="BOOKING_CREATED",
            body='{"triggerEvent":"BOOKING_CREATED"}',
            status=WebhookEventStatus.DELIVERED,
            attempts=count,
        )
        session.add(event)
        await session.flush()
        rows = [
            WebhookDelivery(
                event_id=event.id,
                webhook_id=webhook_id,
                attempt=n + 1,
                started_at=T0 + timedelta(minutes=n),
                duration_ms=10 * (n + 1),
                status_code=200 if n == count - 1 else 500,
                ok=n == count - 1,
                response_excerpt="ok" if n == count - 1 else "boom",
                error=None,
            )
            for n in range(count)
        ]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def test_deliveries_newest_first_with_event_state(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    webhook = await create_ok(client, alice)
    other = await create_ok(client, alice, subscriberUrl=URL + "/other")
    ids = await add_deliveries(app, webhook["id"], 3)
    await add_deliveries(app, other["id"], 2)
    async with app.state.sessions() as session, session.begin():
        # Waiting for a retry far ahead, so the running dispatcher leaves it alone.
        pending = WebhookEvent(
            webhook_id=webhook["id"],
            trigger="MEETING_ENDED",
            body="{}",
            attempts=1,
            next_attempt_at=datetime(2099, 1, 1, tzinfo=UTC),
        )
        session.add(pending)
        await session.flush()
        session.add(
            WebhookDelivery(
                event_id=pending.id,
                webhook_id=webhook["id"],
                attempt=1,
                started_at=T0 + timedelta(hours=1),
                duration_ms=10_000,
                status_code=None,
                ok=False,
                error="timed out after 10 s",
            )
        )
    response = await client.get(f"/v1/webhooks/{webhook['id']}/deliveries", params=alice.params)
    assert response.status_code == 200
    deliveries = response.json()["deliveries"]
    assert deliveries[0] == {
        "id": ids[-1] + 3,
        "eventId": pending.id,
        "trigger": "MEETING_ENDED",
        "attempt": 1,
        "startedAt": "2030-03-01T13:00:00.000Z",
        "durationMs": 10_000,
        "statusCode": None,
        "ok": False,
        "responseExcerpt": None,
        "error": "timed out after 10 s",
        "eventStatus": "PENDING",
    }
    assert [d["id"] for d in deliveries[1:]] == list(reversed(ids))
    assert deliveries[1] == {
        "id": ids[2],
        "eventId": deliveries[1]["eventId"],
        "trigger": "BOOKING_CREATED",
        "attempt": 3,
        "startedAt": "2030-03-01T12:02:00.000Z",
        "durationMs": 30,
        "statusCode": 200,
        "ok": True,
        "responseExcerpt": "ok",
        "error": None,
        "eventStatus": "DELIVERED",
    }
    assert deliveries[2]["statusCode"] == 500 and deliveries[2]["responseExcerpt"] == "boom"


async def test_deliveries_paging(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    webhook = await create_ok(client, alice)
    ids = list(reversed(await add_deliveries(app, webhook["id"], 60)))
    path = f"/v1/webhooks/{webhook['id']}/deliveries"

    async def page(**query: Any) -> list[int]:
        response = await client.get(path, params={**alice.params, **query})
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["deliveries"]]

    assert await page() == ids[:50]
    assert await page(page=2) == ids[50:]
    assert await page(take=7, page=3) == ids[14:21]
    assert await page(take=200) == ids
    assert await page(take=10, page=99) == []
    for query, field in (({"take": 201}, "take"), ({"take": 0}, "take"), ({"page": 0}, "page")):
        response = await client.get(path, params={**alice.params, **query})
        assert response.status_code == 400
        assert f"'{field}'" in response.json()["message"]


async def test_deliveries_of_missing_webhook(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    path = f"/v1/webhooks/{uuid.uuid4()}/deliveries"
    assert (await client.get(path, params=alice.params)).status_code == 403
    assert (await client.get(path, params=admin.params)).status_code == 404


# --- MEETING_* events for bookings that exist before the webhook ----------------------------


async def meeting_events(app: FastAPI, webhook_id: str) -> list[tuple[str, str, datetime]]:
    async with app.state.sessions() as session:
        rows = await session.execute(
            select(WebhookEvent.trigger, WebhookEvent.status, WebhookEvent.next_attempt_at)
            .where(WebhookEvent.webhook_id == webhook_id)
            .order_by(WebhookEvent.id)
        )
        return [(trigger, str(status), due) for trigger, status, due in rows]


async def planned(app: FastAPI, webhook_id: str) -> set[tuple[str, datetime]]:
    """The webhook's MEETING_* events still to be delivered: (trigger, due time)."""
    events = await meeting_events(app, webhook_id)
    return {(trigger, due) for trigger, status, due in events if status == "PENDING"}


async def test_meeting_triggers_are_planned_for_upcoming_bookings_and_dropped_when_removed(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    start = datetime(2030, 5, 6, 9, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    event_type = await add_event_type(app, alice.id, "sync")
    other_type = await add_event_type(app, alice.id, "other")
    await add_booking(app, alice.id, start, end, event_type_id=event_type)
    past = datetime(2020, 5, 6, 9, tzinfo=UTC)
    await add_booking(app, alice.id, past, past + timedelta(minutes=30), event_type_id=event_type)
    later = datetime(2030, 5, 7, 9, tzinfo=UTC)
    await add_booking(app, alice.id, later, later + timedelta(hours=1), event_type_id=other_type)
    await add_booking(app, bob.id, start, end)  # not alice's

    webhook = await create_ok(client, alice, eventTriggers=["MEETING_STARTED", "MEETING_ENDED"])
    everything = {
        ("MEETING_STARTED", start),
        ("MEETING_ENDED", end),
        ("MEETING_STARTED", later),
        ("MEETING_ENDED", later + timedelta(hours=1)),
    }
    assert await planned(app, webhook["id"]) == everything
    path = f"/v1/webhooks/{webhook['id']}"
    await client.patch(path, params=alice.params, json={"eventTriggers": ["MEETING_ENDED"]})
    assert await planned(app, webhook["id"]) == {
        ("MEETING_ENDED", end),
        ("MEETING_ENDED", later + timedelta(hours=1)),
    }
    # Other edits leave the plan alone; adding the trigger back plans it again.
    before = await meeting_events(app, webhook["id"])
    await client.patch(path, params=alice.params, json={"payloadTemplate": "x={{title}}"})
    assert await meeting_events(app, webhook["id"]) == before
    back = {"triggers": ["MEETING_STARTED", "MEETING_ENDED"]}
    await client.patch(path, params=alice.params, json=back)
    assert await planned(app, webhook["id"]) == everything

    # A webhook on one event type covers that event type's bookings only.
    scoped = await create_ok(
        client,
        alice,
        subscriberUrl=URL + "/scoped",
        eventTypeId=event_type,
        eventTriggers=["MEETING_STARTED"],
    )
    assert await planned(app, scoped["id"]) == {("MEETING_STARTED", start)}
