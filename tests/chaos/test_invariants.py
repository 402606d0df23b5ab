"""chaos/invariants.py finds each kind of violation in books built by hand, and none in clean ones."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from chaos.actions import Pause, Record
from chaos.invariants import NAMES, Books, check
from funding.calendar import ET
from store.audit import Ledger

DEADLINE = date(2026, 11, 27)
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=ET)


def journal(n: int, intent: str, at: datetime = NOON, status: str = "executed") -> dict[str, Any]:
    return {
        "id": f"j{n}",
        "description": f"settlekeeper {intent}: SI lacks what is due",
        "status": status,
        "created_at": at.isoformat(),
    }


def settlement(n: int, intent: str, status: str = "COMPLETED") -> dict[str, Any]:
    return {
        "id": f"s{n}",
        "additional_info": f"settlekeeper intent {intent}",
        "status": status,
        "created_at": NOON.isoformat(),
    }


def transfer(n: int, status: str = "COMPLETED", interest: str = "0.00") -> dict[str, Any]:
    return {"id": f"t{n}", "deadline": DEADLINE.isoformat(), "status": status, "total_interest": interest}


def customer(number: str, margin_call_on: str | None = None) -> dict[str, Any]:
    return {
        "id": number,
        "account_number": number,
        "firm": False,
        "margin_call_on": margin_call_on,
        "liquidated_on": None,
    }


def record() -> Record:
    found = Record()
    found.last_deadline = DEADLINE
    return found


async def audited(client: aioredis.Redis, *ids: str) -> None:
    for broker_id in ids:
        name = "journal_id" if broker_id.startswith("j") else "settlement_id"
        await Ledger(client).note("test", "settle", "k", None, **{name: broker_id})


def clean_books() -> Books:
    return Books(
        journals=[journal(1, "fund-2026-11-27-1")],
        settlements=[settlement(1, "settle-2026-11-27-2")],
        transfers=[transfer(1), transfer(2)],
        accounts=[customer("8100000001")],
        ids={},
    )


async def test_clean_books_break_no_invariant(session_redis_url: str, async_redis: aioredis.Redis) -> None:
    """Every movement unique, audited, on time and outside pauses: 0 violations."""
    await audited(async_redis, "j1", "s1")
    verdict = await check(clean_books(), record(), session_redis_url, [])
    assert verdict.total == 0, verdict.violations


async def test_each_kind_of_violation_is_found(session_redis_url: str, async_redis: aioredis.Redis) -> None:
    """A second journal for one intent, a late transfer, a margin call, a journal made while paused, one not
    audited, an RF-short day without its alert and an alert never resolved: one violation each."""
    books = clean_books()
    books.journals.append(journal(2, "fund-2026-11-27-1", at=NOON + timedelta(minutes=5)))
    books.transfers.append(transfer(3, status="CANCELED", interest="0.05"))
    books.accounts.append(customer("8100000002", margin_call_on="2026-11-30"))
    found = record()
    found.pauses.append(Pause(NOON + timedelta(minutes=1), NOON + timedelta(minutes=10)))
    found.rf_short_deadlines.add(date(2026, 11, 25))
    events = [
        {"event_action": "trigger", "dedup_key": "unsettled-1230-2026-11-25", "payload": {"class": "unsettled_at_1230"}}
    ]
    await audited(async_redis, "j1", "s1")
    verdict = await check(books, found, session_redis_url, events)
    counts = {name: len(v) for name, v in verdict.violations.items()}
    assert counts == {
        NAMES[0]: 1,
        NAMES[1]: 1,
        NAMES[2]: 1,
        NAMES[3]: 1,
        NAMES[4]: 1,
        NAMES[5]: 1,
        NAMES[6]: 1,
        NAMES[7]: 0,
        NAMES[8]: 0,
    }, verdict.violations
    assert "t3 due 2026-11-27: CANCELED, interest 0.05" in verdict.violations[NAMES[1]][0]
