"""The sandbox speaks Alpaca's wire format: every example's fields, JSON types, decimals and enums."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from funding import models
from funding.calendar import at_et
from funding.money import loads_exact
from tests.support.sandbox import Sandbox

EXAMPLES: dict[str, Any] = loads_exact((Path(__file__).parent.parent / "fixtures" / "part_b_examples.json").read_text())
DECIMAL = re.compile(r"^-?\d+\.\d{2}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
IF_STATUSES = {"PENDING", "EXECUTED", "COMPLETED", "CANCELED", "FAILED"}
SETTLEMENT_STATUSES = {"PENDING", "AWAITING_ADDITIONAL_FUNDS", "COMPLETED", "FAILED"}
JOURNAL_STATUSES = {
    "queued", "sent_to_clearing", "pending", "executed", "activity_created",
    "rejected", "canceled", "refused", "deleted", "correct",
}  # fmt: skip
NTA_STATUSES = {"executed", "correct", "canceled", "pending"}
CUSTOMER = "8100000001"
SI = "7536050SI"


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def assert_shape(example: dict[str, Any], actual: dict[str, Any], nullable: frozenset[str] = frozenset()) -> None:
    """``actual`` has every field of ``example`` with the same JSON type (null-or-string where nullable)."""
    for key, expected in example.items():
        assert key in actual, f"missing field {key!r}"
        got = actual[key]
        if expected is None or key in nullable:
            assert json_type(got) in ("null", "string"), (key, got)
        else:
            assert json_type(got) == json_type(expected), (key, expected, got)
        if isinstance(expected, dict):
            assert_shape(expected, got)
        if isinstance(expected, list) and expected and isinstance(expected[0], dict):
            for item in got:
                assert_shape(expected[0], item)


def assert_decimals(actual: dict[str, Any], *fields: str) -> None:
    for field in fields:
        assert DECIMAL.match(actual[field]), (field, actual[field])


def assert_parses(model: type[BaseModel], example: Any, actual: Any) -> None:
    """The funding model parses both the example and the sandbox's object."""
    model.model_validate(example)
    model.model_validate(actual)


