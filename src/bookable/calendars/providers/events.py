"""Calendar data → busy times. Pure: no I/O.

The rules (Cal.com's bugs are the checklist, see `reference/calendars.md` §3, §6, §7):

- ``TRANSP:TRANSPARENT`` and Outlook's ``X-MICROSOFT-CDO-INTENDEDSTATUS:FREE`` /
  ``X-MICROSOFT-CDO-BUSYSTATUS:FREE`` do not block, unless ``rules.transparent_is_busy``
  (holiday feeds). ``STATUS:CANCELLED`` never blocks. An event the owner declined (their
  ATTENDEE's ``PARTSTAT=DECLINED``) does not block; one they have not answered or accepted
  tentatively (``NEEDS-ACTION``/``TENTATIVE``, or ``STATUS:TENTATIVE``) blocks only when
  ``rules.tentative_is_busy``.
- Recurrences are expanded here with `recurring_ical_events` (RRULE of any frequency, RDATE,
  EXDATE, RECURRENCE-ID overrides: a moved occurrence blocks only its new time). An occurrence
  that overlaps the range counts, also one that began before it.
- All-day (DATE) and floating times are read in ``rules.zone``, DST-correct with zoneinfo; the
  results are in UTC. Without DTEND: DURATION, else one day for an all-day event, else zero
  length, which blocks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from bookable.calendars.providers.base import BusyPeriod, BusyRules

# At most this many occurrences are expanded per read of one calendar (all its objects
# together). A month of a per-minute rule is 44,640 occurrences; a real calendar over a month
# has a few hundred. Past the cap the read fails (the host is then unavailable for the window,
# visibly) rather than exhausting memory or silently dropping busy times.
MAX_OCCURRENCES_PER_READ = 20_000

# dateutil walks a rule from its DTSTART whatever the range asked for, so a per-second or
# per-minute rule costs (time since DTSTART) / (its interval) steps, even for a short range.
# Such rules are counted before they are expanded, and refused past the budget.
FINE_UNIT_SECONDS = {"SECONDLY": 1, "MINUTELY": 60}

FREE_MARKERS = ("X-MICROSOFT-CDO-INTENDEDSTATUS", "X-MICROSOFT-CDO-BUSYSTATUS")
UNANSWERED = frozenset({"NEEDS-ACTION", "TENTATIVE"})


class UnreadableCalendarData(ValueError):
    """Calendar data that cannot be turned into busy times; ``str()`` says why."""


class TooManyOccurrences(UnreadableCalendarData):
    pass


@dataclass
class OccurrenceBudget:
    """How many occurrences one read may still expand (shared by the objects of a calendar)."""

    left: int = MAX_OCCURRENCES_PER_READ

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise TooManyOccurrences(
                f"more than {MAX_OCCURRENCES_PER_READ} event occurrences in the range read; "
                "a recurring event repeats too often (every minute or second?)"
            )


def _utc(moment: date | datetime, zone: ZoneInfo) -> datetime:
    """A DATE or DATE-TIME value as an aware UTC datetime; dates and floating times in ``zone``."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(0))
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _text(component: icalendar.cal.Component, name: str) -> str:
    value = component.get(name)
    return str(value).strip().upper() if value is not None else ""


def _address(value: object) -> str:
    return str(value).strip().lower().removeprefix("mailto:")


def _owner_answer(component: icalendar.cal.Component, owners: frozenset[str]) -> str | None:
    """The owner's PARTSTAT among the event's attendees (None: not invited, e.g. organizer)."""
    if not owners:
        return None
    organizer = component.get("ORGANIZER")
    attendees = component.get("ATTENDEE")
    if attendees is None:
        return None
    if not isinstance(attendees, list):
        attendees = [attendees]
    for attendee in attendees:
        if _address(attendee) in owners:
            params = getattr(attendee, "params", {})
            answer = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
            if organizer is not None and _address(organizer) in owners and answer in UNANSWERED:
                return None  # the owner organises it: their own event
            return answer
    return None


def blocks(component: icalendar.cal.Component, rules: BusyRules) -> bool:
    """Whether an event (one occurrence) makes its owner busy, by the rules above."""
    if _text(component, "STATUS") == "CANCELLED":
        return False
    free = _text(component, "TRANSP") == "TRANSPARENT" or any(
        _text(component, marker) == "FREE" for marker in FREE_MARKERS
    )
    if free and not rules.transparent_is_busy:
        return False
    owners = frozenset(_address(e) for e in rules.owner_emails)
    answer = _owner_answer(component, owners)
    if answer == "DECLINED":
        return False
    tentative = (
        answer in UNANSWERED
        or _text(component, "STATUS") == "TENTATIVE"
        or any(_text(component, marker) == "TENTATIVE" for marker in FREE_MARKERS)
    )
    return not (tentative and not rules.tentative_is_busy)


