"""JIT securities funding in the sandbox: trades, reports, limits, ledgers (docs/broker-api.md "JIT securities
funding")."""

from __future__ import annotations

import csv
import io
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from funding.calendar import at_et
from tests.support.sandbox import MONDAY_10AM, Sandbox, SandboxFactory

DETAIL_COLUMNS = [
    "trns_id", "external_id", "summary_categrory", "account_id", "account_no", "symbol", "system_date",
    "trade_date", "trade_time", "settle_date", "entry_type", "side", "qty", "price", "gross_amt", "commission",
    "net_amt", "description", "status", "order_id", "client_order_id",
]  # fmt: skip
"""The detail report's columns in the seed's order, Alpaca's spelling ``summary_categrory`` included."""
LEDGER_IDS = {
    "2896b9e2-3198-44cd-a08e-4cc4079aee33": "Securities JIT IN",
    "7f88e5a2-8662-449c-8bd0-07cf5bc7632e": "Just In Time Out Wash - JITS",
    "8090a021-33ea-4b9d-8586-c91df416d952": "Just In Time Receivables - JITS",
    "92b2095b-6370-483e-b6e9-5483bcc0fc1c": "Securities JIT JT",
}
RECEIVABLES = "8090a021-33ea-4b9d-8586-c91df416d952"
MONDAY = date(2026, 11, 23)
TUESDAY = date(2026, 11, 24)
CUSTOMER = "8100000001"


async def jit_sandbox(make_sandbox: SandboxFactory, **seed: Any) -> Sandbox:
    """A sandbox whose customers hold $1,000 of settled cash each."""
    return await make_sandbox(customer_cash="1000", **seed)


async def trade(
    sandbox: Sandbox, side: str, qty: str, price: str, account_no: str = CUSTOMER, **extra: str
) -> tuple[int, Any]:
    body = {"account_no": account_no, "symbol": "AAPL", "side": side, "qty": qty, "price": price, **extra}
    return await sandbox.call("POST", "/sandbox/trades", body)


async def report(sandbox: Sandbox, report_type: str, day: date) -> tuple[int, Any]:
    params = {"report_type": report_type, "system_date": day.isoformat()}
    return await sandbox.call("GET", "/v1/transfers/jit/reports", params=params)


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    header = next(csv.reader(io.StringIO(text)))
    return header, list(csv.DictReader(io.StringIO(text)))


async def after_reports_ready(sandbox: Sandbox, day: date) -> None:
    await sandbox.set_clock(at_et(day, time(23, 30, 1)))


async def test_buy_spends_buying_power_and_sell_returns_it(make_sandbox: SandboxFactory) -> None:
    """A buy lowers cash and buying power by qty × price + commission; a sell adds the net proceeds."""
    sandbox = await jit_sandbox(make_sandbox)
    before = await sandbox.trade_account(CUSTOMER)
    status, bought = await trade(sandbox, "buy", "3", "12.50", commission="1.00")
    assert status == 200
    cost = Decimal("3") * Decimal("12.50") + Decimal("1.00")
    assert bought["net_amt"] == f"{-cost:.2f}"
    assert bought["system_date"] == MONDAY.isoformat()
    after = await sandbox.trade_account(CUSTOMER)
    assert Decimal(after["buying_power"]) == Decimal(before["buying_power"]) - cost
    assert Decimal(after["cash"]) == Decimal(before["cash"]) - cost
    status, sold = await trade(sandbox, "sell", "1", "14.00")
    assert (status, sold["net_amt"]) == (200, "14.00")
    assert await sandbox.cash(CUSTOMER) == Decimal(before["cash"]) - cost + Decimal("14.00")


async def test_buy_beyond_buying_power_is_refused(make_sandbox: SandboxFactory) -> None:
    """A buy costing more than the buying power is a 403 and changes nothing."""
    sandbox = await make_sandbox(customer_cash="100")
    status, body = await trade(sandbox, "buy", "11", "10.00")
    assert status == 403
    assert body["code"] // 100000 == 403
    assert "buying power" in body["message"]
    assert await sandbox.cash(CUSTOMER) == Decimal("100.00")
    await after_reports_ready(sandbox, MONDAY)
    _, rows = csv_rows((await report(sandbox, "detail", MONDAY))[1]["detail"])
    assert rows == []


