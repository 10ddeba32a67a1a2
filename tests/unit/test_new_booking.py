"""`NewBooking` / `NewAttendee` hold every column of their rows, and a column not given takes
the default the mapper gives it (the ORM path's `_column_values`): the dataclasses' own field
defaults stand for the mapper's, so they must not drift apart."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect

from bookable.bookings.common import NewAttendee, NewBooking
from bookable.bookings.writes import _ATTENDEE_COLUMNS, _BOOKING_COLUMNS, new_booking
from bookable.core.clock import clock
from bookable.models import Attendee, Booking

FROZEN_AT = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
START = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)
END = datetime(2031, 6, 1, 9, 30, tzinfo=UTC)
# What `create._new_booking` always gives (the columns without a default that are NOT NULL).
GIVEN = dict(
    uid="abc", title="Meeting", start_time=START, end_time=END, blocked_start=START,
    blocked_end=END,
)  # fmt: skip
GIVEN_ATTENDEE = dict(email="a@example.com", name="A", time_zone="Europe/Paris")


@pytest.fixture
def frozen_clock():
    clock.freeze(FROZEN_AT)
    yield
    clock.freeze(None)


@pytest.mark.parametrize(
    ("dataclass_type", "model", "extra"),
    [(NewBooking, Booking, {"attendees"}), (NewAttendee, Attendee, set())],
)
def test_the_fields_are_the_rows_columns(dataclass_type, model, extra):
    columns = {attribute.key for attribute in inspect(model).column_attrs}
    assert {f.name for f in fields(dataclass_type)} == columns | extra


def test_a_column_not_given_takes_the_mappers_default(frozen_clock):
    booking = new_booking(GIVEN, [GIVEN_ATTENDEE, {**GIVEN_ATTENDEE, "email": "b@example.com"}])
    assert booking.id is None
    for attribute, _key, default in _BOOKING_COLUMNS:
        expected = GIVEN[attribute] if attribute in GIVEN else default
        if callable(expected):
            expected = expected()
        assert getattr(booking, attribute) == expected, attribute
    assert booking.created_at == FROZEN_AT  # the column's default is a function of the clock
    assert [a.email for a in booking.attendees] == ["a@example.com", "b@example.com"]
    for attendee in booking.attendees:
        assert attendee.id is None and attendee.booking_id is None
        for attribute, _key, default in _ATTENDEE_COLUMNS:
            if attribute == "booking_id":
                continue
            expected = GIVEN_ATTENDEE[attribute] if attribute in GIVEN_ATTENDEE else default
            if attribute == "email":
                expected = attendee.email
            assert getattr(attendee, attribute) == expected, attribute


def test_given_values_win_over_the_defaults(frozen_clock):
    values = {**GIVEN, "paid": True, "ical_sequence": 3, "created_at": START, "no_show_host": None}
    attendee = {**GIVEN_ATTENDEE, "locale": "de", "no_show": True}
    booking = new_booking(values, [attendee])
    assert (booking.paid, booking.ical_sequence, booking.created_at) == (True, 3, START)
    assert booking.no_show_host is None
    assert (booking.attendees[0].locale, booking.attendees[0].no_show) == ("de", True)
