"""After creation: cancel, confirm or reject, PATCH, no-show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload, selectinload

from bookable.bookings.access import booking_host_ids, get_booking, manages
from bookable.bookings.availability import host_refusal, occupied_hosts_check
from bookable.bookings.common import BookingRefused
from bookable.bookings.locks import lock_host_days
from bookable.bookings.schemas import MAX_BOOKING_LENGTH, TOO_LONG, BookingPatch
from bookable.bookings.writes import assert_no_overlap, flush_guarded
from bookable.calendars.busy import ExternalBusy
from bookable.calendars.writes import plan_booking_event
from bookable.core.auth import Caller
from bookable.core.clock import clock
from bookable.core.errors import BadRequest, Forbidden, NotFound
from bookable.models import Attendee, Booking, BookingStatus, EventType, User
from bookable.notifications.outbox import Change, MailPolicy, mail_booking_change
from bookable.webhooks.outbox import announce, announce_patch, announce_seat_given_up
from bookable.webhooks.triggers import WebhookTrigger


async def _event_type_of(session: AsyncSession, booking: Booking) -> EventType | None:
    if booking.event_type_id is None:
        return None
    return await session.scalar(
        select(EventType)
        .where(EventType.id == booking.event_type_id)
        .options(raiseload(EventType.custom_inputs), raiseload(EventType.hosts))
    )


@dataclass
class Cancelled:
    booking: Booking
    only_removed_attendee: bool


async def cancel_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    *,
    reason: str | None,
    cancelled_by: str | None,
    all_remaining: bool,
    mail: MailPolicy | None = None,
) -> Cancelled:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if booking.status == BookingStatus.CANCELLED:
        raise BadRequest("This booking has already been cancelled.")
    if booking.status == BookingStatus.REJECTED:
        raise BadRequest("This booking has been rejected and cannot be cancelled.")
    meta = (event_type.meta or {}) if event_type else {}
    if meta.get("disableCancelling"):
        raise BadRequest("This event type does not allow cancellations")

    if not await manages(session, caller, booking, event_type):
        # An attendee of a seated booking gives up their seat; of any other, cancels it.
        mine = [a for a in booking.attendees if a.email.lower() == caller.user.email.lower()]
        if event_type is not None and event_type.seats_per_time_slot and len(booking.attendees) > 1:
            for attendee in mine:
                await session.delete(attendee)
            await session.flush()
            if mine:
                await announce_seat_given_up(
                    session,
                    booking,
                    mine,
                    reason=reason or "Not Provided",
                    cancelled_by=cancelled_by or caller.user.email,
                )
                await plan_booking_event(session, booking)
                await mail_booking_change(
                    session, mail, Change.SEAT_GIVEN_UP, booking, attendees=mine
                )
            return Cancelled(booking, only_removed_attendee=True)

    targets = [booking]
    if all_remaining and booking.recurring_event_id:
        targets = list(
            await session.scalars(
                select(Booking)
                .where(
                    Booking.recurring_event_id == booking.recurring_event_id,
                    Booking.user_id == booking.user_id,
                    Booking.start_time >= clock.now(),
                    Booking.status.not_in([BookingStatus.CANCELLED, BookingStatus.REJECTED]),
                )
                .options(selectinload(Booking.payments))
                .with_for_update(of=Booking)
            )
        )
        if booking not in targets:
            targets.append(booking)
    for target in targets:
        target.status = BookingStatus.CANCELLED
        target.cancellation_reason = reason or "Not Provided"
        target.cancelled_by = cancelled_by or caller.user.email
        for payment in target.payments:
            if payment.success and not payment.refunded:
                payment.refunded = True
    await session.flush()
    for target in targets:
        await announce(session, WebhookTrigger.BOOKING_CANCELLED, target)
        await plan_booking_event(session, target)
        await mail_booking_change(session, mail, Change.CANCELLED, target)
    return Cancelled(booking, only_removed_attendee=False)


async def confirm_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    *,
    confirmed: bool,
    reason: str | None,
    external: ExternalBusy | None = None,
    mail: MailPolicy | None = None,
) -> Booking:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    if booking.status != BookingStatus.PENDING:
        raise BadRequest(
            f"Only a pending booking can be confirmed or rejected; this one is {booking.status}"
        )
    if not confirmed:
        booking.status = BookingStatus.REJECTED
        booking.rejection_reason = reason
        await session.flush()
        await announce(session, WebhookTrigger.BOOKING_REJECTED, booking)
        await plan_booking_event(session, booking)
        await mail_booking_change(session, mail, Change.REJECTED, booking)
        return booking
    if event_type is not None and event_type.team_id is not None:
        await _recheck_team_booking(session, event_type, booking, external)
    elif event_type is not None and booking.user_id is not None:
        await _recheck_host_booking(session, event_type, booking, external)
    booking.status = BookingStatus.ACCEPTED
    # No payment provider ships with Bookable: the host confirming a priced booking is the
    # record that it was paid (README, "Payments").
    unpaid = [p for p in booking.payments if not p.success and not p.refunded]
    for payment in unpaid:
        payment.success = True
    if unpaid:
        booking.paid = True
    await flush_guarded(session, booking)
    if unpaid:
        await announce(session, WebhookTrigger.BOOKING_PAID, booking, payment=unpaid[0])
    await announce(session, WebhookTrigger.BOOKING_CREATED, booking)
    await plan_booking_event(session, booking)
    await mail_booking_change(session, mail, Change.CONFIRMED, booking)
    return booking


async def _recheck_host_booking(
    session: AsyncSession, event_type: EventType, booking: Booking, external: ExternalBusy | None
) -> None:
    """Confirming: the host must still be free (Cal.com #10789: two requests for one slot must
    not both be accepted)."""
    host = await session.get(User, booking.user_id)
    if host is None:
        return
    refusal = await host_refusal(
        session, event_type, host, booking.start_time, booking.end_time, clock.now(),
        ignore_uid=booking.uid, external=external,
    )  # fmt: skip
    if refusal is not None and refusal.code not in (
        "Attempting to book a meeting in the past.",
        "booking_time_out_of_bounds_error",
    ):
        raise BookingRefused(refusal)


async def _recheck_team_booking(
    session: AsyncSession, event_type: EventType, booking: Booking, external: ExternalBusy | None
) -> None:
    """Confirming a team booking: every host it occupies must still be free (Cal.com #10789)."""
    await lock_host_days(session, booking)
    host_ids = await booking_host_ids(session, booking)
    check = await occupied_hosts_check(
        session, event_type, host_ids, booking.start_time, booking.end_time, clock.now(),
        ignore_uid=booking.uid, external=external,
    )  # fmt: skip
    # Time bounds and the grid judged the request when it was made; only hosts' time counts now.
    if check.refusal is not None and check.refusal.code in (
        "fixed_hosts_unavailable_for_booking",
        "booking_limit_reached",
        "booking_seats_full_error",
    ):
        raise BookingRefused(check.refusal)


async def patch_booking(
    session: AsyncSession,
    caller: Caller,
    key: str,
    body: BookingPatch,
    *,
    mail: MailPolicy | None = None,
) -> Booking:
    booking = await get_booking(session, caller, key, for_update=True)
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    values = body.model_dump(exclude_unset=True)
    for name in ("title", "status", "user_id", "event_type_id", "start_time", "end_time"):
        if name in values and values[name] is None:
            raise BadRequest(f"invalid_type in '{_camel(name)}': Expected a value, received null")
    if "user_id" in values and values["user_id"] != booking.user_id:
        if not caller.is_admin:
            raise Forbidden("Only admin can change the organizer of a booking")
        organizer = await session.get(User, values["user_id"])
        if organizer is None:
            raise NotFound(f"User with id: {values['user_id']} not found")
        booking.user_primary_email = organizer.email
    if "event_type_id" in values and values["event_type_id"] is not None:
        target = await session.get(EventType, values["event_type_id"])
        if target is None or (not caller.is_admin and target.user_id != caller.user_id):
            raise NotFound(f"Event type with id: {values['event_type_id']} not found")
        event_type = target
    moved_from = (booking.start_time, booking.end_time)
    for name, value in values.items():
        setattr(booking, name, value)
    if booking.end_time <= booking.start_time:
        raise BadRequest("custom in 'endTime': must be after startTime")
    moved = (booking.start_time, booking.end_time) != moved_from
    if moved:
        # A new time is a new version of the meeting for calendar apps (RFC 5545 SEQUENCE).
        booking.ical_sequence = (booking.ical_sequence or 0) + 1
    if moved and booking.end_time - booking.start_time > MAX_BOOKING_LENGTH:
        # (Only a change of time is judged: a booking stored before the limit stays editable.)
        field = "endTime" if "end_time" in values else "startTime"
        raise BadRequest(f"custom in '{field}': {TOO_LONG}")
    before = event_type.before_event_buffer if event_type else 0
    after = event_type.after_event_buffer if event_type else 0
    booking.blocked_start = booking.start_time - timedelta(minutes=before or 0)
    booking.blocked_end = booking.end_time + timedelta(minutes=after or 0)
    await assert_no_overlap(session, booking)
    await flush_guarded(session, booking)
    await announce_patch(session, booking, moved_from=moved_from)
    await plan_booking_event(session, booking)
    if moved and booking.status in (BookingStatus.ACCEPTED, BookingStatus.PENDING):
        await mail_booking_change(session, mail, Change.RESCHEDULED, booking, moved_from=moved_from)
    return booking


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def mark_no_show(
    session: AsyncSession,
    caller: Caller,
    booking_uid: str,
    attendees: list[tuple[str, bool]] | None,
    no_show_host: bool | None,
) -> tuple[Booking, list[Attendee]]:
    try:
        booking = await get_booking(session, caller, booking_uid, for_update=True, uid_only=True)
    except NotFound:
        # The uid came in the body: the answer names no booking, readable or not.
        raise NotFound("Booking not found") from None
    event_type = await _event_type_of(session, booking)
    if not await manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    if attendees is None and no_show_host is None:
        raise BadRequest("custom in 'attendees': give attendees or noShowHost")
    changed: list[Attendee] = []
    by_email = {a.email.lower(): a for a in booking.attendees}
    for email, no_show in attendees or []:
        attendee = by_email.get(email.lower())
        if attendee is None:
            raise BadRequest(f"custom in 'attendees': {email} is not an attendee of this booking")
        attendee.no_show = no_show
        changed.append(attendee)
    if no_show_host is not None:
        booking.no_show_host = no_show_host
    await session.flush()
    if changed:
        no_show = [(a.email, bool(a.no_show)) for a in changed]
        await announce(session, WebhookTrigger.BOOKING_NO_SHOW_UPDATED, booking, no_show=no_show)
    return booking, changed