async def test_instant_funding_buying_power_can_be_spent(sandbox: Sandbox) -> None:
    """Buying power from an executed IF transfer pays for a buy; one cent more is refused."""
    await sandbox.create_transfer(CUSTOMER, "50")
    await sandbox.advance(1)
    assert (await trade(sandbox, "buy", "4", "10.00"))[0] == 200
    assert (await sandbox.trade_account(CUSTOMER))["buying_power"] == "10.00"
    assert (await trade(sandbox, "buy", "1", "10.01"))[0] == 403


async def test_reports_are_404_until_2330_et(make_sandbox: SandboxFactory) -> None:
    """Detail and net_summary of a trade date are 404 at 23:29:59 ET and available at 23:30:01 ET."""
    sandbox = await jit_sandbox(make_sandbox)
    await trade(sandbox, "buy", "1", "10.00")
    for report_type in ("detail", "net_summary"):
        assert (await report(sandbox, report_type, MONDAY))[0] == 404
    await sandbox.set_clock(at_et(MONDAY, time(23, 29, 59)))
    status, body = await report(sandbox, "detail", MONDAY)
    assert status == 404
    assert "11:30 PM" in body["message"]
    await sandbox.advance(2)
    for report_type in ("detail", "net_summary"):
        status, body = await report(sandbox, report_type, MONDAY)
        assert status == 200
        assert set(body) == {report_type}


async def test_detail_report_lists_each_trade_with_the_seed_columns(make_sandbox: SandboxFactory) -> None:
    """The detail CSV has exactly the seed's columns in order and one TRD row per executed trade."""
    sandbox = await jit_sandbox(make_sandbox)
    account_id = await sandbox.account_id(CUSTOMER)
    _, buy = await trade(sandbox, "buy", "2", "10.00", commission="0.50")
    _, sell = await trade(sandbox, "sell", "1", "11.25")
    await after_reports_ready(sandbox, MONDAY)
    status, body = await report(sandbox, "detail", MONDAY)
    assert status == 200
    header, rows = csv_rows(body["detail"])
    assert header == DETAIL_COLUMNS
    assert [r["order_id"] for r in rows] == [buy["order_id"], sell["order_id"]]
    first, second = rows
    assert (first["summary_categrory"], first["side"], first["net_amt"]) == ("in_t1", "buy", "-20.50")
    assert (first["gross_amt"], first["commission"]) == ("20.00", "0.50")
    assert (second["summary_categrory"], second["side"], second["net_amt"]) == ("out_t1", "sell", "11.25")
    for row in rows:
        assert (row["account_id"], row["account_no"], row["symbol"]) == (account_id, CUSTOMER, "AAPL")
        assert (row["entry_type"], row["status"]) == ("TRD", "executed")
        assert (row["system_date"], row["trade_date"]) == (MONDAY.isoformat(), MONDAY.isoformat())
        assert row["settle_date"] == TUESDAY.isoformat()
        assert row["trade_time"] == "10:00:00"
        assert Decimal(row["gross_amt"]) == Decimal(row["qty"]) * Decimal(row["price"])


async def test_net_summary_t1_is_the_sum_of_detail_net_amounts(make_sandbox: SandboxFactory) -> None:
    """net_summary has columns t0,t1,t2 and one row; t1 sums net_amt (negative = due to Alpaca)."""
    sandbox = await jit_sandbox(make_sandbox, customers=3)
    await trade(sandbox, "buy", "5", "20.00")
    await trade(sandbox, "buy", "3", "7.33", account_no="8100000002", commission="0.99")
    await trade(sandbox, "sell", "2", "21.10")
    await after_reports_ready(sandbox, MONDAY)
    _, detail_rows = csv_rows((await report(sandbox, "detail", MONDAY))[1]["detail"])
    header, rows = csv_rows((await report(sandbox, "net_summary", MONDAY))[1]["net_summary"])
    assert header == ["t0", "t1", "t2"]
    assert len(rows) == 1
    expected = sum((Decimal(r["net_amt"]) for r in detail_rows), Decimal(0))
    assert expected < 0
    assert Decimal(rows[0]["t1"]) == expected
    assert (rows[0]["t0"], rows[0]["t2"]) == ("0.00", "0.00")


