"""Cancellations turned into cover journals: the latency of each under a background stream, and a storm.

Both run the production processes against the sandbox: one listener (``settlekeeper listen``) and forking RQ
workers (``settlekeeper work``), settle and fund modes off (the partner did not settle), cover on. Each
customer bought for what its transfers gave, so each cancellation leaves a debit to cover from RF.

- **latency**: transfers canceled one by one (``DELETE /v1/instant_funding/{id}``) while the activities
  stream carries 500 other events a second; from the sandbox's cancellation to the cover journal's POST
  arriving at the sandbox, both on the sandbox's wall clock (``GET /sandbox/marks``). Baseline: a forking
  worker's round trip of a job that does nothing, measured on the same worker.
- **storm**: the 8 PM cycle cancels every transfer at once; from the clock passing 20:00 until every account's
  cover journal is executed and its cash checked (each account's cover outcome in Redis), with no account
  journaled twice. Baseline: the same workers running one job that does nothing per account (timed on 500,
  scaled).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from bench.common import MEASURED_CPU, ROOT, admin, call, pinned, settlekeeper_env
from bench.table import Figure
from store import keys
from store.codec import text

DAY, DEADLINE = "2026-11-23", "2026-11-24"
"""Transfers made on Monday of Thanksgiving week are due on Tuesday."""
LATENCY_P99_MS, STORM_SECONDS = 250.0, 60.0
BACKGROUND_EVENTS_PER_SECOND = 500
CANCELLATIONS_PER_SECOND = 10
LATENCY_WORKERS = 2
NOOP_MARKS = "bench:noop"
NOOP_SAMPLE = 500
"""The storm's baseline runs this many no-op jobs and scales their time to one per account."""


@dataclass(frozen=True)
class Sizes:
    cancellations: int
    """Latency: transfers canceled one by one (one per account)."""
    storm_transfers: int
    storm_accounts: int


def noop(sent: float) -> None:
    """A job that does nothing but say when it ran (the forking worker's floor)."""
    from rq import get_current_job

    job = get_current_job()
    assert job is not None
    job.connection.rpush(NOOP_MARKS, f"{sent} {time.time()}")


class Fleet:
    """One listener and ``workers`` forking workers, pinned to the measured core."""

    def __init__(self, base: str, url: str, workers: int) -> None:
        env = settlekeeper_env(
            base,
            url,
            SETTLEKEEPER_HTTP_PORT="0",
            SETTLEKEEPER_SETTLE_MODE="off",
            SETTLEKEEPER_FUND_MODE="off",
            SETTLEKEEPER_COVER_MODE="on",
            SETTLEKEEPER_JOBS_METRICS_PORT="0",
        )
        commands = [["listen"]] + [["work", "--name", f"bench-w{n}"] for n in range(1, workers + 1)]
        self.procs = [
            subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "cli.main", *command],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=pinned(MEASURED_CPU),
            )
            for command in commands
        ]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


async def prepare(base: str, url: str, accounts: int, transfers: int, at: str) -> dict[str, Any]:
    """``transfers`` executed transfers of 10.00 spread over ``accounts`` customers, each spent; the clock at ``at``."""
    redis.Redis.from_url(url).flushdb()
    async with admin() as http:
        seed = {
            "customers": accounts,
            "rf_balance": "100000000",
            "if_account_limit": None,
            "if_correspondent_limit": "1000000000",
            "if_execute_delay_seconds": 0,
            "jnlc_daily_limit": "1000000000",
            "now": f"{DAY}T10:00:00-05:00",
            "freeze": True,
        }
        await call(http, "POST", base + "/sandbox/reset", seed)
        info = await call(
            http, "POST", base + "/sandbox/synthetic", {"events": transfers, "transfers": transfers, "spend": True}
        )
        await call(http, "POST", base + "/sandbox/clock", {"set": at})
        return dict(info)


