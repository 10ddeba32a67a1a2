"""/v1/custom-inputs: envelopes, defaults, validation, tenant isolation, admin behaviour."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import EventTypeCustomInput
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}
NO_KEY = {"message": "No apiKey provided"}


async def make_event_type(client: httpx.AsyncClient, account: Account, slug: str = "intro") -> int:
    response = await client.post(
        "/v1/event-types",
        params=account.params,
        json={"title": "Intro", "slug": slug, "length": 30},
    )
    assert response.status_code == 200, response.text
    return int(response.json()["event_type"]["id"])


async def create(
    client: httpx.AsyncClient, account: Account, event_type_id: int, **fields: Any
) -> httpx.Response:
    body = {
        "eventTypeId": event_type_id,
        "label": "Phone number",
        "type": "PHONE",
        "required": True,
        **fields,
    }
    return await client.post("/v1/custom-inputs", params=account.params, json=body)


async def create_ok(
    client: httpx.AsyncClient, account: Account, event_type_id: int, **fields: Any
) -> dict[str, Any]:
    response = await create(client, account, event_type_id, **fields)
    assert response.status_code == 200, response.text
    return response.json()["event_type_custom_input"]


async def stored(app: FastAPI, custom_input_id: int) -> EventTypeCustomInput | None:
    async with app.state.sessions() as session:
        return await session.get(EventTypeCustomInput, custom_input_id)


async def count_inputs(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        query = select(func.count()).select_from(EventTypeCustomInput)
        return int(await session.scalar(query) or 0)


# --- create ----------------------------------------------------------------------------------


async def test_create_has_cal_com_envelope_and_defaults(
    client: httpx.AsyncClient, alice: Account
) -> None:
    event_type_id = await make_event_type(client, alice)
    response = await create(client, alice, event_type_id)
    assert response.status_code == 200
    assert response.json() == {
        "event_type_custom_input": {
            "id": 1,
            "eventTypeId": event_type_id,
            "label": "Phone number",
            "type": "PHONE",
            "options": None,
            "required": True,
            "placeholder": "",
        },
        "message": "EventTypeCustomInput created successfully",
    }


async def test_create_with_options_and_placeholder_shows_on_the_event_type(
    client: httpx.AsyncClient, alice: Account
) -> None:
    event_type_id = await make_event_type(client, alice)
    options = [{"label": "Yes", "type": "radio"}, {"label": "No", "type": "radio"}]
    created = await create_ok(
        client,
        alice,
        event_type_id,
        type="RADIO",
        label="Coming?",
        options=[*options[:1], {**options[1], "ignored": True}],
        placeholder="Pick one",
        required=False,
    )
    assert created == {
        "id": created["id"],
        "eventTypeId": event_type_id,
        "label": "Coming?",
        "type": "RADIO",
        "options": options,
        "required": False,
        "placeholder": "Pick one",
    }
    event_type = await client.get(f"/v1/event-types/{event_type_id}", params=alice.params)
    assert event_type.json()["event_type"]["customInputs"] == [created]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"type": "DATE"},
            "invalid_enum_value in 'type': Invalid enum value. Expected 'TEXT', 'TEXTLONG', "
            "'NUMBER', 'BOOL', 'RADIO' or 'PHONE', received 'DATE'",
        ),
        ({"required": None}, "invalid_type in 'required': Expected boolean, received null"),
        ({"label": 5}, "invalid_type in 'label': Expected string, received number"),
        ({"options": [{"label": "x"}]}, "invalid_type in 'options,0,type': Required"),
        ({"options": {"label": "x"}}, "invalid_type in 'options': Expected array, received object"),
        ({"placeholder": None}, "invalid_type in 'placeholder': Expected string, received null"),
        ({"hint": "x"}, "Unrecognized key(s) in object: 'hint'"),
        ({"label": "a\x00"}, "custom in 'label': must not contain NUL characters"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    fields: dict[str, Any],
    message: str,
) -> None:
    event_type_id = await make_event_type(client, alice)
    response = await create(client, alice, event_type_id, **fields)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await count_inputs(app) == 0


@pytest.mark.parametrize("missing", ["eventTypeId", "label", "type", "required"])
async def test_create_requires_fields(
    client: httpx.AsyncClient, alice: Account, missing: str
) -> None:
    event_type_id = await make_event_type(client, alice)
    body = {"eventTypeId": event_type_id, "label": "L", "type": "TEXT", "required": False}
    del body[missing]
    response = await client.post("/v1/custom-inputs", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": f"invalid_type in '{missing}': Required"}


async def test_create_on_someone_elses_or_a_missing_event_type_is_403(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account, admin: Account
) -> None:
    bobs_event_type = await make_event_type(client, bob)
    for event_type_id in (bobs_event_type, 999, 2**31 - 1):
        response = await create(client, alice, event_type_id)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    assert await count_inputs(app) == 0
    # Admins may add to anyone's event type; a missing one is a 404 for them.
    assert (await create_ok(client, admin, bobs_event_type))["eventTypeId"] == bobs_event_type
    response = await create(client, admin, 999)
    assert response.status_code == 404
    assert response.json() == {"message": "Event type not found"}


# --- list / get ------------------------------------------------------------------------------


async def test_list_shows_inputs_of_own_event_types_and_admin_sees_all(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = await create_ok(client, alice, await make_event_type(client, alice))
    bobs = await create_ok(client, bob, await make_event_type(client, bob))
    response = await client.get("/v1/custom-inputs", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"event_type_custom_inputs": [alices]}
    response = await client.get("/v1/custom-inputs", params=bob.params)
    assert response.json() == {"event_type_custom_inputs": [bobs]}
    response = await client.get("/v1/custom-inputs", params=admin.params)
    assert response.json() == {"event_type_custom_inputs": [alices, bobs]}


async def test_get_one(client: httpx.AsyncClient, alice: Account) -> None:
    created = await create_ok(client, alice, await make_event_type(client, alice))
    response = await client.get(f"/v1/custom-inputs/{created['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"event_type_custom_input": created}


# --- patch -----------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = await create_ok(
        client, alice, await make_event_type(client, alice), placeholder="+44 ..."
    )
    url = f"/v1/custom-inputs/{created['id']}"
    response = await client.patch(url, params=alice.params, json={"required": False})
    assert response.status_code == 200
    assert response.json() == {"event_type_custom_input": {**created, "required": False}}
    response = await client.patch(
        url, params=alice.params, json={"type": "RADIO", "options": [{"label": "A", "type": "x"}]}
    )
    assert response.json()["event_type_custom_input"]["options"] == [{"label": "A", "type": "x"}]
    response = await client.patch(url, params=alice.params, json={"options": None})
    assert response.json()["event_type_custom_input"]["options"] is None
    response = await client.patch(url, params=alice.params, json={"label": None})
    assert response.status_code == 400
    assert response.json() == {"message": "custom in 'label': Expected a value, received null"}


async def test_patch_can_move_an_input_only_to_an_own_event_type(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    first = await make_event_type(client, alice, "first")
    second = await make_event_type(client, alice, "second")
    bobs_event_type = await make_event_type(client, bob)
    created = await create_ok(client, alice, first)
    url = f"/v1/custom-inputs/{created['id']}"
    response = await client.patch(url, params=alice.params, json={"eventTypeId": bobs_event_type})
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    row = await stored(app, created["id"])
    assert row is not None and row.event_type_id == first
    response = await client.patch(url, params=alice.params, json={"eventTypeId": second})
    assert response.json()["event_type_custom_input"]["eventTypeId"] == second


# --- isolation and admin ---------------------------------------------------------------------


async def test_other_users_cannot_read_change_or_delete(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    created = await create_ok(client, alice, await make_event_type(client, alice))
    url = f"/v1/custom-inputs/{created['id']}"
    for response in (
        await client.get(url, params=bob.params),
        await client.patch(url, params=bob.params, json={"label": "Hijacked"}),
        await client.delete(url, params=bob.params),
    ):
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    row = await stored(app, created["id"])
    assert row is not None and row.label == "Phone number" and row.required is True
    response = await client.get("/v1/custom-inputs", params=bob.params)
    assert response.json() == {"event_type_custom_inputs": []}


async def test_missing_id_is_403_for_users_and_404_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for url in ("/v1/custom-inputs/999", f"/v1/custom-inputs/{2**40}"):
        for method in ("GET", "PATCH", "DELETE"):
            json = {"label": "x"} if method == "PATCH" else None
            response = await client.request(method, url, params=alice.params, json=json)
            assert (response.status_code, response.json()) == (403, FORBIDDEN)
            response = await client.request(method, url, params=admin.params, json=json)
            assert (response.status_code, response.json()) == (
                404,
                {"message": "Custom input not found"},
            )


async def test_admin_reads_changes_and_deletes_anyones(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, admin: Account
) -> None:
    created = await create_ok(client, alice, await make_event_type(client, alice))
    url = f"/v1/custom-inputs/{created['id']}"
    response = await client.get(url, params=admin.params)
    assert response.json() == {"event_type_custom_input": created}
    response = await client.patch(url, params=admin.params, json={"label": "Mobile"})
    assert response.json() == {"event_type_custom_input": {**created, "label": "Mobile"}}
    response = await client.delete(url, params=admin.params)
    assert response.status_code == 200
    assert response.json() == {
        "message": f"CustomInputEventType with id: {created['id']} deleted successfully"
    }
    assert await stored(app, created["id"]) is None


async def test_owner_deletes(client: httpx.AsyncClient, app: FastAPI, alice: Account) -> None:
    event_type_id = await make_event_type(client, alice)
    created = await create_ok(client, alice, event_type_id)
    kept = await create_ok(client, alice, event_type_id, label="Kept")
    response = await client.delete(f"/v1/custom-inputs/{created['id']}", params=alice.params)
    assert response.json() == {
        "message": f"CustomInputEventType with id: {created['id']} deleted successfully"
    }
    assert await stored(app, created["id"]) is None
    assert await stored(app, kept["id"]) is not None


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/custom-inputs"),
        ("POST", "/v1/custom-inputs"),
        ("GET", "/v1/custom-inputs/1"),
        ("PATCH", "/v1/custom-inputs/1"),
        ("DELETE", "/v1/custom-inputs/1"),
        ("GET", "/custom-inputs"),
    ],
)
async def test_no_key_is_401(
    client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"label": "x"})
    assert response.status_code == 401
    assert response.json() == NO_KEY
