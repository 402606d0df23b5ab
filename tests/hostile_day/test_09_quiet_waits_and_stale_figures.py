"""Hostile day, item 9: no quiet waits and no stale figures.

A 429 that makes the listener wait for ``X-RateLimit-Reset`` is logged and counted; the pending-hints gauge
counts every hint waiting, not the one being read; a Redis restart leaves no stale pooled connection to fail
the resolver later; the due-amount gauges of a deadline the listener no longer follows are not exported.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import redis
from structlog.testing import capture_logs

from funding.calendar import ET
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, eventually, listener_settings, sample
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.scenario import arm, customer, until_connected
from worker.listener import Listener


async def test_item_9_a_429_wait_is_logged_and_counted(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """The resolver's read answered 429 with a reset 1 s away: a broker_retry line says what waited and how
    long, settlekeeper_broker_errors_total counts it, and the transfer is recorded after the wait."""
    running = await start_listener(sandbox)
    await until_connected(running)
    with capture_logs() as logs:
        transfer_id = str((await sandbox.create_transfer(customer(1), "10.00"))["id"])
        path = f"/v1/instant_funding/{transfer_id}"
        await arm(sandbox, kind="http_error", status=429, path=path, reset_in_seconds=1, times=1)
        await sandbox.advance(1)

        async def recorded() -> bool:
            return (await store.transfer(transfer_id)).get("status") == "EXECUTED"

        await eventually(recorded)
    [retry] = [e for e in logs if e["event"] == "broker_retry"]
    assert (retry["request"], retry["error"], retry["log_level"]) == (f"GET {path}", "RateLimitedError", "warning")
    assert 0.0 < retry["wait_seconds"] <= 2.0
    assert sample(running, "settlekeeper_broker_errors_total", kind="RateLimitedError") == 1
    await running.halt()


async def test_item_9_the_hints_gauge_counts_every_hint_waiting(
    make_sandbox: SandboxFactory, start_listener: ListenerFactory
) -> None:
    """While the reads are slow, transfer_hints_pending climbs to the 14 hints waiting (it used to show the one
    being read), then returns to 0 once they are read."""
    sandbox = await make_sandbox(customers=20)
    running = await start_listener(sandbox)
    await until_connected(running)
    await arm(sandbox, kind="slow", path="/v1/instant_funding/", delay_seconds=1.5)
    for n in range(1, 15):
        await sandbox.create_transfer(customer(n), "10.00")
    await sandbox.advance(1)

    async def fourteen_waiting() -> bool:
        return sample(running, "settlekeeper_transfer_hints_pending") == 14

    await eventually(fourteen_waiting)
    await sandbox.ok("DELETE", "/sandbox/faults")

    async def none_waiting() -> bool:
        return sample(running, "settlekeeper_transfer_hints_pending") == 0

    await eventually(none_waiting)
    await running.halt()


async def test_item_9_a_redis_restart_leaves_no_stale_connection_behind(
    sandbox: Sandbox, server: RedisServer, tmp_path: Path
) -> None:
    """Redis restarts under a running listener; the next event's transfer is recorded, and no task failed on a
    pooled connection the restart left dead (the resolver used to, on its next hint, minutes later)."""
    listener = Listener(listener_settings(sandbox, lease_ttl_seconds=15), server.url)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(listener.run(stop))

        async def leading() -> bool:
            return listener.health.role == "leader" and all(r.connected for r in listener.readers)

        await eventually(leading)
        await asyncio.to_thread(server.restart, 1.0)
        transfer_id = str((await sandbox.create_transfer(customer(1), "10.00"))["id"])
        await sandbox.advance(1)
        client = server.client()

        async def recorded() -> bool:
            return client.hget(keys.transfer(transfer_id), "status") == b"EXECUTED"

        await eventually(recorded, within=15)
        stop.set()
        await asyncio.wait_for(task, 15)
    assert not [
        e for e in logs if e["event"] in ("listener_task_failed", "leadership_ended") and e.get("why") != "stop"
    ]


async def test_item_9_due_gauges_of_a_deadline_no_longer_followed_are_not_exported(
    sandbox: Sandbox, start_listener: ListenerFactory, redis_client: redis.Redis
) -> None:
    """Monday's term exports the due gauges of Monday and Tuesday; after a new term on Wednesday night only
    that night's deadlines are exported (a new term used to leave the old series behind for good)."""
    await sandbox.create_transfer(customer(1), "10.00")
    await sandbox.advance(1)
    running = await start_listener(sandbox, limits_poll_seconds=0.1)
    metrics = running.listener.metrics

    def exported() -> set[str]:
        return {
            s.labels["deadline"]
            for family in metrics.registry.collect()
            if family.name == "settlekeeper_due_amount_dollars"
            for s in family.samples
        }

    async def monday() -> bool:
        return exported() == {"2026-11-23", "2026-11-24"}

    await eventually(monday)
    await sandbox.set_clock(datetime(2026, 11, 25, 21, 0, tzinfo=ET))  # Wednesday 9 PM: the system date is Friday
    lease = running.listener.lease
    await lease.redis.delete(keys.LEADER)  # the lease is lost: this term ends, the next one begins

    async def wednesday_night() -> bool:
        return exported() == {"2026-11-27", "2026-11-30"}

    await eventually(wednesday_night)
    await running.halt()
