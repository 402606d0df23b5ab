"""Alpaca's official SDK (alpaca-py) as a second, independent client of the sandbox: its models parse every answer
of the endpoints it covers, and its SSE readers read the journal and non-trade-activity streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any, TypeVar

import pytest
from alpaca.broker.client import BrokerClient
from alpaca.broker.enums import JournalEntryType
from alpaca.broker.models import Account, BatchJournalResponse, Journal, TradeAccount
from alpaca.broker.requests import (
    BatchJournalRequestEntry,
    CreateBatchJournalRequest,
    CreateJournalRequest,
    GetAccountActivitiesRequest,
    GetEventsRequest,
    GetJournalsRequest,
    ListAccountsRequest,
)
from alpaca.trading.enums import ActivityType
from alpaca.trading.models import Calendar, Clock, NonTradeActivity, TradeActivity
from alpaca.trading.requests import GetCalendarRequest

from config.settings import Settings
from tests.support.sandbox import MONDAY_10AM, Sandbox

T = TypeVar("T")
SI, RF = "7536050SI", "7536050RF"
CUSTOMER = "8100000001"


def sdk(sandbox: Sandbox, settings: Settings, api_version: str = "v1") -> BrokerClient:
    return BrokerClient(
        api_key=settings.sandbox_key.get_secret_value(),
        secret_key=settings.sandbox_secret.get_secret_value(),
        api_version=api_version,
        url_override=sandbox.base_url,
    )


async def off_loop(call: Callable[[], T]) -> T:
    """The SDK is synchronous: run it on a thread so the in-process sandbox keeps serving."""
    return await asyncio.to_thread(call)


@pytest.fixture
async def day(sandbox: Sandbox) -> dict[str, str]:
    """A day with a transfer, a trade and a settlement-size journal, so every list has rows; account ids."""
    await sandbox.create_transfer(CUSTOMER, "40.00")
    await sandbox.advance(1)
    await sandbox.ok("POST", "/sandbox/trades", {"account_no": CUSTOMER, "side": "buy", "qty": "1", "price": "10"})
    return {no: await sandbox.account_id(no) for no in (SI, RF, CUSTOMER)}


async def test_accounts_and_trade_accounts_parse(sandbox: Sandbox, settings: Settings, day: dict[str, str]) -> None:
    """list_accounts, get_account_by_id and get_trade_account_by_id parse every account the sandbox serves."""
    client = sdk(sandbox, settings)
    accounts = await off_loop(lambda: client.list_accounts(ListAccountsRequest(query=CUSTOMER)))
    assert [a.account_number for a in accounts] == [CUSTOMER]
    assert all(isinstance(a, Account) for a in await off_loop(client.list_accounts))
    for number, account_id in day.items():
        account = await off_loop(lambda account_id=account_id: client.get_account_by_id(account_id))
        trade = await off_loop(lambda account_id=account_id: client.get_trade_account_by_id(account_id))
        assert (account.account_number, isinstance(trade, TradeAccount)) == (number, True)
        assert trade.account_number == number
    customer = await off_loop(lambda: client.get_trade_account_by_id(day[CUSTOMER]))
    assert (customer.cash, customer.last_cash, customer.clearing_broker) == ("30.00", "30.00", "VELOX")


async def test_journals_single_batch_and_list_filters_parse(
    sandbox: Sandbox, settings: Settings, day: dict[str, str]
) -> None:
    """create_journal, create_batch_journal, get_journals (each filter), get_journal_by_id, cancel_journal_by_id."""
    client = sdk(sandbox, settings)
    single = CreateJournalRequest(
        from_account=day[RF], to_account=day[SI], entry_type=JournalEntryType.CASH, amount=125.5
    )
    booked = await off_loop(lambda: client.create_journal(single))
    assert (isinstance(booked, Journal), booked.status.value, booked.net_amount) == (True, "executed", 125.5)
    held = CreateJournalRequest(
        from_account=day[RF],
        to_account=day[SI],
        entry_type=JournalEntryType.CASH,
        amount=5,
        description="/fixtures/status=pending/fixtures/",
    )
    pending = await off_loop(lambda: client.create_journal(held))
    entries = [BatchJournalRequestEntry(to_account=day[CUSTOMER], amount="10.00")] * 2
    batch = CreateBatchJournalRequest(entry_type=JournalEntryType.CASH, from_account=day[RF], entries=entries)
    rows = await off_loop(lambda: client.create_batch_journal(batch))
    assert all(isinstance(row, BatchJournalResponse) for row in rows)
    assert len(rows) == 2

    today = MONDAY_10AM.date()
    filters = [
        GetJournalsRequest(),
        GetJournalsRequest(after=today, before=today),
        GetJournalsRequest(status="pending"),
        GetJournalsRequest(entry_type=JournalEntryType.CASH, to_account=day[SI]),
        GetJournalsRequest(from_account=day[RF]),
    ]
    found = [await off_loop(lambda f=f: client.get_journals(f)) for f in filters]
    assert [len(rows) for rows in found] == [4, 4, 1, 2, 4]
    assert (await off_loop(lambda: client.get_journal_by_id(booked.id))).id == booked.id
    await off_loop(lambda: client.cancel_journal_by_id(pending.id))
    assert (await off_loop(lambda: client.get_journal_by_id(pending.id))).status.value == "canceled"


async def test_account_activities_parse(sandbox: Sandbox, settings: Settings, day: dict[str, str]) -> None:
    """get_account_activities parses the fill as a TradeActivity and the rest as NonTradeActivity, filters applied."""
    body = {"from_account": day[RF], "to_account": day[CUSTOMER], "entry_type": "JNLC", "amount": "10.00"}
    await sandbox.ok("POST", "/v1/journals", body)
    client = sdk(sandbox, settings)
    everything = await off_loop(lambda: client.get_account_activities(GetAccountActivitiesRequest()))
    kinds = {type(row) for row in everything}
    assert kinds == {TradeActivity, NonTradeActivity}
    fills = GetAccountActivitiesRequest(account_id=day[CUSTOMER], activity_types=[ActivityType.FILL])
    [fill] = await off_loop(lambda: client.get_account_activities(fills))
    assert (fill.symbol, fill.qty, fill.price, fill.side.value) == ("AAPL", 1, 10, "buy")


async def test_calendar_and_clock_parse(sandbox: Sandbox, settings: Settings) -> None:
    """get_calendar and get_clock parse the sandbox's trading calendar and clock."""
    client = sdk(sandbox, settings)
    start = MONDAY_10AM.date()
    days = await off_loop(lambda: client.get_calendar(GetCalendarRequest(start=start, end=start + timedelta(7))))
    assert all(isinstance(d, Calendar) for d in days)
    assert [d.date for d in days] == [date(2026, 11, n) for n in (23, 24, 25, 27, 30)]  # Thanksgiving closed
    clock = await off_loop(client.get_clock)
    assert (isinstance(clock, Clock), clock.is_open) == (True, True)


def first_events(events: Iterator[str], count: int) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in zip(range(count), events, strict=False)]


async def test_the_sdks_sse_readers_read_journal_and_nta_events(
    sandbox: Sandbox, settings: Settings, day: dict[str, str]
) -> None:
    """get_journal_events (v2) and get_non_trading_activity_events yield the sandbox's events, parsed as JSON."""
    await sandbox.ok(
        "POST",
        "/v1/journals",
        {"from_account": day[RF], "to_account": day[SI], "entry_type": "JNLC", "amount": "10.00"},
    )
    until = (await sandbox.ok("GET", "/sandbox/clock"))["now"]
    await sandbox.advance(1)  # the streams end at their until
    window = GetEventsRequest(since=MONDAY_10AM.date(), until=until)
    journals = await off_loop(lambda: first_events(sdk(sandbox, settings, "v2").get_journal_events(window), 10))
    nta = await off_loop(lambda: first_events(sdk(sandbox, settings).get_non_trading_activity_events(window), 10))
    assert {(e["entry_type"], e["status_to"]) for e in journals} == {("JNLC", "queued"), ("JNLC", "executed")}
    assert {e["entry_type"] for e in nta} >= {"MEM", "JNLC"}
