"""`bookable serve`'s outbox dispatchers in a process of their own, its child.

Why a process: the dispatchers' work (rendering each booking's two emails, writing them, the
claims and records, webhook and calendar requests) is Python CPU. Inline, it shares the API's
thread and interpreter lock, and every request waits behind it; in a second process it runs on
another core, as a separate `bookable worker` does (bench/README.md, issue 15 round 13: the
figures of `serve` as shipped, inline and beside a worker). With
``BOOKABLE_WEBHOOK_DISPATCHER=auto`` (the default) `serve` does this on PostgreSQL when the
process may use two CPUs or more (its affinity, and its cgroup's CPU quota: a container's
``--cpus``). Otherwise the dispatchers stay inline: on one CPU a second process would only add
~100 MB and context switches; on SQLite the two processes contend for the database's one write
lock (the child retries BEGIN IMMEDIATE, serve's requests sleep in SQLite's busy handler),
where in one process the writers queue in turn (`core.db.WriteGate`): with the child, one
client made 158 bookings/s against 220 inline, and the child fell 2,378 emails behind
(round 13).

The child is `bookable worker --serve-child`: the same dispatchers as `bookable worker`, with
three differences that make it part of `serve` rather than a service of its own:

- **Woken at once.** `serve` keeps a pipe to the child's stdin; a commit that wrote outbox rows
  writes a byte naming the outbox (`WAKE_CODES`), and the child wakes that dispatcher, as the
  in-process commit hook does inline (on SQLite nothing else would wake it before its poll; on
  PostgreSQL the NOTIFY also does). A full pipe drops the byte: the child has wake-ups to read.
- **It lives and dies with `serve`.** On Linux the kernel kills it when `serve` dies
  (``PR_SET_PDEATHSIG``), as a single process would have died whole: the rows it had claimed
  are taken again after their lease. Elsewhere, end of file on the pipe stops it at once.
  `serve` stops it last, after the requests in flight (it is in a session of its own, so a
  terminal's Ctrl-C or a SIGTERM to `serve`'s process group reaches `serve` alone), with the
  same graceful stop as a worker's (claimed rows released).
- **Restarted.** If it exits while `serve` runs, `serve` logs it and starts another after a
  growing wait (`RESTART_DELAYS`); `/readyz` says ``not running: dispatcher process`` meanwhile.

With ``serve --workers N`` one child serves all N processes; the API processes (spawned by
uvicorn) have no pipe, so on SQLite their rows wait for the child's poll
(``BOOKABLE_WEBHOOK_POLL_INTERVAL``), on PostgreSQL the NOTIFY wakes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

# Nothing heavier at import: the CLI reads `dispatcher_place` before prometheus_client may be
# imported (bookable.cli, metrics).

log = logging.getLogger("bookable.serve")

# The byte a commit writes into the pipe for each outbox.
WAKE_CODES: dict[str, int] = {"webhook": ord("w"), "calendar": ord("c"), "email": ord("e")}
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before restart 1, 2, ...; the last repeats
STEADY_SECONDS = 60.0  # a child that ran this long starts the delays afresh when it dies
# How long `stop` waits for the child's graceful stop (its in-flight deliveries get
# core.dispatch.STOP_GRACE, 2 s, then it records them) before it kills it.
STOP_TIMEOUT = 12.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h

DispatcherPlace = Literal["process", "inline", "off"]


# Linux's CPU quota of this process's cgroup (a container's `--cpus`): v2, then v1.
CPU_QUOTA_FILES = (
    (Path("/sys/fs/cgroup/cpu.max"), None),
    (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")),
)


def usable_cpus() -> int:
    """CPUs this process may use: those it may run on (its affinity), fewer under a cgroup CPU
    quota (a container started with ``--cpus 1`` sees every CPU of its host)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    for quota_file, period_file in CPU_QUOTA_FILES:
        try:
            quota = quota_file.read_text()
            period = period_file.read_text() if period_file is not None else None
        except OSError:
            continue
        if (limit := cpu_quota(quota, period)) is not None:
            return max(1, min(cpus, int(limit)))
        break
    return cpus


def cpu_quota(quota: str, period: str | None) -> float | None:
    """CPUs a cgroup's quota allows: v2's ``cpu.max`` ("max 100000", "150000 100000") when
    ``period`` is None, else v1's ``cfs_quota_us`` ("-1": none) and ``cfs_period_us``. None
    for no quota, or a file that does not read as one."""
    try:
        if period is None:
            limit, _, length = quota.strip().partition(" ")
            return None if limit == "max" else int(limit) / int(length)
        limit_us = int(quota.strip())
        return None if limit_us < 0 else limit_us / int(period.strip())
    except (ValueError, ZeroDivisionError):
        return None


