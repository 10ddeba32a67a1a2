"""Shared steps of the calendar API tests: connect a real Radicale account over the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.calendar_servers import RadicaleAccount
from tests.conftest import Account


def caldav_body(account: RadicaleAccount, **extra: Any) -> dict[str, Any]:
    key = {"url": account.url, "username": account.username, "password": account.password}
    return {"appId": "caldav-calendar", "key": key, **extra}


async def connect_caldav(
    client: httpx.AsyncClient, caller: Account, account: RadicaleAccount, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/credentials", params=caller.params, json=caldav_body(account, **extra)
    )
    assert response.status_code == 200, response.text
    credential: dict[str, Any] = response.json()["credential"]
    return credential
