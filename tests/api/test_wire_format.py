"""The wire format, byte for byte: a fixed data set built through the API, a fixed list of
requests, and every answer's status, contract headers and exact body bytes compared with
tests/api/wire_golden.json.

This is the guard for performance work on the request path: a change that moves a key, a space,
a digit of a number or a header fails here with a diff naming the request. Only what is random
by design is normalised: booking uids, UUID ids (webhooks, API keys), API keys, request ids and
the Date header. The clock is frozen (and stepped by a second per seeding call, so rows that are
listed by creation time have a fixed order), so every stored instant is fixed.

When a change to the wire is intended (and only then), regenerate the golden file and commit it
with the change:

    BOOKABLE_UPDATE_WIRE_GOLDEN=1 .venv/bin/pytest -n 0 tests/api/test_wire_format.py

It regenerates from SQLite and then checks PostgreSQL against it: the two must agree.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bookable.app import create_app
from bookable.core.clock import clock
from bookable.models import UserRole
from bookable.settings import Settings
from tests.conftest import Account

from .booking_helpers import NOW

GOLDEN = Path(__file__).with_name("wire_golden.json")
UPDATE = os.environ.get("BOOKABLE_UPDATE_WIRE_GOLDEN") == "1"

# Headers that vary per request by design; their presence is still recorded.
VOLATILE_HEADERS = {
    "date": "<date>",
    "x-request-id": "<request-id>",
    "calcom-response-id": "<response-id>",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Booking uids: 22 base58 characters, random by design.
API_KEY = re.compile(r"cal_[0-9a-f]{32}")
BOOKING_UID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{22}")


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    # The dispatcher is off: webhook deliveries stay pending (a fixed state) and nothing leaves.
    application = create_app(
        make_settings(clock=NOW, webhook_dispatcher="off", max_body_bytes=4096)
    )
    async with application.router.lifespan_context(application):
        yield application
    clock.freeze(None)


@dataclass
class Normaliser:
    """Random values seen so far, each replaced by a placeholder numbered in order of first
    appearance (deterministic, since the requests are)."""

    placeholders: dict[str, str] = field(default_factory=dict)

    def register(self, value: str, kind: str) -> None:
        if value not in self.placeholders:
            count = sum(1 for p in self.placeholders.values() if p.startswith(f"<{kind}-"))
            self.placeholders[value] = f"<{kind}-{count + 1}>"

    def learn(self, document: Any) -> None:
        if isinstance(document, dict):
            for value in document.values():
                self.learn(value)
        elif isinstance(document, list):
            for item in document:
                self.learn(item)
        elif isinstance(document, str):
            if UUID.fullmatch(document):
                self.register(document, "uuid")
            elif BOOKING_UID.fullmatch(document):
                self.register(document, "uid")
            elif API_KEY.fullmatch(document):
                self.register(document, "api-key")

    def apply(self, text: str) -> str:
        # Longest first: a key never has a shorter value inside it replaced first.
        for value in sorted(self.placeholders, key=len, reverse=True):
            text = text.replace(value, self.placeholders[value])
        return text


@dataclass
class Wire:
    client: httpx.AsyncClient
    keys: dict[str, str]
    normaliser: Normaliser = field(default_factory=Normaliser)
    records: list[dict[str, Any]] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        as_: str | None = "alice",
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        step: bool = False,
    ) -> Any:
        """Send one request, record its answer; returns the parsed JSON body (or None).
        ``step`` moves the frozen clock on by a second first (a new row's creation time)."""
        if step:
            clock.freeze(clock.now() + timedelta(seconds=1))
        query = {**(params or {})}
        if as_ is not None:
            query["apiKey"] = self.keys[as_]
        response = await self.client.request(
            method,
            path,
            params=query,
            json=json_body,
            content=content,
            headers=headers,
        )
        body = response.content.decode()
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        self.normaliser.learn(parsed)
        shown_query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        label = f"{method} {path}{'?' + shown_query if shown_query else ''} as {as_ or 'nobody'}"
        self.records.append(
            {
                "request": self.normaliser.apply(label),
                "status": response.status_code,
                "headers": {
                    name: VOLATILE_HEADERS.get(name, self.normaliser.apply(value))
                    for name, value in response.headers.items()
                },
                "body": self.normaliser.apply(body),
            }
        )
        return parsed


async def build_and_ask(wire: Wire, accounts: dict[str, Account]) -> None:
    """The data set and the questions, in one fixed order."""
    alice, bob, carol = (accounts[n] for n in ("alice", "bob", "carol"))
    call = wire.call

    # --- users, keys -----------------------------------------------------------------------------
    await call("GET", "/v1/me")
    created = await call(
        "POST",
        "/v1/users",
        "root",
        json_body={"email": "dave@example.com", "username": "dave", "timeZone": "Asia/Tokyo"},
        step=True,
    )
    dave_id = created["user"]["id"]
    await call(
        "PATCH", f"/v1/users/{alice.id}", json_body={"name": "Alice A.", "weekStart": "Monday"}
    )
    await call("GET", f"/v1/users/{alice.id}")
    await call("GET", "/v1/users", "root")
    await call("GET", "/v1/users")
    await call("POST", "/v1/api-keys", json_body={"note": "zapier"}, step=True)
    await call("GET", "/v1/api-keys")
    await call("GET", f"/v1/api-keys/{alice.key_id}")

    # --- schedules, availabilities ---------------------------------------------------------------
    paris = await call(
        "POST", "/v1/schedules", json_body={"name": "Paris", "timeZone": "Europe/Paris"}, step=True
    )
    paris_id = paris["schedule"]["id"]
    await call("PATCH", f"/v1/users/{alice.id}", json_body={"defaultScheduleId": paris_id})
    york = await call(
        "POST",
        "/v1/schedules",
        "bob",
        json_body={"name": "New York", "timeZone": "America/New_York"},
        step=True,
    )
    york_id = york["schedule"]["id"]
    await call("PATCH", f"/v1/users/{bob.id}", "bob", json_body={"defaultScheduleId": york_id})
    await call(
        "POST",
        "/v1/schedules",
        "carol",
        json_body={"name": "UTC", "timeZone": "UTC"},
        step=True,
    )
    extra = await call(
        "POST",
        "/v1/availabilities",
        json_body={
            "scheduleId": paris_id,
            "days": [6],
            "startTime": "1970-01-01T10:00:00.000Z",
            "endTime": "1970-01-01T12:30:00.000Z",
        },
        step=True,
    )
    extra_id = extra["availability"]["id"]
    await call(
        "PATCH",
        f"/v1/availabilities/{extra_id}",
        json_body={"endTime": "1970-01-01T13:00:00.000Z"},
    )
    await call("GET", f"/v1/availabilities/{extra_id}")
    await call("GET", "/v1/schedules")
    await call("GET", f"/v1/schedules/{paris_id}")
    await call("PATCH", f"/v1/schedules/{paris_id}", json_body={"name": "Paris office"})

    # --- event types (one needs confirmation; a team one) ----------------------------------------
    meet = await call(
        "POST",
        "/v1/event-types",
        json_body={"title": "Meet", "slug": "meet", "length": 30, "description": "Half an hour"},
        step=True,
    )
    meet_id = meet["event_type"]["id"]
    vetted = await call(
        "POST",
        "/v1/event-types",
        json_body={"title": "Vetted", "slug": "vetted", "length": 60, "requiresConfirmation": True},
        step=True,
    )
    vetted_id = vetted["event_type"]["id"]
    bob_meet = await call(
        "POST",
        "/v1/event-types",
        "bob",
        json_body={"title": "Bob call", "slug": "call", "length": 45},
        step=True,
    )
    bob_meet_id = bob_meet["event_type"]["id"]
    await call("PATCH", f"/v1/event-types/{meet_id}", json_body={"title": "Meeting"})

    # --- a team, members, a team event type ------------------------------------------------------
    team = await call("POST", "/v1/teams", json_body={"name": "Crew", "slug": "crew"}, step=True)
    team_id = team["team"]["id"]
    for member in (bob, carol):
        await call(
            "POST",
            "/v1/memberships",
            json_body={"teamId": team_id, "userId": member.id, "role": "MEMBER"},
            step=True,
        )
    await call(
        "PATCH",
        f"/v1/memberships/{bob.id}_{team_id}",
        "bob",
        json_body={"accepted": True},
    )
    await call(
        "PATCH",
        f"/v1/memberships/{carol.id}_{team_id}",
        "carol",
        json_body={"accepted": True},
    )
    team_type = await call(
        "POST",
        "/v1/event-types",
        json_body={
            "title": "Crew round",
            "slug": "crew-round",
            "length": 30,
            "teamId": team_id,
            "schedulingType": "ROUND_ROBIN",
            "hosts": [{"userId": bob.id}, {"userId": carol.id}],
        },
        step=True,
    )
    team_type_id = team_type["event_type"]["id"]
    await call("PATCH", f"/v1/teams/{team_id}", json_body={"name": "The Crew"})

    # --- bookings of every status ----------------------------------------------------------------
    def booking_body(event_type_id: int, start: str, name: str, email: str) -> dict[str, Any]:
        return {
            "eventTypeId": event_type_id,
            "start": start,
            "timeZone": "Europe/Paris",
            "language": "en",
            "metadata": {"source": "wire"},
            "responses": {"name": name, "email": email, "notes": "See you"},
        }

    accepted = await call(
        "POST",
        "/v1/bookings",
        json_body=booking_body(meet_id, "2026-01-06T09:00:00.000Z", "Gus", "gus@example.com"),
        step=True,
    )
    accepted_id = accepted["id"]
    pending = await call(
        "POST",
        "/v1/bookings",
        json_body=booking_body(vetted_id, "2026-01-07T10:00:00.000Z", "Hal", "hal@example.com"),
        step=True,
    )
    to_reject = await call(
        "POST",
        "/v1/bookings",
        json_body=booking_body(vetted_id, "2026-01-08T10:00:00.000Z", "Ivy", "ivy@example.com"),
        step=True,
    )
    to_cancel = await call(
        "POST",
        "/v1/bookings",
        json_body=booking_body(meet_id, "2026-01-09T13:00:00.000Z", "Jo", "jo@example.com"),
        step=True,
    )
    team_booking = await call(
        "POST",
        "/v1/bookings",
        "bob",
        json_body=booking_body(team_type_id, "2026-01-06T15:00:00.000Z", "Kim", "kim@example.com"),
        step=True,
    )
    bob_booking = await call(
        "POST",
        "/v1/bookings",
        "bob",
        json_body=booking_body(bob_meet_id, "2026-01-12T15:30:00.000Z", "Lea", "lea@example.com"),
        step=True,
    )
    await call(
        "POST", f"/v1/bookings/{pending['id']}/confirm", json_body={"confirmed": True}, step=True
    )
    await call(
        "POST",
        f"/v1/bookings/{to_reject['id']}/confirm",
        json_body={"confirmed": False, "reason": "Full"},
    )
    await call(
        "POST",
        f"/v1/bookings/{to_reject['uid']}/confirm",
        json_body={"confirmed": False, "rejectionReason": "Full"},
        step=True,
    )
    await call(
        "DELETE",
        f"/v1/bookings/{to_cancel['id']}/cancel",
        params={"cancellationReason": "Ill"},
        step=True,
    )
    await call(
        "PATCH",
        f"/v1/bookings/{accepted_id}",
        json_body={"description": "Agenda: the plan"},
        step=True,
    )

    # --- attendees, booking references -----------------------------------------------------------
    attendee = await call(
        "POST",
        "/v1/attendees",
        json_body={
            "bookingId": accepted_id,
            "email": "max@example.com",
            "name": "Max",
            "timeZone": "Asia/Kolkata",
        },
        step=True,
    )
    attendee_id = attendee["attendee"]["id"]
    await call("PATCH", f"/v1/attendees/{attendee_id}", json_body={"name": "Maxine"}, step=True)
    reference = await call(
        "POST",
        "/v1/booking-references",
        json_body={"type": "zoom_video", "uid": "zoom-123", "bookingId": accepted_id},
        step=True,
    )
    reference_id = reference["booking_reference"]["id"]
    await call(
        "PATCH",
        f"/v1/booking-references/{reference_id}",
        json_body={"meetingId": "123 456"},
        step=True,
    )

    # --- webhooks (the dispatcher is off: deliveries stay pending) -------------------------------
    hook = await call(
        "POST",
        "/v1/webhooks",
        json_body={
            "subscriberUrl": "http://127.0.0.1:9/hook",
            "eventTriggers": ["BOOKING_CREATED", "BOOKING_CANCELLED"],
            "active": True,
            "secret": "s3cret",
        },
        step=True,
    )
    hook_id = hook["webhook"]["id"]
    await call("PATCH", f"/v1/webhooks/{hook_id}", json_body={"active": False}, step=True)
    await call(
        "POST",
        "/v1/webhooks",
        "bob",
        json_body={"subscriberUrl": "http://127.0.0.1:9/bob", "eventTriggers": ["MEETING_ENDED"]},
        step=True,
    )

    # --- reads -----------------------------------------------------------------------------------
    for as_ in ("alice", "bob", "root"):
        await call("GET", "/v1/event-types", as_)
        await call("GET", "/v1/bookings", as_)
        await call("GET", "/v1/attendees", as_)
        await call("GET", "/v1/teams", as_)
        await call("GET", "/v1/memberships", as_)
        await call("GET", "/v1/webhooks", as_)
        await call("GET", "/v1/booking-references", as_)
        await call("GET", "/v1/schedules", as_)
    await call("GET", f"/v1/event-types/{meet_id}")
    await call("GET", f"/v1/event-types/{team_type_id}", "bob")
    await call("GET", f"/v1/teams/{team_id}/event-types")
    await call("GET", f"/v1/event-types/team/{team_id}", "carol")
    await call("GET", f"/v1/bookings/{accepted_id}")
    await call("GET", f"/v1/bookings/{team_booking['id']}", "carol")
    await call("GET", "/v1/bookings", params={"status": "upcoming"})
    await call("GET", "/v1/bookings", params={"take": 2, "page": 1})
    await call("GET", f"/v1/attendees/{attendee_id}")
    await call("GET", f"/v1/booking-references/{reference_id}")
    await call("GET", f"/v1/teams/{team_id}")
    await call("GET", f"/v1/memberships/{bob.id}_{team_id}")
    await call("GET", f"/v1/webhooks/{hook_id}")
    await call("GET", f"/v1/webhooks/{hook_id}/deliveries")
    await call("GET", f"/v1/users/{dave_id}", "root")

    # Slots across both DST changes of 2026 (US 8 March, Europe 29 March), in several zones.
    for event_type_id, as_, start, end, zone in (
        (meet_id, "alice", "2026-03-27", "2026-03-31", "Europe/Paris"),
        (meet_id, "alice", "2026-03-27", "2026-03-30", "America/New_York"),
        (bob_meet_id, "bob", "2026-03-06", "2026-03-10", "America/New_York"),
        (team_type_id, "bob", "2026-03-06", "2026-03-09", "Asia/Kolkata"),
    ):
        await call(
            "GET",
            "/v1/slots",
            as_,
            params={
                "eventTypeId": event_type_id,
                "startTime": start,
                "endTime": end,
                "timeZone": zone,
            },
        )
    await call(
        "GET",
        "/v1/slots",
        params={"eventTypeId": meet_id, "startTime": "2026-01-06", "endTime": "2026-01-06"},
    )
    window = {"dateFrom": "2026-03-27", "dateTo": "2026-03-30"}
    await call("GET", "/v1/availability", params={"userId": alice.id, **window})
    await call("GET", "/v1/availability", "bob", params={"username": "bob", **window})
    await call("GET", f"/v1/users/{bob.id}/availability", "bob", params=window)
    await call("GET", f"/v1/teams/{team_id}/availability", params=window)

    # --- errors ----------------------------------------------------------------------------------
    await call("GET", "/v1/bookings/99999")
    await call("GET", "/v1/event-types/99999")
    await call("GET", "/v1/nowhere")
    await call("GET", "/v1/me", None)
    await call("GET", "/v1/me", None, params={"apiKey": "cal_0000000000000000000000000000000f"})
    await call("GET", f"/v1/bookings/{bob_booking['id']}")
    await call("PATCH", f"/v1/event-types/{bob_meet_id}", json_body={"title": "Mine now"})
    await call("GET", f"/v1/schedules/{york_id}")
    await call("DELETE", f"/v1/users/{bob.id}")
    await call("PUT", "/v1/bookings")
    await call("GET", "/v1/availabilities")
    await call("POST", "/v1/event-types", json_body={"title": "No slug", "length": "long"})
    await call("POST", "/v1/bookings", json_body={"eventTypeId": meet_id})
    await call(
        "POST",
        "/v1/bookings",
        json_body=booking_body(meet_id, "2026-01-06T09:00:00.000Z", "Dup", "dup@example.com"),
    )
    await call("POST", "/v1/attendees", json_body={})
    await call(
        "POST",
        "/v1/schedules",
        content=b'{"name": "Broken",',
        headers={"Content-Type": "application/json"},
    )
    await call(
        "POST",
        "/v1/schedules",
        content=b"[1, 2]",
        headers={"Content-Type": "application/json"},
    )
    await call(
        "PATCH",
        f"/v1/users/{alice.id}",
        content=json.dumps({"bio": "b" * 5000}).encode(),
        headers={"Content-Type": "application/json"},
    )
    await call("GET", "/v1/slots", params={"eventTypeId": meet_id, "startTime": "soon"})
    await call("GET", "/v1/bookings", params={"take": -1})
    await call("GET", f"/v1/webhooks/{hook_id}", "bob")
    await call("GET", "/v1/webhooks/not-a-uuid")
    # Unversioned paths (Cal.com clients that drop /v1).
    await call("GET", "/me")
    await call("GET", "/event-types")
    await call("GET", "/bookings", "bob")
    await call("GET", "/v2/me")

    # --- deletes, last (they change what the reads above saw) ------------------------------------
    await call("DELETE", f"/v1/booking-references/{reference_id}", step=True)
    await call("DELETE", f"/v1/attendees/{attendee_id}", step=True)
    await call("DELETE", f"/v1/availabilities/{extra_id}", step=True)
    await call("DELETE", f"/v1/webhooks/{hook_id}", step=True)
    await call("DELETE", f"/v1/memberships/{carol.id}_{team_id}", step=True)
    await call("DELETE", f"/v1/bookings/{bob_booking['id']}", "bob", step=True)
    await call("DELETE", f"/v1/event-types/{vetted_id}", step=True)
    await call("DELETE", f"/v1/users/{dave_id}", "root", step=True)
    await call("DELETE", f"/v1/api-keys/{carol.key_id}", "carol", step=True)
    await call("GET", "/v1/me", "carol")
    await call("DELETE", f"/v1/teams/{team_id}", step=True)
    await call("GET", "/v1/bookings")
    await call("GET", "/v1/event-types")


def diff_report(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str:
    """One paragraph per request that differs, naming it, with a diff of what changed (bodies
    pretty-printed for reading; the comparison itself is on the exact bytes)."""

    def lines(record: dict[str, Any]) -> list[str]:
        try:
            body = json.dumps(json.loads(record["body"]), indent=2, ensure_ascii=False)
        except ValueError:
            body = record["body"]
        head = [f"status {record['status']}"] + [f"{k}: {v}" for k, v in record["headers"].items()]
        return [*head, "", *body.splitlines(), "", f"raw: {record['body']}"]

    parts: list[str] = []
    for index in range(max(len(expected), len(actual))):
        want = expected[index] if index < len(expected) else None
        got = actual[index] if index < len(actual) else None
        if want == got:
            continue
        name = (want or got or {}).get("request", "?")
        if want is None or got is None:
            parts.append(f"#{index} {name}: {'missing' if got is None else 'new'} request")
            continue
        if want["request"] != got["request"]:
            parts.append(f"#{index}: request {want['request']!r} became {got['request']!r}")
            continue
        diff = difflib.unified_diff(lines(want), lines(got), "golden", "now", lineterm="")
        parts.append(f"#{index} {name}:\n" + "\n".join(diff))
    return "\n\n".join(parts)


async def test_the_wire_format_has_not_changed(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_account: Callable[..., Any],
    database_url: str,
) -> None:
    accounts = {name: await make_account(name) for name in ("alice", "bob", "carol")}
    accounts["root"] = await make_account("root", role=UserRole.ADMIN)
    wire = Wire(client, {name: account.key for name, account in accounts.items()})
    for account in accounts.values():
        wire.normaliser.register(account.key, "api-key")
        wire.normaliser.register(account.key_id, "uuid")
    await build_and_ask(wire, accounts)

    if UPDATE and database_url.startswith("sqlite"):
        GOLDEN.write_text(json.dumps(wire.records, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text())
    report = diff_report(expected, wire.records)
    assert not report, (
        "the wire format changed (BOOKABLE_UPDATE_WIRE_GOLDEN=1 regenerates the golden file, "
        "for an intended change only):\n\n" + report
    )
