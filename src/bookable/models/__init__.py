"""SQLAlchemy tables, one module per domain. Importing this package registers them all."""

from bookable.models.api_keys import ApiKey
from bookable.models.base import Base
from bookable.models.bookings import (
    Attendee,
    Booking,
    BookingHost,
    BookingReference,
    BookingStatus,
    Payment,
)
from bookable.models.calendars import (
    CalendarEvent,
    CalendarEventStatus,
    Credential,
    DestinationCalendar,
    SelectedCalendar,
)
from bookable.models.emails import EmailStatus, OutboundEmail
from bookable.models.event_types import EventType, EventTypeCustomInput, Host
from bookable.models.idempotency import IdempotencyKey
from bookable.models.schedules import Availability, Schedule
from bookable.models.teams import Membership, MembershipRole, Team
from bookable.models.users import User, UserRole
from bookable.models.webhooks import Webhook, WebhookDelivery, WebhookEvent, WebhookEventStatus

__all__ = [
    "ApiKey",
    "Attendee",
    "Availability",
    "Base",
    "Booking",
    "BookingHost",
    "BookingReference",
    "BookingStatus",
    "CalendarEvent",
    "CalendarEventStatus",
    "Credential",
    "DestinationCalendar",
    "EmailStatus",
    "EventType",
    "EventTypeCustomInput",
    "Host",
    "IdempotencyKey",
    "Membership",
    "MembershipRole",
    "OutboundEmail",
    "Payment",
    "Schedule",
    "SelectedCalendar",
    "Team",
    "User",
    "UserRole",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookEventStatus",
]
