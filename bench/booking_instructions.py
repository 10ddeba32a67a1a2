"""Instructions per booking (callgrind's Ir) of `bookable serve` and of the lean floor's app.

    .venv/bin/python bench/booking_instructions.py [--count 100] [--clients 1,8]
        [--mode noemail|inline|worker] [--no-sqlite] [--objects 8]
    .venv/bin/python bench/booking_instructions.py --bytecodes [--count 50] [--no-sqlite]

Why: on this two-core VM the CPU time of a booking moves with everything else the machine
does. The same code took 4.0 ms of `serve`'s CPU per booking with 1 client and 2.1 with 8
(round 8), and 6-7 ms while two helpers ran their tests beside it. valgrind's callgrind counts
the user-space instructions a process executes, which do not move with the load, the cache or
the clock: the same code, data and requests give the same count within a fraction of a per
cent. That makes it the measure for an A/B on a busy machine, and it tells more work from
dearer work (the 1-client case runs ~8 % more instructions than the 8-client one, not 90 %).
What it does not count: the kernel's work for the process (system calls, context switches;
`bench/bookings.py` prints each process's CPU from /proc, system time included) and the
database server's work (PostgreSQL's backends, which are not run under valgrind).

For each database (SQLite, and PostgreSQL when BOOKABLE_BENCH_DATABASE_URL is set: its tables
are emptied), the creation bench's deployment (`bench/bookings.py`: `serve` with ``--mode``'s
emails, beside a `worker` for ``worker``; bookings of WEB_HOSTS hosts in turn) and the lean
floor's app (`bench/write_floor_app.py`; with emails it writes PENDING rows, which the
deployment's dispatcher sends) all run under `valgrind --tool=callgrind --instr-atstart=no`.
For each number of clients, each server in turn: a warm-up, not counted (connections, caches,
statements prepared, 2 bookings a host); then every process's counters are zeroed and turned
on, ``--count`` bookings are posted by the raw keep-alive clients, the emails they made are
waited for until sent (``inline`` and ``worker``), and the counters are turned off and read:
a process's at the last answer, the one sending the emails' when they are sent (an idle
process's polls and timers while the emails go out are not the bookings' work).
Printed: millions of instructions per booking of each process while each server was loaded
(bookable: `serve`, and the `worker`; the lean floor: its app, and with emails the deployment's
process that sends them), bookable ÷ lean, and the
shared objects that executed the most (self instructions; Python code counts in the
interpreter's object, the compiled extensions apart: asyncpg's protocol, uvloop, pydantic's
core, SQLite, the C library).

``--bytecodes`` says where in the Python code the instructions are: both apps in this process
(`httpx.ASGITransport`, the settings of `bench/bookings.py --only cpu`: emails written PENDING,
no dispatcher; the lean floor's ``/lean-sending`` route, which writes its email rows PENDING
too), ``--count`` bookings each after a warm-up, with a trace function that counts the Python
bytecodes executed, by the package of their code (the client's, httpx's, left out). The count
does not move with the machine either; a bytecode's cost varies (a call into C counts one), so
it is a map of where the Python work is, and the instruction counts are its total. SQLite's
driver thread (aiosqlite) is not traced.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import httpx  # noqa: E402

import _server  # noqa: E402
import bookings as bench  # noqa: E402
import write_floor_app  # noqa: E402
from _bytecodes import SITE, BytecodeCounter, package_of  # noqa: E402

# In-process runs leave httpx's failed import of sniffio out; here it only keeps the bench's
# own process lighter beside the servers.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

EMAIL_WAIT = 600.0  # s: emails sent under valgrind run ~50 times slower


def valgrind(out: Path) -> list[str]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True)


def dumps_of(folder: Path, pid: int) -> list[Path]:
    """The dumps `callgrind_control -d` wrote for ``pid`` (``cg.<pid>.<n>``)."""
    return sorted(folder.glob(f"cg.{pid}.*"))


def clear_dumps(folder: Path) -> None:
    for dump in folder.glob("cg.*.*"):
        dump.unlink()


def self_cost_by_object(dump: Path) -> tuple[int, Counter[str]]:
    """(total Ir, self Ir by shared object) of one callgrind dump. A cost line after
    ``calls=`` is the call's inclusive cost, counted in the callee's own lines: skipped."""
    names: dict[str, str] = {}
    by_object: Counter[str] = Counter()
    total, current, skip_next = 0, "?", False
    with dump.open() as lines:
        for line in lines:
            if line.startswith("totals:"):
                total = int(line.split()[1])
            elif line.startswith(("ob=", "cob=")):
                # "(n) /path" names object n where it first appears, "(n)" after that; a
                # callee's object (cob=) can be the first to name it.
                ref, _, name = line.partition("=")[2].strip().partition(" ")
                if name:
                    names[ref] = Path(name).name
                if line.startswith("ob="):
                    current = names.get(ref, ref)
            elif line.startswith("calls="):
                skip_next = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                by_object[current] += int(line.split()[-1])
    return total, by_object


async def emails_sent(engine: bench.AsyncEngine) -> None:
    deadline = time.monotonic() + EMAIL_WAIT
    while await bench.unsent_emails(engine):
        if time.monotonic() > deadline:
            raise SystemExit("the emails were not sent in time")
        if failed := await bench.failed_email(engine):
            raise SystemExit(f"an email failed: {failed}")
        await asyncio.sleep(0.5)


async def counted(
    engine: bench.AsyncEngine,
    base: str,
    booked: Iterator[bench.Booked],
    clients: int,
    pids: dict[str, int],
    folder: Path,
    sender: str | None,
) -> tuple[dict[str, int], Counter[str]]:
    """Instructions of each process over ``args.count`` bookings posted to ``base``, and
    their self instructions by shared object, all processes together. ``sender``: the name in
    ``pids`` of the process that sends the emails, counted until they are sent."""
    poster = bench.BookingPoster(base, booked, clients)
    try:
        for _ in range(2):  # warm-up: connections, caches, prepared statements
            await asyncio.gather(*(poster.one(i) for i in range(clients)))
        await emails_sent(engine)
        clear_dumps(folder)
        for pid in pids.values():
            control(pid, "-z")
            control(pid, "-i", "on")
        poster.statuses.clear()

        async def client(index: int) -> None:
            for _ in range(index, args.count, clients):
                await poster.one(index)

        await asyncio.gather(*(client(i) for i in range(clients)))
        # A process that does not send the emails stops counting with the last answer: its
        # idle work (polls, timers) while the emails go out is not the bookings'.
        for name, pid in pids.items():
            if name != sender:
                control(pid, "-i", "off")
        if sender is not None:
            await emails_sent(engine)
    finally:
        await poster.aclose()
    for pid in pids.values():
        control(pid, "-i", "off")
        control(pid, "-d")
    if set(poster.statuses) != {200}:
        raise SystemExit(f"answers: {dict(poster.statuses)}")
    per_process: dict[str, int] = {}
    objects: Counter[str] = Counter()
    for name, pid in pids.items():
        found = dumps_of(folder, pid)
        for _ in range(100):  # the dump is written by the process itself, soon after the ask
            if found:
                break
            await asyncio.sleep(0.1)
            found = dumps_of(folder, pid)
        total, by_object = self_cost_by_object(found[-1])
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            label = "-".join((folder.name, name.split()[0], str(clients), str(int(time.time()))))
            shutil.copy(found[-1], args.keep / f"callgrind.{label}")
        per_process[name] = total
        objects.update(by_object)
    return per_process, objects


def report(title: str, per_process: dict[str, int], objects: Counter[str]) -> float:
    """Print one server's figures; return its millions of instructions per booking."""
    count = args.count
    total = sum(per_process.values()) / count / 1e6
    parts = ", ".join(f"{name} {ir / count / 1e6:.2f}" for name, ir in per_process.items())
    print(f"{title}: {total:.2f} M instructions per booking ({parts})")
    top = ", ".join(
        f"{name} {ir / count / 1e6:.2f}" for name, ir in objects.most_common(args.objects)
    )
    print(f"    by object: {top}")
    return total