def dispatcher_place(setting: str, *, cpus: int, sqlite: bool) -> DispatcherPlace:
    """Where `bookable serve` runs the dispatchers for ``BOOKABLE_WEBHOOK_DISPATCHER``: `auto`
    is `process` on PostgreSQL with two CPUs or more, else `inline` (see the module
    docstring: on SQLite a second process only contends for the one write lock)."""
    if setting == "auto":
        return "process" if cpus >= 2 and not sqlite else "inline"
    if setting in ("process", "inline", "off"):
        return setting  # type: ignore[return-value]
    raise ValueError(f"unknown dispatcher setting {setting!r}")


class DispatcherProcess:
    """Starts, wakes, restarts and stops `serve`'s dispatcher child. See the module docstring."""

    def __init__(self, command: Sequence[str], *, stdout: int | None = None) -> None:
        self.command = list(command)
        self.stdout = stdout  # where the child's stdout goes (serve's stdout carries the key)
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._removers: list[Callable[[], None]] = []
        self._alive = False

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and the thread that watches it. The thread starts every child: on
        Linux a child dies with the thread that made it (``PR_SET_PDEATHSIG``), and the thread
        lives until its last child has exited."""
        from bookable.core.dispatch import add_commit_listener

        for name, code in WAKE_CODES.items():
            self._removers.append(
                add_commit_listener(name, self._waker(code), dispatcher_running=lambda: self._alive)
            )
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._supervise, args=(started,), name="dispatcher-process", daemon=True
        )
        self._thread.start()
        started.wait()

    @property
    def alive(self) -> bool:
        """Started and not yet seen to exit. (Not ``Popen.poll``: it answers None while the
        watching thread waits on the process.)"""
        return self._alive

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> int | None:
        """Stop the child gracefully (SIGTERM; SIGKILL after `STOP_TIMEOUT`) and never start
        another. Returns its exit status (None if it never ran)."""
        self._stopping.set()
        for remove in self._removers:
            remove()
        self._removers.clear()
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        status: int | None = None
        if process is not None:
            try:
                status = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("dispatcher process did not stop within %g s; killing it", STOP_TIMEOUT)
                process.kill()
                status = process.wait()
        if self._thread is not None:
            self._thread.join()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        return status

    # --- waking -----------------------------------------------------------------------------

    def _waker(self, code: int) -> Callable[[], None]:
        byte = bytes([code])

        def wake() -> None:
            # Runs in the committing code: never blocks, never raises.
            with contextlib.suppress(OSError):  # BlockingIOError: unread wake-ups are there
                os.write(self._wake_write, byte)

        return wake

    # --- the child --------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "BOOKABLE_SERVE_PID": str(os.getpid())}
        return subprocess.Popen(
            self.command,
            stdin=self._wake_read,
            stdout=self.stdout,
            env=env,
            # Signals for serve's process group (Ctrl-C, a supervisor's SIGTERM) reach serve
            # only: it stops the child itself, after the requests in flight.
            start_new_session=True,
        )

    def _supervise(self, started: threading.Event) -> None:
        failures = 0
        first = True
        while True:
            with self._lock:
                if self._stopping.is_set():
                    started.set()
                    return
                began = time.monotonic()
                try:
                    self._process = self._spawn()
                    self._alive = True
                    self.restarts += not first
                    problem = None
                except OSError as error:  # no fork or exec now (memory, process limits)
                    problem = f"could not be started ({error.strerror or error})"
            if first:
                first = False
                started.set()
            if problem is None:
                assert self._process is not None
                problem = f"exited with status {self._process.wait()}"
                self._alive = False
            if self._stopping.is_set() or _serve_stopping():
                return
            failures = 0 if time.monotonic() - began >= STEADY_SECONDS else failures
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            log.warning("dispatcher process %s; starting another in %g s", problem, delay)
            if self._stopping.wait(delay) or _serve_stopping():
                return


def _serve_stopping() -> bool:
    from bookable.core.health import stopping

    return bool(stopping)


# The child of this process, while `bookable serve` runs one (for /readyz).
_current: DispatcherProcess | None = None


def current() -> DispatcherProcess | None:
    return _current


def set_current(process: DispatcherProcess | None) -> None:
    global _current
    _current = process


# --- in the child ---------------------------------------------------------------------------------


def die_with_parent() -> None:
    """In the child: be killed when `serve` dies (Linux), and exit at once if it already has."""
    parent = os.environ.get("BOOKABLE_SERVE_PID")
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Checked after asking: serve may have died before the request took effect.
    if parent is not None and str(os.getppid()) != parent:
        os._exit(1)


def watch_wake_pipe(
    fd: int, wake: Callable[[str], None], gone: Callable[[], None]
) -> Callable[[], None]:
    """In the child, on the running loop: call ``wake(outbox)`` for each outbox named in the
    pipe, ``gone()`` at its end (serve is gone). Returns a function that stops watching."""
    import asyncio

    loop = asyncio.get_running_loop()
    names = {code: name for name, code in WAKE_CODES.items()}
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            gone()
            return
        for code in set(data):
            if (name := names.get(code)) is not None:
                wake(name)

    loop.add_reader(fd, readable)
    return lambda: loop.remove_reader(fd)
