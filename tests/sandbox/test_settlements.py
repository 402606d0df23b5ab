"""Settlements over HTTP (docs/broker-api.md "Settlements"): processing, funds, interest, the rules that refuse one."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from funding.calendar import ET
from tests.support.sandbox import Sandbox, SandboxFactory

SI, RF, FW = "7536050SI", "7536050RF", "7536050FW"
SETTLEMENTS = "/v1/instant_funding/settlements"
DEADLINE_1259_50 = datetime(2026, 11, 24, 12, 59, 50, tzinfo=ET)
"""Ten seconds before 1 PM ET on Tuesday, the deadline of Monday's transfers."""
FULL_TRANSMITTER = {
    "originator_full_name": "Ada Lovelace",
    "originator_country": "USA",
    "originator_bank_account_number": "8100000001",
    "originator_bank_name": "Citibank",
}


def customer(n: int) -> str:
    return f"81{n:08d}"


def cents(value: str) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def executed_transfers(sandbox: Sandbox, *amounts: str) -> list[str]:
    """One IF transfer per amount, on customers 1, 2, …, advanced until they are EXECUTED."""
    ids = [(await sandbox.create_transfer(customer(n), amount))["id"] for n, amount in enumerate(amounts, 1)]
    await sandbox.advance(1)
    return [str(i) for i in ids]


async def settle(sandbox: Sandbox, *transfer_ids: str, **extra: Any) -> tuple[int, Any]:
    body = {"transfers": [{"instant_transfer_id": i} for i in transfer_ids], **extra}
    return await sandbox.call("POST", SETTLEMENTS, body)


async def settle_large(sandbox: Sandbox, transfer_ids: list[str]) -> tuple[int, Any]:
    """POST a settlement body too large for aiohttp's ``json=`` (it warns above 1 MiB): stream it instead."""
    raw = json.dumps({"transfers": [{"instant_transfer_id": i} for i in transfer_ids]}).encode()
    headers = {"Content-Type": "application/json"}
    async with sandbox.http.post(sandbox.base_url + SETTLEMENTS, data=io.BytesIO(raw), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def settlement(sandbox: Sandbox, settlement_id: str) -> dict[str, Any]:
    return dict(await sandbox.ok("GET", f"{SETTLEMENTS}/{settlement_id}"))


async def journal_rf_to_si(sandbox: Sandbox, amount: str) -> None:
    body = {
        "from_account": await sandbox.account_id(RF),
        "to_account": await sandbox.account_id(SI),
        "entry_type": "JNLC",
        "amount": amount,
    }
    assert (await sandbox.ok("POST", "/v1/journals", body))["status"] == "executed"


async def fund_si(sandbox: Sandbox, how: str, amount: str) -> None:
    await (sandbox.wire(SI, amount) if how == "wire" else journal_rf_to_si(sandbox, amount))


async def balances(sandbox: Sandbox) -> dict[str, tuple[Decimal, Decimal]]:
    """account number → (cash, memoposts), from the admin view."""
    rows = (await sandbox.ok("GET", "/sandbox/accounts"))["accounts"]
    return {r["account_number"]: (Decimal(r["cash"]), Decimal(r["memoposts"])) for r in rows}


@pytest.mark.parametrize("how", ["journal", "wire"])
async def test_funded_settlement_completes_and_sweeps_excess(sandbox: Sandbox, how: str) -> None:
    """A funded settlement completes 30 s after creation: transfers settle, SI pays, its excess goes to FW."""
    amounts = ("120.00", "80.55")
    total, funded = sum(map(Decimal, amounts)), Decimal("250.00")
    ids = await executed_transfers(sandbox, *amounts)
    await fund_si(sandbox, how, str(funded))
    before = await balances(sandbox)
    seq = len((await sandbox.ok("GET", "/sandbox/ledger"))["entries"])

    status, created = await settle(sandbox, *ids, additional_info="sk-key-1")
    assert status == 200, created
    assert (created["status"], created["total_amount"], created["interest_amount"]) == ("PENDING", "200.55", "0.00")
    assert (created["source_account_number"], created["additional_info"]) == (SI, "sk-key-1")
    await sandbox.advance(29)
    assert (await settlement(sandbox, created["id"]))["status"] == "PENDING"
    await sandbox.advance(1)

    done = await settlement(sandbox, created["id"])
    assert done["status"] == "COMPLETED"
    elapsed = datetime.fromisoformat(done["completed_at"]) - datetime.fromisoformat(done["created_at"])
    assert elapsed == timedelta(seconds=30)
    for transfer_id in ids:
        transfer = await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}")
        assert (transfer["status"], transfer["remaining_payable"]) == ("COMPLETED", "0.00")
    after = await balances(sandbox)
    for n, amount in enumerate(amounts, 1):
        assert after[customer(n)] == (before[customer(n)][0], Decimal(0)) == (Decimal(amount), Decimal(0))
    assert after[SI] == (Decimal(0), Decimal(0))
    assert after[FW][0] - before[FW][0] == funded - total
    assert after[RF] == before[RF]

    ledger = (await sandbox.ok("GET", "/sandbox/ledger", params={"since": str(seq)}))["entries"]
    si_moves = [(e["delta"], e["counterparty"]) for e in ledger if e["account_no"] == SI]
    assert si_moves == [(f"-{total}", "Alpaca"), (f"-{funded - total}", FW)]
    assert [(e["delta"], e["counterparty"]) for e in ledger if e["account_no"] == FW] == [(f"{funded - total}", SI)]
    memo = {(e["account_no"], e["delta"]) for e in ledger if e["balance"] == "memoposts"}
    assert memo == {(customer(n), f"-{amount}") for n, amount in enumerate(amounts, 1)}


