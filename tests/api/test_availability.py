"""GET /v1/availability and /v1/users/{userId}/availability."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from .scheduling_seed import add_booking, add_schedule


async def test_user_availability_shape(app, client, alice):
    await add_schedule(
        app, alice.id, "Europe/Berlin",
        overrides=[(date(2026, 12, 2), time(0), time(0))],  # Wednesday off
    )  # fmt: skip
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    await add_booking(app, alice.id, start, start + timedelta(minutes=30))
    r = await client.get(
        "/v1/availability",
        params={
            **alice.params,
            "userId": alice.id,
            "dateFrom": "2026-12-01",
            "dateTo": "2026-12-02",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timeZone"] == "Europe/Berlin"
    assert body["workingHours"] == [
        {"days": [1, 2, 3, 4, 5], "startTime": 540, "endTime": 1020, "userId": alice.id}
    ]
    assert body["busy"] == [
        {"start": "2026-12-01T09:00:00.000Z", "end": "2026-12-01T09:30:00.000Z"}
    ]
    # Tuesday 08:00-16:00Z minus the booking; Wednesday is overridden to nothing.
    assert body["dateRanges"] == [
        {"start": "2026-12-01T08:00:00.000Z", "end": "2026-12-01T09:00:00.000Z"},
        {"start": "2026-12-01T09:30:00.000Z", "end": "2026-12-01T16:00:00.000Z"},
    ]
    assert body["dateOverrides"] == []  # a day-off override has no hours
    assert body["currentSeats"] is None
    assert body["datesOutOfOffice"] == {}


async def test_by_username_and_by_path(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    window = {"dateFrom": "2026-12-01", "dateTo": "2026-12-01"}
    by_name = await client.get(
        "/v1/availability", params={**alice.params, "username": "alice", **window}
    )
    by_path = await client.get(
        f"/v1/users/{alice.id}/availability", params={**alice.params, **window}
    )
    assert by_name.status_code == by_path.status_code == 200
    assert by_name.json() == by_path.json()
    assert by_name.json()["dateRanges"] == [
        {"start": "2026-12-01T09:00:00.000Z", "end": "2026-12-01T17:00:00.000Z"}
    ]


async def test_other_users_availability_is_private_except_for_admins(
    app, client, alice, bob, admin
):
    await add_schedule(app, bob.id, "UTC")
    window = {"dateFrom": "2026-12-01", "dateTo": "2026-12-01"}
    r = await client.get(f"/v1/users/{bob.id}/availability", params={**alice.params, **window})
    assert r.status_code == 403
    assert r.json() == {"message": "Forbidden"}
    r = await client.get("/v1/availability", params={**alice.params, "username": "bob", **window})
    assert r.status_code == 403
    r = await client.get(f"/v1/users/{bob.id}/availability", params={**admin.params, **window})
    assert r.status_code == 200
    r = await client.get("/v1/users/999999/availability", params={**admin.params, **window})
    assert r.status_code == 404


async def test_validation(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    cases = [
        ({"userId": alice.id, "dateTo": "2026-12-01"}, "'dateFrom'"),
        ({"userId": alice.id, "dateFrom": "yesterday", "dateTo": "2026-12-01"}, "'dateFrom'"),
        ({"userId": alice.id, "dateFrom": "2026-12-02", "dateTo": "2026-11-01"}, "'dateTo'"),
        ({"dateFrom": "2026-12-01", "dateTo": "2026-12-02"}, "Either username or userId"),
        ({"teamId": 1, "dateFrom": "2026-12-01", "dateTo": "2026-12-02"}, "'teamId'"),
    ]
    for params, fragment in cases:
        r = await client.get("/v1/availability", params={**alice.params, **params})
        assert r.status_code == 400, (params, r.text)
        assert fragment in r.json()["message"], (params, r.text)
