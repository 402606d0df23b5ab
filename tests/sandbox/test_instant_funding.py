"""Instant-funding transfers over HTTP: create, idempotency, limits, list, get, cancel and reports."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from funding.calendar import ET
from tests.support.sandbox import Sandbox, SandboxFactory

SI = "7536050SI"
C1, C2, C3, C4 = "8100000001", "8100000002", "8100000003", "8100000004"


def assert_error(status: int, payload: Any, expected: int) -> None:
    """The sandbox refused with ``expected`` and Alpaca's ``{"code", "message"}`` body."""
    assert status == expected, payload
    assert set(payload) == {"code", "message"}
    assert payload["code"] // 100000 == expected
    assert isinstance(payload["message"], str)
    assert payload["message"]


async def post_transfer(sb: Sandbox, account_no: str, amount: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"account_no": account_no, "source_account_no": SI, "amount": amount}
    return await sb.call("POST", "/v1/instant_funding", body, headers=headers)


async def transfers(sb: Sandbox, **params: str) -> list[dict[str, Any]]:
    return list(await sb.ok("GET", "/v1/instant_funding", params=params))


async def in_use(sb: Sandbox, account_no: str | None = None) -> Decimal:
    if account_no is None:
        return Decimal((await sb.ok("GET", "/v1/instant_funding/limits"))["amount_in_use"])
    rows = await sb.ok("GET", "/v1/instant_funding/limits/accounts", params={"account_numbers": account_no})
    return Decimal(rows[0]["amount_in_use"])


async def settle(sb: Sandbox, *transfer_ids: str) -> None:
    """Wire what is owed into SI, settle the transfers and let the settlement complete."""
    owed = sum([Decimal((await sb.ok("GET", f"/v1/instant_funding/{i}"))["amount"]) for i in transfer_ids])
    await sb.wire(SI, str(owed))
    body = {"transfers": [{"instant_transfer_id": i} for i in transfer_ids]}
    settlement = await sb.ok("POST", "/v1/instant_funding/settlements", body)
    await sb.advance(30)
    got = await sb.ok("GET", f"/v1/instant_funding/settlements/{settlement['id']}")
    assert got["status"] == "COMPLETED", got


# ---------------------------------------------------------------------- create


async def test_create_is_pending_then_executed_one_sandbox_second_later(make_sandbox: SandboxFactory) -> None:
    """A transfer stays PENDING for 1 s, then EXECUTED raises cash, buying power and memoposts, not equity."""
    sb = await make_sandbox(customer_cash="50")
    before = await sb.trade_account(C1)
    amount = Decimal("500.00")
    created = await sb.create_transfer(C1, str(amount))
    assert created["status"] == "PENDING"
    assert created["created_at"] == datetime(2026, 11, 23, 10, 0, tzinfo=ET).isoformat()
    await sb.advance(0.5)
    assert (await sb.ok("GET", f"/v1/instant_funding/{created['id']}"))["status"] == "PENDING"
    assert await sb.cash(C1) == Decimal(before["cash"])
    await sb.advance(0.5)
    assert (await sb.ok("GET", f"/v1/instant_funding/{created['id']}"))["status"] == "EXECUTED"
    after = await sb.trade_account(C1)
    for field in ("cash", "buying_power", "memoposts"):
        assert Decimal(after[field]) == Decimal(before[field]) + amount, field
    assert after["equity"] == before["equity"]
    money = {k: Decimal(after[k]) for k in ("cash", "long_market_value", "short_market_value", "memoposts")}
    assert Decimal(after["equity"]) == (
        money["cash"] + money["long_market_value"] + money["short_market_value"] - money["memoposts"]
    )


