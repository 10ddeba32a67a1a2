"""Metrics and JSON logs of real processes: `bookable serve --workers 2` sums both processes'
counters in one scrape (prometheus-client's multi-process mode, in a directory serve makes and
removes), a `bookable worker` sharing PROMETHEUS_MULTIPROC_DIR shows its deliveries in serve's
scrape, as do serve's own dispatcher process's, and BOOKABLE_LOG_FORMAT=json makes every line
of serve and worker one JSON object."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.system.conftest import create_admin, serving, start_worker
from tests.system.test_webhook_delivery import FAST_ENV, _outbox
from tests.webhook_receiver import receiving

ME = {"method": "GET", "route": "/v1/me", "status": "200"}


def _value(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _me_counts_by_process(directory: Path, scratch: Path) -> dict[int, float]:
    """GET /v1/me answers counted by each process, read from its own files alone."""
    counts = {}
    for counter in directory.glob("counter_*.db"):
        pid = int(counter.stem.removeprefix("counter_"))
        alone = scratch / str(pid)
        alone.mkdir(parents=True, exist_ok=True)
        shutil.copy(counter, alone / counter.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "bookable_http_requests_total"
            and all(sample.labels.get(k) == v for k, v in ME.items())
        )
    return counts


def _get_me(base_url: str, key: str) -> int:
    # A connection of its own each time, so the kernel may hand it to either worker.
    with httpx.Client(base_url=base_url, timeout=10.0) as http:
        return http.get("/v1/me", params={"apiKey": key}).status_code


def _settled_counts(directory: Path, scratch: Path, sent: int) -> dict[int, float]:
    """`_me_counts_by_process` once the processes have counted all ``sent`` answers, or after
    5 s: a request is counted as its handler returns, just after the client has its answer."""
    deadline = time.monotonic() + 5
    while True:
        counts = _me_counts_by_process(directory, scratch)
        if sum(counts.values()) >= sent or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def _scraped_once_delivered(base_url: str, count: int) -> str:
    """Serve's scrape once it counts ``count`` delivered webhooks and none due (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        scraped = httpx.get(f"{base_url}/metrics", timeout=10.0).text
        delivered = _value(scraped, "bookable_webhook_deliveries_total", outcome="delivered")
        due = _value(scraped, "bookable_webhook_outbox_events", state="due")
        if delivered == count and due == 0:
            return scraped
        assert time.monotonic() < deadline, scraped
        time.sleep(0.1)


def test_serve_with_two_workers_sums_both_processes(sqlite_url: str, tmp_path: Path) -> None:
    _email, _name, key = create_admin(sqlite_url)
    temp = tmp_path / "tmp"  # where serve makes its metrics directory
    temp.mkdir()
    env = {"BOOKABLE_METRICS": "on", "BOOKABLE_RATE_LIMIT": "0", "TMPDIR": str(temp)}
    sent = 0
    with serving(sqlite_url, tmp_path / "logs", "--workers", "2", env=env) as server:
        (directory,) = temp.glob("bookable-metrics-*")
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=8) as pool:
            while True:
                codes = list(pool.map(lambda _: _get_me(server.base_url, key), range(16)))
                assert codes == [200] * 16
                sent += 16
                by_process = _settled_counts(directory, tmp_path / "scratch", sent)
                if len([n for n in by_process.values() if n > 0]) >= 2:
                    break
                assert time.monotonic() < deadline, f"one process answered all: {by_process}"
        assert sum(by_process.values()) == sent
        # Whichever process answers the scrape, it counts every process's requests.
        for _ in range(4):
            with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
                scraped = http.get("/metrics")
            assert scraped.status_code == 200
            assert _value(scraped.text, "bookable_http_requests_total", **ME) == sent
            assert key not in scraped.text
    assert not directory.exists()  # serve removes the directory it made