async def first_event(sandbox: Sandbox, path: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first event on an SSE stream (replayed from 2000-01-01) for which ``wanted`` is true."""
    async with sandbox.http.get(sandbox.base_url + path, params={"since": "2000-01-01"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(5):
            while line := await resp.content.readline():
                if line.startswith(b"data: "):
                    event: dict[str, Any] = loads_exact(line[len(b"data: ") :])
                    if wanted(event):
                        return event
    raise AssertionError(f"no wanted event on {path}")


async def executed_transfer(sandbox: Sandbox, amount: str, account_no: str = CUSTOMER) -> dict[str, Any]:
    transfer = await sandbox.create_transfer(account_no, amount)
    await sandbox.advance(1)
    return dict(await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}"))


async def test_if_transfer_matches_the_guide_example(sandbox: Sandbox) -> None:
    """POST /v1/instant_funding returns the InstantFunding shape with decimal-string amounts."""
    example = EXAMPLES["if_transfer"]
    created = await sandbox.create_transfer(CUSTOMER, "20")
    await sandbox.advance(1)
    executed = await sandbox.ok("GET", f"/v1/instant_funding/{created['id']}")
    assert (created["status"], executed["status"]) == ("PENDING", "EXECUTED")
    for body in (created, executed):
        assert_shape(example, body)
        assert_decimals(body, "amount", "remaining_payable", "total_interest")
        assert body["status"] in IF_STATUSES
        assert DAY.match(body["system_date"])
        assert DAY.match(body["deadline"])
        assert str(uuid.UUID(body["id"])) == body["id"]
        assert_parses(models.InstantFunding, example, body)
    listed = await sandbox.ok("GET", "/v1/instant_funding")
    assert isinstance(listed, list)
    assert_shape(example, listed[0])


async def test_interest_entries_have_the_documented_fields(sandbox: Sandbox) -> None:
    """After 1 PM on the deadline, interests[] items carry id, date, amount, status, created_at, reconciled_at."""
    transfer = await executed_transfer(sandbox, "500")
    await sandbox.set_clock(at_et(date.fromisoformat(transfer["deadline"]), time(13, 0, 1)))
    body = await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}")
    assert_shape(EXAMPLES["if_transfer"], body)
    (interest,) = body["interests"]
    assert set(interest) >= {"id", "date", "amount", "status", "created_at", "reconciled_at"}
    assert_decimals(interest, "amount")
    assert interest["status"] in IF_STATUSES
    assert json_type(interest["reconciled_at"]) in ("null", "string")
    assert_decimals(body, "total_interest", "remaining_payable")
    assert Decimal(body["remaining_payable"]) == Decimal(body["amount"]) + Decimal(interest["amount"])
    models.InstantFunding.model_validate(body)


async def test_limits_match_the_examples(sandbox: Sandbox) -> None:
    """Correspondent and account limits have the limit fields as decimal strings."""
    await sandbox.create_transfer(CUSTOMER, "100")
    correspondent = await sandbox.ok("GET", "/v1/instant_funding/limits")
    assert_shape(EXAMPLES["correspondent_limit"], correspondent)
    assert_decimals(correspondent, "amount_available", "amount_in_use", "amount_limit")
    assert_parses(models.CorrespondentLimit, EXAMPLES["correspondent_limit"], correspondent)
    accounts = await sandbox.ok("GET", "/v1/instant_funding/limits/accounts", params={"account_numbers": CUSTOMER})
    assert isinstance(accounts, list)
    assert len(accounts) == 1
    assert_shape(EXAMPLES["account_limits"][0], accounts[0])
    assert_decimals(accounts[0], "amount_available", "amount_in_use", "amount_limit")
    assert accounts[0]["amount_in_use"] == "100.00"
    for example, actual in zip(EXAMPLES["account_limits"], accounts, strict=True):
        assert_parses(models.AccountLimit, example, actual)


@pytest.mark.parametrize("report_type", ["summary", "detail"])
async def test_reports_match_the_examples(sandbox: Sandbox, report_type: str) -> None:
    """GET /v1/instant_funding/reports returns report rows; detail nests full InstantFunding objects."""
    example = EXAMPLES[f"report_{report_type}"]
    first = await sandbox.create_transfer(CUSTOMER, "10")
    await sandbox.create_transfer("8100000002", "20")
    rows = await sandbox.ok(
        "GET",
        "/v1/instant_funding/reports",
        params={"report_type": report_type, "system_date": first["system_date"]},
    )
    assert isinstance(rows, list)
    assert len(rows) == 1
    (row,) = rows
    assert_shape(example[0], row)
    assert_decimals(row, "total_amount_owed", "total_interest_penalty")
    assert row["total_amount_owed"] == "30.00"
    if report_type == "detail":
        assert [t["amount"] for t in row["instant_funding_transfers"]] == ["10.00", "20.00"]
        for nested in row["instant_funding_transfers"]:
            assert_shape(EXAMPLES["if_transfer"], nested)
    else:
        assert "instant_funding_transfers" not in row
    assert_parses(models.IFReport, example[0], row)


async def test_settlement_created_and_completed_match_the_examples(sandbox: Sandbox) -> None:
    """A settlement is PENDING at creation and COMPLETED with completed_at, both shaped like Alpaca's."""
    transfer = await executed_transfer(sandbox, "20")
    await sandbox.wire(SI, "20.00")
    body = {"transfers": [{"instant_transfer_id": transfer["id"], "transmitter_info": {}}]}
    created = await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
    assert created["status"] == "PENDING"
    assert_shape(EXAMPLES["settlement_created"], created)
    assert_decimals(created, "total_amount", "interest_amount")
    assert_parses(models.Settlement, EXAMPLES["settlement_created"], created)
    await sandbox.advance(30)
    completed = await sandbox.ok("GET", f"/v1/instant_funding/settlements/{created['id']}")
    assert completed["status"] == "COMPLETED"
    assert_shape(EXAMPLES["settlement_completed"], completed)
    assert_decimals(completed, "total_amount", "interest_amount")
    assert_parses(models.Settlement, EXAMPLES["settlement_completed"], completed)
    listed = await sandbox.ok("GET", "/v1/instant_funding/settlements", params={"statuses": "COMPLETED"})
    assert [s["id"] for s in listed["settlements"]] == [created["id"]]
    assert all(s["status"] in SETTLEMENT_STATUSES for s in listed["settlements"])


async def test_settlement_failed_matches_the_example(sandbox: Sandbox) -> None:
    """An unfunded settlement fails with a reason worded like the guide's example."""
    transfer = await executed_transfer(sandbox, "40")
    body = {"transfers": [{"instant_transfer_id": transfer["id"], "transmitter_info": {}}]}
    created = await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
    await sandbox.advance(30)
    waiting = await sandbox.ok("GET", f"/v1/instant_funding/settlements/{created['id']}")
    assert waiting["status"] == "AWAITING_ADDITIONAL_FUNDS"
    await sandbox.advance(900)
    failed = await sandbox.ok("GET", f"/v1/instant_funding/settlements/{created['id']}")
    assert failed["status"] == "FAILED"
    assert_shape(EXAMPLES["settlement_failed"], failed)
    assert_decimals(failed, "total_amount", "interest_amount")
    assert failed["reason"] == "insufficient balance, available: 0, required: 40"
    assert_parses(models.Settlement, EXAMPLES["settlement_failed"], failed)


@pytest.mark.parametrize(("amount", "status"), [("1000", "pending"), ("10", "executed")])
async def test_journal_matches_the_example(sandbox: Sandbox, amount: str, status: str) -> None:
    """POST /v1/journals returns the Journal shape; above the $50 JNLC limit it stays pending."""
    rf_id, customer_id = await sandbox.account_id("7536050RF"), await sandbox.account_id(CUSTOMER)
    request = {"from_account": rf_id, "to_account": customer_id, "entry_type": "JNLC", "amount": amount}
    journal = await sandbox.ok("POST", "/v1/journals", request)
    example = EXAMPLES["journal"]
    assert_shape(example, journal, nullable=frozenset({"settle_date", "system_date"}))
    assert_decimals(journal, "net_amount")
    assert journal["status"] == status
    assert journal["status"] in JOURNAL_STATUSES
    assert (journal["from_account"], journal["to_account"]) == (rf_id, customer_id)
    assert (journal["symbol"], journal["qty"], journal["price"]) == (None, None, None)
    assert_parses(models.Journal, example, journal)


async def test_nta_event_matches_the_example(sandbox: Sandbox) -> None:
    """/v1/events/nta sends NonTradeActivityEvent with net_amount as a JSON number (exactly)."""
    customer_id = await sandbox.account_id(CUSTOMER)
    rf_id = await sandbox.account_id("7536050RF")
    await sandbox.ok(
        "POST", "/v1/journals", {"from_account": rf_id, "to_account": customer_id, "entry_type": "JNLC", "amount": "10"}
    )
    event = await first_event(
        sandbox, "/v1/events/nta", lambda e: e["entry_type"] == "JNLC" and e["account_id"] == customer_id
    )
    example = EXAMPLES["nta_event"]
    assert json_type(example["net_amount"]) == "number"
    assert_shape(example, event)
    assert event["net_amount"] == Decimal("10")
    assert event["status"] in NTA_STATUSES
    assert len(event["event_ulid"]) == 26
    assert DAY.match(event["system_date"])
    assert DAY.match(event["settle_date"])
    assert_parses(models.NTAEvent, example, event)


async def test_journal_status_event_matches_the_example(sandbox: Sandbox) -> None:
    """/v2/events/journals/status sends JournalStatusEventV2 with the documented fields and enums."""
    rf_id, customer_id = await sandbox.account_id("7536050RF"), await sandbox.account_id(CUSTOMER)
    key = str(uuid.uuid4())
    request = {"from_account": rf_id, "to_account": customer_id, "entry_type": "JNLC", "amount": "10"}
    journal = await sandbox.ok("POST", "/v1/journals", request, headers={"Idempotency-Key": key})
    event = await first_event(
        sandbox,
        "/v2/events/journals/status",
        lambda e: e["journal_id"] == journal["id"] and e["status_to"] == "executed",
    )
    assert_shape(EXAMPLES["journal_status_event"], event, nullable=frozenset({"idempotency_key", "description"}))
    assert (event["status_from"], event["idempotency_key"], event["idempotency_key_type"]) == ("queued", key, "single")
    assert event["entry_type"] in ("JNLC", "JNLS")
    assert event["status_to"] in JOURNAL_STATUSES
    assert_parses(models.JournalStatusEvent, EXAMPLES["journal_status_event"], event)


async def test_mem_activity_event_matches_the_schema(sandbox: Sandbox) -> None:
    """/v2beta1/events/activities sends a MEM ActivityEventV2 with details.system_date and transfer_id."""
    transfer = await executed_transfer(sandbox, "20")
    event = await first_event(
        sandbox,
        "/v2beta1/events/activities",
        lambda e: e["activity_type"] == "MEM" and e["details"].get("transfer_id") == transfer["id"],
    )
    assert_shape(EXAMPLES["activity_mem_event"], event)
    assert event["details"]["system_date"] == transfer["system_date"]
    assert (event["status"], event["currency"]) == ("executed", "USD")
    assert event["account_id"] == await sandbox.account_id(CUSTOMER)
    assert_decimals(event, "net_amount", "qty")
    assert_parses(models.ActivityEvent, EXAMPLES["activity_mem_event"], event)


async def test_trade_account_has_the_documented_money_fields(sandbox: Sandbox) -> None:
    """GET /v1/trading/accounts/{id}/account carries the trade account's fields as decimal strings; equity excludes
    memoposts."""
    await executed_transfer(sandbox, "50")
    account = await sandbox.trade_account(CUSTOMER)
    example = EXAMPLES["trade_account"]
    assert_shape(example, account)
    assert_decimals(account, *(k for k in example if k not in ("id", "account_number")))
    assert account["account_number"] == CUSTOMER
    equity = Decimal(account["cash"]) + Decimal(account["long_market_value"]) - Decimal(account["memoposts"])
    assert Decimal(account["equity"]) == equity
    assert_parses(models.TradeAccount, example, account)


async def test_clock_matches_the_example(sandbox: Sandbox) -> None:
    """GET /v1/clock returns {timestamp, is_open, next_open, next_close} with ET offsets."""
    clock = await sandbox.ok("GET", "/v1/clock")
    assert_shape(EXAMPLES["clock"], clock)
    assert clock["is_open"] is True
    assert clock["timestamp"] == "2026-11-23T10:00:00-05:00"
    assert (clock["next_open"], clock["next_close"]) == ("2026-11-24T09:30:00-05:00", "2026-11-23T16:00:00-05:00")


async def test_calendar_days_match_the_example(sandbox: Sandbox) -> None:
    """GET /v1/calendar rows have the calendar's fields and formats, and reflect the Thanksgiving week closures."""
    days = await sandbox.ok("GET", "/v1/calendar", params={"start": "2026-11-23", "end": "2026-11-27"})
    for day in days:
        assert_shape(EXAMPLES["calendar_day"], day)
        assert re.match(r"^\d{2}:\d{2}$", day["open"])
        assert re.match(r"^\d{4}$", day["session_open"])
    assert [d["date"] for d in days] == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27"]
    assert (days[-1]["close"], days[-1]["settlement_date"]) == ("13:00", "2026-11-30")


async def test_jit_limits_match_the_schema(sandbox: Sandbox) -> None:
    """GET /v1/transfers/jit/limits has the JIT limit fields as decimal strings."""
    limits = await sandbox.ok("GET", "/v1/transfers/jit/limits")
    example = EXAMPLES["jit_limits"]
    assert_shape(example, limits)
    assert_decimals(limits, *(k for k in example if k != "correspondent"))
    assert_parses(models.JITLimits, example, limits)


async def test_error_body_is_code_and_message(sandbox: Sandbox) -> None:
    """Errors are {"code": number, "message": string} with code = status × 100000 + n."""
    status, body = await sandbox.call("GET", f"/v1/instant_funding/{uuid.uuid4()}")
    assert status == 404
    assert (json_type(body["code"]), json_type(body["message"])) == ("number", "string")
    assert body["code"] // 100000 == 404
