"""The Broker API client against the sandbox over HTTP: typed calls, retries, error mapping (broker/client.py)."""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from broker.client import MAX_RETRY_WAIT_SECONDS, BrokerClient
from broker.paging import PAGE_SIZE, PAGES_AHEAD
from config.settings import Settings, load_settings
from funding.errors import (
    AuthenticationError,
    ClientError,
    IdempotencyConflictError,
    MalformedDataError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    ServerError,
    TransportError,
)
from funding.models import IFStatus
from sandbox.http import RUNTIME
from tests.support.sandbox import MONDAY_10AM, Sandbox, SandboxFactory

SECRET = "s3cr3t-Zebra-Quokka-7731"
"""A distinctive secret, shared by the sandbox and the client, that must never appear in an error message."""


@pytest.fixture
def settings() -> Settings:
    """Sandbox settings whose secret is :data:`SECRET` (overrides the shared fixture for this module)."""
    return load_settings({}, sandbox_heartbeat_seconds=0.2, sandbox_secret=SECRET)


class FakeSleep:
    """Records the client's backoff waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def broker(url: str, sleep: FakeSleep, *, secret: str = SECRET, attempts: int = 4) -> BrokerClient:
    settings = load_settings({}, broker_url=url, broker_secret=secret)
    return BrokerClient(settings, sleep=sleep, attempts=attempts)


async def arm(sandbox: Sandbox, status: int, path: str, times: int) -> None:
    await sandbox.ok("POST", "/sandbox/faults", {"kind": "http_error", "status": status, "path": path, "times": times})


async def remaining_times(sandbox: Sandbox) -> list[int]:
    """How many more requests each armed fault will affect (posting an empty list only lists them)."""
    return [int(f["times"]) for f in (await sandbox.ok("POST", "/sandbox/faults", {"faults": []}))["faults"]]


def assert_no_secret(exc: BaseException, secret: str = SECRET) -> None:
    text = f"{exc!s} {exc!r}"
    assert secret not in text
    assert base64.b64encode(f"sandbox-key:{secret}".encode()).decode() not in text


async def journal_body(client: BrokerClient, amount: str) -> dict[str, Any]:
    rf, si = await client.find_account("7536050RF"), await client.find_account("7536050SI")
    return {"entry_type": "JNLC", "from_account": str(rf.id), "to_account": str(si.id), "amount": amount}


async def test_get_transfer_returns_the_typed_transfer(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """get_transfer reads one transfer into the model, amounts as exact Decimals."""
    created = await sandbox.create_transfer("8100000001", "12.34")
    async with broker(sandbox.base_url, sleep) as client:
        transfer = await client.get_transfer(created["id"])
    assert (str(transfer.id), transfer.account_no, transfer.status) == (created["id"], "8100000001", IFStatus.PENDING)
    assert transfer.amount == Decimal("12.34")
    assert transfer.deadline == date.fromisoformat(created["deadline"])
    assert sleep.waits == []


async def test_list_transfers_pages_past_the_page_size(make_sandbox: SandboxFactory, sleep: FakeSleep) -> None:
    """list_transfers follows limit/offset pages until a short page: every transfer exactly once, filters applied."""
    customers = PAGE_SIZE + 20
    sandbox = await make_sandbox(customers=customers)
    created = [await sandbox.create_transfer(str(8100000000 + n), "10") for n in range(1, customers + 1)]
    await sandbox.advance(1)
    deadline = date.fromisoformat(created[0]["deadline"])
    async with broker(sandbox.base_url, sleep) as client:
        rows = await client.list_transfers()
        executed = await client.list_transfers(status=IFStatus.EXECUTED, deadline=deadline)
        pending = await client.list_transfers(status=IFStatus.PENDING)
        other_day = await client.list_transfers(deadline=deadline + timedelta(days=1))
    ids = [str(t.id) for t in rows]
    assert len(ids) == len(set(ids)) == customers
    assert set(ids) == {t["id"] for t in created}
    assert {str(t.id) for t in executed} == set(ids)
    assert (pending, other_day) == ([], [])


@pytest.mark.parametrize("shared", [1, 2], ids=["a-page-ends-inside-an-instant", "a-page-all-of-one-instant"])
async def test_account_pages_walk_the_accounts_by_creation_time_once_each(
    make_sandbox: SandboxFactory, sleep: FakeSleep, monkeypatch: pytest.MonkeyPatch, shared: int
) -> None:
    """account_pages pages by ``created_after`` (inclusive): oldest first, no account twice where a page ends
    inside an instant; a page all of one instant cannot move on, and the walk ends there instead of looping."""
    monkeypatch.setattr("sandbox.api.MAX_ACCOUNTS", 3)
    monkeypatch.setattr("broker.paging.ACCOUNTS_PAGE", 3)
    sandbox = await make_sandbox(customers=10)
    ordered = sandbox.app[RUNTIME].engine.books.in_creation_order()
    for account in ordered[3 : 3 + shared]:  # opened in the instant the 3rd one was (the order is unchanged)
        account.created_at = ordered[2].created_at
    async with broker(sandbox.base_url, sleep) as client:
        pages = [page async for page in client.account_pages("identity")]
    walked = [a.account_number for page in pages for a in page]
    reachable = len(ordered) if shared == 1 else 5  # three of one instant: pages [0-2], [2-4], then [2-4] again
    assert walked == [a.number for a in ordered[:reachable]]
    names = {a.account_number: (a.identity or {}).get("given_name") for page in pages for a in page}
    assert names == {a.number: a.given_name for a in ordered[:reachable]}
    assert all(a.contact is None for page in pages for a in page)  # only the entities asked for


async def test_find_account_and_trade_account(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """find_account maps a number to its account; trade_account reads that account's balances."""
    await sandbox.create_transfer("8100000002", "40")
    await sandbox.advance(1)
    async with broker(sandbox.base_url, sleep) as client:
        account = await client.find_account("8100000002")
        trade = await client.trade_account(str(account.id))
        with pytest.raises(NotFoundError, match="8199999999"):
            await client.find_account("8199999999")
    assert str(account.id) == await sandbox.account_id("8100000002")
    assert trade.account_number == "8100000002"
    expected = await sandbox.trade_account("8100000002")
    assert (trade.cash, trade.memoposts) == (Decimal(expected["cash"]), Decimal(expected["memoposts"]))
    assert trade.memoposts == Decimal(40)


