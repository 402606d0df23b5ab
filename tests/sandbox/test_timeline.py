"""The sandbox's business timeline over HTTP: cycle rollover, 1 PM interest, 8 PM cancellation, T+2, T+3."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from funding.calendar import ET
from tests.support.sandbox import Sandbox, SandboxFactory

SI, RF = "7536050SI", "7536050RF"
C1 = "8100000001"
BIG_JNLC = {"jnlc_transaction_limit": "1000000", "jnlc_daily_limit": "1000000"}

MON = date(2026, 11, 23)
TUE = date(2026, 11, 24)
WED = date(2026, 11, 25)
FRI = date(2026, 11, 27)
"""Thanksgiving week 2026: Thursday 11-26 is an NYSE holiday."""


def et(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=ET)


def one_day_interest(amount: str, fed_upper_bound: str) -> Decimal:
    """amount × (fed upper bound + 8 %) / 360, rounded half-up to the cent."""
    rate = Decimal(fed_upper_bound) + Decimal("0.08")
    return (Decimal(amount) * rate / 360).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def transfer(sb: Sandbox, transfer_id: str) -> dict[str, Any]:
    return dict(await sb.ok("GET", f"/v1/instant_funding/{transfer_id}"))


async def admin_account(sb: Sandbox, account_no: str) -> dict[str, Any]:
    rows = (await sb.ok("GET", "/sandbox/accounts"))["accounts"]
    return dict(next(r for r in rows if r["account_number"] == account_no))


async def buy(sb: Sandbox, symbol: str, qty: str, price: str) -> None:
    await sb.ok(
        "POST", "/sandbox/trades", {"account_no": C1, "symbol": symbol, "side": "buy", "qty": qty, "price": price}
    )


# ---------------------------------------------------------------------- system_date and deadline


@pytest.mark.parametrize(
    ("created", "system_date", "deadline"),
    [
        pytest.param(et(MON, 19, 59, 59), MON, TUE, id="mon-before-8pm"),
        pytest.param(et(MON, 20), TUE, WED, id="mon-at-8pm"),
        pytest.param(et(date(2026, 11, 20), 20), MON, TUE, id="fri-at-8pm"),
        pytest.param(et(date(2026, 11, 21), 10), MON, TUE, id="saturday"),
        pytest.param(et(date(2026, 11, 22), 21), MON, TUE, id="sunday-after-8pm"),
        pytest.param(et(WED, 19, 59, 59), WED, FRI, id="wed-before-thanksgiving"),
        pytest.param(et(WED, 20), FRI, date(2026, 11, 30), id="wed-8pm-before-thanksgiving"),
        pytest.param(et(date(2026, 11, 26), 12), FRI, date(2026, 11, 30), id="thanksgiving-day"),
        pytest.param(et(date(2026, 10, 30), 19, 59, 59), date(2026, 10, 30), date(2026, 11, 2), id="edt-fri-before"),
        pytest.param(et(date(2026, 10, 30), 20), date(2026, 11, 2), date(2026, 11, 3), id="edt-fri-8pm"),
        pytest.param(et(date(2026, 11, 2), 19, 59, 59), date(2026, 11, 2), date(2026, 11, 3), id="est-mon-before"),
        pytest.param(et(date(2026, 11, 2), 20), date(2026, 11, 3), date(2026, 11, 4), id="est-mon-8pm"),
        pytest.param(et(date(2026, 3, 6), 20), date(2026, 3, 9), date(2026, 3, 10), id="est-fri-8pm-before-dst"),
        pytest.param(et(date(2026, 3, 9), 19, 59, 59), date(2026, 3, 9), date(2026, 3, 10), id="edt-mon-before"),
        pytest.param(et(date(2026, 3, 9), 20), date(2026, 3, 10), date(2026, 3, 11), id="edt-mon-8pm"),
    ],
)
async def test_system_date_and_deadline_roll_over_at_8pm_et(
    make_sandbox: SandboxFactory, created: datetime, system_date: date, deadline: date
) -> None:
    """A transfer's system_date moves to the next trading day at 8 PM ET or off days; deadline is the next one."""
    sb = await make_sandbox(start_at=created.astimezone(UTC))
    got = await sb.create_transfer(C1, "10.00")
    assert (got["system_date"], got["deadline"]) == (system_date.isoformat(), deadline.isoformat())
    assert datetime.fromisoformat(got["created_at"]) == created


