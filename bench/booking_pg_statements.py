"""PostgreSQL's own work per booking, by statement (pg_stat_statements), and its CPU.

    BOOKABLE_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5442/bench \\
        .venv/bin/python bench/booking_pg_statements.py [--count 400] [--clients 8]
        [--mode worker|inline|noemail] [--rounds 1] [--top 14] [--filler 5000]
        [--analyze] [--keep] [--perf FILE] [--data /tmp/hw-pg/data]

Meant for a private PostgreSQL cluster started for it (its settings as the shared one's, plus
``shared_preload_libraries=pg_stat_statements``, ``pg_stat_statements.track=all``,
``pg_stat_statements.track_planning=on``, the extension created in its ``postgres``
database): its statistics are reset before each round, and its processes' CPU (the
postmaster's tree, read from /proc) is read around it, so that nothing else on the machine
counts. Each round: the creation bench's deployment (`bench/bookings.py`: `serve`, beside a
`worker` for ``worker``; bookings dealt over WEB_HOSTS hosts), a warm-up (connections, caches,
statements prepared), then ``--count`` bookings posted by ``--clients`` raw keep-alive
clients, their emails waited for until sent. ``--filler`` bookings of another host are
written (and ANALYZEd) first: a database with a history, whose statistics say so; without
them the plans are made from the statistics of empty tables. Printed per round: the
cluster's CPU ms per booking, and per statement its calls, planner runs, planning and
execution ms, buffers hit and WAL records per booking (times are wall times of a loaded
machine: shares, not A/B).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse  # noqa: E402
import asyncio  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import asyncpg  # noqa: E402

import _server  # noqa: E402
import bookings as bench  # noqa: E402
from booking_instructions import emails_sent  # noqa: E402

STATEMENTS = """
SELECT query, calls, plans, total_plan_time, total_exec_time, shared_blks_hit, wal_records
FROM pg_stat_statements WHERE calls > 0 OR plans > 0
"""


def postmaster_pid(data_dir: str) -> int:
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


def perf_record(postmaster: int, out: Path) -> subprocess.Popen[bytes]:
    """`perf record` of the cluster's processes as they are now (the pools warm)."""
    pids = ",".join(map(str, [postmaster, *_server.descendants(postmaster)]))
    command = ["perf", "record", "-q", "-F", "2999", "-g", "-o", str(out), "-p", pids]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))


async def one_round(url: str, tmp: Path, postmaster: int) -> tuple[float, list[asyncpg.Record]]:
    admin = await asyncpg.connect(admin_url(url))
    try:
        async with bench.fresh_database("postgresql", url, tmp) as fresh:
            engine = bench.create_engine(fresh)
            try:
                seed = await bench.seeded(engine, fresh, tmp)
                if args.filler:  # a live database's tables and statistics, not empty ones
                    filler = await bench.add_host(engine, "filler")
                    await bench.bulk_bookings(
                        engine, filler, bench.HISTORY_FIRST, bench.HISTORY_FIRST + args.filler
                    )
                await bench.gather_statistics(engine)
                log, mail = tmp / "serve.log", tmp / "mail"
                with bench.deployment(fresh, log, args.mode, mail) as (server, _rss, _pids):
                    poster = bench.BookingPoster(server.base_url, seed.web_bookings, args.clients)
                    try:
                        for _ in range(3):  # warm-up: connections, caches, prepared statements
                            await asyncio.gather(*(poster.one(i) for i in range(args.clients)))
                        if args.mode != "noemail":
                            await emails_sent(engine)
                        if args.analyze:
                            await bench.gather_statistics(engine)
                        await admin.execute("SELECT pg_stat_statements_reset()")
                        perf = None
                        if args.perf:
                            perf = perf_record(postmaster, args.perf)
                            await asyncio.sleep(1)
                        before = _server.cpu_of_tree(postmaster)

                        async def client(index: int) -> None:
                            for _ in range(index, args.count, args.clients):
                                await poster.one(index)

                        await asyncio.gather(*(client(i) for i in range(args.clients)))
                        if args.mode != "noemail":
                            await emails_sent(engine)
                        cpu = _server.cpu_of_tree(postmaster) - before
                        if perf is not None:
                            perf.send_signal(signal.SIGINT)
                            perf.wait()
                        rows = await admin.fetch(STATEMENTS)
                        if args.keep:  # the rows stay for EXPLAIN (the next start empties them)
                            bench.reset_postgres = _kept  # type: ignore[assignment]
                    finally:
                        await poster.aclose()
                    if set(poster.statuses) != {200}:
                        raise SystemExit(f"answers: {dict(poster.statuses)}")
            finally:
                await engine.dispose()
    finally:
        await admin.close()
    return cpu * 1000 / args.count, rows


async def _kept(url: str) -> None:
    pass


def shown(query: str) -> str:
    return re.sub(r"\s+", " ", query)[: args.width]


async def main() -> None:
    url = _server.bench_database_url()
    if not url:
        raise SystemExit("set BOOKABLE_BENCH_DATABASE_URL to the private cluster")
    postmaster = postmaster_pid(args.data)
    print(f"# {bench.describe()}")
    cpus = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for number in range(args.rounds):
            tmp = Path(tmp_name) / str(number)
            tmp.mkdir()
            cpu, rows = await one_round(url, tmp, postmaster)
            cpus.append(cpu)
            n = args.count
            print(f"\n# round {number + 1}: {args.mode}, {args.clients} clients, {n} bookings")
            print(f"cluster CPU ms per booking: {cpu:.2f}")
            rows = sorted(rows, key=lambda r: -(r["total_plan_time"] + r["total_exec_time"]))
            total = sum(r["total_plan_time"] + r["total_exec_time"] for r in rows) / n
            print(f"statements' time per booking: {total:.3f} ms")
            print("calls/b  plans/b  plan ms/b  exec ms/b  share  hit/b  wal/b  statement")
            for r in rows[: args.top]:
                spent = (r["total_plan_time"] + r["total_exec_time"]) / n
                print(
                    f"{r['calls'] / n:7.2f}  {r['plans'] / n:7.3f}  {r['total_plan_time'] / n:9.3f}"
                    f"  {r['total_exec_time'] / n:9.3f}  {spent / total:5.1%}"
                    f"  {r['shared_blks_hit'] / n:5.1f}  {r['wal_records'] / n:5.1f}"
                    f"  {shown(r['query'])}"
                )
    if len(cpus) > 1:
        print(f"\ncluster CPU ms per booking, median of {len(cpus)}: {statistics.median(cpus):.2f}")


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--count", type=int, default=400, help="bookings counted per round")
parser.add_argument("--clients", type=int, default=8)
parser.add_argument("--mode", choices=["inline", "worker", "noemail"], default="worker")
parser.add_argument("--rounds", type=int, default=1)
parser.add_argument("--top", type=int, default=14, help="statements shown")
parser.add_argument("--width", type=int, default=70, help="characters of a statement shown")
parser.add_argument("--analyze", action="store_true", help="ANALYZE after the warm-up")
parser.add_argument("--perf", type=Path, help="perf record the cluster's processes into this file")
parser.add_argument("--filler", type=int, default=5000, help="bookings of another host first")
parser.add_argument("--keep", action="store_true", help="leave the last round's rows")
parser.add_argument("--data", default="/tmp/hw-pg/data", help="the private cluster's data dir")
args = parser.parse_args()

if __name__ == "__main__":
    asyncio.run(main())