async def measure(kind: str, pg_url: str | None, tmp: Path) -> None:
    folder = tmp / f"callgrind-{kind}"
    folder.mkdir()
    wrap = valgrind(folder / "cg.%p")
    async with bench.fresh_database(kind, pg_url, tmp) as url:
        engine = bench.create_engine(url)
        try:
            seed = await bench.seeded(engine, url, tmp)
            web_bookings, lean_bookings = seed.web_bookings, seed.lean_bookings
            bare, lean, lean_emails = seed.bare, seed.lean, seed.lean_emails
            await bench.gather_statistics(engine)
            log, mail = tmp / f"serve-{kind}.log", tmp / f"mail-{kind}"
            with contextlib.ExitStack() as stack:
                floor = stack.enter_context(
                    bench.bare_server(url, bare, lean, lean_emails, tmp, wrap=wrap)
                )
                server, _rss, pids = stack.enter_context(
                    bench.deployment(url, log, args.mode, mail, wrap=wrap)
                )
                # The lean floor's emails are sent by the deployment's dispatcher.
                dispatcher = {"inline": "serve", "worker": "worker"}.get(args.mode)
                lean_processes = {"lean app": floor.process.pid}
                lean_sender = None
                if dispatcher:
                    lean_sender = f"{dispatcher} (its emails)"
                    lean_processes[lean_sender] = pids[dispatcher]
                lean_base = floor.base_url + (
                    "/lean" if args.mode == "noemail" else "/lean-sending"
                )
                for clients in args.clients:
                    print(f"\n# {kind}, {args.mode}, {clients} client(s), {args.count} bookings")
                    first = await counted(
                        engine, server.base_url, web_bookings, clients, pids, folder, dispatcher
                    )
                    ours = report("bookable", *first)
                    lean_args = (lean_base, lean_bookings, clients, lean_processes, folder)
                    second = await counted(engine, *lean_args, lean_sender)
                    floor_ir = report("lean floor", *second)
                    print(f"bookable ÷ lean floor: {ours / floor_ir:.2f}")
        finally:
            await engine.dispose()


