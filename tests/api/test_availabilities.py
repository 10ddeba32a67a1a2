"""/v1/availabilities: envelopes, time formats, rule validation and overlaps, scoping, admins."""

from __future__ import annotations

import asyncio
from datetime import date, time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookable.models import Availability
from tests.conftest import Account

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

NOT_FOUND = {"message": "Availability not found"}


async def create_schedule(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await client.post(
        "/v1/schedules", params=account.params, json={"name": "Work", "timeZone": "Europe/Berlin"}
    )
    assert response.status_code == 200, response.text
    return response.json()["schedule"]


async def add_availability(
    client: httpx.AsyncClient, account: Account, **body: Any
) -> httpx.Response:
    return await client.post("/v1/availabilities", params=account.params, json=body)


async def created(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    response = await add_availability(client, account, **body)
    assert response.status_code == 200, response.text
    return response.json()["availability"]


Row = tuple[int, int, list[int], time, time, date | None]


async def stored_rows(app: FastAPI, schedule_id: int) -> list[Row]:
    """(id, schedule id, days, start, end, date) of a schedule's rules, straight from the DB."""
    async with app.state.sessions() as session:
        rows = await session.scalars(
            select(Availability)
            .where(Availability.schedule_id == schedule_id)
            .order_by(Availability.id)
        )
        return [(r.id, r.schedule_id, r.days, r.start_time, r.end_time, r.date) for r in rows]


@pytest.fixture
async def schedule(client: httpx.AsyncClient, alice: Account) -> dict[str, Any]:
    """Alice's schedule: its default rule is Mon-Fri 09:00-17:00."""
    return await create_schedule(client, alice)


# --- create -------------------------------------------------------------------------------------


async def test_create_with_iso_times_returns_envelope(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    response = await add_availability(
        client,
        alice,
        scheduleId=schedule["id"],
        days=[6, 0],
        startTime="1970-01-01T10:00:00.000Z",
        endTime="1970-01-01T14:30:00.000Z",
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "availability": {
            "id": body["availability"]["id"],
            "startTime": "1970-01-01T10:00:00.000Z",
            "endTime": "1970-01-01T14:30:00.000Z",
            "date": None,
            "scheduleId": schedule["id"],
            "days": [0, 6],
            "Schedule": {"userId": alice.id},
        },
        "message": "Availability created successfully",
    }


@pytest.mark.parametrize(
    ("start", "end", "wire_start", "wire_end"),
    [
        ("10:00", "12:00", "1970-01-01T10:00:00.000Z", "1970-01-01T12:00:00.000Z"),
        ("10:00:00", "12:15:30", "1970-01-01T10:00:00.000Z", "1970-01-01T12:15:30.000Z"),
        ("8:30", "9:00", "1970-01-01T08:30:00.000Z", "1970-01-01T09:00:00.000Z"),
        # An ISO instant with an offset: its UTC time of day, as Cal.com reads it.
        ("2024-03-01T11:00:00+01:00", "1970-01-01T12:00:00Z", "1970-01-01T10:00:00.000Z",
         "1970-01-01T12:00:00.000Z"),
        # End of day: 00:00 and 23:59 are both allowed after any start.
        ("18:00", "00:00", "1970-01-01T18:00:00.000Z", "1970-01-01T00:00:00.000Z"),
        ("18:00", "23:59", "1970-01-01T18:00:00.000Z", "1970-01-01T23:59:00.000Z"),
    ],
)  # fmt: skip
async def test_accepted_time_formats(
    client: httpx.AsyncClient,
    alice: Account,
    schedule: dict[str, Any],
    start: str,
    end: str,
    wire_start: str,
    wire_end: str,
) -> None:
    availability = await created(
        client, alice, scheduleId=schedule["id"], days=[6], startTime=start, endTime=end
    )
    assert (availability["startTime"], availability["endTime"]) == (wire_start, wire_end)


async def test_date_override_without_days(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    availability = await created(
        client,
        alice,
        scheduleId=schedule["id"],
        date="2026-12-24",
        startTime="09:00",
        endTime="12:00",
    )
    assert availability["date"] == "2026-12-24T00:00:00.000Z"
    assert availability["days"] == []
    # The schedule shows it in its own format (times "HH:mm:ss").
    response = await client.get(f"/v1/schedules/{schedule['id']}", params=alice.params)
    rules = response.json()["schedule"]["availability"]
    assert rules[-1] == {
        "id": availability["id"],
        "eventTypeId": None,
        "date": "2026-12-24T00:00:00.000Z",
        "days": [],
        "startTime": "09:00:00",
        "endTime": "12:00:00",
    }
    rows = await stored_rows(app, schedule["id"])
    assert rows[-1] == (
        availability["id"], schedule["id"], [], time(9), time(12), date(2026, 12, 24),
    )  # fmt: skip


async def test_whole_day_off_override(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    # 00:00-00:00 on a date is Cal.com's "unavailable that day".
    day_off = await created(
        client, alice, scheduleId=schedule["id"], date="2026-12-25", startTime="00:00",
        endTime="00:00",
    )  # fmt: skip
    assert (day_off["startTime"], day_off["endTime"]) == (
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.000Z",
    )
    clash = await add_availability(
        client, alice, scheduleId=schedule["id"], date="2026-12-25", startTime="10:00",
        endTime="11:00",
    )  # fmt: skip
    assert clash.status_code == 400
    assert clash.json() == {
        "message": f"custom in 'startTime': overlaps availability {day_off['id']} on 2026-12-25"
    }


async def test_date_accepts_iso_instant(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    availability = await created(
        client,
        alice,
        scheduleId=schedule["id"],
        date="2026-12-24T00:00:00.000Z",
        startTime="09:00",
        endTime="12:00",
    )
    assert availability["date"] == "2026-12-24T00:00:00.000Z"


async def test_collection_only_allows_post(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/availabilities", params=alice.params)
    assert response.status_code == 405
    assert response.json() == {"message": "Method Not Allowed (Allow: POST)"}


# --- validation ---------------------------------------------------------------------------------

TIME_FORMAT = "must be a time such as '09:00', '09:00:00' or '1970-01-01T09:00:00.000Z'"
END_AFTER_START = (
    "custom in 'endTime': must be after startTime (00:00 or 23:59 mean the end of the day)"
)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"startTime": "9am"}, f"custom in 'startTime': {TIME_FORMAT}"),
        ({"endTime": "25:00"}, f"custom in 'endTime': {TIME_FORMAT}"),
        ({"endTime": "12:60"}, f"custom in 'endTime': {TIME_FORMAT}"),
        ({"startTime": 900}, "invalid_type in 'startTime': Expected string, received number"),
        ({"startTime": "12:00", "endTime": "11:00"}, END_AFTER_START),
        ({"startTime": "12:00", "endTime": "12:00"}, END_AFTER_START),
        ({"startTime": "00:00", "endTime": "00:00"}, END_AFTER_START),
        ({"days": [7]}, "too_big in 'days,0': Number must be less than or equal to 6"),
        ({"days": [1, -1]}, "too_small in 'days,1': Number must be greater than or equal to 0"),
        ({"days": ["1"]}, "invalid_type in 'days,0': Expected number, received string"),
        ({"days": 1}, "invalid_type in 'days': Expected array, received number"),
        (
            {"days": []},
            "custom in 'days': must hold at least one weekday (0 = Sunday … 6 = Saturday) "
            "unless 'date' is set",
        ),
        ({"date": "24/12/2026"}, "custom in 'date': must be a date such as '2024-05-01'"),
        ({"date": "2026-02-30"}, "custom in 'date': must be a date such as '2024-05-01'"),
        ({"userId": 1}, "Unrecognized key(s) in object: 'userId'"),
        ({"scheduleId": None}, "invalid_type in 'scheduleId': Expected number, received null"),
        ({"scheduleId": 0}, "too_small in 'scheduleId': Number must be greater than 0"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    schedule: dict[str, Any],
    fields: dict[str, Any],
    message: str,
) -> None:
    body = {"scheduleId": schedule["id"], "days": [6], "startTime": "10:00", "endTime": "11:00"}
    response = await add_availability(client, alice, **{**body, **fields})
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert len(await stored_rows(app, schedule["id"])) == 1  # only the default rule


@pytest.mark.parametrize("missing", ["scheduleId", "startTime", "endTime"])
async def test_required_fields(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any], missing: str
) -> None:
    body = {"scheduleId": schedule["id"], "days": [6], "startTime": "10:00", "endTime": "11:00"}
    del body[missing]
    response = await add_availability(client, alice, **body)
    assert response.status_code == 400
    assert response.json() == {"message": f"invalid_type in '{missing}': Required"}


async def test_overlap_on_a_shared_weekday_is_rejected(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    default_rule = schedule["availability"][0]["id"]
    response = await add_availability(
        client, alice, scheduleId=schedule["id"], days=[0, 1], startTime="12:00", endTime="13:00"
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": f"custom in 'startTime': overlaps availability {default_rule} on Monday"
    }
    assert len(await stored_rows(app, schedule["id"])) == 1


async def test_rules_that_touch_or_use_other_days_do_not_overlap(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    # Default is Mon-Fri 09:00-17:00: 17:00-midnight the same days just touches it.
    await created(
        client, alice, scheduleId=schedule["id"], days=[1, 2], startTime="17:00", endTime="00:00"
    )
    await created(
        client, alice, scheduleId=schedule["id"], days=[6], startTime="09:00", endTime="17:00"
    )
    # An override of a date may differ from the weekly rules: it replaces them.
    await created(
        client, alice, scheduleId=schedule["id"], date="2026-06-01", startTime="12:00",
        endTime="13:00",
    )  # fmt: skip
    late = await add_availability(
        client, alice, scheduleId=schedule["id"], days=[2], startTime="23:00", endTime="23:59"
    )
    assert late.status_code == 400  # inside 17:00-midnight on Tuesday
    assert "on Tuesday" in late.json()["message"]


async def test_overrides_of_the_same_date_may_not_overlap(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    morning = await created(
        client, alice, scheduleId=schedule["id"], date="2026-06-01", startTime="09:00",
        endTime="12:00",
    )  # fmt: skip
    await created(
        client, alice, scheduleId=schedule["id"], date="2026-06-01", startTime="13:00",
        endTime="15:00",
    )  # fmt: skip
    await created(
        client, alice, scheduleId=schedule["id"], date="2026-06-02", startTime="11:00",
        endTime="12:00",
    )  # fmt: skip
    clash = await add_availability(
        client, alice, scheduleId=schedule["id"], date="2026-06-01", startTime="11:00",
        endTime="12:30",
    )  # fmt: skip
    assert clash.status_code == 400
    assert clash.json() == {
        "message": f"custom in 'startTime': overlaps availability {morning['id']} on 2026-06-01"
    }


async def test_rules_of_other_schedules_do_not_count(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    other = await create_schedule(client, alice)
    response = await add_availability(
        client, alice, scheduleId=other["id"], days=[6], startTime="12:00", endTime="13:00"
    )
    assert response.status_code == 200
    # The same Saturday rule on the first schedule is fine too: overlaps are per schedule.
    response = await add_availability(
        client, alice, scheduleId=schedule["id"], days=[6], startTime="12:00", endTime="13:00"
    )
    assert response.status_code == 200


# --- ownership ----------------------------------------------------------------------------------


async def test_cannot_add_to_someone_elses_schedule(
    client: httpx.AsyncClient, app: FastAPI, bob: Account, schedule: dict[str, Any]
) -> None:
    response = await add_availability(
        client, bob, scheduleId=schedule["id"], days=[6], startTime="10:00", endTime="11:00"
    )
    assert response.status_code == 401
    assert response.json() == {"message": "You can't add availabilities to this schedule"}
    missing = await add_availability(
        client, bob, scheduleId=987_654, days=[6], startTime="10:00", endTime="11:00"
    )
    assert missing.status_code == 401
    assert len(await stored_rows(app, schedule["id"])) == 1


async def test_admin_adds_to_any_schedule(
    client: httpx.AsyncClient, alice: Account, admin: Account, schedule: dict[str, Any]
) -> None:
    availability = await created(
        client, admin, scheduleId=schedule["id"], days=[6], startTime="10:00", endTime="11:00"
    )
    assert availability["Schedule"] == {"userId": alice.id}
    missing = await add_availability(
        client, admin, scheduleId=987_654, days=[6], startTime="10:00", endTime="11:00"
    )
    assert missing.status_code == 400
    assert missing.json() == {"message": "custom in 'scheduleId': schedule 987654 does not exist"}


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_someone_elses_availability_is_not_found_and_untouched(
    client: httpx.AsyncClient, app: FastAPI, bob: Account, schedule: dict[str, Any], method: str
) -> None:
    before = await stored_rows(app, schedule["id"])
    rule_id = schedule["availability"][0]["id"]
    response = await client.request(
        method,
        f"/v1/availabilities/{rule_id}",
        params=bob.params,
        json={"startTime": "06:00"} if method == "PATCH" else None,
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert await stored_rows(app, schedule["id"]) == before


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("availability_id", [424_242, 99_999_999_999])
async def test_missing_availability_is_404(
    client: httpx.AsyncClient, alice: Account, admin: Account, method: str, availability_id: int
) -> None:
    body = {"startTime": "06:00"} if method == "PATCH" else None
    for account in (alice, admin):
        response = await client.request(
            method, f"/v1/availabilities/{availability_id}", params=account.params, json=body
        )
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


# --- get / patch / delete -----------------------------------------------------------------------


async def test_get_own_availability(
    client: httpx.AsyncClient, alice: Account, admin: Account, schedule: dict[str, Any]
) -> None:
    rule_id = schedule["availability"][0]["id"]
    expected = {
        "availability": {
            "id": rule_id,
            "startTime": "1970-01-01T09:00:00.000Z",
            "endTime": "1970-01-01T17:00:00.000Z",
            "date": None,
            "scheduleId": schedule["id"],
            "days": [1, 2, 3, 4, 5],
            "Schedule": {"userId": alice.id},
        }
    }
    for account in (alice, admin):
        response = await client.get(f"/v1/availabilities/{rule_id}", params=account.params)
        assert response.status_code == 200
        assert response.json() == expected


async def test_patch_times_and_days(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    rule_id = schedule["availability"][0]["id"]
    response = await client.patch(
        f"/v1/availabilities/{rule_id}",
        params=alice.params,
        json={"startTime": "1970-01-01T08:00:00.000Z", "days": [1, 3]},
    )
    assert response.status_code == 200
    assert response.json() == {
        "availability": {
            "id": rule_id,
            "startTime": "1970-01-01T08:00:00.000Z",
            "endTime": "1970-01-01T17:00:00.000Z",
            "date": None,
            "scheduleId": schedule["id"],
            "days": [1, 3],
            "Schedule": {"userId": alice.id},
        }
    }
    assert await stored_rows(app, schedule["id"]) == [
        (rule_id, schedule["id"], [1, 3], time(8), time(17), None)
    ]


async def test_patch_into_a_date_override_and_back(
    client: httpx.AsyncClient, alice: Account, schedule: dict[str, Any]
) -> None:
    rule_id = schedule["availability"][0]["id"]
    path = f"/v1/availabilities/{rule_id}"
    to_date = await client.patch(path, params=alice.params, json={"date": "2026-07-01", "days": []})
    assert to_date.status_code == 200
    assert to_date.json()["availability"]["date"] == "2026-07-01T00:00:00.000Z"
    # Back to weekly without days: no days and no date is not a rule.
    no_days = await client.patch(path, params=alice.params, json={"date": None})
    assert no_days.status_code == 400
    assert no_days.json()["message"].startswith("custom in 'days':")
    weekly = await client.patch(path, params=alice.params, json={"date": None, "days": [2]})
    assert weekly.status_code == 200
    assert weekly.json()["availability"]["date"] is None


async def test_patch_rejects_overlap_but_not_with_itself(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    default_rule = schedule["availability"][0]["id"]
    saturday = await created(
        client, alice, scheduleId=schedule["id"], days=[6], startTime="10:00", endTime="11:00"
    )
    widened = await client.patch(
        f"/v1/availabilities/{default_rule}", params=alice.params, json={"endTime": "18:00"}
    )
    assert widened.status_code == 200
    before = await stored_rows(app, schedule["id"])
    clash = await client.patch(
        f"/v1/availabilities/{saturday['id']}", params=alice.params, json={"days": [5, 6]}
    )
    assert clash.status_code == 400
    assert clash.json() == {
        "message": f"custom in 'startTime': overlaps availability {default_rule} on Friday"
    }
    assert await stored_rows(app, schedule["id"]) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scheduleId": 1}, "Unrecognized key(s) in object: 'scheduleId'"),
        ({"days": None}, "custom in 'days': Expected a value, received null"),
        ({"startTime": None}, "custom in 'startTime': Expected a value, received null"),
        ({"endTime": "08:00"}, END_AFTER_START),
        ({"days": [9]}, "too_big in 'days,0': Number must be less than or equal to 6"),
        ({"startTime": "noon"}, f"custom in 'startTime': {TIME_FORMAT}"),
    ],
)
async def test_patch_validation(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    schedule: dict[str, Any],
    body: dict[str, Any],
    message: str,
) -> None:
    before = await stored_rows(app, schedule["id"])
    rule_id = schedule["availability"][0]["id"]
    response = await client.patch(f"/v1/availabilities/{rule_id}", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await stored_rows(app, schedule["id"]) == before


async def test_admin_patches_and_deletes_any_availability(
    client: httpx.AsyncClient, app: FastAPI, admin: Account, schedule: dict[str, Any]
) -> None:
    rule_id = schedule["availability"][0]["id"]
    patched = await client.patch(
        f"/v1/availabilities/{rule_id}", params=admin.params, json={"endTime": "16:00"}
    )
    assert patched.status_code == 200
    assert patched.json()["availability"]["endTime"] == "1970-01-01T16:00:00.000Z"
    deleted = await client.delete(f"/v1/availabilities/{rule_id}", params=admin.params)
    assert deleted.status_code == 200
    assert await stored_rows(app, schedule["id"]) == []


async def test_delete_own_availability(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    rule_id = schedule["availability"][0]["id"]
    response = await client.delete(f"/v1/availabilities/{rule_id}", params=alice.params)
    assert response.status_code == 200
    assert response.json() == {"message": f"Availability with id: {rule_id} deleted successfully"}
    assert await stored_rows(app, schedule["id"]) == []
    again = await client.get(f"/v1/availabilities/{rule_id}", params=alice.params)
    assert again.status_code == 404
    listed = await client.get(f"/v1/schedules/{schedule['id']}", params=alice.params)
    assert listed.json()["schedule"]["availability"] == []


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/availabilities"),
        ("GET", "/v1/availabilities/1"),
        ("PATCH", "/v1/availabilities/1"),
        ("DELETE", "/v1/availabilities/1"),
    ],
)
async def test_no_key_is_401(
    client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.json() == {"message": "No apiKey provided"}


async def test_concurrent_overlapping_rules_cannot_both_be_written(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, schedule: dict[str, Any]
) -> None:
    # The overlap check and the insert run under a lock on the schedule row.
    bodies = [
        {"scheduleId": schedule["id"], "days": [6], "startTime": start, "endTime": "12:00"}
        for start in ("10:00", "10:30", "11:00", "11:30")
    ]
    responses = await asyncio.gather(
        *(client.post("/v1/availabilities", params=alice.params, json=body) for body in bodies)
    )
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    assert len(await stored_rows(app, schedule["id"])) == 2
