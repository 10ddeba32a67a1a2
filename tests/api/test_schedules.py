"""/v1/schedules: envelopes, default availability, default schedule, scoping, admin `userId`."""

from __future__ import annotations

from datetime import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import Availability, Schedule, User
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

FORBIDDEN = {"message": "Forbidden"}


def default_availability(availability_id: int) -> dict[str, Any]:
    return {
        "id": availability_id,
        "eventTypeId": None,
        "date": None,
        "days": [1, 2, 3, 4, 5],
        "startTime": "09:00:00",
        "endTime": "17:00:00",
    }


async def create_schedule(
    client: httpx.AsyncClient,
    account: Account,
    name: str = "Work",
    time_zone: str = "Europe/London",
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/schedules",
        params=account.params,
        json={"name": name, "timeZone": time_zone, **extra},
    )
    assert response.status_code == 200, response.text
    return response.json()["schedule"]


async def default_schedule_id(client: httpx.AsyncClient, account: Account) -> int | None:
    response = await client.get("/v1/me", params=account.params)
    assert response.status_code == 200
    return response.json()["user"]["defaultScheduleId"]


async def stored_schedules(app: FastAPI, user_id: int) -> list[tuple[int, str, str | None, int]]:
    """(id, name, time zone, number of availability rows) of a user's schedules, in the DB."""
    async with app.state.sessions() as session:
        rows = await session.execute(
            select(Schedule.id, Schedule.name, Schedule.time_zone, func.count(Availability.id))
            .outerjoin(Availability, Availability.schedule_id == Schedule.id)
            .where(Schedule.user_id == user_id)
            .group_by(Schedule.id, Schedule.name, Schedule.time_zone)
            .order_by(Schedule.id)
        )
        return [tuple(row) for row in rows]


async def stored_default(app: FastAPI, user_id: int) -> int | None:
    async with app.state.sessions() as session:
        return await session.scalar(select(User.default_schedule_id).where(User.id == user_id))


# --- create -------------------------------------------------------------------------------------


async def test_create_returns_envelope_with_default_availability(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        "/v1/schedules", params=alice.params, json={"name": "Work", "timeZone": "Asia/Calcutta"}
    )
    assert response.status_code == 200
    body = response.json()
    schedule = body["schedule"]
    assert body == {
        "schedule": {
            "id": schedule["id"],
            "userId": alice.id,
            "name": "Work",
            "timeZone": "Asia/Calcutta",
            "availability": [default_availability(schedule["availability"][0]["id"])],
        },
        "message": "Schedule created successfully",
    }


async def test_time_zone_is_stored_in_tzdata_spelling(
    client: httpx.AsyncClient, alice: Account
) -> None:
    schedule = await create_schedule(client, alice, time_zone="america/new_york")
    assert schedule["timeZone"] == "America/New_York"


