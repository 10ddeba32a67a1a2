"""What the email dispatcher's rendering costs: `render_stored` over a booking's two emails, in
process, for many bookings like `bench/bookings.py`'s (a host in Europe/London, a booker in
UTC, 5-minute slots over many days, a fresh change each: its invitation built once, shared
by its two emails).

    .venv/bin/python bench/render_emails.py [--bookings 500] [--mode time|bytecodes|profile]
    PYTHONPATH=/tmp/base/src .venv/bin/python bench/render_emails.py ...   # another version

``time``: CPU µs per email (process time), the median of ``--rounds`` rounds over fresh
bookings (the caches warm, as in a running worker). ``bytecodes``: Python bytecodes executed
per email (a trace function, as `bench/booking_instructions.py --bytecodes`; load-independent),
and the functions that ran the most. ``profile``: cProfile, sorted by own time. ``build``:
the rounds' rows made, none rendered: for instruction counts by difference (valgrind, see
bench/README.md, "Issue 15 round 10, hv").
The facts go through JSON first, as the outbox row's column returns them.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bookable
from _bytecodes import BytecodeCounter
from bookable.calendars.ical import ItipMethod
from bookable.notifications.messages import (
    BookingMail,
    MailKind,
    Party,
    mail_facts,
    render_stored,
    stored_facts,
)

try:
    from bookable.notifications.messages import SharedByChange
except ImportError:  # a version before round 11
    SharedByChange = None  # type: ignore[assignment,misc]

SENDER = "Bookable <bookings@bookable.test>"
FIRST_DAY = datetime(2027, 3, 1, tzinfo=UTC)
SPREAD_DAYS = 365  # as bench/bookings.py: a booking's day is one of a year's, dealt in turn
STEP = timedelta(minutes=5)


def booking_rows(number: int) -> list[tuple[dict[str, Any], str, str]]:
    """A booking's two outbox rows: (facts as read back from JSON, kind, message id)."""
    host = Party(f"Web{number % 60}", f"web{number % 60}-a1b2c3d4@example.com", "Europe/London")
    booker = Party("Guest", f"guest{number}@example.com", "UTC")
    start = FIRST_DAY + timedelta(days=number % SPREAD_DAYS) + STEP * (number // SPREAD_DAYS)
    uid = f"{number:08d}Qx2bk7"
    mail = BookingMail(
        booking_id=number,
        booking_uid=uid,
        ical_uid=f"{uid}@bookable",
        sequence=0,
        title=f"Bench between {host.name} and {booker.name}",
        start=start,
        end=start + STEP,
        organizer=host,
        hosts=(host,),
        attendees=(booker,),
    )
    shared = mail_facts(mail)
    stamp = datetime(2026, 12, 7, 1, 0, tzinfo=UTC) + timedelta(milliseconds=number)
    rows = []
    for kind, recipient in ((MailKind.ATTENDEE_CONFIRMED, booker), (MailKind.HOST_NEW, host)):
        facts = stored_facts(shared, recipient, sender=SENDER, stamp=stamp, change=f"c{number}")
        message_id = f"{uid}.{kind.value}.{number}@bookable.test"
        rows.append((json.loads(json.dumps(facts)), kind.value, message_id))
    return rows


def render_all(rows: list[tuple[dict[str, Any], str, str]]) -> int:
    """As the dispatcher renders them: the rows of one change share what it shares."""
    if SharedByChange is None:  # an older version: the invitations only
        invitations: dict[str, dict[ItipMethod, bytes]] = {}
        size = 0
        for facts, kind, message_id in rows:
            shared = invitations.setdefault(facts["change"], {})
            size += len(render_stored(facts, kind, message_id, invitations=shared).message)
        return size
    by_change: dict[str, Any] = {}
    size = 0
    for facts, kind, message_id in rows:
        if (change := by_change.get(facts["change"])) is None:
            change = by_change[facts["change"]] = SharedByChange()
        size += len(render_stored(facts, kind, message_id, shared=change).message)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bookings", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--mode", choices=["time", "bytecodes", "profile", "build"], default="time")
    parser.add_argument("--functions", type=int, default=25)
    args = parser.parse_args()
    print(f"# {bookable.__file__}", file=sys.stderr)
    numbers = iter(range(10**9))

    def fresh() -> list[tuple[dict[str, Any], str, str]]:
        return [row for _ in range(args.bookings) for row in booking_rows(next(numbers))]

    render_all(fresh())  # warm: templates compiled, zones loaded, VTIMEZONEs of the year cached
    if args.mode == "build":  # the rows alone, to subtract from an instruction count of "time"
        for _ in range(args.rounds):
            fresh()
    elif args.mode == "time":
        per_email = []
        for _ in range(args.rounds):
            rows = fresh()
            began = time.process_time()
            render_all(rows)
            per_email.append((time.process_time() - began) / len(rows) * 1e6)
        print(f"CPU µs per email, median of {args.rounds}: {statistics.median(per_email):.1f}")
        print("rounds: " + " ".join(f"{value:.1f}" for value in per_email))
    elif args.mode == "bytecodes":
        rows = fresh()
        counter = BytecodeCounter()
        sys.settrace(counter.call)
        try:
            render_all(rows)
        finally:
            sys.settrace(None)
        total = sum(counter.by_code.values())
        print(f"bytecodes per email: {total / len(rows):.0f}")
        for code, count in counter.by_code.most_common(args.functions):
            where = f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_firstlineno}"
            print(f"  {count / len(rows):8.1f}  {code.co_name} ({where})")
    else:
        rows = fresh()
        profile = cProfile.Profile()
        profile.enable()
        render_all(rows)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.functions)


if __name__ == "__main__":
    main()
