"""The user object on the wire: the hand-written `user_wire` gives exactly what the pydantic
model `UserOut` gives (keys, order, values, and so the JSON bytes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bookable.models import User, UserRole
from bookable.users.schemas import UserOut, user_wire


def _full(**overrides: Any) -> User:
    values: dict[str, Any] = {
        "id": 7,
        "username": "zoë.ø-1",
        "name": 'Zoë "Z" \u2603 \U0001f600 </script>',
        "email": "zoe@example.com",
        "email_verified": datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        "bio": "line\nbreak\ttab \\ back",
        "avatar_url": "data:image/png;base64,AAAA",
        "time_zone": "America/Argentina/Buenos_Aires",
        "week_start": "Monday",
        "end_time": 1000,
        "buffer_time": 15,
        "app_theme": "dark",
        "theme": "light",
        "default_schedule_id": 3,
        "locale": "pt-BR",
        "time_format": 24,
        "hide_branding": True,
        "brand_color": "#123",
        "dark_brand_color": "#abcdef12",
        "allow_dynamic_booking": False,
        "created_date": datetime(2023, 5, 25, 9, 30, 0, 1_500, tzinfo=timezone(timedelta(hours=5))),
        "verified": True,
        "invited_to": 2,
        "role": UserRole.ADMIN,
    }
    values.update(overrides)
    return User(**values)


NULLABLE = (
    "username", "name", "email_verified", "bio", "avatar_url", "app_theme", "theme",
    "default_schedule_id", "locale", "time_format", "brand_color", "dark_brand_color",
    "allow_dynamic_booking", "verified", "invited_to",
)  # fmt: skip
USERS = {
    "full": _full(),
    "nulls": _full(**dict.fromkeys(NULLABLE), role=UserRole.USER),
    "naive instant, role as text": _full(created_date=datetime(2030, 1, 1), role="USER"),
}


@pytest.mark.parametrize("user", USERS.values(), ids=USERS.keys())
def test_user_wire_is_the_models_dump(user: User) -> None:
    expected = UserOut.model_validate(user).model_dump(mode="json", by_alias=True)
    got = user_wire(user)
    assert list(got.items()) == list(expected.items())
    for options in ({}, {"separators": (",", ":")}):
        assert json.dumps({"user": got}, **options) == json.dumps({"user": expected}, **options)
