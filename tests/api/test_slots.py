"""GET /v1/slots over real databases: shapes, time zones, DST, busy time, seats, validation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bookable.models import BookingStatus

from .scheduling_seed import add_booking, add_event_type, add_schedule

# No test here makes a delivery (tests/conftest.py: make_settings).
pytestmark = pytest.mark.without_dispatchers

# A frozen "now" well before every window used here.
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
async def app(make_settings):
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


def instants(body: dict) -> list[datetime]:
    return [datetime.fromisoformat(s["time"]) for day in body["slots"].values() for s in day]


async def slots(client, account, **params):
    return await client.get("/v1/slots", params={**account.params, **params})


async def test_slots_in_booker_zone_grouped_by_local_date(app, client, alice):
    await add_schedule(app, alice.id, "Europe/Berlin")
    event_type = await add_event_type(app, alice.id)
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01",
        timeZone="Asia/Kolkata",
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["slots"]
    assert list(body["slots"]) == ["2026-12-01"]
    day = body["slots"]["2026-12-01"]
    # 09:00-17:00 Berlin (UTC+1) is 13:30-21:30 in Kolkata: 16 half-hour slots.
    assert len(day) == 16
    assert day[0] == {"time": "2026-12-01T13:30:00+05:30"}
    assert day[-1] == {"time": "2026-12-01T21:00:00+05:30"}


async def test_without_time_zone_times_are_utc_with_milliseconds(app, client, alice):
    await add_schedule(app, alice.id, "Europe/London")
    event_type = await add_event_type(app, alice.id, length=60)
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01"
    )
    assert r.status_code == 200, r.text
    day = r.json()["slots"]["2026-12-01"]
    assert day[0] == {"time": "2026-12-01T09:00:00.000Z"}
    assert len(day) == 8


async def test_date_only_bounds_are_whole_local_days_of_the_requested_zone(app, client, alice):
    # Cal.com #17844: Sydney bookers lost the first hours and got the next day's slots.
    await add_schedule(app, alice.id, "UTC", [([0, 1, 2, 3, 4, 5, 6], time(0), time(23, 59))])
    event_type = await add_event_type(app, alice.id, length=60)
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-11-25", endTime="2026-11-25",
        timeZone="Australia/Sydney",
    )  # fmt: skip
    body = r.json()
    assert list(body["slots"]) == ["2026-11-25"]
    day = body["slots"]["2026-11-25"]
    assert len(day) == 24
    assert day[0]["time"] == "2026-11-25T00:00:00+11:00"
    assert day[-1]["time"] == "2026-11-25T23:00:00+11:00"


async def test_nothing_free_gives_an_empty_map(app, client, alice):
    await add_schedule(app, alice.id, "Europe/Berlin")
    event_type = await add_event_type(app, alice.id)
    # 2026-12-05 is a Saturday.
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-05", endTime="2026-12-05",
        timeZone="America/Los_Angeles",
    )  # fmt: skip
    assert r.status_code == 200
    assert r.json() == {"slots": {}}


async def test_seed_aliases_and_username_lookup(app, client, alice):
    await add_schedule(app, alice.id, "Europe/Berlin")
    await add_event_type(app, alice.id, slug="intro")
    r = await client.get(
        "/v1/slots",
        params={
            **alice.params,
            "usernameList": "alice",
            "eventTypeSlug": "intro",
            "startDateTime": "2026-12-01T00:00:00Z",
            "endDateTime": "2026-12-02T00:00:00Z",
        },
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["slots"]["2026-12-01"]) == 16


async def test_duration_must_be_one_of_the_event_lengths(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, meta={"multipleDuration": [30, 60]})
    ok = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01",
        duration=60,
    )  # fmt: skip
    assert ok.status_code == 200
    # A 60-minute duration steps by 60 minutes too.
    assert len(ok.json()["slots"]["2026-12-01"]) == 8
    bad = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01",
        duration=45,
    )  # fmt: skip
    assert bad.status_code == 400
    assert "'duration'" in bad.json()["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (
            {"startTime": "2026-12-01", "endTime": "2026-12-02", "timeZone": "Mars/Olympus"},
            "timeZone",
        ),
        ({"startTime": "2026-12-02", "endTime": "2026-11-30"}, "endTime"),
        ({"startTime": "2026-01-01", "endTime": "2027-06-01"}, "endTime"),
        ({"endTime": "2026-12-02"}, "startTime"),
        ({"startTime": "next tuesday", "endTime": "2026-12-02"}, "startTime"),
        ({"startTime": "2026-12-01", "endTime": "2026-12-02", "duration": "abc"}, "duration"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(app, client, alice, params, field):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    r = await slots(client, alice, eventTypeId=event_type, **params)
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["message"]


async def test_an_event_type_must_be_named(app, client, alice):
    r = await slots(client, alice, startTime="2026-12-01", endTime="2026-12-02")
    assert r.status_code == 400
    assert r.json() == {
        "message": (
            "You need to either pass an eventTypeId OR an usernameList/eventTypeSlug combination"
        )
    }
    r = await slots(client, alice, eventTypeId="abc", startTime="2026-12-01", endTime="2026-12-02")
    assert r.status_code == 400
    assert "'eventTypeId'" in r.json()["message"]


async def test_missing_and_foreign_event_types_are_not_found(app, client, alice, bob, admin):
    await add_schedule(app, bob.id, "UTC")
    bobs = await add_event_type(app, bob.id)
    window = {"startTime": "2026-12-01", "endTime": "2026-12-01"}
    assert (await slots(client, alice, eventTypeId=bobs, **window)).status_code == 404
    assert (await slots(client, alice, eventTypeId=99999, **window)).status_code == 404
    by_name = await slots(client, alice, usernameList="bob", eventTypeSlug="meet", **window)
    assert by_name.status_code == 404
    # A system-wide admin may look at anyone's.
    r = await slots(client, admin, eventTypeId=bobs, **window)
    assert r.status_code == 200
    assert len(r.json()["slots"]["2026-12-01"]) == 16


async def test_no_key_is_401(client):
    r = await client.get(
        "/v1/slots", params={"eventTypeId": 1, "startTime": "2026-12-01", "endTime": "2026-12-02"}
    )
    assert r.status_code == 401
    assert r.json() == {"message": "No apiKey provided"}


async def test_busy_time_blocks_and_the_grid_does_not_shift(app, client, alice, bob):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    # Alice hosts 10:00-10:45; she is a guest of Bob 13:00-13:30; a cancelled booking is ignored.
    await add_booking(
        app, alice.id, day + timedelta(hours=10), day + timedelta(hours=10, minutes=45)
    )
    await add_booking(
        app, bob.id, day + timedelta(hours=13), day + timedelta(hours=13, minutes=30),
        attendees=[alice.email],
    )  # fmt: skip
    await add_booking(
        app, alice.id, day + timedelta(hours=15), day + timedelta(hours=16),
        status=BookingStatus.CANCELLED,
    )  # fmt: skip
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01"
    )
    times = {t.strftime("%H:%M") for t in instants(r.json())}
    assert {"10:00", "10:30", "13:00"}.isdisjoint(times)
    # After the 10:45 end the grid stays on :00/:30 (Cal.com would restart it at 10:45).
    assert {"09:00", "09:30", "11:00", "12:30", "13:30", "15:00", "15:30", "16:30"} <= times
    assert "10:45" not in times


async def test_buffers_widen_busy_time(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, before_event_buffer=15, after_event_buffer=15)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    await add_booking(
        app, alice.id, day + timedelta(hours=12), day + timedelta(hours=12, minutes=30)
    )
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01"
    )
    times = {t.strftime("%H:%M") for t in instants(r.json())}
    # 11:30-12:00 would end where the booking starts: its after-buffer needs 15 free minutes.
    assert {"11:30", "12:00", "12:30"}.isdisjoint(times)
    assert {"11:00", "13:00"} <= times


async def test_long_bookings_block_wherever_they_started(app, client, alice, bob):
    """The busy read starts 31 days (the longest a booking may last) before the span: one of
    exactly that length still blocks its last hours. A longer one (stored before the limit; here
    straight into the table) blocks every day it covers, read through its own index."""
    week = [([0, 1, 2, 3, 4, 5, 6], time(9), time(17))]
    day = datetime(2026, 12, 1, tzinfo=UTC)
    second_day = {f"02 {hour}" for hour in range(9, 17)}
    for host, start, end, free in (
        # 31 days, until 12:00 on the 1st: its afternoon is free.
        (alice, day + timedelta(hours=12, days=-31), day + timedelta(hours=12),
         {f"01 {hour}" for hour in range(12, 17)} | second_day),
        # 60 days, until the 2nd began.
        (bob, day - timedelta(days=59), day + timedelta(days=1), second_day),
    ):  # fmt: skip
        await add_schedule(app, host.id, "UTC", week)
        event_type = await add_event_type(app, host.id, length=60)
        await add_booking(app, host.id, start, end)
        r = await slots(
            client, host, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-02"
        )
        assert r.status_code == 200, r.text
        assert {t.strftime("%d %-H") for t in instants(r.json())} == free


async def test_minimum_notice_counts_from_the_frozen_clock(app, client, alice):
    await add_schedule(app, alice.id, "UTC", [([0, 1, 2, 3, 4, 5, 6], time(9), time(17))])
    event_type = await add_event_type(app, alice.id, minimum_booking_notice=120)
    # NOW is 2026-01-05 12:00Z: with two hours' notice the first slot is 14:00.
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-01-05", endTime="2026-01-05"
    )
    first = instants(r.json())[0]
    assert first == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


async def test_seats_show_attendees_until_full(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id, seats_per_time_slot=2)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    open_uid = await add_booking(
        app, alice.id, day + timedelta(hours=10), day + timedelta(hours=10, minutes=30),
        event_type_id=event_type, attendees=["one@example.com"],
    )  # fmt: skip
    await add_booking(
        app, alice.id, day + timedelta(hours=11), day + timedelta(hours=11, minutes=30),
        event_type_id=event_type, attendees=["one@example.com", "two@example.com"],
    )  # fmt: skip
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01", endTime="2026-12-01"
    )
    day_slots = r.json()["slots"]["2026-12-01"]
    by_time = {datetime.fromisoformat(s["time"]).strftime("%H:%M"): s for s in day_slots}
    assert by_time["10:00"] == {
        "time": "2026-12-01T10:00:00.000Z", "attendees": 1, "bookingUid": open_uid,
    }  # fmt: skip
    assert "11:00" not in by_time  # full
    assert "attendees" not in by_time["09:00"]


async def test_reschedule_uid_frees_its_own_booking(app, client, alice):
    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    uid = await add_booking(
        app, alice.id, day + timedelta(hours=10), day + timedelta(hours=10, minutes=30),
        event_type_id=event_type,
    )  # fmt: skip
    window = {"eventTypeId": event_type, "startTime": "2026-12-01", "endTime": "2026-12-01"}
    blocked = instants((await slots(client, alice, **window)).json())
    freed = instants((await slots(client, alice, **window, rescheduleUid=uid)).json())
    ten = day + timedelta(hours=10)
    assert ten not in blocked
    assert ten in freed


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("America/New_York", "2026-03-08"),
        ("America/New_York", "2026-11-01"),
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
    ],
)
async def test_dst_days_keep_wall_clock_hours(app, client, alice, zone, transition):
    every_day = [0, 1, 2, 3, 4, 5, 6]
    await add_schedule(
        app, alice.id, zone, [(every_day, time(9), time(12)), (every_day, time(14), time(17))]
    )
    event_type = await add_event_type(app, alice.id, length=60)
    start = datetime.fromisoformat(transition) - timedelta(days=1)
    r = await slots(
        client, alice, eventTypeId=event_type, startTime=start.date().isoformat(),
        endTime=(start + timedelta(days=2)).date().isoformat(), timeZone=zone,
    )  # fmt: skip
    body = r.json()["slots"]
    assert len(body) == 3
    for day in body.values():
        walls = [datetime.fromisoformat(s["time"]).strftime("%H:%M") for s in day]
        assert walls == ["09:00", "10:00", "11:00", "14:00", "15:00", "16:00"]
    for day, entries in body.items():
        for entry in entries:
            local = datetime.fromisoformat(entry["time"])
            assert local.utcoffset() == local.astimezone(ZoneInfo(zone)).utcoffset()
            assert local.date().isoformat() == day


@pytest.mark.parametrize("booker", ["Asia/Kolkata", "Asia/Kathmandu", "UTC"])
async def test_half_hour_zone_bookers_see_the_hosts_grid(app, client, alice, booker):
    await add_schedule(app, alice.id, "Europe/London")
    event_type = await add_event_type(app, alice.id, length=60)
    r = await slots(
        client, alice, eventTypeId=event_type, startTime="2026-12-01T00:00:00Z",
        endTime="2026-12-02T00:00:00Z", timeZone=booker,
    )  # fmt: skip
    utc = sorted(t.astimezone(UTC) for t in instants(r.json()))
    assert [t.hour for t in utc] == list(range(9, 17))
    assert all(t.minute == 0 for t in utc)


async def test_only_the_event_types_own_hosts_decide_whether_calendars_are_read(app, alice, bob):
    """GET /slots reads no calendar for an event type whose owner and hosts selected none,
    even when a host of another event type did."""
    from bookable.core.auth import Caller
    from bookable.models import (
        Credential,
        EventType,
        Host,
        SelectedCalendar,
        Team,
        User,
        UserRole,
    )
    from bookable.slots.service import find_slots_event_type

    alices = await add_event_type(app, alice.id)
    feed = "https://feeds.example/bob.ics"
    async with app.state.sessions() as session, session.begin():
        team = Team(name="Team", slug="team")
        session.add(team)
        await session.flush()
        team_type = EventType(
            team_id=team.id, title="Team", slug="team", length=30, locations=[],
            scheduling_type="COLLECTIVE",
        )  # fmt: skip
        credential = Credential(
            user_id=bob.id, type="ics-feed_calendar", app_id="ics-feed", identity="bob-feed",
            encrypted_key=app.state.encryptor.encrypt_json({"urls": [feed]}),
        )  # fmt: skip
        session.add_all([team_type, credential])
        await session.flush()
        session.add(Host(event_type_id=team_type.id, user_id=bob.id))
        session.add(
            SelectedCalendar(
                user_id=bob.id, integration="ics-feed_calendar", external_id=feed,
                credential_id=credential.id,
            )
        )  # fmt: skip
        team_type_id = team_type.id
    root = Caller(user_id=alice.id, role=UserRole.ADMIN, key_id="test", user=User(id=alice.id))
    flags = []
    async with app.state.sessions() as session:
        for event_type_id in (alices, team_type_id):
            found = await find_slots_event_type(
                session, root, event_type_id=event_type_id, usernames=[], slug=None
            )
            flags.append(found.calendars_selected)
    assert flags == [False, True]


async def test_slots_of_a_host_without_calendars_take_one_query_on_one_connection(
    make_settings, alice
):
    """No preflight session, no calendar query, no second lookup of the event type: one query
    reads the event type, its owner, their schedules, whether anyone selected a calendar and
    the busy bookings, on the request's one connection."""
    from sqlalchemy import event

    from bookable.app import create_app
    from tests.conftest import client_for
    from tests.statements import recorded_driver_statements, recorded_statements

    application = create_app(make_settings(clock=NOW, webhook_dispatcher="off"))
    checkouts: list[object] = []

    def checkout(*_args) -> None:
        checkouts.append(_args)

    async with application.router.lifespan_context(application), client_for(application) as http:
        await add_schedule(application, alice.id, "Europe/Berlin")
        event_type = await add_event_type(application, alice.id)
        params = {"eventTypeId": event_type, "startTime": "2026-12-01", "endTime": "2026-12-01"}
        warm = await slots(http, alice, **params)  # the key's cache is filled
        assert warm.status_code == 200, warm.text
        pool = application.state.engine.sync_engine.pool
        event.listen(pool, "checkout", checkout)
        try:
            with (
                recorded_statements(application) as statements,
                recorded_driver_statements(application) as driver_statements,
            ):
                r = await slots(http, alice, **params)
        finally:
            event.remove(pool, "checkout", checkout)
    assert r.status_code == 200, r.text
    assert len(r.json()["slots"]["2026-12-01"]) == 16
    if application.state.engine.dialect.name == "postgresql":
        # asyncpg runs it itself (`DriverStatement`), past SQLAlchemy's execution, in
        # AUTOCOMMIT: no BEGIN, no COMMIT.
        assert statements == []
        statements = driver_statements
        assert len(statements) == 1, statements
    queries = [s for s in statements if s.upper().startswith(("SELECT", "WITH"))]
    assert len(queries) == 1, queries
    assert "selected_calendars" in queries[0]
    assert "FROM bookings" in queries[0]
    assert len(checkouts) == 1


