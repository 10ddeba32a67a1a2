"""Properties of compute_slots over random hours, zones, DST windows, busy time and rules.

Deterministic: hypothesis runs derandomized with a fixed number of examples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookable.scheduling import (
    AvailabilityRule,
    BookingWindow,
    BusyTime,
    EventRules,
    HostCalendar,
    PeriodType,
    SchedulingKind,
    SeatedBooking,
    Slot,
    SlotRequest,
    TeamHost,
    compute_slots,
    compute_team_slots,
    working_ranges,
)
from bookable.scheduling.intervals import Interval

DETERMINISTIC = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ZONES = [
    ZoneInfo(name)
    for name in (
        "America/New_York",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "UTC",
    )
]
# DST transitions of 2026 (New York, Berlin, Lord Howe) and one ordinary date.
BASE_DATES = [
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 6, 15),
]
LENGTHS = [5, 15, 20, 25, 30, 45, 50, 60, 90, 120]
MINUTES = [0, 0, 0, 5, 10, 15, 20, 30, 45]


@st.composite
def wall_times(draw: st.DrawFn) -> tuple[time, time]:
    start = time(draw(st.integers(0, 23)), draw(st.sampled_from(MINUTES)))
    kind = draw(st.sampled_from(["later", "later", "later", "2359", "0000"]))
    if kind == "2359":
        return start, time(23, 59)
    if kind == "0000":
        return start, time(0, 0)
    minutes = start.hour * 60 + start.minute + draw(st.sampled_from([180, 480, 60, 15, 600]))
    minutes = min(minutes, 23 * 60 + 45)
    return start, time(minutes // 60, minutes % 60)


@st.composite
def availability(draw: st.DrawFn, around: date) -> tuple[AvailabilityRule, ...]:
    rules: list[AvailabilityRule] = []
    for _ in range(draw(st.integers(1, 4))):
        days = draw(st.frozensets(st.integers(0, 6), min_size=1))
        start, end = draw(wall_times())
        rules.append(AvailabilityRule(days, start, end))
    for _ in range(draw(st.integers(0, 2))):
        on = around + timedelta(days=draw(st.integers(-2, 5)))
        if draw(st.booleans()):
            rules.append(AvailabilityRule(frozenset(), time(0), time(0), on))
        else:
            start, end = draw(wall_times())
            rules.append(AvailabilityRule(frozenset(), start, end, on))
    return tuple(rules)


@st.composite
def busy_times(draw: st.DrawFn, start: datetime) -> BusyTime:
    begin = start + timedelta(minutes=draw(st.integers(-24 * 60, 5 * 24 * 60)))
    return BusyTime(
        begin,
        begin + timedelta(minutes=draw(st.integers(5, 600))),
        draw(st.sampled_from([0, 0, 5, 15, 30])),
        draw(st.sampled_from([0, 0, 5, 15, 30])),
    )


@st.composite
def booking_windows(draw: st.DrawFn, around: date) -> BookingWindow:
    kind = draw(st.sampled_from(list(PeriodType)))
    if kind == PeriodType.ROLLING:
        return BookingWindow(
            kind, days=draw(st.sampled_from([3, 5, 1, 0])), count_calendar_days=draw(st.booleans())
        )
    if kind == PeriodType.ROLLING_WINDOW:
        return BookingWindow(kind, days=draw(st.integers(1, 4)))
    if kind == PeriodType.RANGE:
        first = around + timedelta(days=draw(st.integers(-2, 2)))
        return BookingWindow(
            kind, start_date=first, end_date=first + timedelta(days=draw(st.integers(0, 3)))
        )
    return BookingWindow()


@dataclass(frozen=True)
class Scenario:
    event: EventRules
    host: HostCalendar
    request: SlotRequest

    @property
    def length(self) -> int:
        return self.request.duration or self.event.length


@st.composite
def scenarios(draw: st.DrawFn, *, with_window: bool = True, with_first: bool = True) -> Scenario:
    zone = draw(st.sampled_from(ZONES))
    around = draw(st.sampled_from(BASE_DATES)) + timedelta(days=draw(st.integers(-2, 1)))
    start_zone = draw(st.sampled_from([zone, ZoneInfo("UTC")]))
    start = datetime.combine(
        around, time(draw(st.integers(0, 23)), draw(st.sampled_from(MINUTES))), tzinfo=start_zone
    ).astimezone(UTC)
    end = start + timedelta(minutes=draw(st.sampled_from([24, 48, 96, 2, 12])) * 60)
    end += timedelta(minutes=draw(st.integers(-60, 60)))
    # Mostly before the request (the usual case), sometimes inside or after it.
    now = start - timedelta(
        hours=draw(st.sampled_from([0, 6, 24, 48, 72, -6, -24])), minutes=draw(st.integers(0, 59))
    )
    event = EventRules(
        length=draw(st.sampled_from(LENGTHS)),
        slot_interval=draw(st.sampled_from([None, None, 7, 10, 15, 30, 60])),
        minimum_booking_notice=draw(st.sampled_from([0, 0, 30, 120, 24 * 60])),
        before_event_buffer=draw(st.sampled_from([0, 0, 10, 15])),
        after_event_buffer=draw(st.sampled_from([0, 0, 10, 15])),
        offset_start=draw(st.sampled_from([0, 0, 0, 5])),
        window=draw(booking_windows(around)) if with_window else BookingWindow(),
        only_show_first_available_slot=with_first and draw(st.booleans()),
    )
    host = HostCalendar(
        zone=zone,
        rules=draw(availability(around)),
        busy=tuple(draw(st.lists(busy_times(start), max_size=5))),
        week_start=draw(st.integers(0, 6)),
    )
    request = SlotRequest(
        start,
        end,
        now,
        draw(st.sampled_from(ZONES)),
        draw(st.sampled_from([None, None, None, 30, 60])),
    )
    return Scenario(event, host, request)


def widened(busy: BusyTime, event: EventRules) -> Interval:
    return Interval(
        busy.start - timedelta(minutes=busy.before_buffer + event.after_event_buffer),
        busy.end + timedelta(minutes=busy.after_buffer + event.before_event_buffer),
    )


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def business_days_after(day: date, count: int) -> date:
    while count > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def booking_window_end(window: BookingWindow, zone: ZoneInfo, now: datetime) -> datetime | None:
    today = now.astimezone(zone).date()
    if window.type == PeriodType.ROLLING and window.days is not None:
        last = (
            today + timedelta(days=window.days)
            if window.count_calendar_days
            else business_days_after(today, window.days)
        )
        return midnight(last + timedelta(days=1), zone)
    if window.type == PeriodType.RANGE and window.end_date is not None:
        return midnight(window.end_date + timedelta(days=1), zone)
    return None


def local_dates(slots: list[Slot], zone: ZoneInfo) -> list[date]:
    return [s.start.astimezone(zone).date() for s in slots]


@DETERMINISTIC
@given(scenarios())
def test_every_slot_obeys_every_rule(scenario: Scenario) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    slots = compute_slots(event, host, request)
    working = working_ranges(host.rules, host.zone, request.start, request.end)
    busy = [widened(b, event) for b in host.busy]
    earliest = request.now + timedelta(minutes=event.minimum_booking_notice)
    window_end = booking_window_end(event.window, host.zone, request.now)

    starts = [s.start for s in slots]
    assert starts == sorted(set(starts)), "sorted and unique"
    for slot in slots:
        assert slot.end - slot.start == timedelta(minutes=scenario.length)
        assert request.start <= slot.start and slot.end <= request.end
        assert slot.start >= earliest
        assert any(r.contains(Interval(slot.start, slot.end)) for r in working), slot
        assert not any(b.overlaps(Interval(slot.start, slot.end)) for b in busy), slot
        assert slot.attendees is None and slot.booking_uid is None
        if window_end is not None:
            assert slot.end <= window_end
        if event.window.type == PeriodType.RANGE and event.window.start_date is not None:
            assert slot.start >= midnight(event.window.start_date, host.zone)


@DETERMINISTIC
@given(scenarios(with_first=False))
def test_rolling_window_keeps_the_first_days_with_slots(scenario: Scenario) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    slots = compute_slots(event, host, request)
    if event.window.type != PeriodType.ROLLING_WINDOW:
        return
    days = event.window.days or 0
    today = request.now.astimezone(host.zone).date()
    unlimited = replace(event, window=BookingWindow())
    everything = compute_slots(unlimited, host, request)
    from_now = compute_slots(
        unlimited, host, replace(request, start=min(request.now, request.start))
    )
    open_days = sorted({d for d in local_dates(everything + from_now, host.zone) if d >= today})
    keep = set(open_days[:days])
    assert slots == [s for s in everything if s.start.astimezone(host.zone).date() in keep]
    assert len(set(local_dates(slots, host.zone))) <= days


@DETERMINISTIC
@given(scenarios(with_window=False, with_first=False))
def test_first_available_slot_is_the_first_of_each_booker_date(scenario: Scenario) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    every = compute_slots(event, host, request)
    firsts = compute_slots(replace(event, only_show_first_available_slot=True), host, request)
    zone = request.booker_zone
    expected: dict[date, Slot] = {}
    for slot in every:
        expected.setdefault(slot.start.astimezone(zone).date(), slot)
    assert firsts == list(expected.values())


@DETERMINISTIC
@given(scenarios(with_first=False), st.data())
def test_more_busy_time_never_adds_a_slot(scenario: Scenario, data: st.DataObject) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    if event.window.type == PeriodType.ROLLING_WINDOW:
        # Only days with slots count, so a busy day legitimately lets a later day in.
        event = replace(event, window=BookingWindow())
    before = compute_slots(event, host, request)
    extra = data.draw(busy_times(request.start))
    after = compute_slots(event, replace(host, busy=(*host.busy, extra)), request)
    assert set(after) <= set(before)
    assert not any(widened(extra, event).overlaps(Interval(s.start, s.end)) for s in after)


@DETERMINISTIC
@given(scenarios(with_window=False, with_first=False))
def test_booker_zone_does_not_change_the_instants(scenario: Scenario) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    reference = compute_slots(event, host, replace(request, booker_zone=ZoneInfo("UTC")))
    for zone in ZONES:
        assert compute_slots(event, host, replace(request, booker_zone=zone)) == reference


@DETERMINISTIC
@given(scenarios(with_window=False, with_first=False), st.data())
def test_seated_bookings_block_others_and_keep_open_seats(
    scenario: Scenario, data: st.DataObject
) -> None:
    event, host, request = scenario.event, scenario.host, scenario.request
    seats = data.draw(st.integers(1, 3))
    event = replace(event, seats_per_time_slot=seats)
    plain = compute_slots(event, host, request)
    duration = timedelta(minutes=scenario.length)
    candidates = [s.start for s in plain] or [request.start]
    seated = tuple(
        SeatedBooking(begin, begin + duration, f"uid-{n}", data.draw(st.integers(1, seats)))
        for n, begin in enumerate(
            sorted(set(data.draw(st.lists(st.sampled_from(candidates), max_size=3))))
        )
    )
    slots = compute_slots(event, replace(host, seated=seated), request)
    by_start = {b.start: b for b in seated}
    for slot in slots:
        interval = Interval(slot.start, slot.end)
        own = by_start.get(slot.start)
        if own is not None:
            assert own.attendees < seats
            assert (slot.attendees, slot.booking_uid) == (own.attendees, own.uid)
        else:
            assert slot.attendees is None and slot.booking_uid is None
        for booking in seated:
            if booking is not own:
                blocked = widened(
                    BusyTime(
                        booking.start,
                        booking.end,
                        event.before_event_buffer,
                        event.after_event_buffer,
                    ),
                    event,
                )
                assert not blocked.overlaps(interval), (slot, booking)
    # Seated bookings only take slots away, except their own open ones.
    assert {s.start for s in slots} - {s.start for s in plain} <= {
        b.start for b in seated if b.attendees < seats
    }


@DETERMINISTIC
@given(scenarios(with_window=False, with_first=False), st.data())
def test_the_instants_offered_do_not_depend_on_the_window_asked(
    scenario: Scenario, data: st.DataObject
) -> None:
    """A slot offered for a long window is offered for any shorter window that holds it, and
    the other way round: booking checks ask for exactly the slot and must agree with /slots."""
    event, host, request = scenario.event, scenario.host, scenario.request
    whole = compute_slots(event, host, request)
    span_minutes = int((request.end - request.start).total_seconds() // 60)
    cut = request.start + timedelta(minutes=data.draw(st.integers(1, max(span_minutes - 1, 1))))
    for part in (replace(request, end=cut), replace(request, start=cut)):
        if part.end <= part.start:
            continue
        inside = [s for s in whole if part.start <= s.start and s.end <= part.end]
        assert compute_slots(event, host, part) == inside
    for slot in whole[:5]:
        alone = compute_slots(event, host, replace(request, start=slot.start, end=slot.end))
        assert alone == [slot]


@given(scenarios(), st.data())
def test_unbuffered_busy_times_block_as_their_busy_times_do(
    scenario: Scenario, data: st.DataObject
) -> None:
    """`HostCalendar.unbuffered` (GET /slots' bookings without buffers, as plain pairs) blocks
    exactly as the same times as `BusyTime`s in ``busy``, beside buffered ones and under the
    queried event's own buffers, for teams too."""
    event, host, request = scenario.event, scenario.host, scenario.request
    plain = [
        BusyTime(b.start, b.end) for b in data.draw(st.lists(busy_times(request.start), max_size=8))
    ]
    as_busy = replace(host, busy=(*host.busy, *plain))
    as_pairs = replace(host, unbuffered=tuple((b.start, b.end) for b in plain))
    assert compute_slots(event, as_pairs, request) == compute_slots(event, as_busy, request)
    for kind in SchedulingKind:
        hosts = [TeamHost(1, as_busy, fixed=True), TeamHost(2, scenario.host, fixed=False)]
        paired = [TeamHost(1, as_pairs, fixed=True), TeamHost(2, scenario.host, fixed=False)]
        assert compute_team_slots(event, paired, kind, request) == compute_team_slots(
            event, hosts, kind, request
        )
