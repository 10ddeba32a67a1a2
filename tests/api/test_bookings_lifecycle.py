"""Bookings after creation, over real databases: confirm and reject, reschedule, cancel (also a
recurring series and seats), PATCH, no-show, payments, recordings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bookable.models import Booking, BookingReference, BookingStatus, Payment

from .scheduling_seed import add_booking, add_event_type, add_schedule

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday
DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday


@pytest.fixture
async def app(make_settings):
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def hours(app, alice) -> None:
    """Alice works 09:00-17:00 UTC on weekdays."""
    await add_schedule(app, alice.id, "UTC")


def at(hour: int, minute: int = 0, day: datetime = DAY) -> str:
    return (day + timedelta(hours=hour, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire(hour: int, minute: int = 0, day: datetime = DAY) -> str:
    return (day + timedelta(hours=hour, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def book(client, account, event_type: int, start: str, email: str = "ann@example.com",
               **extra: Any) -> dict:  # fmt: skip
    body: dict[str, Any] = {
        "eventTypeId": event_type,
        "start": start,
        "timeZone": "UTC",
        "language": "en",
        "metadata": {},
        "responses": {"name": "Ann", "email": email},
    }
    body.update(extra)
    r = await client.post("/v1/bookings", params=account.params, json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def stored(app, key: int | str) -> Booking:
    async with app.state.sessions() as session:
        column = Booking.id if isinstance(key, int) else Booking.uid
        booking = await session.scalar(
            select(Booking)
            .where(column == key)
            .options(selectinload(Booking.attendees), selectinload(Booking.payments))
        )
        assert booking is not None
        return booking


def refused(r, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["message"] == message


# --- confirm / reject -----------------------------------------------------------------------------


async def test_confirm_accepts_a_pending_booking(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    booking = await book(client, alice, event_type, at(10))
    assert booking["status"] == "PENDING"
    r = await client.post(
        f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Booking confirmed", "status": "ACCEPTED"}
    assert (await stored(app, booking["id"])).status == BookingStatus.ACCEPTED
    # Only a pending booking can be confirmed.
    again = await client.post(
        f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert again.status_code == 400
    assert "pending" in again.json()["message"]


async def test_reject_with_a_reason_by_uid(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    booking = await book(client, alice, event_type, at(10))
    r = await client.post(
        f"/v1/bookings/{booking['uid']}/confirm",
        params=alice.params,
        json={"confirmed": False, "rejectionReason": "On holiday"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Booking rejected", "status": "REJECTED"}
    row = await stored(app, booking["id"])
    assert (row.status, row.rejection_reason) == (BookingStatus.REJECTED, "On holiday")
    # A rejected booking cannot be cancelled or confirmed any more.
    cancel = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert cancel.status_code == 400
    confirm = await client.post(
        f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert confirm.status_code == 400


async def test_confirming_the_second_of_two_pending_requests_for_one_slot_is_refused(
    app, client, alice, hours
):
    # Cal.com #10789: both requests were accepted.
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    first = await book(client, alice, event_type, at(10), email="one@example.com")
    second = await book(client, alice, event_type, at(10), email="two@example.com")
    ok = await client.post(
        f"/v1/bookings/{first['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    assert ok.status_code == 200, ok.text
    r = await client.post(
        f"/v1/bookings/{second['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    refused(r, 409, "no_available_users_found_error")
    assert r.json()["reason"]
    assert (await stored(app, first["id"])).status == BookingStatus.ACCEPTED
    assert (await stored(app, second["id"])).status == BookingStatus.PENDING
    # It can still be rejected.
    r = await client.post(
        f"/v1/bookings/{second['id']}/confirm", params=alice.params, json={"confirmed": False}
    )
    assert r.status_code == 200
    row = await stored(app, second["id"])
    assert (row.status, row.rejection_reason) == (BookingStatus.REJECTED, None)


async def test_confirming_past_the_booking_limit_is_refused(app, client, alice, hours):
    event_type = await add_event_type(
        app, alice.id, requires_confirmation=True, booking_limits={"PER_DAY": 1}
    )
    first = await book(client, alice, event_type, at(10), email="one@example.com")
    second = await book(client, alice, event_type, at(14), email="two@example.com")
    for booking, status in ((first, 200), (second, 409)):
        r = await client.post(
            f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json={"confirmed": True}
        )
        assert r.status_code == status, r.text
    assert r.json()["message"] == "booking_limit_reached"
    assert (await stored(app, second["id"])).status == BookingStatus.PENDING


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "invalid_type in 'confirmed': Required"),
        ({"confirmed": "maybe"}, "'confirmed'"),
        ({"confirmed": True, "extra": 1}, "Unrecognized key(s) in object: 'extra'"),
    ],
)
async def test_confirm_body_is_validated(app, client, alice, hours, body, message):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    booking = await book(client, alice, event_type, at(10))
    r = await client.post(f"/v1/bookings/{booking['id']}/confirm", params=alice.params, json=body)
    assert r.status_code == 400
    assert message in r.json()["message"]
    assert (await stored(app, booking["id"])).status == BookingStatus.PENDING


# --- reschedule -----------------------------------------------------------------------------------


async def test_reschedule_cancels_the_old_and_links_the_new(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    old = await book(client, alice, event_type, at(10))
    new = await book(client, alice, event_type, at(14), rescheduleUid=old["uid"])
    assert new["uid"] != old["uid"]
    assert new["fromReschedule"] == old["uid"]
    assert new["previousBooking"] == {
        "uid": old["uid"],
        "startTime": wire(10),
        "endTime": wire(10, 30),
    }
    assert new["startTime"] == wire(14)
    assert new["status"] == "ACCEPTED"
    assert new["iCalSequence"] == 1
    previous = await stored(app, old["id"])
    assert previous.status == BookingStatus.CANCELLED
    assert previous.rescheduled is True
    assert previous.rescheduled_by == alice.email
    current = await stored(app, new["id"])
    assert (current.from_reschedule, current.status) == (old["uid"], BookingStatus.ACCEPTED)
    # The old time is free again.
    await book(client, alice, event_type, at(10), email="zed@example.com")


async def test_reschedule_may_overlap_its_own_old_time(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, length=60, slot_interval=30)
    old = await book(client, alice, event_type, at(10))
    new = await book(
        client, alice, event_type, at(10, 30), rescheduleUid=old["uid"],
        rescheduledBy="assistant@example.com",
    )  # fmt: skip
    assert new["rescheduledBy"] == "assistant@example.com"
    assert (await stored(app, old["id"])).rescheduled_by == "assistant@example.com"


async def test_reschedule_onto_a_taken_time_keeps_the_old_booking(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    old = await book(client, alice, event_type, at(10))
    await book(client, alice, event_type, at(11), email="zed@example.com")
    r = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": event_type, "start": at(11), "timeZone": "UTC",
            "responses": {"name": "Ann", "email": "ann@example.com"}, "rescheduleUid": old["uid"],
        },
    )  # fmt: skip
    refused(r, 409, "no_available_users_found_error")
    row = await stored(app, old["id"])
    assert (row.status, row.rescheduled) == (BookingStatus.ACCEPTED, None)


async def test_reschedule_of_a_cancelled_or_unknown_booking(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    old = await book(client, alice, event_type, at(10))
    assert (
        await client.delete(f"/v1/bookings/{old['id']}", params=alice.params)
    ).status_code == 200
    body = {
        "eventTypeId": event_type, "start": at(14), "timeZone": "UTC",
        "responses": {"name": "Ann", "email": "ann@example.com"},
    }  # fmt: skip
    r = await client.post(
        "/v1/bookings", params=alice.params, json=body | {"rescheduleUid": old["uid"]}
    )
    assert r.status_code == 400
    assert r.json()["message"] == "cancelled_bookings_cannot_be_rescheduled"
    r = await client.post(
        "/v1/bookings", params=alice.params, json=body | {"rescheduleUid": "nope"}
    )
    assert r.status_code == 404


async def test_host_rescheduling_an_accepted_booking_needs_no_new_confirmation(
    app, client, alice, hours
):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    old = await book(client, alice, event_type, at(10))
    await client.post(
        f"/v1/bookings/{old['id']}/confirm", params=alice.params, json={"confirmed": True}
    )
    new = await book(client, alice, event_type, at(14), rescheduleUid=old["uid"])
    assert new["status"] == "ACCEPTED"
    # A pending one stays pending when moved.
    pending = await book(client, alice, event_type, at(15), email="p@example.com")
    moved = await book(client, alice, event_type, at(16), email="p@example.com",
                       rescheduleUid=pending["uid"])  # fmt: skip
    assert moved["status"] == "PENDING"


async def test_reschedule_into_an_open_seated_slot_cancels_the_old_booking(
    app, client, alice, hours
):
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=3)
    await book(client, alice, event_type, at(10), email="one@example.com")
    old = await book(client, alice, event_type, at(11), email="two@example.com")
    new = await book(
        client, alice, event_type, at(10), email="two@example.com", rescheduleUid=old["uid"]
    )
    assert [a["email"] for a in new["attendees"]] == ["one@example.com", "two@example.com"]
    row = await stored(app, old["id"])
    assert row.status == BookingStatus.CANCELLED
    assert row.rescheduled is True


async def test_refused_seated_reschedule_keeps_the_old_booking(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=3)
    await book(client, alice, event_type, at(10), email="two@example.com")
    old = await book(client, alice, event_type, at(11), email="two@example.com")
    r = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={
            "eventTypeId": event_type, "start": at(10), "timeZone": "UTC",
            "responses": {"name": "Two", "email": "two@example.com"}, "rescheduleUid": old["uid"],
        },
    )  # fmt: skip
    refused(r, 409, "already_signed_up_for_this_booking_error")
    row = await stored(app, old["id"])
    assert (row.status, row.rescheduled) == (BookingStatus.ACCEPTED, None)


# --- cancel ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/bookings/{key}", "/v1/bookings/{key}/cancel"])
@pytest.mark.parametrize("key", ["id", "uid"])
async def test_cancel_is_soft_and_records_who_and_why(app, client, alice, hours, route, key):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.delete(
        route.format(key=booking[key]),
        params={
            **alice.params, "cancellationReason": "Sick", "cancelledBy": "assistant@example.com",
        },
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "message": "Booking successfully cancelled.",
        "onlyRemovedAttendee": False,
        "bookingId": booking["id"],
        "bookingUid": booking["uid"],
    }
    row = await stored(app, booking["id"])
    assert row.status == BookingStatus.CANCELLED
    assert row.cancellation_reason == "Sick"
    assert row.cancelled_by == "assistant@example.com"
    assert [a.email for a in row.attendees] == ["ann@example.com"]
    again = await client.delete(route.format(key=booking[key]), params=alice.params)
    assert again.status_code == 400
    assert again.json() == {"message": "This booking has already been cancelled."}
    # The slot is free again.
    await book(client, alice, event_type, at(10), email="zed@example.com")


async def test_cancel_defaults_and_validation(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    bad = await client.delete(
        f"/v1/bookings/{booking['id']}", params={**alice.params, "cancelledBy": "nobody"}
    )
    assert bad.status_code == 400
    assert "'cancelledBy'" in bad.json()["message"]
    assert (await stored(app, booking["id"])).status == BookingStatus.ACCEPTED
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.status_code == 200
    row = await stored(app, booking["id"])
    assert (row.cancellation_reason, row.cancelled_by) == ("Not Provided", alice.email)
    missing = await client.delete("/v1/bookings/99999", params=alice.params)
    assert missing.status_code == 404
    nul = await client.delete(
        f"/v1/bookings/{booking['id']}", params={**alice.params, "cancellationReason": "a\x00"}
    )
    assert nul.status_code == 400
    assert "'cancellationReason'" in nul.json()["message"]
    assert (await stored(app, booking["id"])).cancellation_reason == "Not Provided"


async def test_cancel_a_pending_booking(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    booking = await book(client, alice, event_type, at(10))
    r = await client.delete(f"/v1/bookings/{booking['id']}/cancel", params=alice.params)
    assert r.status_code == 200
    assert (await stored(app, booking["id"])).status == BookingStatus.CANCELLED


async def test_disable_cancelling(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, meta={"disableCancelling": True})
    booking = await book(client, alice, event_type, at(10))
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.status_code == 400
    assert r.json() == {"message": "This event type does not allow cancellations"}
    assert (await stored(app, booking["id"])).status == BookingStatus.ACCEPTED


async def _series(app, client, alice) -> tuple[list[dict], str, str]:
    event_type = await add_event_type(
        app, alice.id, recurring_event={"freq": 2, "count": 4, "interval": 1}
    )
    series = [
        await book(
            client,
            alice,
            event_type,
            at(10, day=DAY + timedelta(weeks=w)),
            recurringEventId="series-1",
        )
        for w in range(3)
    ]
    # A past occurrence of the same series and a booking of another series.
    past = await add_booking(
        app, alice.id, NOW - timedelta(days=7), NOW - timedelta(days=7, minutes=-30),
        event_type_id=event_type,
    )  # fmt: skip
    other = await book(client, alice, event_type, at(12), recurringEventId="series-2")
    async with app.state.sessions() as session, session.begin():
        row = await session.scalar(select(Booking).where(Booking.uid == past))
        assert row is not None
        row.recurring_event_id = "series-1"
    return series, past, other["uid"]


async def test_cancel_all_remaining_bookings_of_a_series(app, client, alice, hours):
    series, past, other = await _series(app, client, alice)
    assert series[0]["recurringEventId"] == "series-1"
    r = await client.delete(
        f"/v1/bookings/{series[1]['id']}/cancel",
        params={**alice.params, "allRemainingBookings": "true", "cancellationReason": "Done"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["bookingId"] == series[1]["id"]
    for booking in series:
        row = await stored(app, booking["id"])
        assert (row.status, row.cancellation_reason) == (BookingStatus.CANCELLED, "Done")
    assert (await stored(app, past)).status == BookingStatus.ACCEPTED
    assert (await stored(app, other)).status == BookingStatus.ACCEPTED


@pytest.mark.parametrize("flag", [None, "false", "1", "TRUE"])
async def test_without_all_remaining_only_one_occurrence_is_cancelled(
    app, client, alice, hours, flag
):
    series, _past, _other = await _series(app, client, alice)
    params = {**alice.params, **({"allRemainingBookings": flag} if flag else {})}
    r = await client.delete(f"/v1/bookings/{series[1]['id']}", params=params)
    assert r.status_code == 200
    statuses = [(await stored(app, b["id"])).status for b in series]
    assert statuses == [BookingStatus.ACCEPTED, BookingStatus.CANCELLED, BookingStatus.ACCEPTED]


async def test_seat_holder_gives_up_their_seat_host_cancels_all(app, client, alice, bob, hours):
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=3)
    booking = await book(client, alice, event_type, at(10), email="one@example.com")
    await book(client, alice, event_type, at(10), email=bob.email)
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=bob.params)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "message": "Attendee successfully removed.",
        "onlyRemovedAttendee": True,
        "bookingId": booking["id"],
        "bookingUid": booking["uid"],
    }
    row = await stored(app, booking["id"])
    assert row.status == BookingStatus.ACCEPTED
    assert [a.email for a in row.attendees] == ["one@example.com"]
    # Bob can take his seat again; the host cancels the whole booking.
    await book(client, alice, event_type, at(10), email=bob.email)
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.json()["onlyRemovedAttendee"] is False
    assert (await stored(app, booking["id"])).status == BookingStatus.CANCELLED


# --- PATCH ----------------------------------------------------------------------------------------


async def test_patch_edits_and_answers_the_row_without_relations(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(
        f"/v1/bookings/{booking['id']}",
        params=alice.params,
        json={
            "title": "Renamed", "description": "New agenda",
            "startTime": "2026-12-01T11:00:00Z", "endTime": "2026-12-01T11:45:00+00:00",
        },
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()["booking"]
    assert {"attendees", "user", "payment"}.isdisjoint(body)
    assert body["title"] == "Renamed"
    assert body["description"] == "New agenda"
    assert (body["startTime"], body["endTime"]) == (wire(11), wire(11, 45))
    assert body["id"] == booking["id"]
    assert body["updatedAt"] == "2026-01-05T12:00:00.000Z"
    row = await stored(app, booking["id"])
    assert (row.title, row.description) == ("Renamed", "New agenda")
    assert (row.start_time, row.end_time) == (
        DAY + timedelta(hours=11),
        DAY + timedelta(hours=11, minutes=45),
    )
    assert (row.blocked_start, row.blocked_end) == (row.start_time, row.end_time)
    # The old 10:00 slot is free, the new time is taken.
    await book(client, alice, event_type, at(10), email="zed@example.com")
    r = await client.post(
        "/v1/bookings",
        params=alice.params,
        json={"eventTypeId": event_type, "start": at(11, 30), "timeZone": "UTC",
              "responses": {"name": "Y", "email": "y@example.com"}},
    )  # fmt: skip
    refused(r, 409, "no_available_users_found_error")


async def test_host_may_move_a_booking_outside_working_hours(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(
        f"/v1/bookings/{booking['uid']}",
        params=alice.params,
        json={"startTime": at(21), "endTime": at(22)},
    )
    assert r.status_code == 200, r.text
    assert (await stored(app, booking["id"])).start_time == DAY + timedelta(hours=21)


async def test_patch_onto_another_accepted_booking_is_refused(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, after_event_buffer=15)
    first = await book(client, alice, event_type, at(10))
    second = await book(client, alice, event_type, at(14), email="zed@example.com")
    for times in (
        {"startTime": at(10, 15), "endTime": at(10, 45)},
        # Touching the first booking's after-buffer (10:30-10:45) is an overlap too.
        {"startTime": at(10, 40), "endTime": at(11, 10)},
    ):
        r = await client.patch(f"/v1/bookings/{second['id']}", params=alice.params, json=times)
        refused(r, 409, "no_available_users_found_error")
    row = await stored(app, second["id"])
    assert row.start_time == DAY + timedelta(hours=14)
    # A cancelled booking does not block.
    await client.delete(f"/v1/bookings/{first['id']}", params=alice.params)
    r = await client.patch(
        f"/v1/bookings/{second['id']}",
        params=alice.params,
        json={"startTime": at(10, 15), "endTime": at(10, 45)},
    )
    assert r.status_code == 200, r.text


async def test_patch_status_to_accepted_is_checked_for_overlaps(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, requires_confirmation=True)
    first = await book(client, alice, event_type, at(10), email="one@example.com")
    second = await book(client, alice, event_type, at(10), email="two@example.com")
    ok = await client.patch(
        f"/v1/bookings/{first['id']}", params=alice.params, json={"status": "ACCEPTED"}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["booking"]["status"] == "ACCEPTED"
    r = await client.patch(
        f"/v1/bookings/{second['id']}", params=alice.params, json={"status": "ACCEPTED"}
    )
    refused(r, 409, "no_available_users_found_error")
    assert (await stored(app, second["id"])).status == BookingStatus.PENDING
    r = await client.patch(
        f"/v1/bookings/{second['id']}", params=alice.params, json={"status": "CANCELLED"}
    )
    assert r.status_code == 200
    assert (await stored(app, second["id"])).status == BookingStatus.CANCELLED


async def test_changing_the_organizer_is_for_admins(app, client, alice, bob, admin, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=alice.params, json={"userId": bob.id}
    )
    assert r.status_code == 403
    assert r.json() == {"message": "Only admin can change the organizer of a booking"}
    assert (await stored(app, booking["id"])).user_id == alice.id
    # Naming the current organizer is no change.
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=alice.params, json={"userId": alice.id}
    )
    assert r.status_code == 200
    missing = await client.patch(
        f"/v1/bookings/{booking['id']}", params=admin.params, json={"userId": 99999}
    )
    assert missing.status_code == 404
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=admin.params, json={"userId": bob.id}
    )
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["userId"] == bob.id
    row = await stored(app, booking["id"])
    assert (row.user_id, row.user_primary_email) == (bob.id, bob.email)


async def test_admin_cannot_move_a_booking_onto_the_new_organizers_booking(
    app, client, alice, bob, admin, hours
):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    await add_booking(app, bob.id, DAY + timedelta(hours=10), DAY + timedelta(hours=11))
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=admin.params, json={"userId": bob.id}
    )
    refused(r, 409, "no_available_users_found_error")
    assert (await stored(app, booking["id"])).user_id == alice.id


async def test_patch_event_type_must_be_ones_own(app, client, alice, bob, hours):
    event_type = await add_event_type(app, alice.id)
    other = await add_event_type(app, alice.id, slug="other", before_event_buffer=10)
    bobs = await add_event_type(app, bob.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=alice.params, json={"eventTypeId": bobs}
    )
    assert r.status_code == 404
    r = await client.patch(
        f"/v1/bookings/{booking['id']}", params=alice.params, json={"eventTypeId": other}
    )
    assert r.status_code == 200, r.text
    row = await stored(app, booking["id"])
    assert row.event_type_id == other
    # The new event type's buffer now widens the blocked time.
    assert row.blocked_start == DAY + timedelta(hours=9, minutes=50)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"start": "2026-12-01T11:00:00Z"}, "Unrecognized key(s) in object: 'start'"),
        ({"startTime": "2026-12-01T11:00:00"}, "'startTime'"),
        ({"endTime": "2026-12-01T09:00:00Z"}, "custom in 'endTime': must be after startTime"),
        ({"status": "DONE"}, "'status'"),
        ({"title": None}, "'title'"),
        ({"cancelledBy": "nope"}, "'cancelledBy'"),
        ({"eventTypeId": "x"}, "'eventTypeId'"),
        ({"startTime": "0001-01-01T00:00:00+01:00"}, "'startTime'"),
        ({"endTime": "9999-12-31T23:59:59-05:00"}, "'endTime'"),
        ({"createdAt": "0001-01-01T00:00:00+01:00"}, "'createdAt'"),
    ],
)
async def test_patch_validation(app, client, alice, hours, body, message):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(f"/v1/bookings/{booking['id']}", params=alice.params, json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    row = await stored(app, booking["id"])
    assert (row.title, row.start_time, row.end_time, row.status) == (
        booking["title"],
        DAY + timedelta(hours=10),
        DAY + timedelta(hours=10, minutes=30),
        BookingStatus.ACCEPTED,
    )


async def test_patch_created_at_cancelled_by_rescheduled_by(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.patch(
        f"/v1/bookings/{booking['id']}",
        params=alice.params,
        json={
            "createdAt": "2025-06-01T08:00:00Z",
            "cancelledBy": "c@example.com",
            "rescheduledBy": "r@example.com",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()["booking"]
    assert body["createdAt"] == "2025-06-01T08:00:00.000Z"
    assert (body["cancelledBy"], body["rescheduledBy"]) == ("c@example.com", "r@example.com")


# --- payments -------------------------------------------------------------------------------------


async def test_paid_booking_is_pending_until_paid_and_refunded_on_cancel(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, price=1000, currency="usd")
    booking = await book(client, alice, event_type, at(10))
    assert booking["status"] == "PENDING"
    assert booking["paymentRequired"] is True
    assert booking["message"] == "Payment required"
    payment_id = booking["paymentId"]
    r = await client.get(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.json()["booking"]["payment"] == [
        {"id": payment_id, "success": False, "paymentOption": "ON_BOOKING"}
    ]
    # The provider reports the payment (no provider ships: written to the database).
    async with app.state.sessions() as session, session.begin():
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        payment.success = True
    r = await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    assert r.status_code == 200
    async with app.state.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        assert (payment.success, payment.refunded) == (True, True)


async def test_rescheduling_a_paid_booking_carries_the_payment(app, client, alice, hours):
    # Cal.com (createBooking.ts): the new booking is `paid` like the old one and the old
    # booking's successful payment is moved to it; no new payment is asked for.
    event_type = await add_event_type(app, alice.id, price=1000)
    old = await book(client, alice, event_type, at(10))
    async with app.state.sessions() as session, session.begin():
        payment = await session.get(Payment, old["paymentId"])
        booking = await session.get(Booking, old["id"])
        assert payment is not None and booking is not None
        payment.success = True
        booking.paid = True
        booking.status = BookingStatus.ACCEPTED
    new = await book(client, alice, event_type, at(14), rescheduleUid=old["uid"])
    assert new["paid"] is True
    assert new["paymentRequired"] is False
    assert "paymentUid" not in new
    assert new["status"] == "ACCEPTED"
    assert [p["id"] for p in new["payment"]] == [old["paymentId"]]
    row = await stored(app, new["id"])
    assert [p.id for p in row.payments] == [old["paymentId"]]
    assert (await stored(app, old["id"])).payments == []
    async with app.state.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Payment))
        assert count == 1


async def test_unpaid_payment_is_not_refunded(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id, price=1000)
    booking = await book(client, alice, event_type, at(10))
    await client.delete(f"/v1/bookings/{booking['id']}", params=alice.params)
    async with app.state.sessions() as session:
        payment = await session.get(Payment, booking["paymentId"])
        assert payment is not None
        assert payment.refunded is False


# --- no-show --------------------------------------------------------------------------------------


async def test_no_show_marks_attendees_and_host(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booking = await book(
        client, alice, event_type, at(10),
        responses={"name": "Ann", "email": "ann@example.com", "guests": ["g@example.com"]},
    )  # fmt: skip
    r = await client.post(
        "/v1/no-show",
        params=alice.params,
        json={"bookingUid": booking["uid"], "attendees": [{"email": "ANN@example.com",
                                                           "noShow": True}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {
        "message": "No-show status updated",
        "attendees": [{"email": "ann@example.com", "noShow": True}],
        "noShowHost": False,
    }
    row = await stored(app, booking["id"])
    assert [(a.email, a.no_show) for a in row.attendees] == [
        ("ann@example.com", True),
        ("g@example.com", False),
    ]
    r = await client.post(
        "/v1/no-show", params=alice.params, json={"bookingUid": booking["uid"], "noShowHost": True}
    )
    assert r.json() == {"message": "No-show status updated", "attendees": [], "noShowHost": True}
    assert (await stored(app, booking["id"])).no_show_host is True


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "'attendees'"),
        ({"attendees": [{"email": "x@example.com", "noShow": True}]}, 400, "x@example.com"),
        ({"attendees": [{"email": "bad", "noShow": True}]}, 400, "'attendees,0,email'"),
        ({"noShowHost": True, "other": 1}, 400, "Unrecognized key(s) in object: 'other'"),
    ],
)
async def test_no_show_validation(app, client, alice, hours, body, status, message):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    r = await client.post(
        "/v1/no-show", params=alice.params, json={"bookingUid": booking["uid"], **body}
    )
    assert r.status_code == status, r.text
    assert message in r.json()["message"]
    row = await stored(app, booking["id"])
    assert row.no_show_host is False
    assert [a.no_show for a in row.attendees] == [False]


async def test_no_show_of_an_unknown_booking(app, client, alice):
    body = {"bookingUid": "missing", "noShowHost": True}
    r = await client.post("/v1/no-show", params=alice.params, json=body)
    assert r.status_code == 404
    r = await client.post("/v1/no-show", params=alice.params, json={"noShowHost": True})
    assert r.status_code == 400
    assert "'bookingUid'" in r.json()["message"]


# --- recordings and transcripts -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["recordings", "transcripts", "transcripts/rec-1"])
async def test_recordings_without_a_video_reference(app, client, alice, hours, path):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    for key in (booking["id"], booking["uid"]):
        r = await client.get(f"/v1/bookings/{key}/{path}", params=alice.params)
        assert r.status_code == 404
        assert r.json() == {
            "message": f"No Cal Video reference found with booking id {booking['id']}"
        }
    missing = await client.get(f"/v1/bookings/99999/{path}", params=alice.params)
    assert missing.status_code == 404
    assert missing.json() == {"message": "No Booking found with booking id 99999"}


async def test_recordings_with_a_video_reference_say_there_is_no_provider(
    app, client, alice, hours
):
    event_type = await add_event_type(app, alice.id)
    booking = await book(client, alice, event_type, at(10))
    async with app.state.sessions() as session, session.begin():
        session.add(BookingReference(booking_id=booking["id"], type="daily_video", uid="room"))
    r = await client.get(f"/v1/bookings/{booking['id']}/recordings", params=alice.params)
    assert r.status_code == 404
    assert "no video provider" in r.json()["message"]


async def test_a_booking_cannot_be_rescheduled_onto_another_hosts_event_type(
    app, client, alice, bob, hours
):
    """Bob attends Alice's booking; he may cancel it, but not move it into his own calendar."""
    alices = await add_event_type(app, alice.id, slug="alice-meet")
    booked = await book(client, alice, alices, at(10), email=bob.email)
    await add_schedule(app, bob.id, "UTC")
    bobs = await add_event_type(app, bob.id, slug="bob-meet")
    response = await client.post(
        "/v1/bookings",
        params=bob.params,
        json={
            "eventTypeId": bobs,
            "start": at(11),
            "timeZone": "UTC",
            "responses": {"name": "Bob", "email": bob.email},
            "rescheduleUid": booked["uid"],
        },
    )
    assert response.status_code == 400, response.text
    assert "'rescheduleUid'" in response.json()["message"]
    assert (await stored(app, booked["id"])).status == BookingStatus.ACCEPTED


async def test_no_show_takes_a_uid_never_an_id(app, client, alice, hours):
    event_type = await add_event_type(app, alice.id)
    booked = await book(client, alice, event_type, at(10))
    by_id = await client.post(
        "/v1/no-show",
        params=alice.params,
        json={"bookingUid": str(booked["id"]), "noShowHost": True},
    )
    assert by_id.status_code == 404
    by_uid = await client.post(
        "/v1/no-show", params=alice.params, json={"bookingUid": booked["uid"], "noShowHost": True}
    )
    assert by_uid.status_code == 200
    assert by_uid.json()["noShowHost"] is True
