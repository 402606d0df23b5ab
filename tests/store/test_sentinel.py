"""Redis behind Sentinel (``redis+sentinel://``): the listener, the RQ worker, the jobs and the CLI all find the
master through the sentinel and find the new one after a failover in the middle of a settle day."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from funding.calendar import ET
from store import keys
from store.clients import describe, sync_client
from tests.support.cli import finish, start
from tests.support.processes import Spawn, environment
from tests.support.sandbox import MONDAY_10AM, SandboxFactory
from tests.support.sentinel import SentinelCluster, sentinel_cluster
from tests.support.tools import require

pytestmark = pytest.mark.timeout(180)

AMOUNTS = {"8100000001": "100.00", "8100000002": "250.50", "8100000003": "75.25"}
TUESDAY = (MONDAY_10AM + timedelta(days=1)).date()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    """A primary, a replica and one sentinel (Debian's redis-server), for this test alone."""
    require({"redis-server": "redis-server"})
    with sentinel_cluster(tmp_path) as running:
        yield running


def test_describe_names_the_sentinels_and_the_master_never_the_password(cluster: SentinelCluster) -> None:
    """describe() of a Sentinel URL: sentinels, master name and db; the password nowhere."""
    where = describe(cluster.url)
    assert where == f"redis+sentinel://127.0.0.1:{cluster.sentinel_port}/settlekeeper/0"
    assert cluster.password not in where


def test_a_sentinel_client_writes_to_the_primary_and_follows_a_failover(cluster: SentinelCluster) -> None:
    """The one factory's client writes through the sentinel to the primary; after the primary is killed and
    the replica promoted, the same client (no rebuild) writes to the new primary."""
    client = sync_client(cluster.url)
    try:
        client.set("sk:probe", "before")
        assert client.info("server")["tcp_port"] == cluster.primary_port
        client.wait(1, 2000)  # the replica has it
        cluster.kill_primary()
        cluster.wait_for_promotion(cluster.primary_port)
        client.set("sk:probe", "after")
        assert client.info("server")["tcp_port"] == cluster.replica_port
        assert client.get("sk:probe") == b"after"
    finally:
        client.close()


async def test_a_failover_mid_day_settles_every_transfer_before_1_pm_once(
    make_sandbox: SandboxFactory, cluster: SentinelCluster, processes: Spawn
) -> None:
    """Three transfers recorded by the listener through Sentinel; the primary is SIGKILLed at 11:58 ET and the
    replica promoted; the listener and worker carry on through the sentinel, the 12:00 run settles all three
    before 1 PM with one journal and one settlement, and `settlekeeper status` reads the new primary."""
    sandbox = await make_sandbox(settlement_delay_seconds=2)
    created = [await sandbox.create_transfer(account, amount) for account, amount in AMOUNTS.items()]
    await sandbox.advance(1)
    env = environment(cluster.url, sandbox.base_url, http_port="0", poll_seconds="0.2")
    listener = await processes(["listen"], env)
    await listener.wait_for("lease_acquired")
    await processes(["work", "--name", "worker-0"], env)
    client = sync_client(cluster.url)
    ids = [str(row["id"]) for row in created]

    def recorded() -> bool:
        return all(client.hget(keys.transfer(i), "status") == b"EXECUTED" for i in ids)

    await until(lambda: asyncio.to_thread(recorded), 30, "the listener recorded the transfers")
    moment = datetime.combine(TUESDAY, time(11, 58), tzinfo=ET)
    await sandbox.ok("POST", "/sandbox/clock", {"set": moment.isoformat(), "freeze": False, "speed": 1})
    await asyncio.to_thread(client.wait, 1, 2000)
    await asyncio.to_thread(cluster.kill_primary)
    took = await asyncio.to_thread(cluster.wait_for_promotion, cluster.primary_port)
    print(f"\nsentinel: the replica was promoted {took:.1f} s after the primary was killed")
    await sandbox.ok("POST", "/sandbox/clock", {"set": moment.replace(minute=59, second=58).isoformat()})

    async def settled() -> bool:
        rows = [await sandbox.ok("GET", f"/v1/instant_funding/{i}") for i in ids]
        return all(row["status"] == "COMPLETED" for row in rows)

    await until(settled, 90, "every transfer COMPLETED")
    clock = await sandbox.ok("GET", "/sandbox/clock")
    assert datetime.fromisoformat(clock["now"]) < datetime.combine(TUESDAY, time(13, 0), tzinfo=ET)
    due = sum((Decimal(a) for a in AMOUNTS.values()), Decimal(0))
    journals = await sandbox.ok("GET", "/v1/journals")
    settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
    assert [(j["status"], Decimal(j["net_amount"])) for j in journals] == [("executed", due)]
    assert [(s["status"], Decimal(s["total_amount"])) for s in settlements] == [("COMPLETED", due)]
    assert client.info("server")["tcp_port"] == cluster.replica_port
    client.close()

    proc = await start("status", "--json", env=env)
    out, err = await finish(proc, within=60)
    status = json.loads(out)
    assert proc.returncode in (0, 1), err
    assert status["listener"]["leader"], status["listener"]
    assert cluster.password not in (out + err).decode()


async def until(check: object, within: float, what: str) -> None:
    """Poll the coroutine function ``check`` until it returns true, at most ``within`` seconds."""
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)
