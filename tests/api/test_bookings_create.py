"""POST /v1/bookings on real databases: the three body forms, every refusal, the shape."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bookable.models import Booking, BookingStatus, Payment
from tests.conftest import client_for
from tests.statements import recorded_round_trips

from .scheduling_seed import add_booking, add_event_type, add_schedule

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

# A frozen "now" (a Monday) well before the days booked here; 2026-12-01 is a Tuesday.
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 1, tzinfo=UTC)

# Every field of Cal.com's create response (calcom-v1-behavior.md §6) that Bookable returns.
RESPONSE_KEYS = {
    "id", "uid", "userId", "userPrimaryEmail", "eventTypeId", "title", "description",
    "customInputs", "responses", "startTime", "endTime", "location", "createdAt", "updatedAt",
    "status", "paid", "destinationCalendarId", "cancellationReason", "rejectionReason",
    "dynamicEventSlugRef", "dynamicGroupSlugRef", "rescheduled", "fromReschedule",
    "recurringEventId", "smsReminderNumber", "metadata", "isRecorded", "iCalUID", "iCalSequence",
    "rating", "ratingFeedback", "noShowHost", "cancelledBy", "rescheduledBy", "creationSource",
    "attendees", "user", "payment", "references", "paymentRequired", "luckyUsers", "isDryRun",
    "seatReferenceUid", "videoCallUrl", "organizationId", "previousBooking",
}  # fmt: skip
WIRE_INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
async def app(make_settings):
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def meet(app, alice) -> int:
    """Alice works 09:00-17:00 UTC on weekdays; a 30-minute event type."""
    await add_schedule(app, alice.id, "UTC")
    return await add_event_type(app, alice.id)


def modern(event_type: int, start: str, email: str = "ann@example.com", **extra: Any) -> dict:
    body: dict[str, Any] = {
        "eventTypeId": event_type,
        "start": start,
        "timeZone": "Europe/Berlin",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Ann Booker", "email": email},
    }
    body.update(extra)
    return body


async def post(client, account, body: dict):
    return await client.post("/v1/bookings", params=account.params, json=body)


async def stored(app, booking_id: int) -> Booking:
    async with app.state.sessions() as session:
        booking = await session.scalar(
            select(Booking)
            .where(Booking.id == booking_id)
            .options(selectinload(Booking.attendees), selectinload(Booking.payments))
        )
        assert booking is not None
        return booking


async def booking_count(app) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Booking)) or 0)


def at(hour: int, minute: int = 0, day: datetime = DAY) -> str:
    return (day + timedelta(hours=hour, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- body forms -----------------------------------------------------------------------------------


async def test_modern_form_answers_the_bare_booking_with_every_field(app, client, alice, meet):
    body = modern(
        meet,
        "2026-12-01T11:00:00+01:00",
        language="de",
        metadata={"source": "crm"},
        responses={
            "name": "Ann Booker",
            "email": "Ann@Example.com",
            "location": {"value": "inPerson", "optionValue": "Room 4"},
            "guests": ["guest@example.com"],
            "notes": "Bring the contract",
            "company": "Acme",
        },
    )
    r = await post(client, alice, body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == RESPONSE_KEYS
    assert "booking" not in data
    assert re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{22}", data["uid"])
    assert data["startTime"] == "2026-12-01T10:00:00.000Z"
    assert data["endTime"] == "2026-12-01T10:30:00.000Z"
    assert data["createdAt"] == "2026-01-05T12:00:00.000Z"
    for key in ("startTime", "endTime", "createdAt"):
        assert WIRE_INSTANT.match(data[key])
    assert data | {"id": 0, "uid": "", "iCalUID": "", "attendees": []} == {
        "id": 0,
        "uid": "",
        "userId": alice.id,
        "userPrimaryEmail": alice.email,
        "eventTypeId": meet,
        "title": "Meet between alice and Ann Booker",
        "description": "Bring the contract",
        "customInputs": None,
        "responses": {
            "name": "Ann Booker",
            "email": "Ann@example.com",
            "company": "Acme",
            "location": {"value": "inPerson", "optionValue": "Room 4"},
            "guests": ["guest@example.com"],
            "notes": "Bring the contract",
        },
        "startTime": "2026-12-01T10:00:00.000Z",
        "endTime": "2026-12-01T10:30:00.000Z",
        "location": "Room 4",
        "createdAt": "2026-01-05T12:00:00.000Z",
        "updatedAt": None,
        "status": "ACCEPTED",
        "paid": False,
        "destinationCalendarId": None,
        "cancellationReason": None,
        "rejectionReason": None,
        "dynamicEventSlugRef": None,
        "dynamicGroupSlugRef": None,
        "rescheduled": None,
        "fromReschedule": None,
        "recurringEventId": None,
        "smsReminderNumber": None,
        "metadata": {"source": "crm"},
        "isRecorded": False,
        "iCalUID": "",
        "iCalSequence": 0,
        "rating": None,
        "ratingFeedback": None,
        "noShowHost": False,
        "cancelledBy": None,
        "rescheduledBy": None,
        "creationSource": "API_V1",
        "attendees": [],
        # Cal.com nulls the organizer's email in this response.
        "user": {"email": None, "name": None, "timeZone": "Europe/London", "username": "alice"},
        "payment": [],
        "references": [],
        "paymentRequired": False,
        "luckyUsers": [],
        "isDryRun": False,
        "seatReferenceUid": None,
        "videoCallUrl": None,
        "organizationId": None,
        "previousBooking": None,
    }
    assert data["iCalUID"].startswith(data["uid"])
    booker, guest = data["attendees"]
    assert booker == {
        "id": booker["id"],
        "email": "Ann@example.com",
        "name": "Ann Booker",
        "timeZone": "Europe/Berlin",
        "locale": "de",
        "bookingId": data["id"],
        "phoneNumber": None,
        "noShow": False,
    }
    assert guest["email"] == "guest@example.com"
    assert guest["timeZone"] == "Europe/Berlin"

    row = await stored(app, data["id"])
    assert row.uid == data["uid"]
    assert row.status == BookingStatus.ACCEPTED
    assert row.start_time == DAY + timedelta(hours=10)
    assert row.end_time == DAY + timedelta(hours=10, minutes=30)
    assert row.user_id == alice.id
    assert row.location == "Room 4"
    assert row.meta == {"source": "crm"}
    assert row.creation_source == "API_V1"
    assert [(a.email, a.locale) for a in row.attendees] == [
        ("Ann@example.com", "de"),
        ("guest@example.com", "de"),
    ]


async def test_modern_name_may_be_first_and_last(app, client, alice, meet):
    body = modern(meet, at(10))
    body["responses"] = {
        "name": {"firstName": "Ann", "lastName": "Booker"},
        "email": "ann@example.com",
        "location": {"value": "phone", "optionValue": ""},
    }
    r = await post(client, alice, body)
    assert r.status_code == 200, r.text
    assert r.json()["attendees"][0]["name"] == "Ann Booker"
    assert r.json()["responses"]["location"] == {"value": "phone", "optionValue": ""}
    assert r.json()["location"] == "phone"


async def test_end_defaults_to_the_event_length_and_may_pick_another_duration(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, meta={"multipleDuration": [30, 60]})
    r = await post(client, alice, modern(event_type, at(10)))
    assert r.status_code == 200, r.text
    assert r.json()["endTime"] == "2026-12-01T10:30:00.000Z"
    r = await post(client, alice, modern(event_type, at(14), end=at(15)))
    assert r.status_code == 200, r.text
    assert r.json()["endTime"] == "2026-12-01T15:00:00.000Z"
    assert (await stored(app, r.json()["id"])).end_time == DAY + timedelta(hours=15)


async def test_legacy_form_with_custom_inputs(app, client, alice, meet):
    body = {
        "eventTypeId": meet,
        "start": at(10),
        "timeZone": "America/New_York",
        "language": "en",
        "metadata": {},
        "name": "Leo Legacy",
        "email": "leo@example.com",
        "location": "https://meet.example.com/leo",
        "guests": ["friend@example.com"],
        "notes": "legacy notes",
        "customInputs": [{"label": "Company", "value": "Acme"}, {"label": "Size", "value": 12}],
    }
    r = await post(client, alice, body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == RESPONSE_KEYS
    assert data["location"] == "https://meet.example.com/leo"
    assert data["customInputs"] == {"Company": "Acme", "Size": 12}
    assert data["responses"]["name"] == "Leo Legacy"
    assert data["responses"]["email"] == "leo@example.com"
    assert data["description"] == "legacy notes"
    assert [a["email"] for a in data["attendees"]] == ["leo@example.com", "friend@example.com"]
    assert data["attendees"][0]["timeZone"] == "America/New_York"
    row = await stored(app, data["id"])
    assert row.custom_inputs == {"Company": "Acme", "Size": 12}
    assert row.location == "https://meet.example.com/leo"


async def test_pipedream_legacy_body_books(app, client, alice):
    # Pipedream's "Create Booking" action: title, end, recurringCount, location "" and [] inputs.
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(
        app, alice.id, locations=[{"type": "inPerson", "address": "HQ, Floor 2"}]
    )
    body = {
        "eventTypeId": event_type,
        "start": "2026-12-01T10:00:00.000Z",
        "end": "2026-12-01T10:30:00.000Z",
        "name": "Pip Dream",
        "email": "pip@example.com",
        "location": "",
        "timeZone": "UTC",
        "language": "en",
        "metadata": {},
        "customInputs": [],
        "title": "Pipedream call",
        "recurringCount": 1,
    }
    r = await post(client, alice, body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["title"] == "Pipedream call"
    assert data["status"] == "ACCEPTED"
    # An empty location falls back to the event type's first location.
    assert data["location"] == "HQ, Floor 2"
    assert data["customInputs"] == {}
    row = await stored(app, data["id"])
    assert row.title == "Pipedream call"
    assert [a.email for a in row.attendees] == ["pip@example.com"]


async def test_seed_form_books(app, client, alice, meet):
    # seed-calcom-api-v1.md Appendix A: startTime/endTime/name/email/timeZone, nothing else.
    body = {
        "eventTypeId": meet,
        "startTime": "2026-12-01T15:00:00Z",
        "endTime": "2026-12-01T15:30:00Z",
        "name": "Andre Souza",
        "email": "andre@example.com",
        "timeZone": "America/Chicago",
    }
    r = await post(client, alice, body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == RESPONSE_KEYS
    assert data["startTime"] == "2026-12-01T15:00:00.000Z"
    assert data["endTime"] == "2026-12-01T15:30:00.000Z"
    assert data["metadata"] == {}
    assert data["attendees"][0] | {"id": 0} == {
        "id": 0,
        "email": "andre@example.com",
        "name": "Andre Souza",
        "timeZone": "America/Chicago",
        "locale": "en",
        "bookingId": data["id"],
        "phoneNumber": None,
        "noShow": False,
    }
    row = await stored(app, data["id"])
    assert row.start_time == DAY + timedelta(hours=15)
    assert row.status == BookingStatus.ACCEPTED


async def test_admin_books_anyones_event_type(app, client, bob, admin):
    await add_schedule(app, bob.id, "UTC")
    event_type = await add_event_type(app, bob.id)
    r = await post(client, admin, modern(event_type, at(10)))
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == bob.id
    assert r.json()["userPrimaryEmail"] == bob.email
    assert (await stored(app, r.json()["id"])).user_id == bob.id


# --- refusals -------------------------------------------------------------------------------------


def assert_refused(r, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["message"] == message
    assert isinstance(body["reason"], str) and body["reason"]


async def test_past_start_is_refused(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    # NOW is Monday 2026-01-05 12:00Z, inside working hours.
    r = await post(client, alice, modern(event_type, "2026-01-05T10:00:00Z"))
    assert_refused(r, 400, "Attempting to book a meeting in the past.")
    assert await booking_count(app) == 0


async def test_minimum_notice_is_out_of_bounds(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, minimum_booking_notice=120)
    r = await post(client, alice, modern(event_type, "2026-01-05T13:00:00Z"))
    assert_refused(r, 400, "booking_time_out_of_bounds_error")
    assert "notice" in r.json()["reason"]
    ok = await post(client, alice, modern(event_type, "2026-01-05T14:00:00Z"))
    assert ok.status_code == 200, ok.text
    assert await booking_count(app) == 1


@pytest.mark.parametrize(
    "window",
    [
        {"period_type": "ROLLING", "period_days": 30},
        {"period_type": "ROLLING_WINDOW", "period_days": 5},
        {
            "period_type": "RANGE",
            "period_start_date": datetime(2026, 2, 1, tzinfo=UTC),
            "period_end_date": datetime(2026, 2, 28, tzinfo=UTC),
        },
    ],
    ids=["rolling", "rolling-window", "range"],
)
async def test_outside_the_booking_window_is_out_of_bounds(app, client, alice, window):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, **window)
    r = await post(client, alice, modern(event_type, at(10)))
    assert_refused(r, 400, "booking_time_out_of_bounds_error")
    assert await booking_count(app) == 0


@pytest.mark.parametrize("end", ["10:45", "10:15", "11:00"])
async def test_wrong_length_is_refused(app, client, alice, meet, end):
    hour, minute = (int(p) for p in end.split(":"))
    r = await post(client, alice, modern(meet, at(10), end=at(hour, minute)))
    assert_refused(r, 400, "Invalid event length")
    assert "30" in r.json()["reason"]
    assert await booking_count(app) == 0


async def test_end_before_start_is_a_400_naming_end(app, client, alice, meet):
    r = await post(client, alice, modern(meet, at(10), end=at(9, 30)))
    assert r.status_code == 400
    assert "'end'" in r.json()["message"]


@pytest.mark.parametrize(
    "limits",
    [{"booking_limits": {"PER_DAY": 1}}, {"duration_limits": {"PER_DAY": 30}}],
    ids=["bookings", "duration"],
)
async def test_booking_and_duration_limits(app, client, alice, limits):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, **limits)
    first = await post(client, alice, modern(event_type, at(10)))
    assert first.status_code == 200, first.text
    r = await post(client, alice, modern(event_type, at(14), email="zed@example.com"))
    assert_refused(r, 409, "booking_limit_reached")
    # The next day is another period.
    nxt = await post(client, alice, modern(event_type, at(14, day=DAY + timedelta(days=1))))
    assert nxt.status_code == 200, nxt.text
    assert await booking_count(app) == 2


async def test_taken_outside_hours_and_off_grid_are_unavailable(app, client, alice, meet):
    first = await post(client, alice, modern(meet, at(10)))
    assert first.status_code == 200, first.text
    reasons = set()
    for start in (at(10), at(10, 15), at(20), at(9, 10), at(10, day=DAY + timedelta(days=4))):
        # 10:00 taken, 10:15 overlaps, 20:00 after hours, 09:10 off the grid, Saturday.
        r = await post(client, alice, modern(meet, start, email="other@example.com"))
        assert_refused(r, 409, "no_available_users_found_error")
        reasons.add(r.json()["reason"])
    assert len(reasons) == 3  # taken, outside working hours, off the grid
    assert await booking_count(app) == 1


async def test_busy_as_an_attendee_elsewhere_blocks(app, client, alice, bob, meet):
    await add_booking(
        app, bob.id, DAY + timedelta(hours=13), DAY + timedelta(hours=14), attendees=[alice.email]
    )
    r = await post(client, alice, modern(meet, at(13, 30)))
    assert_refused(r, 409, "no_available_users_found_error")


async def test_buffers_keep_bookings_apart(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, after_event_buffer=30)
    assert (await post(client, alice, modern(event_type, at(10)))).status_code == 200
    r = await post(client, alice, modern(event_type, at(10, 30), email="x@example.com"))
    assert_refused(r, 409, "no_available_users_found_error")
    ok = await post(client, alice, modern(event_type, at(11), email="x@example.com"))
    assert ok.status_code == 200, ok.text


async def test_seats_fill_then_refuse(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=2)
    one = await post(client, alice, modern(event_type, at(10), email="one@example.com"))
    assert one.status_code == 200, one.text
    two = await post(client, alice, modern(event_type, at(10), email="two@example.com"))
    assert two.status_code == 200, two.text
    # The second booker takes a seat in the same booking.
    assert two.json()["id"] == one.json()["id"]
    assert [a["email"] for a in two.json()["attendees"]] == ["one@example.com", "two@example.com"]
    again = await post(client, alice, modern(event_type, at(10), email="ONE@example.com"))
    assert_refused(again, 409, "booking_seats_full_error")
    three = await post(client, alice, modern(event_type, at(10), email="three@example.com"))
    assert_refused(three, 409, "booking_seats_full_error")
    assert await booking_count(app) == 1
    row = await stored(app, one.json()["id"])
    assert [a.email for a in row.attendees] == ["one@example.com", "two@example.com"]


async def test_same_attendee_twice_in_a_seated_slot(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=3)
    assert (await post(client, alice, modern(event_type, at(10)))).status_code == 200
    r = await post(client, alice, modern(event_type, at(10), email="ANN@example.com"))
    assert_refused(r, 409, "already_signed_up_for_this_booking_error")
    row = await stored(app, 1)
    assert len(row.attendees) == 1


async def test_seats_and_recurring_do_not_mix(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(
        app,
        alice.id,
        seats_per_time_slot=2,
        recurring_event={"freq": 2, "count": 3, "interval": 1},
    )
    r = await post(client, alice, modern(event_type, at(10)))
    assert r.status_code == 400
    assert r.json()["message"] == "recurring_event_seats_error"


@pytest.mark.parametrize("value", ["1", "abc", 1.5, True, None])
async def test_event_type_id_must_be_a_number(app, client, alice, meet, value):
    r = await post(client, alice, modern(meet, at(10)) | {"eventTypeId": value})
    assert r.status_code == 400
    assert r.json() == {"message": "Bad request, eventTypeId must be a number"}
    assert await booking_count(app) == 0


async def test_legacy_props_cannot_mix_with_responses(app, client, alice, meet):
    body = modern(meet, at(10)) | {"name": "Top Level", "email": "top@example.com"}
    r = await post(client, alice, body)
    assert r.status_code == 400
    assert r.json() == {"message": "Legacy Props: name, email. They can't be used with `responses`"}
    both = modern(meet, at(10)) | {"customInputs": [{"label": "a", "value": "b"}]}
    r = await post(client, alice, both)
    assert r.status_code == 400
    assert "customInputs" in r.json()["message"]
    assert await booking_count(app) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timeZone": None}, "invalid_type in 'timeZone': Required"),
        ({"timeZone": "Mars/Olympus"}, "'timeZone'"),
        ({"responses": {"name": "Ann", "email": "not-an-email"}}, "'responses,email'"),
        ({"responses": {"name": "Ann"}}, "'responses,email'"),
        ({"responses": {"email": "ann@example.com"}}, "'responses,name'"),
        ({"responses": {"name": "", "email": "ann@example.com"}}, "'responses,name'"),
        (
            {"responses": {"name": "A", "email": "a@example.com", "guests": ["nope"]}},
            "'responses,guests,0'",
        ),
        ({"start": None}, "invalid_type in 'start': Required"),
        ({"start": "next tuesday"}, "'start'"),
        ({"start": "2026-12-01T10:00:00"}, "'start'"),
        ({"end": "soon"}, "'end'"),
        ({"metadata": {"count": 3}}, "'metadata'"),
        # Out of the range of dates Bookable can compute with: a 400, not a 500.
        ({"start": "9999-12-31T23:45:00Z"}, "'start'"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "'start'"),
        ({"start": "0001-01-01T00:00:00Z"}, "'start'"),
        ({"end": "9999-12-31T23:59:00-05:00"}, "'end'"),
        # PostgreSQL cannot store NUL characters, wherever in the body they are.
        ({"responses": {"name": "A\x00", "email": "a@example.com"}}, "'responses,name'"),
        ({"responses": {"name": "A", "email": "a@example.com", "x": ["\x00"]}}, "'responses,x,0'"),
        ({"metadata": {"k": "v\x00"}}, "'metadata,k'"),
        ({"title": "T\x00"}, "'title'"),
        ({"start": "2026-12-01T10:00:00\x00Z"}, "'start'"),
        ({"rescheduleUid": "u\x00"}, "'rescheduleUid'"),
    ],
)
async def test_bad_fields_are_400s_naming_the_field(app, client, alice, meet, change, message):
    body = modern(meet, at(10))
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    r = await post(client, alice, body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert await booking_count(app) == 0


async def test_nul_in_legacy_custom_inputs_is_refused(app, client, alice, meet):
    body = {
        "eventTypeId": meet, "start": at(10), "timeZone": "UTC", "name": "Leo",
        "email": "leo@example.com", "customInputs": [{"label": "Company", "value": "A\x00"}],
    }  # fmt: skip
    r = await post(client, alice, body)
    assert r.status_code == 400
    assert "'customInputs,0,value'" in r.json()["message"]
    assert await booking_count(app) == 0


async def test_legacy_bad_email_names_the_field(app, client, alice, meet):
    body = {
        "eventTypeId": meet,
        "start": at(10),
        "timeZone": "UTC",
        "name": "Leo",
        "email": "leo-at-example",
        "customInputs": [],
    }
    r = await post(client, alice, body)
    assert r.status_code == 400
    assert r.json()["message"] == "invalid_string in 'email': Invalid email"


async def test_foreign_and_missing_event_types_are_not_found(app, client, alice, bob):
    await add_schedule(app, bob.id, "UTC")
    bobs = await add_event_type(app, bob.id)
    r = await post(client, alice, modern(bobs, at(10)))
    assert r.status_code == 404
    assert r.json() == {"message": f"Event type with id: {bobs} not found"}
    for missing in (99999, 2**31, 0, -1):
        r = await post(client, alice, modern(missing, at(10)))
        assert r.status_code == 404, r.text
    assert await booking_count(app) == 0


async def test_user_id_is_for_admins(app, client, alice, bob, meet):
    r = await post(client, alice, modern(meet, at(10)) | {"userId": bob.id})
    assert r.status_code == 403
    assert await booking_count(app) == 0
    # Naming oneself is harmless.
    r = await post(client, alice, modern(meet, at(10)) | {"userId": alice.id})
    assert r.status_code == 200, r.text


async def test_no_key_is_401(client):
    r = await client.post("/v1/bookings", json={"eventTypeId": 1, "start": at(10)})
    assert r.status_code == 401
    assert r.json() == {"message": "No apiKey provided"}


async def test_unknown_keys_are_dropped(app, client, alice, meet):
    r = await post(client, alice, modern(meet, at(10)) | {"utm": "x", "hasHashedBookingLink": 0})
    assert r.status_code == 200, r.text


# --- confirmation and payment flags at creation ---------------------------------------------------


async def test_requires_confirmation_books_pending(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    r = await post(client, alice, modern(event_type, at(10)))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PENDING"
    assert (await stored(app, r.json()["id"])).status == BookingStatus.PENDING
    # A pending booking does not block the slot by default.
    other = await post(client, alice, modern(event_type, at(10), email="zed@example.com"))
    assert other.status_code == 200, other.text


async def test_confirmation_threshold_accepts_bookings_far_ahead(app, client, alice):
    await add_schedule(app, alice.id, "UTC", [([0, 1, 2, 3, 4, 5, 6], time(9), time(17))])
    event_type = await add_event_type(
        app,
        alice.id,
        requires_confirmation=True,
        meta={"requiresConfirmationThreshold": {"time": 2, "unit": "hours"}},
    )
    soon = await post(client, alice, modern(event_type, "2026-01-05T13:00:00Z"))
    assert soon.json()["status"] == "PENDING", soon.text
    later = await post(client, alice, modern(event_type, at(10)))
    assert later.json()["status"] == "ACCEPTED", later.text


async def test_pending_blocks_the_slot_when_asked(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(
        app,
        alice.id,
        requires_confirmation=True,
        meta={"requiresConfirmationWillBlockSlot": True},
    )
    assert (await post(client, alice, modern(event_type, at(10)))).status_code == 200
    r = await post(client, alice, modern(event_type, at(10), email="zed@example.com"))
    assert_refused(r, 409, "no_available_users_found_error")


async def test_priced_event_type_requires_payment(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, price=2500, currency="eur")
    r = await post(client, alice, modern(event_type, at(10)))
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == RESPONSE_KEYS | {"message", "paymentUid", "paymentId"}
    assert data["status"] == "PENDING"
    assert data["paid"] is False
    assert data["paymentRequired"] is True
    assert data["message"] == "Payment required"
    (payment,) = data["payment"]
    assert payment == {
        "id": data["paymentId"],
        "uid": data["paymentUid"],
        "amount": 2500,
        "currency": "eur",
        "success": False,
        "refunded": False,
        "fee": 0,
        "paymentOption": "ON_BOOKING",
        "bookingId": data["id"],
    }
    async with app.state.sessions() as session:
        row = await session.get(Payment, data["paymentId"])
        assert row is not None
        assert (row.uid, row.amount, row.currency, row.success) == (
            data["paymentUid"],
            2500,
            "eur",
            False,
        )
        assert row.booking_id == data["id"]
    assert (await stored(app, data["id"])).status == BookingStatus.PENDING


async def test_a_new_booking_is_announced_without_reading_it_back(make_settings, alice, meet):
    """Its webhook, calendar and email outbox rows are planned from what the request holds:
    once the booking is inserted, no query reads its attendees, hosts, event type or calendar
    events again, and its emails are one INSERT. No savepoint; the day locks are taken once; no
    calendar reader query when no host selected a calendar."""
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW, emails="on", webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as http:
        with recorded_round_trips(application) as statements:
            r = await post(http, alice, modern(meet, at(10)))
    assert r.status_code == 200, r.text
    # PostgreSQL: the booking and its attendees in one statement (WITH ... INSERT INTO bookings).
    inserted = next(i for i, s in enumerate(statements) if "INSERT INTO bookings" in s)
    read_back = [
        s
        for s in statements[inserted:]
        for table in ("attendees", "booking_hosts", "event_types", "users", "calendar_events")
        if s.startswith("SELECT") and f" FROM {table} " in f"{s} "
    ]
    assert read_back == []
    # PostgreSQL: WITH written AS (INSERT INTO outbound_emails ...) SELECT pg_notify(...).
    assert sum("INSERT INTO outbound_emails" in s for s in statements) == 1
    assert not [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert sum("pg_advisory_xact_lock" in s for s in statements) <= 1
    # No host selected a calendar: the event type query said so, nothing else asks.
    assert not [s for s in statements if "FROM selected_calendars JOIN" in s]


async def test_a_booking_is_three_statements_on_postgresql_six_on_sqlite(
    make_settings, alice, meet
):
    """The round trips of a booking of a personal event type nobody selected a calendar for
    (the key cache warm; COMMIT not counted): BEGIN IMMEDIATE (SQLite), its event type query
    (with the owner, the flags, the owner's schedules and, on PostgreSQL, the owner's day
    locks), the busy bookings, the booking with its attendee and (PostgreSQL) its emails and
    the NOTIFY in one statement (SQLite: the booking, its attendee, its emails). No preflight,
    no second event type query, no schedule query, no NOTIFY of its own (9 statements on both
    before issue 15's round 4; the locks were a statement of their own until round 6, the
    emails until round 7)."""
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW, emails="on", webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as http:
        warm = await post(http, alice, modern(meet, at(9)))
        assert warm.status_code == 200, warm.text
        with recorded_round_trips(application) as statements:
            r = await post(http, alice, modern(meet, at(10)))
    assert r.status_code == 200, r.text
    postgres = application.state.engine.dialect.name == "postgresql"
    assert len(statements) == (3 if postgres else 6), "\n".join(s[:80] for s in statements)
    if postgres:
        assert "pg_advisory_xact_lock" in statements[0]
        assert "INSERT INTO outbound_emails" in statements[2]
        assert "pg_notify" in statements[2]
    assert not [s for s in statements if s.startswith("SELECT pg_notify")]
    assert sum(" FROM event_types" in s for s in statements) == 1
    assert not [s for s in statements if s.startswith("SELECT schedules.")]


async def email_rows(app, booking_id: int) -> list[dict[str, Any]]:
    """Every column of the booking's email rows but the id, the facts as their stored text."""
    from sqlalchemy import Text, cast

    from bookable.models import OutboundEmail

    table = OutboundEmail.__table__
    columns = [
        cast(c, Text).label(c.key) if c.key == "facts" else c for c in table.c if c.key != "id"
    ]
    async with app.state.sessions() as session:
        rows = await session.execute(
            select(*columns).where(table.c.booking_id == booking_id).order_by(table.c.id)
        )
        return [dict(row._mapping) for row in rows]


