"""The Encryptor: Fernet keys from the setting or a generated file, rotation, clear errors."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bookable.core.encryption import DecryptionError, EncryptionKeyError, Encryptor
from bookable.settings import Settings

SECRET = {"url": "https://dav.example/", "username": "ann", "password": "hunter2-very-secret"}


def settings(tmp_path: Path, key: str | None = None) -> Settings:
    return Settings(
        database_url="sqlite:///unused.db",
        encryption_key=key,
        encryption_key_file=tmp_path / "keys" / "bookable.key",
    )


def test_round_trip_and_no_clear_text() -> None:
    encryptor = Encryptor([Fernet.generate_key().decode()])
    token = encryptor.encrypt_json(SECRET)
    assert "hunter2" not in token and "ann" not in token
    assert encryptor.decrypt_json(token) == SECRET
    # A fresh IV each time: equal keys never give equal tokens.
    assert encryptor.encrypt_json(SECRET) != token


def test_first_key_encrypts_every_key_decrypts_and_rotate(tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Encryptor.from_settings(settings(tmp_path, old)).encrypt_json(SECRET)
    both = Encryptor.from_settings(settings(tmp_path, f"{new}, {old}"))
    assert both.decrypt_json(token) == SECRET
    rotated = both.rotate(token)
    only_new = Encryptor.from_settings(settings(tmp_path, new))
    assert only_new.decrypt_json(rotated) == SECRET
    with pytest.raises(DecryptionError):
        only_new.decrypt_json(token)
    with pytest.raises(DecryptionError):
        only_new.rotate(token)


def test_an_invalid_key_names_the_setting_not_the_key(tmp_path: Path) -> None:
    good = Fernet.generate_key().decode()
    with pytest.raises(EncryptionKeyError) as caught:
        Encryptor.from_settings(settings(tmp_path, f"{good},not-a-fernet-key"))
    message = str(caught.value)
    assert "BOOKABLE_ENCRYPTION_KEY" in message and "key 2" in message
    assert "not-a-fernet-key" not in message and good not in message


def test_without_a_key_one_is_generated_once_0600_and_a_warning_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configured = settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bookable.encryption"):
        first = Encryptor.from_settings(configured)
    path = configured.encryption_key_file
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (record,) = [r for r in caplog.records if r.name == "bookable.encryption"]
    assert str(path) in record.getMessage() and "database" in record.getMessage()
    key_text = path.read_text()
    token = first.encrypt_json(SECRET)
    # The next start reads the same key: what was stored stays readable.
    second = Encryptor.from_settings(configured)
    assert path.read_text() == key_text
    assert second.decrypt_json(token) == SECRET


def test_a_key_file_with_garbage_is_a_clear_error(tmp_path: Path) -> None:
    configured = settings(tmp_path)
    configured.encryption_key_file.parent.mkdir(parents=True)
    configured.encryption_key_file.write_text("garbage\n")
    with pytest.raises(EncryptionKeyError, match="does not hold a valid Fernet key"):
        Encryptor.from_settings(configured)


def test_create_app_refuses_to_start_with_a_bad_key(tmp_path: Path) -> None:
    from bookable.app import create_app

    with pytest.raises(EncryptionKeyError, match="BOOKABLE_ENCRYPTION_KEY"):
        create_app(settings(tmp_path, "nope"))