async def test_trades_after_8pm_belong_to_the_next_trade_date(make_sandbox: SandboxFactory) -> None:
    """A trade at 21:00 ET is in the next trading day's report, not today's."""
    sandbox = await jit_sandbox(make_sandbox)
    await sandbox.set_clock(at_et(MONDAY, time(21, 0)))
    _, late = await trade(sandbox, "buy", "1", "10.00")
    assert late["system_date"] == TUESDAY.isoformat()
    await after_reports_ready(sandbox, MONDAY)
    assert csv_rows((await report(sandbox, "detail", MONDAY))[1]["detail"])[1] == []
    assert (await report(sandbox, "detail", TUESDAY))[0] == 404
    await after_reports_ready(sandbox, TUESDAY)
    _, rows = csv_rows((await report(sandbox, "detail", TUESDAY))[1]["detail"])
    assert [r["order_id"] for r in rows] == [late["order_id"]]


async def test_limits_in_use_is_buys_minus_sells(make_sandbox: SandboxFactory) -> None:
    """in_use_limit = executed_buys − executed_sells (no open orders in the sandbox)."""
    sandbox = await jit_sandbox(make_sandbox, jit_daily_net_limit="5000")
    await trade(sandbox, "buy", "10", "10.00")
    await trade(sandbox, "sell", "3", "10.10")
    limits = await sandbox.ok("GET", "/v1/transfers/jit/limits")
    assert (limits["executed_buys"], limits["executed_sells"]) == ("100.00", "30.30")
    assert limits["in_use_limit"] == "69.70"
    assert (limits["open_buys"], limits["open_sells"]) == ("0.00", "0.00")
    assert limits["daily_net_limit"] == "5000.00"


async def test_buys_halt_at_the_daily_net_limit_and_reset_at_8pm(make_sandbox: SandboxFactory) -> None:
    """A buy that would exceed jit_daily_net_limit is 403; a sell frees room; usage resets at 8 PM ET."""
    sandbox = await jit_sandbox(make_sandbox, jit_daily_net_limit="100")
    assert (await trade(sandbox, "buy", "6", "10.00"))[0] == 200
    status, body = await trade(sandbox, "buy", "5", "10.00")
    assert status == 403
    assert "daily net limit" in body["message"]
    assert (await trade(sandbox, "buy", "4", "10.00"))[0] == 200
    assert (await sandbox.ok("GET", "/v1/transfers/jit/limits"))["in_use_limit"] == "100.00"
    assert (await trade(sandbox, "buy", "1", "0.01"))[0] == 403
    assert (await trade(sandbox, "sell", "1", "10.00"))[0] == 200
    assert (await trade(sandbox, "buy", "1", "10.00"))[0] == 200
    await sandbox.set_clock(at_et(MONDAY, time(19, 59, 59)))
    assert (await sandbox.ok("GET", "/v1/transfers/jit/limits"))["in_use_limit"] == "100.00"
    await sandbox.advance(1)
    limits = await sandbox.ok("GET", "/v1/transfers/jit/limits")
    assert (limits["executed_buys"], limits["executed_sells"], limits["in_use_limit"]) == ("0.00", "0.00", "0.00")
    assert (await trade(sandbox, "buy", "6", "10.00"))[0] == 200


async def test_ledgers_are_an_array(sandbox: Sandbox) -> None:
    """GET /v1/transfers/jit/ledgers is an array of the 4 ledgers (the document's shape) with unix created_at."""
    ledgers = await sandbox.ok("GET", "/v1/transfers/jit/ledgers")
    assert {row["id"]: row["ledger_name"] for row in ledgers} == LEDGER_IDS
    for row in ledgers:
        assert row["status"] == "active"
        assert row["created_at"] == str(int(MONDAY_10AM.timestamp()))


