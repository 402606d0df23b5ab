"""Journals over HTTP (docs/broker-api.md "Journals"): JNLC moves, idempotency, limits, fixtures, listing, the
ledger."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from funding.calendar import ET
from tests.support.sandbox import Sandbox, SandboxFactory

SI, RF, FW, DP = "7536050SI", "7536050RF", "7536050FW", "7536050DP"
C1, C2, C3 = "8100000001", "8100000002", "8100000003"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
MONDAY = "2026-11-23"
PENDING_FIXTURE = "top-up /fixtures/status=pending/fixtures/"
REJECTED_FIXTURE = "top-up /fixtures/status=rejected/fixtures/"
EXTERNAL = {"external", "external bank", "market", "Alpaca", "Alpaca (instant funding)"}
"""Ledger counterparties outside the correspondent's books (Alpaca fronts the IF credit)."""


async def journal(sandbox: Sandbox, source: str, target: str, amount: str, **extra: Any) -> tuple[int, Any]:
    """POST /v1/journals for a JNLC between two account numbers; headers go in ``headers=``."""
    headers = extra.pop("headers", {})
    body = {
        "from_account": await sandbox.account_id(source),
        "to_account": await sandbox.account_id(target),
        "entry_type": "JNLC",
        "amount": amount,
        **extra,
    }
    return await sandbox.call("POST", "/v1/journals", body, headers=headers)


async def booked(sandbox: Sandbox, source: str, target: str, amount: str, **extra: Any) -> dict[str, Any]:
    status, payload = await journal(sandbox, source, target, amount, **extra)
    assert status == 200, payload
    return dict(payload)


async def cash(sandbox: Sandbox, *numbers: str) -> dict[str, Decimal]:
    return {n: await sandbox.cash(n) for n in numbers}


async def test_rf_to_si_executes_at_once(sandbox: Sandbox) -> None:
    """A firm-to-firm RF → SI journal above the JNLC limits executes at once and moves the cash."""
    before = await cash(sandbox, RF, SI)
    created = await booked(sandbox, RF, SI, "5000.25", description="top-up")
    assert (created["status"], created["net_amount"], created["entry_type"]) == ("executed", "5000.25", "JNLC")
    assert (created["settle_date"], created["system_date"]) == (MONDAY, MONDAY)
    assert created["from_account"] == await sandbox.account_id(RF)
    assert created["to_account"] == await sandbox.account_id(SI)
    after = await cash(sandbox, RF, SI)
    assert after == {RF: before[RF] - Decimal("5000.25"), SI: before[SI] + Decimal("5000.25")}
    assert (await sandbox.ok("GET", f"/v1/journals/{created['id']}"))["status"] == "executed"


async def test_idempotency_key_returns_the_original_journal(sandbox: Sandbox) -> None:
    """The same Idempotency-Key and body return the first journal without moving money twice; another body is 422."""
    key = {"Idempotency-Key": "rf-si-2026-11-23-topup"}
    first = await booked(sandbox, RF, SI, "100", headers=key)
    again = await booked(sandbox, RF, SI, "100", headers=key)
    assert again["id"] == first["id"]
    assert await sandbox.cash(SI) == Decimal(100)

    status, conflict = await journal(sandbox, RF, SI, "101", headers=key)
    assert (status, conflict["code"]) == (422, 42200001)
    assert await sandbox.cash(SI) == Decimal(100)
    unkeyed = [await booked(sandbox, RF, SI, "100") for _ in range(2)]
    assert unkeyed[0]["id"] != unkeyed[1]["id"]
    assert await sandbox.cash(SI) == Decimal(300)


async def test_journal_above_transaction_limit_waits_for_approval(sandbox: Sandbox) -> None:
    """Into a customer, $50 executes and $50.01 stays pending, moving nothing until approved."""
    assert (await booked(sandbox, RF, C1, "50"))["status"] == "executed"
    before = await cash(sandbox, RF, C1)
    held = await booked(sandbox, RF, C1, "50.01")
    assert (held["status"], held["settle_date"]) == ("pending", None)
    await sandbox.advance(3600)
    assert (await sandbox.ok("GET", f"/v1/journals/{held['id']}"))["status"] == "pending"
    assert await cash(sandbox, RF, C1) == before

    approved = await sandbox.ok("POST", f"/sandbox/journals/{held['id']}/approve")
    assert (approved["status"], approved["settle_date"]) == ("executed", MONDAY)
    assert await cash(sandbox, RF, C1) == {RF: before[RF] - Decimal("50.01"), C1: before[C1] + Decimal("50.01")}
    assert (await sandbox.call("POST", f"/sandbox/journals/{held['id']}/approve"))[0] == 422


