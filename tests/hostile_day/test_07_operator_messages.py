"""Hostile day, item 7: with the kill switch set, messages state the real cause and the real counts, and
clearing the switch before the cutoff starts a settle run when transfers are due."""

from __future__ import annotations

from collections.abc import Callable

import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from store import keys
from tests.support.jobs import RunWorker
from tests.support.listener import ListenerFactory, eventually
from tests.support.sandbox import SandboxFactory
from tests.support.settle import alerts, create_transfers, et, journals, run_settle, run_step, settlements, transfers

JobEnv = Callable[..., None]
AMOUNTS = ["400.00"] * 6
"""Six transfers, 2,400.00 due: RF (250,000.00 in the sandbox) covers them many times over."""


async def test_item_7_the_1130_warning_blames_the_kill_switch_not_rf(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Kill switch on and RF plentiful: the 11:30 warning names the switch, says SI + RF would cover what is
    due, and reports no shortfall (it used to say "2400.00 short of the 2400.00 due")."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, AMOUNTS)
    day = created[0]["deadline"]
    redis_client.set(keys.KILL_SWITCH, "incident 7 - on-call")
    await sandbox.set_clock(et(day, 11, 30))

    await run_step(redis_client, run_worker, "warning", day)

    [warning] = alerts(redis_client, "shortfall_projected")
    assert (warning["shortfall"], warning["kill_switch"], warning["due_transfers"]) == (
        "0.00",
        "incident 7 - on-call",
        "6",
    )
    assert "the kill switch is on (incident 7 - on-call)" in warning["summary"]
    assert "SI + RF would cover the 2,400.00 due" in warning["summary"]
    assert "short" not in warning["summary"]


async def test_item_7_a_killed_run_counts_what_it_left_unsettled(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A settle run stopped by the kill switch reports the six transfers it left (not ``left: 0``), and its
    alert counts them with their amount and says how the run resumes."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, AMOUNTS)
    day = created[0]["deadline"]
    redis_client.set(keys.KILL_SWITCH, "incident 7")
    await sandbox.set_clock(et(day, 12))

    report = await run_settle(redis_client, run_worker, day)

    assert report["outcome"] == "killed"
    assert sorted(t["transfer_id"] for t in report["left"]) == sorted(t["id"] for t in created)
    assert {t["why"] for t in report["left"]} == {"kill switch is on: incident 7"}
    [alert] = alerts(redis_client, "kill_switch")
    assert (alert["unsettled"], alert["unsettled_amount"]) == ("6", "2400.00")
    assert (
        "6 transfers (2,400.00) due by 1 PM ET unsettled; clearing the switch starts a settle run" in (alert["summary"])
    )


async def test_item_7_clearing_the_kill_switch_before_the_cutoff_starts_a_settle_run(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    start_listener: ListenerFactory,
    redis_client: redis.Redis,
) -> None:
    """The listener's guard: the 12:00 run is killed; once the switch is cleared (12:10, no phase until 12:30)
    a settle run is enqueued at once and settles everything due."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, AMOUNTS)
    day = created[0]["deadline"]
    await start_listener(sandbox)

    async def recorded() -> bool:
        return int(redis_client.scard(keys.due(day))) == len(AMOUNTS)

    await eventually(recorded)
    redis_client.set(keys.KILL_SWITCH, "incident 7")
    await sandbox.set_clock(et(day, 12))
    phase = f"phase-settle-{day}"

    async def phase_enqueued() -> bool:
        return bool(redis_client.exists(Job.key_for(phase)))

    await eventually(phase_enqueued)
    await run_worker()
    assert Job.fetch(phase, connection=redis_client, serializer=JSONSerializer).return_value()["outcome"] == "killed"
    await sandbox.set_clock(et(day, 12, 10))
    assert not redis_client.exists(keys.settle_guard(day)), "no guard run while the switch is on"

    redis_client.delete(keys.KILL_SWITCH)

    async def guard_enqueued() -> bool:
        return bool(redis_client.exists(keys.settle_guard(day)))

    await eventually(guard_enqueued)
    guard = redis_client.get(keys.settle_guard(day))
    assert guard is not None
    await run_worker()
    job = Job.fetch(guard.decode(), connection=redis_client, serializer=JSONSerializer)
    assert (job.get_status(), job.return_value()["outcome"]) == (JobStatus.FINISHED, "done")
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    assert (len(await journals(sandbox)), len(await settlements(sandbox))) == (1, 1)
