"""HTTP for payments: read-only, as in Cal.com v1 (its `HTTP_GET` middleware)."""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import APIRouter

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.errors import ApiError
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import envelope, ok
from bookable.models import Payment
from bookable.payments import service
from bookable.payments.schemas import PaymentOut

router = APIRouter(tags=["payments"], route_class=IdempotentRoute)
PaymentsResponse = envelope("PaymentsResponse", payments=list[PaymentOut])
PaymentResponse = envelope("PaymentResponse", payment=PaymentOut)

# Every method but GET gets Cal.com's own 405 body (not the generic "Method Not Allowed (Allow:…)").
_NOT_GET = ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def payment_json(payment: Payment) -> dict[str, Any]:
    return PaymentOut.model_validate(payment).model_dump(mode="json", by_alias=True)


@router.get(
    "/payments", summary="List payments of the bookings you host", responses=ok(PaymentsResponse)
)
async def list_payments(session: DbSession, caller: CurrentCaller) -> dict[str, Any]:
    payments = await service.list_payments(session, caller)
    return {"payments": [payment_json(p) for p in payments]}


@router.get(
    "/payments/{id}", summary="Get a payment of one of your bookings", responses=ok(PaymentResponse)
)
async def get_payment(session: DbSession, caller: CurrentCaller, id: int) -> dict[str, Any]:
    return {"payment": payment_json(await service.get_payment(session, caller, id))}


@router.api_route("/payments", methods=_NOT_GET, include_in_schema=False, response_model=None)
@router.api_route("/payments/{id}", methods=_NOT_GET, include_in_schema=False, response_model=None)
async def only_get(caller: CurrentCaller) -> NoReturn:
    # After authentication, as Cal.com's middleware order has it (401 before 405).
    raise ApiError(405, "Only GET Method allowed", headers={"Allow": "GET"})
