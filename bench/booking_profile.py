"""Where a booking's CPU goes in `bookable serve` and in the lean floor's app, under one load.

    .venv/bin/python bench/booking_profile.py [--duration 15] [--mode noemail] [--clients 1]
        [--no-sqlite] [--raw DIR]

For each database (SQLite, and PostgreSQL when BOOKABLE_BENCH_DATABASE_URL is set: its tables
are emptied), the creation bench's deployment (`bench/bookings.py`: `serve` with
``--mode``'s emails, bookings of WEB_HOSTS hosts in turn, the raw keep-alive clients) and then
its lean floor (`bench/write_floor_app.py`) are loaded for ``--duration`` s each while py-spy
(`pip install py-spy`; it needs ptrace rights) samples the server process at 250 Hz, idle
time left out. Printed: the samples per booking in ms of each server, sorted into stages by
the deepest frame of the sample that names one (bookable: the event type statement, the busy
read, the insert, the session, the fast lane...; the lean app: its one function), and by the
layer the sampled code is in (the driver, SQLAlchemy, pydantic, the server, bookable...).
Sampling is not CPU accounting: the figures are shares of the samples scaled to ms. A thread
preempted while it holds the GIL is sampled where it stopped, and a write that wakes another
process (the database backend, the worker) is where the scheduler preempts it when the cores
are busy: with a `worker` beside `serve` on two cores, the BEGIN before the first statement (a
5-byte query) drew 0.83 ms of samples per booking against 0.21 without it. The creation bench's
CPU per process (from /proc) is the CPU; this says where it goes when the machine is quiet.
``--raw DIR`` keeps py-spy's collapsed stacks.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import _server  # noqa: E402
import bookings as bench  # noqa: E402
from _server import VENV_BIN  # noqa: E402

RATE = 250  # py-spy samples per second

# (stage, what a frame of it contains), matched from the sample's deepest frame up: a sample
# belongs to the first stage one of its frames names, so a statement's driver time counts in
# the step that ran the statement.
BOOKABLE_STAGES = [
    ("event type, owner, locks: 1 statement", "_event_type_and_owner (bookable/bookings/"),
    ("busy read and availability rules", "check (bookable/bookings/create.py"),
    ("booking + attendee (+ emails) INSERT", "insert (bookable/bookings/create.py"),
    ("emails planned", "notifications/outbox.py"),
    ("body to booker, times", "parse (bookable/bookings/create.py"),
    ("create_booking, the rest", "(bookable/bookings/create.py"),
    ("the answer", "(bookable/bookings/endpoints.py"),
    ("session: begin, commit, close", "request_session (bookable/core/db.py"),
    ("idempotency", "(bookable/core/idempotency.py"),
    ("fast lane: route, key, body, response", "(bookable/core/fastlane.py"),
    ("middleware: edge, errors, metrics", "(bookable/core/middleware.py"),
    ("access log", "logging"),
    ("uvicorn: HTTP, ASGI", "uvicorn/protocols"),
]
LEAN_STAGES = [
    ("the lean booking (all of it)", "lean_book"),
    ("starlette", "starlette/"),
    ("access log", "logging"),
    ("uvicorn: HTTP, ASGI", "uvicorn/protocols"),
]
# A thread's first frame (`bookable serve`'s script, `python -m uvicorn`, another thread).
ROOTS = ("<module>", "_run_module_as_main", "Thread._bootstrap")
LAYERS = [
    ("driver (asyncpg, sqlite3)", ("asyncpg/", "sqlite3/", "aiosqlite/")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("pydantic", ("pydantic",)),
    ("bookable / the lean app", ("bookable/", "bench_write_floor")),
    ("uvicorn, starlette, httptools", ("uvicorn/", "starlette/", "httptools")),
    ("logging", ("logging/",)),
    ("json", ("json/", "orjson")),
    ("asyncio", ("asyncio/", "uvloop")),
]


def py_spy() -> str:
    found = VENV_BIN / "py-spy"
    if found.exists():
        return str(found)
    if which := shutil.which("py-spy"):
        return which
    raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")


def sorted_samples(
    raw: Path, stages: list[tuple[str, str]]
) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples by stage, samples by layer) of py-spy's collapsed stacks."""
    total = 0
    by_stage: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        if not frames[0].startswith(ROOTS):
            # SQLAlchemy runs a statement in a greenlet of its own, whose stack py-spy shows
            # apart from the caller's: which step ran it is not in the sample.
            stage = "SQLAlchemy's greenlet: a statement (step unknown)"
        else:
            stage = next(
                (name for frame in reversed(frames) for name, mark in stages if mark in frame),
                "event loop, other",
            )
        by_stage[stage] += samples
        leaf = frames[-1]
        layer = next((name for name, marks in LAYERS if any(m in leaf for m in marks)), "other")
        by_layer[layer] += samples
    return total, by_stage, by_layer


