"""A realistic instant-funding day in the sandbox, and what the listener's store must hold after it.

:func:`phase_one` (Monday 10:00 ET): eight transfers on seven customers execute, two customers spend
the money on stock, three transfers are settled (journal RF → SI, settlement, 30 s later COMPLETED).
:func:`phase_two` (Tuesday, the deadline): 1 PM books interest on the five still unsettled, 8 PM cancels
them (two customers are left in debit), and two new transfers execute for Friday.
:func:`store_differences` lists every way the store disagrees with the sandbox's REST API (empty when
converged); :func:`assert_store_matches_sandbox` adds the never-twice invariants of records and RQ jobs.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import redis.asyncio as aioredis

from funding.calendar import ET
from jobs.registry import COVER_QUEUE, SETTLE_QUEUE
from sandbox.event_log import StreamName
from sandbox.http import RUNTIME
from store import keys
from store.transfers import TransferStore
from tests.support.listener import RunningListener, eventually
from tests.support.sandbox import Sandbox

SI, RF = "7536050SI", "7536050RF"
TUESDAY_7_59_59_PM = datetime(2026, 11, 24, 19, 59, 59, tzinfo=ET)
"""One second before the 8 PM ET cancellation of Monday's transfers (deadline Tuesday 2026-11-24)."""
UNSETTLED = frozenset({"PENDING", "EXECUTED"})


def customer(n: int) -> str:
    return f"81{n:08d}"


@dataclass
class Scenario:
    """Ids of the transfers the scenario created, by the status each must end in."""

    completed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)


async def arm(sandbox: Sandbox, **fault: Any) -> None:
    await sandbox.ok("POST", "/sandbox/faults", fault)


async def until_connected(running: RunningListener, within: float = 5.0) -> None:
    """Wait until the listener leads, every stream is connected and the start-up heal has run."""
    metrics = running.listener.metrics

    async def connected_and_healed() -> bool:
        readers = running.listener.readers
        healed = metrics.registry.get_sample_value("settlekeeper_heal_runs_total", {"result": "ok"}) or 0
        return bool(readers) and all(r.connected for r in readers) and healed >= 1

    await eventually(connected_and_healed, within=within)


async def phase_one(sandbox: Sandbox, scenario: Scenario) -> None:
    """Monday: transfers execute, customers 4 and 5 buy stock with them, customers 1–3 are settled."""
    amounts = [(1, "200.00"), (2, "300.00"), (3, "150.00"), (4, "400.00"), (5, "250.00"), (6, "100.00")]
    amounts += [(7, "50.00"), (7, "60.00")]
    ids = [str((await sandbox.create_transfer(customer(n), amount))["id"]) for n, amount in amounts]
    await sandbox.advance(1)
    for n, qty in ((4, "30"), (5, "20")):
        trade = {"account_no": customer(n), "symbol": "AAPL", "side": "buy", "qty": qty, "price": "10.00"}
        await sandbox.ok("POST", "/sandbox/trades", trade)
    journal = {
        "entry_type": "JNLC",
        "from_account": await sandbox.account_id(RF),
        "to_account": await sandbox.account_id(SI),
        "amount": "650.00",
    }
    assert (await sandbox.ok("POST", "/v1/journals", journal))["status"] == "executed"
    body = {"transfers": [{"instant_transfer_id": i} for i in ids[:3]]}
    settlement = await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
    await sandbox.advance(30)
    done = await sandbox.ok("GET", f"/v1/instant_funding/settlements/{settlement['id']}")
    assert done["status"] == "COMPLETED", done
    scenario.completed += ids[:3]
    scenario.canceled += ids[3:]


async def phase_two(sandbox: Sandbox, scenario: Scenario) -> None:
    """Tuesday: 1 PM interest and the 8 PM cancellation of the five unsettled; two new transfers execute."""
    await sandbox.set_clock(TUESDAY_7_59_59_PM)
    await sandbox.advance(1)
    for n, amount in ((8, "75.00"), (9, "125.00")):
        scenario.executed.append(str((await sandbox.create_transfer(customer(n), amount))["id"]))
    await sandbox.advance(1)
    statuses = {t["id"]: t["status"] for t in await sandbox_transfers(sandbox)}
    expected = {i: "COMPLETED" for i in scenario.completed} | {i: "CANCELED" for i in scenario.canceled}
    assert statuses == expected | {i: "EXECUTED" for i in scenario.executed}
    assert [await sandbox.cash(customer(n)) < 0 for n in (4, 5, 6)] == [True, True, False], "4 and 5 are in debit"


async def run_scenario(sandbox: Sandbox, *, between: dict[str, Any] | None = None) -> Scenario:
    """Both phases; ``between`` is a fault armed after phase one (for stream faults limited by ``times``)."""
    scenario = Scenario()
    await phase_one(sandbox, scenario)
    if between is not None:
        await arm(sandbox, **between)
    await phase_two(sandbox, scenario)
    return scenario