@pytest.mark.parametrize(
    ("created_utc", "system_date"),
    [
        pytest.param(datetime(2026, 10, 30, 23, 59, 59, tzinfo=UTC), date(2026, 10, 30), id="edt-19:59:59"),
        pytest.param(datetime(2026, 10, 31, 0, 0, tzinfo=UTC), date(2026, 11, 2), id="edt-8pm-is-00Z"),
        pytest.param(datetime(2026, 11, 3, 0, 0, tzinfo=UTC), date(2026, 11, 2), id="est-00Z-is-7pm"),
        pytest.param(datetime(2026, 11, 3, 1, 0, tzinfo=UTC), date(2026, 11, 3), id="est-8pm-is-01Z"),
        pytest.param(datetime(2026, 3, 7, 0, 30, tzinfo=UTC), date(2026, 3, 6), id="est-7:30pm-before-dst"),
        pytest.param(datetime(2026, 3, 10, 0, 0, tzinfo=UTC), date(2026, 3, 10), id="edt-8pm-is-00Z-after-dst"),
    ],
)
async def test_8pm_cutoff_follows_daylight_saving_time(
    make_sandbox: SandboxFactory, created_utc: datetime, system_date: date
) -> None:
    """The 8 PM ET cycle cutoff is 00:00Z under EDT and 01:00Z under EST (DST ends 11-01, starts 03-08)."""
    sb = await make_sandbox(start_at=created_utc)
    got = await sb.create_transfer(C1, "10.00")
    assert got["system_date"] == system_date.isoformat()


# ---------------------------------------------------------------------- 1 PM interest


@pytest.mark.parametrize(
    ("amount", "fed"),
    [("1000.00", "0.045"), ("14.40", "0.045"), ("777.77", "0.0525"), ("0.01", "0.045")],
)
async def test_1pm_books_exactly_one_day_of_interest(make_sandbox: SandboxFactory, amount: str, fed: str) -> None:
    """At 1 PM ET on the deadline an unsettled transfer books one interest entry, rounded half-up, once."""
    sb = await make_sandbox(fed_upper_bound=fed)
    created = await sb.create_transfer(C1, amount)
    await sb.set_clock(et(TUE, 12, 59, 59))
    assert (await transfer(sb, created["id"]))["interests"] == []
    await sb.advance(1)
    got = await transfer(sb, created["id"])
    expected = one_day_interest(amount, fed)
    assert [(i["date"], Decimal(i["amount"])) for i in got["interests"]] == [(TUE.isoformat(), expected)]
    assert datetime.fromisoformat(got["interests"][0]["created_at"]) == et(TUE, 13)
    assert Decimal(got["total_interest"]) == expected
    assert Decimal(got["remaining_payable"]) == Decimal(amount) + expected
    assert got["status"] == "EXECUTED"
    await sb.set_clock(et(TUE, 19, 59, 59))
    assert len((await transfer(sb, created["id"]))["interests"]) == 1


async def test_interest_rounds_half_up_at_half_a_cent(make_sandbox: SandboxFactory) -> None:
    """14.40 × 12.5 % / 360 is exactly half a cent, which rounds up to 0.01 (not to even 0.00)."""
    sb = await make_sandbox(fed_upper_bound="0.045")
    created = await sb.create_transfer(C1, "14.40")
    await sb.set_clock(et(TUE, 13))
    assert (await transfer(sb, created["id"]))["total_interest"] == "0.01"


async def test_settled_transfer_books_no_interest_and_is_not_canceled(make_sandbox: SandboxFactory) -> None:
    """A transfer settled before 1 PM on its deadline books no interest and stays COMPLETED at 8 PM."""
    sb = await make_sandbox(si_balance="250.00")
    created = await sb.create_transfer(C1, "250.00")
    await sb.advance(1)
    body = {"transfers": [{"instant_transfer_id": created["id"]}]}
    await sb.ok("POST", "/v1/instant_funding/settlements", body)
    await sb.set_clock(et(TUE, 20, 0, 1))
    got = await transfer(sb, created["id"])
    assert (got["status"], got["interests"], got["total_interest"]) == ("COMPLETED", [], "0.00")
    assert await sb.cash(C1) == Decimal("250.00")


