"""A booking's emails, two versions of the code interleaved: CPU ms per booking by process.

    .venv/bin/python bench/email_ab.py --base /tmp/base/src [--new src] [--pairs 20]
        [--count 200] [--mode worker|inline|noemail] [--db postgresql|sqlite] [--mail eml|smtp]

Each run is a child process with ``PYTHONPATH`` set to one version's ``src`` (the base, then
this checkout's, alternating which goes first): it makes ``--count`` bookings in process
(`httpx.ASGITransport`, one client, the hosts of `bench/bookings.py` in turn, emails on) and
waits until every email is sent. ``worker``: the app's dispatchers are off and a `bookable
worker` of the same version (a process of its own, started before the warm-up) sends the
emails; printed: the child's CPU (the requests) and the worker's (from /proc), per booking.
``inline``: the app's own dispatchers send them (the single-process deployment): the child's
CPU until the last email is sent. ``noemail``: ``BOOKABLE_EMAILS=off``, for the request's
share. Emails go to .eml files, or to an aiosmtpd process with ``--mail smtp``. The medians of
the pairs and how many pairs the new version was lower in are printed at the end. Runs on
PostgreSQL (BOOKABLE_BENCH_DATABASE_URL, emptied) or a SQLite file.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))
sys.modules.setdefault("sniffio", None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

HOSTS = 60  # bookings dealt over this many hosts: each host's hourly count stays small
WARMUP = 40  # bookings before each measured batch (statement caches, templates, connections)
ROUNDS = 3  # --mode loop: measured rounds per transport and run


async def _seed(url: str, kind: str, tmp: Path) -> list[dict[str, Any]]:
    import bookings as bench

    if kind == "sqlite":
        await asyncio.to_thread(bench.upgrade, url)
    else:
        await asyncio.to_thread(bench.upgrade, url)
        await bench.reset_postgres(url)
    engine = bench.create_engine(url)
    try:
        return [asdict(await bench.add_host(engine, f"ab{i}")) for i in range(HOSTS)]
    finally:
        await engine.dispose()


async def _unsent(engine: Any) -> int:
    from sqlalchemy import func, select

    from bookable.models.emails import EmailStatus, OutboundEmail

    async with engine.connect() as conn:
        pending = OutboundEmail.status == EmailStatus.PENDING.value
        return int(await conn.scalar(select(func.count()).where(pending)) or 0)


async def _drained(engine: Any, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while await _unsent(engine):
        if time.monotonic() > deadline:
            raise SystemExit("emails still unsent after the timeout")
        await asyncio.sleep(0.02)


async def loop_child(args: argparse.Namespace) -> None:
    """``--mode loop``: the email dispatcher's loop as it runs under load, in process: each
    transaction records the last batch's outcomes and claims the next 20 (as `_run` when
    rows keep coming), over the emails of ``--count`` bookings, once per transport (.eml,
    and SMTP with ``--smtp``); the median CPU ms per email of ``ROUNDS`` rounds each."""
    import httpx
    from sqlalchemy import func, select, update

    import bookable
    import bookings as bench
    from bookable.app import create_app
    from bookable.core.db import create_engine, session_factory
    from bookable.core.dispatch import DispatcherConfig
    from bookable.models.emails import EmailStatus, OutboundEmail
    from bookable.notifications.dispatcher import EmailDispatcher

    hosts = [bench.Host(**h) for h in json.loads(Path(args.hosts).read_text())]  # noqa: ASYNC240
    tmp = Path(args.tmp)
    settings = bench.in_process_settings(args.url, tmp)
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day += timedelta(days=2, minutes=bench.LENGTH * args.offset)
    engine = create_engine(args.url)
    async with engine.connect() as conn:
        before = await conn.scalar(select(func.max(OutboundEmail.id))) or 0
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for index in range(args.count):
                host = hosts[index % len(hosts)]
                start = first_day + timedelta(days=index // len(hosts))
                end = start + timedelta(minutes=bench.LENGTH)
                await bench.post_booking(client, host, iter([(start, end)]))
    sessions = session_factory(engine)
    mine = OutboundEmail.id > before  # this run's rows: the others stay SENT
    targets = {"eml": settings.model_copy(update={"email_dir": tmp / f"loop-{args.offset}"})}
    if args.smtp:
        targets["smtp"] = settings.model_copy(update={"smtp_url": args.smtp})
    costs: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for round_ in range(ROUNDS + 1):  # round 0 warms up
            for name, target in targets.items():
                async with engine.begin() as conn:
                    await conn.execute(
                        update(OutboundEmail).where(mine).values(
                            status=EmailStatus.PENDING.value, message=None, attempts=0,
                            locked_until=None, sent_at=None, last_error=None,
                            next_attempt_at=datetime.now(UTC) - timedelta(minutes=1),
                        )
                    )  # fmt: skip
                config = DispatcherConfig(batch_size=20, concurrency=20)
                dispatcher = EmailDispatcher(sessions, target, config=config)
                cpu = time.process_time()
                outcomes: list[Any] = []
                sent = 0
                while jobs := await dispatcher.exchange(outcomes, 20):
                    outcomes = list(await asyncio.gather(*map(dispatcher.deliver, jobs)))
                    sent += len(jobs)
                cpu = time.process_time() - cpu
                await dispatcher.aclose()
                assert sent == 2 * args.count, sent
                if round_:
                    costs[name].append(cpu * 1000 / sent)
    finally:
        await engine.dispose()
    print(
        json.dumps(
            {
                "src": str(Path(bookable.__file__).parents[1]),
                **{f"{name}_ms": statistics.median(values) for name, values in costs.items()},
            }
        )
    )


async def child(args: argparse.Namespace) -> None:
    """One run of one version (its ``src`` first on sys.path): JSON on stdout."""
    import httpx

    import bookable
    import bookings as bench
    from _server import _cpu_seconds
    from bookable.app import create_app
    from bookable.core.db import create_engine

    hosts = [bench.Host(**h) for h in json.loads(Path(args.hosts).read_text())]  # noqa: ASYNC240
    tmp = Path(args.tmp)
    mail_dir = tmp / f"eml-{args.offset}"
    settings = bench.in_process_settings(args.url, tmp).model_copy(
        update={
            "emails": "off" if args.mode == "noemail" else "on",
            "webhook_dispatcher": "inline" if args.mode == "inline" else "off",
            "email_dir": mail_dir,
            **({"smtp_url": args.smtp} if args.smtp else {}),
        }
    )
    worker = None
    if args.mode == "worker":
        env = {**os.environ, "BOOKABLE_DATABASE_URL": args.url, "BOOKABLE_EMAIL_DIR": str(mail_dir)}
        if args.smtp:
            env["BOOKABLE_SMTP_URL"] = args.smtp
        # EMAIL_AB_WORKER_PREFIX: a command the worker runs under (a profiler), split on spaces.
        prefix = os.environ.get("EMAIL_AB_WORKER_PREFIX", "").split()
        worker = subprocess.Popen(  # noqa: ASYNC220
            [*prefix, sys.executable, "-c", "from bookable.cli import app; app()", "worker"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    watcher = create_engine(args.url)
    # Run k books each host's 5-minute slot k of days 2, 3, ...: no two runs share a slot.
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day += timedelta(days=2, minutes=bench.LENGTH * args.offset)
    free = (
        (host, start, start + timedelta(minutes=bench.LENGTH))
        for day in range(10_000)
        for host in hosts
        if (start := first_day + timedelta(days=day))
    )
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

                async def book() -> None:
                    host, start, end = next(free)
                    await bench.post_booking(client, host, iter([(start, end)]))

                for _ in range(WARMUP):
                    await book()
                await _drained(watcher)
                await asyncio.sleep(0.3)
                worker_cpu = _cpu_seconds(worker.pid) if worker else 0.0
                cpu = time.process_time()
                for _ in range(args.count):
                    await book()
                requests_cpu = time.process_time() - cpu
                await _drained(watcher)
                total_cpu = time.process_time() - cpu
                worker_cpu = (_cpu_seconds(worker.pid) - worker_cpu) if worker else 0.0
    finally:
        await watcher.dispose()
        if worker is not None:
            worker.send_signal(signal.SIGINT)  # py-spy (EMAIL_AB_WORKER_PREFIX) writes on SIGINT
            worker.wait(20)
    print(
        json.dumps(
            {
                "src": str(Path(bookable.__file__).parents[1]),
                "requests_ms": requests_cpu * 1000 / args.count,
                "process_ms": total_cpu * 1000 / args.count,
                "worker_ms": worker_cpu * 1000 / args.count,
            }
        )
    )


def run_child(src: Path, args: argparse.Namespace, offset: int, hosts: Path, tmp: Path,
              url: str, smtp: str | None) -> dict[str, float]:  # fmt: skip
    command = [
        sys.executable, __file__, "--child", "--url", url, "--hosts", str(hosts), "--tmp",
        str(tmp), "--offset", str(offset), "--count", str(args.count), "--mode", args.mode,
        *(["--smtp", smtp] if smtp else []),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(str(result["src"])).resolve() != src.resolve():
        raise SystemExit(f"the child ran {result['src']}, not {src}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--mode", choices=["worker", "inline", "noemail", "loop"], default="worker")
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--mail", choices=["eml", "smtp"], default="eml")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--smtp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(loop_child(args) if args.mode == "loop" else child(args))
        return
    if args.base is None:
        parser.error("--base is required")
    import contextlib

    import bookings as bench

    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        if args.db == "postgresql":
            url = (
                os.environ.get("BOOKABLE_BENCH_DATABASE_URL")
                or os.environ["BOOKABLE_TEST_DATABASE_URL"]
            )
        else:
            url = f"sqlite:///{tmp / 'ab.db'}"
        smtp = stack.enter_context(bench.smtp_sink()) if args.mail == "smtp" else None
        hosts = tmp / "hosts.json"
        hosts.write_text(json.dumps(asyncio.run(_seed(url, args.db, tmp))))
        keys = ["requests_ms", "process_ms", "worker_ms"]
        if args.mode == "loop":
            keys = ["eml_ms", *(["smtp_ms"] if smtp else [])]
        pairs: list[tuple[dict[str, float], dict[str, float]]] = []
        offset = 0
        print(f"# {args.db} {args.mode} {args.mail}: {args.pairs} pairs of {args.count} bookings")
        for index in range(args.pairs):
            order = ("base", "new") if index % 2 == 0 else ("new", "base")
            got: dict[str, dict[str, float]] = {}
            for which in order:
                src = args.base if which == "base" else args.new
                got[which] = run_child(src, args, offset, hosts, tmp, url, smtp)
                offset += 1
            pairs.append((got["base"], got["new"]))
            print(
                f"pair {index + 1:2d} ({order[0]} first) "
                + "  ".join(f"{k} {got['base'][k]:.2f} -> {got['new'][k]:.2f}" for k in keys),
                flush=True,
            )
        for key in keys:
            base = [b[key] for b, _ in pairs]
            new = [n[key] for _, n in pairs]
            diffs = [n - b for b, n in zip(base, new, strict=True)]
            lower = sum(d < 0 for d in diffs)
            print(
                f"{key:12s} base median {statistics.median(base):.3f}  new median "
                f"{statistics.median(new):.3f}  pairs' median (new - base) "
                f"{statistics.median(diffs):+.3f}  new lower in {lower}/{len(diffs)}"
            )


if __name__ == "__main__":
    main()
