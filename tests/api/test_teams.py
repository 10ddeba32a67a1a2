"""/v1/teams: envelopes, the creator as OWNER, role rules, slug clashes, scoping, admins."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookable.models import EventType, Membership, Team
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}


async def create_team(
    client: httpx.AsyncClient, account: Account, name: str = "Sales", **extra: Any
) -> dict[str, Any]:
    response = await client.post("/v1/teams", params=account.params, json={"name": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def add_member(
    client: httpx.AsyncClient, owner: Account, member: Account, team_id: int, role: str = "MEMBER"
) -> None:
    """Invite ``member`` and let them accept."""
    response = await client.post(
        "/v1/memberships",
        params=owner.params,
        json={"teamId": team_id, "userId": member.id, "role": role},
    )
    assert response.status_code == 200, response.text
    response = await client.patch(
        f"/v1/memberships/{member.id}_{team_id}", params=member.params, json={"accepted": True}
    )
    assert response.status_code == 200, response.text


async def stored_team(app: FastAPI, team_id: int) -> tuple[str, str | None] | None:
    async with app.state.sessions() as session:
        row = (
            await session.execute(select(Team.name, Team.slug).where(Team.id == team_id))
        ).first()
        return None if row is None else (row[0], row[1])


async def test_create_team_makes_the_creator_owner(
    client: httpx.AsyncClient, alice: Account
) -> None:
    body = await create_team(
        client,
        alice,
        slug="sales",
        bio="We sell",
        metadata={"a": 1},
        timeFormat=24,
        timeZone="Europe/Paris",
        bookingLimits={"PER_DAY": 3},
    )
    team = body["team"]
    assert set(body) == {"team", "owner", "message"}
    assert body["message"] == (
        f"Team created successfully. We also made user with ID={alice.id} the owner of this team."
    )
    assert team == {
        "id": team["id"],
        "name": "Sales",
        "slug": "sales",
        "logoUrl": None,
        "bio": "We sell",
        "hideBranding": False,
        "isPrivate": False,
        "hideBookATeamMember": False,
        "metadata": {"a": 1},
        "theme": None,
        "brandColor": None,
        "darkBrandColor": None,
        "bannerUrl": None,
        "parentId": None,
        "timeFormat": 24,
        "timeZone": "Europe/Paris",
        "weekStart": "Sunday",
        "isOrganization": False,
        "pendingPayment": False,
        "isPlatform": False,
        "bookingLimits": {"PER_DAY": 3},
        "createdAt": team["createdAt"],
    }
    assert team["createdAt"].endswith("Z")
    owner = body["owner"]
    assert owner == {
        "id": owner["id"],
        "teamId": team["id"],
        "userId": alice.id,
        "accepted": True,
        "role": "OWNER",
        "disableImpersonation": False,
        "createdAt": owner["createdAt"],
        "updatedAt": owner["updatedAt"],
    }


async def test_list_and_get_show_only_the_callers_teams(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    mine = (await create_team(client, alice, "A"))["team"]
    theirs = (await create_team(client, bob, "B"))["team"]
    response = await client.get("/v1/teams", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"teams": [mine]}
    response = await client.get(f"/v1/teams/{mine['id']}", params=alice.params)
    assert response.json() == {"team": mine}
    # Another user's team and a missing one answer alike.
    for team_id in (theirs["id"], 999_999, 2**40):
        response = await client.get(f"/v1/teams/{team_id}", params=alice.params)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)


async def test_pending_invitees_do_not_see_the_team_until_they_accept(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = (await create_team(client, alice))["team"]
    response = await client.post(
        "/v1/memberships", params=alice.params, json={"teamId": team["id"], "userId": bob.id}
    )
    assert response.status_code == 200
    assert (await client.get("/v1/teams", params=bob.params)).json() == {"teams": []}
    await client.patch(
        f"/v1/memberships/{bob.id}_{team['id']}", params=bob.params, json={"accepted": True}
    )
    assert (await client.get("/v1/teams", params=bob.params)).json() == {"teams": [team]}


async def test_admin_sees_every_team_and_gets_404_for_missing(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    team = (await create_team(client, alice))["team"]
    assert (await client.get("/v1/teams", params=admin.params)).json() == {"teams": [team]}
    response = await client.get("/v1/teams/999", params=admin.params)
    assert (response.status_code, response.json()) == (404, {"message": "Team not found"})


async def test_owner_id_is_for_admins(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    response = await client.post(
        "/v1/teams", params=alice.params, json={"name": "X", "ownerId": bob.id}
    )
    assert (response.status_code, response.json()) == (
        401,
        {"message": "ADMIN required for `ownerId`"},
    )
    body = await create_team(client, alice, "Own", ownerId=alice.id)
    assert body["owner"]["userId"] == alice.id
    body = await create_team(client, admin, "ForBob", ownerId=bob.id)
    assert body["owner"]["userId"] == bob.id and body["owner"]["role"] == "OWNER"
    assert f"ID={bob.id} the owner" in body["message"]
    body = await create_team(client, admin, "ForAdmin")
    assert f"ID={admin.id} the owner" in body["message"]
    response = await client.post(
        "/v1/teams", params=admin.params, json={"name": "X", "ownerId": 99999}
    )
    assert response.status_code == 404


async def test_slug_clash_is_case_insensitive(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await create_team(client, alice, slug="sales")
    response = await client.post(
        "/v1/teams", params=bob.params, json={"name": "S", "slug": "Sales"}
    )
    assert (response.status_code, response.json()) == (409, {"message": "Team slug already exists"})
    other = (await create_team(client, bob, "Other", slug="other"))["team"]
    response = await client.patch(
        f"/v1/teams/{other['id']}", params=bob.params, json={"slug": "SALES"}
    )
    assert (response.status_code, response.json()) == (409, {"message": "Team slug already exists"})
    # Its own slug is no clash (slugs are slugified as event types' are).
    response = await client.patch(
        f"/v1/teams/{other['id']}", params=bob.params, json={"slug": "Other"}
    )
    assert response.status_code == 200 and response.json()["team"]["slug"] == "other"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "invalid_type in 'name': Required"),
        ({"name": ""}, "too_small in 'name': String must contain at least 1 character(s)"),
        ({"name": "x" * 256}, "too_big in 'name': String must contain at most 255 character(s)"),
        ({"name": "x", "colour": "red"}, "Unrecognized key(s) in object: 'colour'"),
        ({"name": "x", "hideBranding": None}, "Expected a value, received null"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/teams", params=alice.params, json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]


async def test_organisation_flags_are_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    response = await client.post(
        "/v1/teams", params=alice.params, json={"name": "Org", "isOrganization": True}
    )
    assert (response.status_code, response.json()) == (
        401,
        {"message": "ADMIN required for `isOrganization`"},
    )
    body = await create_team(client, admin, "Org", isOrganization=True)
    assert body["team"]["isOrganization"] is True


async def test_parent_must_be_managed_by_the_caller(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    parent = (await create_team(client, alice, "Parent"))["team"]
    child = (await create_team(client, alice, "Child", parentId=parent["id"]))["team"]
    assert child["parentId"] == parent["id"]
    response = await client.post(
        "/v1/teams", params=bob.params, json={"name": "Sneaky", "parentId": parent["id"]}
    )
    assert response.status_code == 401
    response = await client.patch(
        f"/v1/teams/{child['id']}", params=alice.params, json={"parentId": child["id"]}
    )
    assert response.status_code == 400


async def test_patch_needs_owner_or_admin(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, make_account: Any
) -> None:
    carol = await make_account("carol")
    team = (await create_team(client, alice, slug="t"))["team"]
    await add_member(client, alice, bob, team["id"], role="ADMIN")
    await add_member(client, alice, carol, team["id"])
    response = await client.patch(
        f"/v1/teams/{team['id']}", params=carol.params, json={"name": "Carol's"}
    )
    assert (response.status_code, response.json()) == (
        401,
        {"message": "Unauthorized: OWNER or ADMIN required"},
    )
    response = await client.patch(
        f"/v1/teams/{team['id']}", params=bob.params, json={"name": "Renamed", "bio": "b"}
    )
    assert response.status_code == 200
    assert response.json() == {"team": {**team, "name": "Renamed", "bio": "b"}}
    response = await client.patch(
        f"/v1/teams/{team['id']}", params=alice.params, json={"name": None}
    )
    assert response.status_code == 400
    assert await stored_team(app, team["id"]) == ("Renamed", "t")


async def test_strangers_cannot_change_or_delete_a_team(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = (await create_team(client, alice, slug="a"))["team"]
    response = await client.patch(
        f"/v1/teams/{team['id']}", params=bob.params, json={"name": "Mine"}
    )
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.delete(f"/v1/teams/{team['id']}", params=bob.params)
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    assert await stored_team(app, team["id"]) == ("Sales", "a")


async def test_delete_is_for_owners_and_takes_memberships_and_event_types(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team = (await create_team(client, alice))["team"]
    await add_member(client, alice, bob, team["id"], role="ADMIN")
    async with app.state.sessions() as session, session.begin():
        session.add(EventType(title="Team call", slug="call", length=30, team_id=team["id"]))
    response = await client.delete(f"/v1/teams/{team['id']}", params=bob.params)
    assert (response.status_code, response.json()) == (
        401,
        {"message": "Unauthorized: OWNER or ADMIN role required"},
    )
    response = await client.delete(f"/v1/teams/{team['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"Team with id: {team['id']} deleted successfully"}
    assert await stored_team(app, team["id"]) is None
    async with app.state.sessions() as session:
        assert (await session.scalars(select(Membership))).all() == []
        assert (await session.scalars(select(EventType))).all() == []


async def test_admin_edits_and_deletes_any_team(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    team = (await create_team(client, alice))["team"]
    response = await client.patch(
        f"/v1/teams/{team['id']}", params=admin.params, json={"name": "By admin"}
    )
    assert response.status_code == 200 and response.json()["team"]["name"] == "By admin"
    response = await client.delete(f"/v1/teams/{team['id']}", params=admin.params)
    assert response.status_code == 200
    response = await client.delete(f"/v1/teams/{team['id']}", params=admin.params)
    assert response.status_code == 404


async def test_teams_need_a_key(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/v1/teams"), ("POST", "/v1/teams"), ("GET", "/v1/teams/1")]:
        response = await client.request(method, path)
        assert (response.status_code, response.json()) == (401, {"message": "No apiKey provided"})