async def test_deadline_across_a_weekend_books_interest_on_monday_only(make_sandbox: SandboxFactory) -> None:
    """A Friday transfer is due Monday: no interest or cancellation over the weekend, one entry Monday 1 PM."""
    sb = await make_sandbox(start_at=et(date(2026, 11, 20), 10))
    created = await sb.create_transfer(C1, "1000.00")
    assert created["deadline"] == MON.isoformat()
    for weekend_day in (date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)):
        await sb.set_clock(et(weekend_day, 20, 0, 1))
        got = await transfer(sb, created["id"])
        assert (got["status"], got["interests"]) == ("EXECUTED", [])
    await sb.set_clock(et(MON, 12, 59, 59))
    assert (await transfer(sb, created["id"]))["interests"] == []
    await sb.advance(1)
    got = await transfer(sb, created["id"])
    assert [(i["date"], i["amount"]) for i in got["interests"]] == [
        (MON.isoformat(), str(one_day_interest("1000.00", "0.045")))
    ]


# ---------------------------------------------------------------------- 8 PM cancellation


async def test_8pm_cancels_and_leaves_the_spent_amount_as_a_debit(make_sandbox: SandboxFactory) -> None:
    """At exactly 8 PM ET on the deadline the transfer is CANCELED; spent buying power becomes negative cash."""
    sb = await make_sandbox()
    amount, spent = Decimal("500.00"), Decimal(40) * Decimal("10.00")
    created = await sb.create_transfer(C1, str(amount))
    await sb.advance(1)
    await buy(sb, "AAPL", "40", "10.00")
    await sb.set_clock(et(TUE, 19, 59, 59))
    assert (await transfer(sb, created["id"]))["status"] == "EXECUTED"
    assert await sb.cash(C1) == amount - spent
    await sb.advance(1)
    assert (await transfer(sb, created["id"]))["status"] == "CANCELED"
    account = await sb.trade_account(C1)
    assert Decimal(account["cash"]) == -spent
    assert (account["memoposts"], account["buying_power"]) == ("0.00", "0.00")
    assert Decimal(account["long_market_value"]) == spent
    assert Decimal(account["equity"]) == -spent + spent
    limits = await sb.ok("GET", "/v1/instant_funding/limits/accounts", params={"account_numbers": C1})
    assert limits[0]["amount_in_use"] == "0.00"
    assert (await sb.ok("GET", "/v1/instant_funding/limits"))["amount_in_use"] == "0.00"


@pytest.mark.parametrize(
    ("created", "interest_utc", "cancel_utc"),
    [
        pytest.param(
            et(date(2026, 10, 30), 10),
            datetime(2026, 11, 2, 18, 0, tzinfo=UTC),
            datetime(2026, 11, 3, 1, 0, tzinfo=UTC),
            id="deadline-after-dst-ends",
        ),
        pytest.param(
            et(date(2026, 3, 6), 10),
            datetime(2026, 3, 9, 17, 0, tzinfo=UTC),
            datetime(2026, 3, 10, 0, 0, tzinfo=UTC),
            id="deadline-after-dst-starts",
        ),
    ],
)
async def test_1pm_and_8pm_follow_daylight_saving_time(
    make_sandbox: SandboxFactory, created: datetime, interest_utc: datetime, cancel_utc: datetime
) -> None:
    """Interest and cancellation fire at 1 PM and 8 PM local ET on a deadline just after a DST change."""
    sb = await make_sandbox(start_at=created)
    made = await sb.create_transfer(C1, "100.00")
    await sb.set_clock(interest_utc - timedelta(seconds=1))
    assert (await transfer(sb, made["id"]))["interests"] == []
    await sb.advance(1)
    assert len((await transfer(sb, made["id"]))["interests"]) == 1
    await sb.set_clock(cancel_utc - timedelta(seconds=1))
    assert (await transfer(sb, made["id"]))["status"] == "EXECUTED"
    await sb.advance(1)
    assert (await transfer(sb, made["id"]))["status"] == "CANCELED"


