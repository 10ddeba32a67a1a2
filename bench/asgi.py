"""In-process HTTP benchmark: CPU µs per `GET /v1/me` through bookable's ASGI app and the floor's.

    .venv/bin/python bench/asgi.py [--requests 3000] [--rounds 5] [--calls] [--gc]

No server, no socket, no access log: each request is one call of the ASGI app with a fresh
scope, timed with `time.process_time` (the CPU time of this process, which other load on a shared
machine disturbs far less than wall-clock rates). The rounds of the two apps alternate; the median
round is shown. The floor is bench/http.py's bare Starlette app. bookable runs on a fresh SQLite
file (or on BOOKABLE_BENCH_DATABASE_URL's PostgreSQL with `--postgres`), rate limiting off, the
key cache warm, as `bookable serve` runs it (fast lane on) unless `--no-fast-lane`.

`--calls`: Python function calls per request (cProfile). `--gc`: the garbage collector's pauses
during the measured rounds, by generation, with the start-up heap frozen or not (`--freeze`, as
`bookable serve` does).
"""

from __future__ import annotations

import sys
from pathlib import Path

# As in bench/http.py: this folder must not hide the standard library's `http` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for floor_app, after the stdlib

import argparse
import asyncio
import collections
import cProfile
import gc
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import floor_app

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope_for(query: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/me", "raw_path": b"/v1/me", "root_path": "",
        "query_string": query.encode(), "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
    }  # fmt: skip


async def run(app: App, query: str, requests: int) -> float:
    """CPU µs per request over ``requests`` calls; every answer must be a 200."""
    request = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    began = time.process_time()
    for _ in range(requests):
        await app(scope_for(query), receive, send)
    spent = time.process_time() - began
    assert statuses == [200] * requests, collections.Counter(statuses)
    return spent / requests * 1e6


def track_gc() -> dict[int, list[float]]:
    pauses: dict[int, list[float]] = collections.defaultdict(list)
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(callback)
    return pauses


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per app, alternating")
    parser.add_argument("--postgres", action="store_true", help="BOOKABLE_BENCH_DATABASE_URL")
    parser.add_argument("--no-fast-lane", action="store_true", help="every route via FastAPI")
    parser.add_argument("--calls", action="store_true", help="Python calls per request")
    parser.add_argument("--gc", action="store_true", help="GC pauses during the rounds")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after start-up")
    opts = parser.parse_args()

    from bookable.api_keys.service import issue_key
    from bookable.app import create_app
    from bookable.migrations.runner import upgrade_async
    from bookable.models import User, UserRole
    from bookable.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-asgi-"))
    url = f"sqlite:///{work / 'bookable.db'}"
    if opts.postgres:
        url = os.environ.get("BOOKABLE_BENCH_DATABASE_URL") or sys.exit(
            "--postgres needs BOOKABLE_BENCH_DATABASE_URL"
        )
    await upgrade_async(url)
    settings = Settings(
        database_url=url, encryption_key_file=work / "bookable.key", rate_limit="0",
        redis_url=None, webhook_dispatcher="off", emails="off", email_dir=work / "mail",
    )  # fmt: skip
    # As served; without the keyword, so that older code (a base to compare with) runs too.
    app = create_app(settings, fast_lane=False) if opts.no_fast_lane else create_app(settings)
    floor = floor_app.app
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session, session.begin():
            tag = uuid.uuid4().hex[:8]
            user = User(email=f"bench-{tag}@example.com", username=f"bench-{tag}")
            user.role = UserRole.ADMIN
            session.add(user)
            await session.flush()
            _, key = await issue_key(session, user_id=user.id, prefix=settings.api_key_prefix)
        query = f"apiKey={key}"
        await run(app, query, 200)  # warm: the key cache, the /me body
        await run(floor, "apiKey=x", 200)
        if opts.freeze:
            gc.collect()
            gc.freeze()
        pauses = track_gc() if opts.gc else {}
        times: dict[str, list[float]] = {"bookable": [], "floor": []}
        for _ in range(opts.rounds):
            times["bookable"].append(await run(app, query, opts.requests))
            times["floor"].append(await run(floor, "apiKey=x", opts.requests))
        gc.callbacks.clear()
        mine, theirs = statistics.median(times["bookable"]), statistics.median(times["floor"])
        engine = "postgres" if opts.postgres else "sqlite"
        lane = "FastAPI only" if opts.no_fast_lane else "as served"
        for name, label in (("bookable", f"bookable ({engine}, {lane})"),
                            ("floor", "floor (bare Starlette)")):  # fmt: skip
            rounds = ", ".join(f"{t:.1f}" for t in times[name])
            print(f"{label}: {statistics.median(times[name]):.1f} µs/request (rounds {rounds})")
        print(f"difference: {mine - theirs:.1f} µs; floor/bookable in process: {theirs / mine:.2f}")
        for generation, spent in sorted(pauses.items()):
            spent.sort()
            print(f"gc generation {generation}: {len(spent)} collections, longest "
                  f"{spent[-1]:.2f} ms, median {spent[len(spent) // 2]:.3f} ms")  # fmt: skip
        if opts.gc and not pauses:
            print("gc: no collection during the rounds")
        if opts.gc:
            print(f"objects tracked {len(gc.get_objects())}, frozen {gc.get_freeze_count()}")
        if opts.calls:
            profile = cProfile.Profile()
            profile.enable()
            await run(app, query, opts.requests)
            profile.disable()
            calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
            print(f"Python calls per request: {calls / opts.requests:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
