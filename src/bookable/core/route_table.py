"""The permission matrix: every route the app serves, with the rule for who may call it.

One row per (method, path). ``path`` is the template as written in the resource router, without
the ``/v1`` prefix: resource routes (``versioned=True``) are served under ``/v1`` and again at the
root. Rows with ``versioned=False`` give the full path as served (``/v2/me``, the docs).

The rules below restate, in one place, what the services enforce (their ``readable(caller)``
queries and role checks); ``tests/api/test_permission_matrix.py`` reads this table, checks that it
lists exactly the app's routes, and calls every route as the wrong user and as each team role.

To add a route: append a ``Route(...)`` row (same order as the routers) with its rule, the kind
of object its path names (``resource``, or None) and a one-line note.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Rule(enum.StrEnum):
    """Who may call a route. "admin" is a system-wide admin (`UserRole.ADMIN`)."""

    PUBLIC = "PUBLIC"  # no key needed
    ANY_KEY = "ANY_KEY"  # any valid key; acts on or answers about the caller only
    OWN_LIST = "OWN_LIST"  # any key; lists only the caller's rows (admins: all, filters)
    SELF_OR_ADMIN = "SELF_OR_ADMIN"  # the user named in the path, or an admin
    OWNER_OR_ADMIN = "OWNER_OR_ADMIN"  # the user owning the object (or its parent), or an admin
    BOOKING_PARTY = "BOOKING_PARTY"  # a host it occupies, attendee (by email), event-type
    # owner (team event types: the team's OWNER/ADMIN), or admin
    BOOKING_MANAGER = "BOOKING_MANAGER"  # the same without attendees
    BOOKING_HOST = "BOOKING_HOST"  # the booking's host only (no admin override, as Cal.com)
    TEAM_MEMBER = "TEAM_MEMBER"  # an accepted member of the team (any role), or an admin
    TEAM_ADMIN_OR_OWNER = "TEAM_ADMIN_OR_OWNER"  # accepted ADMIN/OWNER of the team, or an admin
    TEAM_OWNER = "TEAM_OWNER"  # accepted OWNER of the team, or an admin
    MEMBER_OR_TEAM_MANAGER = "MEMBER_OR_TEAM_MANAGER"  # the membership's user, its team's
    # accepted ADMIN/OWNER (roles they may grant), or an admin
    SYSTEM_ADMIN = "SYSTEM_ADMIN"  # system-wide admins only
    NOT_ALLOWED = "NOT_ALLOWED"  # 405 for every caller (after authentication)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    rule: Rule
    resource: str | None  # the kind of object the path (or body) names; None: none
    note: str
    versioned: bool = True  # served under /v1 and at the root


R = Rule

ROUTES: tuple[Route, ...] = (
    # users
    Route("GET", "/me", R.ANY_KEY, None, "the caller's own user"),
    Route("GET", "/users", R.OWN_LIST, "user", "yourself; admins everyone"),
    Route("POST", "/users", R.SYSTEM_ADMIN, None, "create a user"),
    Route("GET", "/users/{userId}", R.SELF_OR_ADMIN, "user", "one user"),
    Route("PATCH", "/users/{userId}", R.SELF_OR_ADMIN, "user", "edit a user"),
    Route("DELETE", "/users/{userId}", R.SELF_OR_ADMIN, "user", "delete a user"),
    # api keys
    Route("GET", "/api-keys", R.OWN_LIST, "api_key", "your keys; admins any `userId`"),
    Route("POST", "/api-keys", R.ANY_KEY, None, "a key for yourself (admins: `userId`)"),
    Route("GET", "/api-keys/{id}", R.OWNER_OR_ADMIN, "api_key", "one key"),
    Route("PATCH", "/api-keys/{id}", R.OWNER_OR_ADMIN, "api_key", "edit a key's note"),
    Route("DELETE", "/api-keys/{id}", R.OWNER_OR_ADMIN, "api_key", "revoke a key"),
    # schedules and their availability rules
    Route("GET", "/schedules", R.OWN_LIST, "schedule", "your schedules; admins `userId`"),
    Route("POST", "/schedules", R.ANY_KEY, None, "a schedule of your own (admins: `userId`)"),
    Route("GET", "/schedules/{id}", R.OWNER_OR_ADMIN, "schedule", "one schedule"),
    Route("PATCH", "/schedules/{id}", R.OWNER_OR_ADMIN, "schedule", "edit a schedule"),
    Route("DELETE", "/schedules/{id}", R.OWNER_OR_ADMIN, "schedule", "delete a schedule"),
    Route("POST", "/availabilities", R.OWNER_OR_ADMIN, "schedule", "rule in your schedule"),
    Route("GET", "/availabilities/{id}", R.OWNER_OR_ADMIN, "availability", "one rule"),
    Route("PATCH", "/availabilities/{id}", R.OWNER_OR_ADMIN, "availability", "edit a rule"),
    Route("DELETE", "/availabilities/{id}", R.OWNER_OR_ADMIN, "availability", "delete a rule"),
    Route("GET", "/availability", R.SELF_OR_ADMIN, "user", "`userId`; `teamId`: OWNER/ADMIN"),
    Route("GET", "/users/{userId}/availability", R.SELF_OR_ADMIN, "user", "same, by path"),
    # event types and custom inputs
    Route("GET", "/event-types", R.OWN_LIST, "event_type", "yours; admins `userId`"),
    Route("POST", "/event-types", R.ANY_KEY, None, "an event type of your own (admins: `userId`)"),
    Route("GET", "/event-types/{id}", R.OWNER_OR_ADMIN, "event_type", "one; team ones: any member"),
    Route("PATCH", "/event-types/{id}", R.OWNER_OR_ADMIN, "event_type", "team ones: OWNER/ADMIN"),
    Route("DELETE", "/event-types/{id}", R.OWNER_OR_ADMIN, "event_type", "team: OWNER/ADMIN"),
    Route(
        "GET", "/event-types/team/{teamId}", R.TEAM_MEMBER, "team", "a team's event types (alias)"
    ),
    Route("GET", "/custom-inputs", R.OWN_LIST, "custom_input", "inputs of your event types"),
    Route("POST", "/custom-inputs", R.OWNER_OR_ADMIN, "event_type", "team: OWNER/ADMIN"),
    Route("GET", "/custom-inputs/{id}", R.OWNER_OR_ADMIN, "custom_input", "team: any member"),
    Route("PATCH", "/custom-inputs/{id}", R.OWNER_OR_ADMIN, "custom_input", "team: OWNER/ADMIN"),
    Route("DELETE", "/custom-inputs/{id}", R.OWNER_OR_ADMIN, "custom_input", "team: OWNER/ADMIN"),
    Route("GET", "/slots", R.OWNER_OR_ADMIN, "event_type", "yours, or your team's (members)"),
    # bookings and what hangs off them
    Route("GET", "/bookings", R.OWN_LIST, "booking", "you host or co-host; admins `userId`"),
    Route("POST", "/bookings", R.ANY_KEY, None, "your or your teams' event types"),
    Route("GET", "/bookings/{id}", R.BOOKING_PARTY, "booking", "one booking, id or uid"),
    Route("PATCH", "/bookings/{id}", R.BOOKING_MANAGER, "booking", "edit a booking"),
    Route("DELETE", "/bookings/{id}", R.BOOKING_MANAGER, "booking", "cancel (attendee: self)"),
    Route("DELETE", "/bookings/{id}/cancel", R.BOOKING_MANAGER, "booking", "same as DELETE"),
    Route("POST", "/bookings/{id}/confirm", R.BOOKING_MANAGER, "booking", "accept/reject"),
    Route("GET", "/bookings/{id}/calendar-events", R.BOOKING_MANAGER, "booking", "write states"),
    Route("GET", "/bookings/{id}/emails", R.BOOKING_MANAGER, "booking", "email states"),
    Route("GET", "/bookings/{id}/recordings", R.BOOKING_PARTY, "booking", "parties: 404, no video"),
    Route(
        "GET", "/bookings/{id}/transcripts", R.BOOKING_PARTY, "booking", "parties: 404, no video"
    ),
    Route(
        "GET",
        "/bookings/{id}/transcripts/{recordingId}",
        R.BOOKING_PARTY,
        "booking",
        "parties: 404, no video",
    ),
    Route("POST", "/no-show", R.BOOKING_MANAGER, "booking", "mark no-shows (by `bookingUid`)"),
    Route("GET", "/attendees", R.OWN_LIST, "attendee", "of bookings you host or co-host"),
    Route("POST", "/attendees", R.OWNER_OR_ADMIN, "booking", "add to a booking you host"),
    Route("GET", "/attendees/{id}", R.OWNER_OR_ADMIN, "attendee", "host of its booking"),
    Route("PATCH", "/attendees/{id}", R.OWNER_OR_ADMIN, "attendee", "edit an attendee"),
    Route("DELETE", "/attendees/{id}", R.OWNER_OR_ADMIN, "attendee", "remove an attendee"),
    Route(
        "GET", "/booking-references", R.OWN_LIST, "booking_reference", "of bookings you (co-)host"
    ),
    Route("POST", "/booking-references", R.OWNER_OR_ADMIN, "booking", "on a booking you host"),
    Route("GET", "/booking-references/{id}", R.OWNER_OR_ADMIN, "booking_reference", "one"),
    Route("PATCH", "/booking-references/{id}", R.OWNER_OR_ADMIN, "booking_reference", "edit"),
    Route("DELETE", "/booking-references/{id}", R.OWNER_OR_ADMIN, "booking_reference", "delete"),
    Route("GET", "/payments", R.OWN_LIST, "payment", "of bookings you (co-)host (admins too)"),
    Route("GET", "/payments/{id}", R.BOOKING_HOST, "payment", "someone else's: 404, as missing"),
    *(
        Route(method, path, R.NOT_ALLOWED, None, "payments are read-only")
        for path in ("/payments", "/payments/{id}")
        for method in ("POST", "PUT", "PATCH", "DELETE")
    ),
    # teams and memberships
    Route("GET", "/teams", R.OWN_LIST, "team", "teams you belong to; admins all"),
    Route("POST", "/teams", R.ANY_KEY, None, "the creator becomes OWNER (admins: `ownerId`)"),
    Route("GET", "/teams/{teamId}", R.TEAM_MEMBER, "team", "one team"),
    Route("PATCH", "/teams/{teamId}", R.TEAM_ADMIN_OR_OWNER, "team", "edit a team"),
    Route("DELETE", "/teams/{teamId}", R.TEAM_OWNER, "team", "delete a team"),
    Route("GET", "/teams/{teamId}/event-types", R.TEAM_MEMBER, "team", "a team's event types"),
    Route(
        "GET",
        "/teams/{teamId}/availability",
        R.TEAM_ADMIN_OR_OWNER,
        "team",
        "members' availability, as /availability?teamId=",
    ),
    Route("GET", "/memberships", R.OWN_LIST, "membership", "yours and of teams you manage"),
    Route("POST", "/memberships", R.TEAM_ADMIN_OR_OWNER, "team", "an invitation (admins: any)"),
    Route("GET", "/memberships/{id}", R.MEMBER_OR_TEAM_MANAGER, "membership", "`{u}_{t}`"),
    Route(
        "PATCH",
        "/memberships/{id}",
        R.TEAM_ADMIN_OR_OWNER,
        "membership",
        "change a role; the member alone accepts or sets disableImpersonation",
    ),
    Route("DELETE", "/memberships/{id}", R.MEMBER_OR_TEAM_MANAGER, "membership", "leave/remove"),
    Route("POST", "/invites", R.TEAM_ADMIN_OR_OWNER, "team", "invite users to a team"),
    # webhooks, also under `/hooks` (Cal.com's alias). Reading a team event type's webhook (and
    # its deliveries) takes any accepted member; changing it, or attaching one, OWNER/ADMIN.
    *(
        row
        for base in ("/webhooks", "/hooks")
        for row in (
            Route("GET", base, R.OWN_LIST, "webhook", "yours, your event types'; admins `userId`"),
            Route("POST", base, R.ANY_KEY, None, "yours; `eventTypeId` one you may edit"),
            Route("GET", base + "/{id}", R.OWNER_OR_ADMIN, "webhook", "team: any member"),
            Route("PATCH", base + "/{id}", R.OWNER_OR_ADMIN, "webhook", "team: OWNER/ADMIN"),
            Route("DELETE", base + "/{id}", R.OWNER_OR_ADMIN, "webhook", "team: OWNER/ADMIN"),
            Route("GET", base + "/{id}/deliveries", R.OWNER_OR_ADMIN, "webhook", "attempts log"),
        )
    ),
    # calendars: credentials (never the key), Cal.com's sync, live listing, selected and
    # destination calendars
    Route("GET", "/credentials", R.OWN_LIST, "credential", "yours; admins `userId`"),
    Route("POST", "/credentials", R.ANY_KEY, None, "connect an account (admins: `userId`)"),
    Route("GET", "/credentials/{credentialId}", R.OWNER_OR_ADMIN, "credential", "one, no key"),
    Route("PATCH", "/credentials/{credentialId}", R.OWNER_OR_ADMIN, "credential", "key/settings"),
    Route("DELETE", "/credentials/{credentialId}", R.OWNER_OR_ADMIN, "credential", "cascades"),
    *(
        Route(method, "/credential-sync", R.SYSTEM_ADMIN, None, "plus the sync secret header")
        for method in ("GET", "POST", "PATCH", "DELETE")
    ),
    Route("GET", "/connected-calendars", R.OWN_LIST, "credential", "live; admins `userId`"),
    Route("GET", "/selected-calendars", R.OWN_LIST, "selected_calendar", "admins `userId`"),
    Route("POST", "/selected-calendars", R.ANY_KEY, None, "in your credential (admins: `userId`)"),
    *(
        Route(method, "/selected-calendars/{id:path}", R.OWNER_OR_ADMIN, "selected_calendar", note)
        for method, note in (("GET", "one"), ("PATCH", "its credential"), ("DELETE", "unselect"))
    ),
    Route("GET", "/destination-calendars", R.OWN_LIST, "destination_calendar", "admins `userId`"),
    Route("POST", "/destination-calendars", R.ANY_KEY, None, "yours or your event type's"),
    *(
        Route(method, "/destination-calendars/{id}", R.OWNER_OR_ADMIN, "destination_calendar", note)
        for method, note in (
            ("GET", "team event type's: OWNER/ADMIN"),
            ("PATCH", "calendar checked live"),
            ("DELETE", "remove"),
        )
    ),
    # outside the versioned resources
    Route("GET", "/v2/me", R.ANY_KEY, None, "the caller, v2 envelope", versioned=False),
    Route("GET", "/v1/openapi.json", R.PUBLIC, None, "the OpenAPI document", versioned=False),
    Route("GET", "/v1/docs", R.PUBLIC, None, "Swagger UI", versioned=False),
    Route("GET", "/v1/docs/static/{path}", R.PUBLIC, None, "Swagger UI files", versioned=False),
    Route("GET", "/healthz", R.PUBLIC, None, "liveness probe", versioned=False),
    Route("GET", "/readyz", R.PUBLIC, None, "readiness probe, no data", versioned=False),
)


def served_paths(route: Route) -> tuple[str, ...]:
    """The paths ``route`` answers at, the routed one first (the unversioned one reaches it
    through EdgeMiddleware's rewrite)."""
    return (f"/v1{route.path}", route.path) if route.versioned else (route.path,)