async def test_settlement_list_filters_by_statuses(sandbox: Sandbox) -> None:
    """GET settlements?statuses=A,B returns {"settlements": [...]} holding only those statuses."""
    first, second = await executed_transfers(sandbox, "40", "60")
    await sandbox.wire(SI, "40")
    done = (await settle(sandbox, first))[1]["id"]
    await sandbox.advance(30)
    waiting = (await settle(sandbox, second))[1]["id"]

    async def listed(statuses: str | None) -> list[str]:
        params = {"statuses": statuses} if statuses else {}
        payload = await sandbox.ok("GET", SETTLEMENTS, params=params)
        return [s["id"] for s in payload["settlements"]]

    assert await listed(None) == [done, waiting]
    assert await listed("COMPLETED") == [done]
    assert await listed("PENDING,AWAITING_ADDITIONAL_FUNDS") == [waiting]
    await sandbox.advance(30)
    assert await listed("AWAITING_ADDITIONAL_FUNDS") == [waiting]
    assert await listed("FAILED") == []


async def test_second_settlement_refused_while_one_is_in_progress(sandbox: Sandbox) -> None:
    """One PENDING or AWAITING_ADDITIONAL_FUNDS settlement per source blocks another until it ends."""
    first, second, third = await executed_transfers(sandbox, "40", "60", "70")
    _, created = await settle(sandbox, first)

    status, refused = await settle(sandbox, second)
    assert (status, refused["code"]) == (422, 42200015)
    assert created["id"] in refused["message"]
    await sandbox.advance(30)
    assert (await settlement(sandbox, created["id"]))["status"] == "AWAITING_ADDITIONAL_FUNDS"
    assert (await settle(sandbox, second))[0] == 422

    await sandbox.advance(900)
    assert (await settlement(sandbox, created["id"]))["status"] == "FAILED"
    status, after_failure = await settle(sandbox, second)
    assert (status, after_failure["status"]) == (200, "PENDING")
    await sandbox.wire(SI, "60")
    await sandbox.advance(30)
    assert (await settlement(sandbox, after_failure["id"]))["status"] == "COMPLETED"
    assert (await settle(sandbox, third))[0] == 200


async def test_cap_of_50000_transfers_is_checked_before_the_transfers(sandbox: Sandbox) -> None:
    """50,001 transfer ids are refused by the cap (422) even though none exists; 50,000 reach the lookup."""
    unknown = [f"00000000-0000-4000-8000-{n:012d}" for n in range(50_001)]
    status, over = await settle_large(sandbox, unknown)
    assert (status, over["code"]) == (422, 42200011)
    assert "50000" in over["message"]
    assert "50001" in over["message"]

    status, at_cap = await settle_large(sandbox, unknown[:50_000])
    assert status == 404
    assert unknown[0] in at_cap["message"]


