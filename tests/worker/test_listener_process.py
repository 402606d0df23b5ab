"""The listener as a real process: SIGKILL and restart, leader failover, SIGTERM, and losing the lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from funding.errors import LeaseLostError
from sandbox.event_log import StreamName
from sandbox.http import RUNTIME
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, eventually, listener_settings
from tests.support.sandbox import MONDAY_10AM, Sandbox, SandboxFactory
from tests.support.scenario import queued_covers
from worker.listener import Listener

ROOT = Path(__file__).resolve().parents[2]
TTL = 1.5
"""SETTLEKEEPER_LEASE_TTL_SECONDS in these tests; the lease is renewed every TTL / 3."""
TUESDAY = MONDAY_10AM + timedelta(days=1)
RQ_QUEUES = ("rq:queue:settlekeeper-cover", "rq:queue:settlekeeper-settle", "rq:queue:settlekeeper-alerts")
"""Every queue the listener hands jobs to (phases, actions; the report phases and alerts share the last)."""


@dataclass
class ListenerProcess:
    """A ``settlekeeper listen`` subprocess and its JSON log lines, each with the time it arrived."""

    proc: asyncio.subprocess.Process
    logs: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    async def pump(self, pipe: asyncio.StreamReader) -> None:
        async for raw in pipe:
            line = raw.decode(errors="replace").strip()
            try:
                self.logs.append((time.monotonic(), json.loads(line)))
            except ValueError:
                self.other.append(line)

    def events(self, name: str, **fields: Any) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.logs if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, name: str, within: float = 10.0, **fields: Any) -> tuple[float, dict[str, Any]]:
        """The first log line ``name`` with ``fields``, waiting for it at most ``within`` seconds."""

        async def logged() -> bool:
            return bool(self.events(name, **fields))

        try:
            await eventually(logged, within, every=0.005)
        except AssertionError:
            tail = [e["event"] for _, e in self.logs][-20:]
            raise AssertionError(
                f"no {name} {fields} within {within} s; logged {tail}, other {self.other[-5:]}"
            ) from None
        return self.events(name, **fields)[0]

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples ``name`` with ``labels`` on the process's /metrics."""
        port = (await self.wait_for("listener_started"))[1]["http_port"]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    async def role(self) -> str:
        port = (await self.wait_for("listener_started"))[1]["http_port"]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return str((await resp.json())["role"])


Spawn = Callable[..., Awaitable[ListenerProcess]]


@pytest.fixture
async def spawn(
    make_sandbox: SandboxFactory, session_redis_url: str, redis_client: redis.Redis
) -> AsyncIterator[Spawn]:
    """Factory: ``settlekeeper listen`` as a subprocess against a sandbox; every one is killed at the end."""
    started: list[ListenerProcess] = []

    async def start(sandbox: Sandbox, **settings: str) -> ListenerProcess:
        env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
        env |= {
            "SETTLEKEEPER_REDIS_URL": session_redis_url,
            "SETTLEKEEPER_BROKER_URL": sandbox.base_url,
            "SETTLEKEEPER_HTTP_PORT": "0",
            "SETTLEKEEPER_HEARTBEAT_SECONDS": "0.2",
            "SETTLEKEEPER_LEASE_TTL_SECONDS": str(TTL),
            "SETTLEKEEPER_BACKOFF_BASE_SECONDS": "0.05",
            "SETTLEKEEPER_BACKOFF_CAP_SECONDS": "0.2",
            "SETTLEKEEPER_LOG_FORMAT": "json",
        }
        env.update({f"SETTLEKEEPER_{name.upper()}": value for name, value in settings.items()})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "listen", cwd=ROOT, env=env, stdout=-1, stderr=-1
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        handle = ListenerProcess(proc)
        handle.pumps = [asyncio.create_task(handle.pump(pipe)) for pipe in (proc.stdout, proc.stderr)]
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.proc.returncode is None:
            handle.proc.kill()
        await asyncio.wait_for(handle.proc.wait(), 10)
        await asyncio.wait_for(asyncio.gather(*handle.pumps), 10)


async def kill(process: ListenerProcess) -> None:
    process.proc.kill()
    assert await asyncio.wait_for(process.proc.wait(), 5) == -signal.SIGKILL


async def create_wave(sandbox: Sandbox, wave: int, accounts: range) -> list[str]:
    """One transfer per customer of ``accounts`` (amount wave·100 + n), created concurrently."""
    made = await asyncio.gather(
        *(sandbox.create_transfer(str(8100000000 + n), f"{wave * 100 + n}.25") for n in accounts)
    )
    return [t["id"] for t in made]


