"""/v1/destination-calendars as Cal.com, plus the checks it promises and skips: the credential is
the owner's, the calendar exists in it and takes events (listed live, on a real Radicale), a
non-admin's row is always theirs, one per user and per event type (409), rows outside the
caller's reach are 404s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import DestinationCalendar
from tests.api.calendar_helpers import connect_caldav
from tests.api.test_teams import add_member, create_team
from tests.api.test_webhooks import make_event_type
from tests.calendar_servers import IcsServer, RadicaleAccount, RadicaleServer
from tests.conftest import Account

BASE = "/v1/destination-calendars"
READ_FIELDS = {
    "id", "integration", "externalId", "eventTypeId", "userId", "credentialId", "primaryEmail",
}  # fmt: skip


async def create(
    client: httpx.AsyncClient, caller: Account, external_id: str, **extra: Any
) -> httpx.Response:
    body = {"integration": "caldav_calendar", "externalId": external_id, **extra}
    return await client.post(BASE, params=caller.params, json=body)


async def create_ok(
    client: httpx.AsyncClient, caller: Account, external_id: str, **extra: Any
) -> dict[str, Any]:
    response = await create(client, caller, external_id, **extra)
    assert response.status_code == 200, response.text
    row: dict[str, Any] = response.json()["destinationCalendar"]
    return row


async def rows_in_db(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(DestinationCalendar)))


async def test_user_level_create_list_get_patch_delete(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    work = radicale.make_calendar("Work")
    home = radicale.make_calendar("Home")
    credential = await connect_caldav(client, alice, radicale)

    response = await create(client, alice, work)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Destination calendar created successfully"
    row = body["destinationCalendar"]
    assert set(row) == READ_FIELDS
    assert (row["integration"], row["externalId"], row["userId"], row["eventTypeId"]) == (
        "caldav_calendar", work, alice.id, None,
    )  # fmt: skip
    assert row["credentialId"] == credential["id"]
    assert row["primaryEmail"]

    listed = await client.get(BASE, params=alice.params)
    assert listed.json() == {"destinationCalendars": [row]}
    one = await client.get(f"{BASE}/{row['id']}", params=alice.params)
    assert one.json() == {"destinationCalendar": row}

    # Another calendar (the app slug is as good as the type), checked live.
    patched = await client.patch(
        f"{BASE}/{row['id']}",
        params=alice.params,
        json={"integration": "caldav-calendar", "externalId": home},
    )
    assert patched.status_code == 200, patched.text
    moved = patched.json()["destinationCalendar"]
    assert (moved["externalId"], moved["integration"], moved["userId"]) == (
        home, "caldav_calendar", alice.id,
    )  # fmt: skip
    unchanged = await client.patch(f"{BASE}/{row['id']}", params=alice.params, json={})
    assert unchanged.json() == {"destinationCalendar": moved}

    deleted = await client.delete(f"{BASE}/{row['id']}", params=alice.params)
    assert deleted.json() == {"message": "OK, Destination Calendar removed successfully"}
    assert (await client.get(BASE, params=alice.params)).json() == {"destinationCalendars": []}
    gone = await client.get(f"{BASE}/{row['id']}", params=alice.params)
    assert (gone.status_code, gone.json()) == (404, {"message": "Destination calendar not found"})


async def test_event_type_level_and_duplicates(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    work = radicale.make_calendar("Work")
    home = radicale.make_calendar("Home")
    credential = await connect_caldav(client, alice, radicale)
    intro = await make_event_type(client, alice, slug="intro")
    other = await make_event_type(client, alice, slug="other")

    for_type = await create_ok(
        client, alice, work, eventTypeId=intro, credentialId=credential["id"], bookingId=42
    )
    assert (for_type["eventTypeId"], for_type["userId"]) == (intro, None)
    mine = await create_ok(client, alice, home)
    listed = (await client.get(BASE, params=alice.params)).json()["destinationCalendars"]
    assert listed == [for_type, mine]

    again_user = await create(client, alice, work)
    assert again_user.status_code == 409
    assert f"User {alice.id} already has a destination calendar" in again_user.json()["message"]
    again_type = await create(client, alice, home, eventTypeId=intro)
    assert again_type.status_code == 409
    assert f"Event type {intro} already has" in again_type.json()["message"]

    # Moving to another event type of one's own; onto one that has a row: 409.
    second = await create_ok(client, alice, home, eventTypeId=other)
    clash = await client.patch(
        f"{BASE}/{second['id']}", params=alice.params, json={"eventTypeId": intro}
    )
    assert clash.status_code == 409 and f"Event type {intro}" in clash.json()["message"]
    await client.delete(f"{BASE}/{for_type['id']}", params=alice.params)
    moved = await client.patch(
        f"{BASE}/{second['id']}", params=alice.params, json={"eventTypeId": intro}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["destinationCalendar"]["eventTypeId"] == intro

    # A row stays at its level (Cal.com's messages).
    to_type = await client.patch(
        f"{BASE}/{mine['id']}", params=alice.params, json={"eventTypeId": other}
    )
    assert (to_type.status_code, to_type.json()["message"]) == (
        400, "The provided destination calendar can not be linked to an event type",
    )  # fmt: skip
    to_user = await client.patch(
        f"{BASE}/{second['id']}", params=alice.params, json={"eventTypeId": None}
    )
    assert (to_user.status_code, to_user.json()["message"]) == (
        400, "The provided destination calendar can only be linked to an event type",
    )  # fmt: skip


async def test_patch_duplicate_user_row_is_a_409(
    client: httpx.AsyncClient,
    alice: Account,
    admin: Account,
    radicale: RadicaleAccount,
    radicale_server: RadicaleServer,
) -> None:
    work = radicale.make_calendar("Work")
    await connect_caldav(client, alice, radicale)
    alices = await create_ok(client, alice, work)
    admins_account = radicale_server.new_account()
    admins_calendar = admins_account.make_calendar("Admins")
    await connect_caldav(client, admin, admins_account)
    admins = await create_ok(client, admin, admins_calendar)
    assert admins["userId"] == admin.id  # an admin without `userId`: their own row
    onto_alice = await client.patch(
        f"{BASE}/{admins['id']}", params=admin.params, json={"userId": alice.id}
    )
    assert onto_alice.status_code == 409
    assert f"User {alice.id} already has" in onto_alice.json()["message"]
    assert alices["userId"] == alice.id


async def test_concurrent_creates_make_one_row(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount, app: FastAPI
) -> None:
    work = radicale.make_calendar("Work")
    home = radicale.make_calendar("Home")
    await connect_caldav(client, alice, radicale)
    responses = await asyncio.gather(create(client, alice, work), create(client, alice, home))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    assert await rows_in_db(app) == 1


@pytest.mark.parametrize("with_credential_id", [True, False])
async def test_calendar_checks(
    client: httpx.AsyncClient,
    alice: Account,
    radicale: RadicaleAccount,
    app: FastAPI,
    with_credential_id: bool,
) -> None:
    read_only = radicale.make_read_only_calendar("Holidays")
    credential = await connect_caldav(client, alice, radicale)
    extra = {"credentialId": credential["id"]} if with_credential_id else {}
    unknown = await create(client, alice, radicale.url + "someone-else/cal/", **extra)
    assert unknown.status_code == 400
    assert "'externalId'" in unknown.json()["message"]
    refused = await create(client, alice, read_only, **extra)
    assert refused.status_code == 400
    assert "'externalId'" in refused.json()["message"]
    assert "read-only" in refused.json()["message"]
    no_apple = await client.post(
        BASE,
        params=alice.params,
        json={"integration": "apple_calendar", "externalId": "https://caldav.icloud.com/x/"},
    )
    assert no_apple.status_code == 400
    assert "no apple_calendar credential" in no_apple.json()["message"]
    assert await rows_in_db(app) == 0


async def test_ics_feeds_are_never_destinations(
    client: httpx.AsyncClient, alice: Account, ics_server: IcsServer, app: FastAPI
) -> None:
    feed = ics_server.set_feed(
        "/alice.ics", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nEND:VCALENDAR\r\n"
    )
    connected = await client.post(
        "/v1/credentials",
        params=alice.params,
        json={"appId": "ics-feed", "key": {"urls": [feed]}},
    )
    assert connected.status_code == 200, connected.text
    requests_before = ics_server.count()
    for integration in ("ics-feed_calendar", "ics-feed"):
        response = await client.post(
            BASE, params=alice.params, json={"integration": integration, "externalId": feed}
        )
        assert response.status_code == 400
        message = response.json()["message"]
        assert "'integration'" in message and "read-only" in message
    assert ics_server.count() == requests_before  # refused before any request to the feed
    assert await rows_in_db(app) == 0


async def test_credentials_of_others(
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    radicale: RadicaleAccount,
    radicale_server: RadicaleServer,
) -> None:
    bobs_calendar = radicale.make_calendar("Bobs")
    bobs_credential = await connect_caldav(client, bob, radicale)
    alices_account = radicale_server.new_account()
    await connect_caldav(client, alice, alices_account)
    foreign = await create(client, alice, bobs_calendar, credentialId=bobs_credential["id"])
    assert foreign.status_code == 400
    assert "'credentialId'" in foreign.json()["message"]
    missing = await create(client, alice, bobs_calendar, credentialId=999_999)
    assert missing.status_code == 400
    # The same answer but for the id: nothing tells whether Bob's credential exists.
    without_id = [r.json()["message"].rsplit(" ", 1)[0] for r in (missing, foreign)]
    assert without_id[0] == without_id[1]
    # Without credentialId, only Alice's own credentials are searched.
    not_hers = await create(client, alice, bobs_calendar)
    assert not_hers.status_code == 400 and "'externalId'" in not_hers.json()["message"]


async def test_unreachable_server_is_a_clear_400(
    client: httpx.AsyncClient, alice: Account, private_radicale: RadicaleServer, app: FastAPI
) -> None:
    account = private_radicale.new_account()
    calendar = account.make_calendar("Work")
    await connect_caldav(client, alice, account)
    private_radicale.stop()
    response = await create(client, alice, calendar)
    assert response.status_code == 400, response.text
    assert response.json()["message"]
    assert await rows_in_db(app) == 0


async def test_admins_and_other_users(
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    admin: Account,
    radicale: RadicaleAccount,
) -> None:
    work = radicale.make_calendar("Work")
    home = radicale.make_calendar("Home")
    await connect_caldav(client, bob, radicale)
    bobs_type = await make_event_type(client, bob, slug="bobs")

    for_bob = await create(client, alice, work, userId=bob.id)
    assert (for_bob.status_code, for_bob.json()) == (
        401,
        {"message": "ADMIN required for `userId`"},
    )
    on_bobs_type = await create(client, alice, work, eventTypeId=bobs_type)
    assert (on_bobs_type.status_code, on_bobs_type.json()) == (
        404, {"message": f"Event type with ID {bobs_type} not found"},
    )  # fmt: skip
    no_type = await create(client, alice, work, eventTypeId=987_654)
    assert no_type.json() == {"message": "Event type with ID 987654 not found"}

    by_admin = await create_ok(client, admin, work, userId=bob.id)
    assert by_admin["userId"] == bob.id
    # An admin's event-type row: the calendar of the event type's owner.
    on_type = await create_ok(client, admin, home, eventTypeId=bobs_type)
    assert (on_type["userId"], on_type["eventTypeId"]) == (None, bobs_type)
    unknown_user = await create(client, admin, work, userId=999_999)
    assert unknown_user.status_code == 404

    refused = await client.get(BASE, params={**alice.params, "userId": bob.id})
    assert (refused.status_code, refused.json()) == (401, {"message": "ADMIN required"})
    assert (await client.get(BASE, params=alice.params)).json() == {"destinationCalendars": []}
    bobs = (await client.get(BASE, params=bob.params)).json()["destinationCalendars"]
    assert [r["id"] for r in bobs] == [by_admin["id"], on_type["id"]]
    everyone = await client.get(BASE, params=admin.params)
    assert [r["id"] for r in everyone.json()["destinationCalendars"]] == [
        by_admin["id"], on_type["id"],
    ]  # fmt: skip
    filtered = await client.get(BASE, params={**admin.params, "userId": alice.id})
    assert filtered.json() == {"destinationCalendars": []}
    filtered = await client.get(BASE, params={**admin.params, "userId": bob.id})
    assert len(filtered.json()["destinationCalendars"]) == 2

    for row in (by_admin, on_type):
        for method in ("GET", "PATCH", "DELETE"):
            response = await client.request(
                method, f"{BASE}/{row['id']}", params=alice.params,
                json={} if method == "PATCH" else None,
            )  # fmt: skip
            assert (response.status_code, response.json()) == (
                404, {"message": "Destination calendar not found"},
            )  # fmt: skip
    # Bob can't hand his row to Alice; the admin may change it.
    to_alice = await client.patch(
        f"{BASE}/{by_admin['id']}", params=bob.params, json={"userId": alice.id}
    )
    assert to_alice.status_code == 401
    same_owner = await client.patch(
        f"{BASE}/{by_admin['id']}", params=bob.params, json={"userId": bob.id}
    )
    assert same_owner.status_code == 200, same_owner.text
    patched = await client.patch(
        f"{BASE}/{by_admin['id']}",
        params=admin.params,
        json={"integration": "caldav_calendar", "externalId": home},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["destinationCalendar"]["userId"] == bob.id
    # The admin moves Bob's row to Alice: Alice has no CalDAV credential.
    to_alice_by_admin = await client.patch(
        f"{BASE}/{by_admin['id']}", params=admin.params, json={"userId": alice.id}
    )
    assert to_alice_by_admin.status_code == 400
    assert "no caldav_calendar credential" in to_alice_by_admin.json()["message"]
    assert (await client.delete(f"{BASE}/{on_type['id']}", params=admin.params)).status_code == 200
    missing = await client.get(f"{BASE}/{on_type['id']}", params=admin.params)
    assert missing.status_code == 404


async def test_team_event_types(
    client: httpx.AsyncClient,
    make_account: Callable[..., Any],
    radicale_server: RadicaleServer,
) -> None:
    owner, manager, member = [await make_account(n) for n in ("owner", "manager", "member")]
    team_id = int((await create_team(client, owner, slug="sales"))["team"]["id"])
    await add_member(client, owner, manager, team_id, role="ADMIN")
    await add_member(client, owner, member, team_id)
    event_type = await make_event_type(client, owner, slug="team-call", teamId=team_id)
    calendars: dict[str, str] = {}
    for name, account in (("owner", owner), ("manager", manager), ("member", member)):
        radicale = radicale_server.new_account()
        calendars[name] = radicale.make_calendar(name)
        await connect_caldav(client, account, radicale)

    refused = await create(client, member, calendars["member"], eventTypeId=event_type)
    assert (refused.status_code, refused.json()) == (
        404, {"message": f"Event type with ID {event_type} not found"},
    )  # fmt: skip
    # The team's ADMIN sets it, with their own calendar; the OWNER sees and changes it.
    row = await create_ok(client, manager, calendars["manager"], eventTypeId=event_type)
    owners_view = await client.get(BASE, params=owner.params)
    assert owners_view.json() == {"destinationCalendars": [row]}
    for_member = await client.get(f"{BASE}/{row['id']}", params=member.params)
    assert for_member.status_code == 404
    assert (await client.get(BASE, params=member.params)).json() == {"destinationCalendars": []}
    # A PATCH that leaves the calendar alone keeps the manager's credential.
    kept = await client.patch(f"{BASE}/{row['id']}", params=owner.params, json={})
    assert kept.json() == {"destinationCalendar": row}
    # A new calendar is the caller's own.
    managers_calendar = await client.patch(
        f"{BASE}/{row['id']}",
        params=owner.params,
        json={"integration": "caldav_calendar", "externalId": calendars["manager"]},
    )
    assert managers_calendar.status_code == 400
    changed = await client.patch(
        f"{BASE}/{row['id']}",
        params=owner.params,
        json={"integration": "caldav_calendar", "externalId": calendars["owner"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["destinationCalendar"]["externalId"] == calendars["owner"]
    denied = await client.delete(f"{BASE}/{row['id']}", params=member.params)
    assert denied.status_code == 404
    assert (await client.delete(f"{BASE}/{row['id']}", params=manager.params)).status_code == 200


async def test_deleting_the_event_type_or_credential_removes_the_row(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount, app: FastAPI
) -> None:
    work = radicale.make_calendar("Work")
    credential = await connect_caldav(client, alice, radicale)
    event_type = await make_event_type(client, alice, slug="intro")
    await create_ok(client, alice, work, eventTypeId=event_type)
    mine = await create_ok(client, alice, work)
    assert await rows_in_db(app) == 2
    response = await client.delete(f"/v1/event-types/{event_type}", params=alice.params)
    assert response.status_code == 200, response.text
    assert (await client.get(BASE, params=alice.params)).json() == {"destinationCalendars": [mine]}
    response = await client.delete(f"/v1/credentials/{credential['id']}", params=alice.params)
    assert response.status_code == 200, response.text
    assert await rows_in_db(app) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"externalId": "x"}, "invalid_type in 'integration': Required"),
        ({"integration": "caldav_calendar"}, "invalid_type in 'externalId': Required"),
        ({"integration": "caldav_calendar", "externalId": ""}, "'externalId'"),
        ({"integration": "google_calendar", "externalId": "x"}, "'integration'"),
        ({"integration": 5, "externalId": "x"}, "'integration'"),
        ({"integration": "caldav_calendar", "externalId": "x", "eventTypeId": "a"}, "eventTypeId"),
        ({"integration": "caldav_calendar", "externalId": "x", "credentialId": -1}, "credentialId"),
        ({"integration": "caldav_calendar", "externalId": "x", "userId": 1.5}, "userId"),
        ({"integration": "caldav_calendar", "externalId": "x", "extra": 1}, "'extra'"),
    ],
)
async def test_invalid_create_bodies(
    client: httpx.AsyncClient, alice: Account, app: FastAPI, body: dict[str, Any], message: str
) -> None:
    response = await client.post(BASE, params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert await rows_in_db(app) == 0


async def test_invalid_patches(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    work = radicale.make_calendar("Work")
    await connect_caldav(client, alice, radicale)
    row = await create_ok(client, alice, work)
    url = f"{BASE}/{row['id']}"
    cases: list[tuple[Any, int, str]] = [
        ({"integration": "caldav_calendar"}, 400, "External Id is required with integration value"),
        ({"externalId": work}, 400, "Integration value is required with external ID"),
        ({"integration": "ics-feed", "externalId": work}, 400, "read-only"),
        ({"externalId": None}, 400, "'externalId'"),
        ({"credentialId": "x"}, 400, "'credentialId'"),
        ({"id": 5}, 400, "'id'"),
        ([1], 400, ""),
    ]
    for body, status, message in cases:
        response = await client.patch(url, params=alice.params, json=body)
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["message"], body
    bad_id = await client.get(f"{BASE}/abc", params=alice.params)
    assert bad_id.status_code == 400 and "'id'" in bad_id.json()["message"]
    huge = await client.get(f"{BASE}/99999999999", params=alice.params)
    assert huge.status_code in {400, 404}
    assert (await client.get(url, params=alice.params)).json() == {"destinationCalendar": row}


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
async def test_no_key(client: httpx.AsyncClient, method: str) -> None:
    path = BASE if method in {"GET", "POST"} else f"{BASE}/1"
    response = await client.request(method, path, json={} if method in {"POST", "PATCH"} else None)
    assert response.status_code == 401
