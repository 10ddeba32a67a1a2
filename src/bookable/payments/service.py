"""Reading payments. Every list and lookup starts from `readable(caller)`.

Cal.com v1 has no admin mode here: everyone, system-wide admins included, sees the payments of
the bookings they host, and nothing else. Bookable follows it; hosting a team booking as a
co-host counts (`bookings.access.hosted_by`).
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.bookings.access import hosted_by
from bookable.core.auth import Caller
from bookable.core.errors import NotFound
from bookable.core.schemas import is_db_id
from bookable.models import Payment


def readable(caller: Caller) -> Select[tuple[Payment]]:
    """Payments of the bookings the caller organises or co-hosts (admins too: Cal.com has no
    admin mode here)."""
    return select(Payment).where(hosted_by(caller, Payment.booking_id))


async def list_payments(session: AsyncSession, caller: Caller) -> list[Payment]:
    return list(await session.scalars(readable(caller).order_by(Payment.id)))


async def get_payment(session: AsyncSession, caller: Caller, payment_id: int) -> Payment:
    """One payment of the caller's bookings. Someone else's answers as a missing one, 404 (Cal.com
    says 401 `Unauthorized`, which tells that the id exists)."""
    if not is_db_id(payment_id):
        raise NotFound(f"Payment with id: {payment_id} not found")
    payment = await session.scalar(readable(caller).where(Payment.id == payment_id))
    if payment is None:
        raise NotFound(f"Payment with id: {payment_id} not found")
    return payment
