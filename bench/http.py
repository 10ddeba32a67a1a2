"""HTTP benchmark: `bookable serve` against a bare Starlette floor, both under the same load.

    .venv/bin/python bench/http.py [--duration 10] [--warmup 3] [--connections 64] [--rounds 1]

Rows:
  floor                 a bare Starlette app, one JSON route (GET /v1/me, same-sized body),
                        run by uvicorn in a subprocess with the options `bookable serve` uses
  bookable sqlite       `bookable serve` (1 worker, BOOKABLE_RATE_LIMIT=0) on a SQLite file,
                        GET /v1/me?apiKey=<key from `bookable admin create`>
  ... cache off         the same with BOOKABLE_AUTH_CACHE_SECONDS=0 (a DB lookup per request)
  ... metrics on        with --observability: BOOKABLE_METRICS=on
  ... metrics, json     the same with BOOKABLE_LOG_FORMAT=json (our access line, not uvicorn's)
  bookable postgres     the two bookable rows again on PostgreSQL when BOOKABLE_BENCH_DATABASE_URL
  ... cache off         (or BOOKABLE_TEST_DATABASE_URL) is set
  ..., 2 workers        scale-out (--workers N, default 2; 1 skips them): the floor under
                        `uvicorn --workers 2`, `bookable serve --workers 2` on SQLite (and on
                        PostgreSQL), each against the 2-worker floor and its own 1-process row;
                        with Redis (BOOKABLE_BENCH_REDIS_URL or BOOKABLE_TEST_REDIS_URL, as
                        deployed at scale: without it `--workers N` turns the key cache off),
                        and then a 1-process row with Redis too

Every row shows the server's RSS at the end of its run (with workers: the supervisor and its
children summed; bench/_server.py reads /proc).

Both servers: uvicorn, one process (but in the scale-out rows), loop=auto and http=auto (uvloop +
httptools when installed), log level info with the ACCESS LOG ON (uvicorn's default, which
`bookable serve` keeps), proxy headers on, no Server header; their output goes to files. The load
generator is wrk when it is on PATH, else a keep-alive asyncio client in this file (raw sockets);
the same one for every row, on the same machine (so it shares the cores with the servers).
The aim: bookable (SQLite, cache on) / floor >= 0.5 (issue 15; it was 0.35 before).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/http.py`, this file's folder comes first on sys.path and "http" would hide
# the standard library's package of that name: drop it before anything imports http.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.append(str(Path(__file__).resolve().parent))  # last: for _server, after the stdlib

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import _server
from _client import KeepAlive
from _server import BOOKABLE, Rss, clean_env, format_rss, serving

TARGET_RATIO = 0.5


# The uvicorn options `bookable serve` passes (src/bookable/cli.py), spelled for the CLI; the
# number of worker processes is added per row.
UVICORN_OPTIONS = [
    "--loop", "auto", "--http", "auto", "--log-level", "info", "--access-log",
    "--proxy-headers", "--no-server-header",
]  # fmt: skip


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    notes: list[str] = field(default_factory=list)
    rss: Rss | None = None  # the server's, at the end of its run (children included)
    workers: int = 1


# --- processes ---------------------------------------------------------------------------------


def cli(database_url: str, *args: str) -> str:
    """Run `bookable ...`; returns the last stdout line (the key)."""
    done = subprocess.run(
        [BOOKABLE, *args],
        env=clean_env(BOOKABLE_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bookable {' '.join(args)} failed:\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    return lines[-1].strip() if lines else ""


def http_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """One plain HTTP/1.1 GET (to check a server answers what we expect before loading it)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- load generators ---------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def load_wrk(url: str, *, connections: int, duration: float, threads: int) -> Result:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--latency", "--timeout", "10s", url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(found.group(1))
    socket_errors = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    if found := re.search(socket_errors, out):
        errors += sum(int(n) for n in found.groups())
    return Result("", rps, p50, p99, total, errors)


