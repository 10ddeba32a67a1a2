"""`DispatcherProcess` with stand-in children (real processes, not `bookable worker`): restarts,
a child that cannot start, the stop, and the wake-up bytes of commits."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from bookable.core.dispatch import _WRITTEN, _wake_after_commit, dispatched_here
from bookable.dispatch_process import WAKE_CODES, DispatcherProcess, cpu_quota, usable_cpus
from bookable.settings import Settings, settings_problem

# A child that copies what it reads on stdin (serve's wake-up pipe) to a file, then exits at
# the pipe's end.
ECHO = (
    "import sys, os\n"
    "out = open(sys.argv[1], 'ab', 0)\n"
    "while data := os.read(0, 64):\n"
    "    out.write(data)\n"
)


def committed(*outboxes: str) -> Any:
    """A stand-in for a session whose commit wrote rows of ``outboxes``."""
    return SimpleNamespace(info={_WRITTEN: list(outboxes)})


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_child_that_dies_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    child = DispatcherProcess([sys.executable, "-c", "import time; time.sleep(60)"])
    child.start()
    try:
        first = child.pid
        assert first is not None and child.alive
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not child.alive, 5)
        wait_until(lambda: child.alive and child.pid != first, 5)  # after RESTART_DELAYS[0]
        assert child.restarts == 1
        assert "dispatcher process exited with status -9; starting another in 1 s" in caplog.text
    finally:
        assert child.stop() == -signal.SIGTERM
    assert not child.alive


def test_commits_leave_out_their_notify_only_while_the_child_runs() -> None:
    """While the child runs, serve's wake-up through the pipe reaches it and commits send no
    NOTIFY (`core.dispatch.dispatched_here`); while it is down (exited, restarting, stopped),
    they NOTIFY again, so that a `worker` or another process's dispatchers hear of the rows."""
    assert not any(map(dispatched_here, ("email", "webhook", "calendar")))
    child = DispatcherProcess([sys.executable, "-c", "import time; time.sleep(60)"])
    child.start()
    try:
        assert child.alive
        assert all(map(dispatched_here, ("email", "webhook", "calendar")))
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not child.alive, 5)
        assert not dispatched_here("email")
        wait_until(lambda: child.alive, 5)  # started again
        assert dispatched_here("email")
    finally:
        child.stop()
    assert not any(map(dispatched_here, ("email", "webhook", "calendar")))


def test_a_child_that_cannot_start_is_reported_and_tried_again(
    caplog: pytest.LogCaptureFixture, tmp_path: os.PathLike[str]
) -> None:
    caplog.set_level(logging.WARNING, "bookable.serve")
    child = DispatcherProcess([os.path.join(tmp_path, "missing")])
    child.start()
    wait_until(lambda: "could not be started" in caplog.text, 5)
    assert not child.alive
    assert child.stop() is None
    assert "starting another in 1 s" in caplog.text


def test_commits_wake_the_child_by_outbox(tmp_path: os.PathLike[str]) -> None:
    received = os.path.join(tmp_path, "received")
    child = DispatcherProcess([sys.executable, "-c", ECHO, received])
    child.start()
    try:
        # What the after_commit hook does for a session that wrote the email and webhook
        # outboxes (core.dispatch.mark_written).
        _wake_after_commit(committed("email", "webhook"))
        wait_until(lambda: os.path.exists(received) and len(open(received, "rb").read()) == 2)
        assert sorted(open(received, "rb").read()) == sorted(
            [WAKE_CODES["email"], WAKE_CODES["webhook"]]
        )
    finally:
        child.stop()
    # Stopped: its listeners are gone, a later commit writes nothing (and does not fail).
    _wake_after_commit(committed("email"))


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [
        ("max 100000\n", None, None),  # cgroup v2, no quota
        ("150000 100000\n", None, 1.5),
        ("400000 100000\n", None, 4.0),
        ("-1\n", "100000\n", None),  # cgroup v1, no quota
        ("50000\n", "100000\n", 0.5),
        ("200000\n", "100000\n", 2.0),
        ("garbage", None, None),
        ("100000 0", None, None),
    ],
)
def test_a_cgroup_cpu_quota_reads_as_cpus(
    quota: str, period: str | None, cpus: float | None
) -> None:
    assert cpu_quota(quota, period) == cpus


def test_usable_cpus_is_at_most_the_affinity() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_an_unknown_dispatcher_setting_is_named_in_one_line() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_dispatcher="everywhere")  # type: ignore[arg-type]
    assert settings_problem(refused.value) == (
        "BOOKABLE_WEBHOOK_DISPATCHER: Input should be 'auto', 'process', 'inline' or 'off'"
    )
