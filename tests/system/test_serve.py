"""`bookable serve` as a real process, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import Server, create_admin, serving


@dataclass
class Served:
    server: Server
    email: str
    username: str
    key: str

    def new_key(self) -> str:
        """Another key for the admin, made over HTTP (cheaper than another CLI run)."""
        response = httpx.post(
            f"{self.server.base_url}/v1/api-keys", params={"apiKey": self.key}, json={}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()["api_key"]["key"]


@pytest.fixture(scope="module")
def served_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server on SQLite with an admin made by `bookable admin create`, shared by the module."""
    tmp = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{tmp / 'bookable.db'}"
    email, username, key = create_admin(url)
    with serving(url, tmp) as server:
        yield Served(server, email, username, key)


def get_me(server: Server, key: str) -> httpx.Response:
    # A new connection per request: with several workers, each may take its own share.
    return httpx.get(f"{server.base_url}/v1/me", params={"apiKey": key}, timeout=10.0)


def assert_admin_me(server: Server, key: str, email: str, username: str) -> None:
    response = get_me(server, key)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert (user["email"], user["username"], user["role"]) == (email, username, "ADMIN")


def assert_key_not_logged(server: Server, key: str) -> None:
    logs = server.wait_for_log("apiKey=[redacted]")
    secret = key.removeprefix("cal_")
    assert key not in logs
    assert secret not in logs


def test_admin_created_by_cli_is_served(served_admin: Served) -> None:
    server = served_admin.server
    assert_admin_me(server, served_admin.key, served_admin.email, served_admin.username)
    assert get_me(server, served_admin.key + "0").status_code == 401


def test_demo_prints_a_working_key_first_on_stdout(sqlite_url: str, tmp_path: Path) -> None:
    # Unbuffered or not: stdout into a file or a pipe (a script, `docker logs`) is block
    # buffered, and the key must be there while the server runs, not when it stops.
    with serving(sqlite_url, tmp_path, "--demo", unset=("PYTHONUNBUFFERED",)) as server:
        key = server.stdout().splitlines()[0].strip()
        assert key.startswith("cal_")
        response = get_me(server, key)
        assert response.status_code == 200, response.text
        assert response.json()["user"]["username"] == "demo"
        assert response.json()["user"]["role"] == "USER"


def test_two_workers_serve_without_redis(sqlite_url: str, tmp_path: Path) -> None:
    email, username, key = create_admin(sqlite_url)
    with serving(sqlite_url, tmp_path, "--workers", "2") as server:
        assert "key cache is off" in " ".join(server.stderr().split())
        for _ in range(100):  # both workers report in (the port answers once one is up)
            if server.logs().count("Application startup complete") >= 2:
                break
            time.sleep(0.1)
        assert server.logs().count("Application startup complete") == 2, server.logs()
        for _ in range(2):
            assert_admin_me(server, key, email, username)
        # With no shared cache, a revocation seen by one worker holds in every worker.
        for _ in range(4):
            assert get_me(server, key).status_code == 200
        listed = httpx.get(f"{server.base_url}/v1/api-keys", params={"apiKey": key}, timeout=10)
        (key_id,) = [k["id"] for k in listed.json()["api_keys"]]
        deleted = httpx.delete(
            f"{server.base_url}/v1/api-keys/{key_id}", params={"apiKey": key}, timeout=10
        )
        assert deleted.status_code == 200, deleted.text
        for _ in range(6):
            assert get_me(server, key).status_code == 401


def test_logs_never_show_the_clear_key(served_admin: Served) -> None:
    server, key = served_admin.server, served_admin.new_key()
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        assert http.get("/v1/me", params={"apiKey": key}).status_code == 200
        assert http.get("/me", params={"apiKey": key}).status_code == 200
        assert http.get("/v1/users", params={"take": 5, "apiKey": key}).status_code == 200
        assert http.get("/v1/nowhere", params={"apiKey": key}).status_code == 404
        assert http.get("/v1/me", params={"APIKEY": key}).status_code in {200, 401}
        assert http.get("/v1/me", params={"apiKey": key + "x"}).status_code == 401
        bearer = {"Authorization": f"Bearer {key}"}
        assert http.get("/v1/me", headers=bearer).status_code == 200
    for clear in (key, served_admin.key):
        assert_key_not_logged(server, clear)
    assert server.logs().count("apiKey=[redacted]") >= 6


def test_logs_hide_a_key_behind_an_encoded_parameter_name(served_admin: Served) -> None:
    server, key = served_admin.server, served_admin.new_key()
    response = httpx.get(f"{server.base_url}/v1/me?apiKe%79={key}", timeout=10.0)
    assert response.status_code == 200
    server.wait_for_log("/v1/me?apiKe%79=")
    assert key.removeprefix("cal_") not in server.logs()


@pytest.mark.postgres
def test_serve_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    email, username, key = create_admin(postgres_url, prefix="sys-pg")
    with serving(postgres_url, tmp_path) as server:
        assert_admin_me(server, key, email, username)
        assert_key_not_logged(server, key)
