"""Server processes for the benchmarks: start, wait until up, stop, and how much memory they held.

`serving(...)` runs a server command (`bookable serve`, or uvicorn for a floor) in its own process
group with its output in a log file, waits until it answers, and at the end of the block reads
its resident memory (RSS) *before* stopping it: the process's VmRSS plus every descendant's (the
`--workers N` children), from /proc. `started(...)` and `stop(...)` are the same for processes
that do not listen (`bookable worker`). In-process benches report `own_rss()`.

Import it from a bench as ``import _server`` after putting this folder at the *end* of sys.path
(first, bench/http.py would shadow the standard library's `http`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
BOOKABLE = str(VENV_BIN / "bookable") if (VENV_BIN / "bookable").exists() else "bookable"
START_TIMEOUT = 60.0  # seconds; a loaded machine can take a while to import and migrate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any BOOKABLE_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKABLE_")}
    env.update(overrides)
    return env


def bench_database_url() -> str | None:
    """The PostgreSQL a bench may use (its tables are emptied): BOOKABLE_BENCH_DATABASE_URL,
    else BOOKABLE_TEST_DATABASE_URL; None when neither is set (SQLite only)."""
    return os.environ.get("BOOKABLE_BENCH_DATABASE_URL") or os.environ.get(
        "BOOKABLE_TEST_DATABASE_URL"
    )


def bookable_env(database_url: str, **overrides: str) -> dict[str, str]:
    """The settings every bench runs `bookable` with: rate limiting off, the rest as shipped."""
    return clean_env(BOOKABLE_DATABASE_URL=database_url, BOOKABLE_RATE_LIMIT="0", **overrides)


# --- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rss:
    """Resident memory of a process tree, as /proc reports it at one instant."""

    kib: int
    processes: int

    @property
    def mib(self) -> float:
        return self.kib / 1024

    def __str__(self) -> str:
        spread = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"{self.mib:.0f} MiB{spread}"


def _vm_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone, or no /proc (not Linux)
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])  # "VmRSS:   123456 kB"
    return None  # a zombie has no memory line


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_of_tree(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants; 0 where
    /proc cannot tell. Differences of two readings give a run's CPU per process."""
    return sum(s for p in (pid, *descendants(pid)) if (s := _cpu_seconds(p)) is not None)


def database_server_cpu() -> float:
    """CPU seconds used so far by the live processes named ``postgres`` (the local server's
    backends: one per pooled connection, so a run's difference is its database work)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                named = (entry / "comm").read_text().strip() == "postgres"
            except OSError:
                continue
            if named and (seconds := _cpu_seconds(int(entry.name))) is not None:
                total += seconds
    return total


def descendants(pid: int) -> list[int]:
    """The pids of every process under ``pid`` (children, theirs, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def rss_of_tree(pid: int) -> Rss | None:
    """VmRSS of ``pid`` plus all its descendants; None where /proc cannot tell."""
    sizes = [size for p in (pid, *descendants(pid)) if (size := _vm_rss_kib(p)) is not None]
    return Rss(sum(sizes), len(sizes)) if sizes else None


def own_rss() -> Rss | None:
    """This process's RSS alone (benches that run the app in process; their helper servers,
    such as Radicale, are children that do not count)."""
    size = _vm_rss_kib(os.getpid())
    return Rss(size, 1) if size is not None else None


def format_rss(rss: Rss | None) -> str:
    return str(rss) if rss is not None else "n/a"


# --- processes --------------------------------------------------------------------------------


def started(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a process group of its own, stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command), env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (children too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


@dataclass
class Running:
    """A started server: where it answers; after the block, its RSS at the end of the run."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    rss: Rss | None = None


def wait_until_up(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    others: Sequence[subprocess.Popen[bytes]],
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if any(p.poll() is not None for p in (process, *others)):
            raise SystemExit(f"a server process exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the server did not answer in {timeout:g} s:\n{log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.05)


@contextlib.contextmanager
def serving(
    command: Sequence[str],
    env: dict[str, str],
    log: Path,
    *,
    probe: str = "/v1/openapi.json",
    label: str = "",
    others: Sequence[subprocess.Popen[bytes]] = (),
    wrap: Sequence[str] = (),
) -> Iterator[Running]:
    """Run ``command --host 127.0.0.1 --port <free>`` until the block ends; yields `Running`.
    At the end its RSS (with children) is read, kept on the `Running` and, with a ``label``,
    printed to stderr; then it is stopped. ``others``: processes that must stay alive while
    it starts (workers). ``wrap``: a command the server runs under (valgrind), which also
    gives it ten times longer to start."""
    port = free_port()
    command = [*wrap, *command, "--host", "127.0.0.1", "--port", str(port)]
    process = started(command, env, log)
    running = Running(process, f"http://127.0.0.1:{port}", log)
    try:
        timeout = START_TIMEOUT * (10 if wrap else 1)
        wait_until_up(process, running.base_url + probe, log, others, timeout)
        yield running
        running.rss = rss_of_tree(process.pid)
        if label:
            print(f"# RSS of {label} after its run: {format_rss(running.rss)}", file=sys.stderr)
    finally:
        stop(process)


@contextlib.contextmanager
def bookable_serve(
    database_url: str, log: Path, *args: str, label: str = "bookable serve", **env: str
) -> Iterator[Running]:
    """`bookable serve *args` with `bookable_env(database_url, **env)`."""
    with serving(
        [BOOKABLE, "serve", *args], bookable_env(database_url, **env), log, label=label
    ) as running:
        yield running
