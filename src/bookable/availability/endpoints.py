"""HTTP for availability."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["availability"])