async def test_emails_written_with_the_booking_are_those_mail_booking_change_writes(
    make_settings, alice, meet
):
    """PostgreSQL writes a new booking's email rows in the booking's own statement, planned
    before its id exists (`outbox.new_booking_emails`): every column, the facts' JSON text
    byte for byte, is what `mail_booking_change` writes for the inserted booking (the change's
    random token aside). With a guest, notes, another answer, names outside ASCII (escaped in
    the JSON) and the host's hourly limit reached (the last row DROPPED)."""
    from sqlalchemy import update

    from bookable.app import create_app
    from bookable.models import OutboundEmail
    from bookable.notifications.outbox import Change, mail_booking_change

    application = create_app(
        make_settings(
            clock=NOW, emails="on", webhook_dispatcher="off", email_max_per_host_per_hour=2
        )
    )
    async with application.router.lifespan_context(application), client_for(application) as http:
        body = modern(meet, at(10))
        body["responses"] = {
            "name": "Zoë Bökér",
            "email": "zoe@example.com",
            "guests": ["gus@example.com"],
            "notes": "Bring the plans ✓",
            "topic": "Ünïcode",
        }
        r = await post(http, alice, body)
        assert r.status_code == 200, r.text
        booking_id = r.json()["id"]
        written = await email_rows(application, booking_id)
        async with application.state.sessions() as session, session.begin():
            # Out of the hour's count, so that the rows below meet the same limit.
            await session.execute(update(OutboundEmail).values(status="DROPPED"))
            booking = await session.get(Booking, booking_id)
            assert booking is not None
            policy = application.state.mail_policy
            await mail_booking_change(session, policy, Change.CREATED, booking)
        again = (await email_rows(application, booking_id))[len(written) :]

    def token(rows: list[dict[str, Any]]) -> str:
        return str(rows[0]["message_id"]).partition("@")[0].split(".")[-2]  # uid.kind.TOKEN.n

    def untokened(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        mark = token(rows)
        return [
            {k: v.replace(mark, "TOKEN") if isinstance(v, str) else v for k, v in row.items()}
            for row in rows
        ]

    assert [(row["kind"], row["recipient"], row["status"]) for row in written] == [
        ("attendee.confirmed", "zoe@example.com", "PENDING"),
        ("attendee.confirmed", "gus@example.com", "PENDING"),
        ("host.new", "alice@example.com", "DROPPED"),
    ]
    assert token(written) != token(again)
    assert untokened(written) == untokened(again)
    assert f'"booking_id": {booking_id},' in written[0]["facts"]
    assert "\\u00eb" in written[0]["facts"]  # ë, as json.dumps escapes it


async def test_nobody_to_tell_costs_no_query_and_a_new_webhook_is_told(make_settings, alice, meet):
    """A booking of a personal event type whose owner has no webhook and no destination
    calendar asks for neither, and counts the owner's emails of the hour within the event type
    query (`create._event_type_and_owner_statement`). Once a webhook of the event type exists,
    the next booking is announced to it."""
    from bookable.app import create_app
    from bookable.models import WebhookEvent

    application = create_app(make_settings(clock=NOW, emails="on", webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as http:
        with recorded_round_trips(application) as statements:
            first = await post(http, alice, modern(meet, at(10)))
        assert first.status_code == 200, first.text
        asked = [
            s
            for s in statements
            if s.startswith(
                ("SELECT webhooks.", "SELECT destination_calendars.", "SELECT count(outbound_")
            )
        ]
        assert asked == []
        hook = await http.post(
            "/v1/webhooks",
            params=alice.params,
            json={
                "subscriberUrl": "https://hooks.example.com/cal",
                "eventTriggers": ["BOOKING_CREATED"],
                "eventTypeId": meet,
            },
        )
        assert hook.status_code == 200, hook.text
        second = await post(http, alice, modern(meet, at(11)))
        assert second.status_code == 200, second.text
        async with application.state.sessions() as session:
            triggers = list(
                await session.scalars(
                    select(WebhookEvent.trigger).where(
                        WebhookEvent.booking_id.in_([first.json()["id"], second.json()["id"]])
                    )
                )
            )
        assert triggers == ["BOOKING_CREATED"]


async def test_the_answer_is_written_as_the_wire_models_dump_it(app, client, alice, meet):
    """`booking_row_json` and `full_attendee_json` write what `BookingRow` and
    `FullAttendeeOut` dump (keys in the same order), for bookings of every body form, one
    rescheduled (cancelled, `rescheduled` set, `updatedAt` set) and its successor."""
    from bookable.bookings.endpoints import booking_row_json, full_attendee_json
    from bookable.bookings.schemas import BookingRow, FullAttendeeOut

    legacy = {
        "eventTypeId": meet, "start": at(12), "timeZone": "America/New_York", "language": "en",
        "metadata": {"source": "crm", "n": "1.5"}, "name": "Leo",
        "email": "leo@example.com", "guests": ["friend@example.com"], "notes": "n\u00f6tes",
        "customInputs": [{"label": "Company", "value": "Acme"}, {"label": "Size", "value": 12}],
    }  # fmt: skip
    seed = {
        "eventTypeId": meet, "startTime": at(15), "endTime": at(15, 30), "name": "Andre",
        "email": "andre@example.com", "timeZone": "America/Chicago",
    }  # fmt: skip
    made = []
    with_guest = modern(meet, at(10))
    with_guest["responses"]["guests"] = ["g@example.com"]
    for body in (with_guest, legacy, seed):
        r = await post(client, alice, body)
        assert r.status_code == 200, r.text
        made.append(r.json())
    moved = await post(client, alice, modern(meet, at(16), rescheduleUid=made[0]["uid"]))
    assert moved.status_code == 200, moved.text
    ids = [m["id"] for m in made] + [moved.json()["id"]]
    for booking_id in ids:
        booking = await stored(app, booking_id)
        model = BookingRow.model_validate(booking).model_dump(mode="json", by_alias=True)
        assert list(booking_row_json(booking).items()) == list(model.items())
        for attendee in booking.attendees:
            model = FullAttendeeOut.model_validate(attendee).model_dump(mode="json", by_alias=True)
            assert list(full_attendee_json(attendee).items()) == list(model.items())
    first = await stored(app, ids[0])
    assert first.status == BookingStatus.CANCELLED and first.rescheduled
    assert first.updated_at is not None


async def test_a_new_bookings_answer_and_outbox_rows_are_those_its_stored_row_gives(
    make_settings, alice, meet
):
    """A new booking is answered, announced and mailed from its values in hand
    (`common.NewBooking`: no ORM object is built or read back). Each must be what the stored
    row gives: the answer is `created_json` of the row, each webhook body (BOOKING_CREATED,
    MEETING_*) is byte for byte the one rendered from the row (`load_facts`), each email's facts
    and subject those `notifications.outbox` makes of the row; for bodies of every form, with
    guests, notes, a location, custom inputs, metadata and a phone number."""
    from bookable.app import create_app
    from bookable.bookings.create import Created
    from bookable.bookings.endpoints import created_json
    from bookable.models import OutboundEmail, User, WebhookEvent
    from bookable.notifications.messages import MailKind, Party, mail_facts, subject_for
    from bookable.notifications.outbox import _facts
    from bookable.webhooks.payloads import (
        booking_payload,
        envelope,
        js_json,
        load_facts,
        meeting_body,
    )
    from bookable.webhooks.triggers import WebhookTrigger

    application = create_app(make_settings(clock=NOW, emails="on", webhook_dispatcher="off"))
    async with application.router.lifespan_context(application), client_for(application) as http:
        hook = await http.post(
            "/v1/webhooks",
            params=alice.params,
            json={
                "subscriberUrl": "https://hooks.example.com/cal",
                "eventTriggers": ["BOOKING_CREATED", "MEETING_STARTED", "MEETING_ENDED"],
                "eventTypeId": meet,
            },
        )
        assert hook.status_code == 200, hook.text
        with_extras = modern(
            meet, at(10), metadata={"source": "crm"}, title=None, description="about it"
        )
        with_extras["responses"].update(
            {
                "guests": ["g@example.com", "h@example.com"],
                "notes": "Bring the contract",
                "location": {"value": "inPerson", "optionValue": "Room 4"},
                "attendeePhoneNumber": "+4915112345678",
                "company": "Acme",
            }
        )
        legacy = {
            "eventTypeId": meet, "start": at(12), "timeZone": "America/New_York",
            "language": "fr", "name": "Leo", "email": "leo@example.com",
            "guests": ["friend@example.com"], "notes": "n\u00f6tes",
            "customInputs": [{"label": "Company", "value": "Acme"}],
        }  # fmt: skip
        seed = {
            "eventTypeId": meet, "startTime": at(15), "endTime": at(15, 30), "name": "Andre",
            "email": "andre@example.com", "timeZone": "America/Chicago",
        }  # fmt: skip
        for body in (with_extras, legacy, seed):
            response = await post(http, alice, body)
            assert response.status_code == 200, response.text
            answer = response.json()
            row = await stored(application, answer["id"])
            async with application.state.sessions() as session:
                host = await session.get(User, alice.id)
                assert host is not None
                assert created_json(Created(row, host, None, None, joined_seat=False)) == answer

                facts = await load_facts(session, row)
                events = list(
                    await session.scalars(
                        select(WebhookEvent)
                        .where(WebhookEvent.booking_id == row.id)
                        .order_by(WebhookEvent.id)
                    )
                )
                assert [e.trigger for e in events] == [
                    "BOOKING_CREATED", "MEETING_STARTED", "MEETING_ENDED"
                ]  # fmt: skip
                created, *meetings = events
                assert created.body == js_json(
                    envelope(
                        WebhookTrigger.BOOKING_CREATED,
                        created.created_at,
                        booking_payload(WebhookTrigger.BOOKING_CREATED, facts),
                    )
                )
                for event in meetings:
                    assert event.body == js_json(meeting_body(WebhookTrigger(event.trigger), facts))

                mail, _hosts, _attendees = await _facts(session, row, [alice.id], None, None, None)
                emails = list(
                    await session.scalars(
                        select(OutboundEmail)
                        .where(OutboundEmail.booking_id == row.id)
                        .order_by(OutboundEmail.id)
                    )
                )
                assert len(emails) == len(row.attendees) + 1
                for email in emails:
                    assert email.facts["mail"] == mail_facts(mail)
                    party = Party(*email.facts["recipient"])
                    assert email.subject == subject_for(mail, MailKind(email.kind), party)


async def test_the_bookings_insert_reaches_the_driver_as_sqlalchemy_would_send_it(
    make_settings, alice, meet, monkeypatch
):
    """PostgreSQL runs a new booking's INSERT (with its attendees and emails) through
    `exec_driver_sql` with its parameters processed once (`writes._driver_insert`): the driver
    must receive the SQL and the values, type for type, that SQLAlchemy's own execution of the
    statement sends with the same parameters (JSON as text, instants in UTC, statuses, arrays
    of attendees and emails), for bodies of every form and with emails on and off."""
    from sqlalchemy import event
    from sqlalchemy.exc import IntegrityError

    from bookable.app import create_app
    from bookable.bookings import writes

    sent: list[tuple[str, tuple[Any, ...]]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().startswith("WITH new_booking"):
            sent.append((statement, tuple(parameters)))

    shapes: list[tuple[tuple[str, ...], bool, dict[str, Any]]] = []
    driver_insert = writes._driver_insert

    class Recorded:
        def __init__(self, email_columns: tuple[str, ...], notify: bool, dialect: Any) -> None:
            self.shape = (email_columns, notify)
            self.statement = driver_insert(email_columns, notify, dialect)
            self.sql = self.statement.sql

        def arguments(self, values: dict[str, Any]) -> list[Any]:
            shapes.append((*self.shape, dict(values)))
            return self.statement.arguments(values)

    monkeypatch.setattr(writes, "_driver_insert", Recorded)
    legacy = {
        "eventTypeId": meet, "start": at(12), "timeZone": "America/New_York", "language": "fr",
        "name": "Leo", "email": "leo@example.com", "guests": ["friend@example.com"],
        "notes": "n\u00f6tes", "customInputs": [{"label": "Company", "value": "Acme"}],
    }  # fmt: skip
    with_extras = modern(meet, at(10), metadata={"source": "crm"}, description="about it")
    with_extras["responses"].update(
        {
            "guests": ["g@example.com"], "attendeePhoneNumber": "+4915112345678",
            "location": {"value": "inPerson", "optionValue": "Room 4"}, "company": "Acme",
        }
    )  # fmt: skip
    for emails, bodies in (("on", [with_extras, legacy]), ("off", [modern(meet, at(14))])):
        application = create_app(make_settings(clock=NOW, emails=emails, webhook_dispatcher="off"))
        async with application.router.lifespan_context(application):
            if application.state.engine.dialect.name != "postgresql":
                pytest.skip("the booking's INSERT goes through the driver on PostgreSQL only")
            engine = application.state.engine
            event.listen(engine.sync_engine, "before_cursor_execute", record)
            try:
                async with client_for(application) as http:
                    for body in bodies:
                        response = await post(http, alice, body)
                        assert response.status_code == 200, response.text
                # SQLAlchemy's own execution of each statement with the same parameters (it
                # fails on the booking's uid, taken already: what was sent is recorded first).
                driven = len(sent)
                for email_columns, notify, values in shapes[-len(bodies) :]:
                    statement = writes._insert_booking_and_attendees(email_columns, notify=notify)
                    async with engine.connect() as conn:
                        with pytest.raises(IntegrityError):
                            await conn.execute(statement, values)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", record)
        by_driver, by_sqlalchemy = sent[driven - len(bodies) : driven], sent[driven:]
        assert len(by_driver) == len(by_sqlalchemy) == len(bodies)
        for (sql, driver_values), (expected_sql, expected_values) in zip(
            by_driver, by_sqlalchemy, strict=True
        ):
            assert sql == expected_sql
            assert driver_values == expected_values
            assert [type(v) for v in driver_values] == [type(v) for v in expected_values]
    email_shapes = [(columns, notify) for columns, notify, _values in shapes]
    assert email_shapes[0][0] and email_shapes[1][0] and not email_shapes[2][0]


async def test_the_booking_reads_by_the_driver_give_what_sqlalchemy_gives(app, client, alice, meet):
    """POST /bookings' event type query and busy read run by the driver
    (`core.db.fetch_in_transaction`: aiosqlite's `execute_fetchall` on SQLite; asyncpg once the
    transaction has begun on PostgreSQL): for every shape of both, the rows, value for value and
    type for type (enums, JSON, times, flags, instants in UTC), are those SQLAlchemy's own
    execution of the statement gives."""
    from bookable.bookings.create import _event_type_and_owner_statement
    from bookable.bookings.locks import event_type_lock_params
    from bookable.core.db import fetch_in_transaction
    from bookable.slots.service import _busy_statement, busy_span_params

    booked = []
    for hour, email in ((9, "ann@example.com"), (10, "alice@example.com")):
        response = await post(client, alice, modern(meet, at(hour), email=email))
        assert response.status_code == 200, response.text
        booked.append(response.json()["uid"])
    start = datetime.fromisoformat(at(11).replace("Z", "+00:00"))
    postgres = app.state.engine.dialect.name == "postgresql"

    def typed(rows: Any) -> list[list[tuple[type, Any]]]:
        return [[(type(value), value) for value in row] for row in rows]

    shapes: list[tuple[Any, dict[str, Any]]] = []
    for admin in (False, True):
        for counted in (False, True):
            for lock in (False, True) if postgres else (False,):
                params: dict[str, Any] = {"event_type_id": meet}
                if not admin:
                    params["caller_id"] = alice.id
                if counted:
                    params["emails_since"] = NOW - timedelta(hours=1)
                if lock:
                    params.update(event_type_lock_params(start, None))
                statement = _event_type_and_owner_statement(
                    admin=admin, count_emails=counted, lock=lock
                )
                shapes.append((statement, params))
    for pending in (False, True):
        for ignoring in (False, True):
            for identified in (False, True):
                params = {
                    "host_id": alice.id,
                    "host_email": "alice@example.com",
                    **busy_span_params(DAY, DAY + timedelta(days=1)),
                }
                if pending:
                    params["event_type_id"] = meet
                if ignoring:
                    params["ignore_uid"] = booked[0]
                statement = _busy_statement(
                    pending_blocks=pending, ignoring=ignoring, identified=identified
                )
                shapes.append((statement, params))
    for statement, params in shapes:
        async with app.state.sessions() as session:
            connection = await session.connection()
            # First by the driver: on PostgreSQL the transaction's first statement, which
            # SQLAlchemy's adapter begins it with; then once it has begun (asyncpg's own).
            first = await fetch_in_transaction(connection, statement, params)
            expected = (await connection.execute(statement, params)).all()
            again = await fetch_in_transaction(connection, statement, params)
            await session.rollback()
        assert expected, statement
        assert typed(first) == typed(again) == typed(expected), statement


async def test_the_busy_read_of_a_booking_is_planned_generically(
    app, client, alice, meet, database_url
):
    """PostgreSQL plans a prepared statement for its parameters in its first five runs on a
    connection, then keeps the generic plan unless it looks dearer; where one host holds most
    bookings (the bench: 20,000 of another host) the busy read planned for any other host
    always looked cheaper, so it was planned on every booking, with a co-host branch reading
    the span's bookings of everyone (bench/README.md, round 14). The booking's transaction
    plans generically (`GENERIC_PLANS_COLUMN`): the connection's busy read has generic plans
    only (without the column: 5 custom plans first, and with the skew every one), and the
    setting ends with the transaction. (No skewed table is built here: its ANALYZE would stay
    with this worker's database and change the plans `test_query_plans.py` pins.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's plan cache")
    from sqlalchemy import text

    for hour in range(9, 17):  # sequential: the pool hands out its last connection (LIFO)
        r = await post(client, alice, modern(meet, at(hour), email=f"guest{hour}@example.com"))
        assert r.status_code == 200, r.text
    async with app.state.sessions() as session:
        plans = (
            await session.execute(
                text(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement LIKE 'SELECT bookings.start_time, bookings.end_time, %'"
                )
            )
        ).all()
        setting = await session.scalar(text("SELECT current_setting('plan_cache_mode')"))
    assert plans, "the busy read was prepared on another connection"
    assert sum(custom for _generic, custom in plans) == 0, plans
    assert sum(generic for generic, _custom in plans) >= 8, plans
    assert setting == "auto"
