"""Booking uids (`bookings.common.new_uid`): 22 base58 characters, each equally likely."""

from __future__ import annotations

from collections import Counter

from bookable.bookings.common import _BASE58, _BASE58_OF_BYTE, _UNEVEN_BYTES, UID_LENGTH, new_uid


def test_every_character_stands_for_as_many_bytes_kept() -> None:
    """A uniform random byte, once the uneven ones are dropped, gives each of the 58 characters
    with the same chance: each is the translation of exactly four kept bytes."""
    kept = bytes(b for b in range(256) if b not in _UNEVEN_BYTES)
    counts = Counter(kept.translate(_BASE58_OF_BYTE))
    assert set(counts) == set(_BASE58.encode())
    assert set(counts.values()) == {4}
    assert len(_BASE58) == 58 and len(set(_BASE58)) == 58


def test_a_uid_is_22_base58_characters_and_uids_differ() -> None:
    uids = [new_uid() for _ in range(2000)]
    assert all(len(uid) == UID_LENGTH and set(uid) <= set(_BASE58) for uid in uids)
    assert len(set(uids)) == len(uids)
    # Every character shows up (44,000 draws of 58: each ~760 times).
    assert set("".join(uids)) == set(_BASE58)