async def _python_load(url: str, connections: int, duration: float) -> Result:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        async with KeepAlive(host, port) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status, _body = await client.request("GET", target)
                latencies.append(time.perf_counter() - started)
                if not 200 <= status < 300:
                    errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return Result(
        "",
        n / elapsed,
        latencies[n // 2] * 1000 if n else 0.0,
        latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        n,
        errors,
    )


def load_python(url: str, *, connections: int, duration: float, threads: int) -> Result:
    del threads
    return asyncio.run(_python_load(url, connections, duration))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    threads: int
    rounds: int
    client: str


def measure(name: str, url: str, opts: Options) -> Result:
    load = load_wrk if opts.client == "wrk" else load_python
    if opts.warmup > 0:
        load(url, connections=opts.connections, duration=opts.warmup, threads=opts.threads)
    runs = [
        load(url, connections=opts.connections, duration=opts.duration, threads=opts.threads)
        for _ in range(opts.rounds)
    ]
    best = max(runs, key=lambda r: r.requests_per_second)  # the least disturbed round
    best.name = name
    if opts.rounds > 1:
        spread = [round(r.requests_per_second) for r in runs]
        best.notes.append(f"rounds req/s {spread}, median {statistics.median(spread):.0f}")
    if best.errors:
        best.notes.append(f"{best.errors} errors/non-2xx")
    return best


def bench_floor(work: Path, opts: Options, workers: int = 1) -> Result:
    # A copy beside the run's files: with bench/ as uvicorn's app dir, bench/http.py would
    # stand in for the standard library's `http` package.
    (work / "bench_floor.py").write_text(Path(__file__).with_name("floor_app.py").read_text())
    command = [
        sys.executable, "-m", "uvicorn", "bench_floor:app", "--app-dir", str(work),
        *UVICORN_OPTIONS, "--workers", str(workers),
    ]  # fmt: skip
    name = "floor (bare Starlette)" + (f", {workers} workers" if workers > 1 else "")
    with serving(command, clean_env(), work / f"floor-{workers}.log", probe="/v1/me") as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        status, _ = http_get("127.0.0.1", port, "/v1/me?apiKey=x")
        assert status == 200, status
        result = measure(name, f"{server.base_url}/v1/me?apiKey=cal_floor", opts)
    result.rss, result.workers = server.rss, workers
    return result


def bench_bookable(
    name: str, database_url: str, work: Path, opts: Options, workers: int = 1, **env: str
) -> Result:
    tag = uuid.uuid4().hex[:8]
    key = cli(database_url, "admin", "create", "--email", f"bench-{tag}@example.com",
              "--username", f"bench-{tag}")  # fmt: skip
    settings = clean_env(BOOKABLE_DATABASE_URL=database_url, BOOKABLE_RATE_LIMIT="0", **env)
    log = work / f"bookable-{tag}.log"
    command = [BOOKABLE, "serve", "--workers", str(workers)]
    with serving(command, settings, log) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        # With several workers each has its own key cache: the warmup fills them all.
        status, body = http_get("127.0.0.1", port, f"/v1/me?apiKey={key}")
        assert status == 200 and json.loads(body)["user"]["role"] == "ADMIN", body
        result = measure(name, f"{server.base_url}/v1/me?apiKey={key}", opts)
    result.rss, result.workers = server.rss, workers
    if key in log.read_text(errors="replace"):
        result.notes.append("CLEAR KEY IN LOG")
    return result


def describe_stack() -> str:
    import starlette
    import uvicorn

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools

        parser = f"httptools {httptools.__version__}"
    except ImportError:
        parser = "h11"
    return (
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__} ({loop}, {parser}), "
        f"starlette {starlette.__version__}, {os.cpu_count()} CPUs"
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured round")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds; the best is kept")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    parser.add_argument(
        "--observability", action="store_true", help="add SQLite rows with metrics (and JSON logs)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="processes of the scale-out rows (1: none)"
    )
    parser.add_argument("--no-redis", action="store_true", help="scale-out rows without Redis")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="for A/B runs: no cache-off rows, no N-process rows (1-process Redis rows kept)",
    )
    args = parser.parse_args()
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    opts = Options(args.duration, args.warmup, args.connections, args.threads, args.rounds, client)
    pg_url = _server.bench_database_url()
    redis_url = None
    if not args.no_redis:
        redis_url = os.environ.get("BOOKABLE_BENCH_REDIS_URL") or os.environ.get(
            "BOOKABLE_TEST_REDIS_URL"
        )

    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {describe_stack()}")
    print(f"# load average at start: {load_average()} (other work on the machine skews results)")
    print(
        f"# client: {client}, {opts.connections} connections"
        + (f", {opts.threads} thread(s)" if client == "wrk" else "")
        + f", {opts.warmup:g} s warmup, {opts.rounds} x {opts.duration:g} s; access log ON for both"
    )
    if args.quick:
        args.workers = 1
    if args.workers > 1:
        print(
            f"# scale-out rows: {args.workers} processes, "
            + ("with Redis" if redis_url else "no Redis (key cache off)")
            + f"; the load generator shares the machine's {os.cpu_count()} CPUs with the servers"
        )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bookable-bench-") as tmp:
        work = Path(tmp)
        sqlite_url = f"sqlite:///{work / 'bench.db'}"
        cli(sqlite_url, "db", "upgrade")
        results.append(bench_floor(work, opts))
        results.append(bench_bookable("bookable sqlite", sqlite_url, work, opts))
        no_cache = {"BOOKABLE_AUTH_CACHE_SECONDS": "0"}
        if not args.quick:
            results.append(
                bench_bookable("bookable sqlite, cache off", sqlite_url, work, opts, **no_cache)
            )
        if args.observability:
            metrics = {"BOOKABLE_METRICS": "on"}
            results.append(
                bench_bookable("bookable sqlite, metrics on", sqlite_url, work, opts, **metrics)
            )
            json_logs = {**metrics, "BOOKABLE_LOG_FORMAT": "json"}
            results.append(
                bench_bookable("... metrics, json logs", sqlite_url, work, opts, **json_logs)
            )
        if pg_url and not args.no_postgres:
            results.append(bench_bookable("bookable postgres", pg_url, work, opts))
            if not args.quick:
                results.append(
                    bench_bookable("bookable postgres, cache off", pg_url, work, opts, **no_cache)
                )
        if args.quick and redis_url:
            redis_env = {"BOOKABLE_REDIS_URL": redis_url}
            results.append(
                bench_bookable("bookable sqlite, redis", sqlite_url, work, opts, **redis_env)
            )
            if pg_url and not args.no_postgres:
                results.append(
                    bench_bookable("bookable postgres, redis", pg_url, work, opts, **redis_env)
                )
        if args.workers > 1:
            # Scale-out on one machine: N server processes each. The load generator runs on the
            # same cores, so this shows what N processes buy *here*. With Redis, as deployed at
            # scale (`bookable serve --workers N` without it turns the key cache off): then the
            # one-process row with Redis too, to tell the cost of Redis from the gain of N.
            n = args.workers
            results.append(bench_floor(work, opts, workers=n))
            redis_env = {"BOOKABLE_REDIS_URL": redis_url} if redis_url else {}
            tag = ", redis" if redis_url else ""
            databases = [("sqlite", sqlite_url)]
            if pg_url and not args.no_postgres:
                databases.append(("postgres", pg_url))
            for db, url in databases:
                if redis_url:
                    results.append(
                        bench_bookable(f"bookable {db}{tag}", url, work, opts, **redis_env)
                    )
                scaled = bench_bookable(
                    f"bookable {db}{tag}, {n} workers", url, work, opts, workers=n, **redis_env
                )
                if not redis_url:
                    scaled.notes.append("key cache off (several workers, no Redis)")
                results.append(scaled)
    report(results)


def report(results: list[Result]) -> None:
    """The table: each row against the floor with as many processes, and every row with more
    than one process against its one-process row too."""
    floors = {r.workers: r.requests_per_second for r in results if r.name.startswith("floor")}
    single = {r.name: r.requests_per_second for r in results if r.workers == 1}
    print()
    print("| server | processes | req/s | p50 ms | p99 ms | / floor | RSS after | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        notes = list(r.notes)
        base = r.name.split(f", {r.workers} workers")[0]
        if r.workers > 1 and base in single:
            notes.insert(0, f"{r.requests_per_second / single[base]:.2f} x its 1-process row")
        print(
            f"| {r.name} | {r.workers} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} "
            f"| {r.p99_ms:.2f} | {r.requests_per_second / floors[r.workers]:.2f} "
            f"| {format_rss(r.rss)} | {'; '.join(notes)} |"
        )
    print(f"\nload average at end: {load_average()}")
    ratio = results[1].requests_per_second / floors[1]
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"\nratio bookable(sqlite, cache on)/floor = {ratio:.2f} ({verdict} the {TARGET_RATIO})")


if __name__ == "__main__":
    main()