def _span(component: icalendar.cal.Component, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    if "DTSTART" not in component:
        return None
    start_value = component["DTSTART"].dt
    if "DTEND" in component:
        end_value = component["DTEND"].dt
    elif "DURATION" in component:
        end_value = start_value + component["DURATION"].dt
    elif not isinstance(start_value, datetime):
        end_value = start_value + timedelta(days=1)
    else:
        end_value = start_value
    return _utc(start_value, zone), _utc(end_value, zone)


def _first(rule: icalendar.prop.vRecur, name: str) -> object:
    values = rule.get(name)
    return values[0] if values else None


def _fine_rule_steps(calendar: icalendar.Calendar, until: datetime, zone: ZoneInfo) -> int:
    """How many steps dateutil takes for the calendar's per-second and per-minute rules up to
    ``until`` (the others are cheap enough not to count)."""
    steps = 0
    for event in calendar.walk("VEVENT"):
        rules = event.get("RRULE")
        for rule in rules if isinstance(rules, list) else [rules]:
            if rule is None or "DTSTART" not in event:
                continue
            unit = FINE_UNIT_SECONDS.get(str(_first(rule, "FREQ") or "").upper())
            if unit is None:
                continue
            count = _first(rule, "COUNT")
            if count is not None:
                steps += int(str(count))
                continue
            stop = until
            rule_until = _first(rule, "UNTIL")
            if isinstance(rule_until, date):
                stop = min(stop, _utc(rule_until, zone))
            interval = int(str(_first(rule, "INTERVAL") or 1))
            elapsed = (stop - _utc(event["DTSTART"].dt, zone)).total_seconds()
            steps += max(0, int(elapsed // (unit * max(interval, 1))) + 1)
    return steps


def busy_periods(
    text: str | bytes,
    start: datetime,
    end: datetime,
    rules: BusyRules,
    *,
    budget: OccurrenceBudget | None = None,
) -> list[BusyPeriod]:
    """The busy periods of the events in ``text`` (an iCalendar object or feed) that overlap
    [start, end), in UTC and in start order. Raises UnreadableCalendarData."""
    budget = budget if budget is not None else OccurrenceBudget()
    window_start, window_end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
    if window_end <= window_start:
        return []
    try:
        calendars = icalendar.Calendar.from_ical(text, multiple=True)
    except (ValueError, IndexError, KeyError) as error:
        raise UnreadableCalendarData(f"not iCalendar data: {error}") from None
    if not calendars:
        raise UnreadableCalendarData("not iCalendar data: no VCALENDAR")
    # The query is widened by a day on each side, in the host's zone, so all-day and floating
    # events (read in that zone) are all found; the exact overlap is checked after conversion.
    query_start = window_start.astimezone(rules.zone) - timedelta(days=1)
    query_end = window_end.astimezone(rules.zone) + timedelta(days=1)
    periods: dict[tuple[str, datetime, datetime], BusyPeriod] = {}
    for calendar in calendars:
        if calendar.name != "VCALENDAR":
            raise UnreadableCalendarData(f"expected a VCALENDAR, found {calendar.name}")
        try:
            if _fine_rule_steps(calendar, query_end.astimezone(UTC), rules.zone) > budget.left:
                budget.spend(budget.left + 1)  # raises TooManyOccurrences
            query = recurring_ical_events.of(calendar, components=["VEVENT"])
            occurrences = query.between(query_start, query_end)
            budget.spend(len(occurrences))
            for occurrence in occurrences:
                period = _period(occurrence, rules, window_start, window_end)
                if period is not None:
                    periods.setdefault((period.uid or "", period.start, period.end), period)
        except UnreadableCalendarData:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            raise UnreadableCalendarData(f"an event could not be expanded: {error}") from None
    return sorted(periods.values(), key=lambda p: (p.start, p.end, p.uid or ""))


def _period(
    occurrence: icalendar.cal.Component,
    rules: BusyRules,
    window_start: datetime,
    window_end: datetime,
) -> BusyPeriod | None:
    if not blocks(occurrence, rules):
        return None
    span = _span(occurrence, rules.zone)
    if span is None:
        return None
    start, end = span
    if end <= start or end <= window_start or start >= window_end:
        return None
    uid = occurrence.get("UID")
    return BusyPeriod(start=start, end=end, uid=str(uid) if uid is not None else None)
