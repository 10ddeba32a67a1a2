"""`bookable encryption rotate`: a real subprocess on a real SQLite file re-encrypts every stored
credential with the first key, after which the old key can be dropped."""

from __future__ import annotations

import asyncio
import sqlite3

from cryptography.fernet import Fernet

from bookable.core.db import create_engine, session_factory
from bookable.core.encryption import Encryptor
from bookable.models import Credential, User
from tests.system.conftest import run_cli

SECRET = {"url": "https://dav.example/", "username": "ann", "password": "hunter2-rotate"}


def _seed(database_url: str, tokens: list[str]) -> None:
    async def seed() -> None:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                user = User(email="ann@example.com", username="ann")
                session.add(user)
                await session.flush()
                session.add_all(
                    Credential(
                        user_id=user.id,
                        type="caldav_calendar",
                        app_id="caldav-calendar",
                        encrypted_key=token,
                        identity=f"identity-{number}",
                    )
                    for number, token in enumerate(tokens)
                )
        finally:
            await engine.dispose()

    asyncio.run(seed())


def _stored(path: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [token for (token,) in db.execute("SELECT encrypted_key FROM credentials")]


def test_rotate_re_encrypts_every_credential_with_the_first_key(sqlite_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    upgraded = run_cli(sqlite_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    path = sqlite_url.removeprefix("sqlite:///")
    with_old = Encryptor([old])
    _seed(sqlite_url, [with_old.encrypt_json(SECRET), with_old.encrypt_json({**SECRET, "n": 2})])

    result = run_cli(sqlite_url, "encryption", "rotate", BOOKABLE_ENCRYPTION_KEY=f"{new},{old}")
    assert result.returncode == 0, result.stderr
    assert "2 credential(s)" in " ".join(result.stderr.split())
    assert old not in result.stderr + result.stdout and new not in result.stderr + result.stdout

    only_new = Encryptor([new])
    first, second = _stored(path)
    assert only_new.decrypt_json(first) == SECRET
    assert only_new.decrypt_json(second) == {**SECRET, "n": 2}


def test_rotate_without_the_old_key_fails_and_changes_nothing(sqlite_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert run_cli(sqlite_url, "db", "upgrade").returncode == 0
    path = sqlite_url.removeprefix("sqlite:///")
    _seed(sqlite_url, [Encryptor([old]).encrypt_json(SECRET)])
    before = _stored(path)

    result = run_cli(sqlite_url, "encryption", "rotate", BOOKABLE_ENCRYPTION_KEY=new)
    assert result.returncode == 1
    assert "cannot be decrypted" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert _stored(path) == before


def test_rotate_refuses_a_bad_key(sqlite_url: str) -> None:
    result = run_cli(sqlite_url, "encryption", "rotate", BOOKABLE_ENCRYPTION_KEY="short")
    assert result.returncode == 1
    assert "BOOKABLE_ENCRYPTION_KEY" in result.stderr
    assert "Traceback" not in result.stderr
