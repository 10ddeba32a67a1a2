"""/v1/memberships and /v1/invites: compound ids, role rules, invitations, last owner, scoping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookable.models import Membership
from tests.api.test_teams import add_member, create_team
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}


async def stored(app: FastAPI, team_id: int) -> list[tuple[int, str, bool]]:
    """(user id, role, accepted) of a team's memberships, in the DB."""
    async with app.state.sessions() as session:
        rows = await session.execute(
            select(Membership.user_id, Membership.role, Membership.accepted)
            .where(Membership.team_id == team_id)
            .order_by(Membership.user_id)
        )
        return [(u, str(r), a) for u, r, a in rows]


@pytest.fixture
async def carol(make_account: Any) -> Account:
    return await make_account("carol")


async def new_team(client: httpx.AsyncClient, owner: Account, name: str = "Sales") -> int:
    return (await create_team(client, owner, name))["team"]["id"]


async def test_create_is_an_invitation_and_only_the_invitee_accepts(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team_id = await new_team(client, alice)
    response = await client.post(
        "/v1/memberships", params=alice.params, json={"teamId": team_id, "userId": bob.id}
    )
    assert response.status_code == 200
    body = response.json()
    membership = body["membership"]
    assert body == {
        "membership": {
            "id": membership["id"],
            "teamId": team_id,
            "userId": bob.id,
            "accepted": False,
            "role": "MEMBER",
            "disableImpersonation": False,
            "createdAt": membership["createdAt"],
            "updatedAt": membership["updatedAt"],
        },
        "message": "Membership created successfully",
    }
    response = await client.patch(
        f"/v1/memberships/{bob.id}_{team_id}", params=alice.params, json={"accepted": True}
    )
    assert (response.status_code, response.json()) == (
        403,
        {"message": "Only the invited user can accept the invite"},
    )
    response = await client.patch(
        f"/v1/memberships/{bob.id}_{team_id}", params=bob.params, json={"accepted": True}
    )
    assert response.status_code == 200
    assert response.json()["membership"]["accepted"] is True
    assert await stored(app, team_id) == [(alice.id, "OWNER", True), (bob.id, "MEMBER", True)]


async def test_non_admin_cannot_create_an_accepted_membership(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team_id = await new_team(client, alice)
    response = await client.post(
        "/v1/memberships",
        params=alice.params,
        json={"teamId": team_id, "userId": bob.id, "accepted": True},
    )
    assert (response.status_code, response.json()) == (
        403,
        {"message": "ADMIN needed for `accepted`"},
    )
    assert await stored(app, team_id) == [(alice.id, "OWNER", True)]


async def test_who_may_add_members(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    carol: Account,
    make_account: Any,
) -> None:
    dave = await make_account("dave")
    team_id = await new_team(client, alice)
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    # A MEMBER cannot add; a stranger cannot add; a missing team looks the same.
    for caller, team in ((carol, team_id), (dave, team_id), (bob, 99999)):
        response = await client.post(
            "/v1/memberships", params=caller.params, json={"teamId": team, "userId": dave.id}
        )
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    # An ADMIN adds members and admins, not owners.
    response = await client.post(
        "/v1/memberships",
        params=bob.params,
        json={"teamId": team_id, "userId": dave.id, "role": "OWNER"},
    )
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.post(
        "/v1/memberships",
        params=bob.params,
        json={"teamId": team_id, "userId": dave.id, "role": "ADMIN"},
    )
    assert response.status_code == 200
    response = await client.post(
        "/v1/memberships", params=bob.params, json={"teamId": team_id, "userId": dave.id}
    )
    assert (response.status_code, response.json()) == (
        409,
        {"message": "Membership already exists"},
    )
    response = await client.post(
        "/v1/memberships", params=alice.params, json={"teamId": team_id, "userId": 99999}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"teamId": 1}, "invalid_type in 'userId': Required"),
        ({"teamId": 1, "userId": 2, "role": "BOSS"}, "invalid_enum_value in 'role'"),
        ({"teamId": 1, "userId": 2, "extra": 1}, "Unrecognized key(s) in object: 'extra'"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/memberships", params=alice.params, json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]


async def test_admin_creates_accepted_memberships_for_anyone(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    team_id = await new_team(client, alice)
    response = await client.post(
        "/v1/memberships",
        params=admin.params,
        json={"teamId": team_id, "userId": bob.id, "accepted": True, "role": "OWNER"},
    )
    assert response.status_code == 200
    assert response.json()["membership"]["accepted"] is True
    response = await client.post(
        "/v1/memberships", params=admin.params, json={"teamId": 99999, "userId": bob.id}
    )
    assert (response.status_code, response.json()) == (404, {"message": "Team not found"})


async def test_list_and_get_scoping(
    client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account, admin: Account
) -> None:
    team_id = await new_team(client, alice)
    other_team = await new_team(client, carol, "Other")
    await add_member(client, alice, bob, team_id)
    everyone = (await client.get("/v1/memberships", params=admin.params)).json()["memberships"]
    assert len(everyone) == 3
    by_key = {(m["userId"], m["teamId"]): m for m in everyone}
    # The owner sees the team's memberships; the member only their own; carol only hers.
    alice_list = (await client.get("/v1/memberships", params=alice.params)).json()
    assert alice_list == {"memberships": [by_key[(alice.id, team_id)], by_key[(bob.id, team_id)]]}
    bob_list = (await client.get("/v1/memberships", params=bob.params)).json()
    assert bob_list == {"memberships": [by_key[(bob.id, team_id)]]}
    carol_list = (await client.get("/v1/memberships", params=carol.params)).json()
    assert carol_list == {"memberships": [by_key[(carol.id, other_team)]]}
    # Items: readable ones answer; others and missing ones are both 403.
    response = await client.get(f"/v1/memberships/{alice.id}_{team_id}", params=alice.params)
    assert response.json() == {"membership": by_key[(alice.id, team_id)]}
    for path in (f"{alice.id}_{team_id}", f"{carol.id}_{other_team}", "99_99", "1_99999999999"):
        response = await client.get(f"/v1/memberships/{path}", params=bob.params)
        assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.get("/v1/memberships/99_99", params=admin.params)
    assert (response.status_code, response.json()) == (404, {"message": "Membership not found"})


async def test_list_filters_and_include_team(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    team = (await create_team(client, alice))["team"]
    bobs = await new_team(client, bob, "Bob's")
    response = await client.get("/v1/memberships", params={**alice.params, "userId": bob.id})
    assert (response.status_code, response.json()) == (403, {"message": "ADMIN required"})
    response = await client.get(
        "/v1/memberships", params={**alice.params, "userId": alice.id, "include": "team"}
    )
    [membership] = response.json()["memberships"]
    assert membership["team"] == team
    # teamId narrows within what the caller sees: another team's memberships stay hidden.
    response = await client.get("/v1/memberships", params={**alice.params, "teamId": bobs})
    assert response.json() == {"memberships": []}
    response = await client.get(
        "/v1/memberships", params=[("apiKey", admin.key), ("userId", bob.id), ("userId", alice.id)]
    )
    assert {m["userId"] for m in response.json()["memberships"]} == {alice.id, bob.id}
    response = await client.get("/v1/memberships", params={**admin.params, "teamId": bobs})
    assert [m["userId"] for m in response.json()["memberships"]] == [bob.id]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("abc_1", "userId is not a number"),
        ("1_abc", "teamId is not a number"),
        ("1", "teamId is not a number"),
        ("_1", "userId is not a number"),
    ],
)
async def test_compound_id_must_be_numeric(
    client: httpx.AsyncClient, alice: Account, path: str, message: str
) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        response = await client.request(
            method, f"/v1/memberships/{path}", params=alice.params, **kwargs
        )
        assert (response.status_code, response.json()) == (400, {"message": message})


async def test_role_changes(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    team_id = await new_team(client, alice)
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    # A MEMBER changes no roles, not even their own.
    response = await client.patch(
        f"/v1/memberships/{carol.id}_{team_id}", params=carol.params, json={"role": "ADMIN"}
    )
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    # An ADMIN promotes to ADMIN but not to OWNER, and cannot demote an OWNER.
    response = await client.patch(
        f"/v1/memberships/{carol.id}_{team_id}", params=bob.params, json={"role": "OWNER"}
    )
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.patch(
        f"/v1/memberships/{alice.id}_{team_id}", params=bob.params, json={"role": "MEMBER"}
    )
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.patch(
        f"/v1/memberships/{carol.id}_{team_id}", params=bob.params, json={"role": "ADMIN"}
    )
    assert response.status_code == 200 and response.json()["membership"]["role"] == "ADMIN"
    # The last OWNER cannot step down; once there is another, they can.
    response = await client.patch(
        f"/v1/memberships/{alice.id}_{team_id}", params=alice.params, json={"role": "ADMIN"}
    )
    assert response.status_code == 409
    assert "at least one accepted OWNER" in response.json()["message"]
    response = await client.patch(
        f"/v1/memberships/{bob.id}_{team_id}", params=alice.params, json={"role": "OWNER"}
    )
    assert response.status_code == 200
    response = await client.patch(
        f"/v1/memberships/{alice.id}_{team_id}", params=alice.params, json={"role": "MEMBER"}
    )
    assert response.status_code == 200
    assert await stored(app, team_id) == [
        (alice.id, "MEMBER", True),
        (bob.id, "OWNER", True),
        (carol.id, "ADMIN", True),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"teamId": 1}, "Unrecognized key(s) in object: 'teamId'"),
        ({"role": None}, "Expected a value, received null"),
        ({"accepted": "maybe"}, "invalid_type in 'accepted'"),
    ],
)
async def test_patch_validation(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], message: str
) -> None:
    team_id = await new_team(client, alice)
    response = await client.patch(
        f"/v1/memberships/{alice.id}_{team_id}", params=alice.params, json=body
    )
    assert response.status_code == 400
    assert message in response.json()["message"]


