"""Secrets at rest: calendar credentials' keys, encrypted with Fernet (``cryptography``).

BOOKABLE_ENCRYPTION_KEY holds one or more Fernet keys, comma-separated: the first encrypts, every
one decrypts (`MultiFernet`), so a key is rotated by putting the new one first, running
``bookable encryption rotate`` (re-encrypts every stored key with the first), then dropping the
old one. Without the setting, a key is generated once into BOOKABLE_ENCRYPTION_KEY_FILE (mode
0600) and read from there on every start: the demo works with nothing configured and nothing is
ever stored in clear, but that file must be kept (and backed up) with the database.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bookable.settings import Settings

log = logging.getLogger("bookable.encryption")


class EncryptionKeyError(RuntimeError):
    """The configured key cannot be used (raised at startup, never for a request)."""


class DecryptionError(RuntimeError):
    """A stored token none of the configured keys opens (a key was dropped too early)."""


class Encryptor:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyError("BOOKABLE_ENCRYPTION_KEY: no key given")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                # Never echo the key itself: only where it is in the list.
                raise EncryptionKeyError(
                    f"BOOKABLE_ENCRYPTION_KEY: key {position} is not a valid Fernet key "
                    '(32 url-safe base64-encoded bytes; make one with `python -c "from '
                    'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`)'
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> Encryptor:
        if settings.encryption_key:
            keys = [k.strip() for k in settings.encryption_key.split(",") if k.strip()]
            return cls(keys)
        path = settings.encryption_key_file
        encryptor = cls([_key_from_file(path)])
        log.warning(
            "BOOKABLE_ENCRYPTION_KEY is not set: calendar credentials are encrypted with the key "
            "in %s (generated on first start). Keep that file with the database and its "
            "backups: without it the stored credentials cannot be read.",
            str(path),
        )
        return encryptor

    def encrypt_json(self, value: dict[str, Any]) -> str:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt_json(self, token: str) -> dict[str, Any]:
        try:
            data = self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise DecryptionError(
                "a stored credential cannot be decrypted with BOOKABLE_ENCRYPTION_KEY "
                "(was the key that encrypted it removed?)"
            ) from None
        value = json.loads(data)
        if not isinstance(value, dict):
            raise DecryptionError("a stored credential is not a JSON object")
        return value

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (unchanged content)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError(
                "a stored credential cannot be decrypted with BOOKABLE_ENCRYPTION_KEY"
            ) from None


def _key_from_file(path: Path) -> str:
    """The key in ``path``, generated there (mode 0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        try:
            # O_EXCL: two processes starting at once must not both write a key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(key + b"\n")
    try:
        key_text = path.read_text().strip()
    except OSError as error:
        raise EncryptionKeyError(
            f"BOOKABLE_ENCRYPTION_KEY is not set and {path} cannot be read: {error.strerror}"
        ) from None
    try:
        Fernet(key_text.encode())
    except (ValueError, TypeError):
        raise EncryptionKeyError(
            f"BOOKABLE_ENCRYPTION_KEY is not set and {path} does not hold a valid Fernet key"
        ) from None
    return key_text