CLIENT = {"httpx", "httpcore", "sniffio", "h11", "bookings.py", "booking_instructions.py"}


async def counted_bytecodes(
    client: httpx.AsyncClient, host: bench.Host, free: Iterator[tuple[datetime, datetime]]
) -> tuple[Counter[str], Counter[str]]:
    """Bytecodes by package and by function of ``args.count`` bookings, after a warm-up."""
    for _ in range(20):  # key cache, statement caches, prepared statements
        await bench.post_booking(client, host, free)
    counter = BytecodeCounter()
    sys.settrace(counter.call)
    try:
        for _ in range(args.count):
            await bench.post_booking(client, host, free)
    finally:
        sys.settrace(None)
    packages = counter.by_package()
    for name in CLIENT:
        packages.pop(name.removesuffix(".py"), None)
        packages.pop(name, None)
    functions: Counter[str] = Counter()
    for code, count in counter.by_code.items():
        if package_of(code.co_filename) in packages:
            where = code.co_filename.split(SITE, 1)[-1].split("/src/", 1)[-1]
            functions[f"{code.co_qualname} ({where}:{code.co_firstlineno})"] += count
    return packages, functions


async def bytecodes(kind: str, pg_url: str | None, tmp: Path) -> None:
    async with bench.fresh_database(kind, pg_url, tmp) as url:
        app = bench.create_app(bench.in_process_settings(url, tmp))
        async with app.router.lifespan_context(app):
            engine = app.state.engine
            host, lean = await bench.add_host(engine, "cpu"), await bench.add_host(engine, "lean")
            lean_emails = await bench.booking_email_rows(url, lean, tmp)
            os.environ.update(
                FLOOR_DATABASE_URL=url, FLOOR_LEAN_KEY=lean.key,
                FLOOR_LEAN_USER_ID=str(lean.user_id), FLOOR_LEAN_EMAILS=json.dumps(lean_emails),
            )  # fmt: skip
            floor = write_floor_app.app
            async with floor.router.lifespan_context(floor):
                tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                results = []
                for name, served, base, who in (
                    ("bookable", app, "http://bench", host),
                    ("lean floor", floor, "http://bench/lean-sending", lean),
                ):
                    free = bench.slots(tomorrow + timedelta(days=1))
                    transport = httpx.ASGITransport(app=served)
                    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                        results.append((name, await counted_bytecodes(client, who, free)))
    print(f"\n# {kind}: Python bytecodes per booking (thousands), in process, by package")
    totals = [sum(packages.values()) / args.count / 1000 for _name, (packages, _f) in results]
    for (name, (packages, functions)), total in zip(results, totals, strict=True):
        print(f"{name}: {total:.1f}")
        for package, count in packages.most_common(12):
            print(f"    {count / args.count / 1000:6.1f}  {package}")
        if args.functions:
            print(f"  the {args.functions} functions that ran the most bytecodes (self):")
            for function, count in functions.most_common(args.functions):
                print(f"    {count / args.count / 1000:6.2f}  {function}")
    print(f"bookable ÷ lean floor: {totals[0] / totals[1]:.2f}")


async def main() -> None:
    pg_url = _server.bench_database_url()
    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if pg_url else [])
    print(f"# {bench.describe()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        for kind in kinds:
            await (bytecodes if args.bytecodes else measure)(kind, pg_url, Path(tmp_name))


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--count", type=int, default=100, help="bookings counted per server")
parser.add_argument(
    "--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8], help="e.g. 1,8"
)
parser.add_argument("--mode", choices=["inline", "worker", "noemail"], default="noemail")
parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
parser.add_argument("--objects", type=int, default=8, help="shared objects shown")
parser.add_argument("--bytecodes", action="store_true", help="Python bytecodes by package")
parser.add_argument("--keep", type=Path, help="copy callgrind's dumps here (callgrind_annotate)")
parser.add_argument("--functions", type=int, default=0, help="--bytecodes: top functions shown")

if __name__ == "__main__":
    args = parser.parse_args()
    asyncio.run(main())
