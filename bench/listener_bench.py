"""Listener throughput benchmark: a large synthetic stream from the sandbox, listener vs. naive baseline.

    .venv/bin/python bench/listener_bench.py [--events 200000] [--transfers 2000] [--baseline-events 20000]

The sandbox runs in its own process on CPU 1; the listener (``settlekeeper listen``, activities stream only)
and then the baseline (aiohttp-sse-client, one RQ enqueue per event) each run alone on CPU 0. Both read
the same stream from the same sandbox in the same run. Printed: events/s of each, their ratio, the
listener's peak RSS, and the end-to-end time until every transfer named by an event was read over REST
and recorded. Redis is the embedded server unless SETTLEKEEPER_REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import AUTH, peak_rss_mb, pinned, start_sandbox  # noqa: E402
from config.settings import load_settings  # noqa: E402
from store import keys  # noqa: E402
from store.clients import redis_url  # noqa: E402

LISTENER_CPU = 0


async def prepare(base: str, events: int, transfers: int) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
        seed = {
            "customers": 200,
            "if_account_limit": None,
            "if_correspondent_limit": "1000000000",
            "if_execute_delay_seconds": 0,
            "now": "2026-11-23T10:00:00-05:00",
            "freeze": True,
        }
        async with http.post(base + "/sandbox/reset", json=seed) as resp:
            resp.raise_for_status()
        async with http.post(base + "/sandbox/synthetic", json={"events": events, "transfers": transfers}) as resp:
            resp.raise_for_status()
            return dict(await resp.json())


def run_listener(base: str, url: str, info: dict[str, Any], transfers: int) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {
        **os.environ,
        "SETTLEKEEPER_REDIS_URL": url,
        "SETTLEKEEPER_BROKER_URL": base,
        "SETTLEKEEPER_HTTP_PORT": "0",
        "SETTLEKEEPER_STREAMS": "activities",
        "SETTLEKEEPER_HEAL_INTERVAL_SECONDS": "3600",
        "SETTLEKEEPER_LOG_FORMAT": "json",
        "SETTLEKEEPER_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "listen"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pinned(LISTENER_CPU),
    )
    last = info["last_event_id"].encode()
    started = time.perf_counter()
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
    if done is None or first_commit is None:
        raise SystemExit("the listener did not reach the last event in time")
    return {
        "seconds": done - first_commit,
        "peak_mb": peak,
        "end_to_end": (recorded or done) - started,
        "startup": first_commit - started,
    }


async def baseline_child(base: str, url: str, since_id: str, until_id: str) -> None:
    """The naive consumer: the library's EventSource, one RQ enqueue per event."""
    from aiohttp_sse_client.client import EventSource
    from rq import Queue

    queue = Queue("bench-baseline", connection=redis.Redis.from_url(url))
    count = 0
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        source = EventSource(
            base + "/v2beta1/events/activities",
            session=session,
            params={"since_id": since_id, "until_id": until_id},
            headers={"Authorization": AUTH},
        )
        await source.connect()
        try:
            async for event in source:
                queue.enqueue("jobs.settle.replan", kwargs={"deadline": json.loads(event.data)["event_id"]})
                count += 1
                if json.loads(event.data)["event_id"] == until_id:
                    break
        finally:
            await source.close()
    print(json.dumps({"count": count, "seconds": time.perf_counter() - started}))


def run_baseline(base: str, url: str, since_id: str, until_id: str) -> dict[str, float]:
    redis.Redis.from_url(url).flushdb()
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--baseline-child", base, url, since_id, until_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        preexec_fn=pinned(LISTENER_CPU),
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def main(args: argparse.Namespace) -> None:
    with redis_url(load_settings()) as url:
        sandbox, base = start_sandbox(200)
        try:
            info = await prepare(base, args.events, args.transfers)
            events = int(info["count"])
            print(f"synthetic stream: {events} activity events, {args.transfers} of them IF transfers")
            listener = run_listener(base, url, info, args.transfers)
            async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
                params = {"since_id": info["first_event_id"], "until_id": info["last_event_id"]}
                # the baseline reads only the first --baseline-events events (it is slow); find that id
                async with http.get(base + "/v2beta1/events/activities", params=params) as resp:
                    until_id = await _nth_id(resp, min(args.baseline_events, events))
            base_run = run_baseline(base, url, info["first_event_id"], until_id)
        finally:
            sandbox.terminate()
            sandbox.wait(10)
    listener_rate = events / listener["seconds"]
    baseline_rate = base_run["count"] / base_run["seconds"]
    print(f"listener : {listener_rate:>10,.0f} events/s  ({events} events in {listener['seconds']:.2f} s, one core)")
    print(
        f"baseline : {baseline_rate:>10,.0f} events/s  ({base_run['count']:.0f} events in {base_run['seconds']:.2f} s,"
        " one RQ enqueue per event)"
    )
    print(f"ratio    : {listener_rate / baseline_rate:>10.1f}x   (target >= 15x)")
    print(f"peak RSS : {listener['peak_mb']:>10.1f} MB (listener process)")
    print(
        f"end to end: {listener['end_to_end']:.2f} s from process start until every named transfer was recorded "
        f"(start-up {listener['startup']:.2f} s)"
    )
    print(
        f"target 40,000 events/s: {'met' if listener_rate >= 40_000 else 'NOT met'}; "
        f"target 15x: {'met' if listener_rate >= 15 * baseline_rate else 'NOT met'}"
    )


async def _nth_id(resp: aiohttp.ClientResponse, n: int) -> str:
    seen = 0
    async for raw in resp.content:
        if raw.startswith(b"data: "):
            seen += 1
            if seen == n:
                return str(json.loads(raw[6:])["event_id"])
    raise SystemExit("stream shorter than expected")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(baseline_child(*sys.argv[2:6]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--transfers", type=int, default=2_000)
    parser.add_argument("--baseline-events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args()))
