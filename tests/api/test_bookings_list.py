"""GET /v1/bookings filters, ordering, pagination, expand; who may use which booking route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bookable.models import Booking, BookingStatus

from .scheduling_seed import add_booking, add_event_type, add_schedule

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 1, tzinfo=UTC)

READ_KEYS = {
    "id", "userId", "description", "eventTypeId", "uid", "title", "startTime", "endTime",
    "metadata", "status", "responses", "fromReschedule", "cancelledBy", "rescheduledBy",
    "createdAt", "location", "paid", "cancellationReason", "rejectionReason", "recurringEventId",
    "updatedAt", "attendees", "user", "payment",
}  # fmt: skip


@pytest.fixture
async def app(make_settings):
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def carol(make_account):
    return await make_account("carol")


async def seed(app, host_id: int, hour: int, *, day: datetime = DAY, event_type_id=None,
               attendees=None, status=BookingStatus.ACCEPTED) -> int:  # fmt: skip
    uid = await add_booking(
        app, host_id, day + timedelta(hours=hour), day + timedelta(hours=hour, minutes=30),
        event_type_id=event_type_id, attendees=attendees, status=status,
    )  # fmt: skip
    async with app.state.sessions() as session:
        booking_id = await session.scalar(select(Booking.id).where(Booking.uid == uid))
        assert booking_id is not None
        return booking_id


async def listed(client, account, **params) -> list[int]:
    r = await client.get("/v1/bookings", params={**account.params, **params})
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["bookings"]
    return [b["id"] for b in r.json()["bookings"]]


async def status_of(app, booking_id: int) -> BookingStatus:
    async with app.state.sessions() as session:
        booking = await session.get(Booking, booking_id)
        assert booking is not None
        return booking.status


# --- the list -------------------------------------------------------------------------------------


async def test_read_shape(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    r = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": event_type, "start": "2026-12-01T10:00:00Z", "timeZone": "Asia/Kolkata",
            "language": "fr", "metadata": {"k": "v"},
            "responses": {"name": "Ann", "email": "ann@example.com"},
        },
    )  # fmt: skip
    assert r.status_code == 200, r.text
    created = r.json()
    r = await client.get("/v1/bookings", params=alice.params)
    (item,) = r.json()["bookings"]
    assert set(item) == READ_KEYS
    assert item == {
        "id": created["id"],
        "userId": alice.id,
        "description": None,
        "eventTypeId": event_type,
        "uid": created["uid"],
        "title": "Meet between alice and Ann",
        "startTime": "2026-12-01T10:00:00.000Z",
        "endTime": "2026-12-01T10:30:00.000Z",
        "metadata": {"k": "v"},
        "status": "ACCEPTED",
        "responses": {"name": "Ann", "email": "ann@example.com"},
        "fromReschedule": None,
        "cancelledBy": None,
        "rescheduledBy": None,
        "createdAt": "2026-01-05T12:00:00.000Z",
        "location": "",
        "paid": False,
        "cancellationReason": None,
        "rejectionReason": None,
        "recurringEventId": None,
        "updatedAt": None,
        "attendees": [
            {
                "id": created["attendees"][0]["id"],
                "email": "ann@example.com",
                "name": "Ann",
                "timeZone": "Asia/Kolkata",
                "locale": "fr",
            }
        ],
        # Unlike POST's answer, reads show the organizer's email.
        "user": {"email": alice.email, "name": None, "timeZone": "Europe/London", "locale": None},
        "payment": [],
    }
    single = await client.get(f"/v1/bookings/{created['id']}", params=alice.params)
    assert single.status_code == 200
    assert single.json() == {"booking": item}
    by_uid = await client.get(f"/v1/bookings/{created['uid']}", params=alice.params)
    assert by_uid.json() == {"booking": item}


async def test_a_user_lists_only_what_they_host(app, client, alice, bob, carol, admin):
    a1 = await seed(app, alice.id, 10)
    a2 = await seed(app, alice.id, 11, attendees=[bob.email])
    b1 = await seed(app, bob.id, 12, attendees=[alice.email])
    assert await listed(client, alice) == [a1, a2]
    # Bob attends a2 but does not host it; alice attends b1.
    assert await listed(client, bob) == [b1]
    assert await listed(client, carol) == []
    assert await listed(client, admin) == [a1, a2, b1]


async def test_user_id_filter_is_for_admins(app, client, alice, bob, carol, admin):
    a1 = await seed(app, alice.id, 10)
    a2 = await seed(app, alice.id, 11, attendees=[bob.email.upper()])
    b1 = await seed(app, bob.id, 12)
    c1 = await seed(app, carol.id, 13)
    # A plain user's userId is ignored.
    assert await listed(client, alice, userId=bob.id) == [a1, a2]
    # An admin gets the user's bookings as host and as attendee.
    assert await listed(client, admin, userId=bob.id) == [a2, b1]
    assert await listed(client, admin, userId=[alice.id, carol.id]) == [a1, a2, c1]
    assert await listed(client, admin, userId=99999) == []
    r = await client.get("/v1/bookings", params={**admin.params, "userId": "me"})
    assert r.status_code == 400
    assert "in 'userId" in r.json()["message"]


async def test_attendee_email_filter(app, client, alice, admin):
    a1 = await seed(app, alice.id, 10, attendees=["x@example.com", "y@example.com"])
    a2 = await seed(app, alice.id, 11, attendees=["Y@Example.com"])
    await seed(app, alice.id, 12, attendees=["z@example.com"])
    assert await listed(client, alice, attendeeEmail="x@example.com") == [a1]
    assert await listed(client, alice, attendeeEmail="y@EXAMPLE.com") == [a1, a2]
    assert await listed(client, alice, attendeeEmail=["x@example.com", "Y@example.com"]) == [
        a1,
        a2,
    ]
    assert await listed(client, alice, attendeeEmail="nobody@example.com") == []
    r = await client.get("/v1/bookings", params={**alice.params, "attendeeEmail": "not-email"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("invalid_string in 'attendeeEmail'")


async def test_attendee_email_is_combined_with_ownership(app, client, alice, bob):
    await seed(app, bob.id, 10, attendees=["x@example.com"])
    assert await listed(client, alice, attendeeEmail="x@example.com") == []


async def test_date_range(app, client, alice):
    early = await seed(app, alice.id, 9)
    mid = await seed(app, alice.id, 12)
    late = await seed(app, alice.id, 10, day=DAY + timedelta(days=1))
    assert await listed(client, alice, dateFrom="2026-12-01T12:00:00Z") == [mid, late]
    assert await listed(client, alice, dateTo="2026-12-01T12:30:00Z") == [early, mid]
    assert await listed(client, alice, dateTo="2026-12-01T12:29:00Z") == [early]
    assert await listed(client, alice, dateFrom="2026-12-02") == [late]
    assert await listed(
        client, alice, dateFrom="2026-12-01T09:30:00Z", dateTo="2026-12-02T00:00:00Z"
    ) == [mid]
    for field in ("dateFrom", "dateTo"):
        for value in ("yesterday", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"):
            r = await client.get("/v1/bookings", params={**alice.params, field: value})
            assert r.status_code == 400, r.text
            assert r.json() == {"message": f"custom in '{field}': Invalid ISO Date"}


async def test_status_upcoming(app, client, alice):
    past = await seed(app, alice.id, 9, day=NOW - timedelta(days=3, hours=12))
    ongoing = await seed(app, alice.id, 11, day=NOW - timedelta(hours=12))  # 11:00-11:30 today
    future = await seed(app, alice.id, 10)
    assert await listed(client, alice) == [past, ongoing, future]
    assert await listed(client, alice, status="upcoming") == [future]
    # `upcoming` replaces dateFrom.
    assert await listed(client, alice, status="upcoming", dateFrom="2026-12-15") == [future]
    r = await client.get("/v1/bookings", params={**alice.params, "status": "ACCEPTED"})
    assert r.status_code == 400
    assert "'status'" in r.json()["message"]


async def _stamp(app, booking_id: int, **values) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(Booking).where(Booking.id == booking_id).values(**values))


async def test_sort_by_created_at(app, client, alice):
    first = await seed(app, alice.id, 10)
    second = await seed(app, alice.id, 11)
    third = await seed(app, alice.id, 12)
    for booking_id, created in ((first, 3), (second, 1), (third, 2)):
        await _stamp(app, booking_id, created_at=datetime(2025, 1, created, tzinfo=UTC))
    assert await listed(client, alice, sortBy="createdAt") == [second, third, first]
    assert await listed(client, alice, sortBy="createdAt", order="asc") == [second, third, first]
    assert await listed(client, alice, sortBy="createdAt", order="desc") == [first, third, second]
    # Without sortBy: by start time.
    assert await listed(client, alice) == [first, second, third]
    assert await listed(client, alice, order="desc") == [third, second, first]


async def test_sort_by_updated_at_puts_never_updated_last(app, client, alice):
    never = await seed(app, alice.id, 9)
    first = await seed(app, alice.id, 10)
    second = await seed(app, alice.id, 11)
    await _stamp(app, first, updated_at=datetime(2025, 3, 2, tzinfo=UTC))
    await _stamp(app, second, updated_at=datetime(2025, 3, 1, tzinfo=UTC))
    # As PostgreSQL orders NULLs (and so Cal.com): last ascending, first descending.
    assert await listed(client, alice, sortBy="updatedAt") == [second, first, never]
    assert await listed(client, alice, sortBy="updatedAt", order="desc") == [never, first, second]


async def test_a_patch_moves_a_booking_in_updated_at_order(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    a = await seed(app, alice.id, 10)
    b = await seed(app, alice.id, 11)
    await _stamp(app, a, updated_at=datetime(2025, 3, 1, tzinfo=UTC))
    await _stamp(app, b, updated_at=datetime(2025, 3, 2, tzinfo=UTC))
    r = await client.patch(f"/v1/bookings/{a}", params=alice.params, json={"title": "T"})
    assert r.status_code == 200, r.text
    # NOW (2026-01-05) is after both stamps.
    assert await listed(client, alice, sortBy="updatedAt") == [b, a]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sortBy": "startTime"}, "sortBy"),
        ({"order": "up"}, "order"),
        ({"expand": "users"}, "expand"),
        ({"take": 0, "page": 1}, "take"),
        ({"take": 1, "page": 0}, "page"),
        ({"take": "x", "page": 1}, "take"),
    ],
)
async def test_bad_list_parameters(app, client, alice, params, field):
    r = await client.get("/v1/bookings", params={**alice.params, **params})
    assert r.status_code == 400, r.text
    assert f"in '{field}" in r.json()["message"]


async def test_expand_team(app, client, alice):
    event_type = await add_event_type(app, alice.id, slug="intro", title="Intro call")
    with_type = await seed(app, alice.id, 10, event_type_id=event_type)
    without = await seed(app, alice.id, 11)
    r = await client.get("/v1/bookings", params={**alice.params, "expand": "team"})
    by_id = {b["id"]: b for b in r.json()["bookings"]}
    assert by_id[with_type]["eventType"] == {"title": "Intro call", "slug": "intro", "team": None}
    assert by_id[without]["eventType"] is None
    r = await client.get("/v1/bookings", params=alice.params)
    assert all("eventType" not in b for b in r.json()["bookings"])
    item = await client.get(f"/v1/bookings/{with_type}", params={**alice.params, "expand": "team"})
    assert item.json()["booking"]["eventType"]["slug"] == "intro"


async def test_pagination_needs_take_and_page(app, client, alice):
    ids = [await seed(app, alice.id, hour) for hour in range(9, 14)]
    assert await listed(client, alice, take=2, page=1) == ids[0:2]
    assert await listed(client, alice, take=2, page=2) == ids[2:4]
    assert await listed(client, alice, take=2, page=3) == ids[4:]
    assert await listed(client, alice, take=2, page=4) == []
    assert await listed(client, alice, take=2, page=2, order="desc") == ids[::-1][2:4]
    # Cal.com paginates only when both are present.
    assert await listed(client, alice, take=2) == ids
    assert await listed(client, alice, page=2) == ids


# --- who may use which route ----------------------------------------------------------------------


ROUTES = {
    "get": ("GET", "/v1/bookings/{key}", None),
    "patch": ("PATCH", "/v1/bookings/{key}", {"title": "Changed"}),
    "delete": ("DELETE", "/v1/bookings/{key}", None),
    "cancel": ("DELETE", "/v1/bookings/{key}/cancel", None),
    "confirm": ("POST", "/v1/bookings/{key}/confirm", {"confirmed": True}),
    "recordings": ("GET", "/v1/bookings/{key}/recordings", None),
    "transcripts": ("GET", "/v1/bookings/{key}/transcripts", None),
    "transcript": ("GET", "/v1/bookings/{key}/transcripts/rec-1", None),
    "no-show": ("POST", "/v1/no-show", {"noShowHost": True}),
}
ROLES = ["host", "attendee", "event-type owner", "admin", "stranger"]
# What each role gets (the recordings routes answer 404: no video reference, access granted).
# A stranger gets what a missing booking gets, 404 (Cal.com: 403, an existence oracle).
EXPECTED = {
    "get": [200, 200, 200, 200, 404],
    "patch": [200, 403, 200, 200, 404],
    "delete": [200, 200, 200, 200, 404],
    "cancel": [200, 200, 200, 200, 404],
    "confirm": [200, 403, 200, 200, 404],
    "recordings": [404, 404, 404, 404, 404],
    "transcripts": [404, 404, 404, 404, 404],
    "transcript": [404, 404, 404, 404, 404],
    "no-show": [200, 403, 200, 200, 404],
}
CASES = [
    pytest.param(route, role, EXPECTED[route][i], id=f"{route}-{role.replace(' ', '-')}")
    for route in ROUTES
    for i, role in enumerate(ROLES)
]


async def _request(client, route: str, booking: dict, account):
    method, path, body = ROUTES[route]
    if route == "no-show":
        body = {"bookingUid": booking["uid"], **(body or {})}
    return await client.request(
        method, path.format(key=booking["id"]), params=account.params, json=body
    )


@pytest.mark.parametrize(("route", "role", "status"), CASES)
async def test_item_route_access(app, client, alice, bob, carol, admin, route, role, status):
    event_type = await add_event_type(app, alice.id)
    # Every booking is pending, so each route has something to do.
    host = bob if role == "event-type owner" else alice
    attendees = [bob.email.upper()] if role == "attendee" else ["ann@example.com"]
    booking_id = await seed(
        app, host.id, 10, event_type_id=event_type, attendees=attendees,
        status=BookingStatus.PENDING,
    )  # fmt: skip
    async with app.state.sessions() as session:
        uid = await session.scalar(select(Booking.uid).where(Booking.id == booking_id))
    caller = {"host": alice, "attendee": bob, "event-type owner": alice, "admin": admin,
              "stranger": carol}[role]  # fmt: skip
    r = await _request(client, route, {"id": booking_id, "uid": uid}, caller)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["message"] == "You are not authorized"
    if role == "stranger":
        missing = await _request(client, route, {"id": 99999, "uid": "missing-uid"}, caller)
        assert missing.status_code == r.status_code
        assert missing.json()["message"].replace("99999", "ID").replace("missing-uid", "ID") == (
            r.json()["message"].replace(str(booking_id), "ID").replace(uid, "ID")
        )
    elif route.startswith(("recordings", "transcript")) and status == 404:
        assert r.json() == {"message": f"No Cal Video reference found with booking id {booking_id}"}
    async with app.state.sessions() as session:
        row = await session.get(Booking, booking_id)
        assert row is not None
        changed = {
            "patch": row.title == "Changed",
            "delete": row.status == BookingStatus.CANCELLED,
            "cancel": row.status == BookingStatus.CANCELLED,
            "confirm": row.status == BookingStatus.ACCEPTED,
            "no-show": row.no_show_host is True,
        }.get(route)
    if changed is not None:
        assert changed == (status == 200)
    else:
        assert (row.status, row.title) == (BookingStatus.PENDING, "Busy")


async def test_a_booking_read_by_an_attendee_is_not_in_their_list(app, client, alice, bob):
    booking_id = await seed(app, alice.id, 10, attendees=[bob.email])
    r = await client.get(f"/v1/bookings/{booking_id}", params=bob.params)
    assert r.status_code == 200
    assert await listed(client, bob) == []


async def test_missing_bookings_are_not_found(app, client, alice, admin):
    for account in (alice, admin):
        # A NUL character in the path is refused at the edge (test_edge_input), before any lookup.
        nul = await client.get("/v1/bookings/a%00b", params=account.params)
        assert nul.status_code == 400
        for key in ("99999", "2147483648", "no-such-uid"):
            r = await client.get(f"/v1/bookings/{key}", params=account.params)
            assert r.status_code == 404, (key, r.text)
            r = await client.patch(
                f"/v1/bookings/{key}", params=account.params, json={"title": "x"}
            )
            assert r.status_code == 404
            r = await client.delete(f"/v1/bookings/{key}/cancel", params=account.params)
            assert r.status_code == 404
            r = await client.post(
                f"/v1/bookings/{key}/confirm", params=account.params, json={"confirmed": True}
            )
            assert r.status_code == 404


async def test_a_stranger_cannot_reschedule_someone_elses_booking(app, client, alice, carol):
    await add_schedule(app, carol.id, "UTC")
    carols = await add_event_type(app, carol.id)
    alices = await add_event_type(app, alice.id)
    booking_id = await seed(app, alice.id, 10, event_type_id=alices)
    async with app.state.sessions() as session:
        uid = await session.scalar(select(Booking.uid).where(Booking.id == booking_id))
    r = await client.post(
        "/v1/bookings",
        params=carol.params,
        json={
            "eventTypeId": carols, "start": "2026-12-01T14:00:00Z", "timeZone": "UTC",
            "responses": {"name": "C", "email": "c@example.com"}, "rescheduleUid": uid,
        },
    )  # fmt: skip
    assert r.status_code == 404
    assert await status_of(app, booking_id) == BookingStatus.ACCEPTED


NO_KEY_ROUTES = [
    ("GET", "/v1/bookings"),
    ("POST", "/v1/bookings"),
    ("GET", "/v1/bookings/1"),
    ("PATCH", "/v1/bookings/1"),
    ("DELETE", "/v1/bookings/1"),
    ("DELETE", "/v1/bookings/1/cancel"),
    ("POST", "/v1/bookings/1/confirm"),
    ("GET", "/v1/bookings/1/recordings"),
    ("GET", "/v1/bookings/1/transcripts"),
    ("GET", "/v1/bookings/1/transcripts/rec-1"),
    ("POST", "/v1/no-show"),
]


@pytest.mark.parametrize(("method", "path"), NO_KEY_ROUTES)
async def test_every_route_needs_a_key(app, client, alice, method, path):
    await seed(app, alice.id, 10)
    r = await client.request(method, path, json={} if method in ("POST", "PATCH") else None)
    assert r.status_code == 401
    assert r.json() == {"message": "No apiKey provided"}
    bad = await client.request(method, path, params={"apiKey": "cal_wrong"})
    assert bad.status_code == 401
    assert await status_of(app, 1) == BookingStatus.ACCEPTED
