"""HTTP for custom-inputs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["custom-inputs"])
