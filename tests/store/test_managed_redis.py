"""Against a Redis as a managed service runs one (TLS only, an ACL user, the default user off), every client
is built by the one factory from the same URL (store/clients.py): the listener records, the settle job
settles. (A job that rebuilt its asyncio client from host, port and password lost TLS and settled nothing.)"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.registry import SETTLE_QUEUE, enqueue_phase, queue
from store.clients import async_client, sync_client
from store.transfers import TransferStore
from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.jobs import JOB_ENV, ThreadWorker
from tests.support.listener import eventually, listener_settings
from tests.support.redis_server import ManagedRedisServer
from tests.support.sandbox import SandboxFactory
from tests.support.settle import create_transfers, et, transfers
from worker.listener import Listener


async def test_the_listener_records_and_the_settle_job_settles_over_tls_as_an_acl_user(
    make_sandbox: SandboxFactory, managed_server: ManagedRedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two executed transfers: the listener records them in the TLS Redis, the 12:00 settle run (an RQ job on
    a connection from the same URL) settles both, `settlekeeper status` reads it over TLS, and a plain-TCP
    (client or command) or default-user client is refused."""
    url = managed_server.url
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    created = await create_transfers(sandbox, ["10.00", "20.00"])
    day = str(created[0]["deadline"])
    client = async_client(url)
    store = TransferStore(client)
    stop = asyncio.Event()
    listening = asyncio.create_task(Listener(listener_settings(sandbox), url).run(stop))
    try:

        async def recorded() -> bool:
            rows = [await store.transfer(str(row["id"])) for row in created]
            return all(row.get("status") == "EXECUTED" for row in rows)

        await eventually(recorded, within=10.0)
    finally:
        stop.set()
        await asyncio.wait_for(listening, timeout=10)
        await client.aclose()

    await sandbox.set_clock(et(day, 12))
    for name, value in {**JOB_ENV, "SETTLEKEEPER_BROKER_URL": sandbox.base_url, "SETTLEKEEPER_REDIS_URL": url}.items():
        monkeypatch.setenv(name, value)
    connection = sync_client(url, socket_timeout=None)
    try:
        assert enqueue_phase(connection, "settle", day)
        worker = ThreadWorker([queue(SETTLE_QUEUE, connection)], connection=connection, serializer=JSONSerializer)
        assert await asyncio.to_thread(worker.work, burst=True, logging_level="WARNING")
        report = Job.fetch(f"phase-settle-{day}", connection=connection, serializer=JSONSerializer).return_value()
    finally:
        connection.close()
    assert isinstance(report, dict)
    assert report["outcome"] == "done", report
    assert {row["status"] for row in await transfers(sandbox, created)} == {"COMPLETED"}

    code, out, err = await settlekeeper("status", "--json", env=cli_env(sandbox, url))
    [deadline] = [d for d in json.loads(out)["deadlines"] if d["deadline"] == day]
    assert (deadline["due_count"], deadline["unsettled_count"]) == (2, 0), err
    assert code == 1  # a problem found, not a usage error: no listener leads now
    plain = url.replace("rediss://", "redis://").split("?", 1)[0]
    code, out, err = await settlekeeper("status", "--json", env=cli_env(sandbox, plain))
    where = f"redis://{managed_server.user}@127.0.0.1:{managed_server.port}/0"
    assert (code, out.strip()) == (
        1,
        f"settlekeeper: RedisUnavailableError: Redis at {where} did not answer PING: ConnectionError",
    ), err
    assert managed_server.password not in out + err

    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=managed_server.port, socket_timeout=2).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url.replace(f"{managed_server.user}:{managed_server.password}@", "")).ping()