@pytest.mark.parametrize(
    ("si_balance", "amounts", "reason"),
    [
        ("0", ("40",), "insufficient balance, available: 0, required: 40"),
        ("10.50", ("25.25", "14.75"), "insufficient balance, available: 10.5, required: 40"),
    ],
)
async def test_short_settlement_waits_then_fails(
    make_sandbox: SandboxFactory, si_balance: str, amounts: tuple[str, ...], reason: str
) -> None:
    """Short SI: AWAITING_ADDITIONAL_FUNDS at 30 s, FAILED 15 min later with Alpaca's reason text."""
    sandbox = await make_sandbox(si_balance=si_balance)
    ids = await executed_transfers(sandbox, *amounts)
    _, created = await settle(sandbox, *ids)
    await sandbox.advance(30)
    assert (await settlement(sandbox, created["id"]))["status"] == "AWAITING_ADDITIONAL_FUNDS"
    await sandbox.advance(899)
    assert (await settlement(sandbox, created["id"]))["status"] == "AWAITING_ADDITIONAL_FUNDS"
    await sandbox.advance(1)

    failed = await settlement(sandbox, created["id"])
    assert (failed["status"], failed.get("reason")) == ("FAILED", reason)
    assert "completed_at" not in failed
    assert await sandbox.cash(SI) == Decimal(si_balance)
    for transfer_id in ids:
        transfer = await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}")
        assert (transfer["status"], transfer["remaining_payable"]) == ("EXECUTED", transfer["amount"])


@pytest.mark.parametrize("how", ["journal", "wire"])
async def test_funds_arriving_while_awaiting_complete_the_settlement(sandbox: Sandbox, how: str) -> None:
    """A wire or journal into SI while AWAITING_ADDITIONAL_FUNDS completes it once SI covers the total."""
    ids = await executed_transfers(sandbox, "25", "15")
    _, created = await settle(sandbox, *ids)
    await sandbox.advance(30)
    await fund_si(sandbox, how, "30")
    assert (await settlement(sandbox, created["id"]))["status"] == "AWAITING_ADDITIONAL_FUNDS"

    await fund_si(sandbox, how, "10")
    done = await settlement(sandbox, created["id"])
    assert done["status"] == "COMPLETED"
    assert datetime.fromisoformat(done["completed_at"]) - datetime.fromisoformat(done["created_at"]) == timedelta(
        seconds=30
    )
    assert await sandbox.cash(SI) == 0
    assert (await sandbox.trade_account(customer(1)))["memoposts"] == "0.00"


async def test_interest_booked_after_creation_fails_the_settlement(make_sandbox: SandboxFactory) -> None:
    """Interest booked at 1 PM after creation fails the settlement; a new one must pay amount plus interest."""
    amount, fed = Decimal("720.00"), Decimal("0.0450")
    interest = cents(str(amount * (fed + Decimal("0.08")) / 360))
    sandbox = await make_sandbox(fed_upper_bound=str(fed))
    (transfer_id,) = await executed_transfers(sandbox, str(amount))
    await sandbox.wire(SI, str(amount))
    await sandbox.set_clock(DEADLINE_1259_50)
    _, created = await settle(sandbox, transfer_id)
    assert created["interest_amount"] == "0.00"
    await sandbox.advance(30)

    failed = await settlement(sandbox, created["id"])
    assert failed["status"] == "FAILED"
    assert "interest" in failed["reason"]
    assert transfer_id in failed["reason"]
    transfer = await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}")
    assert (transfer["total_interest"], transfer["remaining_payable"]) == (str(interest), str(amount + interest))

    status, retry = await settle(sandbox, transfer_id)
    assert status == 200, retry
    assert (retry["total_amount"], retry["interest_amount"]) == (str(amount), str(interest))
    await sandbox.advance(30)
    assert (await settlement(sandbox, retry["id"]))["status"] == "AWAITING_ADDITIONAL_FUNDS"
    await sandbox.wire(SI, str(interest))
    assert (await settlement(sandbox, retry["id"]))["status"] == "COMPLETED"
    assert await sandbox.cash(SI) == 0
    settled = await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}")
    assert (settled["status"], settled["remaining_payable"]) == ("COMPLETED", "0.00")


