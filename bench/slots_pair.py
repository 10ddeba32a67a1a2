"""GET /v1/slots of a base revision and of this checkout, interleaved request by request.

On a shared machine `bench/slots.py`'s 30-request medians swing 2-5x from run to run, more
than most changes to the request. This script runs both codes in one process against one
seeded database: the base is the package at ``--base`` (a git revision), extracted into a
temporary folder and renamed ``bookable_base`` (imports and Prometheus metric names rewritten
so both load side by side). Per round it asks the base app and the new app once each (the
order flips every round) and times `bench/slots.py`'s floor query once; it prints both
medians, the median of the paired differences (base - new) and total / floor for each, and
stops if the two bodies ever differ.

Run: .venv/bin/python bench/slots_pair.py --base main [--rounds 300] [--sizes 100,1000,10000]
(PostgreSQL too when BOOKABLE_BENCH_DATABASE_URL is set; its tables are emptied.)
"""

from __future__ import annotations

import sys
from pathlib import Path

# As in bench/slots.py: this folder must not shadow the standard library's `http`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.append(str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

import slots as bench  # noqa: E402
from bookable.app import create_app  # noqa: E402
from bookable.migrations.runner import upgrade  # noqa: E402
from bookable.models import Booking  # noqa: E402
from bookable.settings import Settings  # noqa: E402

BASE_PACKAGE = "bookable_base"
_IMPORT = re.compile(r"\b(from|import) bookable(?=[. \n])")


def extract_base(revision: str, into: Path) -> None:
    """The package at ``revision`` as ``bookable_base`` in ``into``."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "src/bookable"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASE_PACKAGE
    (into / "src" / "bookable").rename(package)
    for source in package.rglob("*.py"):
        text = _IMPORT.sub(rf"\1 {BASE_PACKAGE}", source.read_text())
        # prometheus_client registers metric names process-wide: the base's get their own.
        text = text.replace('"bookable_', '"bookable_base_')
        source.write_text(text)


async def pair(url: str, label: str, bookings: int, rounds: int, base: Any) -> None:
    settings: dict[str, Any] = {"database_url": url, "rate_limit": "0", "clock": bench.NOW}
    new_app = create_app(Settings(**settings))
    base_app = base.app.create_app(base.settings.Settings(**settings))
    async with new_app.router.lifespan_context(new_app), base_app.router.lifespan_context(base_app):
        user_id, key, event_type_id = await bench.seed(new_app, bookings)
        params = {
            "apiKey": key,
            "eventTypeId": str(event_type_id),
            "startTime": bench.WINDOW_START.date().isoformat(),
            "endTime": (bench.WINDOW_END - timedelta(days=1)).date().isoformat(),
            "timeZone": bench.BOOKER_ZONE,
        }
        floor_query = select(Booking.start_time, Booking.end_time).where(
            Booking.user_id == user_id,
            Booking.status == "ACCEPTED",
            Booking.start_time < bench.WINDOW_END + timedelta(days=2),
            Booking.end_time > bench.WINDOW_START - timedelta(days=2),
        )
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
            for name, app in (("base", base_app), ("new", new_app))
        }
        times: dict[str, list[float]] = {"base": [], "new": [], "floor": []}
        warm_up = 10
        async with new_app.state.sessions() as floor_session:
            for i in range(rounds + warm_up):
                bodies: dict[str, bytes] = {}
                for name in ("base", "new") if i % 2 else ("new", "base"):
                    began = time.perf_counter()
                    response = await clients[name].get("/v1/slots", params=params)
                    elapsed = time.perf_counter() - began
                    assert response.status_code == 200, response.text
                    bodies[name] = response.content
                    if i >= warm_up:
                        times[name].append(elapsed * 1000)
                assert bodies["base"] == bodies["new"], "the bodies differ"
                began = time.perf_counter()
                (await floor_session.execute(floor_query)).all()
                if i >= warm_up:
                    times["floor"].append((time.perf_counter() - began) * 1000)
        for client in clients.values():
            await client.aclose()
    base_ms, new_ms, floor_ms = (statistics.median(times[k]) for k in ("base", "new", "floor"))
    saved = statistics.median(b - n for b, n in zip(times["base"], times["new"], strict=True))
    print(
        f"{label:<11}N={bookings:>6}: base {base_ms:8.3f}  new {new_ms:8.3f}  "
        f"median(base - new) {saved:7.3f} ms ({rounds} pairs); floor {floor_ms:.3f}; "
        f"total/floor base {base_ms / floor_ms:.2f} new {new_ms / floor_ms:.2f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="git revision of the base code")
    parser.add_argument("--rounds", type=int, default=300, help="pairs (a fifth at 10,000)")
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pg_url = os.environ.get("BOOKABLE_BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        extract_base(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        base = argparse.Namespace(
            app=importlib.import_module(f"{BASE_PACKAGE}.app"),
            settings=importlib.import_module(f"{BASE_PACKAGE}.settings"),
        )
        for n in sizes:
            url = f"sqlite:///{Path(tmp) / f'pair-{n}.db'}"
            await asyncio.to_thread(upgrade, url)
            await pair(url, "sqlite", n, args.rounds if n < 10_000 else args.rounds // 5, base)
        if pg_url:
            await asyncio.to_thread(upgrade, pg_url)
            for n in sizes:
                await bench.reset_postgres(pg_url)
                rounds = args.rounds if n < 10_000 else args.rounds // 5
                await pair(pg_url, "postgresql", n, rounds, base)
            await bench.reset_postgres(pg_url)
        else:
            print("# PostgreSQL skipped: set BOOKABLE_BENCH_DATABASE_URL to include it")


if __name__ == "__main__":
    asyncio.run(main())
