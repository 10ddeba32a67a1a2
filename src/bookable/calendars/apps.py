"""The calendar apps this server can connect, under Cal.com's names.

An app has an id (Cal.com's app slug, ``caldav-calendar``), a credential type
(``caldav_calendar``), the shape of its key and the provider that talks to its servers. Clients
may name an app by any of the three spellings Cal.com uses (``appId``, ``appSlug``, ``type``).
Google and Microsoft need OAuth and are not here yet: each would be one more entry and one more
provider module.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bookable.calendars.providers.base import CalendarProvider, Connection

ICLOUD_CALDAV_URL = "https://caldav.icloud.com/"


class CalDavKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    username: str = Field(min_length=1, max_length=512)
    password: str = Field(min_length=1, max_length=1024)


class AppleKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=512)
    password: str = Field(min_length=1, max_length=1024)


class IcsFeedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(min_length=1, max_length=20)
    # Cal.com's field; feeds are always read-only here.
    skipWriting: bool = True


@dataclass(frozen=True, slots=True)
class CalendarApp:
    app_id: str  # Cal.com's app slug
    type: str  # Cal.com's credential type, also the selected calendar's "integration"
    name: str
    key_model: type[BaseModel]
    read_only: bool
    provider_path: str  # "module:Class", imported when first used
    # The server key fields the provider needs, from the stored key (Apple: the fixed URL).
    server_key: Callable[[dict[str, Any]], dict[str, Any]]

    def provider(self, connection: Connection) -> CalendarProvider:
        module_name, _, class_name = self.provider_path.partition(":")
        provider_class = getattr(importlib.import_module(module_name), class_name)
        provider: CalendarProvider = provider_class(
            Connection(
                key=self.server_key(dict(connection.key)),
                timeout=connection.timeout,
                max_bytes=connection.max_bytes,
                allow_private=connection.allow_private,
                allowed_hosts=connection.allowed_hosts,
                extra=connection.extra,
            )
        )
        return provider

    def identity(self, key: dict[str, Any]) -> str:
        """What makes two keys the same account: the server and the login, not the password
        (a new password for the same login updates the credential instead of adding one)."""
        server = self.server_key(key)
        parts: dict[str, Any] = {"type": self.type}
        if "urls" in server:
            parts["urls"] = sorted(str(u).strip() for u in server["urls"])
        else:
            parts["url"] = str(server.get("url", "")).strip().rstrip("/")
            parts["username"] = str(server.get("username", "")).strip()
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


APPS: tuple[CalendarApp, ...] = (
    CalendarApp(
        app_id="caldav-calendar",
        type="caldav_calendar",
        name="CalDAV",
        key_model=CalDavKey,
        read_only=False,
        provider_path="bookable.calendars.providers.caldav:CalDavProvider",
        server_key=lambda key: key,
    ),
    CalendarApp(
        app_id="apple-calendar",
        type="apple_calendar",
        name="Apple Calendar",
        key_model=AppleKey,
        read_only=False,
        provider_path="bookable.calendars.providers.caldav:CalDavProvider",
        server_key=lambda key: {**key, "url": ICLOUD_CALDAV_URL, "apple": True},
    ),
    CalendarApp(
        app_id="ics-feed",
        type="ics-feed_calendar",
        name="ICS feed",
        key_model=IcsFeedKey,
        read_only=True,
        provider_path="bookable.calendars.providers.ics:IcsFeedProvider",
        server_key=lambda key: key,
    ),
)


def find_app(name: str | None) -> CalendarApp | None:
    """The app called ``name`` by its app id / slug or its credential type."""
    if not name:
        return None
    for app in APPS:
        if name in (app.app_id, app.type):
            return app
    return None


def supported_apps() -> str:
    """For error messages: "caldav-calendar, apple-calendar, ics-feed"."""
    return ", ".join(app.app_id for app in APPS)


INTEGRATIONS: tuple[str, ...] = tuple(app.type for app in APPS)
