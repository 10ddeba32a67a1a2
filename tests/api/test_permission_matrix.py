"""The permission matrix (`bookable.core.route_table`) against the running app.

1. The table lists exactly the routes the app serves (a new route without a rule fails).
2. Every row, called with user A's key on user B's objects: refused (or, for routes open to any
   key, answered without B's data); B's rows unchanged in the database.
3. The team rows, called as the team's OWNER, ADMIN, MEMBER, an outsider and a system admin:
   each gets exactly what the rule says.
4. A system admin gets 2xx on B's objects wherever the rule lets admins in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bookable.app import create_app
from bookable.core.route_table import ROUTES, Route, Rule, served_paths
from bookable.models import (
    Base,
    BookingReference,
    BookingStatus,
    Credential,
    DestinationCalendar,
    EventTypeCustomInput,
    Membership,
    MembershipRole,
    Payment,
    SelectedCalendar,
    Team,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WebhookEventStatus,
)
from bookable.settings import Settings
from tests.api.test_credential_sync import HEADER, SECRET, SYNC_KEY, cal_com_encrypt
from tests.calendar_servers import IcsServer
from tests.conftest import Account

from .scheduling_seed import add_booking, add_event_type, add_schedule

# --- 1. the table lists exactly the app's routes -------------------------------------------


def _served(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, descending into included routers and mounts."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:  # FastAPI 0.165's _IncludedRouter
            found |= _served(context.included_router.routes, prefix + context.prefix)
        elif hasattr(route, "methods") and route.methods:
            found |= {
                (m, prefix + route.path) for m in route.methods if m not in {"HEAD", "OPTIONS"}
            }
        elif hasattr(route, "app") and hasattr(route, "path"):  # a Mount (static files)
            found.add(("GET", prefix + route.path + "/{path}"))
    return found


def _tabled() -> set[tuple[str, str]]:
    """What the app routes: each row once, at /v1 when versioned (the unversioned path reaches
    the same route through EdgeMiddleware's rewrite; the probes below call both)."""
    return {(row.method, served_paths(row)[0]) for row in ROUTES}


def test_table_has_one_row_per_route() -> None:
    keys = [(row.method, row.path) for row in ROUTES]
    assert len(keys) == len(set(keys))


async def test_table_lists_exactly_the_served_routes(app: FastAPI) -> None:
    served = _served(app.routes)
    tabled = _tabled()
    assert served - tabled == set(), "routes without a rule in bookable.core.route_table"
    assert tabled - served == set(), "rules for routes the app does not serve"


# --- the world: B's objects, A and a system admin ------------------------------------------


# B's selected calendar is a feed on a real local server (its reads must succeed: a calendar that
# cannot be read would make B unavailable). The CalDAV key below is only ever sent, and points at
# a closed loopback port: tests never reach out beyond this machine.
BOBS_FEED_PATH = "/bobs-private-feed.ics"
BOBS_DAV_KEY = {
    "url": "http://127.0.0.1:9/bobs-dav/",
    "username": "bob-dav-login",
    "password": "bobs-dav-password",
}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> Any:
    """The app with credential sync turned on, so its admin routes can answer 2xx."""
    application = create_app(
        make_settings(credential_sync_secret=SECRET, credential_sync_encryption_key=SYNC_KEY)
    )
    async with application.router.lifespan_context(application):
        yield application


@dataclass
class World:
    alice: Account
    bob: Account
    admin: Account
    carol: Account  # an accepted MEMBER of B's team
    ids: dict[str, Any]  # resource kind -> B's object id
    secrets: list[str]  # strings of B's that must never reach A


async def _seed_bob(app: FastAPI, bob: Account, carol: Account, feed_url: str) -> dict[str, Any]:
    """B's objects; B's team has B as OWNER and Carol as an accepted MEMBER."""
    schedule = await add_schedule(app, bob.id, "UTC")
    event_type = await add_event_type(app, bob.id, "bobs-call")
    start = datetime(2030, 1, 8, 10, tzinfo=UTC)
    uid = await add_booking(
        app,
        bob.id,
        start,
        start.replace(hour=11),
        event_type_id=event_type,
        status=BookingStatus.PENDING,
        attendees=["bobs-guest@example.com"],
    )
    async with app.state.sessions() as session, session.begin():
        from bookable.models import Attendee, Availability, Booking

        booking = await session.scalar(select(Booking).where(Booking.uid == uid))
        assert booking is not None
        attendee = await session.scalar(select(Attendee).where(Attendee.booking_id == booking.id))
        availability = await session.scalar(
            select(Availability).where(Availability.schedule_id == schedule)
        )
        assert attendee is not None and availability is not None
        custom_input = EventTypeCustomInput(
            event_type_id=event_type, label="Bobs secret question", type="TEXT"
        )
        reference = BookingReference(
            booking_id=booking.id, type="google_calendar", uid="bobs-reference-uid"
        )
        payment = Payment(
            uid="bobs-payment-uid", booking_id=booking.id, amount=4200, currency="EUR"
        )
        team = Team(name="Bobs Team", slug="bobs-team")
        session.add_all([custom_input, reference, payment, team])
        await session.flush()
        webhook = Webhook(
            user_id=bob.id,
            subscriber_url="https://bobs-hooks.example/in",
            event_triggers=["BOOKING_CREATED"],
            secret="bobs-webhook-secret",
        )
        session.add(webhook)
        credential = Credential(
            user_id=bob.id,
            type="ics-feed_calendar",
            app_id="ics-feed",
            encrypted_key=app.state.encryptor.encrypt_json({"urls": [feed_url]}),
            identity="bobs-identity",
        )
        session.add(credential)
        await session.flush()
        selected = SelectedCalendar(
            user_id=bob.id,
            integration="ics-feed_calendar",
            external_id=feed_url,
            credential_id=credential.id,
        )
        session.add(selected)
        # B's destination: a CalDAV calendar of B's, stored directly (its server is never
        # reached: no request here changes the calendar).
        dav = Credential(
            user_id=bob.id,
            type="caldav_calendar",
            app_id="caldav-calendar",
            encrypted_key=app.state.encryptor.encrypt_json(BOBS_DAV_KEY),
            identity="bobs-dav-identity",
        )
        session.add(dav)
        await session.flush()
        destination = DestinationCalendar(
            user_id=bob.id,
            integration="caldav_calendar",
            external_id=BOBS_DAV_KEY["url"] + "calendar/",
            primary_email="bob-dav-login@example.com",
            credential_id=dav.id,
        )
        session.add(destination)
        # Delivered already: a running dispatcher must have nothing to do with B's rows.
        event = WebhookEvent(
            webhook_id=webhook.id,
            trigger="BOOKING_CREATED",
            body="{}",
            status=WebhookEventStatus.DELIVERED,
            attempts=1,
            delivered_at=start,
        )
        session.add(event)
        await session.flush()
        session.add_all(
            [
                Membership(
                    team_id=team.id, user_id=bob.id, role=MembershipRole.OWNER, accepted=True
                ),
                Membership(
                    team_id=team.id, user_id=carol.id, role=MembershipRole.MEMBER, accepted=True
                ),
                WebhookDelivery(
                    event_id=event.id,
                    webhook_id=webhook.id,
                    attempt=1,
                    status_code=200,
                    ok=True,
                    response_excerpt="bobs-receiver-reply",
                ),
            ]
        )
        return {
            "user": bob.id,
            "api_key": bob.key_id,
            "schedule": schedule,
            "availability": availability.id,
            "event_type": event_type,
            "custom_input": custom_input.id,
            "booking": booking.id,
            "booking_uid": uid,
            "attendee": attendee.id,
            "booking_reference": reference.id,
            "payment": payment.id,
            "team": team.id,
            "membership": f"{carol.id}_{team.id}",
            "member": carol.id,
            "webhook": webhook.id,
            "credential": credential.id,
            "selected_calendar": f"{bob.id}_ics-feed_calendar_{feed_url}",
            "destination_calendar": destination.id,
            "calendar_url": feed_url,
        }


@pytest.fixture
async def world(
    app: FastAPI,
    alice: Account,
    bob: Account,
    admin: Account,
    make_account: Callable[..., Any],
    ics_server: IcsServer,
) -> World:
    carol = await make_account("carol")
    feed_url = ics_server.set_feed(
        BOBS_FEED_PATH, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nEND:VCALENDAR\r\n"
    )
    ids = await _seed_bob(app, bob, carol, feed_url)
    secrets = [
        carol.email,
        bob.email,
        bob.key,
        bob.key_id,
        ids["booking_uid"],
        "bobs-guest@example.com",
        "bobs-reference-uid",
        "bobs-payment-uid",
        "Bobs secret question",
        "Bobs Team",
        "bobs-call",
        "bobs-hooks.example",
        "bobs-webhook-secret",
        "bobs-receiver-reply",
        "bobs-private-feed",
        "bobs-dav",
        "bob-dav-login",
        "bobs-dav-password",
    ]
    return World(alice, bob, admin, carol, ids, secrets)


# --- one request per row, naming B's objects -------------------------------------------------

AVAILABILITY_TIMES = {
    "startTime": "1970-01-01T10:00:00.000Z",
    "endTime": "1970-01-01T11:00:00.000Z",
}
PATCH_BODIES: dict[str, dict[str, Any]] = {
    "user": {"name": "Hacked"},
    "api_key": {"note": "hacked"},
    "schedule": {"name": "Hacked"},
    "availability": {"days": [6]},
    "event_type": {"title": "Hacked"},
    "custom_input": {"label": "Hacked"},
    "booking": {"title": "Hacked"},
    "attendee": {"name": "Hacked"},
    "booking_reference": {"meetingUrl": "https://evil.example"},
    "team": {"name": "Hacked"},
    "membership": {"role": "ADMIN"},
    "webhook": {"subscriberUrl": "https://evil.example/hook"},
    "credential": {"settings": {"tentativeIsBusy": False}},
    "selected_calendar": {},
    "destination_calendar": {},
}


def _create_body(route: Route, ids: dict[str, Any], new_user: int) -> dict[str, Any] | None:
    """A valid POST body that names B's object (or B) where the route takes one."""
    bodies: dict[str, dict[str, Any]] = {
        "/users": {"email": "newbie@example.com", "username": "newbie"},
        "/api-keys": {"userId": ids["user"], "note": "for bob"},
        "/schedules": {"name": "For bob", "timeZone": "UTC", "userId": ids["user"]},
        "/availabilities": {"scheduleId": ids["schedule"], "days": [6], **AVAILABILITY_TIMES},
        "/event-types": {
            "title": "For bob", "slug": "for-bob", "length": 30, "userId": ids["user"],
        },
        "/custom-inputs": {
            "eventTypeId": ids["event_type"], "label": "Injected", "type": "TEXT",
            "required": False,
        },
        "/attendees": {
            "bookingId": ids["booking"], "email": "spy@example.com", "name": "Spy",
            "timeZone": "UTC",
        },
        "/booking-references": {"bookingId": ids["booking"], "type": "x", "uid": "injected"},
        "/bookings/{id}/confirm": {"confirmed": True},
        "/no-show": {"bookingUid": ids["booking_uid"], "noShowHost": True},
        "/teams": {"name": "A team", "slug": "a-team", "ownerId": ids["user"]},
        "/memberships": {"userId": new_user, "teamId": ids["team"], "role": "MEMBER"},
        "/invites": {"teamId": ids["team"], "usernameOrEmail": "newbie2", "role": "MEMBER"},
        "/payments": {},
        "/bookings": {},
        "/credentials": {"appId": "caldav-calendar", "key": BOBS_DAV_KEY, "userId": ids["user"]},
        "/destination-calendars": {
            "integration": "caldav_calendar", "externalId": BOBS_DAV_KEY["url"] + "other/",
            "eventTypeId": ids["event_type"],
        },
        "/selected-calendars": {
            "integration": "ics-feed_calendar", "externalId": ids["calendar_url"],
            "credentialId": ids["credential"], "userId": ids["user"],
        },
        **{
            base: {
                "subscriberUrl": "https://evil.example/hook", "eventTriggers": ["BOOKING_CREATED"],
                "eventTypeId": ids["event_type"],
            }
            for base in ("/webhooks", "/hooks")
        },
    }  # fmt: skip
    return bodies.get(route.path)


def _request(
    route: Route, ids: dict[str, Any], new_user: int
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    path = route.path
    kind = route.resource or ""
    values = {
        "userId": ids["user"],
        "teamId": ids["team"],
        "id": ids.get(kind, ids["booking"]),
        "id:path": ids.get(kind, ids["booking"]),
        "credentialId": ids["credential"],
        "recordingId": "rec-1",
        "path": "swagger-ui.css",
    }
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    if route.versioned:
        path = "/v1" + path
    query: dict[str, Any] = {}
    if route.path.endswith("/availability"):
        query |= {"dateFrom": "2030-01-07", "dateTo": "2030-01-09"}
    if route.method == "GET" and "{" not in route.path:
        query["userId"] = ids["user"]
        if route.path == "/slots":
            query |= {
                "eventTypeId": ids["event_type"],
                "startTime": "2030-01-07",
                "endTime": "2030-01-09",
            }
    if route.path == "/credential-sync":
        query |= {"userId": ids["user"], "credentialId": ids["credential"]}
    body: dict[str, Any] | None = None
    if route.method == "PATCH":
        body = PATCH_BODIES.get(kind, {})
    elif route.method in {"POST", "PUT"}:
        body = _create_body(route, ids, new_user) or {}
    return path, query, body


async def _call(
    client: httpx.AsyncClient, caller: Account | None, route: Route, world_ids: dict[str, Any],
    new_user: int, body_override: dict[str, Any] | None = None,
) -> httpx.Response:  # fmt: skip
    path, query, body = _request(route, world_ids, new_user)
    if caller is not None:
        query["apiKey"] = caller.key
    if body_override is not None:
        body = body_override
    headers = HEADER if route.path == "/credential-sync" else None
    return await client.request(route.method, path, params=query, json=body, headers=headers)


async def _snapshot(app: FastAPI) -> dict[tuple[str, Any], dict[str, Any]]:
    """Every row of every table, by (table, primary key)."""
    rows: dict[tuple[str, Any], dict[str, Any]] = {}
    async with app.state.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                key = tuple(row[c.name] for c in table.primary_key.columns)
                rows[(table.name, key)] = dict(row)
    return rows


def _row_id(route: Route) -> str:
    return f"{route.method} {route.path}"


# --- 2. A on B's objects -----------------------------------------------------------------

REFUSED = {401, 403, 404}
# B's bookings (and what hangs off them by path) and payments answer A exactly as missing ones.
ANSWERS_AS_MISSING = {"booking", "payment"}
OPEN_TO_A = {Rule.PUBLIC, Rule.ANY_KEY, Rule.OWN_LIST}


@pytest.mark.parametrize("route", ROUTES, ids=_row_id)
async def test_a_on_b_objects(
    route: Route, app: FastAPI, client: httpx.AsyncClient, world: World,
    make_account: Callable[..., Any],
) -> None:  # fmt: skip
    newcomer = await make_account("newbie2")
    before = await _snapshot(app)
    response = await _call(client, world.alice, route, world.ids, newcomer.id)
    text = response.text
    if route.rule is Rule.PUBLIC:
        assert response.status_code == 200
    elif route.rule is Rule.NOT_ALLOWED:
        assert response.status_code == 405, text
    elif route.rule in OPEN_TO_A:
        assert response.status_code < 500, text
        assert f'"userId":{world.bob.id},' not in text.replace(" ", "")
    else:
        assert response.status_code in REFUSED, text
        if route.resource in ANSWERS_AS_MISSING and "{id}" in route.path:
            assert response.status_code == 404, f"existence oracle: {text}"
    for secret in world.secrets:
        assert secret not in text, f"{secret!r} leaked"
    if route.resource and route.rule is not Rule.PUBLIC:
        own = world.ids.get(route.resource)
        assert not re.search(rf'"id":\s*"?{own}"?[,}}]', text), "B's id leaked"
    after = await _snapshot(app)
    alice_rows = {("users", (world.alice.id,)), ("api_keys", (world.alice.key_id,))}
    for key, row in before.items():
        if key not in alice_rows:
            assert after.get(key) == row, f"B's row {key} changed or vanished"


# --- 3. team roles --------------------------------------------------------------------------

ROLES = ("OWNER", "ADMIN", "MEMBER", "outsider", "system admin")
ALLOWED: dict[Rule, set[str]] = {
    Rule.TEAM_MEMBER: {"OWNER", "ADMIN", "MEMBER", "system admin"},
    Rule.TEAM_ADMIN_OR_OWNER: {"OWNER", "ADMIN", "system admin"},
    Rule.TEAM_OWNER: {"OWNER", "system admin"},
    Rule.MEMBER_OR_TEAM_MANAGER: {"OWNER", "ADMIN", "MEMBER", "system admin"},
}
TEAM_ROWS = [row for row in ROUTES if row.rule in ALLOWED]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", TEAM_ROWS, ids=_row_id)
async def test_team_roles(
    route: Route, role: str, app: FastAPI, client: httpx.AsyncClient, world: World,
    make_account: Callable[..., Any],
) -> None:  # fmt: skip
    # B's team (B OWNER, Carol MEMBER) gets an ADMIN; the membership routes act on Carol's.
    team_admin = await make_account("teamadmin")
    newcomer = await make_account("newbie2")
    async with app.state.sessions() as session, session.begin():
        session.add(
            Membership(
                team_id=world.ids["team"],
                user_id=team_admin.id,
                role=MembershipRole.ADMIN,
                accepted=True,
            )
        )
    callers = {
        "OWNER": world.bob,
        "ADMIN": team_admin,
        "MEMBER": world.carol,
        "outsider": world.alice,
        "system admin": world.admin,
    }
    response = await _call(client, callers[role], route, world.ids, newcomer.id)
    if role in ALLOWED[route.rule]:
        assert 200 <= response.status_code < 300, response.text
    else:
        assert response.status_code in REFUSED, response.text


# --- 4. the system admin --------------------------------------------------------------------

ADMIN_OVERRIDES = {
    Rule.SYSTEM_ADMIN,
    Rule.SELF_OR_ADMIN,
    Rule.OWNER_OR_ADMIN,
    Rule.BOOKING_PARTY,
    Rule.BOOKING_MANAGER,
    *ALLOWED,
}


@pytest.mark.parametrize(
    "route", [row for row in ROUTES if row.rule in ADMIN_OVERRIDES], ids=_row_id
)
async def test_system_admin(
    route: Route, client: httpx.AsyncClient, world: World, make_account: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    newcomer = await make_account("newbie2")
    body = None
    if route.path == "/credential-sync" and route.method == "POST":
        # These connect before they store: a real CalDAV account of B's ...
        account = request.getfixturevalue("radicale")
        key = {"url": account.url, "username": account.username, "password": account.password}
        body = {"encryptedKey": cal_com_encrypt(key), "appSlug": "caldav-calendar"}
    if route.path == "/credential-sync" and route.method == "PATCH":
        # ... or B's feed, the app of B's credential.
        body = {"encryptedKey": cal_com_encrypt({"urls": [world.ids["calendar_url"]]})}
    response = await _call(client, world.admin, route, world.ids, newcomer.id, body)
    if "/recordings" in route.path or "/transcripts" in route.path:
        # No video provider: even a party gets 404, but one naming the booking's video reference.
        assert response.status_code == 404
        assert response.json()["message"].startswith("No Cal Video reference found")
        return
    assert 200 <= response.status_code < 300, response.text