async def test_daily_limit_holds_the_journal_that_crosses_it(sandbox: Sandbox) -> None:
    """$1,000 a day into customers (all of them together): the journal that would cross it is pending."""
    for n in range(20):
        assert (await booked(sandbox, RF, f"81{n % 3 + 1:08d}", "50"))["status"] == "executed"
    crossing = await booked(sandbox, RF, C1, "0.01")
    assert crossing["status"] == "pending"
    assert await sandbox.cash(C1) == Decimal(50 * 7)

    await sandbox.set_clock(datetime(2026, 11, 24, 10, 0, tzinfo=ET))
    assert (await booked(sandbox, RF, C1, "50"))["status"] == "executed"


async def test_rejected_journal_moves_nothing(sandbox: Sandbox) -> None:
    """A pending journal rejected by Alpaca ops is rejected and leaves both balances alone."""
    before = await cash(sandbox, RF, C2)
    held = await booked(sandbox, RF, C2, "75")
    rejected = await sandbox.ok("POST", f"/sandbox/journals/{held['id']}/reject")
    assert rejected["status"] == "rejected"
    assert await cash(sandbox, RF, C2) == before
    assert (await sandbox.call("POST", f"/sandbox/journals/{held['id']}/approve"))[0] == 422


async def test_limits_apply_to_firm_journals_when_configured(make_sandbox: SandboxFactory) -> None:
    """With jnlc_limits_apply_to_firm, RF → SI above $50 is pending; $50 still executes."""
    sandbox = await make_sandbox(jnlc_limits_apply_to_firm=True)
    assert (await booked(sandbox, RF, SI, "50.01"))["status"] == "pending"
    assert (await booked(sandbox, RF, SI, "50"))["status"] == "executed"
    assert await sandbox.cash(SI) == Decimal(50)


async def test_customer_to_firm_journal_is_not_held_by_limits(make_sandbox: SandboxFactory) -> None:
    """JNLC limits apply into customers: customer → RF above them executes and uses none of the daily limit."""
    sandbox = await make_sandbox(customer_cash="500", jnlc_daily_limit="100")
    created = await booked(sandbox, C1, RF, "400")
    assert created["status"] == "executed"
    assert await sandbox.cash(C1) == Decimal(100)
    assert [(await booked(sandbox, RF, C2, "50"))["status"] for _ in range(2)] == ["executed", "executed"]
    assert (await booked(sandbox, RF, C2, "0.01"))["status"] == "pending"


async def test_memoposted_buying_power_cannot_be_journaled_out(sandbox: Sandbox) -> None:
    """A customer holding only IF buying power has no cash_transferable: journaling it out is 403."""
    await sandbox.create_transfer(C1, "100")
    await sandbox.advance(1)
    account = await sandbox.trade_account(C1)
    assert (account["cash"], account["memoposts"], account["cash_transferable"]) == ("100.00", "100.00", "0.00")
    status, refused = await journal(sandbox, C1, RF, "10")
    assert (status, refused["code"]) == (403, 40300000)
    assert await sandbox.cash(C1) == Decimal(100)


async def test_firm_without_cash_cannot_fund(sandbox: Sandbox) -> None:
    """SI (empty) cannot journal to a customer: 403, and no journal is recorded."""
    status, _ = await journal(sandbox, SI, C1, "10")
    assert status == 403
    assert await sandbox.ok("GET", "/v1/journals") == []


