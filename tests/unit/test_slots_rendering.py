"""GET /slots' rendering: without a time zone each time is `format_instant`'s text, which the
slots path builds its own faster way."""

from datetime import UTC, datetime, timedelta

from bookable.core.schemas import format_instant
from bookable.scheduling import Slot
from bookable.slots.schemas import slots_json


def test_utc_times_are_format_instants_text_grouped_by_their_utc_date() -> None:
    starts = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 30, 0, 1500, tzinfo=UTC),
        datetime(1000, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 10, 25, 23, 59, 59, 999, tzinfo=UTC),
        datetime(9999, 12, 31, 22, tzinfo=UTC),
    ]
    body = slots_json([Slot(s, s + timedelta(minutes=30)) for s in starts], None)
    assert body == {"slots": {s.date().isoformat(): [{"time": format_instant(s)}] for s in starts}}
    assert body["slots"]["2026-03-29"] == [{"time": "2026-03-29T01:30:05.123Z"}]