@pytest.mark.parametrize("by_slug", [False, True])
@pytest.mark.parametrize("reschedule", [False, True])
async def test_the_first_query_reads_the_busy_times_the_busy_query_reads(
    app, alice, bob, by_slug, reschedule
):
    """`find_slots_event_type`'s busy times (read with the event type, as aggregates) are those
    `load_host_calendar` reads with its own query: own bookings with their event types'
    buffers (none, both, another user's after only), bookings the host attends (e-mail in
    another case), not cancelled, pending, foreign or out-of-span ones, nor the booking being
    moved."""
    from bookable.core.auth import Caller
    from bookable.models import User, UserRole
    from bookable.scheduling import BusyTime
    from bookable.slots.service import find_slots_event_type, load_host_calendar

    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    buffered = await add_event_type(
        app, alice.id, slug="buffered", before_event_buffer=10, after_event_buffer=5
    )
    day = datetime(2026, 12, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    moved = await add_booking(app, alice.id, day + 9 * hour, day + 10 * hour)
    await add_booking(app, alice.id, day + 11 * hour, day + 12 * hour, event_type_id=buffered)
    # Another user's event type with a buffer after only: its buffers are read too.
    bobs = await add_event_type(app, bob.id, slug="bobs", after_event_buffer=20)
    await add_booking(
        app,
        bob.id,
        day + 13 * hour,
        day + 14 * hour,
        attendees=[alice.email.upper()],
        event_type_id=bobs,
    )
    await add_booking(app, bob.id, day + 15 * hour, day + 16 * hour)
    # Instants with fractions of a second (read as text on both databases) keep them.
    half, odd = timedelta(microseconds=500_000), timedelta(minutes=20, microseconds=123_456)
    await add_booking(app, alice.id, day + 17 * hour + half, day + 17 * hour + odd)
    for status in (BookingStatus.CANCELLED, BookingStatus.PENDING):
        await add_booking(app, alice.id, day + 16 * hour, day + 17 * hour, status=status)
    await add_booking(app, alice.id, day + 30 * 24 * hour, day + 30 * 24 * hour + hour)
    await add_booking(app, alice.id, day - 3 * 24 * hour, day - 3 * 24 * hour + hour)

    caller = Caller(user_id=alice.id, role=UserRole.USER, key_id="test", user=User(id=alice.id))
    start, end = day, day + 24 * hour
    ignore = moved if reschedule else None
    lookup = (
        {"event_type_id": None, "usernames": ["ALICE"], "slug": "meet"}
        if by_slug
        else {"event_type_id": event_type, "usernames": [], "slug": None}
    )
    async with app.state.sessions() as session:
        found = await find_slots_event_type(
            session, caller, **lookup, window=(start, end), ignore_booking_uid=ignore
        )
        assert found.busy_read is not None and found.owner is not None
        assert found.busy_read.answers(
            found.owner, start - 2 * 24 * hour, end + 2 * 24 * hour, ignore
        )
        asked = await load_host_calendar(
            session, found.event_type, found.owner, start, end, ignore_booking_uid=ignore
        )
    expected = [
        BusyTime(day + 11 * hour, day + 12 * hour, 10, 5),
        BusyTime(day + 13 * hour, day + 14 * hour, 0, 20),
        BusyTime(day + 17 * hour + half, day + 17 * hour + odd),
    ]
    if not reschedule:
        expected.insert(0, BusyTime(day + 9 * hour, day + 10 * hour))
    assert sorted(found.busy_read.busy) == sorted(asked.busy) == expected


async def test_bookings_without_buffers_are_read_as_plain_pairs(app, alice, bob):
    """When no booking read has buffers (the usual case), the first statement's busy times are
    `(start, end)` pairs (`BusyRead.unbuffered`), the calendar takes them as they are, and they
    are the times `load_host_calendar`'s own query reads."""
    from bookable.core.auth import Caller
    from bookable.models import User, UserRole
    from bookable.scheduling import BusyTime
    from bookable.slots.service import find_slots_event_type, load_host_calendar

    await add_schedule(app, alice.id, "UTC")
    event_type = await add_event_type(app, alice.id)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    await add_booking(app, alice.id, day + 9 * hour, day + 10 * hour, event_type_id=event_type)
    await add_booking(app, alice.id, day + 11 * hour, day + 11.5 * hour)
    await add_booking(app, bob.id, day + 13 * hour, day + 14 * hour, attendees=[alice.email])
    caller = Caller(user_id=alice.id, role=UserRole.USER, key_id="test", user=User(id=alice.id))
    start, end = day, day + 24 * hour
    async with app.state.sessions() as session:
        found = await find_slots_event_type(
            session, caller, event_type_id=event_type, usernames=[], slug=None,
            window=(start, end),
        )  # fmt: skip
        assert found.busy_read is not None and found.owner is not None
        given = await load_host_calendar(
            session, found.event_type, found.owner, start, end, busy_read=found.busy_read
        )
        asked = await load_host_calendar(session, found.event_type, found.owner, start, end)
    pairs = [
        (day + 9 * hour, day + 10 * hour),
        (day + 11 * hour, day + 11.5 * hour),
        (day + 13 * hour, day + 14 * hour),
    ]
    assert found.busy_read.busy == ()
    assert sorted(found.busy_read.unbuffered) == pairs
    assert (given.busy, given.unbuffered) == ((), found.busy_read.unbuffered)
    assert sorted(asked.busy) == [BusyTime(*pair) for pair in pairs]


@pytest.mark.parametrize("admin", [False, True])
@pytest.mark.parametrize("by_slug", [False, True])
@pytest.mark.parametrize("ignoring", [False, True])
async def test_the_driver_reads_what_sqlalchemy_reads(app, alice, bob, admin, by_slug, ignoring):
    """GET /slots' statement run by asyncpg itself (`DriverStatement`: parameters bound and
    processed, literals, result processors) gives the rows SQLAlchemy's execution gives, value
    for value and type for type: dates of the booking window, JSON settings, buffers and ids
    as arrays, the busy instants as text, in every shape."""
    from bookable.core.db import DriverStatement
    from bookable.slots.service import _slots_statement, busy_span_params

    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("asyncpg only: SQLite is read through SQLAlchemy")
    await add_schedule(app, alice.id, "Europe/Berlin")
    day = datetime(2026, 12, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    event_type = await add_event_type(
        app, alice.id,
        period_type="RANGE", period_start_date=day, period_end_date=day + 30 * 24 * hour,
        meta={"multipleDuration": [30, 60]}, booking_limits={"PER_DAY": 2},
        before_event_buffer=5,
    )  # fmt: skip
    buffered = await add_event_type(app, alice.id, slug="buffered", after_event_buffer=15)
    moved = await add_booking(app, alice.id, day + 9 * hour, day + 10 * hour)
    await add_booking(app, alice.id, day + 11 * hour, day + 12 * hour, event_type_id=buffered)
    await add_booking(
        app, bob.id, day + 13 * hour, day + 14 * hour, attendees=[alice.email.upper()]
    )
    params = {
        "event_type_id": event_type, "username": "alice", "slug": "meet",
        **busy_span_params(day, day + 24 * hour),
    }  # fmt: skip
    if not admin:
        params["caller_id"] = alice.id
    if ignoring:
        params["ignore_uid"] = moved
    statement = _slots_statement(
        admin=admin, by_slug=by_slug, ignoring=ignoring, dialect="postgresql"
    )
    async with app.state.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        expected = [tuple(row) for row in (await conn.execute(statement, params)).all()]
        driver = (await conn.get_raw_connection()).driver_connection
        driven = await DriverStatement(statement, app.state.engine.dialect).fetch(driver, params)
    assert len(expected) == 1
    assert [tuple(row) for row in driven] == expected
    assert [list(map(type, row)) for row in driven] == [list(map(type, expected[0]))]
    first = expected[0]
    assert first[-6] is not None and first[-3] is not None  # busy times and buffers were read


async def test_a_driver_statement_processes_values_as_sqlalchemy_does(database_url):
    """`DriverStatement` binds the caller's parameters and the statement's literals through
    their types' bind processors, in SQLAlchemy's positional order, and hands back values
    through the result processors: a TypeDecorator's work on the way in and out is kept."""
    from typing import Any

    from sqlalchemy import Integer, String, TypeDecorator, bindparam, literal, select, type_coerce

    from bookable.core.db import DriverStatement, create_engine, is_sqlite
    from bookable.models.base import UTCDateTime

    if is_sqlite(database_url):
        pytest.skip("asyncpg only")

    class Tagged(TypeDecorator[str]):
        impl = String()
        cache_ok = True

        def process_bind_param(self, value: Any, dialect: Any) -> Any:
            return f"in:{value}"

        def process_result_value(self, value: Any, dialect: Any) -> Any:
            return f"{value}:out"

    statement = select(
        type_coerce(bindparam("word", type_=Tagged()), Tagged()).label("word"),
        literal("lit", Tagged()).label("literal"),
        (bindparam("number", type_=Integer()) + literal(1)).label("number"),
        type_coerce(bindparam("instant", type_=UTCDateTime()), UTCDateTime()).label("instant"),
    )
    engine = create_engine(database_url)
    instant = datetime(2027, 3, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))
    params = {"word": "w", "number": 41, "instant": instant}
    try:
        async with engine.connect() as conn:
            expected = [tuple(row) for row in (await conn.execute(statement, params)).all()]
            driver = (await conn.get_raw_connection()).driver_connection
            driven = DriverStatement(statement, engine.dialect)
            assert [tuple(row) for row in await driven.fetch(driver, params)] == expected
            with pytest.raises(ValueError, match="naive"):
                await driven.fetch(driver, {**params, "instant": instant.replace(tzinfo=None)})
    finally:
        await engine.dispose()
    assert expected == [("in:w:out", "in:lit:out", 42, instant)]
    assert expected[0][-1].tzinfo is UTC


async def test_postgresql_connections_give_instants_as_iso_text(database_url):
    """GET /slots reads PostgreSQL's busy instants as text (`_slots_statement`), whose form
    follows the session's DateStyle: the engine's connections ask for ISO at start-up, so the
    text is what `datetime.fromisoformat` reads, fractions of a second included."""
    from sqlalchemy import text

    from bookable.core.db import create_engine, is_sqlite

    if is_sqlite(database_url):
        pytest.skip("SQLite stores instants as ISO text already")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            style = (await conn.execute(text("SHOW DateStyle"))).scalar_one()
            wall = (
                await conn.execute(
                    text(
                        "SELECT CAST(timezone('UTC', TIMESTAMPTZ '2027-03-01 10:00:00.5+01')"
                        " AS TEXT)"
                    )
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert style == "ISO, MDY"
    assert datetime.fromisoformat(wall + "+00:00") == datetime(2027, 3, 1, 9, 0, 0, 500_000, UTC)


async def test_a_busy_read_answers_only_what_it_was_read_for():
    """`BusyRead.answers`: another host, an e-mail the database lower-cased otherwise than
    Python, another span or another booking left out: `load_host_calendar` asks again."""
    from bookable.models import User
    from bookable.slots.service import BusyRead

    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    read = BusyRead(7, "éva@example.com", start, end, None, ())
    host = User(id=7, email="Éva@example.com")
    assert read.answers(host, start, end, None)
    assert read.answers(host, start, end, "")
    assert not read.answers(User(id=8, email="Éva@example.com"), start, end, None)
    assert not BusyRead(7, "Éva@example.com", start, end, None, ()).answers(host, start, end, None)
    assert not read.answers(host, start - timedelta(days=1), end, None)
    assert not read.answers(host, start, end, "uid")


def test_the_busy_reads_are_compiled_once():
    """Every shape of GET /slots' statement and of the busy read has a SQL cache key: one
    without (a construct SQLAlchemy cannot key, `LongerThanAllowed` once) is compiled afresh on
    every execution, ~9-12 ms a request."""
    from itertools import product

    from bookable.slots.service import _busy_statement, _slots_statement

    for admin, by_slug, ignoring, dialect in product(
        (False, True), (False, True), (False, True), ("sqlite", "postgresql")
    ):
        statement = _slots_statement(
            admin=admin, by_slug=by_slug, ignoring=ignoring, dialect=dialect
        )
        assert statement._generate_cache_key() is not None
    for pending_blocks, ignoring, identified in product((False, True), repeat=3):
        statement = _busy_statement(
            pending_blocks=pending_blocks, ignoring=ignoring, identified=identified
        )
        assert statement._generate_cache_key() is not None


async def test_slots_on_postgresql_end_without_the_sessions_commit(app, client, alice):
    """GET /slots reads statement by statement on PostgreSQL (AUTOCOMMIT): every statement
    committed itself, so the request's session ends without a COMMIT of its own (SQLite keeps
    its transaction and commits it)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    await add_schedule(app, alice.id, "Europe/Berlin")
    event_type = await add_event_type(app, alice.id)
    params = {"eventTypeId": event_type, "startTime": "2026-12-01", "endTime": "2026-12-01"}
    commits: list[Session] = []

    def committed(session: Session) -> None:
        commits.append(session)

    event.listen(Session, "after_commit", committed)
    try:
        r = await slots(client, alice, **params)
    finally:
        event.remove(Session, "after_commit", committed)
    assert r.status_code == 200, r.text
    assert len(r.json()["slots"]["2026-12-01"]) == 16
    postgresql = app.state.engine.dialect.name == "postgresql"
    assert len(commits) == (0 if postgresql else 1)


async def test_a_read_statement_by_statement_commits_what_is_not_committed_yet(app, alice):
    """The session of a request that read statement by statement still commits when its work
    is not all committed yet: an ORM change waiting for its flush, or statements run after a
    commit in between (a new transaction, on another connection)."""
    from sqlalchemy import event, select
    from sqlalchemy.orm import Session
    from starlette.requests import Request

    from bookable.core.db import read_statement_by_statement, request_session
    from bookable.models import Schedule

    request = Request({"type": "http", "method": "GET", "app": app, "headers": []})
    commits: list[Session] = []

    def committed(session: Session) -> None:
        commits.append(session)

    event.listen(Session, "after_commit", committed)
    try:
        sessions = request_session(request)
        session = await anext(sessions)
        await read_statement_by_statement(session)
        session.add(Schedule(user_id=alice.id, name="Added", time_zone="UTC"))
        with pytest.raises(StopAsyncIteration):
            await anext(sessions)
        sessions = request_session(request)
        session = await anext(sessions)
        await read_statement_by_statement(session)
        await session.commit()
        await session.execute(select(Schedule.id))
        with pytest.raises(StopAsyncIteration):
            await anext(sessions)
    finally:
        event.remove(Session, "after_commit", committed)
    assert len(commits) == 3  # the first request's, the second's own and its last
    async with app.state.sessions() as session:
        names = (await session.scalars(select(Schedule.name))).all()
    assert names == ["Added"]
