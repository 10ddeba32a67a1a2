"""GET /v1/connected-calendars: Cal.com's bare array, listed live from real servers; a credential
that cannot be reached is listed with its error; the GET never writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from bookable.models import Base, SelectedCalendar
from tests.api.calendar_helpers import connect_caldav
from tests.calendar_servers import RadicaleAccount, RadicaleServer
from tests.conftest import Account


async def snapshot(app: FastAPI) -> dict[str, list[dict[str, Any]]]:
    async with app.state.sessions() as session:
        return {
            table.name: [dict(r) for r in (await session.execute(select(table))).mappings()]
            for table in Base.metadata.sorted_tables
            if table.name not in {"api_keys", "idempotency_keys"}
        }


async def test_lists_every_calendar_with_selection_and_errors(
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: Account,
    radicale: RadicaleAccount,
    private_radicale: RadicaleServer,
) -> None:
    work = radicale.make_calendar("Work")
    holidays = radicale.make_read_only_calendar("Holidays")
    credential = await connect_caldav(client, alice, radicale)
    selected = await client.post(
        "/v1/selected-calendars",
        params=alice.params,
        json={"integration": "caldav_calendar", "externalId": work},
    )
    assert selected.status_code == 200, selected.text
    # The busy-time reader recorded a failure on the selected calendar: shown, not hidden.
    async with app.state.sessions() as session, session.begin():
        row = await session.scalar(select(SelectedCalendar))
        assert row is not None
        row.error = "The calendar server at ... did not answer"
        row.last_error_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    # A second account on a server that goes away.
    elsewhere = private_radicale.new_account()
    unreachable = await connect_caldav(client, alice, elsewhere)
    private_radicale.stop()

    before = await snapshot(app)
    response = await client.get("/v1/connected-calendars", params=alice.params)
    assert response.status_code == 200, response.text
    first, second = response.json()
    assert {k: v for k, v in first.items() if k != "calendars"} == {
        "name": "CalDAV",
        "appId": "caldav-calendar",
        "userId": alice.id,
        "integration": "caldav_calendar",
        "credentialId": credential["id"],
        "error": None,
    }
    by_id = {c["externalId"]: c for c in first["calendars"]}
    assert by_id[work] == {
        "externalId": work,
        "name": "Work",
        "primary": by_id[work]["primary"],
        "readOnly": False,
        "isSelected": True,
        "error": "The calendar server at ... did not answer",
        "lastErrorAt": "2030-01-02T03:04:05.000Z",
    }
    assert by_id[holidays]["readOnly"] is True and by_id[holidays]["isSelected"] is False
    assert by_id[holidays]["error"] is None
    assert second["credentialId"] == unreachable["id"]
    assert second["calendars"] == []
    assert "Could not connect" in second["error"]
    assert elsewhere.password not in response.text and radicale.password not in response.text
    assert await snapshot(app) == before, "GET /connected-calendars wrote"


async def test_user_id_is_for_admins(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin: Account, radicale: Any
) -> None:
    await connect_caldav(client, bob, radicale)
    refused = await client.get("/v1/connected-calendars", params={**alice.params, "userId": bob.id})
    assert refused.status_code == 403 and refused.json()["message"] == "ADMIN required"
    assert (await client.get("/v1/connected-calendars", params=alice.params)).json() == []
    both = await client.get(
        "/v1/connected-calendars",
        params=[("apiKey", admin.key), ("userId", str(bob.id)), ("userId", str(alice.id))],
    )
    assert [c["userId"] for c in both.json()] == [bob.id]


FEED = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
X-WR-CALNAME:Public holidays
BEGIN:VEVENT
UID:h1@example
DTSTART;VALUE=DATE:20300101
DTEND;VALUE=DATE:20300102
SUMMARY:New year
END:VEVENT
END:VCALENDAR
"""


async def test_an_ics_feed_connects_lists_read_only_and_can_be_selected(
    client: httpx.AsyncClient, alice: Account, ics_server: Any
) -> None:
    url = ics_server.set_feed("/holidays.ics", FEED)
    created = await client.post(
        "/v1/credentials", params=alice.params, json={"appId": "ics-feed", "key": {"urls": [url]}}
    )
    assert created.status_code == 200, created.text
    assert created.json()["credential"]["type"] == "ics-feed_calendar"
    (listing,) = (await client.get("/v1/connected-calendars", params=alice.params)).json()
    assert listing["integration"] == "ics-feed_calendar" and listing["error"] is None
    (calendar,) = listing["calendars"]
    assert calendar["name"] == "Public holidays" and calendar["readOnly"] is True
    selected = await client.post(
        "/v1/selected-calendars",
        params=alice.params,
        json={"integration": "ics-feed_calendar", "externalId": calendar["externalId"]},
    )
    assert selected.status_code == 200, selected.text
    compound = f"{alice.id}_ics-feed_calendar_{calendar['externalId']}"
    one = await client.get(f"/v1/selected-calendars/{compound}", params=alice.params)
    assert one.status_code == 200, one.text
    missing = await client.post(
        "/v1/credentials",
        params=alice.params,
        json={"appId": "ics-feed", "key": {"urls": [ics_server.url + "/nothing.ics"]}},
    )
    assert missing.status_code == 400, missing.text
