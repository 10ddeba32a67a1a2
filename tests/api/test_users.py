"""Users: /v1/me, /v1/users, /v1/users/{userId}: shapes, scoping, validation, role changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from bookable.models import ApiKey, User, UserRole
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

USER_FIELDS = {
    "id",
    "username",
    "name",
    "email",
    "emailVerified",
    "bio",
    "avatarUrl",
    "timeZone",
    "weekStart",
    "endTime",
    "bufferTime",
    "appTheme",
    "theme",
    "defaultScheduleId",
    "locale",
    "timeFormat",
    "hideBranding",
    "brandColor",
    "darkBrandColor",
    "allowDynamicBooking",
    "createdDate",
    "verified",
    "invitedTo",
    "role",
}
WIRE_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def user_count(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def load_user(app: FastAPI, user_id: int) -> User | None:
    async with app.state.sessions() as session:
        return await session.get(User, user_id)


# --- GET /v1/me ----------------------------------------------------------------------------------


async def test_me_shape(app: FastAPI, client: httpx.AsyncClient, alice: Account) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(
            update(User)
            .where(User.id == alice.id)
            .values(
                created_date=datetime(2026, 1, 1, 9, 30, tzinfo=UTC),
                email_verified=datetime(2026, 1, 2, 10, 15, 30, 250000, tzinfo=UTC),
                name="Alice Example",
            )
        )
    response = await client.get("/v1/me", params=alice.params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user"}
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert user["id"] == alice.id
    assert user["email"] == alice.email
    assert user["username"] == "alice"
    assert user["name"] == "Alice Example"
    assert user["createdDate"] == "2026-01-01T09:30:00.000Z"
    assert user["emailVerified"] == "2026-01-02T10:15:30.250Z"
    assert user["role"] == "USER"
    assert user["timeZone"] == "Europe/London"
    assert user["weekStart"] == "Sunday"
    assert user["hideBranding"] is False
    assert user["timeFormat"] == 12
    # Nothing internal leaks.
    assert "locked" not in user
    assert "hashedKey" not in response.text


async def test_me_default_created_date_is_wire_formatted(
    client: httpx.AsyncClient, alice: Account
) -> None:
    user = (await client.get("/v1/me", params=alice.params)).json()["user"]
    assert WIRE_INSTANT.match(user["createdDate"]), user["createdDate"]
    assert user["emailVerified"] is None


async def test_me_is_the_callers_own_user(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    for account in (alice, bob, admin):
        response = await client.get("/v1/me", params=account.params)
        assert response.status_code == 200
        assert response.json()["user"]["id"] == account.id
    assert (await client.get("/v1/me", params=admin.params)).json()["user"]["role"] == "ADMIN"


async def test_me_reflects_own_patch_immediately(client: httpx.AsyncClient, alice: Account) -> None:
    assert (await client.get("/v1/me", params=alice.params)).json()["user"]["name"] is None
    patched = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"name": "Alice Liddell"}
    )
    assert patched.status_code == 200
    # The auth cache holds a snapshot of the user: it must not serve the old one.
    response = await client.get("/v1/me", params=alice.params)
    assert response.json()["user"]["name"] == "Alice Liddell"


# --- GET /v1/users -------------------------------------------------------------------------------


async def test_user_lists_only_themself(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    response = await client.get("/v1/users", params=alice.params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"users", "total"}
    assert [u["id"] for u in body["users"]] == [alice.id]
    assert body["total"] == 1
    assert set(body["users"][0]) == USER_FIELDS


async def test_user_email_filter_cannot_reach_others(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.get("/v1/users", params={**alice.params, "email": bob.email})
    assert response.status_code == 200
    assert response.json() == {"users": [], "total": 0}


async def test_admin_lists_everyone(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account
) -> None:
    response = await client.get("/v1/users", params=admin.params)
    assert response.status_code == 200
    body = response.json()
    assert sorted(u["id"] for u in body["users"]) == sorted([alice.id, bob.id, admin.id])
    assert body["total"] == 3


async def test_admin_pagination(
    client: httpx.AsyncClient, make_account: Callable, admin: Account
) -> None:
    others = [await make_account(f"user{i}") for i in range(6)]
    all_ids = sorted([admin.id, *(o.id for o in others)])

    seen: list[int] = []
    for page in (1, 2, 3):
        response = await client.get("/v1/users", params={**admin.params, "take": 3, "page": page})
        assert response.status_code == 200
        body = response.json()
        assert body["total"] == 7
        assert len(body["users"]) == (3 if page < 3 else 1)
        seen.extend(u["id"] for u in body["users"])
    assert sorted(seen) == all_ids
    assert len(set(seen)) == 7

    beyond = await client.get("/v1/users", params={**admin.params, "take": 3, "page": 4})
    assert beyond.json() == {"users": [], "total": 7}


async def test_default_page_size_is_ten(
    client: httpx.AsyncClient, make_account: Callable, admin: Account
) -> None:
    for i in range(11):
        await make_account(f"user{i}")
    body = (await client.get("/v1/users", params=admin.params)).json()
    assert len(body["users"]) == 10
    assert body["total"] == 12


@pytest.mark.parametrize(("name", "value"), [("take", "0"), ("page", "0"), ("take", "many")])
async def test_bad_pagination_is_400(
    client: httpx.AsyncClient, admin: Account, name: str, value: str
) -> None:
    response = await client.get("/v1/users", params={**admin.params, name: value})
    assert response.status_code == 400
    assert f"'{name}'" in response.json()["message"]


async def test_admin_repeated_email_filter(
    client: httpx.AsyncClient, alice: Account, bob: Account, make_account: Callable, admin: Account
) -> None:
    await make_account("carol")
    response = await client.get(
        "/v1/users",
        params=[
            ("apiKey", admin.key),
            ("email", alice.email),
            ("email", bob.email.upper()),
            ("email", "nobody@example.com"),
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert sorted(u["id"] for u in body["users"]) == sorted([alice.id, bob.id])
    assert body["total"] == 2


# --- POST /v1/users ------------------------------------------------------------------------------


async def test_create_user_requires_admin(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    before = await user_count(app)
    response = await client.post(
        "/v1/users", params=alice.params, json={"email": "new@example.com", "username": "new"}
    )
    assert response.status_code == 401
    assert response.json() == {"message": "You are not authorized"}
    assert await user_count(app) == before


async def test_admin_creates_user(app: FastAPI, client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/v1/users",
        params=admin.params,
        json={
            "email": "New.Person@Example.com",
            "username": "NewPerson",
            "name": "New Person",
            "timeZone": "America/New_York",
            "weekStart": "Monday",
            "timeFormat": 24,
            "locale": "fr",
            "brandColor": "#123456",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"user"}
    user = body["user"]
    assert set(user) == USER_FIELDS
    assert user["email"] == "new.person@example.com"
    assert user["username"] == "newperson"
    assert user["timeZone"] == "America/New_York"
    assert user["weekStart"] == "Monday"
    assert user["timeFormat"] == 24
    assert user["role"] == "USER"

    stored = await load_user(app, user["id"])
    assert stored is not None
    assert stored.email == "new.person@example.com"
    assert stored.username == "newperson"
    assert stored.time_zone == "America/New_York"
    assert stored.locale == "fr"

    # Visible to the admin, and has no key yet.
    listed = await client.get("/v1/users", params={**admin.params, "email": user["email"]})
    assert [u["id"] for u in listed.json()["users"]] == [user["id"]]
    async with app.state.sessions() as session:
        keys = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user["id"])
        )
    assert keys == 0


async def test_admin_creates_admin(app: FastAPI, client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/v1/users",
        params=admin.params,
        json={"email": "boss@example.com", "username": "boss", "role": "ADMIN"},
    )
    assert response.status_code == 200
    assert response.json()["user"]["role"] == "ADMIN"
    stored = await load_user(app, response.json()["user"]["id"])
    assert stored is not None and stored.role == UserRole.ADMIN


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"username": "new"}, "'email'"),
        ({"email": "new@example.com"}, "'username'"),
        ({"email": "not-an-email", "username": "new"}, "'email'"),
        ({"email": "new@example.com", "username": "new", "timeZone": "Mars/Olympus"}, "'timeZone'"),
        ({"email": "new@example.com", "username": "new", "weekStart": "Funday"}, "'weekStart'"),
        ({"email": "new@example.com", "username": "new", "timeFormat": 13}, "'timeFormat'"),
        ({"email": "new@example.com", "username": "new", "brandColor": "red"}, "'brandColor'"),
        ({"email": "new@example.com", "username": "new", "locale": "xx"}, "'locale'"),
        ({"email": "new@example.com", "username": "new", "role": "GOD"}, "'role'"),
        ({"email": "new@example.com", "username": "no spaces"}, "'username'"),
    ],
)
async def test_create_user_validation(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, body: dict[str, Any], expected: str
) -> None:
    before = await user_count(app)
    response = await client.post("/v1/users", params=admin.params, json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"message"}
    assert expected in response.json()["message"]
    assert await user_count(app) == before


async def test_create_user_missing_email_message(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post("/v1/users", params=admin.params, json={"username": "new"})
    assert response.status_code == 400
    assert response.json() == {"message": "invalid_type in 'email': Required"}


async def test_create_user_unknown_field(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    before = await user_count(app)
    response = await client.post(
        "/v1/users",
        params=admin.params,
        json={"email": "new@example.com", "username": "new", "foo": 1},
    )
    assert response.status_code == 400
    assert response.json() == {"message": "Unrecognized key(s) in object: 'foo'"}
    assert await user_count(app) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "fresh@example.com", "username": "alice"}, "already_in_use_error"),
        ({"email": "fresh@example.com", "username": "ALICE"}, "already_in_use_error"),
        ({"email": "alice@example.com", "username": "fresh"}, "Email already in use"),
        ({"email": "ALICE@Example.com", "username": "fresh"}, "Email already in use"),
    ],
)
async def test_create_duplicate_user_is_409(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    alice: Account,
    body: dict[str, str],
    message: str,
) -> None:
    before = await user_count(app)
    response = await client.post("/v1/users", params=admin.params, json=body)
    assert response.status_code == 409
    assert response.json() == {"message": message}
    assert await user_count(app) == before
    async with app.state.sessions() as session:
        assert await session.scalar(select(User).where(User.email == "fresh@example.com")) is None


# --- /v1/users/{userId} across users ------------------------------------------------------------


async def test_user_cannot_touch_another_user(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    path = f"/v1/users/{bob.id}"
    for method, kwargs in [
        ("GET", {}),
        ("PATCH", {"json": {"name": "Hacked", "email": "hacked@example.com"}}),
        ("DELETE", {}),
    ]:
        response = await client.request(method, path, params=alice.params, **kwargs)
        assert response.status_code == 403, method
        assert response.json() == {"message": "Forbidden"}, method

    stored = await load_user(app, bob.id)
    assert stored is not None
    assert stored.name is None
    assert stored.email == bob.email
    assert (await client.get("/v1/me", params=bob.params)).status_code == 200


async def test_user_cannot_probe_missing_users(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/users/999999", params=alice.params)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


async def test_user_reads_and_edits_themself(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.get(f"/v1/users/{alice.id}", params=alice.params)
    assert response.status_code == 200
    assert response.json()["user"]["id"] == alice.id

    response = await client.patch(
        f"/v1/users/{alice.id}",
        params=alice.params,
        json={"name": "Alice", "timeZone": "europe/paris", "weekStart": "MONDAY", "bio": "hi"},
    )
    assert response.status_code == 200
    user = response.json()["user"]
    assert set(user) == USER_FIELDS
    assert (user["name"], user["timeZone"], user["weekStart"], user["bio"]) == (
        "Alice",
        "Europe/Paris",
        "Monday",
        "hi",
    )
    stored = await load_user(app, alice.id)
    assert stored is not None
    assert (stored.name, stored.time_zone, stored.week_start) == ("Alice", "Europe/Paris", "Monday")


async def test_patch_validation_names_field(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    for body, field in [
        ({"timeZone": "Nowhere/Land"}, "'timeZone'"),
        ({"email": None}, "'email'"),
        ({"hideBranding": "maybe"}, "'hideBranding'"),
        ({"foo": "bar"}, "'foo'"),
    ]:
        response = await client.patch(f"/v1/users/{alice.id}", params=alice.params, json=body)
        assert response.status_code == 400, body
        assert field in response.json()["message"], body
    stored = await load_user(app, alice.id)
    assert stored is not None and stored.time_zone == "Europe/London"


async def test_patch_to_taken_username_is_409(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"username": "bob", "name": "X"}
    )
    assert response.status_code == 409
    stored = await load_user(app, alice.id)
    assert stored is not None and (stored.username, stored.name) == ("alice", None)


async def test_admin_reads_edits_and_deletes_others(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    response = await client.get(f"/v1/users/{bob.id}", params=admin.params)
    assert response.status_code == 200
    assert response.json()["user"]["email"] == bob.email

    response = await client.patch(
        f"/v1/users/{bob.id}", params=admin.params, json={"name": "Robert", "hideBranding": True}
    )
    assert response.status_code == 200
    assert response.json()["user"]["name"] == "Robert"
    stored = await load_user(app, bob.id)
    assert stored is not None and stored.name == "Robert" and stored.hide_branding is True

    response = await client.delete(f"/v1/users/{bob.id}", params=admin.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"User with id: {bob.id} deleted successfully"}
    assert await load_user(app, bob.id) is None
    async with app.state.sessions() as session:
        keys = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == bob.id)
        )
    assert keys == 0
    assert await load_user(app, alice.id) is not None

    missing = await client.get(f"/v1/users/{bob.id}", params=admin.params)
    assert missing.status_code == 404
    assert "message" in missing.json()


async def test_admin_delete_missing_user_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.delete("/v1/users/999999", params=admin.params)
    assert response.status_code == 404
    assert "message" in response.json()


async def test_user_id_must_be_a_number(client: httpx.AsyncClient, alice: Account) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
        response = await client.request(method, "/v1/users/abc", params=alice.params, **kwargs)
        assert response.status_code == 400, method
        assert "'userId'" in response.json()["message"], method
    response = await client.get("/v1/users/abc", params=alice.params)
    assert response.json() == {"message": "invalid_type in 'userId': Expected number, received nan"}


# --- roles -------------------------------------------------------------------------------------


async def test_user_cannot_change_own_role(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"role": "ADMIN", "name": "Sneaky"}
    )
    assert response.status_code == 403
    assert "message" in response.json()
    stored = await load_user(app, alice.id)
    assert stored is not None and stored.role == UserRole.USER and stored.name is None
    # Still a plain user on the wire.
    listed = await client.get("/v1/users", params=alice.params)
    assert listed.json()["total"] == 1


async def test_user_may_send_own_unchanged_role(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"role": "USER", "name": "Same"}
    )
    assert response.status_code == 200
    assert response.json()["user"]["role"] == "USER"


async def test_promotion_and_demotion_take_effect_on_next_request(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    # Both keys used once: both callers are in the auth cache with their current role.
    assert (await client.get("/v1/users", params=admin.params)).json()["total"] == 3
    assert (await client.get("/v1/users", params=alice.params)).json()["total"] == 1

    promoted = await client.patch(
        f"/v1/users/{alice.id}", params=admin.params, json={"role": "ADMIN"}
    )
    assert promoted.status_code == 200
    assert promoted.json()["user"]["role"] == "ADMIN"
    assert (await client.get("/v1/users", params=alice.params)).json()["total"] == 3

    # The new admin demotes the old one.
    demoted = await client.patch(
        f"/v1/users/{admin.id}", params=alice.params, json={"role": "USER"}
    )
    assert demoted.status_code == 200
    assert demoted.json()["user"]["role"] == "USER"

    listed = await client.get("/v1/users", params=admin.params)
    assert listed.status_code == 200
    assert listed.json()["total"] == 1
    assert [u["id"] for u in listed.json()["users"]] == [admin.id]
    assert (await client.get("/v1/me", params=admin.params)).json()["user"]["role"] == "USER"
    forbidden = await client.get(f"/v1/users/{bob.id}", params=admin.params)
    assert forbidden.status_code == 403
    create = await client.post(
        "/v1/users", params=admin.params, json={"email": "x@example.com", "username": "x"}
    )
    assert create.status_code == 401
    assert create.json() == {"message": "You are not authorized"}
    stored = await load_user(app, admin.id)
    assert stored is not None and stored.role == UserRole.USER


async def test_admin_demoting_themself_loses_admin_at_once(
    client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    assert (await client.get("/v1/users", params=admin.params)).json()["total"] == 2
    response = await client.patch(
        f"/v1/users/{admin.id}", params=admin.params, json={"role": "USER"}
    )
    assert response.status_code == 200
    listed = await client.get("/v1/users", params=admin.params)
    assert listed.json()["total"] == 1


async def test_nul_characters_are_refused_not_stored(client, app, alice):
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"name": "bad\u0000name"}
    )
    assert response.status_code == 400
    assert "'name'" in response.json()["message"]
    me = await client.get("/v1/me", params=alice.params)
    assert me.json()["user"]["name"] is None


async def test_ids_beyond_the_database_range_are_simply_not_found(client, alice, admin):
    huge = 99_999_999_999
    assert (await client.get(f"/v1/users/{huge}", params=admin.params)).status_code == 404
    assert (await client.get(f"/v1/users/{huge}", params=alice.params)).status_code == 403
    keys = await client.get("/v1/api-keys", params={**admin.params, "userId": huge})
    assert keys.status_code == 200
    assert keys.json() == {"api_keys": []}
