"""Team event types: `teamId`, hosts, scheduling types, who may read and change them, team lists.

Scheduling them (slots, bookings) is tested in test_team_scheduling.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.models import UserRole
from tests.api.test_event_types import add_schedule
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}
ADMIN_FOR_TEAM = {"message": "ADMIN required for `teamId`"}


async def create(
    client: httpx.AsyncClient, account: Account, team_id: int, **fields: Any
) -> httpx.Response:
    body = {"title": "Team call", "slug": "team-call", "length": 30, "teamId": team_id, **fields}
    return await client.post("/v1/event-types", params=account.params, json=body)


async def create_ok(
    client: httpx.AsyncClient, account: Account, team_id: int, **fields: Any
) -> dict[str, Any]:
    response = await create(client, account, team_id, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json()["event_type"])


@pytest.fixture
async def carol(make_account: Callable[..., Any]) -> Account:
    return await make_account("carol")


@pytest.fixture
async def dave(make_account: Callable[..., Any]) -> Account:
    return await make_account("dave")


@pytest.fixture
async def team(client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account) -> int:
    """Team "sales": alice OWNER, bob ADMIN, carol MEMBER (all accepted)."""
    team_id = int((await create_team(client, alice, slug="sales"))["team"]["id"])
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    return team_id


def host(user: Account, *, fixed: bool = False, schedule_id: int | None = None) -> dict[str, Any]:
    return {"userId": user.id, "isFixed": fixed, "scheduleId": schedule_id}


# --- create -------------------------------------------------------------------------------------


async def test_owner_creates_a_team_event_type(
    client: httpx.AsyncClient, alice: Account, bob: Account, team: int
) -> None:
    response = await create(
        client, alice, team, schedulingType="ROUND_ROBIN", hosts=[{"userId": bob.id}]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Event type created successfully"
    created = body["event_type"]
    assert created["teamId"] == team and created["userId"] is None
    assert created["schedulingType"] == "ROUND_ROBIN"
    assert created["hosts"] == [host(bob)]
    assert created["team"] == {"slug": "sales"}
    assert created["owner"] is None
    assert created["link"] == "http://localhost:3000/team/sales/team-call"
    # Listing /event-types stays personal (as in Cal.com).
    listed = await client.get("/v1/event-types", params=alice.params)
    assert listed.json() == {"event_types": []}


async def test_admin_of_team_creates_and_managed_is_stored(
    client: httpx.AsyncClient, bob: Account, team: int
) -> None:
    created = await create_ok(client, bob, team, schedulingType="MANAGED")
    assert created["schedulingType"] == "MANAGED"
    fetched = await client.get(f"/v1/event-types/{created['id']}", params=bob.params)
    assert fetched.json()["event_type"] == created


async def test_member_and_outsider_may_not_create(
    client: httpx.AsyncClient, app: FastAPI, carol: Account, dave: Account, team: int
) -> None:
    for account in (carol, dave):
        response = await create(client, account, team)
        assert (response.status_code, response.json()) == (401, ADMIN_FOR_TEAM)
    missing = await create(client, dave, 999_999)
    assert (missing.status_code, missing.json()) == (401, ADMIN_FOR_TEAM)


async def test_pending_invitation_grants_nothing(
    client: httpx.AsyncClient, alice: Account, dave: Account, team: int
) -> None:
    response = await client.post(
        "/v1/memberships",
        params=alice.params,
        json={"teamId": team, "userId": dave.id, "role": "ADMIN"},
    )
    assert response.status_code == 200
    response = await create(client, dave, team)
    assert (response.status_code, response.json()) == (401, ADMIN_FOR_TEAM)
    # ...and a pending member can't be a host either.
    response = await create(client, alice, team, hosts=[{"userId": dave.id}])
    assert response.status_code == 400
    assert response.json() == {
        "message": f"custom in 'hosts': users {dave.id} are not accepted members of team {team}"
    }


async def test_system_admin_creates_for_any_team(
    client: httpx.AsyncClient, make_account: Callable[..., Any], team: int
) -> None:
    root = await make_account("root", role=UserRole.ADMIN)
    created = await create_ok(client, root, team)
    assert created["teamId"] == team
    response = await create(client, root, 999_999)
    assert (response.status_code, response.json()) == (
        404,
        {"message": "Team with id: 999999 not found"},
    )


async def test_team_id_and_user_id_together_are_refused(
    client: httpx.AsyncClient, alice: Account, team: int
) -> None:
    response = await create(client, alice, team, userId=alice.id)
    assert response.status_code == 400
    assert response.json()["message"].startswith("custom in 'userId':")


async def test_hosts_must_be_members_with_their_own_schedules(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    bob: Account,
    carol: Account,
    dave: Account,
    team: int,
) -> None:
    response = await create(client, alice, team, hosts=[{"userId": bob.id}, {"userId": dave.id}])
    assert (response.status_code, response.json()) == (
        400,
        {"message": f"custom in 'hosts': users {dave.id} are not accepted members of team {team}"},
    )
    response = await create(client, alice, team, hosts=[{"userId": bob.id}, {"userId": bob.id}])
    assert response.status_code == 400
    assert "listed more than once" in response.json()["message"]
    carols = await add_schedule(app, carol.id)
    response = await create(client, alice, team, hosts=[{"userId": bob.id, "scheduleId": carols}])
    assert response.status_code == 400
    assert response.json()["message"].startswith("custom in 'hosts,0,scheduleId':")
    created = await create_ok(
        client, alice, team, hosts=[{"userId": carol.id, "scheduleId": carols, "isFixed": True}]
    )
    assert created["hosts"] == [host(carol, fixed=True, schedule_id=carols)]
    # The event type's own schedule must belong to a team member.
    daves = await add_schedule(app, dave.id)
    response = await create(client, alice, team, slug="other", scheduleId=daves)
    assert response.status_code == 400
    assert response.json()["message"].startswith("custom in 'scheduleId':")


async def test_collective_makes_every_host_fixed(
    client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account, team: int
) -> None:
    created = await create_ok(
        client,
        alice,
        team,
        schedulingType="COLLECTIVE",
        hosts=[{"userId": bob.id, "isFixed": False}, {"userId": carol.id}],
    )
    assert created["hosts"] == [host(bob, fixed=True), host(carol, fixed=True)]
    # Switching an existing round-robin event type to COLLECTIVE fixes its hosts too.
    rr = await create_ok(
        client, alice, team, slug="rr", schedulingType="ROUND_ROBIN", hosts=[{"userId": bob.id}]
    )
    assert rr["hosts"] == [host(bob)]
    response = await client.patch(
        f"/v1/event-types/{rr['id']}", params=alice.params, json={"schedulingType": "COLLECTIVE"}
    )
    assert response.json()["event_type"]["hosts"] == [host(bob, fixed=True)]


async def test_assign_all_team_members(
    client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account, team: int
) -> None:
    created = await create_ok(
        client, alice, team, assignAllTeamMembers=True, hosts=[{"userId": bob.id, "isFixed": True}]
    )
    assert created["hosts"] == [host(alice), host(bob, fixed=True), host(carol)]


async def test_slug_is_unique_per_team(
    client: httpx.AsyncClient, alice: Account, team: int
) -> None:
    await create_ok(client, alice, team)
    response = await create(client, alice, team)
    assert (response.status_code, response.json()) == (
        409,
        {"message": "slug 'team-call' is already used by another event type of this team"},
    )
    # The same slug is free for a personal event type and for another team.
    personal = await client.post(
        "/v1/event-types",
        params=alice.params,
        json={"title": "Mine", "slug": "team-call", "length": 30},
    )
    assert personal.status_code == 200
    other = int((await create_team(client, alice, "Other", slug="other"))["team"]["id"])
    await create_ok(client, alice, other)


# --- read, edit, delete -------------------------------------------------------------------------


async def test_members_read_outsiders_do_not(
    client: httpx.AsyncClient, alice: Account, carol: Account, dave: Account, team: int
) -> None:
    created = await create_ok(client, alice, team)
    url = f"/v1/event-types/{created['id']}"
    response = await client.get(url, params=carol.params)
    assert response.status_code == 200
    assert response.json() == {"event_type": created}
    response = await client.get(url, params=dave.params)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


async def test_patch_and_delete_need_owner_or_admin(
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    carol: Account,
    dave: Account,
    team: int,
) -> None:
    created = await create_ok(client, alice, team, hosts=[{"userId": carol.id}])
    url = f"/v1/event-types/{created['id']}"
    for account in (carol, dave):
        response = await client.patch(url, params=account.params, json={"title": "No"})
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
        response = await client.delete(url, params=account.params)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.patch(url, params=bob.params, json={"title": "Renamed"})
    assert response.status_code == 200
    body = response.json()["event_type"]
    # A PATCH without `hosts` keeps them.
    assert body["title"] == "Renamed" and body["hosts"] == [host(carol)]
    response = await client.patch(url, params=bob.params, json={"hosts": [{"userId": bob.id}]})
    assert response.json()["event_type"]["hosts"] == [host(bob)]
    response = await client.patch(url, params=bob.params, json={"hosts": [{"userId": dave.id}]})
    assert response.status_code == 400
    response = await client.patch(url, params=bob.params, json={"teamId": None})
    assert response.status_code == 400
    response = await client.patch(url, params=bob.params, json={"hosts": []})
    assert response.json()["event_type"]["hosts"] == []
    response = await client.delete(url, params=bob.params)
    assert response.status_code == 200
    response = await client.get(url, params=alice.params)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


async def test_patch_slug_clash_within_the_team(
    client: httpx.AsyncClient, alice: Account, team: int
) -> None:
    await create_ok(client, alice, team)
    other = await create_ok(client, alice, team, slug="other")
    response = await client.patch(
        f"/v1/event-types/{other['id']}", params=alice.params, json={"slug": "team-call"}
    )
    assert response.status_code == 409


@pytest.mark.parametrize("path", ["/v1/teams/{}/event-types", "/v1/event-types/team/{}"])
async def test_team_lists(
    client: httpx.AsyncClient,
    make_account: Callable[..., Any],
    alice: Account,
    carol: Account,
    dave: Account,
    team: int,
    path: str,
) -> None:
    first = await create_ok(client, alice, team)
    second = await create_ok(client, alice, team, slug="second")
    await client.post(
        "/v1/event-types",
        params=alice.params,
        json={"title": "Mine", "slug": "mine", "length": 30},
    )
    for account in (alice, carol):
        response = await client.get(path.format(team), params=account.params)
        assert response.status_code == 200
        assert response.json() == {"event_types": [first, second]}
    for team_id in (team, 999_999):
        response = await client.get(path.format(team_id), params=dave.params)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    root = await make_account("root", role=UserRole.ADMIN)
    response = await client.get(path.format(team), params=root.params)
    assert response.json() == {"event_types": [first, second]}
    response = await client.get(path.format(999_999), params=root.params)
    assert response.status_code == 404


async def test_plain_members_read_but_do_not_change_custom_inputs(
    client: httpx.AsyncClient, alice: Account, carol: Account, team: int
) -> None:
    """Custom inputs follow their event type: members see them, only OWNER/ADMIN change them."""
    event_type = await create_ok(client, alice, team)
    body = {"eventTypeId": event_type["id"], "label": "Company", "type": "TEXT", "required": True}
    created = await client.post("/v1/custom-inputs", params=alice.params, json=body)
    assert created.status_code == 200, created.text
    input_id = created.json()["event_type_custom_input"]["id"]

    seen = await client.get(f"/v1/custom-inputs/{input_id}", params=carol.params)
    assert seen.status_code == 200
    refused = [
        await client.post("/v1/custom-inputs", params=carol.params, json=body),
        await client.patch(
            f"/v1/custom-inputs/{input_id}", params=carol.params, json={"label": "Hacked"}
        ),
        await client.delete(f"/v1/custom-inputs/{input_id}", params=carol.params),
    ]
    assert [(r.status_code, r.json()) for r in refused] == [(403, FORBIDDEN)] * 3
    after = await client.get(f"/v1/custom-inputs/{input_id}", params=alice.params)
    assert after.json()["event_type_custom_input"]["label"] == "Company"
