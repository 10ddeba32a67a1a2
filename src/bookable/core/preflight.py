"""Work a request must do before its transaction begins: network calls (calendar servers).

A writing request opens its transaction early: `claim_idempotency_key` (every POST) and the
session dependency begin it before the endpoint runs, and on SQLite that transaction holds the
database's write lock (BEGIN IMMEDIATE) and the process's write gate. A network call made there
would hold them for as long as a remote server takes to answer. So a route that needs a remote
answer declares its preflight as a route dependency:

    @router.post("/credentials", dependencies=[before_transaction(connect_account)])
    async def create_credential(..., prepared: Prepared) -> ...

FastAPI solves route dependencies first and in order, and `IdempotentRoute` appends its claim
after them, so the preflight runs after authentication (and rate limiting) and before anything
opens the request's transaction. A preflight reads the raw request itself (``request.json()``,
query and path parameters) and opens its own short sessions if it must read rows; it returns
None when the request is malformed, and the endpoint's usual validation answers the 400.

A read-only route whose first query already tells whether a remote call is needed may skip the
preflight (its own session and a second lookup) and instead commit the request's transaction
before the call: GET /slots does (`slots.endpoints.read_host_calendars`), since most hosts
select no calendar. A writing route may do the same if it leaves its transaction before writing
anything: POST /bookings rolls back, steps out of SQLite's write turn (`WriteGate.stepped_out`),
reads, and begins again (`bookings.calendars.with_host_calendars`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from bookable.core.auth import Caller, CurrentCaller

Preflight = Callable[[Request, Caller], Awaitable[Any]]
_STATE = "preflight_result"


def before_transaction(work: Preflight) -> DependsParam:
    """A route dependency that runs ``work(request, caller)`` before the transaction begins."""

    async def run_preflight(request: Request, caller: CurrentCaller) -> None:
        setattr(request.state, _STATE, await work(request, caller))

    return Depends(run_preflight)


async def prepared_result(request: Request) -> Any:
    """What the route's preflight returned (None when the route has none)."""
    return getattr(request.state, _STATE, None)


Prepared = Annotated[Any, Depends(prepared_result)]
