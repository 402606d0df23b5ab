"""The Broker API client: aiohttp, HTTP Basic, typed results, and the error tree for every failure.

Only idempotent calls are retried here (GETs, and POSTs that carry an ``Idempotency-Key``), with capped
exponential backoff and full jitter; a 429 waits for ``X-RateLimit-Reset`` when the server sent it.
A settlement POST has no idempotency key (docs/broker-api.md "Settlements") and is never retried by this client.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

import aiohttp
import structlog
from pydantic import BaseModel, ValidationError

from broker.rows import plain_listed, plain_transfer
from config.settings import Settings
from funding import ids
from funding.dues import Listed
from funding.errors import (
    AuthenticationError,
    ClientError,
    IdempotencyConflictError,
    MalformedDataError,
    NotFoundError,
    RateLimitedError,
    RetryableError,
    ServerError,
    TransportError,
)
from funding.models import (
    Account,
    Clock,
    CorrespondentLimit,
    IFReport,
    IFStatus,
    InstantFunding,
    JITLimits,
    Journal,
    MarketCalendar,
    Settlement,
    TradeAccount,
)
from funding.money import loads_exact

_SAFE_PATH = re.compile(r"(/[A-Za-z0-9._~%-]+)+")
"""What :func:`funding.ids.path` builds: segments of unreserved characters and percent-escapes only."""
PAGE_SIZE = 100
"""The IF list endpoint's maximum ``limit``."""
PAGES_AHEAD = 2
"""Pages of a listing asked for before they are read: one request's round trip costs more than reading its page
(bench/run "settle": 2.8 ms a page one at a time, 1.1 ms to read one)."""
ACCOUNTS_PAGE = 1000
"""``GET /v1/accounts`` answers the first 1,000 accounts that match."""
MAX_RETRY_WAIT_SECONDS = 30.0
"""Upper bound of one backoff wait, whatever a 429's reset time says."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
"""REST calls only; streams use their own session without a total timeout."""

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[str, str, float], None]
"""Told of every retry wait: (error kind, ``METHOD /path``, seconds); the listener counts it in a metric."""
log = structlog.get_logger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = MAX_RETRY_WAIT_SECONDS) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base × 2^attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class BrokerClient:
    """Calls the Broker API at ``settings.broker_url`` with the configured credentials."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession | None = None,
        *,
        attempts: int = 4,
        sleep: Sleep = asyncio.sleep,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._base = settings.broker_url
        self._auth = aiohttp.encode_basic_auth(
            settings.broker_key.get_secret_value(), settings.broker_secret.get_secret_value()
        )
        self._session = session
        self._owns_session = session is None
        self._attempts = attempts
        self._sleep = sleep
        self._on_retry = on_retry

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": self._auth}

    @property
    def base_url(self) -> str:
        return self._base

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one call and return its parsed JSON (Decimals for numbers); raise the error tree.

        ``path`` must be built by :func:`funding.ids.path` (or be a constant): anything else is refused
        before a request leaves."""
        if not _SAFE_PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
            raise MalformedDataError(f"refusing to request a path not built from checked segments: {path[:80]!r}")
        retryable = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            try:
                return await self._once(method, path, params, body, idempotency_key)
            except RetryableError as exc:
                attempt += 1
                if not retryable or attempt >= self._attempts:
                    raise
                wait = backoff_delay(attempt)
                if isinstance(exc, RateLimitedError) and exc.reset_at is not None:
                    wait = max(wait, min(exc.reset_at - time.time(), MAX_RETRY_WAIT_SECONDS))
                wait = max(wait, 0.0)
                log.warning(  # a wait is never silent: a 429 may hold a caller for the rest of the window
                    "broker_retry",
                    request=f"{method} {path}",
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                    attempt=attempt,
                    wait_seconds=round(wait, 3),
                )
                if self._on_retry is not None:
                    self._on_retry(type(exc).__name__, f"{method} {path}", wait)
                await self._sleep(wait)

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        idempotency_key: str | None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("BrokerClient must be used as an async context manager")
        headers = dict(self.auth_header)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        where = f"{method} {path}"
        try:
            async with self._session.request(
                method, self._base + path, params=params, json=body, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                reset = resp.headers.get("X-RateLimit-Reset")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # from None: aiohttp's error holds the request (its Authorization header) in request_info
            raise TransportError(f"{where}: {type(exc).__name__}: {exc}") from None
        if status < 300:
            if not raw:
                return None
            try:
                return loads_exact(raw)
            except ValueError as exc:
                raise MalformedDataError(f"{where}: response is not JSON ({raw[:80]!r})") from exc
        code, message = _error_body(raw)
        text = f"{where} → HTTP {status}" + (f" code {code}" if code else "") + f": {message}"
        if status == 429:
            # isascii: isdigit alone takes "²", which float() refuses
            reset_at = float(reset) if reset is not None and reset.isascii() and reset.isdigit() else None
            raise RateLimitedError(text, reset_at=reset_at)
        if status >= 500:
            raise ServerError(text, status=status, code=code)
        if status == 401 or (status == 403 and method == "GET"):
            # a 403 to a POST is a business refusal (a journal without the cash, an IF limit reached), not the
            # credentials; a read refused with 403 means the key may not use the endpoint
            raise AuthenticationError(where, status=status, code=code, message=message)
        if status == 404:
            raise NotFoundError(text, status=status, code=code)
        if status == 422 and idempotency_key is not None and "dempotency" in message:
            raise IdempotencyConflictError(text, status=status, code=code)
        raise ClientError(text, status=status, code=code)

    # ------------------------------------------------------------------ typed calls

    async def get_transfer(self, transfer_id: str) -> InstantFunding:
        target = ids.path("v1", "instant_funding", ids.uuid(transfer_id, "transfer id"))
        return parsed(InstantFunding, await self.request("GET", target), target)

    async def list_transfers(
        self,
        *,
        status: IFStatus | None = None,
        system_date: date | None = None,
        deadline: date | None = None,
    ) -> list[InstantFunding]:
        """Every transfer matching the filters, paging with ``limit``/``offset``."""
        rows: list[InstantFunding] = []
        async for page in self._pages(_transfer, status=status, system_date=system_date, deadline=deadline):
            rows.extend(page)
        return rows

    async def listed_pages(self, *, status: IFStatus, deadline: date) -> AsyncIterator[list[Listed]]:
        """The transfers of a status due on ``deadline`` a page at a time, as a settle run keeps them
        (:class:`~funding.dues.Listed`), the next page asked for while this one is read: a row of the usual
        shape checked field by field without building its model (a million on a large day), any other through
        the model."""
        async for page in self._pages(_listed, status=status, deadline=deadline):
            yield page

    async def _pages(
        self,
        read: Callable[[Any], T],
        *,
        status: IFStatus | None = None,
        system_date: date | None = None,
        deadline: date | None = None,
    ) -> AsyncIterator[list[T]]:
        """The rows of ``GET /v1/instant_funding`` a page at a time, each made into what ``read`` makes of it; after
        a full page, the next :data:`PAGES_AHEAD` are asked for while it is read (a page past the end answers empty
        and is not read)."""
        params: dict[str, str] = {"limit": str(PAGE_SIZE), "sort_by": "created_at", "sort_order": "ASC"}
        if status is not None:
            params["status"] = status.value
        if system_date is not None:
            params["system_date"] = system_date.isoformat()
        if deadline is not None:
            params["deadline"] = deadline.isoformat()

        async def page_at(offset: int) -> list[Any]:
            # the document gives offset a minimum of 1: a first page names none (docs/broker-api.md "Paging")
            page = await self.request("GET", "/v1/instant_funding", params={**params, **_offset(offset)})
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

    async def find_account(self, account_no: str) -> Account:
        """Map an account number to its account (docs/broker-api.md "Account numbers and ids"); 404-like
        :class:`NotFoundError` if absent."""
        rows = await self.request("GET", "/v1/accounts", params={"query": ids.account_number(account_no)})
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("account_number") == account_no:
                return parsed(Account, row, "/v1/accounts")
        raise NotFoundError(f"no account numbered {account_no}", status=404)

    async def account_pages(self, entities: str) -> AsyncIterator[list[Account]]:
        """Every account with ``entities``, oldest first, up to :data:`ACCOUNTS_PAGE` at a time: the next page starts
        at the last one's creation time (``created_after`` is inclusive, so the accounts of that instant already seen
        are left out). Ends at a short page, or at one that brings nothing new (more than a page of accounts created
        in one instant, or a page that does not move past the last: the caller reads the rest another way)."""
        params = {"sort": "asc", "entities": entities}
        boundary: set[UUID] = set()
        cursor: datetime | None = None
        while True:
            rows = await self.request("GET", "/v1/accounts", params=params)
            page = parsed_all(Account, rows, "/v1/accounts")
            fresh = [account for account in page if account.id not in boundary]
            if fresh:
                yield fresh
            last = page[-1].created_at if page else None
            if len(page) < ACCOUNTS_PAGE or not fresh or last is None or (cursor is not None and last <= cursor):
                return
            boundary = {account.id for account in page if account.created_at == last}
            cursor = last
            params["created_after"] = last.isoformat()

    async def trade_account(self, account_id: str) -> TradeAccount:
        target = ids.path("v1", "trading", "accounts", ids.uuid(account_id, "account id"), "account")
        return parsed(TradeAccount, await self.request("GET", target), target)

    async def account(self, account_id: str) -> Account:
        target = ids.path("v1", "accounts", ids.uuid(account_id, "account id"))
        return parsed(Account, await self.request("GET", target), target)

    async def create_journal(self, body: Mapping[str, Any], idempotency_key: str) -> Journal:
        """``POST /v1/journals``; safe to repeat with the same key and body (docs/broker-api.md "Journals")."""
        answer = await self.request("POST", "/v1/journals", body=dict(body), idempotency_key=idempotency_key)
        return parsed(Journal, answer, "/v1/journals")

    async def get_journal(self, journal_id: str) -> Journal:
        target = ids.path("v1", "journals", ids.uuid(journal_id, "journal id"))
        return parsed(Journal, await self.request("GET", target), target)

    async def list_journals(self, from_account: str, after: date) -> list[Journal]:
        """``GET /v1/journals``: the journals out of ``from_account`` created on ``after`` or later (the day before
        is asked for: whether Alpaca's ``after`` includes its day or not, the day is in the answer)."""
        params = {"from_account": ids.uuid(from_account, "account id"), "after": (after - timedelta(1)).isoformat()}
        return parsed_all(Journal, await self.request("GET", "/v1/journals", params=params), "/v1/journals")

    async def create_settlement(self, body: Mapping[str, Any]) -> Settlement:
        """``POST /v1/instant_funding/settlements``: no idempotency key exists (docs/broker-api.md "Settlements"), so
        never retried here."""
        answer = await self.request("POST", "/v1/instant_funding/settlements", body=dict(body))
        return parsed(Settlement, answer, "/v1/instant_funding/settlements")

    async def get_settlement(self, settlement_id: str) -> Settlement:
        target = ids.path("v1", "instant_funding", "settlements", ids.uuid(settlement_id, "settlement id"))
        return parsed(Settlement, await self.request("GET", target), target)

    async def list_settlements(self, statuses: list[str] | None = None) -> list[Settlement]:
        """Settlements filtered by status; accepts ``{"settlements": [...]}`` or a bare array (docs/broker-api.md
        "Settlements")."""
        params = {"statuses": ",".join(statuses)} if statuses else None
        body = await self.request("GET", "/v1/instant_funding/settlements", params=params)
        rows = body.get("settlements", []) if isinstance(body, dict) else body
        return parsed_all(Settlement, rows, "/v1/instant_funding/settlements")

    async def if_reports(self, report_type: str, system_date: date) -> list[IFReport]:
        """``GET /v1/instant_funding/reports``: ``summary`` or ``detail`` rows of one settlement cycle."""
        params = {"report_type": report_type, "system_date": system_date.isoformat()}
        body = await self.request("GET", "/v1/instant_funding/reports", params=params)
        if not isinstance(body, list):
            raise MalformedDataError(f"GET /v1/instant_funding/reports ({report_type}) did not return an array")
        return parsed_all(IFReport, body, "/v1/instant_funding/reports")

    async def jit_report(self, report_type: str, system_date: date) -> str:
        """``GET /v1/transfers/jit/reports`` inline: the CSV text of ``detail`` or ``net_summary``.

        The inline answer is an object keyed by the report's name (``detail``, or ``detail.csv``).
        A report not generated yet is a :class:`NotFoundError` (404).
        """
        params = {"report_type": report_type, "system_date": system_date.isoformat()}
        body = await self.request("GET", "/v1/transfers/jit/reports", params=params)
        text = body.get(report_type, body.get(f"{report_type}.csv")) if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise MalformedDataError(f"GET /v1/transfers/jit/reports: no {report_type} CSV in the answer")
        return text

    async def if_limits(self) -> CorrespondentLimit:
        """``GET /v1/instant_funding/limits``: the correspondent's IF limit and what is in use."""
        where = "/v1/instant_funding/limits"
        return parsed(CorrespondentLimit, await self.request("GET", where), where)

    async def jit_limits(self) -> JITLimits:
        """``GET /v1/transfers/jit/limits``: the JIT daily net limit and ``in_use_limit`` (docs/broker-api.md
        "JIT securities funding")."""
        where = "/v1/transfers/jit/limits"
        return parsed(JITLimits, await self.request("GET", where), where)

    async def market_days(self, market: str, start: date, end: date) -> list[date]:
        """``GET /v2/calendar/{market}``: the days ``market`` is open from ``start`` to ``end`` (``BMO``: banking
        days, docs/broker-api.md "Banking days")."""
        target = ids.path("v2", "calendar", ids.market(market))
        body = await self.request("GET", target, params={"start": start.isoformat(), "end": end.isoformat()})
        return [row.date for row in parsed(MarketCalendar, body, target).calendar]

    async def clock(self) -> datetime:
        """The Broker API's clock (``GET /v1/clock``): the sandbox clock against the sandbox."""
        return parsed(Clock, await self.request("GET", "/v1/clock"), "/v1/clock").timestamp


def _offset(offset: int) -> dict[str, str]:
    return {"offset": str(offset)} if offset else {}


def parsed(model: type[M], body: Any, where: str) -> M:
    """``body`` as ``model``; an answer that does not fit it is a :class:`MalformedDataError` naming the
    first field that did not (callers catch the error tree, never pydantic's)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _malformed(model, where, exc) from exc


def _transfer(row: Any) -> InstantFunding:
    return plain_transfer(row) or parsed(InstantFunding, row, "/v1/instant_funding")


def _listed(row: Any) -> Listed:
    return plain_listed(row) or Listed.of(parsed(InstantFunding, row, "/v1/instant_funding"))


def parsed_all(model: type[M], rows: Any, where: str) -> list[M]:
    """Every row of a list answer as ``model`` (one check for the page: the common case costs nothing)."""
    if not isinstance(rows, list):
        raise MalformedDataError(f"{where}: expected a list of {model.__name__}, got {type(rows).__name__}")
    try:
        return [model.model_validate(row) for row in rows]
    except ValidationError as exc:
        raise _malformed(model, where, exc) from exc


def _malformed(model: type[BaseModel], where: str, exc: ValidationError) -> MalformedDataError:
    first = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "?"
    return MalformedDataError(f"{where}: the answer is not a valid {model.__name__}: {field}: {first['msg']}")


def _error_body(raw: bytes) -> tuple[int | None, str]:
    """Alpaca's ``{"code", "message"}``, tolerating a plain-text body."""
    try:
        body = loads_exact(raw)
    except ValueError:
        return None, raw[:200].decode(errors="replace").strip() or "(empty body)"
    if isinstance(body, dict):
        code = body.get("code")
        return (int(code) if isinstance(code, int) else None), str(body.get("message", body))[:300]
    return None, str(body)[:300]
