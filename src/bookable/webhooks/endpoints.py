"""HTTP for webhook subscriptions: `/webhooks`, and the same routes under `/hooks` (Cal.com
serves both; n8n's Cal.com node calls `/hooks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.core.pagination import Page, paging
from bookable.models import Webhook
from bookable.webhooks import service
from bookable.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookOut, WebhookUpdate

router = APIRouter(tags=["webhooks"], route_class=IdempotentRoute)
# Documented only: the service answers a malformed id itself.
WebhookId = Annotated[str, Path(json_schema_extra={"format": "uuid"})]

PREFIXES = ("/webhooks", "/hooks")
MAX_TAKE = 200


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    return WebhookOut.model_validate(webhook).model_dump(mode="json", by_alias=True)


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhook_allow_private_targets)


async def list_webhooks(
    session: DbSession,
    caller: CurrentCaller,
    userId: Annotated[list[int] | None, Query()] = None,
) -> dict[str, Any]:
    webhooks = await service.list_webhooks(session, caller, userId or [])
    return {"webhooks": [webhook_json(w) for w in webhooks]}


async def create_webhook(
    request: Request, session: DbSession, caller: CurrentCaller, body: WebhookCreate
) -> dict[str, Any]:
    webhook = webhook_json(
        await service.create_webhook(session, caller, body, allow_private=_allow_private(request))
    )
    # `data` beside `webhook`: one version of Pipedream's Cal.com source reads the new id there.
    return {"webhook": webhook, "message": "Webhook created successfully", "data": webhook}


async def get_webhook(session: DbSession, caller: CurrentCaller, id: WebhookId) -> dict[str, Any]:
    return {"webhook": webhook_json(await service.get_webhook(session, caller, id))}


async def update_webhook(
    request: Request, session: DbSession, caller: CurrentCaller, id: WebhookId, body: WebhookUpdate
) -> dict[str, Any]:
    webhook = await service.update_webhook(
        session, caller, id, body, allow_private=_allow_private(request)
    )
    return {"webhook": webhook_json(webhook)}


async def delete_webhook(
    session: DbSession, caller: CurrentCaller, id: WebhookId
) -> dict[str, Any]:
    deleted = await service.delete_webhook(session, caller, id)
    return {"message": f"Webhook with id: {deleted} deleted successfully"}


async def list_deliveries(
    session: DbSession,
    caller: CurrentCaller,
    id: WebhookId,
    page: Annotated[Page, paging(default_take=50, max_take=MAX_TAKE)],
) -> dict[str, Any]:
    deliveries = await service.list_deliveries(
        session, caller, id, service.Page(page.take, page.number)
    )
    return {"deliveries": [d.model_dump(mode="json", by_alias=True) for d in deliveries]}


WebhookResponse = envelope("WebhookResponse", webhook=WebhookOut)
RESPONSES: dict[Callable[..., Any], Any] = {
    list_webhooks: envelope("WebhooksResponse", webhooks=list[WebhookOut]),
    create_webhook: envelope(
        "WebhookCreatedResponse", webhook=WebhookOut, message=str, data=WebhookOut
    ),
    get_webhook: WebhookResponse,
    update_webhook: WebhookResponse,
    delete_webhook: MessageResponse,
    list_deliveries: envelope("DeliveriesResponse", deliveries=list[DeliveryOut]),
}

ROUTES: tuple[tuple[str, str, Callable[..., Any], str], ...] = (
    ("GET", "", list_webhooks, "List your webhooks (admins: anyone's, `userId`)"),
    ("POST", "", create_webhook, "Subscribe a URL to booking events"),
    ("GET", "/{id}", get_webhook, "Get a webhook"),
    ("PATCH", "/{id}", update_webhook, "Edit a webhook"),
    ("DELETE", "/{id}", delete_webhook, "Delete a webhook"),
    (
        "GET",
        "/{id}/deliveries",
        list_deliveries,
        "Latest delivery attempts of a webhook, newest first (Bookable extension)",
    ),
)

for prefix in PREFIXES:
    for method, path, endpoint, summary in ROUTES:
        router.add_api_route(
            prefix + path,
            endpoint,
            methods=[method],
            summary=summary,
            responses=ok(RESPONSES[endpoint]),
            # One documented copy; `/hooks` is the same API under Cal.com's other name.
            include_in_schema=prefix == "/webhooks",
            operation_id=None if prefix == "/webhooks" else f"hooks_{endpoint.__name__}",
        )
