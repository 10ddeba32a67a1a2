"""/v1/event-types: envelopes, defaults, validation, tenant isolation, admin behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.api_keys.service import issue_key
from bookable.app import create_app
from bookable.models import EventType, EventTypeCustomInput, Host, Schedule, User
from tests.conftest import Account, client_for

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

MANAGED_NOT_AVAILABLE = "managed event types (parent and children) are not supported"
TEAM_ONLY = "is only for team event types (give `teamId`)"
FORBIDDEN = {"message": "Forbidden"}
NO_KEY = {"message": "No apiKey provided"}


async def create(client: httpx.AsyncClient, account: Account, **fields: Any) -> httpx.Response:
    body = {"title": "Thirty minutes", "slug": "thirty", "length": 30, **fields}
    return await client.post("/v1/event-types", params=account.params, json=body)


async def create_ok(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    response = await create(client, account, **fields)
    assert response.status_code == 200, response.text
    return response.json()["event_type"]


async def count_event_types(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(EventType)) or 0)


async def stored(app: FastAPI, event_type_id: int) -> EventType | None:
    async with app.state.sessions() as session:
        return await session.get(EventType, event_type_id)


async def add_schedule(app: FastAPI, user_id: int, *, make_default: bool = False) -> int:
    """A schedule row straight in the database (the /v1/schedules endpoints are built elsewhere)."""
    async with app.state.sessions() as session, session.begin():
        schedule = Schedule(user_id=user_id, name="Working hours", time_zone="Europe/London")
        session.add(schedule)
        await session.flush()
        if make_default:
            user = await session.get(User, user_id)
            assert user is not None
            user.default_schedule_id = schedule.id
        return schedule.id


def deleted_message(event_type_id: int) -> dict[str, str]:
    return {"message": f"Event Type with id: {event_type_id} deleted successfully"}


def expected_event_type(account: Account, **overrides: Any) -> dict[str, Any]:
    """The full wire shape of a freshly created event type with every default."""
    shape: dict[str, Any] = {
        "id": 1,
        "title": "Thirty minutes",
        "slug": "thirty",
        "length": 30,
        "hidden": False,
        "position": 0,
        "userId": account.id,
        "teamId": None,
        "scheduleId": None,
        "eventName": None,
        "timeZone": None,
        "periodType": "UNLIMITED",
        "periodStartDate": None,
        "periodEndDate": None,
        "periodDays": None,
        "periodCountCalendarDays": None,
        "requiresConfirmation": False,
        "recurringEvent": None,
        "disableGuests": False,
        "hideCalendarNotes": False,
        "minimumBookingNotice": 120,
        "beforeEventBuffer": 0,
        "afterEventBuffer": 0,
        "schedulingType": None,
        "price": 0,
        "currency": "usd",
        "slotInterval": None,
        "parentId": None,
        "successRedirectUrl": None,
        "description": None,
        "locations": [],
        "metadata": None,
        "seatsPerTimeSlot": None,
        "seatsShowAttendees": False,
        "seatsShowAvailabilityCount": True,
        "bookingFields": None,
        "bookingLimits": None,
        "onlyShowFirstAvailableSlot": False,
        "durationLimits": None,
        "children": [],
        "hosts": [],
        "customInputs": [],
        "link": f"http://localhost:3000/{account.username}/thirty",
        "owner": {"username": account.username, "id": account.id, "timeZone": "Europe/London"},
        "team": None,
    }
    shape.update(overrides)
    return shape


# --- create ----------------------------------------------------------------------------------


async def test_create_minimal_has_cal_com_envelope_and_defaults(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await create(client, alice)
    assert response.status_code == 200
    assert response.json() == {
        "event_type": expected_event_type(alice),
        "message": "Event type created successfully",
    }


async def test_create_with_every_field_round_trips(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    schedule_id = await add_schedule(app, alice.id)
    fields: dict[str, Any] = {
        "description": "A quick chat",
        "hidden": True,
        "position": 3,
        "eventName": "{Event type title} with {Scheduler}",
        "timeZone": "america/new_york",
        "periodType": "RANGE",
        "periodStartDate": "2026-03-01T00:00:00Z",
        "periodEndDate": "2026-03-31",
        "periodDays": 0,
        "periodCountCalendarDays": True,
        "requiresConfirmation": True,
        "disableGuests": True,
        "hideCalendarNotes": True,
        "minimumBookingNotice": 0,
        "beforeEventBuffer": 5,
        "afterEventBuffer": 10,
        "offsetStart": 5,
        "price": 1500,
        "currency": "eur",
        "slotInterval": 15,
        "successRedirectUrl": "https://example.com/thanks",
        "locations": [
            {"type": "inPerson", "address": "1 High St", "displayLocationPublicly": True},
            {"type": "link", "link": "https://meet.example.com/x"},
        ],
        "bookingLimits": {"PER_DAY": 2, "PER_WEEK": 5},
        "durationLimits": {"PER_MONTH": 600},
        "onlyShowFirstAvailableSlot": True,
        "metadata": {
            "multipleDuration": [15, 30, 60],
            "requiresConfirmationThreshold": {"time": 2, "unit": "hours"},
            "apps": {"stripe": {"enabled": False}},
        },
        "recurringEvent": {"freq": 2, "count": 10, "interval": 1, "tzid": "Europe/Paris"},
        "seatsPerTimeSlot": 4,
        "seatsShowAttendees": True,
        "seatsShowAvailabilityCount": False,
        "bookingFields": [{"name": "notes", "type": "textarea", "required": False}],
        "scheduleId": schedule_id,
        "teamId": None,
        "hosts": [],
        "children": [],
    }
    created = await create_ok(client, alice, **fields)
    expected = expected_event_type(
        alice,
        **{k: v for k, v in fields.items() if k not in {"teamId", "hosts", "children"}},
    )
    del expected["offsetStart"]  # accepted, stored, not in Cal.com's read shape
    expected.update(
        timeZone="America/New_York",
        periodStartDate="2026-03-01T00:00:00.000Z",
        periodEndDate="2026-03-31T00:00:00.000Z",
    )
    assert created == expected
    fetched = await client.get(f"/v1/event-types/{created['id']}", params=alice.params)
    assert fetched.json() == {"event_type": expected}
    row = await stored(app, created["id"])
    assert row is not None and row.offset_start == 5


@pytest.mark.parametrize(
    ("given", "slug"),
    [
        ("Thirty Min", "thirty-min"),
        ("  Café  Meeting!! ", "cafe-meeting"),
        ("a__b--c", "a-b-c"),
        ("UPPER-case_99", "upper-case-99"),
    ],
)
async def test_slug_is_slugified(
    client: httpx.AsyncClient, alice: Account, given: str, slug: str
) -> None:
    created = await create_ok(client, alice, slug=given)
    assert created["slug"] == slug
    assert created["link"] == f"http://localhost:3000/alice/{slug}"


async def test_link_uses_the_configured_website_url(make_settings: Callable[..., Any]) -> None:
    application = create_app(make_settings(website_url="https://book.example.org/"))
    async with application.router.lifespan_context(application), client_for(application) as http:
        async with application.state.sessions() as session, session.begin():
            user = User(email="carol@example.com", username="carol")
            session.add(user)
            await session.flush()
            _, key = await issue_key(session, user_id=user.id, prefix="cal_")
        response = await http.post(
            "/v1/event-types",
            params={"apiKey": key},
            json={"title": "T", "slug": "intro", "length": 15},
        )
    assert response.json()["event_type"]["link"] == "https://book.example.org/carol/intro"


async def test_team_fields_may_be_sent_empty(client: httpx.AsyncClient, alice: Account) -> None:
    created = await create_ok(
        client,
        alice,
        teamId=None,
        hosts=[],
        children=[],
        schedulingType=None,
        parentId=None,
        assignAllTeamMembers=False,
    )
    assert created["teamId"] is None and created["hosts"] == [] and created["children"] == []


async def test_duplicate_slug_for_the_same_owner_is_409(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    await create_ok(client, alice, slug="intro")
    response = await create(client, alice, slug="Intro")
    assert response.status_code == 409
    assert response.json() == {
        "message": "slug 'intro' is already used by another event type of this user"
    }
    assert await count_event_types(app) == 1
    # Slugs are unique per owner, not globally.
    await create_ok(client, bob, slug="intro")


async def test_concurrent_creates_with_one_slug_give_one_event_type(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    responses = await asyncio.gather(*(create(client, alice, slug="same") for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409, 409]
    assert await count_event_types(app) == 1


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": None}, "invalid_type in 'title': Expected string, received null"),
        ({"length": 0}, "too_small in 'length': Number must be greater than or equal to 1"),
        ({"length": 1441}, "too_big in 'length': Number must be less than or equal to 1440"),
        ({"length": "long"}, "invalid_type in 'length': Expected number, received string"),
        ({"slug": "!!!"}, "custom in 'slug': must contain at least one letter or digit"),
        (
            {"slotInterval": 0},
            "too_small in 'slotInterval': Number must be greater than or equal to 1",
        ),
        (
            {"minimumBookingNotice": -1},
            "too_small in 'minimumBookingNotice': Number must be greater than or equal to 0",
        ),
        (
            {"timeZone": "Mars/Olympus"},
            "custom in 'timeZone': 'Mars/Olympus' is not a valid IANA time zone, "
            "e.g. 'Europe/London'",
        ),
        ({"colour": "red"}, "Unrecognized key(s) in object: 'colour'"),
        ({"hidden": None}, "custom in 'hidden': Expected a value, received null"),
        (
            {"periodType": "WEEKLY"},
            "invalid_enum_value in 'periodType': Invalid enum value. Expected 'UNLIMITED', "
            "'ROLLING', 'ROLLING_WINDOW' or 'RANGE', received 'WEEKLY'",
        ),
        (
            {"periodType": "RANGE", "periodEndDate": "2026-03-31"},
            "custom in 'periodStartDate': is required when periodType is RANGE",
        ),
        (
            {"periodType": "RANGE", "periodStartDate": "2026-03-01"},
            "custom in 'periodEndDate': is required when periodType is RANGE",
        ),
        (
            {
                "periodType": "RANGE",
                "periodStartDate": "2026-03-31",
                "periodEndDate": "2026-03-01",
            },
            "custom in 'periodEndDate': must not be before periodStartDate",
        ),
        (
            {"periodType": "ROLLING"},
            "custom in 'periodDays': must be at least 1 when periodType is ROLLING",
        ),
        (
            {"periodType": "ROLLING_WINDOW", "periodDays": 0},
            "custom in 'periodDays': must be at least 1 when periodType is ROLLING_WINDOW",
        ),
        (
            {"metadata": {"multipleDuration": [15, 60]}},
            "custom in 'metadata,multipleDuration': must include the event length (30)",
        ),
        (
            {"metadata": {"multipleDuration": [30, 0]}},
            "too_small in 'metadata,multipleDuration,1': Number must be greater than or equal to 1",
        ),
        (
            {"metadata": {"requiresConfirmationThreshold": {"time": 2, "unit": "days"}}},
            "invalid_enum_value in 'metadata,requiresConfirmationThreshold,unit': Invalid enum "
            "value. Expected 'hours' or 'minutes', received 'days'",
        ),
        ({"metadata": [1]}, "invalid_type in 'metadata': Expected object, received array"),
        (
            {"successRedirectUrl": "ftp://example.com"},
            "custom in 'successRedirectUrl': must be an http(s) URL or an empty string",
        ),
        ({"locations": [{"address": "x"}]}, "invalid_type in 'locations,0,type': Required"),
        (
            {"bookingLimits": {"PER_DAY": 0}},
            "too_small in 'bookingLimits,PER_DAY': Number must be greater than or equal to 1",
        ),
        (
            {"durationLimits": {"PER_HOUR": 60}},
            "Unrecognized key(s) in object: 'PER_HOUR'",
        ),
        (
            {"seatsPerTimeSlot": 0},
            "too_small in 'seatsPerTimeSlot': Number must be greater than or equal to 1",
        ),
        (
            {"recurringEvent": {"freq": 9}},
            "too_big in 'recurringEvent,freq': Number must be less than or equal to 6",
        ),
        (
            {"position": 2**40},
            "too_big in 'position': Number must be less than or equal to 2147483647",
        ),
        ({"title": "nul\x00"}, "custom in 'title': must not contain NUL characters"),
        ({"hosts": [{"userId": 2}]}, f"custom in 'hosts': {TEAM_ONLY}"),
        (
            {"children": [{"id": 1, "userId": 2}]},
            f"custom in 'children': {MANAGED_NOT_AVAILABLE}",
        ),
        ({"schedulingType": "COLLECTIVE"}, f"custom in 'schedulingType': {TEAM_ONLY}"),
        ({"parentId": 7}, f"custom in 'parentId': {MANAGED_NOT_AVAILABLE}"),
        ({"assignAllTeamMembers": True}, f"custom in 'assignAllTeamMembers': {TEAM_ONLY}"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: Account,
    fields: dict[str, Any],
    message: str,
) -> None:
    response = await create(client, alice, **fields)
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert await count_event_types(app) == 0


@pytest.mark.parametrize("missing", ["title", "slug", "length"])
async def test_create_requires_title_slug_length(
    client: httpx.AsyncClient, alice: Account, missing: str
) -> None:
    body = {"title": "T", "slug": "t", "length": 30}
    del body[missing]
    response = await client.post("/v1/event-types", params=alice.params, json=body)
    assert response.status_code == 400
    assert response.json() == {"message": f"invalid_type in '{missing}': Required"}


async def test_period_type_is_accepted_in_any_case(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = await create_ok(client, alice, periodType="rolling", periodDays=14)
    assert created["periodType"] == "ROLLING" and created["periodDays"] == 14


async def test_empty_redirect_url_is_accepted(client: httpx.AsyncClient, alice: Account) -> None:
    assert (await create_ok(client, alice, successRedirectUrl=""))["successRedirectUrl"] == ""


# --- scheduleId ------------------------------------------------------------------------------


async def test_schedule_must_belong_to_the_owner(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account, admin: Account
) -> None:
    bobs_schedule = await add_schedule(app, bob.id)
    response = await create(client, alice, scheduleId=bobs_schedule)
    assert response.status_code == 400
    assert response.json() == {
        "message": f"custom in 'scheduleId': no schedule with id {bobs_schedule} belongs "
        "to the event type's owner"
    }
    response = await create(client, alice, scheduleId=999)
    assert response.status_code == 400
    assert await count_event_types(app) == 0
    # An admin acting for bob may use bob's schedule; for alice it's refused.
    created = await create_ok(client, admin, userId=bob.id, scheduleId=bobs_schedule)
    assert created["scheduleId"] == bobs_schedule
    response = await create(client, admin, userId=alice.id, scheduleId=bobs_schedule)
    assert response.status_code == 400


async def test_get_shows_the_owners_default_schedule_when_none_is_set(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    default_schedule = await add_schedule(app, alice.id, make_default=True)
    created = await create_ok(client, alice)
    assert created["scheduleId"] is None  # create shows what is stored, as Cal.com does
    one = await client.get(f"/v1/event-types/{created['id']}", params=alice.params)
    assert one.json()["event_type"]["scheduleId"] == default_schedule
    listed = await client.get("/v1/event-types", params=alice.params)
    assert listed.json()["event_types"][0]["scheduleId"] == default_schedule
    row = await stored(app, created["id"])
    assert row is not None and row.schedule_id is None


async def test_patch_schedule_id_is_checked_and_can_be_cleared(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    mine = await add_schedule(app, alice.id)
    bobs = await add_schedule(app, bob.id)
    created = await create_ok(client, alice)
    url = f"/v1/event-types/{created['id']}"
    response = await client.patch(url, params=alice.params, json={"scheduleId": bobs})
    assert response.status_code == 400
    response = await client.patch(url, params=alice.params, json={"scheduleId": mine})
    assert response.json()["event_type"]["scheduleId"] == mine
    response = await client.patch(url, params=alice.params, json={"scheduleId": None})
    assert response.json()["event_type"]["scheduleId"] is None


# --- list ------------------------------------------------------------------------------------


async def test_list_shows_only_own_event_types_and_filters_by_slug(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    a1 = await create_ok(client, alice, slug="intro")
    a2 = await create_ok(client, alice, slug="deep-dive")
    await create_ok(client, bob, slug="intro")
    response = await client.get("/v1/event-types", params=alice.params)
    assert response.status_code == 200
    assert [et["id"] for et in response.json()["event_types"]] == [a1["id"], a2["id"]]
    response = await client.get("/v1/event-types", params={**alice.params, "slug": "intro"})
    assert response.json() == {"event_types": [a1]}
    response = await client.get("/v1/event-types", params={**alice.params, "slug": "nope"})
    assert response.json() == {"event_types": []}


async def test_list_user_id_filter_needs_admin(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    await create_ok(client, bob)
    response = await client.get("/v1/event-types", params={**alice.params, "userId": bob.id})
    assert response.status_code == 401
    assert response.json() == {"message": "ADMIN required"}
    # Naming yourself is harmless.
    response = await client.get("/v1/event-types", params={**alice.params, "userId": alice.id})
    assert response.status_code == 200 and response.json() == {"event_types": []}


async def test_admin_lists_everyone_or_filters_by_user_ids(
    client: httpx.AsyncClient, make_account: Callable[..., Any], alice: Account, bob: Account,
    admin: Account,
) -> None:  # fmt: skip
    carol = await make_account("carol")
    a = await create_ok(client, alice, slug="intro")
    b = await create_ok(client, bob, slug="intro")
    c = await create_ok(client, carol, slug="other")

    async def ids(**params: Any) -> list[int]:
        response = await client.get("/v1/event-types", params={**admin.params, **params})
        assert response.status_code == 200
        return [et["id"] for et in response.json()["event_types"]]

    assert await ids() == [a["id"], b["id"], c["id"]]
    assert await ids(userId=bob.id) == [b["id"]]
    assert await ids(userId=[alice.id, carol.id]) == [a["id"], c["id"]]
    assert await ids(slug="intro") == [a["id"], b["id"]]
    assert await ids(userId=carol.id, slug="intro") == []
    assert await ids(userId=2**40) == []


# --- admin create ----------------------------------------------------------------------------


async def test_user_id_in_create_body_needs_admin(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    response = await create(client, alice, userId=bob.id)
    assert response.status_code == 401
    assert response.json() == {"message": "ADMIN required for `userId`"}
    assert await count_event_types(app) == 0
    assert (await create_ok(client, alice, userId=alice.id))["userId"] == alice.id


async def test_admin_creates_for_a_user_or_for_themself(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for_alice = await create_ok(client, admin, userId=alice.id)
    assert for_alice["userId"] == alice.id
    assert for_alice["owner"] == {"username": "alice", "id": alice.id, "timeZone": "Europe/London"}
    assert for_alice["link"] == "http://localhost:3000/alice/thirty"
    listed = await client.get("/v1/event-types", params=alice.params)
    assert [et["id"] for et in listed.json()["event_types"]] == [for_alice["id"]]
    assert (await create_ok(client, admin))["userId"] == admin.id
    response = await create(client, admin, userId=4242)
    assert response.status_code == 404
    assert response.json() == {"message": "User with id: 4242 not found"}


# --- get / patch / delete across users -------------------------------------------------------


async def test_other_users_cannot_read_change_or_delete(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    created = await create_ok(client, alice)
    url = f"/v1/event-types/{created['id']}"
    for response in (
        await client.get(url, params=bob.params),
        await client.patch(url, params=bob.params, json={"title": "Mine now"}),
        await client.delete(url, params=bob.params),
    ):
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    row = await stored(app, created["id"])
    assert row is not None and row.title == "Thirty minutes" and row.user_id == alice.id
    assert (await client.get(url, params=alice.params)).json() == {"event_type": created}
    listed = await client.get("/v1/event-types", params=bob.params)
    assert listed.json() == {"event_types": []}


async def test_missing_id_is_403_for_users_and_404_for_admins(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    for url in ("/v1/event-types/999", f"/v1/event-types/{2**40}"):
        for method in ("GET", "PATCH", "DELETE"):
            json = {"title": "x"} if method == "PATCH" else None
            response = await client.request(method, url, params=alice.params, json=json)
            assert (response.status_code, response.json()) == (403, FORBIDDEN)
            response = await client.request(method, url, params=admin.params, json=json)
            assert (response.status_code, response.json()) == (
                404,
                {"message": "Event type not found"},
            )


async def test_non_numeric_id_is_400(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/v1/event-types/abc", params=alice.params)
    assert response.status_code == 400
    assert response.json() == {"message": "invalid_type in 'id': Expected number, received nan"}


async def test_admin_reads_changes_and_deletes_anyones(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, admin: Account
) -> None:
    created = await create_ok(client, alice)
    url = f"/v1/event-types/{created['id']}"
    assert (await client.get(url, params=admin.params)).json() == {"event_type": created}
    patched = await client.patch(url, params=admin.params, json={"length": 45})
    assert patched.json()["event_type"]["length"] == 45
    assert patched.json()["event_type"]["userId"] == alice.id
    deleted = await client.delete(url, params=admin.params)
    assert deleted.json() == {
        "message": f"Event Type with id: {created['id']} deleted successfully"
    }
    assert await stored(app, created["id"]) is None


# --- patch -----------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent_and_keeps_hosts(
    client: httpx.AsyncClient, app: FastAPI, alice: Account, bob: Account
) -> None:
    created = await create_ok(
        client,
        alice,
        description="Keep me",
        locations=[{"type": "inPerson", "address": "1 High St"}],
        metadata={"multipleDuration": [30, 60]},
        bookingLimits={"PER_DAY": 3},
        minimumBookingNotice=60,
    )
    # Hosts can't be created through the API yet; put one in the database directly.
    async with app.state.sessions() as session, session.begin():
        session.add(Host(event_type_id=created["id"], user_id=bob.id, is_fixed=True))
    url = f"/v1/event-types/{created['id']}"
    response = await client.patch(url, params=alice.params, json={"title": "Renamed"})
    assert response.status_code == 200
    host = {"userId": bob.id, "isFixed": True, "scheduleId": None}
    assert response.json() == {"event_type": {**created, "title": "Renamed", "hosts": [host]}}
    fetched = await client.get(url, params=alice.params)
    assert fetched.json()["event_type"] == {**created, "title": "Renamed", "hosts": [host]}
    # An explicit empty list does clear them.
    response = await client.patch(url, params=alice.params, json={"hosts": []})
    assert response.json()["event_type"]["hosts"] == []
    async with app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Host)) == 0


async def test_patch_can_null_nullable_fields_but_not_required_ones(
    client: httpx.AsyncClient, alice: Account
) -> None:
    created = await create_ok(client, alice, description="x", bookingLimits={"PER_DAY": 1})
    url = f"/v1/event-types/{created['id']}"
    response = await client.patch(
        url, params=alice.params, json={"description": None, "bookingLimits": None}
    )
    body = response.json()["event_type"]
    assert body["description"] is None and body["bookingLimits"] is None
    response = await client.patch(url, params=alice.params, json={"length": None})
    assert response.status_code == 400
    assert response.json() == {"message": "custom in 'length': Expected a value, received null"}
    response = await client.patch(url, params=alice.params, json={"userId": alice.id})
    assert response.json() == {"message": "Unrecognized key(s) in object: 'userId'"}


async def test_patch_rules_are_checked_against_the_stored_row(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    created = await create_ok(
        client,
        alice,
        periodType="RANGE",
        periodStartDate="2026-03-10T00:00:00Z",
        periodEndDate="2026-03-20T00:00:00Z",
        metadata={"multipleDuration": [30, 60]},
    )
    url = f"/v1/event-types/{created['id']}"
    cases = [
        (
            {"periodEndDate": "2026-03-01T00:00:00Z"},
            "custom in 'periodEndDate': must not be before periodStartDate",
        ),
        (
            {"periodType": "ROLLING"},
            "custom in 'periodDays': must be at least 1 when periodType is ROLLING",
        ),
        (
            {"length": 45},
            "custom in 'metadata,multipleDuration': must include the event length (45)",
        ),
        (
            {"slotInterval": 0},
            "too_small in 'slotInterval': Number must be greater than or equal to 1",
        ),
        (
            {"teamId": 1},
            "custom in 'teamId': an event type cannot move to another team or owner",
        ),
    ]
    for body, message in cases:
        response = await client.patch(url, params=alice.params, json=body)
        assert (response.status_code, response.json()) == (400, {"message": message})
    row = await stored(app, created["id"])
    assert row is not None and row.length == 30 and row.period_type == "RANGE"
    response = await client.patch(
        url, params=alice.params, json={"length": 60, "periodType": "ROLLING", "periodDays": 7}
    )
    assert response.status_code == 200
    body = response.json()["event_type"]
    assert (body["length"], body["periodType"], body["periodDays"]) == (60, "ROLLING", 7)


async def test_patch_slug_is_slugified_and_must_stay_unique(
    client: httpx.AsyncClient, alice: Account
) -> None:
    await create_ok(client, alice, slug="taken")
    created = await create_ok(client, alice, slug="mine")
    url = f"/v1/event-types/{created['id']}"
    response = await client.patch(url, params=alice.params, json={"slug": "Taken"})
    assert response.status_code == 409
    response = await client.patch(url, params=alice.params, json={"slug": "Mine"})
    assert response.status_code == 200  # its own slug is no clash
    response = await client.patch(url, params=alice.params, json={"slug": "New Name"})
    assert response.json()["event_type"]["slug"] == "new-name"
    assert response.json()["event_type"]["link"] == "http://localhost:3000/alice/new-name"


# --- delete ----------------------------------------------------------------------------------


async def test_delete_removes_the_event_type_and_its_custom_inputs(
    client: httpx.AsyncClient, app: FastAPI, alice: Account
) -> None:
    created = await create_ok(client, alice)
    keep = await create_ok(client, alice, slug="keep")
    for event_type_id in (created["id"], keep["id"]):
        response = await client.post(
            "/v1/custom-inputs",
            params=alice.params,
            json={
                "eventTypeId": event_type_id,
                "label": "Phone",
                "type": "PHONE",
                "required": True,
            },
        )
        assert response.status_code == 200
    url = f"/v1/event-types/{created['id']}"
    response = await client.delete(url, params=alice.params)
    assert response.status_code == 200
    assert response.json() == {
        "message": f"Event Type with id: {created['id']} deleted successfully"
    }
    assert (await client.get(url, params=alice.params)).status_code == 403
    async with app.state.sessions() as session:
        remaining = await session.scalars(select(EventTypeCustomInput.event_type_id))
        assert list(remaining) == [keep["id"]]


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/event-types"),
        ("POST", "/v1/event-types"),
        ("GET", "/v1/event-types/1"),
        ("PATCH", "/v1/event-types/1"),
        ("DELETE", "/v1/event-types/1"),
        ("GET", "/event-types"),
    ],
)
async def test_no_key_is_401(
    client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"title": "x"})
    assert response.status_code == 401
    assert response.json() == NO_KEY
