"""IANA time-zone names: validation and canonical spelling."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, WithJsonSchema


@lru_cache(maxsize=1)
def _canonical_by_folded() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def canonical_time_zone(name: str) -> str:
    """The tzdata spelling of ``name`` (matched without regard to case); ValueError if unknown.

    Cal.com rejects or mis-reads "europe/london"; we accept it and store "Europe/London".
    """
    found = _canonical_by_folded().get(name.strip().casefold())
    if found is None:
        raise ValueError(f"'{name}' is not a valid IANA time zone, e.g. 'Europe/London'")
    return found


# The document lists tzdata's names; the server also takes them in any letter case.
TimeZoneName = Annotated[
    str,
    AfterValidator(canonical_time_zone),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(available_timezones()),
            "description": "An IANA time zone (tzdata), e.g. Europe/London",
        }
    ),
]
