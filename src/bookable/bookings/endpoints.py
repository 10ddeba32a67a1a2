"""HTTP for bookings. The numeric id (Cal.com) and the uid (the seed's form) both name a booking."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy import select

from bookable.bookings import access, create, lifecycle, listing
from bookable.bookings.calendars import calendars_for_confirmation, with_host_calendars
from bookable.bookings.common import AnyAttendee, AnyBooking
from bookable.bookings.metrics import CountedBookingRoute
from bookable.bookings.schemas import (
    AttendeeOut,
    BookingCancelledOut,
    BookingConfirm,
    BookingConfirmedOut,
    BookingCreate,
    BookingCreatedOut,
    BookingEmailOut,
    BookingOut,
    BookingPatch,
    BookingRead,
    CalendarEventOut,
    NoShowBody,
    NoShowOut,
)
from bookable.calendars.busy import CalendarBusyReader
from bookable.calendars.writes import booking_calendar_events
from bookable.core.auth import CurrentCaller
from bookable.core.clock import clock
from bookable.core.db import DbSession
from bookable.core.errors import BadRequest, Forbidden, NotFound
from bookable.core.openapi import envelope, ok
from bookable.core.pagination import Pagination
from bookable.core.preflight import Prepared, before_transaction
from bookable.core.retry import retry_transaction
from bookable.core.schemas import format_instant
from bookable.core.timeparse import parse_bound
from bookable.models import (
    Booking,
    BookingReference,
    CalendarEventStatus,
    EmailStatus,
    EventType,
    Payment,
    User,
)
from bookable.notifications.outbox import MailPolicy, booking_emails

router = APIRouter(tags=["bookings"], route_class=CountedBookingRoute)


async def _mail_policy(request: Request) -> MailPolicy | None:
    policy: MailPolicy | None = getattr(request.app.state, "mail_policy", None)
    return policy


# The server's email settings, handed to the booking services (they know nothing of HTTP).
Mail = Annotated[MailPolicy | None, Depends(_mail_policy)]
BookingsResponse = envelope("BookingsResponse", bookings=list[BookingOut])
BookingResponse = envelope("BookingResponse", booking=BookingOut)
BookingPatchedResponse = envelope("BookingPatchedResponse", booking=BookingRead)
_EMAIL = TypeAdapter(EmailStr)


def _payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "uid": payment.uid,
        "amount": payment.amount,
        "currency": payment.currency,
        "success": payment.success,
        "refunded": payment.refunded,
        "fee": payment.fee,
        "paymentOption": payment.payment_option,
        "bookingId": payment.booking_id,
    }


def _instant_or_none(value: datetime | None) -> str | None:
    return None if value is None else format_instant(value)


def booking_row_json(booking: AnyBooking) -> dict[str, Any]:
    """`BookingRow` of ``booking`` as its JSON dump gives it (the same keys in the same order),
    written from the attributes: validating and dumping the model was ~5 % of a booking's
    CPU. `tests/api/test_bookings_create.py` compares the two."""
    return {
        "id": booking.id,
        "uid": booking.uid,
        "userId": booking.user_id,
        "userPrimaryEmail": booking.user_primary_email,
        "eventTypeId": booking.event_type_id,
        "title": booking.title,
        "description": booking.description,
        "customInputs": booking.custom_inputs,
        "responses": booking.responses,
        "startTime": format_instant(booking.start_time),
        "endTime": format_instant(booking.end_time),
        "location": booking.location,
        "createdAt": format_instant(booking.created_at),
        "updatedAt": _instant_or_none(booking.updated_at),
        "status": booking.status.value,
        "paid": booking.paid,
        "destinationCalendarId": booking.destination_calendar_id,
        "cancellationReason": booking.cancellation_reason,
        "rejectionReason": booking.rejection_reason,
        "dynamicEventSlugRef": booking.dynamic_event_slug_ref,
        "dynamicGroupSlugRef": booking.dynamic_group_slug_ref,
        "rescheduled": booking.rescheduled,
        "fromReschedule": booking.from_reschedule,
        "recurringEventId": booking.recurring_event_id,
        "smsReminderNumber": booking.sms_reminder_number,
        "metadata": booking.meta,
        "isRecorded": booking.is_recorded,
        "iCalUID": booking.ical_uid,
        "iCalSequence": booking.ical_sequence,
        "rating": booking.rating,
        "ratingFeedback": booking.rating_feedback,
        "noShowHost": booking.no_show_host,
        "cancelledBy": booking.cancelled_by,
        "rescheduledBy": booking.rescheduled_by,
        "creationSource": booking.creation_source,
    }


def full_attendee_json(attendee: AnyAttendee) -> dict[str, Any]:
    """`FullAttendeeOut` of ``attendee`` as its JSON dump gives it (see `booking_row_json`)."""
    return {
        "id": attendee.id,
        "email": attendee.email,
        "name": attendee.name,
        "timeZone": attendee.time_zone,
        "locale": attendee.locale,
        "bookingId": attendee.booking_id,
        "phoneNumber": attendee.phone_number,
        "noShow": attendee.no_show,
    }


def created_json(created: create.Created) -> dict[str, Any]:
    """POST /bookings answers the bare booking, as Cal.com does (not wrapped in "booking")."""
    booking, host = created.booking, created.host
    body = booking_row_json(booking)
    body.update(
        {
            "attendees": [full_attendee_json(a) for a in booking.attendees],
            # Cal.com nulls the organizer's email in this response on purpose.
            "user": {
                "email": None,
                "name": host.name,
                "timeZone": host.time_zone,
                "username": host.username,
            },
            "payment": [_payment_json(p) for p in created.payments],
            "references": [],
            "paymentRequired": created.payment is not None,
            "luckyUsers": created.lucky_users,
            "isDryRun": False,
            "seatReferenceUid": None,
            "videoCallUrl": None,
            "organizationId": None,
            "previousBooking": (
                {
                    "uid": created.previous.uid,
                    "startTime": format_instant(created.previous.start_time),
                    "endTime": format_instant(created.previous.end_time),
                }
                if created.previous
                else None
            ),
        }
    )
    if created.payment is not None:
        body.update(
            {
                "message": "Payment required",
                "paymentUid": created.payment.uid,
                "paymentId": created.payment.id,
            }
        )
    return body


def read_json(
    booking: Booking, host: User | None, event_type: EventType | None = None, *, expand: bool
) -> dict[str, Any]:
    body = BookingRead.model_validate(booking).model_dump(mode="json", by_alias=True)
    body["attendees"] = [
        AttendeeOut.model_validate(a).model_dump(mode="json", by_alias=True)
        for a in booking.attendees
    ]
    body["user"] = (
        {"email": host.email, "name": host.name, "timeZone": host.time_zone, "locale": host.locale}
        if host
        else None
    )
    body["payment"] = [
        {"id": p.id, "success": p.success, "paymentOption": p.payment_option}
        for p in booking.payments
    ]
    if expand:
        body["eventType"] = (
            {"title": event_type.title, "slug": event_type.slug, "team": None}
            if event_type
            else None
        )
    return body


def patched_json(booking: Booking) -> dict[str, Any]:
    # Cal.com's PATCH answers the updated row without attendees, user or payment.
    return BookingRead.model_validate(booking).model_dump(mode="json", by_alias=True)


async def _hosts_and_types(
    session: DbSession, bookings: Sequence[Booking]
) -> tuple[dict[int, User], dict[int, EventType]]:
    user_ids = {b.user_id for b in bookings if b.user_id is not None}
    type_ids = {b.event_type_id for b in bookings if b.event_type_id is not None}
    users = (
        {u.id: u for u in await session.scalars(select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    types = (
        {
            t.id: t
            for t in await session.scalars(
                select(EventType)
                .where(EventType.id.in_(type_ids))
                .execution_options(populate_existing=False)
            )
        }
        if type_ids
        else {}
    )
    return users, types


def _instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_bound(value, ZoneInfo("UTC"), end_of_day=False).instant
    except (ValueError, OverflowError):  # (OverflowError: e.g. 9999-12-31T23:00:00-05:00)
        raise BadRequest(f"custom in '{field}': Invalid ISO Date") from None


@router.get(
    "/bookings",
    summary="List bookings you host (admins: everyone's, `userId` filter)",
    responses=ok(BookingsResponse),
)
async def list_bookings(
    session: DbSession,
    caller: CurrentCaller,
    page: Pagination,
    userId: Annotated[list[int] | None, Query()] = None,
    attendeeEmail: Annotated[
        list[str] | None, Query(json_schema_extra={"items": {"type": "string", "format": "email"}})
    ] = None,
    dateFrom: str | None = None,
    dateTo: str | None = None,
    status: Literal["upcoming"] | None = None,
    sortBy: Literal["createdAt", "updatedAt"] | None = None,
    order: Literal["asc", "desc"] = "asc",
    expand: Annotated[list[Literal["team"]] | None, Query()] = None,
) -> dict[str, Any]:
    emails = []
    for raw in attendeeEmail or []:
        try:
            emails.append(_EMAIL.validate_python(raw).lower())
        except ValidationError:
            raise BadRequest(f"invalid_string in 'attendeeEmail': Invalid email {raw!r}") from None
    bookings = await listing.list_bookings(
        session,
        caller,
        user_ids=userId or [],
        attendee_emails=emails,
        date_from=clock.now() if status == "upcoming" else _instant(dateFrom, "dateFrom"),
        date_to=_instant(dateTo, "dateTo"),
        sort_by=sortBy,
        descending=order == "desc",
        # Cal.com paginates only when both are given; otherwise everything matching is returned.
        page=(page.number, page.take) if page.explicit else None,
    )
    users, types = await _hosts_and_types(session, bookings)
    expand_team = bool(expand)
    return {
        "bookings": [
            read_json(
                b,
                users.get(b.user_id) if b.user_id else None,
                types.get(b.event_type_id) if b.event_type_id else None,
                expand=expand_team,
            )
            for b in bookings
        ]
    }


@router.post(
    "/bookings",
    summary="Book a slot (modern, legacy and seed body forms)",
    responses=ok(BookingCreatedOut),
)
async def create_booking(
    request: Request, session: DbSession, caller: CurrentCaller, body: BookingCreate, mail: Mail
) -> dict[str, Any]:
    reader: CalendarBusyReader = request.app.state.calendar_busy
    created = await with_host_calendars(
        request,
        session,
        lambda external: create.create_booking(session, caller, body, reader, external, mail=mail),
    )
    return created_json(created)


@router.get(
    "/bookings/{id}", summary="A booking, by numeric id or uid", responses=ok(BookingResponse)
)
async def get_booking(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    expand: Annotated[list[Literal["team"]] | None, Query()] = None,
) -> dict[str, Any]:
    booking = await access.get_booking(session, caller, id)
    users, types = await _hosts_and_types(session, [booking])
    return {
        "booking": read_json(
            booking,
            users.get(booking.user_id) if booking.user_id else None,
            types.get(booking.event_type_id) if booking.event_type_id else None,
            expand=bool(expand),
        )
    }


@router.patch(
    "/bookings/{id}",
    summary="Edit a booking (host or admin); overlaps are refused",
    responses=ok(BookingPatchedResponse),
)
async def patch_booking(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    body: BookingPatch,
    mail: Mail,
) -> dict[str, Any]:
    booking = await retry_transaction(
        session, lambda: lifecycle.patch_booking(session, caller, id, body, mail=mail)
    )
    return {"booking": patched_json(booking)}


async def _cancel(
    session: DbSession,
    caller: CurrentCaller,
    key: str,
    cancellation_reason: str | None,
    all_remaining: str | None,
    cancelled_by: str | None,
    mail: MailPolicy | None,
) -> dict[str, Any]:
    if cancelled_by is not None:
        try:
            cancelled_by = _EMAIL.validate_python(cancelled_by)
        except ValidationError:
            raise BadRequest("invalid_string in 'cancelledBy': Invalid email") from None
    result = await retry_transaction(
        session,
        lambda: lifecycle.cancel_booking(
            session,
            caller,
            key,
            reason=cancellation_reason,
            cancelled_by=cancelled_by,
            all_remaining=all_remaining == "true",
            mail=mail,
        ),
    )
    return {
        "success": True,
        "message": (
            "Attendee successfully removed."
            if result.only_removed_attendee
            else "Booking successfully cancelled."
        ),
        "onlyRemovedAttendee": result.only_removed_attendee,
        "bookingId": result.booking.id,
        "bookingUid": result.booking.uid,
    }


@router.delete(
    "/bookings/{id}",
    summary="Cancel a booking (soft: status CANCELLED)",
    responses=ok(BookingCancelledOut),
)
async def delete_booking(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    cancellationReason: str | None = None,
    allRemainingBookings: str | None = None,
    cancelledBy: Annotated[str | None, Query(json_schema_extra={"format": "email"})] = None,
    *,
    mail: Mail,
) -> dict[str, Any]:
    return await _cancel(
        session, caller, id, cancellationReason, allRemainingBookings, cancelledBy, mail
    )


@router.delete(
    "/bookings/{id}/cancel",
    summary="Cancel a booking (same as DELETE /bookings/{id})",
    responses=ok(BookingCancelledOut),
)
async def cancel_booking(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    cancellationReason: str | None = None,
    allRemainingBookings: str | None = None,
    cancelledBy: Annotated[str | None, Query(json_schema_extra={"format": "email"})] = None,
    *,
    mail: Mail,
) -> dict[str, Any]:
    return await _cancel(
        session, caller, id, cancellationReason, allRemainingBookings, cancelledBy, mail
    )


@router.post(
    "/bookings/{id}/confirm",
    summary="Accept or reject a pending booking",
    responses=ok(BookingConfirmedOut),
    dependencies=[before_transaction(calendars_for_confirmation)],
)
async def confirm_booking(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    body: BookingConfirm,
    external: Prepared,
    mail: Mail,
) -> dict[str, Any]:
    booking = await retry_transaction(
        session,
        lambda: lifecycle.confirm_booking(
            session,
            caller,
            id,
            confirmed=body.confirmed,
            reason=body.rejection_reason,
            external=external,
            mail=mail,
        ),
    )
    return {
        "message": "Booking confirmed" if body.confirmed else "Booking rejected",
        "status": booking.status.value,
    }


async def _video_reference(session: DbSession, caller: CurrentCaller, key: str) -> None:
    """Bookable ships no video provider: no booking has a Cal Video reference to read."""
    try:
        booking = await access.get_booking(session, caller, key)
    except NotFound:
        raise NotFound(f"No Booking found with booking id {key}") from None
    has_video = any(r.type == "daily_video" for r in await _references(session, booking.id))
    if not has_video:
        raise NotFound(f"No Cal Video reference found with booking id {booking.id}")
    raise NotFound(
        f"Booking {booking.id} has a daily_video reference, but this server has no video "
        "provider to ask for recordings"
    )


async def _references(session: DbSession, booking_id: int) -> list[BookingReference]:
    return list(
        await session.scalars(
            select(BookingReference).where(BookingReference.booking_id == booking_id)
        )
    )


@router.get(
    "/bookings/{id}/recordings",
    summary="Video recordings (none: no video provider)",
    responses=ok(list[dict[str, Any]]),
)
async def get_recordings(session: DbSession, caller: CurrentCaller, id: str) -> list[Any]:
    await _video_reference(session, caller, id)
    return []


@router.get(
    "/bookings/{id}/transcripts",
    summary="Video transcripts (none: no video provider)",
    responses=ok(list[dict[str, Any]]),
)
async def get_transcripts(session: DbSession, caller: CurrentCaller, id: str) -> list[Any]:
    await _video_reference(session, caller, id)
    return []


@router.get(
    "/bookings/{id}/transcripts/{recordingId}",
    summary="A recording's transcript (none: no video provider)",
    responses=ok(list[dict[str, Any]]),
)
async def get_transcript(
    session: DbSession,
    caller: CurrentCaller,
    id: str,
    recordingId: str,
) -> list[Any]:
    await _video_reference(session, caller, id)
    return []


async def _managed_booking(session: DbSession, caller: CurrentCaller, key: str) -> Booking:
    """A booking the caller manages (an attendee sees the booking, not its hosts' calendars
    or the other attendees' emails)."""
    booking = await access.get_booking(session, caller, key)
    event_type = (
        await session.get(EventType, booking.event_type_id) if booking.event_type_id else None
    )
    if not await access.manages(session, caller, booking, event_type):
        raise Forbidden("You are not authorized")
    return booking


@router.get(
    "/bookings/{id}/calendar-events",
    summary="The booking's event in each destination calendar, and the state of its writes "
    "(Bookable extension)",
    responses=ok(envelope("CalendarEventsResponse", calendarEvents=list[CalendarEventOut])),
)
async def get_calendar_events(session: DbSession, caller: CurrentCaller, id: str) -> dict[str, Any]:
    booking = await _managed_booking(session, caller, id)
    rows = await booking_calendar_events(session, booking)
    return {
        "calendarEvents": [
            CalendarEventOut(
                id=row.id,
                uid=row.uid,
                booking_id=row.booking_id,
                user_id=row.user_id,
                integration=row.integration,
                credential_id=row.credential_id,
                external_calendar_id=row.calendar_url,
                action="write" if row.wanted else "delete",
                status=str(row.status),
                sequence=row.sequence,
                attempts=row.attempts,
                last_error=row.last_error,
                last_attempt_at=row.last_attempt_at,
                next_attempt_at=(
                    row.next_attempt_at if row.status == CalendarEventStatus.PENDING else None
                ),
                done_at=row.done_at,
                event_url=row.event_url,
            ).model_dump(mode="json", by_alias=True)
            for row in rows
        ]
    }


@router.get(
    "/bookings/{id}/emails",
    summary="The emails sent about the booking, and the state of each (Bookable extension)",
    responses=ok(envelope("BookingEmailsResponse", emails=list[BookingEmailOut])),
)
async def get_emails(session: DbSession, caller: CurrentCaller, id: str) -> dict[str, Any]:
    booking = await _managed_booking(session, caller, id)
    return {
        "emails": [
            BookingEmailOut(
                id=row.id,
                kind=row.kind,
                recipient=row.recipient,
                subject=row.subject,
                message_id=f"<{row.message_id}>",
                status=str(row.status),
                attempts=row.attempts,
                last_error=row.last_error,
                next_attempt_at=(
                    row.next_attempt_at if row.status == EmailStatus.PENDING else None
                ),
                sent_at=row.sent_at,
                created_at=row.created_at,
            ).model_dump(mode="json", by_alias=True)
            for row in await booking_emails(session, booking)
        ]
    }


@router.post("/no-show", summary="Mark attendees or the host as no-show", responses=ok(NoShowOut))
async def no_show(session: DbSession, caller: CurrentCaller, body: NoShowBody) -> dict[str, Any]:
    booking, changed = await lifecycle.mark_no_show(
        session,
        caller,
        body.booking_uid,
        [(a.email, a.no_show) for a in body.attendees] if body.attendees is not None else None,
        body.no_show_host,
    )
    return {
        "message": "No-show status updated",
        "attendees": [{"email": a.email, "noShow": bool(a.no_show)} for a in changed],
        "noShowHost": bool(booking.no_show_host),
    }
