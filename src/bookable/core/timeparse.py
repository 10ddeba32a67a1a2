"""Reading the date and date-time strings clients send in query strings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class ParsedBound:
    instant: datetime
    date_only: bool


def parse_bound(value: str, zone: ZoneInfo, *, end_of_day: bool) -> ParsedBound:
    """An ISO date or date-time. A date alone is a whole local day in ``zone``: its start, or
    (``end_of_day``) the start of the next day. A date-time without an offset is read in ``zone``.
    Raises ValueError when the text is neither."""
    text = value.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        return ParsedBound(datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC), True)
    parsed = datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return ParsedBound(parsed.astimezone(UTC), False)