async def rest_view(sandbox: Sandbox, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await asyncio.gather(*(sandbox.ok("GET", f"/v1/instant_funding/{i}") for i in ids))
    return {row["id"]: row for row in rows}


async def store_matches_rest(sandbox: Sandbox, store: TransferStore, ids: list[str]) -> list[str]:
    """Ids whose stored status, remaining payable, deadline or amount differ from the Broker API's."""
    rest = await rest_view(sandbox, ids)
    differ = []
    for transfer_id, row in rest.items():
        held = await store.transfer(transfer_id)
        same = [held.get(f) == row[f] for f in ("status", "deadline")]
        same += [Decimal(held.get(f, "NaN")) == Decimal(row[f]) for f in ("amount", "remaining_payable")]
        if not all(same):
            differ.append(transfer_id)
    return differ


async def converge(sandbox: Sandbox, store: TransferStore, ids: list[str], within: float = 15.0) -> None:
    async def store_equals_rest() -> bool:
        idle = not await store.redis.zcard(keys.HINTS) and not await store.redis.xlen(keys.OUTBOX)
        return idle and not await store_matches_rest(sandbox, store, ids)

    await eventually(store_equals_rest, within)


def last_activity_id(sandbox: Sandbox) -> str:
    return sandbox.app[RUNTIME].engine.emit.logs[StreamName.ACTIVITIES].events[-1].event_id


async def cursor_advanced(r: aioredis.Redis) -> bool:
    return bool(await r.exists(keys.cursor("activities")))


async def first_settled_recorded(r: aioredis.Redis) -> bool:
    rows = await r.xrevrange(keys.RECORDS, count=1)
    return bool(rows) and rows[0][1][b"to"] == b"COMPLETED"


async def first_cover_enqueued(r: aioredis.Redis) -> bool:
    return bool(await r.keys("rq:job:cover*-*"))  # cover-<account>-<day>, or covers-<day>-<digest> (batched)


KILL_WHEN: dict[str, Callable[[aioredis.Redis], Awaitable[bool]]] = {
    "executing": cursor_advanced,
    "settling": first_settled_recorded,
    "canceling": first_cover_enqueued,
}
"""When to SIGKILL the first listener: each fires while work of that wave is still in flight."""


@pytest.mark.parametrize("moment", list(KILL_WHEN))
async def test_sigkill_and_restart_mid_stream_converge_without_duplicates(
    moment: str, make_sandbox: SandboxFactory, spawn: Spawn, store: TransferStore
) -> None:
    """After a SIGKILL mid-stream and a restart, the store equals the Broker API; no record or job is doubled."""
    sandbox = await make_sandbox(customers=60, if_account_limit=None)
    process = await spawn(sandbox)
    await process.wait_for("stream_connected", stream="activities")
    ids: list[str] = []

    async def execute() -> None:
        ids.extend(await create_wave(sandbox, 1, range(1, 61)))
        ids.extend(await create_wave(sandbox, 2, range(1, 61)))
        await sandbox.advance(1)

    async def settle() -> None:  # customers 1-20 are settled; 21-60 will be canceled at 8 PM
        chosen = [row for row in (await rest_view(sandbox, ids)).values() if int(row["account_no"][-2:]) <= 20]
        total = sum(Decimal(row["amount"]) for row in chosen)
        await sandbox.wire("7536050SI", str(total))
        body = {"transfers": [{"instant_transfer_id": row["id"]} for row in chosen]}
        await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
        await sandbox.advance(31)

    async def cancel() -> None:  # 1 PM books interest on the rest, 8 PM cancels them
        await sandbox.set_clock(TUESDAY.replace(hour=13, minute=0, second=30))
        await sandbox.set_clock(TUESDAY.replace(hour=20, minute=0, second=30))

    for name, step in {"executing": execute, "settling": settle, "canceling": cancel}.items():
        await step()
        if name == moment:

            async def kill_now() -> bool:
                return await KILL_WHEN[moment](store.redis)

            await eventually(kill_now, every=0.002)
            await kill(process)
            process = await spawn(sandbox)
    await process.wait_for("stream_connected", stream="activities")
    await converge(sandbox, store, ids)

    rest = await rest_view(sandbox, ids)
    assert {row["status"] for row in rest.values()} == {"COMPLETED", "CANCELED"}
    records = [(f[b"transfer_id"], f[b"to"]) for _, f in await store.redis.xrange(keys.RECORDS)]
    assert len(records) == len(set(records)), "a (transfer, status) record was written twice"
    assert {(i.encode(), row["status"].encode()) for i, row in rest.items()} <= set(records)
    queued = [i.decode() for q in RQ_QUEUES for i in await store.redis.lrange(q, 0, -1)]
    assert len(queued) == len(set(queued)), "a job id was pushed twice"
    jobs = sorted(k.decode().removeprefix("rq:job:") for k in await store.redis.keys("rq:job:*"))
    assert jobs == sorted(queued)
    canceled = {(row["account_no"], row["deadline"]) for row in rest.values() if row["status"] == "CANCELED"}
    assert len(canceled) == 40
    # each canceled account in a queued cover job; after the kill, the outbox's rest may go out as another batch
    # naming an account again (covered once all the same: the intent and its Idempotency-Key are per account)
    assert set(await queued_covers(store.redis)) == {f"cover-{a}-{d}" for a, d in canceled}


async def test_standby_takes_over_a_killed_leader_within_the_ttl_from_its_cursor(
    make_sandbox: SandboxFactory, spawn: Spawn, store: TransferStore
) -> None:
    """SIGKILL the leader: the standby leads and streams within TTL + 1 s, resuming at the stored cursor."""
    sandbox = await make_sandbox(customers=20, if_account_limit=None)
    leader = await spawn(sandbox)
    await leader.wait_for("stream_connected", stream="activities")
    ids = await create_wave(sandbox, 1, range(1, 21))
    await sandbox.advance(1)
    await converge(sandbox, store, ids)
    standby = await spawn(sandbox)

    async def standing_by() -> bool:
        return bool(standby.events("listener_started")) and await standby.role() == "standby"

    await eventually(standing_by)
    cursor = await store.cursor("activities")
    assert cursor == last_activity_id(sandbox)
    await kill(leader)
    killed_at = time.monotonic()
    await standby.wait_for("lease_acquired", within=TTL + 2)
    connected_at, line = await standby.wait_for("stream_connected", within=TTL + 2, stream="activities")
    takeover = connected_at - killed_at
    print(f"takeover after SIGKILL: {takeover:.3f} s (lease TTL {TTL} s)")
    assert takeover <= TTL + 1.0
    assert (line["params"], line["cursor"]) == (["since_id"], cursor)

    ids += await create_wave(sandbox, 2, range(1, 21))
    await sandbox.advance(1)
    await converge(sandbox, store, ids)
    assert await store.cursor("activities") == last_activity_id(sandbox)
    connections = len(standby.events("stream_connected", stream="activities"))
    replayed = await standby.metric("settlekeeper_stream_replayed_events_total", stream="activities")
    assert 1 <= replayed <= connections, "only the inclusive cursor event may be received again"


async def test_sigterm_commits_what_was_read_releases_the_lease_and_exits_zero(
    make_sandbox: SandboxFactory, spawn: Spawn, store: TransferStore
) -> None:
    """SIGTERM under load: exit 0 within 10 s, the lease deleted, the cursor at the last event read."""
    sandbox = await make_sandbox(customers=60, if_account_limit=None)
    process = await spawn(sandbox, lease_ttl_seconds="30")  # a lease gone at exit was released, not expired
    await process.wait_for("stream_connected", stream="activities")
    ids = await create_wave(sandbox, 1, range(1, 61)) + await create_wave(sandbox, 2, range(1, 61))
    await sandbox.advance(1)
    emitted = len(sandbox.app[RUNTIME].engine.emit.logs[StreamName.ACTIVITIES])

    async def all_read() -> bool:
        return await process.metric("settlekeeper_stream_events_total", stream="activities") >= emitted

    await eventually(all_read)
    assert await store.redis.pttl(keys.LEADER) > 20_000
    process.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code = await asyncio.wait_for(process.proc.wait(), 10)
    took = time.monotonic() - sent
    assert code == 0
    assert took < 10
    assert not await store.redis.exists(keys.LEADER)
    assert await store.cursor("activities") == last_activity_id(sandbox)
    hinted = {m.decode() for m in await store.redis.zrange(keys.HINTS, 0, -1)}
    unaccounted = [i for i in ids if i not in hinted and not (await store.transfer(i)).get("status")]
    assert unaccounted == [], "an event read before SIGTERM left neither a record nor a hint"
    assert process.events("leadership_ended")[0][1]["why"] == "stop"


def leads(listener: Listener) -> bool:
    """What the listener reports: role leader and the settlekeeper_listener_leader gauge at 1."""
    gauge = listener.metrics.registry.get_sample_value("settlekeeper_listener_leader")
    assert (gauge == 1) == (listener.health.role == "leader"), (gauge, listener.health.role)
    return gauge == 1


async def test_a_leader_whose_lease_is_taken_stops_reading_and_its_writes_are_refused(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """A foreign sk:leader: reading stops within TTL/3, fenced writes fail, nothing is recorded until it goes."""
    running = await start_listener(sandbox)
    listener = running.listener

    async def leading() -> bool:
        return listener.health.role == "leader" and all(r.connected for r in listener.readers)

    await eventually(leading)
    first = await create_wave(sandbox, 1, range(1, 3))
    await sandbox.advance(1)
    await converge(sandbox, store, first)
    cursor, records = await store.cursor("activities"), await store.redis.xlen(keys.RECORDS)
    token = listener.lease.token
    await store.redis.set(keys.LEADER, "foreign", px=60_000)
    taken = time.monotonic()
    later = await create_wave(sandbox, 2, range(1, 4))
    await sandbox.advance(1)  # read while the loss is unnoticed: the commit is fenced

    async def stopped_reading() -> bool:
        return not any(r.connected for r in listener.readers) and not leads(listener)

    await eventually(stopped_reading, within=TTL / 3 + 0.5, every=0.01)
    assert time.monotonic() - taken <= TTL / 3 + 0.3
    with pytest.raises(LeaseLostError):
        await store.ingest("activities", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", later, [], token=token, now=time.time())
    await asyncio.sleep(TTL)
    assert await store.cursor("activities") == cursor
    assert await store.redis.xlen(keys.RECORDS) == records
    assert not await store.redis.zcard(keys.HINTS)
    assert [await store.transfer(i) for i in later] == [{}, {}, {}]
    await store.redis.delete(keys.LEADER)
    await converge(sandbox, store, first + later, within=5)
    assert listener.health.role == "leader"


class RedisProxy:
    """A TCP proxy to Redis that can black-hole every byte (a partition) and heal by cutting its connections."""

    def __init__(self, url: str) -> None:
        self.url = urlsplit(url)
        self.partitioned = False
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        auth = self.url.netloc.rpartition("@")[0]
        return self.url._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}").geturl()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.url.hostname, self.url.port or 6379)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if not self.partitioned:
                sink.write(data)
                await sink.drain()
        sink.close()

    async def heal(self) -> None:
        self.partitioned = False
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_leader_partitioned_from_redis_stops_reading_before_the_standby_leads(
    sandbox: Sandbox, start_listener: ListenerFactory, session_redis_url: str, store: TransferStore
) -> None:
    """Cut the leader off Redis: it stops reading within the TTL, and the standby takes over after it."""
    if urlsplit(session_redis_url).scheme != "redis":
        pytest.skip("the proxy speaks plain TCP")
    proxy = RedisProxy(session_redis_url)
    cut_off = Listener(listener_settings(sandbox), await proxy.start())
    stop = asyncio.Event()
    task = asyncio.create_task(cut_off.run(stop))
    try:

        async def leading() -> bool:
            return cut_off.health.role == "leader" and all(r.connected for r in cut_off.readers)

        await eventually(leading)
        standby = (await start_listener(sandbox)).listener

        async def standing_by() -> bool:
            return standby.health.role == "standby"

        await eventually(standing_by)
        proxy.partitioned = True
        cut_at = time.monotonic()
        stopped = took_over = 0.0
        async with asyncio.timeout(TTL + 3):
            while not (stopped and took_over):
                now = time.monotonic() - cut_at
                if not stopped and not any(r.connected for r in cut_off.readers) and not leads(cut_off):
                    stopped = now
                if not took_over and standby.readers and all(r.connected for r in standby.readers):
                    took_over = now
                await asyncio.sleep(0.002)
        print(f"partitioned leader stopped reading after {stopped:.3f} s; standby streaming after {took_over:.3f} s")
        assert stopped <= TTL + 0.1
        assert stopped <= took_over
        ids = await create_wave(sandbox, 1, range(1, 3))
        await sandbox.advance(1)
        await converge(sandbox, store, ids, within=5)
    finally:
        await proxy.heal()
        stop.set()
        await asyncio.wait_for(task, 15)
