"""The settle job funds SI from RF and settles what is due."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import redis

from funding.calendar import ET
from jobs.registry import enqueue_phase
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import SandboxFactory


async def test_noon_phase_funds_si_and_settles_everything_due(
    make_sandbox: SandboxFactory, job_env: object, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """At 12:00 ET on the deadline: one RF → SI journal of exactly the amount due, one settlement, all COMPLETED."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)  # type: ignore[operator]
    amounts = ["100.00", "250.50", "75.25"]
    created = [await sandbox.create_transfer(f"810000000{n + 1}", amount) for n, amount in enumerate(amounts)]
    await sandbox.advance(1)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(datetime.fromisoformat(f"{deadline}T12:00:00").replace(tzinfo=ET))
    rf_before = await sandbox.cash("7536050RF")
    assert enqueue_phase(redis_client, "settle", deadline)
    assert await run_worker()
    for transfer in created:
        got = await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}")
        assert got["status"] == "COMPLETED"
    assert rf_before - await sandbox.cash("7536050RF") == sum(Decimal(a) for a in amounts)
    journals = await sandbox.ok("GET", "/v1/journals")
    assert [j["net_amount"] for j in journals] == [str(sum(Decimal(a) for a in amounts))]
    settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
    assert [s["status"] for s in settlements] == ["COMPLETED"]
    assert settlements[0]["additional_info"].startswith("settlekeeper intent settle-")
    assert redis_client.xlen(keys.AUDIT) > 0


async def test_costs_are_recorded_per_transfer_and_per_deadline(
    make_sandbox: SandboxFactory, job_env: object, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Settling before 1 PM records, per transfer and in total, the day of late interest it avoided."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)  # type: ignore[operator]
    created = [await sandbox.create_transfer(f"810000000{n}", amount) for n, amount in ((1, "1000.00"), (2, "144.00"))]
    await sandbox.advance(1)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(datetime.fromisoformat(f"{deadline}T12:00:00").replace(tzinfo=ET))
    assert enqueue_phase(redis_client, "settle", deadline)
    assert await run_worker()
    rate = Decimal("0.0450") + Decimal("0.08")  # the default SETTLEKEEPER_FED_UPPER_BOUND + 8 %
    expected = {t["id"]: (Decimal(t["amount"]) * rate / 360).quantize(Decimal("0.01")) for t in created}
    rows = {k.decode(): v.decode().split("|") for k, v in redis_client.hgetall(keys.transfer_costs(deadline)).items()}
    assert {tid: Decimal(avoided) for tid, (avoided, _) in rows.items()} == expected
    assert {incurred for _, incurred in rows.values()} == {"0.00"}
    total = redis_client.hget(keys.costs(deadline), "late_interest_avoided")
    assert Decimal(total.decode()) == sum(expected.values())