async def test_invalid_transfer_lists_are_refused(sandbox: Sandbox) -> None:
    """Empty, duplicated, unknown ids and a missing transfers array are refused before anything is booked."""
    (transfer_id,) = await executed_transfers(sandbox, "40")
    unknown = "00000000-0000-4000-8000-000000000001"
    assert (await settle(sandbox))[1]["code"] == 42200010
    status, duplicate = await settle(sandbox, transfer_id, transfer_id)
    assert (status, duplicate["code"]) == (422, 42200013)
    status, missing = await settle(sandbox, transfer_id, unknown)
    assert status == 404
    assert unknown in missing["message"]
    assert (await sandbox.call("POST", SETTLEMENTS, {"additional_info": "x"}))[0] == 400
    assert (await sandbox.ok("GET", SETTLEMENTS))["settlements"] == []
    assert (await settle(sandbox, transfer_id))[0] == 200


async def test_canceled_and_completed_transfers_cannot_be_settled(sandbox: Sandbox) -> None:
    """A CANCELED or COMPLETED transfer in the list makes the request 422, naming the transfer."""
    canceled, completed = await executed_transfers(sandbox, "40", "60")
    assert (await sandbox.call("DELETE", f"/v1/instant_funding/{canceled}"))[0] == 204
    await sandbox.wire(SI, "60")
    await settle(sandbox, completed)
    await sandbox.advance(30)
    assert (await sandbox.ok("GET", f"/v1/instant_funding/{completed}"))["status"] == "COMPLETED"

    for transfer_id, status_name in ((canceled, "CANCELED"), (completed, "COMPLETED")):
        status, refused = await settle(sandbox, transfer_id)
        assert status == 422
        assert transfer_id in refused["message"]
        assert status_name in refused["message"]


async def test_transfer_in_a_settlement_in_progress_cannot_be_deleted(sandbox: Sandbox) -> None:
    """DELETE of a transfer held by a PENDING or AWAITING settlement is 422; once it failed, 204."""
    (transfer_id,) = await executed_transfers(sandbox, "40")
    _, created = await settle(sandbox, transfer_id)
    for wait in (0, 30):
        await sandbox.advance(wait)
        status, refused = await sandbox.call("DELETE", f"/v1/instant_funding/{transfer_id}")
        assert status == 422
        assert created["id"] in refused["message"]
    await sandbox.advance(900)
    assert (await sandbox.call("DELETE", f"/v1/instant_funding/{transfer_id}"))[0] == 204
    assert (await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}"))["status"] == "CANCELED"


@pytest.mark.parametrize("dropped", [*FULL_TRANSMITTER, None])
async def test_financial_institution_requires_transmitter_info(
    make_sandbox: SandboxFactory, dropped: str | None
) -> None:
    """With financial_institution set, each transfer needs name, country, bank account and bank name."""
    sandbox = await make_sandbox(financial_institution=True, si_balance="40")
    (transfer_id,) = await executed_transfers(sandbox, "40")
    info = {k: v for k, v in FULL_TRANSMITTER.items() if k != dropped} | {"originator_city": "San Mateo"}
    body = {"transfers": [{"instant_transfer_id": transfer_id, "transmitter_info": info}]}
    status, payload = await sandbox.call("POST", SETTLEMENTS, body)
    if dropped is None:
        assert (status, payload["status"]) == (200, "PENDING")
        await sandbox.advance(30)
        assert (await settlement(sandbox, payload["id"]))["status"] == "COMPLETED"
        return
    assert (status, payload["code"]) == (422, 42200012)
    named = {name for name in FULL_TRANSMITTER if name in payload["message"]}
    assert named == {dropped}


async def test_financial_institution_names_every_missing_field(make_sandbox: SandboxFactory) -> None:
    """Without transmitter_info at all, the 422 names all four required fields."""
    sandbox = await make_sandbox(financial_institution=True)
    (transfer_id,) = await executed_transfers(sandbox, "40")
    status, payload = await settle(sandbox, transfer_id)
    assert status == 422
    assert all(name in payload["message"] for name in FULL_TRANSMITTER)


async def test_transmitter_info_is_optional_for_other_correspondents(sandbox: Sandbox) -> None:
    """Without the financial_institution flag, a settlement without transmitter_info is accepted."""
    (transfer_id,) = await executed_transfers(sandbox, "40")
    status, payload = await settle(sandbox, transfer_id)
    assert (status, payload["status"]) == (200, "PENDING")