@pytest.mark.parametrize("amount", ["10.001", "0", "0.00", "-5.00"])
async def test_amount_not_positive_cents_is_unprocessable(sandbox: Sandbox, amount: str) -> None:
    """An amount with 3 decimals, zero or negative is refused with 422 and creates nothing."""
    assert_error(*await post_transfer(sandbox, C1, amount), 422)
    assert await transfers(sandbox) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"account_no": "7536050RF", "source_account_no": SI, "amount": "10"}, 422),
        ({"account_no": SI, "source_account_no": SI, "amount": "10"}, 422),
        ({"account_no": C1, "source_account_no": "7536050RF", "amount": "10"}, 422),
        ({"account_no": C1, "source_account_no": "7536050FW", "amount": "10"}, 422),
        ({"account_no": "8199999999", "source_account_no": SI, "amount": "10"}, 404),
        ({"account_no": C1, "source_account_no": SI, "amount": "ten"}, 400),
        ({"account_no": C1, "source_account_no": SI}, 400),
    ],
)
async def test_invalid_create_is_refused_with_an_error_body(
    sandbox: Sandbox, body: dict[str, str], status: int
) -> None:
    """A firm account as customer, a non-SI source, an unknown account or a bad amount is refused."""
    assert_error(*await sandbox.call("POST", "/v1/instant_funding", body), status)
    await sandbox.advance(1)
    assert await transfers(sandbox) == []
    assert (await sandbox.trade_account(C1))["memoposts"] == "0.00"


async def test_same_key_same_body_returns_the_original_transfer(sandbox: Sandbox) -> None:
    """A repeated Idempotency-Key with the same body returns the first transfer and books one memopost."""
    key = str(uuid.uuid4())
    status, first = await post_transfer(sandbox, C1, "120.00", key)
    assert status == 200
    await sandbox.advance(1)
    status, again = await post_transfer(sandbox, C1, "120.00", key)
    assert status == 200
    assert again["id"] == first["id"]
    assert again["status"] == "EXECUTED"
    await sandbox.advance(1)
    assert [t["id"] for t in await transfers(sandbox)] == [first["id"]]
    assert Decimal((await sandbox.trade_account(C1))["memoposts"]) == Decimal("120.00")


async def test_same_key_different_body_is_unprocessable(sandbox: Sandbox) -> None:
    """Reusing an Idempotency-Key with another body is a 422 and creates nothing more."""
    key = str(uuid.uuid4())
    status, first = await post_transfer(sandbox, C1, "120.00", key)
    assert status == 200
    assert_error(*await post_transfer(sandbox, C1, "121.00", key), 422)
    assert_error(*await post_transfer(sandbox, C2, "120.00", key), 422)
    assert [t["id"] for t in await transfers(sandbox)] == [first["id"]]


async def test_concurrent_creates_with_one_key_make_one_transfer(sandbox: Sandbox) -> None:
    """Twenty simultaneous creates under one key yield one transfer and one memopost."""
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(post_transfer(sandbox, C1, "75.50", key) for _ in range(20)))
    assert {status for status, _ in answers} == {200}
    assert len({body["id"] for _, body in answers}) == 1
    await sandbox.advance(1)
    assert len(await transfers(sandbox)) == 1
    assert Decimal((await sandbox.trade_account(C1))["memoposts"]) == Decimal("75.50")
    assert await in_use(sandbox) == Decimal("75.50")


# ---------------------------------------------------------------------- limits


async def test_per_account_limit_refuses_with_403(sandbox: Sandbox) -> None:
    """The 1,000 per-account limit counts unsettled transfers; other accounts are unaffected."""
    await sandbox.create_transfer(C1, "600.00")
    assert_error(*await post_transfer(sandbox, C1, "400.01"), 403)
    rows = await sandbox.ok("GET", "/v1/instant_funding/limits/accounts", params={"account_numbers": f"{C1},{C2}"})
    assert rows == [
        {"account_no": C1, "amount_available": "400.00", "amount_in_use": "600.00", "amount_limit": "1000.00"},
        {"account_no": C2, "amount_available": "1000.00", "amount_in_use": "0.00", "amount_limit": "1000.00"},
    ]
    await sandbox.create_transfer(C1, "400.00")
    await sandbox.create_transfer(C2, "1000.00")
    assert await in_use(sandbox) == Decimal("2000.00")


@pytest.mark.parametrize(
    ("query", "status"), [("", 400), ("account_numbers=", 400), ("account_numbers=7536050SI", 422)]
)
async def test_account_limits_need_customer_account_numbers(sandbox: Sandbox, query: str, status: int) -> None:
    """The per-account limits endpoint requires customer account numbers."""
    assert_error(*await sandbox.call("GET", f"/v1/instant_funding/limits/accounts?{query}"), status)


