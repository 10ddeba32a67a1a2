"""Booking metrics: POST /bookings answered with a new booking, or refused, by a reason from a
fixed set (Cal.com's refusal codes grouped; the HTTP status for the rest)."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter
from pydantic import ValidationError

from bookable.core.errors import ApiError
from bookable.core.idempotency import REPLAYED_HEADER, IdempotentRoute
from bookable.core.routing import RouteHandler

BOOKINGS_CREATED = Counter(
    "bookable_bookings_created",
    "POST /bookings answered 200 with a new booking (a reschedule or a seat taken included; "
    "an idempotent replay not).",
)
BOOKINGS_REFUSED = Counter(
    "bookable_bookings_refused", "POST /bookings refused, by reason.", ["reason"]
)

# Cal.com's refusal codes (`Refusal.code`), grouped.
_REASON_OF_CODE = {
    "no_available_users_found_error": "unavailable",
    "fixed_hosts_unavailable_for_booking": "unavailable",
    "round_robin_host_unavailable_for_booking": "unavailable",
    "booking_time_out_of_bounds_error": "out_of_bounds",
    "Attempting to book a meeting in the past.": "out_of_bounds",
    "booking_limit_reached": "limit_reached",
    "booking_seats_full_error": "seats_full",
    "already_signed_up_for_this_booking_error": "already_signed_up",
}
_REASON_OF_STATUS = {
    400: "validation",
    422: "validation",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}
OTHER = "other"  # any other 4xx (an Idempotency-Key in use, a body too large...)
REASONS = (*dict.fromkeys(_REASON_OF_CODE.values()), *_REASON_OF_STATUS.values(), OTHER)
for _reason in dict.fromkeys(REASONS):  # every series exists from the start
    BOOKINGS_REFUSED.labels(_reason)


def refusal_reason(error: Exception) -> str | None:
    """The reason label of an error POST /bookings answers with; None for a server error."""
    if isinstance(error, RequestValidationError | ValidationError):
        return "validation"
    if not isinstance(error, ApiError) or error.status_code >= 500:
        return None
    return _REASON_OF_CODE.get(error.message) or _REASON_OF_STATUS.get(error.status_code, OTHER)


class CountedBookingRoute(IdempotentRoute):
    """The bookings router's route class: POST /bookings counts its outcome. The whole request
    is inside (authentication and its rate limit, body validation, the committed
    transaction), so a 200 is a booking that was written."""

    def wrap_handler(self, handler: RouteHandler) -> RouteHandler:
        handler = super().wrap_handler(handler)
        # By name: FastAPI builds the route again where the router is included (under /v1).
        if self.name != "create_booking" or "POST" not in self.methods:
            return handler

        async def counted_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as error:
                reason = refusal_reason(error)
                if reason is not None:
                    BOOKINGS_REFUSED.labels(reason).inc()
                raise
            if response.status_code == 200 and REPLAYED_HEADER not in response.headers:
                BOOKINGS_CREATED.inc()
            return response

        return counted_handler
