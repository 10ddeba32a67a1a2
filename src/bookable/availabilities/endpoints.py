"""HTTP for availabilities."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["availabilities"])
