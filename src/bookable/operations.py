"""Operator tasks behind the CLI: they open their own engine, since no request carries them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import time, timedelta

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.api_keys.service import issue_key
from bookable.core.clock import clock
from bookable.core.db import create_engine, session_factory
from bookable.core.encryption import DecryptionError, EncryptionKeyError, Encryptor
from bookable.core.errors import format_validation_errors
from bookable.models import Availability, Credential, EventType, Schedule, User, UserRole
from bookable.settings import Settings
from bookable.users.schemas import UserCreate

# A reserved documentation domain that email validation accepts: the demo user's booking
# emails are sent (to the .eml folder by default), not DROPPED as to an invalid address.
DEMO_EMAIL = "demo@example.com"
# The address of demo users seeded before: a special-use domain (.local) that booking emails
# refuse; such a user is moved to DEMO_EMAIL.
OLD_DEMO_EMAIL = "demo@bookable.local"
DEMO_USERNAME = "demo"


class OperationError(Exception):
    """A problem the operator can fix (bad input, a clash); printed without a traceback."""


@asynccontextmanager
async def _transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def create_user_with_key(
    settings: Settings,
    *,
    email: str,
    username: str,
    name: str | None,
    time_zone: str,
    admin: bool,
) -> tuple[int, str]:
    try:
        body = UserCreate(email=email, username=username, name=name, time_zone=time_zone)
    except ValidationError as error:
        raise OperationError(format_validation_errors(error.errors())) from None
    async with _transaction(settings) as session:
        clash = await session.scalar(
            select(User.id).where(
                or_(
                    func.lower(User.email) == body.email, func.lower(User.username) == body.username
                )
            )
        )
        if clash is not None:
            raise OperationError(f"a user with email {email} or username {username} exists")
        user = User(
            email=body.email,
            username=body.username,
            name=body.name,
            time_zone=body.time_zone or "UTC",
            role=UserRole.ADMIN if admin else UserRole.USER,
        )
        session.add(user)
        await session.flush()
        _key, clear = await issue_key(
            session, user_id=user.id, prefix=settings.api_key_prefix, note="created by CLI"
        )
        return user.id, clear


async def create_key_for(
    settings: Settings, who: str, *, note: str | None, expires_in: timedelta | None
) -> str:
    async with _transaction(settings) as session:
        user = await session.scalar(
            select(User).where(
                or_(func.lower(User.email) == who.lower(), func.lower(User.username) == who.lower())
            )
        )
        if user is None:
            raise OperationError(f"no user with email or username {who!r}")
        expires_at = clock.now() + expires_in if expires_in else None
        _key, clear = await issue_key(
            session, user_id=user.id, prefix=settings.api_key_prefix, note=note,
            expires_at=expires_at,
        )  # fmt: skip
        return clear


async def seed_demo(settings: Settings) -> str:
    """Create the demo user, a working-hours schedule and two event types once; every call
    returns a new key for the demo user."""
    async with _transaction(settings) as session:
        user = await session.scalar(select(User).where(User.email == DEMO_EMAIL))
        if user is None:
            user = await session.scalar(select(User).where(User.email == OLD_DEMO_EMAIL))
            if user is not None:
                user.email = DEMO_EMAIL
        if user is None:
            user = User(
                email=DEMO_EMAIL,
                username=DEMO_USERNAME,
                name="Demo User",
                time_zone="Europe/London",
                week_start="Monday",
            )
            session.add(user)
            await session.flush()
            schedule = Schedule(user_id=user.id, name="Working hours", time_zone="Europe/London")
            schedule.availability.append(
                Availability(days=[1, 2, 3, 4, 5], start_time=time(9), end_time=time(17))
            )
            session.add(schedule)
            await session.flush()
            user.default_schedule_id = schedule.id
            session.add_all(
                [
                    EventType(
                        user_id=user.id,
                        title="30 Minute Meeting",
                        slug="30min",
                        length=30,
                        locations=[{"type": "integrations:daily"}],
                    ),
                    EventType(
                        user_id=user.id,
                        title="60 Minute Meeting",
                        slug="60min",
                        length=60,
                        locations=[{"type": "inPerson", "address": "Main office"}],
                        meta={"multipleDuration": [30, 60, 90]},
                    ),
                ]
            )
            await session.flush()
        _key, clear = await issue_key(
            session, user_id=user.id, prefix=settings.api_key_prefix, note="demo"
        )
        return clear


async def rotate_credential_keys(settings: Settings) -> int:
    """Re-encrypt every stored credential key with the first BOOKABLE_ENCRYPTION_KEY, in one
    transaction (all or none); returns how many. Afterwards the older keys can be dropped."""
    try:
        encryptor = Encryptor.from_settings(settings)
    except EncryptionKeyError as error:
        raise OperationError(str(error)) from None
    async with _transaction(settings) as session:
        credentials = list(await session.scalars(select(Credential).with_for_update()))
        for credential in credentials:
            try:
                credential.encrypted_key = encryptor.rotate(credential.encrypted_key)
            except DecryptionError as error:
                raise OperationError(f"credential {credential.id}: {error}") from None
        return len(credentials)
