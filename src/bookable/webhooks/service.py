"""Use-cases on webhook subscriptions. Every list and lookup starts from `readable(caller)`.

Who may see a webhook (Cal.com's per-id middleware, widened as webhooks.md §1 suggests): its
user; whoever may see its event type (the event type's owner; for a team event type, every
accepted member of the team); system admins. Who may change or delete it: its user; whoever may
change its event type (`event_types.service.editable_event_type`: the owner, or for a team event
type the team's accepted OWNER/ADMIN, as for the event type itself and its custom inputs); system
admins. The same right is needed to attach a webhook to an event type.

A webhook with an event type has no user unless one is named (Cal.com: it fires for that event
type's bookings only); one without an event type belongs to the caller (admins: `userId`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookable.core.auth import Caller, acting_user_id
from bookable.core.errors import BadRequest, Conflict, Forbidden, NotFound
from bookable.core.schemas import is_db_id
from bookable.event_types import service as event_types
from bookable.models import EventType, User, Webhook, WebhookDelivery, WebhookEvent
from bookable.webhooks import outbox
from bookable.webhooks.schemas import (
    WEBHOOK_VERSION,
    DeliveryOut,
    WebhookCreate,
    WebhookUpdate,
)
from bookable.webhooks.triggers import WebhookTrigger
from bookable.webhooks.urls import subscriber_url_problem


def readable(caller: Caller) -> Select[tuple[Webhook]]:
    """The webhooks a caller may see (every one for a system-wide admin)."""
    query = select(Webhook)
    if caller.is_admin:
        return query
    visible_event_types = event_types.readable(caller).with_only_columns(EventType.id)
    return query.where(
        (Webhook.user_id == caller.user_id) | Webhook.event_type_id.in_(visible_event_types)
    )


def _belongs_to(user_ids: list[int]) -> ColumnElement[bool]:
    """Webhooks of these users: their own and those on their personal event types."""
    their_event_types = select(EventType.id).where(EventType.user_id.in_(user_ids))
    return Webhook.user_id.in_(user_ids) | Webhook.event_type_id.in_(their_event_types)


def parse_id(raw: str) -> str:
    """The canonical form of a webhook id (a UUID); anything else is a 400, not a lookup."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadRequest("invalid_string in 'id': Invalid uuid") from None


async def list_webhooks(
    session: AsyncSession, caller: Caller, user_ids: list[int]
) -> list[Webhook]:
    query = readable(caller)
    if user_ids:
        # Naming only yourself asks for nothing you can't see; anyone else needs an admin.
        if not caller.is_admin and set(user_ids) != {caller.user_id}:
            raise Forbidden("ADMIN required")
        query = query.where(_belongs_to([i for i in user_ids if is_db_id(i)]))
    return list(await session.scalars(query.order_by(Webhook.created_at, Webhook.id)))


async def get_webhook(session: AsyncSession, caller: Caller, webhook_id: str) -> Webhook:
    """One readable webhook. A non-admin gets 403 whether it is someone else's or missing."""
    webhook = await session.scalar(readable(caller).where(Webhook.id == parse_id(webhook_id)))
    if webhook is None:
        if caller.is_admin:
            raise NotFound("Webhook not found")
        raise Forbidden()
    return webhook


async def _check_editable(session: AsyncSession, caller: Caller, webhook: Webhook) -> None:
    if caller.is_admin or webhook.user_id == caller.user_id:
        return
    if webhook.event_type_id is None:  # readable() only lets such a webhook's user get here
        raise Forbidden()
    # Plain members of the event type's team read its webhooks but don't change them.
    await event_types.editable_event_type(session, caller, webhook.event_type_id)


async def _check_event_type(session: AsyncSession, caller: Caller, event_type_id: int) -> None:
    """The caller may attach webhooks to this event type."""
    if caller.is_admin:
        if await session.get(EventType, event_type_id) is None:
            raise NotFound(f"Event type with id: {event_type_id} not found")
        return
    try:
        await event_types.editable_event_type(session, caller, event_type_id)
    except Forbidden:
        # Missing, someone else's, or a team's the caller doesn't manage: one answer for all.
        raise Forbidden(
            f"Forbidden: event type {event_type_id} (`eventTypeId`) is not one you manage"
        ) from None


async def _check_user(session: AsyncSession, caller: Caller, user_id: int) -> int:
    owner = acting_user_id(caller, user_id)
    if owner != caller.user_id and await session.get(User, owner) is None:
        raise NotFound(f"User with id: {owner} not found")
    return owner


def _check_url(url: str, allow_private: bool) -> None:
    problem = subscriber_url_problem(url, allow_private=allow_private)
    if problem is not None:
        raise BadRequest(f"custom in 'subscriberUrl': {problem}")


def _triggers(body: WebhookCreate | WebhookUpdate) -> list[WebhookTrigger] | None:
    """`eventTriggers`, or Pipedream's `triggers`; both at once must name the same triggers."""
    if body.event_triggers is not None and body.triggers is not None:
        if set(body.event_triggers) != set(body.triggers):
            raise BadRequest(
                "custom in 'triggers': differs from 'eventTriggers' (an alias of it); send one"
            )
    return body.event_triggers if body.event_triggers is not None else body.triggers


