"""The headers of a delivery, and the signature receivers check.

``X-Cal-Signature-256`` is the lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the
webhook's secret (UTF-8), or the literal ``no-secret-provided`` when the webhook has none; no
prefix, no timestamp, as Cal.com sends it. A receiver recomputes it over the raw request body:

    hmac.compare_digest(hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest(), header)
"""

from __future__ import annotations

import hashlib
import hmac

from bookable.webhooks.payloads import WEBHOOK_VERSION

SIGNATURE_HEADER = "X-Cal-Signature-256"
VERSION_HEADER = "X-Cal-Webhook-Version"
NO_SECRET = "no-secret-provided"


def signature(secret: str | None, body: bytes) -> str:
    if not secret:
        return NO_SECRET
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (kept here for tests and the README's example)."""
    return hmac.compare_digest(signature(secret, body), header)


def delivery_headers(
    body: bytes, *, content_type: str, secret: str | None, version: str | None
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        SIGNATURE_HEADER: signature(secret, body),
        VERSION_HEADER: version or WEBHOOK_VERSION,
    }
