"""/v1/credentials against a real Radicale server: connect before saving, dedupe, encrypted at
rest, never a key in a response or a log line, cross-user 404s, delete cascades."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bookable.models import Credential, SelectedCalendar
from tests.api.calendar_helpers import caldav_body, connect_caldav
from tests.calendar_servers import RadicaleAccount, free_port
from tests.conftest import Account


async def count(app: FastAPI, model: Any) -> int:
    async with app.state.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_connect_lists_and_answers_without_the_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    radicale: RadicaleAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    radicale.make_calendar("Work")
    caplog.set_level(logging.DEBUG)
    response = await client.post("/v1/credentials", params=alice.params, json=caldav_body(radicale))
    assert response.status_code == 200, response.text
    credential = response.json()["credential"]
    assert credential == {
        "id": credential["id"],
        "type": "caldav_calendar",
        "appId": "caldav-calendar",
        "userId": alice.id,
        "teamId": None,
        "invalid": False,
        "settings": {"tentativeIsBusy": True, "transparentIsBusy": False},
    }
    listed = await client.get("/v1/credentials", params=alice.params)
    one = await client.get(f"/v1/credentials/{credential['id']}", params=alice.params)
    assert listed.json() == {"credentials": [credential]}
    assert one.json() == {"credential": credential}
    for text in (response.text, listed.text, one.text, caplog.text):
        assert radicale.password not in text
    async with app.state.sessions() as session:
        stored = await session.scalar(select(Credential))
        assert stored is not None
        assert radicale.password not in stored.encrypted_key
        key = app.state.encryptor.decrypt_json(stored.encrypted_key)
        assert key["password"] == radicale.password


async def test_the_sqlite_file_never_holds_the_password(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    url = app.state.settings.database_url
    if not url.startswith("sqlite"):
        pytest.skip("reads the SQLite file")
    await connect_caldav(client, alice, radicale)
    await app.state.engine.dispose()  # everything written out of the WAL into the file
    path = Path(url.removeprefix("sqlite:///"))
    data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert radicale.password.encode() not in data


async def test_the_same_account_twice_is_one_credential_with_the_new_password(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    first = await connect_caldav(client, alice, radicale)
    new_password = "a-new-password-123"
    # The user changes their password on the server (htpasswd: first line wins, so rewrite it).
    users = radicale.server.htpasswd
    lines = [line for line in users.read_text().splitlines()
             if not line.startswith(radicale.username + ":")]  # fmt: skip
    users.write_text("\n".join([*lines, f"{radicale.username}:{new_password}"]) + "\n")
    radicale.server.passwords[radicale.username] = new_password
    radicale.password = new_password
    body = caldav_body(radicale)
    body["key"]["url"] = radicale.url.rstrip("/")  # the same server, written differently
    again = await client.post("/v1/credentials", params=alice.params, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["credential"]["id"] == first["id"]
    assert await count(app, Credential) == 1
    async with app.state.sessions() as session:
        stored = await session.scalar(select(Credential))
        assert stored is not None
        assert app.state.encryptor.decrypt_json(stored.encrypted_key)["password"] == new_password


async def test_app_named_by_slug_or_type(
    client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    for naming in ({"appSlug": "caldav-calendar"}, {"type": "caldav_calendar"}):
        body = caldav_body(radicale)
        del body["appId"]
        response = await client.post(
            "/v1/credentials", params=alice.params, json={**body, **naming}
        )
        assert response.status_code == 200, response.text
        assert response.json()["credential"]["appId"] == "caldav-calendar"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": {"url": "http://x/", "username": "u", "password": "p"}}, "'appId'"),
        ({"appId": "google-calendar", "key": {}}, "caldav-calendar, apple-calendar, ics-feed"),
        ({"appId": "caldav-calendar"}, "invalid_type in 'key': Required"),
        ({"appId": "caldav-calendar", "key": {"username": "u", "password": "p"}}, "'key.url'"),
        (
            {"appId": "caldav-calendar", "key": {"url": "http://x/", "username": "u"}},
            "'key.password'",
        ),
        (
            {"appId": "caldav-calendar", "key": {"url": "ftp://x/", "username": "u",
                                                 "password": "p"}},
            "'key.url'",
        ),
        ({"appId": "ics-feed", "key": {"urls": []}}, "'key.urls'"),
        (
            {"appId": "caldav-calendar", "key": {"url": "http://u:pw@x/", "username": "u",
                                                 "password": "p"}},
            "use username and password",
        ),
        ({"appId": "ics-feed", "key": {"urls": ["http://169.254.169.254/latest/"]}}, "key.urls.0"),
        (
            {"appId": "caldav-calendar", "key": {"url": "http://x/", "username": "u",
                                                 "password": "p", "extra": 1}},
            "extra",
        ),
        ({"appId": "caldav-calendar", "key": {}, "invalid": False}, "invalid"),
    ],
)  # fmt: skip
async def test_validation_errors_name_the_field(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/v1/credentials", params=alice.params, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


async def test_the_metadata_address_is_refused_before_any_connection(
    client: httpx.AsyncClient, alice: Account
) -> None:
    body = {
        "appId": "caldav-calendar",
        "key": {"url": "http://169.254.169.254/latest/", "username": "u", "password": "pw-secret"},
    }
    response = await client.post("/v1/credentials", params=alice.params, json=body)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "key.url" in message and "pw-secret" not in message


async def test_a_refusal_is_a_400_with_the_providers_words(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    wrong = caldav_body(radicale)
    wrong["key"]["password"] = "wrong-password-456"
    response = await client.post("/v1/credentials", params=alice.params, json=wrong)
    assert response.status_code == 400
    assert "refused the user name or password" in response.json()["message"]
    assert "wrong-password-456" not in response.text

    closed = free_port()
    unreachable = caldav_body(radicale)
    unreachable["key"]["url"] = f"http://127.0.0.1:{closed}/"
    response = await client.post("/v1/credentials", params=alice.params, json=unreachable)
    assert response.status_code == 400
    assert "Could not connect" in response.json()["message"]

    no_home = caldav_body(radicale)
    no_home["key"]["url"] = radicale.url + ".web/"  # Radicale's web UI: HTML, no DAV
    response = await client.post("/v1/credentials", params=alice.params, json=no_home)
    assert response.status_code == 400, response.text
    assert await count(app, Credential) == 0


async def test_other_users_credentials_are_404_and_untouched(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    bob: Account,
    admin: Account,
    radicale: RadicaleAccount,
) -> None:
    bobs = await connect_caldav(client, bob, radicale)
    path = f"/v1/credentials/{bobs['id']}"
    for method, body in (("GET", None), ("PATCH", {"settings": {"tentativeIsBusy": False}}),
                         ("DELETE", None)):  # fmt: skip
        response = await client.request(method, path, params=alice.params, json=body)
        assert response.status_code == 404, response.text
        assert response.json() == {"message": "Credential not found"}
        missing = await client.request(method, "/v1/credentials/999999", params=alice.params,
                                       json=body)  # fmt: skip
        assert missing.json() == response.json()
    assert (await client.get("/v1/credentials", params=alice.params)).json() == {"credentials": []}
    refused = await client.get("/v1/credentials", params={**alice.params, "userId": bob.id})
    assert refused.status_code == 403
    by_admin = await client.get("/v1/credentials", params={**admin.params, "userId": bob.id})
    assert [c["id"] for c in by_admin.json()["credentials"]] == [bobs["id"]]
    # Creating for someone else is an admin's right only, refused before any connection.
    for_bob = await client.post(
        "/v1/credentials", params=alice.params, json=caldav_body(radicale, userId=bob.id)
    )
    assert for_bob.status_code == 403
    by_admin_for_bob = await client.post(
        "/v1/credentials", params=admin.params, json=caldav_body(radicale, userId=bob.id)
    )
    assert by_admin_for_bob.json()["credential"]["id"] == bobs["id"]  # the same account


async def test_patch_settings_key_and_invalid(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    credential = await connect_caldav(client, alice, radicale)
    path = f"/v1/credentials/{credential['id']}"
    response = await client.patch(
        path, params=alice.params, json={"settings": {"tentativeIsBusy": False}}
    )
    assert response.json()["credential"]["settings"] == {
        "tentativeIsBusy": False, "transparentIsBusy": False,
    }  # fmt: skip
    refused = await client.patch(path, params=alice.params, json={"invalid": True})
    assert refused.status_code == 400
    assert "invalid" in refused.json()["message"]

    # A server marked it invalid; it comes back only after a re-connect that works.
    async with app.state.sessions() as session, session.begin():
        stored = await session.get(Credential, credential["id"])
        assert stored is not None
        stored.invalid = True
    revalidated = await client.patch(path, params=alice.params, json={"invalid": False})
    assert revalidated.status_code == 200, revalidated.text
    assert revalidated.json()["credential"]["invalid"] is False

    wrong = caldav_body(radicale)["key"] | {"password": "nope-nope-789"}
    response = await client.patch(path, params=alice.params, json={"key": wrong})
    assert response.status_code == 400
    assert "nope-nope-789" not in response.text
    bad_url = caldav_body(radicale)["key"] | {"url": "http://169.254.169.254/"}
    response = await client.patch(path, params=alice.params, json={"key": bad_url})
    assert response.status_code == 400 and "key.url" in response.json()["message"]
    good = await client.patch(path, params=alice.params, json={"key": caldav_body(radicale)["key"]})
    assert good.status_code == 200, good.text


async def test_delete_removes_its_selected_calendars(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, radicale: RadicaleAccount
) -> None:
    calendar = radicale.make_calendar("Busy")
    credential = await connect_caldav(client, alice, radicale)
    selected = await client.post(
        "/v1/selected-calendars",
        params=alice.params,
        json={"integration": "caldav_calendar", "externalId": calendar},
    )
    assert selected.status_code == 200, selected.text
    assert await count(app, SelectedCalendar) == 1
    response = await client.delete(f"/v1/credentials/{credential['id']}", params=alice.params)
    assert response.json() == {
        "message": f"Credential with id: {credential['id']} deleted successfully"
    }
    # The foreign key's ON DELETE CASCADE, on SQLite and PostgreSQL alike.
    assert await count(app, SelectedCalendar) == 0
    assert await count(app, Credential) == 0
