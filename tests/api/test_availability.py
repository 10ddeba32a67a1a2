"""GET /v1/availability and /v1/users/{userId}/availability."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bookable.models import EventType

from .scheduling_seed import add_booking, add_event_type, add_schedule

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers


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
        ({"teamId": 1, "dateFrom": "2026-12-01"}, "'dateTo'"),
    ]
    for params, fragment in cases:
        r = await client.get("/v1/availability", params={**alice.params, **params})
        assert r.status_code == 400, (params, r.text)
        assert fragment in r.json()["message"], (params, r.text)


async def test_team_availability_for_owners_and_admins_only(
    app, client, alice, bob, admin, make_account
):
    """The team form: `[{userId, availability}]` of accepted members, for OWNER/ADMIN."""
    from tests.api.test_teams import add_member, create_team

    carol = await make_account("carol")
    dave = await make_account("dave")
    await add_schedule(app, alice.id, "Europe/Berlin")
    await add_schedule(app, bob.id, "America/New_York")
    team_id = int((await create_team(client, alice, slug="sales"))["team"]["id"])
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    # Dave is only invited: pending members are not listed.
    invited = await client.post(
        "/v1/memberships", params=alice.params, json={"teamId": team_id, "userId": dave.id}
    )
    assert invited.status_code == 200, invited.text
    window = {"teamId": team_id, "dateFrom": "2026-12-01", "dateTo": "2026-12-01"}

    for manager in (alice, bob, admin):
        r = await client.get("/v1/availability", params={**manager.params, **window})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [entry["userId"] for entry in body] == [alice.id, bob.id, carol.id]
        by_user = {entry["userId"]: entry["availability"] for entry in body}
        assert by_user[alice.id]["timeZone"] == "Europe/Berlin"
        assert by_user[bob.id]["timeZone"] == "America/New_York"
        assert by_user[alice.id]["dateRanges"] == [
            {"start": "2026-12-01T08:00:00.000Z", "end": "2026-12-01T16:00:00.000Z"}
        ]

    for outsider in (carol, dave):
        r = await client.get("/v1/availability", params={**outsider.params, **window})
        assert (r.status_code, r.json()) == (403, {"message": "Forbidden"})
    missing = {**window, "teamId": 999_999}
    r = await client.get("/v1/availability", params={**carol.params, **missing})
    assert r.status_code == 403
    r = await client.get("/v1/availability", params={**admin.params, **missing})
    assert (r.status_code, r.json()) == (404, {"message": "teamId not found"})


async def test_team_availability_by_path(app, client, alice, bob, admin, make_account):
    """GET /teams/{teamId}/availability answers as /availability?teamId= (same body, same
    rules): OWNER/ADMIN and system admins; members and outsiders 403; a missing team 404 for
    admins (403 for the rest, who may not learn which teams exist)."""
    from tests.api.test_teams import add_member, create_team

    carol = await make_account("carol")
    dave = await make_account("dave")
    await add_schedule(app, alice.id, "Europe/Berlin")
    await add_schedule(app, bob.id, "America/New_York")
    team_id = int((await create_team(client, alice, slug="sales"))["team"]["id"])
    await add_member(client, alice, bob, team_id, role="ADMIN")
    await add_member(client, alice, carol, team_id)
    start = datetime(2026, 12, 1, 15, tzinfo=UTC)
    await add_booking(app, bob.id, start, start + timedelta(minutes=30))
    window = {"dateFrom": "2026-12-01", "dateTo": "2026-12-01"}

    for manager in (alice, bob, admin):
        by_path = await client.get(
            f"/v1/teams/{team_id}/availability", params={**manager.params, **window}
        )
        by_query = await client.get(
            "/v1/availability", params={**manager.params, **window, "teamId": team_id}
        )
        assert by_path.status_code == by_query.status_code == 200, by_path.text
        assert by_path.json() == by_query.json()
        by_user = {entry["userId"]: entry["availability"] for entry in by_path.json()}
        assert list(by_user) == [alice.id, bob.id, carol.id]
        assert by_user[bob.id]["busy"] == [
            {"start": "2026-12-01T15:00:00.000Z", "end": "2026-12-01T15:30:00.000Z"}
        ]
    # Unversioned path too.
    r = await client.get(f"/teams/{team_id}/availability", params={**alice.params, **window})
    assert r.status_code == 200

    for refused in (carol, dave):
        r = await client.get(
            f"/v1/teams/{team_id}/availability", params={**refused.params, **window}
        )
        assert (r.status_code, r.json()) == (403, {"message": "Forbidden"})
    r = await client.get("/v1/teams/999999/availability", params={**carol.params, **window})
    assert r.status_code == 403
    r = await client.get("/v1/teams/999999/availability", params={**admin.params, **window})
    assert (r.status_code, r.json()) == (404, {"message": "teamId not found"})
    r = await client.get(
        f"/v1/teams/{team_id}/availability", params={**alice.params, "dateFrom": "2026-12-01"}
    )
    assert r.status_code == 400
    assert "'dateTo'" in r.json()["message"]
    r = await client.get("/v1/teams/999999/availability", params={**window})
    assert r.status_code == 401


async def test_team_availability_with_a_team_event_type(app, client, alice, bob, make_account):
    """``eventTypeId`` (one of the team's event types) widens each member's busy time by its
    buffers; another team's or a personal event type is 404."""
    from tests.api.test_teams import add_member, create_team

    await add_schedule(app, alice.id, "UTC")
    await add_schedule(app, bob.id, "UTC")
    team_id = int((await create_team(client, alice, slug="sales"))["team"]["id"])
    await add_member(client, alice, bob, team_id)
    async with app.state.sessions() as session, session.begin():
        team_event = EventType(
            team_id=team_id, slug="demo", title="Demo", length=30, locations=[],
            before_event_buffer=15, after_event_buffer=0, scheduling_type="COLLECTIVE",
        )  # fmt: skip
        session.add(team_event)
        await session.flush()
        team_event_id = team_event.id
    personal = await add_event_type(app, alice.id, slug="personal")
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)
    await add_booking(app, bob.id, start, start + timedelta(minutes=30))
    window = {"dateFrom": "2026-12-01", "dateTo": "2026-12-01"}

    r = await client.get(
        f"/v1/teams/{team_id}/availability",
        params={**alice.params, **window, "eventTypeId": team_event_id},
    )
    assert r.status_code == 200, r.text
    bob_ranges = {e["userId"]: e["availability"] for e in r.json()}[bob.id]["dateRanges"]
    # The booking ends 12:30; the event's 15 minutes before keep 12:30-12:45 busy.
    assert bob_ranges == [
        {"start": "2026-12-01T09:00:00.000Z", "end": "2026-12-01T12:00:00.000Z"},
        {"start": "2026-12-01T12:45:00.000Z", "end": "2026-12-01T17:00:00.000Z"},
    ]
    for other in (personal, 999_999):
        r = await client.get(
            f"/v1/teams/{team_id}/availability",
            params={**alice.params, **window, "eventTypeId": other},
        )
        assert r.status_code == 404, r.text
