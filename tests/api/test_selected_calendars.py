"""/v1/selected-calendars as Cal.com, plus the checks it skips: the credential is the caller's,
the calendar exists in it (live, on a real Radicale), a duplicate is a 409; compound ids with
``_`` and URLs, percent-encoded or not."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.calendar_helpers import connect_caldav
from tests.calendar_servers import RadicaleAccount
from tests.conftest import Account

ROW_FIELDS = {
    "id", "userId", "integration", "externalId", "credentialId", "eventTypeId",
    "delegationCredentialId", "domainWideDelegationCredentialId", "googleChannelId",
    "googleChannelKind", "googleChannelResourceId", "googleChannelResourceUri",
    "googleChannelExpiration", "channelId", "channelKind", "channelResourceId",
    "channelResourceUri", "channelExpiration", "error", "lastErrorAt", "watchAttempts",
    "maxAttempts", "unwatchAttempts", "syncSubscribedAt", "syncToken", "syncedAt", "syncErrorAt",
    "syncErrorCount", "createdAt", "updatedAt",
}  # fmt: skip


async def select_calendar(
    client: httpx.AsyncClient, caller: Account, external_id: str, **extra: Any
) -> httpx.Response:
    body = {"integration": "caldav_calendar", "externalId": external_id, **extra}
    return await client.post("/v1/selected-calendars", params=caller.params, json=body)


async def test_select_get_list_delete(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    # An externalId holding "_", "_calendar_" and a URL: the compound id still parses.
    calendar = radicale.make_calendar("Work", slug="my_caldav_calendar_x")
    credential = await connect_caldav(client, alice, radicale)
    response = await select_calendar(client, alice, calendar, credentialId=credential["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Selected Calendar created successfully"
    row = body["selected_calendar"]
    assert set(row) == ROW_FIELDS
    assert (row["userId"], row["integration"], row["externalId"], row["credentialId"]) == (
        alice.id, "caldav_calendar", calendar, credential["id"],
    )  # fmt: skip
    assert row["eventTypeId"] is None and row["error"] is None and row["syncErrorCount"] == 0

    listed = await client.get("/v1/selected-calendars", params=alice.params)
    assert listed.json() == {"selected_calendars": [row]}
    compound = f"{alice.id}_caldav_calendar_{calendar}"
    for path in (compound, quote(compound, safe="")):
        one = await client.get(f"/v1/selected-calendars/{path}", params=alice.params)
        assert one.status_code == 200, (path, one.text)
        assert one.json() == {"selected_calendar": row}
    patched = await client.patch(f"/v1/selected-calendars/{compound}", params=alice.params, json={})
    assert patched.json() == {"selected_calendar": row}
    deleted = await client.delete(
        f"/v1/selected-calendars/{quote(compound, safe='')}", params=alice.params
    )
    assert deleted.json() == {
        "message": f"Selected Calendar with id: {compound} deleted successfully"
    }
    assert (await client.get("/v1/selected-calendars", params=alice.params)).json() == {
        "selected_calendars": []
    }


async def test_without_credential_id_the_credential_that_has_it_is_found(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    calendar = radicale.make_calendar("Home")
    credential = await connect_caldav(client, alice, radicale)
    response = await select_calendar(client, alice, calendar)
    assert response.status_code == 200, response.text
    assert response.json()["selected_calendar"]["credentialId"] == credential["id"]
    duplicate = await select_calendar(client, alice, calendar)
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.json()["message"]


async def test_a_calendar_the_credential_does_not_have_is_a_400(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    await connect_caldav(client, alice, radicale)
    response = await select_calendar(client, alice, radicale.url + "someone-else/cal/")
    assert response.status_code == 400
    assert "externalId" in response.json()["message"]
    none_of_that_kind = await client.post(
        "/v1/selected-calendars",
        params=alice.params,
        json={"integration": "apple_calendar", "externalId": "https://caldav.icloud.com/x/"},
    )
    assert none_of_that_kind.status_code == 400
    assert "no apple_calendar credential" in none_of_that_kind.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"externalId": "x"}, "'integration'"),
        ({"integration": "caldav_calendar"}, "'externalId'"),
        ({"integration": "google_calendar", "externalId": "x"}, "caldav_calendar"),
        (
            {"integration": "caldav_calendar", "externalId": "x", "credentialId": "a"},
            "credentialId",
        ),
    ],
)
async def test_validation(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/selected-calendars", params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc_caldav_calendar_x", "userId is not a number"),
        ("1_google_calendar_x", "Missing integration"),
        ("1_caldav_calendar_", "Missing externalId"),
    ],
)
async def test_compound_id_errors(
    client: httpx.AsyncClient, alice: Account, raw: str, message: str
) -> None:
    response = await client.get(f"/v1/selected-calendars/{raw}", params=alice.params)
    assert response.status_code == 400
    assert message in response.json()["message"]


async def test_other_users_and_admins(
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    admin: Account,
    radicale: RadicaleAccount,
    radicale_server: Any,
) -> None:
    calendar = radicale.make_calendar("Bobs")
    bobs_credential = await connect_caldav(client, bob, radicale)
    # Alice names Bob's credential: answered as a missing one, before any connection.
    alices_account = radicale_server.new_account()
    await connect_caldav(client, alice, alices_account)
    foreign = await select_calendar(client, alice, calendar, credentialId=bobs_credential["id"])
    assert foreign.status_code == 404
    missing = await select_calendar(client, alice, calendar, credentialId=999999)
    assert missing.json() == foreign.json()
    for_bob = await select_calendar(client, alice, calendar, userId=bob.id)
    assert for_bob.status_code == 403
    assert for_bob.json()["message"] == "ADMIN required for userId"

    by_admin = await select_calendar(client, admin, calendar, userId=bob.id)
    assert by_admin.status_code == 200, by_admin.text
    compound = f"{bob.id}_caldav_calendar_{calendar}"
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method, f"/v1/selected-calendars/{compound}", params=alice.params,
            json={} if method == "PATCH" else None,
        )  # fmt: skip
        assert response.status_code == 403, response.text
    refused = await client.get("/v1/selected-calendars", params={**alice.params, "userId": bob.id})
    assert refused.status_code == 403 and refused.json()["message"] == "ADMIN required"
    everyone = await client.get("/v1/selected-calendars", params={**admin.params, "userId": bob.id})
    assert [r["externalId"] for r in everyone.json()["selected_calendars"]] == [calendar]
    unknown_user = await select_calendar(client, admin, calendar, userId=999999)
    assert unknown_user.status_code == 404


async def test_concurrent_duplicates_make_one_row_and_a_409(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    calendar = radicale.make_calendar("Work")
    await connect_caldav(client, alice, radicale)
    responses = await asyncio.gather(*(select_calendar(client, alice, calendar) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409], [
        r.text for r in responses
    ]
    listed = await client.get("/v1/selected-calendars", params=alice.params)
    assert len(listed.json()["selected_calendars"]) == 1
