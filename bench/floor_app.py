"""The floor of the HTTP benches: a bare Starlette app whose one route answers `GET /v1/me` with a
static user of the same shape and size as bookable's. `bench/http.py` serves it with uvicorn
(`floor_app:app`), `bench/asgi.py` calls it in process."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

USER = {
    "id": 1, "username": "bench", "name": "Bench", "email": "bench@example.com",
    "emailVerified": None, "bio": None, "avatarUrl": None, "timeZone": "UTC",
    "weekStart": "Sunday", "endTime": 1440, "bufferTime": 0, "appTheme": None, "theme": None,
    "defaultScheduleId": None, "locale": None, "timeFormat": 12, "hideBranding": False,
    "brandColor": "#292929", "darkBrandColor": "#fafafa", "allowDynamicBooking": True,
    "createdDate": "2026-01-01T00:00:00.000Z", "verified": False, "invitedTo": None,
    "role": "ADMIN",
}  # fmt: skip


async def me(_request: Any) -> JSONResponse:
    return JSONResponse({"user": USER})


app = Starlette(routes=[Route("/v1/me", me)])
