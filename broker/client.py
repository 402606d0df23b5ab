"""The Broker API client: aiohttp, HTTP Basic, typed results, and the error tree for every failure.

Only idempotent calls are retried here (GETs, and POSTs that carry an ``Idempotency-Key``), with capped
exponential backoff and full jitter; a 429 waits for ``X-RateLimit-Reset`` when the server sent it.
A settlement POST has no idempotency key (docs/broker-api.md "Settlements") and is never retried by this client.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
import structlog

from broker import paging
from broker.answers import parsed, parsed_all
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
MAX_RETRY_WAIT_SECONDS = 30.0
"""Upper bound of one backoff wait, whatever a 429's reset time says."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)
"""REST calls only; streams use their own session without a total timeout."""

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[str, str, float], None]
"""Told of every retry wait: (error kind, ``METHOD /path``, seconds); the listener counts it in a metric."""
log = structlog.get_logger(__name__)


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
        data = body.data if isinstance(body, Encoded) else None
        if data is not None:  # already JSON
            body, headers["Content-Type"] = None, "application/json"
        try:
            async with self._session.request(
                method, self._base + path, params=params, data=data, json=body, headers=headers
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
        async for page in paging.transfer_pages(
            self.request, paging.transfer, status=status, system_date=system_date, deadline=deadline
        ):
            rows.extend(page)
        return rows

    def listed_pages(self, *, status: IFStatus, deadline: date) -> AsyncIterator[list[Listed]]:
        """The transfers of a status due on ``deadline`` a page at a time, as a settle run keeps them
        (:class:`~funding.dues.Listed`), the next pages asked for while one is read: a row of the usual shape
        checked field by field without building its model (a million on a large day), any other through the
        model."""
        return paging.transfer_pages(self.request, paging.listed, status=status, deadline=deadline)

    def account_pages(self, entities: str) -> AsyncIterator[list[Account]]:
        """Every account with ``entities``, a page of up to 1,000 at a time (:func:`broker.paging.account_pages`)."""
        return paging.account_pages(self.request, entities)

    async def find_account(self, account_no: str) -> Account:
        """Map an account number to its account (docs/broker-api.md "Account numbers and ids"); 404-like
        :class:`NotFoundError` if absent."""
        rows = await self.request("GET", "/v1/accounts", params={"query": ids.account_number(account_no)})
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("account_number") == account_no:
                return parsed(Account, row, "/v1/accounts")
        raise NotFoundError(f"no account numbered {account_no}", status=404)

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
        # written by orjson (a tenth of json.dumps' time on 50,000 transfers: 12 MB); no key means no retry
        # whose bytes must match the first attempt's
        answer = await self.request("POST", "/v1/instant_funding/settlements", body=Encoded(orjson.dumps(dict(body))))
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


@dataclass(frozen=True, slots=True)
class Encoded:
    """A request body already written as JSON bytes."""

    data: bytes


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