async def _flush(session: AsyncSession, webhook: Webhook) -> None:
    # No error here may carry the row's values (the secret) into a log: answer, don't re-raise.
    # Read now: after a failed flush the row can't be loaded.
    user_id, event_type_id = webhook.user_id, webhook.event_type_id
    try:
        await session.flush()
    except IntegrityError as error:
        detail = str(error.orig)
        if "subscriber_url" in detail:
            # One URL per user (uq_webhooks_user_id_subscriber_url) and one per event type
            # (uq_webhooks_event_type_id_subscriber_url); SQLite names the columns, PostgreSQL
            # the constraint: both mention event_type_id only for the second.
            by_event_type = "event_type_id" in detail
            owner = f"event type {event_type_id}" if by_event_type else f"user {user_id}"
            raise Conflict(
                "custom in 'subscriberUrl': a webhook with this subscriberUrl already exists "
                f"for {owner}"
            ) from None
        raise Conflict("The webhook's user or event type no longer exists") from None


async def create_webhook(
    session: AsyncSession, caller: Caller, body: WebhookCreate, *, allow_private: bool
) -> Webhook:
    triggers = _triggers(body)
    if triggers is None:
        raise BadRequest("invalid_type in 'eventTriggers': Required")
    _check_url(body.subscriber_url, allow_private)
    user_id = None if body.user_id is None else await _check_user(session, caller, body.user_id)
    if body.event_type_id is not None:
        await _check_event_type(session, caller, body.event_type_id)
    elif user_id is None:
        user_id = caller.user_id
    webhook = Webhook(
        id=str(uuid.uuid4()),
        user_id=user_id,
        event_type_id=body.event_type_id,
        subscriber_url=body.subscriber_url,
        payload_template=body.payload_template,
        active=body.active,
        event_triggers=[trigger.value for trigger in triggers],
        app_id=body.app_id,
        secret=body.secret,
        version=body.version or WEBHOOK_VERSION,
        time=body.time,
        time_unit=body.time_unit,
    )
    session.add(webhook)
    await _flush(session, webhook)
    # MEETING_STARTED/ENDED for the upcoming bookings it covers (Cal.com back-fills them too).
    await outbox.sync_meeting_events(session, webhook)
    return webhook


async def update_webhook(
    session: AsyncSession,
    caller: Caller,
    webhook_id: str,
    body: WebhookUpdate,
    *,
    allow_private: bool,
) -> Webhook:
    webhook = await get_webhook(session, caller, webhook_id)
    await _check_editable(session, caller, webhook)
    sent = body.model_fields_set
    triggers = _triggers(body)
    if triggers is not None:
        webhook.event_triggers = [trigger.value for trigger in triggers]
    if body.subscriber_url is not None:
        _check_url(body.subscriber_url, allow_private)
        webhook.subscriber_url = body.subscriber_url
    if body.user_id is not None and body.user_id != webhook.user_id:
        webhook.user_id = await _check_user(session, caller, body.user_id)
    if body.event_type_id is not None and body.event_type_id != webhook.event_type_id:
        # Moving a webhook onto an event type takes the same right as creating one there.
        await _check_event_type(session, caller, body.event_type_id)
        webhook.event_type_id = body.event_type_id
    if body.active is not None:
        webhook.active = body.active
    if body.version is not None:
        webhook.version = body.version
    for field in ("payload_template", "secret", "app_id", "time", "time_unit"):
        if field in sent:
            setattr(webhook, field, getattr(body, field))
    await _flush(session, webhook)
    if sent & {"event_triggers", "triggers", "event_type_id", "user_id", "active"}:
        # Plan MEETING_* events it now wants, drop pending ones it no longer wants.
        await outbox.sync_meeting_events(session, webhook)
    return webhook


async def delete_webhook(session: AsyncSession, caller: Caller, webhook_id: str) -> str:
    """Delete the webhook (its pending events and delivery log go with it); its id."""
    webhook = await get_webhook(session, caller, webhook_id)
    await _check_editable(session, caller, webhook)
    await session.delete(webhook)
    await session.flush()
    return webhook.id


@dataclass(frozen=True, slots=True)
class Page:
    take: int
    page: int


async def list_deliveries(
    session: AsyncSession, caller: Caller, webhook_id: str, page: Page
) -> list[DeliveryOut]:
    """The webhook's delivery attempts, newest first, with each one's event state."""
    webhook = await get_webhook(session, caller, webhook_id)
    query = (
        select(WebhookDelivery, WebhookEvent.trigger, WebhookEvent.status)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.started_at.desc(), WebhookDelivery.id.desc())
        .limit(page.take)
        .offset((page.page - 1) * page.take)
    )
    return [
        DeliveryOut(
            id=delivery.id,
            event_id=delivery.event_id,
            trigger=trigger,
            attempt=delivery.attempt,
            started_at=delivery.started_at,
            duration_ms=delivery.duration_ms,
            status_code=delivery.status_code,
            ok=delivery.ok,
            response_excerpt=delivery.response_excerpt,
            error=delivery.error,
            event_status=str(status),
        )
        for delivery, trigger, status in (await session.execute(query)).all()
    ]