async def test_clock_is_the_sandbox_clock(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """clock() returns the Broker API's clock, which the sandbox test controls."""
    later = MONDAY_10AM + timedelta(hours=3, minutes=7)
    async with broker(sandbox.base_url, sleep) as client:
        assert await client.clock() == MONDAY_10AM
        await sandbox.set_clock(later)
        assert await client.clock() == later


async def test_429_waits_until_the_rate_limit_reset(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """A 429 is retried after waiting for X-RateLimit-Reset (capped), longer than any backoff of those attempts."""
    await arm(sandbox, 429, "/v1/clock", times=2)
    async with broker(sandbox.base_url, sleep) as client:
        assert isinstance(await client.clock(), datetime)
    assert len(sleep.waits) == 2
    longest_backoff = 0.5 * 2**2
    assert all(longest_backoff < w <= MAX_RETRY_WAIT_SECONDS for w in sleep.waits), sleep.waits
    assert await remaining_times(sandbox) == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried_with_bounded_backoff(sandbox: Sandbox, sleep: FakeSleep, status: int) -> None:
    """A 5xx GET is retried after full-jitter backoff waits (0 ≤ wait ≤ 0.5 × 2^attempt) and then succeeds."""
    created = await sandbox.create_transfer("8100000003", "15")
    await arm(sandbox, status, "/v1/instant_funding", times=2)
    async with broker(sandbox.base_url, sleep) as client:
        rows = await client.list_transfers()
    assert [str(t.id) for t in rows] == [created["id"]]
    assert len(sleep.waits) == 2
    assert all(0 <= w <= 0.5 * 2**attempt for attempt, w in enumerate(sleep.waits, start=1)), sleep.waits


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitedError), (503, ServerError)])
async def test_exhausted_retries_raise_the_retryable_error(
    sandbox: Sandbox, sleep: FakeSleep, status: int, error: type[RetryableError]
) -> None:
    """After ``attempts`` failed requests the retryable error is raised, naming the request and the status."""
    attempts, armed = 3, 10
    await arm(sandbox, status, "/v1/clock", times=armed)
    async with broker(sandbox.base_url, sleep, attempts=attempts) as client:
        with pytest.raises(error) as caught:
            await client.clock()
    assert isinstance(caught.value, RetryableError)
    assert len(sleep.waits) == attempts - 1
    assert await remaining_times(sandbox) == [armed - attempts]
    assert "GET /v1/clock" in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    if isinstance(caught.value, ServerError):
        assert (caught.value.status, caught.value.code) == (status, status * 100000)
    if isinstance(caught.value, RateLimitedError):
        assert caught.value.reset_at is not None
    assert_no_secret(caught.value)