async def test_first_schedule_becomes_the_default(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    assert await default_schedule_id(client, alice) is None
    first = await create_schedule(client, alice, "First")
    assert await default_schedule_id(client, alice) == first["id"]
    await create_schedule(client, alice, "Second")
    assert await default_schedule_id(client, alice) == first["id"]
    assert await stored_default(app, alice.id) == first["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"timeZone": "Europe/London"}, "invalid_type in 'name': Required"),
        ({"name": "Work"}, "invalid_type in 'timeZone': Required"),
        (
            {"name": "Work", "timeZone": "Mars/Olympus"},
            "custom in 'timeZone': 'Mars/Olympus' is not a valid IANA time zone, "
            "e.g. 'Europe/London'",
        ),
        (
            {"name": "", "timeZone": "Europe/London"},
            "too_small in 'name': String must contain at least 1 character(s)",
        ),
        (
            {"name": "x" * 256, "timeZone": "Europe/London"},
            "too_big in 'name': String must contain at most 255 character(s)",
        ),
        (
            {"name": "Work", "timeZone": "Europe/London", "availability": []},
            "Unrecognized key(s) in object: 'availability'",
        ),
        (
            {"name": 5, "timeZone": "Europe/London"},
            "invalid_type in 'name': Expected string, received number",
        ),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/schedules", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await stored_schedules(app, alice.id) == []


async def test_create_for_another_user_needs_admin(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    response = await client.post(
        "/v1/schedules",
        params=alice.params,
        json={"name": "Sneaky", "timeZone": "Europe/London", "userId": bob.id},
    )
    assert response.status_code == 403
    assert response.json() == {"message": "ADMIN required for `userId`"}
    assert await stored_schedules(app, bob.id) == []
    assert await stored_schedules(app, alice.id) == []


async def test_create_naming_yourself_as_user_is_allowed(
    client: httpx.AsyncClient, alice: Account
) -> None:
    schedule = await create_schedule(client, alice, userId=alice.id)
    assert schedule["userId"] == alice.id


async def test_admin_creates_for_another_user(
    client: httpx.AsyncClient, admin: Account, bob: Account
) -> None:
    schedule = await create_schedule(client, admin, "Bob's", userId=bob.id)
    assert schedule["userId"] == bob.id
    assert await default_schedule_id(client, bob) == schedule["id"]
    assert await default_schedule_id(client, admin) is None


async def test_admin_creates_for_missing_user(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/v1/schedules",
        params=admin.params,
        json={"name": "Nobody's", "timeZone": "Europe/London", "userId": 999_999},
    )
    assert response.status_code == 404
    assert response.json() == {"message": "User with id: 999999 not found"}


# --- list ---------------------------------------------------------------------------------------


async def test_list_returns_only_own_schedules(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    mine = await create_schedule(client, alice, "Mine")
    await create_schedule(client, bob, "Bob's")
    response = await client.get("/v1/schedules", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"schedules": [mine]}


async def test_list_is_empty_without_schedules(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/schedules", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"schedules": []}


async def test_non_admin_cannot_query_other_users(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await create_schedule(client, bob)
    response = await client.get("/v1/schedules", params={**alice.params, "userId": bob.id})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized: Only admins can query other users"}


async def test_non_admin_may_filter_by_own_id(client: httpx.AsyncClient, alice: Account) -> None:
    mine = await create_schedule(client, alice)
    response = await client.get("/v1/schedules", params={**alice.params, "userId": alice.id})
    assert response.json() == {"schedules": [mine]}


async def test_admin_lists_all_or_filters_by_user_id(
    client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    bobs = await create_schedule(client, bob, "Bob's")
    alices = await create_schedule(client, alice, "Alice's")
    everything = await client.get("/v1/schedules", params=admin.params)
    assert everything.json() == {"schedules": [bobs, alices]}

    single = await client.get("/v1/schedules", params={**admin.params, "userId": bob.id})
    assert single.json() == {"schedules": [bobs]}

    repeated = await client.get(
        "/v1/schedules",
        params=[("apiKey", admin.key), ("userId", str(bob.id)), ("userId", str(alice.id))],
    )
    # Several users: ordered by owner, as Cal.com does (alice was created first).
    assert repeated.json() == {"schedules": [alices, bobs]}

    nobody = await client.get("/v1/schedules", params={**admin.params, "userId": 99_999_999_999})
    assert nobody.status_code == 200
    assert nobody.json() == {"schedules": []}


async def test_list_rejects_non_numeric_user_id(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get("/v1/schedules", params={**admin.params, "userId": "abc"})
    assert response.status_code == 400
    assert response.json() == {
        "message": "invalid_type in 'userId,0': Expected number, received nan"
    }


# --- get / patch / delete -----------------------------------------------------------------------


async def test_get_own_schedule(client: httpx.AsyncClient, alice: Account) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.get(f"/v1/schedules/{schedule['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"schedule": schedule}


async def test_get_works_without_the_version_prefix(
    client: httpx.AsyncClient, alice: Account
) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.get(f"/schedules/{schedule['id']}", params=alice.params)
    assert response.json() == {"schedule": schedule}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_other_users_schedule_is_forbidden_and_untouched(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account, method: str
) -> None:
    bobs = await create_schedule(client, bob, "Bob's", "Europe/Paris")
    before = await stored_schedules(app, bob.id)
    response = await client.request(
        method,
        f"/v1/schedules/{bobs['id']}",
        params=alice.params,
        json={"name": "Mine now"} if method == "PATCH" else None,
    )
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert (
        await stored_schedules(app, bob.id) == before == [(bobs["id"], "Bob's", "Europe/Paris", 1)]
    )
    assert await stored_default(app, bob.id) == bobs["id"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_missing_schedule_is_forbidden_for_users_and_404_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account, method: str
) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    for schedule_id in (424242, 99_999_999_999):
        as_user = await client.request(
            method, f"/v1/schedules/{schedule_id}", params=alice.params, json=body
        )
        assert as_user.status_code == 403
        assert as_user.json() == FORBIDDEN
        as_admin = await client.request(
            method, f"/v1/schedules/{schedule_id}", params=admin.params, json=body
        )
        assert as_admin.status_code == 404
        assert as_admin.json() == {"message": "Schedule not found"}


async def test_non_numeric_id_is_400(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/schedules/abc", params=alice.params)
    assert response.status_code == 400
    assert response.json() == {"message": "invalid_type in 'id': Expected number, received nan"}


async def test_patch_name_and_time_zone(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.patch(
        f"/v1/schedules/{schedule['id']}",
        params=alice.params,
        json={"name": "Evenings", "timeZone": "asia/tokyo"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "schedule": {**schedule, "name": "Evenings", "timeZone": "Asia/Tokyo"}
    }
    assert await stored_schedules(app, alice.id) == [(schedule["id"], "Evenings", "Asia/Tokyo", 1)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": None}, "custom in 'name': Expected a value, received null"),
        ({"timeZone": None}, "custom in 'timeZone': Expected a value, received null"),
        ({"timeZone": "Nowhere/Land"}, "custom in 'timeZone': 'Nowhere/Land' is not a valid IANA "
         "time zone, e.g. 'Europe/London'"),
        ({"availability": []}, "Unrecognized key(s) in object: 'availability'"),
    ],
)  # fmt: skip
async def test_patch_validation(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    body: dict[str, Any],
    message: str,
) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.patch(f"/v1/schedules/{schedule['id']}", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await stored_schedules(app, alice.id) == [(schedule["id"], "Work", "Europe/London", 1)]


async def test_non_admin_cannot_change_owner(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.patch(
        f"/v1/schedules/{schedule['id']}",
        params=alice.params,
        json={"userId": bob.id, "name": "Renamed"},
    )
    assert response.status_code == 403
    assert response.json() == {"message": "Non admin cannot change the owner of a schedule"}
    assert await stored_schedules(app, alice.id) == [(schedule["id"], "Work", "Europe/London", 1)]
    assert await stored_schedules(app, bob.id) == []


async def test_admin_hands_a_schedule_to_another_user(
    client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    first = await create_schedule(client, alice, "First")
    second = await create_schedule(client, alice, "Second")
    response = await client.patch(
        f"/v1/schedules/{first['id']}", params=admin.params, json={"userId": bob.id}
    )
    assert response.status_code == 200
    assert response.json() == {"schedule": {**first, "userId": bob.id}}
    # Alice lost her default: her remaining schedule takes over; bob had none, so gains it.
    assert await default_schedule_id(client, alice) == second["id"]
    assert await default_schedule_id(client, bob) == first["id"]
    bobs = await client.get(f"/v1/schedules/{first['id']}", params=bob.params)
    assert bobs.status_code == 200
    alices = await client.get(f"/v1/schedules/{first['id']}", params=alice.params)
    assert alices.status_code == 403


async def test_admin_cannot_hand_a_schedule_to_a_missing_user(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, alice: Account
) -> None:
    schedule = await create_schedule(client, alice)
    response = await client.patch(
        f"/v1/schedules/{schedule['id']}", params=admin.params, json={"userId": 777_777}
    )
    assert response.status_code == 404
    assert response.json() == {"message": "User with id: 777777 not found"}
    assert await stored_schedules(app, alice.id) == [(schedule["id"], "Work", "Europe/London", 1)]


async def test_admin_reads_and_edits_any_schedule(
    client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    schedule = await create_schedule(client, alice)
    got = await client.get(f"/v1/schedules/{schedule['id']}", params=admin.params)
    assert got.json() == {"schedule": schedule}
    patched = await client.patch(
        f"/v1/schedules/{schedule['id']}", params=admin.params, json={"name": "Set by admin"}
    )
    assert patched.json() == {"schedule": {**schedule, "name": "Set by admin"}}


async def test_delete_cascades_availability_and_clears_default(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    schedule = await create_schedule(client, alice)
    async with app.state.sessions() as session, session.begin():
        session.add(
            Availability(
                schedule_id=schedule["id"], days=[6], start_time=time(10), end_time=time(12)
            )
        )
    assert await stored_schedules(app, alice.id) == [(schedule["id"], "Work", "Europe/London", 2)]
    response = await client.delete(f"/v1/schedules/{schedule['id']}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {
        "message": f"Schedule with id: {schedule['id']} deleted successfully"
    }
    assert await stored_schedules(app, alice.id) == []
    async with app.state.sessions() as session:
        assert await session.scalar(select(func.count(Availability.id))) == 0
    assert await default_schedule_id(client, alice) is None
    gone = await client.get(f"/v1/schedules/{schedule['id']}", params=alice.params)
    assert gone.status_code == 403


async def test_deleting_the_default_promotes_the_lowest_remaining(
    client: httpx.AsyncClient, alice: Account
) -> None:
    first = await create_schedule(client, alice, "First")
    second = await create_schedule(client, alice, "Second")
    third = await create_schedule(client, alice, "Third")
    await client.delete(f"/v1/schedules/{first['id']}", params=alice.params)
    assert await default_schedule_id(client, alice) == second["id"]
    # Deleting a schedule that is not the default leaves the default alone.
    await client.delete(f"/v1/schedules/{third['id']}", params=alice.params)
    assert await default_schedule_id(client, alice) == second["id"]


async def test_admin_deletes_another_users_schedule(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, bob: Account
) -> None:
    schedule = await create_schedule(client, bob)
    response = await client.delete(f"/v1/schedules/{schedule['id']}", params=admin.params)
    assert response.status_code == 200
    assert await stored_schedules(app, bob.id) == []
    assert await default_schedule_id(client, bob) is None


# --- users.defaultScheduleId --------------------------------------------------------------------


async def test_user_may_pick_one_of_their_schedules_as_default(
    client: httpx.AsyncClient, alice: Account
) -> None:
    await create_schedule(client, alice, "First")
    second = await create_schedule(client, alice, "Second")
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"defaultScheduleId": second["id"]}
    )
    assert response.status_code == 200
    assert response.json()["user"]["defaultScheduleId"] == second["id"]
    assert await default_schedule_id(client, alice) == second["id"]


@pytest.mark.parametrize("whose", ["bob", "missing", "huge"])
async def test_default_schedule_must_belong_to_the_user(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account, whose: str
) -> None:
    mine = await create_schedule(client, alice)
    bobs = await create_schedule(client, bob)
    candidate = {"bob": bobs["id"], "missing": 654_321, "huge": 99_999_999_999}[whose]
    response = await client.patch(
        f"/v1/users/{alice.id}", params=alice.params, json={"defaultScheduleId": candidate}
    )
    assert response.status_code == 400
    assert response.json() == {"message": "Bad request: Invalid default schedule id"}
    assert await stored_default(app, alice.id) == mine["id"]


async def test_admin_sets_default_only_among_the_target_users_schedules(
    client: httpx.AsyncClient, admin: Account, alice: Account, bob: Account
) -> None:
    await create_schedule(client, bob, "Bob's first")
    bobs_second = await create_schedule(client, bob, "Bob's second")
    alices = await create_schedule(client, alice)
    wrong = await client.patch(
        f"/v1/users/{bob.id}", params=admin.params, json={"defaultScheduleId": alices["id"]}
    )
    assert wrong.status_code == 400
    right = await client.patch(
        f"/v1/users/{bob.id}", params=admin.params, json={"defaultScheduleId": bobs_second["id"]}
    )
    assert right.status_code == 200
    assert await default_schedule_id(client, bob) == bobs_second["id"]


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/schedules"),
        ("POST", "/v1/schedules"),
        ("GET", "/v1/schedules/1"),
        ("PATCH", "/v1/schedules/1"),
        ("DELETE", "/v1/schedules/1"),
    ],
)
async def test_no_key_is_401(
    client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.json() == {"message": "No apiKey provided"}
