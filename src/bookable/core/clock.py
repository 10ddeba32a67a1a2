"""The one clock. Every read of "now" goes through it, so tests and sandboxes can freeze time."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    def __init__(self, frozen_at: datetime | None = None) -> None:
        if frozen_at is not None and frozen_at.tzinfo is None:
            raise ValueError("a frozen clock needs an instant with a time zone")
        self._frozen_at = frozen_at.astimezone(UTC) if frozen_at else None
        # Counts the freezes: a clock frozen again at the same instant starts over from it
        # (`RunningClock` tells the two apart by this, not by the instant).
        self.freezes = 0

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def now(self) -> datetime:
        return self._frozen_at if self._frozen_at is not None else datetime.now(UTC)

    def freeze(self, instant: datetime | None) -> None:
        self._frozen_at = instant.astimezone(UTC) if instant else None
        self.freezes += 1


clock = Clock()


def utcnow() -> datetime:
    return clock.now()