def wait_until(check: Any, timeout: float, what: str) -> float:
    """Poll ``check()`` every 5 ms until true; the time.perf_counter() it became true."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter()
        time.sleep(0.005)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def recorded_all(client: redis.Redis, last_event: str, transfers: int) -> Any:
    """True once the listener read the stream past ``last_event`` and recorded every transfer."""
    return lambda: (
        text(client.get(keys.cursor("activities")) or "") >= last_event
        and (client.scard(keys.UNSETTLED) >= transfers and client.zcard(keys.HINTS) == 0)
    )


def idle(url: str) -> Any:
    """True once no job is queued or running on settlekeeper's queues (the start-up's catch-up phases are over)."""
    from rq.registry import StartedJobRegistry

    from jobs.registry import queue
    from jobs.rq_worker import QUEUES

    client = redis.Redis.from_url(url)
    queues = [queue(name, client) for name in QUEUES]
    return lambda: all(q.count == 0 and StartedJobRegistry(queue=q).count == 0 for q in queues)


def noop_round_trips(url: str, count: int, *, one_at_a_time: bool) -> list[float]:
    """Seconds from enqueue to the end of each of ``count`` no-op jobs on the running workers."""
    from jobs.registry import COVER_QUEUE, queue

    client = redis.Redis.from_url(url)
    client.delete(NOOP_MARKS)
    cover_queue = queue(COVER_QUEUE, client)
    for n in range(count):
        cover_queue.enqueue("bench.cover.noop", kwargs={"sent": time.time()})
        if one_at_a_time:
            wait_until(lambda n=n: client.llen(NOOP_MARKS) > n, 60, "a no-op job")
    wait_until(lambda: client.llen(NOOP_MARKS) >= count, 120, "the no-op jobs")
    rows = [text(line).split() for line in client.lrange(NOOP_MARKS, 0, -1)]
    client.close()
    return [float(end) - float(sent) for sent, end in rows]


async def _background(base: str, stop: asyncio.Event) -> None:
    """500 trade events a second on the activities stream, in bursts every 50 ms."""
    per_tick = BACKGROUND_EVENTS_PER_SECOND // 20
    async with admin() as http:
        while not stop.is_set():
            await call(http, "POST", base + "/sandbox/synthetic", {"events": per_tick, "transfers": 0})
            await asyncio.sleep(0.05)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(share * len(ordered) + 0.999999) - 1))]


async def latency(base: str, url: str, sizes: Sizes) -> list[Figure]:
    n = sizes.cancellations
    info = await prepare(base, url, n, n, f"{DEADLINE}T19:00:00-05:00")
    client = redis.Redis.from_url(url)
    fleet = Fleet(base, url, workers=LATENCY_WORKERS)
    try:
        wait_until(recorded_all(client, info["last_event_id"], n), 300, "the listener to record every transfer")
        wait_until(idle(url), 300, "the workers to be idle")
        floor = noop_round_trips(url, 100, one_at_a_time=True)
        async with admin() as http:
            ids = [t["id"] for t in await _all_transfers(http, base)]
            stop = asyncio.Event()
            background = asyncio.create_task(_background(base, stop))
            try:
                for transfer_id in ids:  # each its own cover job
                    await call(http, "DELETE", f"{base}/v1/instant_funding/{transfer_id}")
                    await asyncio.sleep(1 / CANCELLATIONS_PER_SECOND)
                outcomes = keys.cover_outcomes(DEADLINE)
                await asyncio.to_thread(wait_until, lambda: client.hlen(outcomes) >= n, 300, "every cover")
            finally:
                stop.set()
                await background
            marks = (await call(http, "GET", base + "/sandbox/marks"))["marks"]
    finally:
        fleet.stop()
        client.close()
    canceled = {m["account_id"]: m["at"] for m in marks if m["what"] == "canceled"}
    journaled = {m["account_id"]: m["at"] for m in marks if m["what"] == "journal"}
    delays = [1000 * (journaled[a] - at) for a, at in canceled.items() if a in journaled]
    if len(delays) < n:
        raise SystemExit(f"only {len(delays)} of {n} cancellations were covered")
    p50, p99, worst = (_percentile(delays, q) for q in (0.5, 0.99, 1.0))
    floor_ms = 1000 * statistics.median(floor)
    name = (
        f"cancellation → cover journal POST, {n:,} cancellations ({CANCELLATIONS_PER_SECOND}/s, "
        f"{LATENCY_WORKERS} workers) under {BACKGROUND_EVENTS_PER_SECOND} events/s"
    )
    return [
        Figure(f"{name}: p50", p50, "ms", "", True, f"no-op forking job {floor_ms:.1f} ms", p50 / floor_ms),
        Figure(f"{name}: p99", p99, "ms", f"< {LATENCY_P99_MS:.0f} ms", p99 < LATENCY_P99_MS),
        Figure(f"{name}: max", worst, "ms", "", True),
    ]


async def _all_transfers(http: Any, base: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        offset = f"&offset={len(rows)}" if rows else ""
        page = await call(http, "GET", f"{base}/v1/instant_funding?limit=100{offset}")
        rows += page
        if len(page) < 100:
            return rows


async def storm(base: str, url: str, sizes: Sizes) -> list[Figure]:
    transfers, accounts = sizes.storm_transfers, sizes.storm_accounts
    info = await prepare(base, url, accounts, transfers, f"{DEADLINE}T19:59:58-05:00")
    client = redis.Redis.from_url(url)
    fleet = Fleet(base, url, workers=2)
    try:
        wait_until(recorded_all(client, info["last_event_id"], transfers), 300, "the listener to record every transfer")
        wait_until(idle(url), 300, "the workers to be idle")
        sample = min(accounts, NOOP_SAMPLE)
        floor_seconds = max(noop_round_trips(url, sample, one_at_a_time=False)) * accounts / sample
        async with admin() as http:
            started = time.perf_counter()
            await call(http, "POST", base + "/sandbox/clock", {"set": f"{DEADLINE}T20:00:01-05:00"})
            outcomes = keys.cover_outcomes(DEADLINE)
            ended = await asyncio.to_thread(wait_until, lambda: client.hlen(outcomes) >= accounts, 600, "every cover")
            journals = await call(http, "GET", base + "/v1/journals")
        results = Counter(text(v) for v in client.hvals(outcomes))
    finally:
        fleet.stop()
        client.close()
    per_account = Counter(j["to_account"] for j in journals if j["status"] == "executed")
    twice = sum(1 for count in per_account.values() if count > 1)
    seconds = ended - started
    ok = results.get("covered", 0) == accounts and twice == 0 and len(per_account) == accounts
    return [
        Figure(
            f"cancellation storm: {transfers:,} transfers of {accounts:,} accounts covered by 2 workers "
            f"({results.get('covered', 0):,} covered, {twice} journaled twice)",
            seconds,
            "s",
            f"< {STORM_SECONDS:.0f} s, none twice",
            ok and seconds < STORM_SECONDS,
            f"{accounts:,} no-op jobs: {floor_seconds:.2f} s" + ("" if sample == accounts else f" (from {sample:,})"),
            seconds / floor_seconds,
        )
    ]
