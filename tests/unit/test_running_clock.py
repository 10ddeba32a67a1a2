"""`RunningClock`: time passes from a frozen instant, and starts over when frozen again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bookable.core.clock import Clock
from bookable.core.dispatch import RunningClock

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PAUSE = 0.05


def test_a_running_clock_runs_on_from_the_frozen_instant() -> None:
    running = RunningClock(Clock(NOW))
    first = running.now()
    time.sleep(PAUSE)
    assert first - NOW < timedelta(seconds=PAUSE)
    assert running.now() - NOW >= timedelta(seconds=PAUSE)


def test_a_running_clock_starts_over_when_frozen_again_at_the_same_instant() -> None:
    # A second app in the same process freezes the shared clock at the same instant (the
    # tests do): its metrics must not count the time since the first app's reads.
    base = Clock(NOW)
    running = RunningClock(base)
    running.now()
    time.sleep(PAUSE)
    base.freeze(NOW)
    assert running.now() - NOW < timedelta(seconds=PAUSE)


def test_an_unfrozen_clock_is_the_wall_clock() -> None:
    before = datetime.now(UTC)
    now = RunningClock(Clock()).now()
    assert before <= now <= datetime.now(UTC)