def emitted_ids(sandbox: Sandbox, stream: str) -> set[str]:
    """The id of every event the sandbox has put on ``stream`` (read from its in-memory log)."""
    return {event.event_id for event in sandbox.app[RUNTIME].engine.emit.logs[StreamName(stream)].events}


async def sandbox_transfers(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every IF transfer the sandbox lists, page by page."""
    rows: list[dict[str, Any]] = []
    while page := await sandbox.ok(
        "GET", "/v1/instant_funding", params={"limit": "100", **({"offset": str(len(rows))} if rows else {})}
    ):
        rows += page
    return rows


async def _job_ids(client: aioredis.Redis, queue_name: str) -> list[str]:
    return [m.decode() for m in cast(list[bytes], await client.lrange(f"rq:queue:{queue_name}", 0, -1))]


async def queued_covers(client: aioredis.Redis) -> list[str]:
    """``cover-<account>-<deadline>`` of each account a queued cover job covers, batched jobs included (one entry per
    account and job: an account covered by two jobs appears twice)."""
    covered = []
    for job_id in await _job_ids(client, COVER_QUEUE):
        raw = cast(bytes, await client.hget(f"rq:job:{job_id}", "data"))
        _, _, _, kwargs = json.loads(zlib.decompress(raw))  # RQ zlib-compresses the serialized call
        accounts = kwargs["accounts"] if "accounts" in kwargs else [kwargs["account_no"]]
        covered += [f"cover-{account}-{kwargs['deadline']}" for account in accounts]
    return sorted(covered)


async def store_differences(sandbox: Sandbox, store: TransferStore) -> list[str]:
    """How the store disagrees with the sandbox's REST API; empty once the listener has converged."""
    problems: list[str] = []
    transfers = await sandbox_transfers(sandbox)
    for t in transfers:
        held = await store.transfer(t["id"])
        if not held:
            problems.append(f"{t['id']} missing")
            continue
        for name in ("status", "deadline"):
            if held.get(name) != t[name]:
                problems.append(f"{t['id']} {name}: store {held.get(name)} != sandbox {t[name]}")
        for name in ("amount", "remaining_payable", "total_interest"):
            if Decimal(held.get(name, "NaN")) != Decimal(t[name]):
                problems.append(f"{t['id']} {name}: store {held.get(name)} != sandbox {t[name]}")
    unsettled = [t for t in transfers if t["status"] in UNSETTLED]
    if await store.unsettled_ids() != {t["id"] for t in unsettled}:
        problems.append(f"unsettled index {sorted(await store.unsettled_ids())}")
    for deadline in sorted({t["deadline"] for t in transfers}):
        due = [t for t in unsettled if t["deadline"] == deadline]
        if await store.unsettled_due(date.fromisoformat(deadline)) != {t["id"] for t in due}:
            problems.append(f"due index of {deadline}")
        owed = sum((Decimal(t["remaining_payable"]) for t in due), Decimal(0))
        if (held_due := await store.amount_due(date.fromisoformat(deadline))) != owed:
            problems.append(f"amount due {deadline}: store {held_due} != sandbox {owed}")
    if await store.redis.xlen(keys.OUTBOX) or await store.hint_count():
        problems.append("outbox or hints not drained")
    covers = sorted({f"cover-{t['account_no']}-{t['deadline']}" for t in transfers if t["status"] == "CANCELED"})
    if (queued := sorted(set(await queued_covers(store.redis)))) != covers:
        problems.append(f"covers queued {queued} != {covers}")
    return problems


async def converged(sandbox: Sandbox, store: TransferStore, within: float = 5.0) -> None:
    """Wait until the store agrees with the sandbox (bounded), then check the invariants."""

    async def store_agrees() -> bool:
        return not await store_differences(sandbox, store)

    await eventually(store_agrees, within=within)
    await assert_store_matches_sandbox(sandbox, store)


async def records(store: TransferStore) -> list[dict[str, str]]:
    """Every entry of the records stream, as text."""
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await store.redis.xrange(keys.RECORDS))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]


async def assert_store_matches_sandbox(sandbox: Sandbox, store: TransferStore) -> None:
    """The store equals the REST API; no record, and no RQ job of an action, exists twice."""
    assert await store_differences(sandbox, store) == []
    entries = await records(store)
    pairs = Counter((r["transfer_id"], r["to"]) for r in entries)
    assert [pair for pair, seen in pairs.items() if seen > 1] == [], "a (transfer, status) recorded twice"
    final = {(t["id"], t["status"]) for t in await sandbox_transfers(sandbox)}
    assert final <= set(pairs), "every transfer's current status has its record"
    for queue_name in (COVER_QUEUE, SETTLE_QUEUE):
        job_ids = await _job_ids(store.redis, queue_name)
        assert [j for j, seen in Counter(job_ids).items() if seen > 1] == [], f"a job enqueued twice on {queue_name}"
        for job_id in job_ids:
            assert await store.redis.exists(f"rq:job:{job_id}"), f"job {job_id} has no hash"
