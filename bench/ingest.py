"""Listener ingest and backlog catch-up: a stream of waiting events read by the listener, the raw ceiling of a
Python SSE reader, and the naive consumer, all on the same sandbox in the same run.

- **ceiling**: aiohttp's own line iteration plus ``json.loads`` of each ``data:`` line: no validation, no
  Redis, nothing kept (what any Python reader of this stream costs at least);
- **listener**: ``settlekeeper listen`` (activities stream), from a backlog: parse, validate, de-dup,
  record and move the cursor in one atomic step per batch, until every named transfer is read over REST;
- **naive**: aiohttp-sse-client's ``EventSource`` and one RQ enqueue per event, on a prefix of the stream.

Each runs alone on :data:`~bench.common.MEASURED_CPU`; the sandbox and Redis share the other core.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis

from bench.common import AUTH, MEASURED_CPU, ROOT, admin, call, measured, peak_rss_mb, pinned, settlekeeper_env
from bench.table import Figure
from store import keys

PATH = "/v2beta1/events/activities"
BACKLOG_TARGET_SECONDS_PER_MILLION = 15.0
CEILING_SHARE, NAIVE_TIMES = 0.8, 30.0


@dataclass(frozen=True)
class Sizes:
    events: int
    transfers: int
    naive_events: int


async def prepare(base: str, sizes: Sizes) -> dict[str, Any]:
    """A frozen sandbox whose activities stream holds ``sizes.events`` events, already rendered."""
    async with admin() as http:
        seed = {
            "customers": 200,
            "if_account_limit": None,
            "if_correspondent_limit": "1000000000",
            "if_execute_delay_seconds": 0,
            "now": "2026-11-23T10:00:00-05:00",
            "freeze": True,
        }
        await call(http, "POST", base + "/sandbox/reset", seed)
        body = {"events": sizes.events, "transfers": sizes.transfers, "render": True}
        return dict(await call(http, "POST", base + "/sandbox/synthetic", body))


async def ceiling_child(base: str, since_id: str, until_id: str) -> None:
    """The raw reader: aiohttp line iteration and json.loads, counting events up to ``until_id``."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    count, started = 0, 0.0
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=2**20) as session:
        params = {"since_id": since_id, "until_id": until_id}
        async with session.get(base + PATH, params=params, headers={"Authorization": AUTH}) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    payload = json.loads(line[6:])
                    if not count:
                        started = time.perf_counter()
                    count += 1
                    if payload["event_id"] == until_id:
                        break
    print(json.dumps({"count": count, "seconds": time.perf_counter() - started}))


async def naive_child(base: str, url: str, since_id: str, until_id: str) -> None:
    """The naive consumer: the library's EventSource, one RQ enqueue per event."""
    from aiohttp_sse_client.client import EventSource
    from rq import Queue

    queue = Queue("bench-baseline", connection=redis.Redis.from_url(url))
    count, started = 0, time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        source = EventSource(
            base + PATH,
            session=session,
            params={"since_id": since_id, "until_id": until_id},
            headers={"Authorization": AUTH},
        )
        await source.connect()
        try:
            async for event in source:
                event_id = json.loads(event.data)["event_id"]
                queue.enqueue("jobs.settle.replan", kwargs={"deadline": event_id})
                count += 1
                if event_id == until_id:
                    break
        finally:
            await source.close()
    print(json.dumps({"count": count, "seconds": time.perf_counter() - started}))


def _child(*args: str) -> dict[str, float]:
    return dict(json.loads(measured("bench.ingest", *args).stdout.strip().splitlines()[-1]))


def run_listener(base: str, url: str, info: dict[str, Any], transfers: int) -> dict[str, float]:
    """The listener from a backlog: seconds from its first commit to the last event's cursor, and from its
    process start until every transfer the events named was recorded."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = settlekeeper_env(
        base,
        url,
        SETTLEKEEPER_HTTP_PORT="0",
        SETTLEKEEPER_STREAMS="activities",
        SETTLEKEEPER_HEAL_INTERVAL_SECONDS="3600",
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "listen"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned(MEASURED_CPU),
    )
    last = info["last_event_id"].encode()
    first_commit = done = recorded = None
    try:
        while time.perf_counter() - started < 600:
            cursor = client.get(keys.cursor("activities"))
            now = time.perf_counter()
            if cursor is not None and first_commit is None:
                first_commit = now
            if cursor == last and done is None:
                done = now
            if done is not None and client.zcard(keys.HINTS) == 0 and client.scard(keys.UNSETTLED) >= transfers:
                recorded = now
                break
            time.sleep(0.002)
        peak = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)
        client.close()
    if done is None or first_commit is None or recorded is None:
        raise SystemExit("the listener did not read and record the backlog in 600 s")
    return {"seconds": done - first_commit, "catch_up": recorded - started, "peak_mb": peak}


async def _nth_id(base: str, info: dict[str, Any], n: int) -> str:
    params = {"since_id": info["first_event_id"], "until_id": info["last_event_id"]}
    seen = 0
    async with admin() as http, http.get(base + PATH, params=params) as resp:
        async for raw in resp.content:
            if raw.startswith(b"data: "):
                seen += 1
                if seen == n:
                    return str(json.loads(raw[6:])["event_id"])
    raise SystemExit("stream shorter than expected")


async def measure(base: str, url: str, sizes: Sizes) -> list[Figure]:
    info = await prepare(base, sizes)
    events = int(info["count"])
    first, last = info["first_event_id"], info["last_event_id"]
    ceiling = _child("--ceiling", base, first, last)
    listener = run_listener(base, url, info, sizes.transfers)
    naive_until = await _nth_id(base, info, min(sizes.naive_events, events))
    redis.Redis.from_url(url).flushdb()
    naive = _child("--naive", base, url, first, naive_until)
    rate = events / listener["seconds"]
    ceiling_rate = ceiling["count"] / ceiling["seconds"]
    naive_rate = naive["count"] / naive["seconds"]
    catch_target = BACKLOG_TARGET_SECONDS_PER_MILLION * events / 1_000_000
    ceiling_time = events / ceiling_rate
    return [
        Figure(
            "listener ingest vs the raw reader's ceiling",
            rate,
            "events/s",
            f"≥ {CEILING_SHARE}× ceiling",
            rate >= CEILING_SHARE * ceiling_rate,
            f"ceiling {ceiling_rate:,.0f} events/s",
            rate / ceiling_rate,
        ),
        Figure(
            "listener ingest vs the naive consumer",
            rate,
            "events/s",
            f"≥ {NAIVE_TIMES:.0f}× naive",
            rate >= NAIVE_TIMES * naive_rate,
            f"naive {naive_rate:,.0f} events/s",
            rate / naive_rate,
        ),
        Figure(
            f"backlog catch-up, {events:,} events (process start → all recorded; peak {listener['peak_mb']:.0f} MB)",
            listener["catch_up"],
            "s",
            f"< {catch_target:g} s",
            listener["catch_up"] < catch_target,
            f"ceiling reads them in {ceiling_time:.2f} s",
            listener["catch_up"] / ceiling_time,
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1] == "--ceiling":
        asyncio.run(ceiling_child(*sys.argv[2:5]))
    elif sys.argv[1] == "--naive":
        asyncio.run(naive_child(*sys.argv[2:6]))
