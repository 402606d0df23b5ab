"""The Broker API's list endpoints read a page at a time: ``GET /v1/instant_funding`` by ``limit``/``offset``
(the next pages asked for while one is read), ``GET /v1/accounts`` by creation time (docs/broker-api.md
"Account numbers and ids", "Errors, credentials and rate limits")."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from broker.answers import parsed, parsed_all
from broker.rows import plain_listed, plain_transfer
from funding.dues import Listed
from funding.errors import MalformedDataError
from funding.models import Account, IFStatus, InstantFunding

PAGE_SIZE = 100
"""The IF list endpoint's maximum ``limit``."""
PAGES_AHEAD = 2
"""Pages of a listing asked for before they are read: one request's round trip costs more than reading its page
(bench/run "settle": 2.8 ms a page one at a time, 1.1 ms to read one)."""
ACCOUNTS_PAGE = 1000
"""``GET /v1/accounts`` answers the first 1,000 accounts that match."""

T = TypeVar("T")


class Request(Protocol):
    """:meth:`broker.client.BrokerClient.request`, as the pages call it."""

    async def __call__(self, method: str, path: str, *, params: Mapping[str, str] | None = None) -> Any: ...


async def transfer_pages(
    request: Request,
    read: Callable[[Any], T],
    *,
    status: IFStatus | None = None,
    system_date: date | None = None,
    deadline: date | None = None,
) -> AsyncIterator[list[T]]:
    """The rows of ``GET /v1/instant_funding`` a page at a time, each made into what ``read`` makes of it
    (:func:`transfer` or :func:`listed`); after a full page, the next :data:`PAGES_AHEAD` are asked for while it is
    read (a page past the end answers empty and is not read)."""
    params: dict[str, str] = {"limit": str(PAGE_SIZE), "sort_by": "created_at", "sort_order": "ASC"}
    if status is not None:
        params["status"] = status.value
    if system_date is not None:
        params["system_date"] = system_date.isoformat()
    if deadline is not None:
        params["deadline"] = deadline.isoformat()

    async def page_at(offset: int) -> list[Any]:
        # the document gives offset a minimum of 1: a first page names none (docs/broker-api.md "Paging")
        page = await request("GET", "/v1/instant_funding", params={**params, **_offset(offset)})
        if not isinstance(page, list):
            raise MalformedDataError("GET /v1/instant_funding did not return an array")
        return page

    offsets = itertools.count(0, PAGE_SIZE)
    asked = collections.deque([asyncio.ensure_future(page_at(next(offsets)))])
    try:
        while True:
            page = await asked.popleft()
            if len(page) > PAGE_SIZE:
                raise MalformedDataError(f"GET /v1/instant_funding answered {len(page)} rows to limit={PAGE_SIZE}")
            full = len(page) == PAGE_SIZE
            if full:  # more may follow: the next pages are asked for while this one is read
                while len(asked) < PAGES_AHEAD:
                    asked.append(asyncio.ensure_future(page_at(next(offsets))))
                await asyncio.sleep(0)  # lets the requests go out before the reading holds the loop
            yield [read(row) for row in page]
            if not full:
                return
    finally:  # the end, an error, or the caller stopped reading: the pages still asked for are not wanted
        for ahead in asked:
            ahead.cancel()
        await asyncio.gather(*asked, return_exceptions=True)


def transfer(row: Any) -> InstantFunding:
    """A row as its model: checked by hand when it has the usual shape (:mod:`broker.rows`), else validated."""
    return plain_transfer(row) or parsed(InstantFunding, row, "/v1/instant_funding")


def listed(row: Any) -> Listed:
    """A row as a settle run keeps it: checked by hand when it has the usual shape, else through the model."""
    return plain_listed(row) or Listed.of(parsed(InstantFunding, row, "/v1/instant_funding"))


async def account_pages(request: Request, entities: str) -> AsyncIterator[list[Account]]:
    """Every account with ``entities``, oldest first, up to :data:`ACCOUNTS_PAGE` at a time: the next page starts
    at the last one's creation time (``created_after`` is inclusive, so the accounts of that instant already seen
    are left out). Ends at a short page, or at one that brings nothing new (more than a page of accounts created
    in one instant, or a page that does not move past the last: the caller reads the rest another way)."""
    params = {"sort": "asc", "entities": entities}
    boundary: set[UUID] = set()
    cursor: datetime | None = None
    while True:
        page = parsed_all(Account, await request("GET", "/v1/accounts", params=params), "/v1/accounts")
        fresh = [account for account in page if account.id not in boundary]
        if fresh:
            yield fresh
        last = page[-1].created_at if page else None
        if len(page) < ACCOUNTS_PAGE or not fresh or last is None or (cursor is not None and last <= cursor):
            return
        boundary = {account.id for account in page if account.created_at == last}
        cursor = last
        params["created_after"] = last.isoformat()


def _offset(offset: int) -> dict[str, str]:
    return {"offset": str(offset)} if offset else {}
