"""A real server after an unexpected error, and what reaches its logs (issue 10, part 1).

The unexpected errors are real ones: tables of the server's own SQLite file are broken under it
(dropped, or given a trigger that refuses inserts), as a failing disk or a bad manual fix would.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from tests.system.conftest import create_admin, serving

UNEXPECTED = {"message": "Unexpected error, please reach out to the server's operator."}


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection a response came on."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("socket").getsockname()[1])


def break_database(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)


def test_an_unexpected_error_answers_a_full_500_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    database = tmp_path / "bookable.db"
    url = f"sqlite:///{database}"
    _email, _username, key = create_admin(url)
    with serving(url, tmp_path) as server:
        with httpx.Client(base_url=server.base_url, params={"apiKey": key}, timeout=10.0) as http:
            assert http.get("/v1/booking-references").status_code == 200
            break_database(database, "DROP TABLE booking_references")
            failed = http.get("/v1/booking-references")
            assert failed.status_code == 500
            assert failed.json() == UNEXPECTED
            assert failed.headers.get("connection", "").lower() != "close"
            assert failed.headers["x-request-id"]
            # The next request goes on the same kept-alive connection, and succeeds.
            after = http.get("/v1/me")
            assert after.status_code == 200, after.text
            assert local_port(after) == local_port(failed)
        logs = server.wait_for_log("no such table: booking_references")
        assert "Traceback (most recent call last)" in logs
        assert "unhandled error on GET /v1/booking-references" in logs
        # Starlette's re-raise would add uvicorn's own report of a crashed application.
        assert "Exception in ASGI application" not in logs


def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    database = tmp_path / "bookable.db"
    url = f"sqlite:///{database}"
    _email, _username, key = create_admin(url)
    secret = key.removeprefix("cal_")
    webhook_secret = "whsec-do-not-log-7f3a"
    with serving(url, tmp_path) as server:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
            query = {"apiKey": key}
            bearer = {"Authorization": f"Bearer {key}"}
            assert http.get("/v1/me", params=query).status_code == 200
            assert http.get("/v1/me", headers=bearer).status_code == 200
            # In a path, with and without its prefix, and percent-encoded.
            assert http.get(f"/v1/bookings/{key}", headers=bearer).status_code == 404
            assert http.get(f"/v1/bookings/{secret}", headers=bearer).status_code == 404
            assert http.get(f"/v1/x/cal%5F{secret}", headers=bearer).status_code == 404
            # In a JSON body field, and in another query parameter.
            named = http.post("/v1/event-types", headers=bearer, json={"title": key})
            assert named.status_code == 400
            assert http.get("/v1/users", params={**query, "email": key}).status_code == 200
            # A traceback whose SQL would carry the key and a webhook secret as parameters.
            # (A trigger writing to a table that is gone: the insert fails, not its checks.)
            break_database(
                database,
                "CREATE TABLE audit (webhook_id TEXT)",
                "CREATE TRIGGER audit_webhooks BEFORE INSERT ON webhooks "
                "BEGIN INSERT INTO audit VALUES (NEW.id); END",
                "DROP TABLE audit",
            )
            failed = http.post(
                "/v1/webhooks",
                headers=bearer,
                json={
                    "subscriberUrl": f"https://hooks.example.com/cal?token={key}",
                    "eventTriggers": ["BOOKING_CREATED"],
                    "secret": webhook_secret,
                },
            )
            assert failed.status_code == 500, failed.text
            # And an unexpected error (a traceback) on a request with the key in its query.
            break_database(database, "DROP TABLE booking_references")
            assert http.get("/v1/booking-references", params=query).status_code == 500
        logs = server.wait_for_log("no such table: booking_references")
        time.sleep(0.5)  # the access log line of the last request
        logs = server.logs()
        assert "no such table: main.audit" in logs  # the failed insert was logged...
        assert "[redacted" in logs  # ...and keys were met and hidden
        for clear in (key, secret, webhook_secret):
            assert clear not in logs, f"{clear!r} reached the logs"
        assert "Bearer" not in logs or "Bearer [redacted]" in logs