async def test_correspondent_limit_refuses_with_403_and_frees_on_cancel(make_sandbox: SandboxFactory) -> None:
    """Over the correspondent limit a create is 403; canceling a transfer releases its amount."""
    sb = await make_sandbox(if_correspondent_limit="1500", if_account_limit=None)
    first = await sb.create_transfer(C1, "1000.00")
    await sb.create_transfer(C2, "500.00")
    assert await sb.ok("GET", "/v1/instant_funding/limits") == {
        "amount_available": "0.00",
        "amount_in_use": "1500.00",
        "amount_limit": "1500.00",
    }
    assert_error(*await post_transfer(sb, C3, "0.01"), 403)
    await sb.advance(1)
    assert (await sb.call("DELETE", f"/v1/instant_funding/{first['id']}"))[0] == 204
    assert await in_use(sb) == Decimal("500.00")
    await sb.create_transfer(C3, "1000.00")
    assert await in_use(sb) == Decimal("1500.00")


async def test_settlement_releases_amount_in_use(sandbox: Sandbox) -> None:
    """A settled transfer no longer counts against either limit."""
    kept = await sandbox.create_transfer(C1, "300.00")
    settled = await sandbox.create_transfer(C1, "650.00")
    await sandbox.advance(1)
    assert await in_use(sandbox, C1) == Decimal("950.00")
    await settle(sandbox, settled["id"])
    assert await in_use(sandbox, C1) == Decimal("300.00")
    assert await in_use(sandbox) == Decimal("300.00")
    assert (await sandbox.ok("GET", f"/v1/instant_funding/{kept['id']}"))["status"] == "EXECUTED"
    await sandbox.create_transfer(C1, "700.00")


# ---------------------------------------------------------------------- list and get


async def four_transfers(sb: Sandbox) -> list[dict[str, Any]]:
    """Three Monday-daytime transfers (the third canceled) and one after 8 PM (next cycle)."""
    made = [await sb.create_transfer(C1, "100.00")]
    await sb.advance(60)
    made.append(await sb.create_transfer(C2, "300.00"))
    await sb.advance(60)
    made.append(await sb.create_transfer(C3, "200.00"))
    await sb.ok("DELETE", f"/v1/instant_funding/{made[2]['id']}")
    await sb.set_clock(datetime(2026, 11, 23, 20, 0, tzinfo=ET))
    made.append(await sb.create_transfer(C4, "50.00"))
    await sb.advance(1)
    return made


def z(stamp: str, shift: timedelta = timedelta(0)) -> str:
    return (datetime.fromisoformat(stamp) + shift).astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_list_filters_sorts_and_pages(sandbox: Sandbox) -> None:
    """List honours status, system_date, deadline and before filters, sorting and limit/offset paging."""
    t1, t2, t3, t4 = (t["id"] for t in await four_transfers(sandbox))
    made = {t["id"]: t for t in await transfers(sandbox)}
    assert made[t4]["system_date"] == "2026-11-24"

    async def ids(**params: str) -> list[str]:
        return [t["id"] for t in await transfers(sandbox, **params)]

    assert await ids() == [t1, t2, t3, t4]
    assert await ids(status="CANCELED") == [t3]
    assert await ids(status="EXECUTED") == [t1, t2, t4]
    assert await ids(status="COMPLETED") == []
    assert await ids(system_date="2026-11-24") == [t4]
    assert await ids(deadline="2026-11-24") == [t1, t2, t3]
    assert await ids(deadline="2026-11-24", status="EXECUTED") == [t1, t2]
    assert await ids(before=z(made[t2]["created_at"])) == [t1]
    assert await ids(before=z(made[t2]["created_at"], timedelta(seconds=1))) == [t1, t2]
    assert await ids(sort_by="amount") == [t4, t1, t3, t2]
    assert await ids(sort_by="amount", sort_order="DESC") == [t2, t3, t1, t4]
    assert (await ids(sort_by="deadline", sort_order="DESC"))[0] == t4
    assert await ids(sort_order="DESC") == [t4, t3, t2, t1]
    assert await ids(limit="2") == [t1, t2]
    assert await ids(limit="2", offset="1") == [t2, t3]
    assert await ids(limit="2", offset="3") == [t4]
    assert await ids(offset="4") == []


