"""Every setting comes from an environment variable with the prefix ``BOOKABLE_``."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKABLE_", extra="ignore")

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
    website_url: str = Field(
        default="http://localhost:3000", description="Public booking site, used in links."
    )
    clock: datetime | None = Field(
        default=None,
        description="Freeze the server's clock at this ISO instant (tests, sandboxes).",
    )
    log_level: str = Field(default="info", description="uvicorn log level.")
    webhook_allow_private_targets: bool = Field(
        default=True,
        description="Let webhooks target private, loopback and other non-public addresses "
        "(link-local and cloud metadata addresses are always refused).",
    )

    @field_validator("redis_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("clock")
    @classmethod
    def _clock_has_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("BOOKABLE_CLOCK needs a time zone, e.g. 2026-03-01T09:00:00Z")
        return value

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit.strip() not in {"", "0", "off", "none"}


@lru_cache
def get_settings() -> Settings:
    return Settings()
