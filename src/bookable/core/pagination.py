"""The one pagination parameter type of every paged list: ``take`` (page size) and ``page``.

Cal.com's ``withPagination`` parses both as integers >= 1 (``take`` defaults to 10, ``page`` to 1)
and has no upper bound, so ``take=1e30`` reached the database as an integer overflow (a 500 here).
Both now have a documented maximum and answer a 400 naming the parameter beyond it:

* ``take`` <= 1000: ten times more than any client we know asks for at once (n8n, Zapier and
  Cal.com's own UI page by 10 to 100), and still a response a client can hold in memory.
* ``page`` <= 1,000,000: with the largest ``take`` the offset stays far inside a 64-bit integer, and
  a larger page of a real list is empty anyway.
"""

# No `from __future__ import annotations`: FastAPI must see the bounds of the closure below.

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

DEFAULT_TAKE = 10
MAX_TAKE = 1000
MAX_PAGE = 1_000_000


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: ``take`` rows starting at row ``offset``."""

    take: int
    number: int
    # Both `take` and `page` were in the query (GET /bookings pages only then, as Cal.com does).
    explicit: bool = True

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.take


def paging(default_take: int = DEFAULT_TAKE, max_take: int = MAX_TAKE) -> Any:
    """The dependency reading ``take`` and ``page``; lists with other defaults make their own."""

    async def page_of(
        request: Request,
        take: Annotated[
            int, Query(ge=1, le=max_take, description=f"Rows per page (1 to {max_take}).")
        ] = default_take,
        page: Annotated[
            int, Query(ge=1, le=MAX_PAGE, description=f"Page number, from 1 (at most {MAX_PAGE}).")
        ] = 1,
    ) -> Page:
        given = request.query_params
        return Page(take, page, explicit="take" in given and "page" in given)

    return Depends(page_of)


Pagination = Annotated[Page, paging()]
