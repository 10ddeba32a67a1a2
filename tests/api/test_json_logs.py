"""BOOKABLE_LOG_FORMAT=json: every line one JSON object; one access line per request with the
response's request id, the route template and the caller's user id; never a key."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.app import create_app
from bookable.core.logging import ACCESS_LOGGER, JsonLogFormatter
from bookable.settings import Settings
from tests.conftest import Account, client_for


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record the root logger handles in this test, formatted as JSON lines and parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        text = stream.getvalue()
        assert text.endswith("\n") or not text
        return [json.loads(line) for line in text.splitlines()]

    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(log_format="json"))
    async with application.router.lifespan_context(application):
        yield application


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == ACCESS_LOGGER]


async def test_an_access_line_per_request_with_the_request_id_and_user(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, log_lines: Any
) -> None:
    me = await client.get("/v1/me", params=alice.params)
    chosen = await client.get(
        f"/v1/users/{alice.id}",
        headers={"Authorization": f"Bearer {alice.key}", "X-Request-ID": "trace-42"},
    )
    anonymous = await client.get("/v1/bookings/777")
    lines = log_lines()
    by_id = {line["request_id"]: line for line in access_lines(lines)}
    first = by_id[me.headers["x-request-id"]]
    assert first["level"] == "INFO"
    assert first["time"].endswith("+00:00")
    assert (first["method"], first["route"], first["status"]) == ("GET", "/v1/me", 200)
    assert first["user_id"] == alice.id
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["message"] == "GET /v1/me 200"
    second = by_id["trace-42"]  # the client's own id is kept, as in the response
    assert chosen.headers["x-request-id"] == "trace-42"
    assert second["route"] == "/v1/users/{userId}"
    third = by_id[anonymous.headers["x-request-id"]]
    assert (third["status"], third["user_id"], third["route"]) == (401, None, "/v1/bookings/{id}")
    assert len(access_lines(lines)) == 3
    everything = json.dumps(lines)
    assert alice.key not in everything and alice.key[-32:] not in everything
    # The raw path is not in the access line, its template is (the test's own HTTP client
    # logs the URL too, with the key redacted).
    # (The raw path, not the bare id: a random request id may hold the digits 777.)
    assert "bookings/777" not in json.dumps(access_lines(lines))


async def test_keys_stay_redacted_in_any_line(app: FastAPI, log_lines: Any) -> None:
    key = "cal_" + "ab" * 16
    log = logging.getLogger("bookable.test")
    log.warning("calling %s", f"http://x/v1/me?apiKey={key}&take=1")
    log.info("headers %s", {"Authorization": f"Bearer {key}"}, extra={"target": f"?apiKey={key}"})
    try:
        raise RuntimeError(f"failed with {key}")
    except RuntimeError:
        log.exception("boom")
    lines = log_lines()
    assert [line["level"] for line in lines] == ["WARNING", "INFO", "ERROR"]
    assert lines[0]["message"] == "calling http://x/v1/me?apiKey=[redacted]&take=1"
    assert lines[1]["target"] == "?apiKey=[redacted]"
    assert "RuntimeError" in lines[2]["exc_info"]
    assert key not in json.dumps(lines)
    assert all(list(line)[:4] == ["time", "level", "logger", "message"] for line in lines)


async def test_text_mode_writes_no_access_line_of_its_own(
    make_settings: Callable[..., Settings], log_lines: Any
) -> None:
    application = create_app(make_settings())
    async with application.router.lifespan_context(application), client_for(application) as c:
        assert (await c.get("/v1/openapi.json")).status_code == 200
    assert access_lines(log_lines()) == []