# ---------------------------------------------------------------------- T+2 margin call, T+3 liquidation


async def lapsed_with_positions(sb: Sandbox) -> tuple[str, Decimal]:
    """Customer cash 100 + IF 500, buys AAPL 400 and MSFT 50; returns (transfer id, debit after 8 PM)."""
    created = await sb.create_transfer(C1, "500.00")
    await sb.advance(1)
    await buy(sb, "AAPL", "40", "10.00")
    await buy(sb, "MSFT", "10", "5.00")
    return created["id"], Decimal("100.00") + Decimal("500.00") - Decimal(400) - Decimal(50) - Decimal("500.00")


async def test_margin_call_on_t2_and_liquidation_on_t3(make_sandbox: SandboxFactory) -> None:
    """A debit gets a margin call at 09:00 ET T+2; at 09:30 ET T+3 the largest position is sold to cover it."""
    sb = await make_sandbox(customer_cash="100")
    _, debit = await lapsed_with_positions(sb)
    await sb.set_clock(et(WED, 8, 59, 59))
    account = await admin_account(sb, C1)
    assert (Decimal(account["cash"]), account["margin_call_on"]) == (debit, None)
    await sb.advance(1)
    assert (await admin_account(sb, C1))["margin_call_on"] == WED.isoformat()
    for not_yet in (et(WED, 9, 30), et(date(2026, 11, 26), 9, 30), et(FRI, 9, 29, 59)):
        await sb.set_clock(not_yet)
        account = await admin_account(sb, C1)
        assert (account["liquidated_on"], len(account["positions"])) == (None, 2), not_yet
    await sb.advance(1)
    account = await admin_account(sb, C1)
    assert account["liquidated_on"] == FRI.isoformat()
    assert [p["symbol"] for p in account["positions"]] == ["MSFT"]
    assert Decimal(account["cash"]) == debit + Decimal(40) * Decimal("10.00")
    assert Decimal(account["cash"]) >= 0


async def test_debit_cured_by_journal_before_t3_is_not_liquidated(make_sandbox: SandboxFactory) -> None:
    """A JNLC RF → customer covering the debit after the margin call prevents the T+3 liquidation."""
    sb = await make_sandbox(customer_cash="100", **BIG_JNLC)
    _, debit = await lapsed_with_positions(sb)
    await sb.set_clock(et(WED, 10))
    assert (await admin_account(sb, C1))["margin_call_on"] == WED.isoformat()
    body = {
        "from_account": await sb.account_id(RF),
        "to_account": await sb.account_id(C1),
        "entry_type": "JNLC",
        "amount": str(-debit),
    }
    assert (await sb.ok("POST", "/v1/journals", body))["status"] == "executed"
    await sb.set_clock(et(FRI, 10))
    account = await admin_account(sb, C1)
    assert (account["liquidated_on"], account["margin_call_on"]) == (None, None)
    assert sorted(p["symbol"] for p in account["positions"]) == ["AAPL", "MSFT"]
    assert Decimal(account["cash"]) == 0


