"""Wire shapes of API keys. The hash never leaves the server; the clear key only once, on create."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from bookable.core.schemas import DbId, StrictInput, WireDateTime, WireModel


class ApiKeyOut(WireModel):
    id: str
    user_id: int
    note: str | None
    created_at: WireDateTime
    expires_at: WireDateTime | None
    last_used_at: WireDateTime | None


class ApiKeyCreate(StrictInput):
    note: str | None = Field(default=None, max_length=1000)
    expires_at: AwareDatetime | None = None
    never_expires: bool | None = None
    user_id: DbId | None = None


class ApiKeyUpdate(StrictInput):
    note: str | None = Field(default=None, max_length=1000)