def test_a_worker_sharing_the_directory_shows_its_deliveries(
    sqlite_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(directory), **FAST_ENV}
    env = {**shared, "BOOKABLE_METRICS": "on", "BOOKABLE_WEBHOOK_DISPATCHER": "off"}
    count = 5
    with (
        receiving() as receiver,
        serving(sqlite_url, tmp_path / "logs", env=env) as server,
    ):
        worker_env = {**shared, "BOOKABLE_LOG_FORMAT": "json"}
        worker = start_worker(sqlite_url, tmp_path / "worker.log", worker_env)
        try:
            worker.wait_for_log("worker started")
            asyncio.run(_outbox(sqlite_url, receiver.url + "/hook", count))
            receiver.wait_for_sync(count, within=30)
            _scraped_once_delivered(server.base_url, count)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
            assert worker.process.wait(timeout=20) == 0
    # Serve's own dispatcher is off: the count is the worker's, from its file in the directory.
    assert (directory / f"counter_{worker.process.pid}.db").exists()
    # The worker's JSON logs: every line one object (its output is stdout and stderr).
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    assert any(line["message"].startswith("worker started") for line in lines)
    assert all(line["logger"] and line["level"] and line["time"] for line in lines)


def test_serve_shows_the_deliveries_of_its_dispatcher_process(
    sqlite_url: str, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"  # where serve makes its metrics directory
    temp.mkdir()
    env = {
        **FAST_ENV,
        "BOOKABLE_METRICS": "on",
        "BOOKABLE_WEBHOOK_DISPATCHER": "process",
        "TMPDIR": str(temp),
    }
    count = 4
    with (
        receiving() as receiver,
        serving(sqlite_url, tmp_path / "logs", env=env) as server,
    ):
        # One process serves, its child delivers: the scrape sums both, from their files.
        (directory,) = temp.glob("bookable-metrics-*")
        server.wait_for_log("dispatcher process started")
        asyncio.run(_outbox(sqlite_url, receiver.url + "/hook", count))
        receiver.wait_for_sync(count, within=30)
        _scraped_once_delivered(server.base_url, count)
        assert len(list(directory.glob("counter_*.db"))) == 2  # serve's and its child's
    assert not directory.exists()  # serve removes the directory it made


def test_json_logs_of_serve_with_two_workers(sqlite_url: str, tmp_path: Path) -> None:
    _email, _name, key = create_admin(sqlite_url)
    env = {"BOOKABLE_LOG_FORMAT": "json", "BOOKABLE_RATE_LIMIT": "0"}
    with serving(sqlite_url, tmp_path / "logs", "--workers", "2", env=env) as server:
        answers = []
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(
                    lambda n: httpx.get(
                        f"{server.base_url}/v1/me",
                        params={"apiKey": key},
                        headers={"X-Request-ID": f"sys-{n}"},
                        timeout=10.0,
                    ),
                    range(12),
                )
            )
        missing = httpx.get(f"{server.base_url}/v1/bookings/4242", params={"apiKey": key})
        assert [a.status_code for a in answers] == [200] * 12 and missing.status_code == 404
        server.wait_for_log(missing.headers["x-request-id"])
        # The same request ids as the responses, one line each, across both processes.
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
            access = [line for line in lines if line["logger"] == "bookable.access"]
            ours = [line for line in access if line["request_id"].startswith("sys-")]
            if len(ours) == 12 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    # Every line of the server's stderr parsed above: each is one JSON object.
    assert sorted(line["request_id"] for line in ours) == sorted(f"sys-{n}" for n in range(12))
    assert all(
        (line["method"], line["route"], line["status"]) == ("GET", "/v1/me", 200) for line in ours
    )
    assert len({line["user_id"] for line in ours}) == 1 and ours[0]["user_id"] is not None
    (lost,) = [line for line in access if line["request_id"] == missing.headers["x-request-id"]]
    assert (lost["route"], lost["status"]) == ("/v1/bookings/{id}", 404)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert (
        len({line["message"] for line in lines if "Started server process" in line["message"]}) == 2
    )
    text = server.logs()
    assert key not in text and key[-32:] not in text
    assert "HTTP/1.1" not in text  # no uvicorn access line beside ours
    # The raw path, not the bare id: a timestamp or a request id may hold the digits 4242.
    assert "bookings/4242" not in text
