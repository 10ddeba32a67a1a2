"""Small things every booking module shares: the refusal error, uids, zones."""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo

from bookable.core.errors import ApiError
from bookable.scheduling import Refusal

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class BookingRefused(ApiError):
    """A refusal with Cal.com's code as `message` and our plain words as `reason`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status, refusal.code, extra={"reason": refusal.reason})


def new_uid() -> str:
    """22 base58 characters, the shape of Cal.com's booking uids."""
    return "".join(secrets.choice(_BASE58) for _ in range(22))


def zone_or_utc(name: str | None) -> ZoneInfo:
    return ZoneInfo(name) if name else ZoneInfo("UTC")
