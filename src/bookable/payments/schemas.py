"""Wire shape of payments (Cal.com v1 `schemaPaymentPublic`). Payments are read-only in v1."""

from __future__ import annotations

from bookable.core.schemas import WireModel


class PaymentOut(WireModel):
    """Cal.com's public payment fields, plus the payment's `uid`. `amount` and `fee` are in the
    currency's minor units (cents)."""

    id: int
    uid: str
    amount: int
    success: bool
    refunded: bool
    fee: int
    payment_option: str
    currency: str
    booking_id: int