async def test_disable_impersonation_is_the_members_choice(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    team_id = await new_team(client, alice)
    await add_member(client, alice, bob, team_id)
    path = f"/v1/memberships/{bob.id}_{team_id}"
    response = await client.patch(path, params=alice.params, json={"disableImpersonation": True})
    assert response.status_code == 403
    response = await client.patch(path, params=bob.params, json={"disableImpersonation": True})
    assert response.status_code == 200
    assert response.json()["membership"]["disableImpersonation"] is True


async def test_delete_rules(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    carol: Account,
    make_account: Any,
) -> None:
    dave = await make_account("dave")
    eve = await make_account("eve")
    team_id = await new_team(client, alice)
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    await add_member(client, alice, dave, team_id)

    async def delete(caller: Account, user_id: int) -> httpx.Response:
        return await client.delete(f"/v1/memberships/{user_id}_{team_id}", params=caller.params)

    response = await delete(eve, carol.id)
    assert (response.status_code, response.json()) == (
        403,
        {"message": "You are not a member of the team"},
    )
    response = await delete(alice, eve.id)
    assert (response.status_code, response.json()) == (404, {"message": "Membership not found"})
    response = await client.delete(f"/v1/memberships/{2**40}_{team_id}", params=alice.params)
    assert response.status_code == 403
    wrong_role = {"message": "You don't have the appropriate role to delete this membership"}
    for caller, target in ((carol, dave), (bob, alice), (carol, bob)):
        response = await delete(caller, target.id)
        assert (response.status_code, response.json()) == (403, wrong_role)
    # ADMIN removes a MEMBER; a MEMBER leaves; OWNER removes an ADMIN.
    response = await delete(bob, carol.id)
    assert response.status_code == 200
    assert response.json() == {
        "message": f"Membership with id: {carol.id}_{team_id} deleted successfully"
    }
    assert (await delete(dave, dave.id)).status_code == 200
    assert (await delete(alice, bob.id)).status_code == 200
    # The last OWNER cannot leave.
    response = await delete(alice, alice.id)
    assert response.status_code == 409
    assert await stored(app, team_id) == [(alice.id, "OWNER", True)]


async def test_invitee_may_decline_and_admin_may_delete(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    team_id = await new_team(client, alice)
    await client.post(
        "/v1/memberships", params=alice.params, json={"teamId": team_id, "userId": bob.id}
    )
    # A pending invitee is no member: they cannot remove others, only decline.
    response = await client.delete(f"/v1/memberships/{alice.id}_{team_id}", params=bob.params)
    assert response.status_code == 403
    response = await client.delete(f"/v1/memberships/{bob.id}_{team_id}", params=bob.params)
    assert response.status_code == 200
    await add_member(client, alice, bob, team_id)
    response = await client.delete(f"/v1/memberships/{bob.id}_{team_id}", params=admin.params)
    assert response.status_code == 200
    response = await client.delete(f"/v1/memberships/{bob.id}_{team_id}", params=admin.params)
    assert (response.status_code, response.json()) == (404, {"message": "Membership not found"})
    for path in (f"{2**40}_{team_id}", f"{bob.id}_{2**40}"):
        response = await client.delete(f"/v1/memberships/{path}", params=admin.params)
        assert (response.status_code, response.json()) == (404, {"message": "Membership not found"})
        response = await client.patch(f"/v1/memberships/{path}", params=admin.params, json={})
        assert response.status_code == 404
    assert await stored(app, team_id) == [(alice.id, "OWNER", True)]


async def test_strangers_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    team_id = await new_team(client, alice)
    await add_member(client, alice, carol, team_id)
    before = await stored(app, team_id)
    path = f"/v1/memberships/{carol.id}_{team_id}"
    response = await client.patch(path, params=bob.params, json={"role": "OWNER"})
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = await client.delete(path, params=bob.params)
    assert response.status_code == 403
    response = await client.post(
        "/v1/memberships", params=bob.params, json={"teamId": team_id, "userId": bob.id}
    )
    assert response.status_code == 403
    response = await client.post(
        "/v1/invites", params=bob.params, json={"teamId": team_id, "usernameOrEmail": "bob"}
    )
    assert response.status_code == 403
    assert await stored(app, team_id) == before


async def test_invites(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account, carol: Account
) -> None:
    team_id = await new_team(client, alice)
    response = await client.post(
        "/v1/invites",
        params=alice.params,
        json={"teamId": team_id, "usernameOrEmail": "bob", "role": "ADMIN", "language": "en"},
    )
    assert (response.status_code, response.json()) == (
        200,
        {"success": True, "message": "bob has been invited."},
    )
    response = await client.post(
        "/v1/invites",
        params=alice.params,
        json={"teamId": team_id, "usernameOrEmail": ["CAROL@example.com", "bob"]},
    )
    assert response.json() == {
        "success": True,
        "message": "CAROL@example.com,bob has been invited.",
    }
    assert await stored(app, team_id) == [
        (alice.id, "OWNER", True),
        (bob.id, "ADMIN", False),
        (carol.id, "MEMBER", False),
    ]
    response = await client.post(
        "/v1/invites",
        params=alice.params,
        json={"teamId": team_id, "usernameOrEmail": ["nobody@example.com"]},
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("nobody@example.com is not a user")
    # A pending ADMIN is no ADMIN yet.
    response = await client.post(
        "/v1/invites", params=bob.params, json={"teamId": team_id, "usernameOrEmail": "carol"}
    )
    assert (response.status_code, response.json()) == (
        403,
        {"message": "You can't add members to this team"},
    )
    response = await client.post(
        "/v1/invites", params=alice.params, json={"teamId": team_id, "usernameOrEmail": []}
    )
    assert response.status_code == 400


async def test_memberships_need_a_key(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/v1/memberships"),
        ("POST", "/v1/memberships"),
        ("GET", "/v1/memberships/1_1"),
        ("POST", "/v1/invites"),
    ]:
        response = await client.request(method, path)
        assert (response.status_code, response.json()) == (401, {"message": "No apiKey provided"})
