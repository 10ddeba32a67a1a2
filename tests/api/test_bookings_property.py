"""Property, over random weekly schedules, event types and existing bookings: every time GET /slots
offers can be booked, and a time it does not offer (in the same window) is refused."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from bookable.models import Booking, BookingStatus

from .scheduling_seed import add_booking, add_event_type, add_schedule

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday, 12:00 UTC
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata"]
DAYS = [
    date(2026, 1, 5),  # "now" falls on this day: past times and notice matter
    date(2026, 3, 8),  # New York springs forward
    date(2026, 3, 29),  # Berlin springs forward
    date(2026, 11, 1),  # New York falls back
    date(2026, 12, 1),
    date(2026, 12, 5),  # a Saturday
]
QUARTERS = 24 * 4


def _wall(quarter: int) -> time:
    # 24:00 is written 23:59, the schedules' "end of day".
    return time(23, 59) if quarter == QUARTERS else time(quarter // 4, quarter % 4 * 15)


@st.composite
def weekly_rules(draw) -> list[tuple[list[int], time, time]]:
    """Per weekday, none, one or two non-overlapping intervals on the quarter hour."""
    rules = []
    for weekday in range(7):
        count = draw(st.sampled_from([1, 1, 2, 0]))
        if count == 0:
            continue
        cuts = sorted(
            draw(
                st.lists(
                    st.integers(0, QUARTERS), min_size=2 * count, max_size=2 * count, unique=True
                )
            )
        )
        for start, end in zip(cuts[::2], cuts[1::2], strict=True):
            rules.append(([weekday], _wall(start), _wall(end)))
    return rules


@st.composite
def scenarios(draw) -> dict:
    zone = draw(st.sampled_from(ZONES))
    # The booker asks for one local day of their own zone.
    booker = draw(st.sampled_from([zone, *ZONES]))
    day = draw(st.sampled_from(DAYS))
    local_start = datetime.combine(day, time(0), ZoneInfo(booker)).astimezone(UTC)
    local_end = datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(booker))
    local_end = local_end.astimezone(UTC)
    window_minutes = int((local_end - local_start).total_seconds() // 60)
    busy = draw(
        st.lists(
            st.tuples(
                st.integers(0, window_minutes // 5 - 1),  # start, in 5-minute steps
                st.integers(3, 24),  # length, in 5-minute steps
                st.sampled_from(["plain", "this-type", "as-attendee"]),
            ),
            max_size=3,
        )
    )
    return {
        "zone": zone,
        "booker": booker,
        "day": day,
        "window": (local_start, local_end),
        "rules": draw(weekly_rules()),
        "event": {
            "length": draw(st.sampled_from([15, 20, 30, 45, 60, 90])),
            "slot_interval": draw(st.sampled_from([None, None, 10, 15, 30])),
            "before_event_buffer": draw(st.sampled_from([0, 0, 10])),
            "after_event_buffer": draw(st.sampled_from([0, 0, 15])),
            "minimum_booking_notice": draw(st.sampled_from([0, 0, 90])),
            **draw(st.sampled_from([{}, {}, {}, {"period_type": "ROLLING", "period_days": 120}])),
            **draw(
                st.sampled_from(
                    [
                        {},
                        {},
                        {},
                        {"booking_limits": {"PER_DAY": 1}},
                        {"booking_limits": {"PER_WEEK": 2}},
                        {"duration_limits": {"PER_DAY": 60}},
                    ]
                )
            ),
        },
        "busy": busy,
    }


async def _reset_bookings(app) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(delete(Booking))


async def _live_bookings(app) -> int:
    async with app.state.sessions() as session:
        query = select(func.count()).where(Booking.status != BookingStatus.CANCELLED)
        return int(await session.scalar(query.select_from(Booking)) or 0)


def _wire(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def app(make_settings):
    """One app (and one host) per test, its clock frozen; each example makes fresh rows."""
    from bookable.app import create_app

    application = create_app(make_settings(clock=NOW))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def serial() -> Iterator[int]:
    return itertools.count()


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios(), data=st.data())
async def test_offered_slots_book_and_other_times_are_refused(
    app, client, alice, bob, serial, scenario: dict, data: st.DataObject
):
    n = next(serial)
    await _reset_bookings(app)
    schedule = await add_schedule(
        app, alice.id, scenario["zone"], scenario["rules"], make_default=False
    )
    event_type = await add_event_type(
        app, alice.id, slug=f"prop-{n}", schedule_id=schedule, **scenario["event"]
    )
    window_start, window_end = scenario["window"]
    hosted: list[tuple[datetime, datetime]] = []
    for step, length, kind in scenario["busy"]:
        start = window_start + timedelta(minutes=5 * step)
        end = start + timedelta(minutes=5 * length)
        if any(s < end and start < e for s, e in hosted):
            continue  # PostgreSQL refuses overlapping accepted bookings of one host.
        hosted.append((start, end))
        if kind == "as-attendee":
            await add_booking(app, bob.id, start, end, attendees=[alice.email])
        else:
            await add_booking(
                app, alice.id, start, end,
                event_type_id=event_type if kind == "this-type" else None,
            )  # fmt: skip

    async def offered_times() -> tuple[list[str], set[datetime]]:
        r = await client.get(
            "/v1/slots",
            params={
                **alice.params, "eventTypeId": event_type, "timeZone": scenario["booker"],
                "startTime": scenario["day"].isoformat(), "endTime": scenario["day"].isoformat(),
            },
        )  # fmt: skip
        assert r.status_code == 200, r.text
        texts = [s["time"] for day in r.json()["slots"].values() for s in day]
        instants = {datetime.fromisoformat(t).astimezone(UTC) for t in texts}
        assert all(window_start <= t < window_end for t in instants)
        return texts, instants

    offered_text, offered = await offered_times()
    event("slots offered" if offered else "no slot offered")
    live = await _live_bookings(app)

    # Book a few offered times; all but the last are cancelled again, freeing their slot.
    picks = (
        data.draw(st.lists(st.sampled_from(sorted(offered_text)), max_size=3, unique=True))
        if offered_text
        else []
    )
    kept: datetime | None = None
    for i, text in enumerate(picks):
        body = {
            "eventTypeId": event_type, "start": text, "timeZone": scenario["booker"],
            "responses": {"name": "Prop", "email": f"p{n}@example.com"},
        }  # fmt: skip
        r = await client.post("/v1/bookings", params=alice.params, json=body)
        assert r.status_code == 200, (text, r.text)
        assert r.json()["status"] == "ACCEPTED"
        assert datetime.fromisoformat(r.json()["startTime"]) == datetime.fromisoformat(text)
        if i == len(picks) - 1:
            kept = datetime.fromisoformat(text).astimezone(UTC)
            live += 1
        else:
            cancel = await client.delete(f"/v1/bookings/{r.json()['id']}", params=alice.params)
            assert cancel.status_code == 200, cancel.text
    if kept is not None:
        # The kept booking takes its slot (and maybe neighbours); nothing new appears.
        _texts, after = await offered_times()
        assert kept not in after
        assert after <= offered
        offered = after

    minutes = int((window_end - window_start).total_seconds() // 60)
    others = [
        window_start + timedelta(minutes=m)
        for m in range(0, minutes, 5)
        if window_start + timedelta(minutes=m) not in offered
    ]
    # Half the time a time close to an offered or booked one: taken, off the grid, past the hours.
    anchors = offered | ({kept} if kept else set())
    near = [t for t in others if any(abs(t - a) <= timedelta(minutes=60) for a in anchors)]
    if near and data.draw(st.booleans()):
        others = near
    if others:
        refused = data.draw(st.sampled_from(others))
        body = {
            "eventTypeId": event_type, "start": _wire(refused), "timeZone": "UTC",
            "responses": {"name": "Prop", "email": f"q{n}@example.com"},
        }  # fmt: skip
        r = await client.post("/v1/bookings", params=alice.params, json=body)
        assert r.status_code in (400, 409), (_wire(refused), r.status_code, r.text)
        assert r.json()["reason"]
        event(f"refused: {r.json()['message']}")
    assert await _live_bookings(app) == live
