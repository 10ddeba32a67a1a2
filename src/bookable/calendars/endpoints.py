"""HTTP for calendars: /credentials, /credential-sync, /connected-calendars,
/selected-calendars, /destination-calendars. Network work (connecting, listing) runs in each
route's preflight (`calendars/preflights.py`, `calendars/sync.py`), before the request's
transaction."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import RootModel
from sqlalchemy import select

from bookable.calendars import destinations, preflights, service, sync
from bookable.calendars.apps import INTEGRATIONS
from bookable.calendars.connections import Connected
from bookable.calendars.schemas import (
    ConnectionOut,
    CredentialCreate,
    CredentialOut,
    CredentialUpdate,
    DestinationCalendarCreate,
    DestinationCalendarOut,
    DestinationCalendarUpdate,
    SelectedCalendarCreate,
    SelectedCalendarOut,
    SelectedCalendarUpdate,
    SyncChanged,
    SyncCreate,
    SyncCreated,
    SyncCredentialOut,
    SyncOffResponse,
    SyncUpdate,
    credential_json,
    destination_json,
    selected_json,
)
from bookable.core.auth import CurrentCaller
from bookable.core.db import DbSession
from bookable.core.errors import BadRequest, NotFound
from bookable.core.idempotency import IdempotentRoute
from bookable.core.openapi import MessageResponse, envelope, ok
from bookable.core.preflight import Prepared, before_transaction
from bookable.models import Credential

router = APIRouter(tags=["calendars"], route_class=IdempotentRoute)

CredentialId = Annotated[int, Path(description="The credential's id")]
# Cal.com's check order: 403 (not an admin), then 501 when syncing is off, then 401 (secret).
SYNC_OFF: dict[int | str, Any] = {
    501: {
        "model": SyncOffResponse,
        "description": "Credential syncing is not enabled on this server "
        "(BOOKABLE_CREDENTIAL_SYNC_SECRET and BOOKABLE_CREDENTIAL_SYNC_ENCRYPTION_KEY)",
    }
}
SelectedId = Annotated[
    str,
    Path(description="`{userId}_{integration}_{externalId}`; the externalId may be "
         "percent-encoded or not",
         # A prefix: the OpenAPI post-processing appends "no control characters" for the rest.
         json_schema_extra={
             "pattern": f"^[1-9][0-9]{{0,8}}_({'|'.join(INTEGRATIONS)})_[^\\x00-\\x1f\\x7f]"
         }),
]  # fmt: skip
UserIds = Annotated[list[int] | None, Query(description="Admins only; may repeat")]

CredentialsResponse = envelope("CredentialsResponse", credentials=list[CredentialOut])
CredentialResponse = envelope("CredentialResponse", credential=CredentialOut)
SyncListResponse = envelope("SyncCredentialsResponse", credentials=list[SyncCredentialOut])
SyncCreatedResponse = envelope("SyncCreatedResponse", credential=SyncCreated)
SyncChangedResponse = envelope("SyncChangedResponse", credential=SyncChanged)
SyncDeletedResponse = envelope("SyncDeletedResponse", credentialDeleted=SyncChanged)
SelectedListResponse = envelope(
    "SelectedCalendarsResponse", selected_calendars=list[SelectedCalendarOut]
)
SelectedResponse = envelope("SelectedCalendarResponse", selected_calendar=SelectedCalendarOut)
SelectedCreatedResponse = envelope(
    "SelectedCalendarCreatedResponse", selected_calendar=SelectedCalendarOut, message=str
)
DestinationListResponse = envelope(
    "DestinationCalendarsResponse", destinationCalendars=list[DestinationCalendarOut]
)
DestinationResponse = envelope(
    "DestinationCalendarResponse", destinationCalendar=DestinationCalendarOut
)
DestinationCreatedResponse = envelope(
    "DestinationCalendarCreatedResponse", destinationCalendar=DestinationCalendarOut, message=str
)
DestinationId = Annotated[int, Path(description="The destination calendar's id")]


class ConnectedCalendarsResponse(RootModel[list[ConnectionOut]]):
    pass


def _connected(prepared: Any) -> Any:
    # The preflight returns None only for a body the endpoint's validation already refused.
    if prepared is None:
        raise BadRequest("Request body is missing")
    return prepared


# --- /credentials --------------------------------------------------------------------------------


@router.get(
    "/credentials",
    summary="List calendar credentials (your own, or anyone's for admins); never the key",
    responses=ok(CredentialsResponse),
)
async def list_credentials(
    session: DbSession, caller: CurrentCaller, userId: UserIds = None
) -> dict[str, Any]:
    credentials = await service.list_credentials(session, caller, userId or [])
    return {"credentials": [credential_json(c) for c in credentials]}


@router.post(
    "/credentials",
    summary="Connect a calendar account (CalDAV, Apple, ICS feed): it must log in and list "
    "its calendars first; the same account again updates the first credential",
    responses=ok(CredentialResponse),
    dependencies=[before_transaction(preflights.connect_new_credential)],
)
async def create_credential(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    body: CredentialCreate,
    prepared: Prepared,
) -> dict[str, Any]:
    connected: Connected = _connected(prepared)
    settings = body.settings.model_dump(by_alias=True) if body.settings else None
    credential = await service.save_connected(
        session,
        body.user_id or caller.user_id,
        connected,
        request.app.state.encryptor,
        settings,
    )
    return {"credential": credential_json(credential)}


@router.get(
    "/credentials/{credentialId}",
    summary="Get a calendar credential (never its key)",
    responses=ok(CredentialResponse),
)
async def get_credential(
    session: DbSession, caller: CurrentCaller, credentialId: CredentialId
) -> dict[str, Any]:
    return {
        "credential": credential_json(await service.get_credential(session, caller, credentialId))
    }


@router.patch(
    "/credentials/{credentialId}",
    summary="Change a credential's key (it must connect first) or busy settings; "
    "`invalid: false` re-connects with the stored key",
    responses=ok(CredentialResponse),
    dependencies=[before_transaction(preflights.reconnect_credential)],
)
async def update_credential(
    request: Request,
    session: DbSession,
    caller: CurrentCaller,
    credentialId: CredentialId,
    body: CredentialUpdate,
    prepared: Prepared,
) -> dict[str, Any]:
    if body.invalid is True:
        raise BadRequest(
            "custom in 'invalid': only false is accepted, and only when the credential "
            "connects again"
        )
    credential = await service.update_credential(
        session,
        caller,
        credentialId,
        connected=prepared,
        encryptor=request.app.state.encryptor,
        settings=body.settings.model_dump(by_alias=True) if body.settings else None,
    )
    return {"credential": credential_json(credential)}


@router.delete(
    "/credentials/{credentialId}",
    summary="Delete a credential and its selected calendars",
    responses=ok(MessageResponse),
)
async def delete_credential(
    session: DbSession, caller: CurrentCaller, credentialId: CredentialId
) -> dict[str, Any]:
    await service.delete_credential(session, caller, credentialId)
    return {"message": f"Credential with id: {credentialId} deleted successfully"}


# --- /credential-sync (Cal.com) ------------------------------------------------------------------

SyncUserId = Annotated[str | None, Query(description="The user (required)")]
SyncCredentialId = Annotated[str | None, Query(description="The credential (required)")]
SyncFlag = Annotated[str | None, Query(description='`"true"` only')]


@router.get(
    "/credential-sync",
    summary="List a user's credentials (admins; credential sync enabled and its secret header)",
    responses=ok(SyncListResponse) | SYNC_OFF,
    dependencies=[sync.sync_access()],
)
async def sync_list(
    request: Request,
    session: DbSession,
    userId: SyncUserId = None,
    appSlug: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    owner_id = sync.query_user_id(request)
    query = select(Credential).where(Credential.user_id == owner_id)
    if appSlug is not None:
        query = query.where(Credential.app_id == appSlug)
    credentials = await session.scalars(query.order_by(Credential.id))
    return {"credentials": [{"id": c.id, "appId": c.app_id, "appSlug": c.app_id}
                            for c in credentials]}  # fmt: skip


@router.post(
    "/credential-sync",
    summary="Push a credential for a user; `encryptedKey` is hex(iv):hex(ct), AES-256-CBC",
    responses=ok(SyncCreatedResponse) | SYNC_OFF,
    dependencies=[sync.sync_access(), before_transaction(sync.connect_synced)],
)
async def sync_create(
    request: Request,
    session: DbSession,
    prepared: Prepared,
    body: SyncCreate | None = None,
    userId: SyncUserId = None,
    createSelectedCalendar: SyncFlag = None,
    createDestinationCalendar: SyncFlag = None,
) -> dict[str, Any]:
    sync.query_user_id(request)
    if body is None:
        raise BadRequest("Request body is missing")
    ready: sync.SyncPrepared = _connected(prepared)
    credential = await service.save_connected(
        session, ready.owner_id, ready.connected, request.app.state.encryptor, None
    )
    if ready.select_external_id is not None:
        found = await service.find_selected(
            session, ready.owner_id, credential.type, ready.select_external_id
        )
        if found is None:  # skipDuplicates, as Cal.com
            await service.create_selected(
                session, ready.owner_id, credential.type, ready.select_external_id, credential.id
            )
    if ready.destination is not None:
        await destinations.create_user_destination(
            session, ready.owner_id, credential.type, ready.destination, credential.id
        )
    return {"credential": {"id": credential.id, "type": credential.type}}


@router.patch(
    "/credential-sync",
    summary="Replace a synced credential's key (it must connect first)",
    responses=ok(SyncChangedResponse) | SYNC_OFF,
    dependencies=[sync.sync_access(), before_transaction(sync.reconnect_synced)],
)
async def sync_update(
    request: Request,
    session: DbSession,
    prepared: Prepared,
    body: SyncUpdate | None = None,
    userId: SyncUserId = None,
    credentialId: SyncCredentialId = None,
) -> dict[str, Any]:
    owner_id = sync.query_user_id(request)
    credential_id = sync.query_credential_id(request)
    if body is None:
        raise BadRequest("Request body is missing")
    ready: sync.SyncPrepared = _connected(prepared)
    credential = await sync.synced_credential(request, owner_id, credential_id)
    credential = await service.update_credential(
        session,
        service_admin(request),
        credential.id,
        connected=ready.connected,
        encryptor=request.app.state.encryptor,
        settings=None,
    )
    return {"credential": {"id": credential.id, "appId": credential.app_id}}


@router.delete(
    "/credential-sync",
    summary="Delete a synced credential (and its selected calendars)",
    responses=ok(SyncDeletedResponse) | SYNC_OFF,
    dependencies=[sync.sync_access()],
)
async def sync_delete(
    request: Request,
    session: DbSession,
    userId: SyncUserId = None,
    credentialId: SyncCredentialId = None,
) -> dict[str, Any]:
    owner_id = sync.query_user_id(request)
    credential_id = sync.query_credential_id(request)
    credential = await session.scalar(
        select(Credential).where(Credential.id == credential_id, Credential.user_id == owner_id)
    )
    if credential is None:
        raise NotFound(service.CREDENTIAL_NOT_FOUND)
    deleted = {"id": credential.id, "appId": credential.app_id}
    await session.delete(credential)
    await session.flush()
    return {"credentialDeleted": deleted}


def service_admin(request: Request) -> Any:
    """The caller (an admin: the access check made sure)."""
    return request.state.caller


# --- /connected-calendars ------------------------------------------------------------------------


@router.get(
    "/connected-calendars",
    summary="Every calendar of every credential, listed live; a credential that cannot be "
    "reached is listed with its `error`. Never writes.",
    responses=ok(ConnectedCalendarsResponse),
    dependencies=[before_transaction(preflights.connected_calendars)],
)
async def connected_calendars(prepared: Prepared, userId: UserIds = None) -> list[dict[str, Any]]:
    listing: list[dict[str, Any]] = prepared
    return listing


# --- /selected-calendars -------------------------------------------------------------------------


@router.get(
    "/selected-calendars",
    summary="List selected calendars (your own, or anyone's for admins)",
    responses=ok(SelectedListResponse),
)
async def list_selected(
    session: DbSession, caller: CurrentCaller, userId: UserIds = None
) -> dict[str, Any]:
    rows = await service.list_selected(session, caller, userId or [])
    return {"selected_calendars": [selected_json(r) for r in rows]}


@router.post(
    "/selected-calendars",
    summary="Select a calendar whose busy times count; it must exist in the caller's credential",
    responses=ok(SelectedCreatedResponse),
    dependencies=[before_transaction(preflights.check_new_selected)],
)
async def create_selected(
    session: DbSession,
    caller: CurrentCaller,
    body: SelectedCalendarCreate,
    prepared: Prepared,
) -> dict[str, Any]:
    found: preflights.CalendarFound = _connected(prepared)
    row = await service.create_selected(
        session, found.owner_id, body.integration, found.external_id, found.credential_id
    )
    return {
        "selected_calendar": selected_json(row),
        "message": "Selected Calendar created successfully",
    }


@router.get(
    "/selected-calendars/{id:path}",
    summary="Get a selected calendar by `{userId}_{integration}_{externalId}`",
    responses=ok(SelectedResponse),
)
async def get_selected(session: DbSession, caller: CurrentCaller, id: SelectedId) -> dict[str, Any]:
    return {"selected_calendar": selected_json(await service.get_selected(session, caller, id))}


@router.patch(
    "/selected-calendars/{id:path}",
    summary="Change the credential that reads a selected calendar (checked live)",
    responses=ok(SelectedResponse),
    dependencies=[before_transaction(preflights.check_selected_update)],
)
async def update_selected(
    session: DbSession,
    caller: CurrentCaller,
    id: SelectedId,
    body: SelectedCalendarUpdate,
    prepared: Prepared,
) -> dict[str, Any]:
    found: preflights.CalendarFound | None = prepared
    row = await service.update_selected(session, caller, id, found.credential_id if found else None)
    return {"selected_calendar": selected_json(row)}


@router.delete(
    "/selected-calendars/{id:path}",
    summary="Unselect a calendar",
    responses=ok(MessageResponse),
)
async def delete_selected(
    session: DbSession, caller: CurrentCaller, id: SelectedId
) -> dict[str, Any]:
    await service.delete_selected(session, caller, id)
    return {"message": f"Selected Calendar with id: {id} deleted successfully"}


# --- /destination-calendars ----------------------------------------------------------------------


@router.get(
    "/destination-calendars",
    summary="List destination calendars: your own and your event types' (team ones where you "
    "are OWNER/ADMIN); admins everyone's, or those of `userId`",
    responses=ok(DestinationListResponse),
)
async def list_destinations(
    session: DbSession, caller: CurrentCaller, userId: UserIds = None
) -> dict[str, Any]:
    rows = await destinations.list_destinations(session, caller, userId or [])
    return {"destinationCalendars": [destination_json(r) for r in rows]}


@router.post(
    "/destination-calendars",
    summary="Choose the calendar bookings are written to, for you or one event type you manage; "
    "it must be a writable calendar of the owner's credential (checked live). `bookingId` is "
    "accepted and ignored.",
    responses=ok(DestinationCreatedResponse),
    dependencies=[before_transaction(preflights.check_new_destination)],
)
async def create_destination(
    session: DbSession,
    caller: CurrentCaller,
    body: DestinationCalendarCreate,
    prepared: Prepared,
) -> dict[str, Any]:
    choice: destinations.CalendarChoice = _connected(prepared)
    row = await destinations.create_destination(session, caller, body, choice)
    return {
        "destinationCalendar": destination_json(row),
        "message": "Destination calendar created successfully",
    }


@router.get(
    "/destination-calendars/{id}",
    summary="Get a destination calendar",
    responses=ok(DestinationResponse),
)
async def get_destination(
    session: DbSession, caller: CurrentCaller, id: DestinationId
) -> dict[str, Any]:
    row = await destinations.get_destination(session, caller, id)
    return {"destinationCalendar": destination_json(row)}


@router.patch(
    "/destination-calendars/{id}",
    summary="Change a destination calendar (`integration` and `externalId` together, checked "
    "live), its credential or event type; it stays a user's or an event type's",
    responses=ok(DestinationResponse),
    dependencies=[before_transaction(preflights.check_destination_update)],
)
async def update_destination(
    session: DbSession,
    caller: CurrentCaller,
    id: DestinationId,
    body: DestinationCalendarUpdate,
    prepared: Prepared,
) -> dict[str, Any]:
    choice: destinations.CalendarChoice | None = prepared
    row = await destinations.update_destination(session, caller, id, body, choice)
    return {"destinationCalendar": destination_json(row)}


@router.delete(
    "/destination-calendars/{id}",
    summary="Remove a destination calendar",
    responses=ok(MessageResponse),
)
async def delete_destination(
    session: DbSession, caller: CurrentCaller, id: DestinationId
) -> dict[str, Any]:
    await destinations.delete_destination(session, caller, id)
    return {"message": "OK, Destination Calendar removed successfully"}
