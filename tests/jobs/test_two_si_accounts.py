"""A correspondent with two SI accounts, one settlekeeper each: Alpaca lets one settlement be in progress at a
time for the whole correspondent, so their settle runs take turns, and both are done before 1 PM ET."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import redis

from tests.support.jobs import RunWorker, burst, other_database
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import create_transfers, et, run_settle, settlements, transfers

JobEnv = Callable[..., None]
SI_A, SI_B = "7536050SI", "7536050SI2"


@pytest.fixture
def second_db(session_redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    """The second deployment's own Redis database, flushed before and after."""
    url = other_database(session_redis_url, 1)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


async def transfer_from(sandbox: Sandbox, source: str, account_no: str, amount: str) -> dict[str, Any]:
    body = {"account_no": account_no, "source_account_no": source, "amount": amount}
    return dict(await sandbox.ok("POST", "/v1/instant_funding", body))


async def test_a_second_source_account_cannot_start_a_settlement_while_one_is_in_progress(
    make_sandbox: SandboxFactory,
) -> None:
    """The sandbox refuses SI2's settlement while SI's is PENDING (422), and takes it once SI's completed."""
    sandbox = await make_sandbox(si_accounts=2, si_balance="100.00")
    [a] = await create_transfers(sandbox, ["40.00"])
    b = await transfer_from(sandbox, SI_B, "8100000002", "25.00")
    await sandbox.advance(1)
    await sandbox.ok("POST", "/v1/instant_funding/settlements", {"transfers": [{"instant_transfer_id": a["id"]}]})
    status, refusal = await sandbox.call(
        "POST", "/v1/instant_funding/settlements", {"transfers": [{"instant_transfer_id": b["id"]}]}
    )
    assert status == 422
    assert "only one settlement can be in progress" in refusal["message"]
    await sandbox.advance(30)
    await sandbox.ok("POST", "/v1/instant_funding/settlements", {"transfers": [{"instant_transfer_id": b["id"]}]})


async def test_two_deployments_settle_their_own_si_in_turn_before_the_cutoff(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    second_db: tuple[str, redis.Redis],
) -> None:
    """SI's run settles; SI2's run waits for that settlement, then settles its own; everything completes by 12:02."""
    url_b, redis_b = second_db
    sandbox = await make_sandbox(si_accounts=2)  # settlements are processed 30 sandbox seconds after creation
    ours_a = await create_transfers(sandbox, ["310.00", "42.42"])
    ours_b = [await transfer_from(sandbox, SI_B, f"81{n:08d}", "18.18") for n in (3, 4)]
    await sandbox.advance(1)
    deadline = ours_a[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))

    def as_a() -> None:
        job_env(sandbox)

    def as_b() -> None:
        job_env(sandbox, si_account_no=SI_B, redis_url=url_b)

    async def run_b() -> bool:
        return await burst(url_b)

    as_a()
    first_a = await run_settle(redis_client, run_worker, deadline)
    [settlement_a] = await settlements(sandbox)
    as_b()
    first_b = await run_settle(redis_b, run_b, deadline)
    assert (first_a["outcome"], first_b["outcome"]) == ("in_progress", "in_progress")
    assert settlement_a["id"] in first_b["waiting_for"]  # SI2 waits for SI's settlement
    assert len(await settlements(sandbox)) == 1

    await sandbox.advance(30)  # SI's settlement completes
    second_b = await run_settle(redis_b, run_b, deadline, "settle_retry")
    assert second_b["outcome"] == "in_progress"  # its own is PENDING now
    await sandbox.advance(30)
    await run_settle(redis_b, run_b, deadline, "late_check")
    as_a()
    await run_settle(redis_client, run_worker, deadline, "late_check")

    assert {t["status"] for t in await transfers(sandbox, ours_a + ours_b)} == {"COMPLETED"}
    done = await settlements(sandbox)
    assert [(s["source_account_number"], s["status"]) for s in done] == [(SI_A, "COMPLETED"), (SI_B, "COMPLETED")]
    assert max(datetime.fromisoformat(s["completed_at"]) for s in done) < et(deadline, 12, 2)