async def sampled(
    base: str, booked: Iterator[bench.Booked], pid: int, seconds: float, raw: Path
) -> tuple[float, int]:
    """(bookings/s, bookings) over ``seconds`` while py-spy samples ``pid`` into ``raw``."""
    spy = await asyncio.create_subprocess_exec(
        py_spy(), "record", "-p", str(pid), "-r", str(RATE), "-f", "raw", "-o", str(raw),
        # --gil: samples of a thread holding the GIL only. py-spy's idle filter does not see
        # uvloop's wait in epoll nor aiosqlite's thread waiting for work, which it counted.
        "--gil", "--nonblocking", "-d", str(int(seconds + 3)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attached before the load starts
    # One booking of the first host only: the warm-up is the caller's.
    rate, statuses = await bench.http_rate(base, booked, args.clients, seconds, hosts=1)
    _out, err = await spy.communicate()
    if spy.returncode != 0:
        raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    if set(statuses) != {200}:
        raise SystemExit(f"answers: {dict(statuses)}")
    # The samples cover the load plus ~2 s idle (left out): per booking of the whole window.
    return rate, int(rate * seconds)


def report(title: str, raw: Path, bookings: int, stages: list[tuple[str, str]]) -> None:
    total, by_stage, by_layer = sorted_samples(raw, stages)
    per = 1000 / RATE / bookings
    print(f"\n# {title}: {total * per:.2f} ms of samples per booking ({bookings} bookings)")
    for name, samples in by_stage.most_common():
        print(f"  {samples * per:6.2f}  {name}")
    print("  by layer (the sampled code's package):")
    for name, samples in by_layer.most_common():
        print(f"  {samples * per:6.2f}  {name}")


async def profile(kind: str, pg_url: str | None, tmp: Path, keep: Path) -> None:
    async with bench.fresh_database(kind, pg_url, tmp) as url:
        engine = bench.create_engine(url)
        try:
            seed = await bench.seeded(engine, url, tmp)
            web_bookings, lean_bookings = seed.web_bookings, seed.lean_bookings
            bare, lean, lean_emails = seed.bare, seed.lean, seed.lean_emails
            mode = args.mode
            log, mail = tmp / f"serve-{kind}.log", tmp / f"mail-{kind}"
            with contextlib.ExitStack() as stack:
                floor = stack.enter_context(bench.bare_server(url, bare, lean, lean_emails, tmp))
                server, _rss, pids = stack.enter_context(bench.deployment(url, log, mode, mail))
                await bench.gather_statistics(engine)
                await bench.http_rate(
                    server.base_url, web_bookings, args.clients, 2, hosts=bench.WEB_HOSTS
                )
                await bench.gather_statistics(engine)
                raw = keep / f"serve-{kind}-{mode}.txt"
                rate, done = await sampled(
                    server.base_url, web_bookings, pids["serve"], args.duration, raw
                )
                report(f"{kind} {mode}: bookable serve, {rate:.1f}/s", raw, done, BOOKABLE_STAGES)
                lean_base = floor.base_url + ("/lean" if mode == "noemail" else "/lean-sending")
                await bench.http_rate(lean_base, lean_bookings, args.clients, 2)
                await bench.gather_statistics(engine)
                raw = keep / f"lean-{kind}-{mode}.txt"
                rate, done = await sampled(
                    lean_base, lean_bookings, floor.process.pid, args.duration, raw
                )
                report(f"{kind} {mode}: lean floor app, {rate:.1f}/s", raw, done, LEAN_STAGES)
        finally:
            await engine.dispose()


async def main() -> None:
    pg_url = _server.bench_database_url()
    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if pg_url else [])
    print(f"# {bench.describe()}; mode {args.mode}, {args.clients} client(s), {args.duration:g} s")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keep = args.raw or tmp
        keep.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            await profile(kind, pg_url, tmp, keep)


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--duration", type=float, default=15.0, help="seconds sampled per server")
parser.add_argument("--mode", choices=["inline", "worker", "noemail"], default="noemail")
parser.add_argument("--clients", type=int, default=1)
parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this folder")

if __name__ == "__main__":
    args = parser.parse_args()
    asyncio.run(main())