async def test_list_shows_changes_made_between_pages(sandbox: Sandbox) -> None:
    """Listings are cached until a transfer changes: execution, cancellation and creation show at once."""
    t1 = (await sandbox.create_transfer(C1, "100.00"))["id"]
    await sandbox.advance(0.5)
    t2 = (await sandbox.create_transfer(C2, "200.00"))["id"]
    assert [t["status"] for t in await transfers(sandbox, limit="1")] == ["PENDING"]
    assert [t["id"] for t in await transfers(sandbox, status="PENDING")] == [t1, t2]
    await sandbox.advance(0.6)  # t1 executes, t2 not yet
    assert [t["id"] for t in await transfers(sandbox, status="PENDING")] == [t2]
    assert [t["status"] for t in await transfers(sandbox, limit="1")] == ["EXECUTED"]
    await sandbox.ok("DELETE", f"/v1/instant_funding/{t1}")
    assert [t["id"] for t in await transfers(sandbox, status="EXECUTED")] == []
    t3 = (await sandbox.create_transfer(C3, "50.00"))["id"]
    assert [t["id"] for t in await transfers(sandbox, sort_by="amount")] == [t3, t1, t2]
    assert [t["id"] for t in await transfers(sandbox, limit="1", offset="2")] == [t3]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "SETTLED"},
        {"system_date": "2026-13-01"},
        {"deadline": "tomorrow"},
        {"before": "2026-11-23T10:00:00"},
        {"before": "yesterday"},
        {"sort_by": "id"},
        {"sort_order": "asc"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
    ],
)
async def test_list_refuses_bad_parameters(sandbox: Sandbox, params: dict[str, str]) -> None:
    """An unknown status, a bad date or date-time, sort field, order, limit or offset is a 400."""
    assert_error(*await sandbox.call("GET", "/v1/instant_funding", params=params), 400)


@pytest.mark.parametrize("offset", ["0", "-1"])
async def test_an_offset_below_the_documents_minimum_is_a_422(sandbox: Sandbox, offset: str) -> None:
    """offset has a minimum of 1 in Alpaca's document: 0 (or less) is refused as Alpaca would, with a 422."""
    assert_error(*await sandbox.call("GET", "/v1/instant_funding", params={"offset": offset}), 422)


async def test_get_returns_the_transfer_or_404(sandbox: Sandbox) -> None:
    """GET by id returns the transfer with Alpaca's fields; an unknown id is 404."""
    created = await sandbox.create_transfer(C1, "42.10")
    got = await sandbox.ok("GET", f"/v1/instant_funding/{created['id']}")
    assert got == created
    assert (got["amount"], got["remaining_payable"], got["total_interest"]) == ("42.10", "42.10", "0.00")
    assert (got["account_no"], got["source_account_no"], got["interests"], got["fees"]) == (C1, SI, [], [])
    assert_error(*await sandbox.call("GET", f"/v1/instant_funding/{uuid.uuid4()}"), 404)


# ---------------------------------------------------------------------- cancel


async def test_cancel_removes_memopost_and_cash(make_sandbox: SandboxFactory) -> None:
    """DELETE answers 204, the transfer is CANCELED and its memopost and cash are gone."""
    sb = await make_sandbox(customer_cash="80")
    created = await sb.create_transfer(C1, "500.00")
    await sb.advance(1)
    assert await sb.cash(C1) == Decimal("580.00")
    assert await sb.call("DELETE", f"/v1/instant_funding/{created['id']}") == (204, None)
    got = await sb.ok("GET", f"/v1/instant_funding/{created['id']}")
    assert got["status"] == "CANCELED"
    account = await sb.trade_account(C1)
    assert (Decimal(account["cash"]), Decimal(account["memoposts"])) == (Decimal("80.00"), Decimal(0))
    entries = (await sb.ok("GET", "/sandbox/ledger", params={"account_no": C1}))["entries"]
    removed = sorted((e["balance"], e["delta"]) for e in entries if e["ref"] == created["id"] and e["delta"][0] == "-")
    assert removed == [("cash", "-500.00"), ("memoposts", "-500.00")]