async def test_receivables_balances_book_each_days_net_due(make_sandbox: SandboxFactory) -> None:
    """The receivables ledger books each trade date's net due to Alpaca, within start_date/end_date."""
    sandbox = await jit_sandbox(make_sandbox)
    await trade(sandbox, "buy", "10", "10.00")
    await sandbox.set_clock(at_et(TUESDAY, time(10, 0)))
    await trade(sandbox, "buy", "5", "10.00")
    await trade(sandbox, "sell", "2", "10.00")
    params = {"start_date": MONDAY.isoformat(), "end_date": TUESDAY.isoformat()}
    both = await sandbox.ok("GET", f"/v1/transfers/jit/{RECEIVABLES}/balances", params=params)
    assert (both["id"], both["ledger_name"]) == (RECEIVABLES, LEDGER_IDS[RECEIVABLES])
    assert [(t["system_date"], t["amount"], t["balance"]) for t in both["transactions"]] == [
        (MONDAY.isoformat(), "100.00", "100.00"),
        (TUESDAY.isoformat(), "30.00", "130.00"),
    ]
    assert (both["starting_balance"], both["ending_balance"], both["activity_amount"]) == ("0.00", "130.00", "2")
    params = {"start_date": TUESDAY.isoformat(), "end_date": TUESDAY.isoformat()}
    tuesday = await sandbox.ok("GET", f"/v1/transfers/jit/{RECEIVABLES}/balances", params=params)
    assert (tuesday["starting_balance"], tuesday["ending_balance"], tuesday["activity_amount"]) == (
        "100.00",
        "130.00",
        "1",
    )
    for row in tuesday["transactions"]:
        assert set(row) == {
            "account_id", "account_no", "account_name", "system_date", "entry_type", "description",
            "contra_account_name", "amount", "balance",
        }  # fmt: skip


async def test_other_ledgers_have_no_transactions(make_sandbox: SandboxFactory) -> None:
    """Only the receivables ledger books activity; an unknown ledger id is 404."""
    sandbox = await jit_sandbox(make_sandbox)
    await trade(sandbox, "buy", "1", "10.00")
    params = {"start_date": MONDAY.isoformat(), "end_date": MONDAY.isoformat()}
    other = await sandbox.ok("GET", "/v1/transfers/jit/2896b9e2-3198-44cd-a08e-4cc4079aee33/balances", params=params)
    assert (other["transactions"], other["activity_amount"]) == ([], "0")
    status, _ = await sandbox.call(
        "GET", "/v1/transfers/jit/00000000-0000-0000-0000-000000000000/balances", params=params
    )
    assert status == 404


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/transfers/jit/reports", {"system_date": "2026-11-23"}),
        ("/v1/transfers/jit/reports", {"report_type": "detail"}),
        ("/v1/transfers/jit/reports", {"report_type": "detail", "system_date": "yesterday"}),
        (f"/v1/transfers/jit/{RECEIVABLES}/balances", {"start_date": "2026-11-23"}),
        (f"/v1/transfers/jit/{RECEIVABLES}/balances", {"end_date": "2026-11-23"}),
        (f"/v1/transfers/jit/{RECEIVABLES}/balances", {}),
    ],
)
async def test_missing_or_bad_parameters_are_400(sandbox: Sandbox, path: str, params: dict[str, str]) -> None:
    """Required JIT parameters missing (or not a date) answer 400 with a code/message body."""
    status, body = await sandbox.call("GET", path, params=params)
    assert status == 400
    assert body["code"] // 100000 == 400


async def test_the_seed_sample_request_is_understood(make_sandbox: SandboxFactory) -> None:
    """The seed's sample (report_type net_summary.csv, system_date MM-DD-YYYY) returns the net summary."""
    sandbox = await jit_sandbox(make_sandbox)
    await trade(sandbox, "buy", "1", "10.00")
    await after_reports_ready(sandbox, MONDAY)
    params = {"report_type": "net_summary.csv", "system_date": MONDAY.strftime("%m-%d-%Y")}
    body = await sandbox.ok("GET", "/v1/transfers/jit/reports", params=params)
    assert csv_rows(body["net_summary"])[1] == [{"t0": "0.00", "t1": "-10.00", "t2": "0.00"}]