async def test_a_jump_of_days_fires_every_rule_in_time_order(make_sandbox: SandboxFactory) -> None:
    """One clock jump over a week books interest, then cancels, then margin-calls, then liquidates."""
    sb = await make_sandbox(customer_cash="100")
    transfer_id, debit = await lapsed_with_positions(sb)
    late = await sb.create_transfer("8100000002", "60.00")
    await sb.set_clock(et(date(2026, 11, 30), 12))
    booked = (await sb.ok("GET", "/sandbox/ledger", params={"account_no": "8100000002"}))["entries"]
    assert [(datetime.fromisoformat(e["at"]), e["balance"], e["delta"]) for e in booked if e["ref"] == late["id"]] == [
        (et(MON, 10, 0, 2), "cash", "60.00"),
        (et(MON, 10, 0, 2), "memoposts", "60.00"),
        (et(TUE, 20), "memoposts", "-60.00"),
        (et(TUE, 20), "cash", "-60.00"),
    ]
    got = await transfer(sb, transfer_id)
    assert got["status"] == "CANCELED"
    assert [datetime.fromisoformat(i["created_at"]) for i in got["interests"]] == [et(TUE, 13)]
    entries = (await sb.ok("GET", "/sandbox/ledger", params={"account_no": C1}))["entries"]
    canceled = [e for e in entries if e["ref"] == transfer_id and e["delta"].startswith("-")]
    assert {datetime.fromisoformat(e["at"]) for e in canceled} == {et(TUE, 20)}
    sold = [e for e in entries if e["reason"].startswith("sell")]
    assert [(datetime.fromisoformat(e["at"]), Decimal(e["delta"])) for e in sold] == [(et(FRI, 9, 30), Decimal(400))]
    account = await admin_account(sb, C1)
    assert (account["liquidated_on"], Decimal(account["cash"])) == (FRI.isoformat(), debit + 400)
    stamps = [datetime.fromisoformat(e["at"]) for e in (await sb.ok("GET", "/sandbox/ledger"))["entries"]]
    assert stamps == sorted(stamps)


async def test_a_jump_fires_1pm_interest_before_a_settlement_due_after_it(make_sandbox: SandboxFactory) -> None:
    """A settlement created at 12:59:50 and due at 13:00:20 sees the 1 PM interest and fails, in one jump."""
    sb = await make_sandbox(si_balance="1000.00")
    created = await sb.create_transfer(C1, "100.00")
    await sb.set_clock(et(TUE, 12, 59, 50))
    body = {"transfers": [{"instant_transfer_id": created["id"]}]}
    settlement = await sb.ok("POST", "/v1/instant_funding/settlements", body)
    await sb.set_clock(et(TUE, 14))
    got = await transfer(sb, created["id"])
    assert (got["status"], len(got["interests"])) == ("EXECUTED", 1)
    failed = await sb.ok("GET", f"/v1/instant_funding/settlements/{settlement['id']}")
    assert failed["status"] == "FAILED"
    assert datetime.fromisoformat(failed["updated_at"]) == et(TUE, 13, 0, 20)
    assert Decimal((await admin_account(sb, SI))["cash"]) == Decimal("1000.00")


# ---------------------------------------------------------------------- ledger


async def test_ledger_reconciles_with_every_account_balance(make_sandbox: SandboxFactory) -> None:
    """After transfers, a settlement, a cancel, a lapse, trades, a journal and a wire, ledger sums equal balances."""
    sb = await make_sandbox(customer_cash="100", **BIG_JNLC)
    await lapsed_with_positions(sb)
    settled = await sb.create_transfer("8100000002", "300.00")
    dropped = await sb.create_transfer("8100000003", "200.00")
    await sb.create_transfer("8100000004", "30.00")
    await sb.advance(1)
    await sb.ok("DELETE", f"/v1/instant_funding/{dropped['id']}")
    await sb.wire(SI, "350.00")
    await sb.ok("POST", "/v1/instant_funding/settlements", {"transfers": [{"instant_transfer_id": settled["id"]}]})
    journal = {
        "from_account": await sb.account_id(RF),
        "to_account": await sb.account_id("8100000005"),
        "entry_type": "JNLC",
        "amount": "75.25",
    }
    await sb.ok("POST", "/v1/journals", journal)
    await sb.wire("8100000006", "12.34")
    await sb.set_clock(et(date(2026, 11, 30), 12))
    sums: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in (await sb.ok("GET", "/sandbox/ledger"))["entries"]:
        sums[entry["account_no"], entry["balance"]] += Decimal(entry["delta"])
        assert Decimal(entry["after"]) == sums[entry["account_no"], entry["balance"]], entry
    accounts = (await sb.ok("GET", "/sandbox/accounts"))["accounts"]
    assert len(accounts) == 14
    for account in accounts:
        for balance in ("cash", "memoposts"):
            assert sums[account["account_number"], balance] == Decimal(account[balance]), (account, balance)
    assert Decimal((await admin_account(sb, "7536050FW"))["cash"]) == Decimal("350.00") - Decimal("300.00")
