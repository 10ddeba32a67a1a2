"""Which subscriber URLs a webhook may point at (server-side request forgery protection).

The rules and the pinned HTTP client live in `bookable.core.outbound` (calendar integrations
share them). Two checks for webhooks:

- `subscriber_url_problem`, when a webhook is created or edited: the URL's form, and the host
  when it is an IP literal (in any spelling the resolver reads as one, ``2852039166`` or
  ``[::a9fe:a9fe]`` alike) or a well-known cloud metadata name. Names are not resolved: the
  server may have no DNS at that moment, and what a name points at can change anyway.
- At delivery, the dispatcher's client (`bookable.core.outbound.guarded_client`) resolves the
  name, checks every address, and connects to a checked one (no second lookup, so no DNS
  rebinding). `delivery_target_problem` is the same judgement without a request.
"""

from __future__ import annotations

from bookable.core.outbound import (
    ALLOWED_SCHEMES,
    LOCAL_HOSTNAMES,
    METADATA_ADDRESSES,
    METADATA_HOSTNAMES,
    PRIVATE_REFUSED,
    address_problem,
    target_problem,
    url_problem,
)

__all__ = [
    "ALLOWED_SCHEMES",
    "LOCAL_HOSTNAMES",
    "METADATA_ADDRESSES",
    "METADATA_HOSTNAMES",
    "PRIVATE_REFUSED",
    "address_problem",
    "delivery_target_problem",
    "subscriber_url_problem",
]


def subscriber_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook's subscriber URL, or None when it can (no DNS lookup)."""
    return url_problem(url, allow_private=allow_private)


async def delivery_target_problem(
    url: str, *, allow_private: bool, resolve_timeout: float = 5.0
) -> str | None:
    """Why a delivery to ``url`` must not be made now, or None when it may: the checks of
    `subscriber_url_problem`, then every address the name resolves to. A name that does not
    resolve (or not within ``resolve_timeout`` seconds) is refused too."""
    return await target_problem(url, allow_private=allow_private, resolve_timeout=resolve_timeout)