@pytest.mark.parametrize("target", [C1, SI])
async def test_dp_account_is_never_debited(sandbox: Sandbox, target: str) -> None:
    """The DP deposit account is never debited: 403, its cash unchanged, no journal left behind."""
    before = await sandbox.cash(DP)
    status, _ = await journal(sandbox, DP, target, "10")
    assert status == 403
    assert await sandbox.cash(DP) == before
    assert await sandbox.ok("GET", "/v1/journals") == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"from_account": UNKNOWN}, 404),
        ({"to_account": UNKNOWN}, 404),
        ({"entry_type": "JNLS", "symbol": "AAPL", "qty": "1"}, 422),
        ({"amount": "10.001"}, 422),
        ({"amount": "0"}, 422),
        ({"amount": None}, 400),
        ({"to_account": None}, 400),
        ({"entry_type": None}, 400),
    ],
)
async def test_invalid_journal_is_refused(sandbox: Sandbox, change: dict[str, Any], status: int) -> None:
    """Unknown accounts (404), JNLS or bad amounts (422) and missing fields (400) are refused."""
    body = {
        "from_account": await sandbox.account_id(RF),
        "to_account": await sandbox.account_id(C1),
        "entry_type": "JNLC",
        "amount": "10",
    }
    body = {k: v for k, v in (body | change).items() if v is not None}
    got, payload = await sandbox.call("POST", "/v1/journals", body)
    assert (got, payload["code"] // 100000) == (status, status)
    assert await sandbox.cash(C1) == 0


@pytest.mark.parametrize(("source", "target"), [(C1, C2), (RF, RF)])
async def test_customer_to_customer_and_self_journals_are_422(
    make_sandbox: SandboxFactory, source: str, target: str
) -> None:
    """JNLC between two customers, or from an account to itself, is 422."""
    sandbox = await make_sandbox(customer_cash="100")
    before = await cash(sandbox, source, target)
    status, refused = await journal(sandbox, source, target, "10")
    assert (status, refused["code"] // 100000) == (422, 422)
    assert await cash(sandbox, source, target) == before
    assert await sandbox.ok("GET", "/v1/journals") == []


async def test_pending_fixture_stays_pending(sandbox: Sandbox) -> None:
    """A /fixtures/status=pending/fixtures/ description stays pending, even under the limits and past 8 PM."""
    held = await booked(sandbox, RF, C1, "10", description=PENDING_FIXTURE)
    assert held["status"] == "pending"
    await sandbox.set_clock(datetime(2026, 11, 25, 10, 0, tzinfo=ET))
    assert (await sandbox.ok("GET", f"/v1/journals/{held['id']}"))["status"] == "pending"
    assert await sandbox.cash(C1) == 0


async def test_rejected_fixture_is_rejected_at_8pm(sandbox: Sandbox) -> None:
    """A /fixtures/status=rejected/fixtures/ description is pending until 8 PM ET, then rejected."""
    held = await booked(sandbox, RF, SI, "10", description=REJECTED_FIXTURE)
    assert held["status"] == "pending"
    await sandbox.set_clock(datetime(2026, 11, 23, 19, 59, 59, tzinfo=ET))
    assert (await sandbox.ok("GET", f"/v1/journals/{held['id']}"))["status"] == "pending"
    await sandbox.advance(1)
    assert (await sandbox.ok("GET", f"/v1/journals/{held['id']}"))["status"] == "rejected"
    assert await sandbox.cash(SI) == 0


async def test_delete_cancels_pending_only(sandbox: Sandbox) -> None:
    """DELETE cancels a pending journal (204); an executed one is 422; an unknown id is 404."""
    held = await booked(sandbox, RF, C1, "60")
    assert (await sandbox.call("DELETE", f"/v1/journals/{held['id']}"))[0] == 204
    assert (await sandbox.ok("GET", f"/v1/journals/{held['id']}"))["status"] == "canceled"
    assert (await sandbox.call("POST", f"/sandbox/journals/{held['id']}/approve"))[0] == 422
    assert await sandbox.cash(C1) == 0

    executed = await booked(sandbox, RF, C1, "20")
    assert (await sandbox.call("DELETE", f"/v1/journals/{executed['id']}"))[0] == 422
    assert (await sandbox.call("DELETE", f"/v1/journals/{held['id']}"))[0] == 422
    assert (await sandbox.call("DELETE", f"/v1/journals/{UNKNOWN}"))[0] == 404
    assert (await sandbox.call("GET", f"/v1/journals/{UNKNOWN}"))[0] == 404
    assert await sandbox.cash(C1) == Decimal(20)


async def test_batch_books_each_entry_and_refuses_bad_ones(sandbox: Sandbox) -> None:
    """A batch from RF books each valid entry (limits per entry), marks a bad one refused, and is idempotent."""
    ids = {n: await sandbox.account_id(n) for n in (RF, C1, C2, C3)}
    entries = [
        {"to_account": ids[C1], "amount": "10"},
        {"to_account": UNKNOWN, "amount": "10"},
        {"to_account": ids[C2], "amount": "20.50"},
        {"to_account": ids[C3], "amount": "75"},
    ]
    body = {"entry_type": "JNLC", "from_account": ids[RF], "entries": entries}
    key = {"Idempotency-Key": "rf-batch-2026-11-23"}
    rows = await sandbox.ok("POST", "/v1/journals/batch", body, headers=key)
    assert [r["status"] for r in rows] == ["executed", "refused", "executed", "pending"]
    assert UNKNOWN in rows[1]["error_message"]
    assert [rows[i]["error_message"] for i in (0, 2, 3)] == ["", "", ""]  # the document requires the field
    again = await sandbox.ok("POST", "/v1/journals/batch", body, headers=key)
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert await cash(sandbox, RF, C1, C2, C3) == {
        RF: Decimal(250000) - Decimal("30.50"),
        C1: Decimal(10),
        C2: Decimal("20.50"),
        C3: Decimal(0),
    }


async def test_list_filters(sandbox: Sandbox) -> None:
    """GET /v1/journals filters by creation date, status, entry_type, accounts, and applies limit."""
    ids = {n: await sandbox.account_id(n) for n in (RF, SI, C1, C2)}
    monday_si = await booked(sandbox, RF, SI, "100")
    monday_c1 = await booked(sandbox, RF, C1, "10")
    monday_held = await booked(sandbox, RF, C2, "60")
    await sandbox.set_clock(datetime(2026, 11, 24, 9, 0, tzinfo=ET))
    tuesday_c2 = await booked(sandbox, RF, C2, "5")
    tuesday_back = await booked(sandbox, C2, RF, "5")

    async def listed(**query: str) -> list[str]:
        return [j["id"] for j in await sandbox.ok("GET", "/v1/journals", params=query)]

    everything = [monday_si["id"], monday_c1["id"], monday_held["id"], tuesday_c2["id"], tuesday_back["id"]]
    assert await listed() == everything
    assert await listed(before=MONDAY) == everything[:3]
    assert await listed(after="2026-11-24") == everything[3:]
    assert await listed(after=MONDAY, before=MONDAY) == everything[:3]
    assert await listed(status="pending") == [monday_held["id"]]
    assert await listed(to_account=ids[C2]) == [monday_held["id"], tuesday_c2["id"]]
    assert await listed(from_account=ids[C2]) == [tuesday_back["id"]]
    assert await listed(to_account=ids[SI], from_account=ids[RF]) == [monday_si["id"]]
    assert await listed(entry_type="JNLC", limit="2") == everything[:2]
    assert await listed(entry_type="JNLS") == []
    assert (await sandbox.call("GET", "/v1/journals", params={"limit": "0"}))[0] == 400
    assert (await sandbox.call("GET", "/v1/journals", params={"after": "not-a-date"}))[0] == 400


async def test_ledger_reconciles_with_balances_after_a_mixed_day(make_sandbox: SandboxFactory) -> None:
    """After a mixed day, ledger sums equal every balance and only outside flows change total cash."""
    sandbox = await make_sandbox(customers=3)
    start = await sandbox.ok("GET", "/sandbox/accounts")
    start_total = sum(Decimal(a["cash"]) for a in start["accounts"])
    transfer = await sandbox.create_transfer(C1, "300")
    await sandbox.create_transfer(C2, "40")
    await sandbox.advance(1)
    await booked(sandbox, RF, SI, "350")
    await booked(sandbox, RF, C3, "45")
    held = await booked(sandbox, RF, C3, "55")
    await sandbox.ok("POST", f"/sandbox/journals/{held['id']}/approve")
    await booked(sandbox, C3, RF, "20")
    for account_no, price in ((C1, "10"), (C2, "15")):
        trade = {"account_no": account_no, "symbol": "AAPL", "side": "buy", "qty": "2", "price": price}
        await sandbox.ok("POST", "/sandbox/trades", trade)
    await sandbox.wire(FW, "12.34")
    settlement = {"transfers": [{"instant_transfer_id": transfer["id"]}]}
    await sandbox.ok("POST", "/v1/instant_funding/settlements", settlement)
    await sandbox.advance(30)
    await sandbox.set_clock(datetime(2026, 11, 24, 20, 0, 1, tzinfo=ET))
    assert await sandbox.cash(C2) == Decimal(-30)

    accounts = (await sandbox.ok("GET", "/sandbox/accounts"))["accounts"]
    entries = (await sandbox.ok("GET", "/sandbox/ledger"))["entries"]
    sums: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        sums[entry["account_no"], entry["balance"]] += Decimal(entry["delta"])
        assert sums[entry["account_no"], entry["balance"]] == Decimal(entry["after"])
    for account in accounts:
        for balance in ("cash", "memoposts"):
            assert sums[account["account_number"], balance] == Decimal(account[balance])
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))

    numbers = {a["account_number"] for a in accounts}
    cash_moves = [e for e in entries if e["balance"] == "cash" and e["reason"] != "opening balance"]
    internal = [Decimal(e["delta"]) for e in cash_moves if e["counterparty"] in numbers]
    external = [Decimal(e["delta"]) for e in cash_moves if e["counterparty"] not in numbers]
    assert {e["counterparty"] for e in cash_moves if e["counterparty"] not in numbers} <= EXTERNAL
    assert sum(internal) == 0
    end_total = sum(Decimal(a["cash"]) for a in accounts)
    assert end_total - start_total == sum(external)
    # IF credits 340, the settlement pays 300, the 8 PM cancel takes 40 back, the wire brings 12.34, trades spend 50.
    assert end_total - start_total == Decimal(340) - 300 - 40 + Decimal("12.34") - 50