async def test_cancel_before_execution_never_books_a_memopost(sandbox: Sandbox) -> None:
    """A transfer canceled while PENDING never touches the account, even after its execution time."""
    created = await sandbox.create_transfer(C1, "90.00")
    assert (await sandbox.call("DELETE", f"/v1/instant_funding/{created['id']}"))[0] == 204
    await sandbox.advance(5)
    assert (await sandbox.ok("GET", f"/v1/instant_funding/{created['id']}"))["status"] == "CANCELED"
    entries = (await sandbox.ok("GET", "/sandbox/ledger", params={"account_no": C1}))["entries"]
    assert [e["reason"] for e in entries] == ["opening balance"]
    assert (await sandbox.trade_account(C1))["memoposts"] == "0.00"


async def test_cancel_refuses_final_transfers_and_unknown_ids(sandbox: Sandbox) -> None:
    """Canceling a CANCELED or COMPLETED transfer is 422; an unknown id is 404."""
    canceled = await sandbox.create_transfer(C1, "10.00")
    completed = await sandbox.create_transfer(C2, "20.00")
    await sandbox.advance(1)
    await sandbox.ok("DELETE", f"/v1/instant_funding/{canceled['id']}")
    await settle(sandbox, completed["id"])
    assert_error(*await sandbox.call("DELETE", f"/v1/instant_funding/{canceled['id']}"), 422)
    assert_error(*await sandbox.call("DELETE", f"/v1/instant_funding/{completed['id']}"), 422)
    assert_error(*await sandbox.call("DELETE", f"/v1/instant_funding/{uuid.uuid4()}"), 404)
    got = await sandbox.ok("GET", f"/v1/instant_funding/{completed['id']}")
    assert (got["status"], got["remaining_payable"]) == ("COMPLETED", "0.00")
    account = await sandbox.trade_account(C2)
    assert (account["cash"], account["memoposts"]) == ("20.00", "0.00")


# ---------------------------------------------------------------------- reports


async def test_reports_summary_and_detail_total_one_cycle(sandbox: Sandbox) -> None:
    """Reports total a cycle's live transfers per source account, with interest once it is booked."""
    t1, t2, t3, t4 = await four_transfers(sandbox)
    monday = {"system_date": "2026-11-23"}
    summary = await sandbox.ok("GET", "/v1/instant_funding/reports", params=monday)
    owed = Decimal(t1["amount"]) + Decimal(t2["amount"])
    assert summary == [
        {
            "system_date": "2026-11-23",
            "account_no": SI,
            "total_amount_owed": str(owed),
            "total_interest_penalty": "0.00",
            "deadline": "2026-11-24",
        }
    ]
    detail = await sandbox.ok("GET", "/v1/instant_funding/reports", params={**monday, "report_type": "detail"})
    assert [t["id"] for t in detail[0]["instant_funding_transfers"]] == [t1["id"], t2["id"]]
    assert {k: v for k, v in detail[0].items() if k != "instant_funding_transfers"} == summary[0]
    default = await sandbox.ok("GET", "/v1/instant_funding/reports")
    assert [(r["system_date"], r["total_amount_owed"]) for r in default] == [("2026-11-24", t4["amount"])]

    await sandbox.set_clock(datetime(2026, 11, 24, 13, 0, tzinfo=ET))
    detail = await sandbox.ok("GET", "/v1/instant_funding/reports", params={**monday, "report_type": "detail"})
    interest = sum(Decimal(t["total_interest"]) for t in detail[0]["instant_funding_transfers"])
    assert interest > 0
    assert Decimal(detail[0]["total_interest_penalty"]) == interest
    assert Decimal(detail[0]["total_amount_owed"]) == owed
    assert t3["id"] not in {t["id"] for t in detail[0]["instant_funding_transfers"]}


async def test_reports_refuse_bad_parameters(sandbox: Sandbox) -> None:
    """An unknown report_type or a malformed system_date is a 400."""
    assert_error(*await sandbox.call("GET", "/v1/instant_funding/reports", params={"report_type": "full"}), 400)
    assert_error(*await sandbox.call("GET", "/v1/instant_funding/reports", params={"system_date": "11/23"}), 400)