async def test_404_is_not_found_and_not_retried(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """An unknown transfer is NotFoundError, a PermanentError, raised after exactly one request."""
    missing = str(uuid.uuid4())
    async with broker(sandbox.base_url, sleep) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_transfer(missing)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status == 404
    assert missing in str(caught.value)
    assert sleep.waits == []
    assert_no_secret(caught.value)


async def test_wrong_credentials_are_a_client_error(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """A 401 is an AuthenticationError, a ClientError (not retried), naming the variables to check; its
    message never carries the secret that was sent."""
    wrong = "wr0ng-Pangolin-Secret-5521"
    async with broker(sandbox.base_url, sleep, secret=wrong) as client:
        with pytest.raises(ClientError) as caught:
            await client.clock()
    assert type(caught.value) is AuthenticationError
    assert "check SETTLEKEEPER_BROKER_KEY and SETTLEKEEPER_BROKER_SECRET" in str(caught.value)
    assert caught.value.status == 401
    assert sleep.waits == []
    assert_no_secret(caught.value, wrong)


async def test_post_without_idempotency_key_is_not_retried(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """A POST without Idempotency-Key that gets a 503 raises at once: one request, no wait."""
    async with broker(sandbox.base_url, sleep) as client:
        body = await journal_body(client, "5")
        await arm(sandbox, 503, "/v1/journals", times=2)
        with pytest.raises(ServerError):
            await client.request("POST", "/v1/journals", body=body)
    assert sleep.waits == []
    assert await remaining_times(sandbox) == [1]


async def test_post_with_idempotency_key_is_retried(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """A POST carrying an Idempotency-Key is retried on 503 and books the journal once."""
    async with broker(sandbox.base_url, sleep) as client:
        body = await journal_body(client, "5")
        await arm(sandbox, 503, "/v1/journals", times=2)
        journal = await client.request("POST", "/v1/journals", body=body, idempotency_key="8100000001-2026-11-23-x")
    assert len(sleep.waits) == 2
    listed = await sandbox.ok("GET", "/v1/journals")
    assert [j["id"] for j in listed] == [journal["id"]]


async def test_reused_idempotency_key_with_another_body_conflicts(sandbox: Sandbox, sleep: FakeSleep) -> None:
    """Same key and body returns the original journal; same key, different body is IdempotencyConflictError."""
    key = "7536050SI-2026-11-23-fund"
    async with broker(sandbox.base_url, sleep) as client:
        first = await client.request("POST", "/v1/journals", body=await journal_body(client, "5"), idempotency_key=key)
        again = await client.request("POST", "/v1/journals", body=await journal_body(client, "5"), idempotency_key=key)
        with pytest.raises(IdempotencyConflictError) as caught:
            await client.request("POST", "/v1/journals", body=await journal_body(client, "6"), idempotency_key=key)
    assert again["id"] == first["id"]
    assert isinstance(caught.value, PermanentError)
    assert caught.value.status == 422
    assert key in str(caught.value)
    assert sleep.waits == []
    assert_no_secret(caught.value)


async def test_connection_refused_is_a_transport_error(sleep: FakeSleep) -> None:
    """A refused connection is a TransportError, retried ``attempts`` times, its message free of the secret."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with broker(f"http://127.0.0.1:{port}", sleep, attempts=2) as client:
        with pytest.raises(TransportError) as caught:
            await client.clock()
    assert len(sleep.waits) == 1
    assert "GET /v1/clock" in str(caught.value)
    assert_no_secret(caught.value)


class PagedBroker(BrokerClient):
    """Serves ``pages`` to list_transfers without HTTP; a request past the last page waits until cancelled."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        super().__init__(load_settings({}))
        self.pages = pages
        self.offsets: list[int] = []
        self.cancelled = 0

    async def request(self, method: str, path: str, *, params: Any = None, body: Any = None, **kw: Any) -> Any:
        offset = int(params.get("offset", 0))  # a first page names no offset (the document's minimum is 1)
        assert params.get("offset") != "0"
        self.offsets.append(offset)
        index = offset // PAGE_SIZE
        if index < len(self.pages):
            return self.pages[index]
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def listed(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=n + 1)),
        "account_no": "8100000001",
        "source_account_no": "7536050SI",
        "amount": "10.00",
        "status": "EXECUTED",
        "system_date": "2026-11-23",
        "deadline": "2026-11-24",
        "created_at": "2026-11-23T10:00:00-05:00",
        "remaining_payable": "10.00",
        "total_interest": "0.00",
    }


@pytest.mark.parametrize("last", [0, 37], ids=["ends-on-a-full-page", "ends-on-a-short-page"])
async def test_list_transfers_asks_for_the_next_pages_while_reading_this_one(last: int) -> None:
    """After a full page the next PAGES_AHEAD pages are requested before it is read, at the offsets one page at a
    time would ask; every row comes once, in order, and the pages asked for past the end are cancelled."""
    rows = [listed(n) for n in range(3 * PAGE_SIZE + last)]
    pages = [rows[k : k + PAGE_SIZE] for k in range(0, len(rows), PAGE_SIZE)]
    client = PagedBroker(pages if last else [*pages, []])
    got = await client.list_transfers()
    assert [str(t.id) for t in got] == [r["id"] for r in rows]
    asked = 4 + PAGES_AHEAD - 1  # the 4th page ends it: the ones asked for with the 3rd
    assert client.offsets == [PAGE_SIZE * k for k in range(asked)]
    assert client.cancelled == PAGES_AHEAD - 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_page_longer_than_the_limit_is_malformed() -> None:
    """A page of more rows than ``limit`` would make the offsets asked for ahead skip or repeat rows: refused."""
    client = PagedBroker([[listed(n) for n in range(PAGE_SIZE + 1)]])
    with pytest.raises(MalformedDataError, match="limit"):
        await client.list_transfers()


async def test_list_transfers_cancels_the_next_page_when_this_one_is_malformed() -> None:
    """A malformed page raises; the request already sent for the next page is cancelled, not left running."""
    page = [listed(n) for n in range(PAGE_SIZE)]
    page[7] = {**page[7], "amount": 1.5}
    client = PagedBroker([page])
    with pytest.raises(MalformedDataError):
        await client.list_transfers()
    assert client.offsets == [PAGE_SIZE * k for k in range(1 + PAGES_AHEAD)]
    assert client.cancelled == PAGES_AHEAD
    assert asyncio.all_tasks() == {asyncio.current_task()}
