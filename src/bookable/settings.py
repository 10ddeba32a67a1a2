"""Every setting comes from an environment variable with the prefix ``BOOKABLE_``."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Errors never repeat the value given: some settings hold passwords (BOOKABLE_SMTP_URL).
    model_config = SettingsConfigDict(
        env_prefix="BOOKABLE_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / 'bookable.db'}",
        description="SQLAlchemy URL: sqlite:///path/file.db or postgresql://user@host/db.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; shares rate-limit counters and key revocations between processes.",
    )
    api_key_prefix: str = Field(default="cal_", description="Prefix of newly issued API keys.")
    rate_limit: str = Field(
        default="30/minute",
        description="Requests per user, in the `limits` notation (`30/minute`); `0` turns it off.",
    )
    auth_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a verified API key is remembered in process; 0 disables the cache.",
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body.")
    shutdown_timeout: float = Field(
        default=20.0,
        ge=0,
        description="Seconds `bookable serve` gives requests in flight after SIGTERM before it "
        "cancels them (uvicorn's timeout_graceful_shutdown).",
    )
    shutdown_delay: float = Field(
        default=0.0,
        ge=0,
        description="Seconds `bookable serve` goes on serving after SIGTERM, with /readyz "
        "answering 503, before it stops accepting connections (time for a load balancer to "
        "take it out of rotation).",
    )
    health_timeout: float = Field(
        default=2.0, gt=0, description="Seconds each /readyz check (database, Redis) may take."
    )
    website_url: str = Field(
        default="http://localhost:3000", description="Public booking site, used in links."
    )
    clock: datetime | None = Field(
        default=None,
        description="Freeze the server's clock at this ISO instant (tests, sandboxes).",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`: uvicorn's lines; `json`: one JSON object per line (time, level, "
        "logger, message), with one access line per request of our own.",
    )
    metrics: Literal["on", "off"] = Field(
        default="off",
        description="`on`: Prometheus metrics at GET /metrics on the API port (no API key, not "
        "rate limited); `off`: no such route.",
    )
    metrics_token: str | None = Field(
        default=None,
        description="When set, GET /metrics needs `Authorization: Bearer <this token>`.",
    )
    webhook_allow_private_targets: bool = Field(
        default=True,
        description="Let webhooks target private, loopback and other non-public addresses "
        "(link-local and cloud metadata addresses are always refused).",
    )
    webhook_dispatcher: Literal["auto", "process", "inline", "off"] = Field(
        default="auto",
        description="Where `bookable serve` delivers webhooks, writes calendar events and sends "
        "emails: `process`, in a child process of its own (its CPU off the API's); `inline`, "
        "in its own process beside the API; `auto`, `process` on PostgreSQL when it may use "
        "two CPUs or more, else `inline`; `off`, nowhere (`bookable worker` processes do). "
        "An app run other than by `bookable serve` treats `auto` and `process` as `inline`.",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a delivery may take, connection included."
    )
    webhook_max_attempts: int = Field(
        default=11, ge=1, description="Attempts per event (the first one and its retries)."
    )
    webhook_retry_delays: str = Field(
        default="10s,30s,2m,10m,30m,1h,3h,6h,12h,24h",
        description="Waits before retry 1, 2, ... (`ms`, `s`, `m`, `h`, `d`; a bare number is "
        "seconds); the last one repeats when there are more attempts than waits.",
    )
    webhook_retry_jitter: float = Field(
        default=0.2, ge=0, lt=1, description="Each wait is stretched or shrunk by up to this share."
    )
    webhook_poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for due events (retries, MEETING_*)."
    )
    webhook_gather_seconds: float = Field(
        default=0.1,
        ge=0,
        description="A dispatcher woken by new events less than this after its last claim "
        "waits out the rest first, so that under load one claim takes many events (a "
        "booking's emails, webhooks and calendar writes cost ~2x the CPU when claimed one "
        "commit at a time). A first event after a quiet spell goes out at once. 0: never wait.",
    )
    webhook_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a claimed event is reserved for one dispatcher; if that process "
        "dies, another one delivers it after this (at least 3 x the timeout).",
    )
    webhook_batch_size: int = Field(default=100, ge=1, description="Events claimed per query.")
    webhook_concurrency: int = Field(
        default=20, ge=1, description="Deliveries in flight at once, per dispatcher."
    )

    encryption_key: str | None = Field(
        default=None,
        description="Fernet key(s) that encrypt calendar credentials at rest, comma-separated: "
        "the first encrypts, every one decrypts (rotation: put the new key first, run "
        "`bookable encryption rotate`, then drop the old one). Unset: a key is generated once into "
        "`encryption_key_file`.",
    )
    encryption_key_file: Path = Field(
        default_factory=lambda: Path.cwd() / "bookable.key",
        description="Where the generated key lives when BOOKABLE_ENCRYPTION_KEY is not set.",
    )
    calendar_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one request to a calendar server may take."
    )
    calendar_max_bytes: int = Field(
        default=10_485_760, gt=0, description="Largest answer read from a calendar server."
    )
    calendar_allow_private_targets: bool = Field(
        default=True,
        description="Let calendar accounts and ICS feeds live on private, loopback and other "
        "non-public addresses (link-local and cloud metadata addresses are always refused).",
    )
    calendar_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names or IP addresses that calendar accounts and "
        "feeds may live on; any other host is refused before it is looked up. Empty: any host "
        "the address rules allow.",
    )
    calendar_fail_open: bool = Field(
        default=False,
        description="A selected calendar that cannot be read counts as free (false: its host "
        "is unavailable for the window asked, and the error is shown).",
    )
    calendar_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long busy times read from a calendar are used without asking the "
        "server again; after that a cheap check (CalDAV ctag, HTTP ETag) revalidates them. "
        "Bookings always revalidate.",
    )
    calendar_write_max_attempts: int = Field(
        default=11,
        ge=1,
        description="Attempts to bring one booking's event into a destination calendar (the "
        "first one and its retries) before it is FAILED; a refused login fails at once.",
    )
    calendar_write_retry_delays: str = Field(
        default="10s,30s,2m,10m,30m,1h,3h,6h,12h,24h",
        description="Waits before calendar write retry 1, 2, ... (as the webhook retry delays).",
    )
    emails: Literal["on", "off"] = Field(
        default="on",
        description="`on`: booking emails (with calendar invitations) go to attendees and "
        "hosts; `off`: none is made.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="Where emails are sent: `smtp://[user:password@]host:port` (plain), "
        "`smtp+starttls://...` (STARTTLS), `smtps://...` (implicit TLS). Unset: each email is "
        "written as an .eml file into `email_dir` instead.",
    )
    email_from: str = Field(
        default="Bookable <bookable@localhost>",
        description="The From of booking emails (and the SMTP envelope sender).",
    )
    email_dir: Path = Field(
        default_factory=lambda: Path.cwd() / "mail",
        description="Where emails are written as .eml files when no SMTP server is set.",
    )
    email_timeout: float = Field(
        default=30.0, gt=0, description="Seconds one SMTP delivery may take, connecting included."
    )
    email_max_attempts: int = Field(
        default=11, ge=1, description="Attempts to send one email (the first and its retries)."
    )
    email_retry_delays: str = Field(
        default="10s,30s,2m,10m,30m,1h,3h,6h,12h,24h",
        description="Waits before email retry 1, 2, ... (as the webhook retry delays).",
    )
    email_max_per_host_per_hour: int = Field(
        default=200,
        ge=1,
        description="Emails about one host's bookings made in any hour at most; more are "
        "recorded as DROPPED (a runaway script must not turn the server into a mailer).",
    )
    credential_sync_secret: str | None = Field(
        default=None,
        description="Turns on /v1/credential-sync (with the encryption key below): the value "
        "callers send in the credential sync header.",
    )
    credential_sync_header_name: str = Field(
        default="calcom-credential-sync-secret",
        description="The header that carries the credential sync secret.",
    )
    credential_sync_encryption_key: str | None = Field(
        default=None,
        description="The 32-character key of Cal.com's CALCOM_APP_CREDENTIAL_ENCRYPTION_KEY, "
        "which decrypts the `encryptedKey` of /v1/credential-sync (AES-256-CBC).",
    )

    @field_validator(
        "redis_url",
        "encryption_key",
        "credential_sync_secret",
        "credential_sync_encryption_key",
        "metrics_token",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("credential_sync_encryption_key")
    @classmethod
    def _sync_key_is_aes_256(cls, value: str | None) -> str | None:
        # Cal.com uses the key's characters as latin-1 bytes: AES-256 needs exactly 32.
        if value is not None:
            try:
                size = len(value.encode("latin-1"))
            except UnicodeEncodeError:
                size = -1
            if size != 32:
                raise ValueError(
                    "BOOKABLE_CREDENTIAL_SYNC_ENCRYPTION_KEY must be 32 latin-1 characters "
                    "(AES-256), as Cal.com's CALCOM_APP_CREDENTIAL_ENCRYPTION_KEY"
                )
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: str | None) -> str | None:
        from bookable.notifications.transport import parse_smtp_url  # imports settings' types

        if not value:
            return None
        try:
            parse_smtp_url(value)
        except ValueError as error:  # its message masks the password
            raise ValueError(f"BOOKABLE_SMTP_URL: {error}") from None
        return value

    @field_validator("email_from")
    @classmethod
    def _email_from_has_address(cls, value: str) -> str:
        # Its address is the SMTP envelope sender.
        if "@" not in parseaddr(value)[1]:
            raise ValueError(
                "BOOKABLE_EMAIL_FROM needs an address, e.g. Bookable <bookable@example.com>"
            )
        return value

    @field_validator("clock")
    @classmethod
    def _clock_has_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("BOOKABLE_CLOCK needs a time zone, e.g. 2026-03-01T09:00:00Z")
        return value

    @field_validator("webhook_retry_delays", "calendar_write_retry_delays", "email_retry_delays")
    @classmethod
    def _delays_parse(cls, value: str) -> str:
        parse_durations(value)
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Settings:
        # A lease shorter than a delivery (DNS check + request) would let a second dispatcher
        # send the same event while the first is still waiting for the answer.
        if self.webhook_lease_seconds < 3 * self.webhook_timeout:
            raise ValueError("BOOKABLE_WEBHOOK_LEASE_SECONDS must be at least 3 x the timeout")
        return self

    @property
    def webhook_retry_delay_seconds(self) -> tuple[float, ...]:
        return parse_durations(self.webhook_retry_delays)

    @property
    def email_retry_delay_seconds(self) -> tuple[float, ...]:
        return parse_durations(self.email_retry_delays)

    @property
    def calendar_write_retry_delay_seconds(self) -> tuple[float, ...]:
        return parse_durations(self.calendar_write_retry_delays)

    @property
    def calendar_allowed_host_names(self) -> frozenset[str]:
        return frozenset(
            name.strip().strip("[]").lower()
            for name in self.calendar_allowed_hosts.split(",")
            if name.strip()
        )

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit.strip() not in {"", "0", "off", "none"}


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*$")


def parse_durations(text: str) -> tuple[float, ...]:
    """``"10s,2m,1h"`` -> (10.0, 120.0, 3600.0); ValueError naming the bad item."""
    values = []
    for item in text.split(","):
        match = _DURATION.match(item)
        if match is None:
            raise ValueError(f"{item.strip()!r} is not a duration such as 30s, 10m or 1h")
        values.append(float(match.group(1)) * _UNITS[match.group(2)])
    return tuple(values)


def settings_problem(error: ValidationError) -> str:
    """A ValidationError of `Settings` as one line naming the variables (never their values)."""
    problems = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        names = [f"BOOKABLE_{str(part).upper()}" for part in item["loc"]]
        if names and not message.startswith(names[0]):
            message = f"{names[0]}: {message}"
        problems.append(message)
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The process's settings; a bad one stops it with a one-line message (no traceback)."""
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit(f"error: {settings_problem(error)}") from None
