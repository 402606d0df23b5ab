"""A day of transfers due on one deadline, planned, funded and settled by one settle job against the sandbox.

The sandbox (on the other core) is seeded through its admin API (``POST /sandbox/synthetic``: the transfers
are created inside the sandbox, all executed on one system date, so all due on one deadline), with its clock
frozen at 12:00 ET on that deadline. The settle job (``jobs.settle.settle`` through ``jobs.runtime.run_job``,
as the noon phase runs it) then runs alone in a child process on the measured core with production settings
(the daily cap raised to the day's sum). Account ids are in Redis as the listener records them; customer
identities (transmitter info) are not cached yet, so the job fetches each one.

Measured: the job's time, its stages (from the audit trail ``sk:audit``: where the time goes), the peak RSS
of the job and of the sandbox, and a check of the outcome (every transfer COMPLETED, one RF → SI journal per
settlement, RF debited by exactly the sum due). Baseline, in the same run: one ``GET /v1/instant_funding/{id}``
per transfer (what refreshing amounts one by one costs) on a sample, extrapolated to every transfer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import aiohttp
import redis

from bench.common import admin, bench_env, call, measured, peak_rss_mb, settlekeeper_env
from bench.table import Figure
from config.settings import load_settings
from store import keys

CREATED = "2026-11-23T10:00:00-05:00"
"""Monday of Thanksgiving week: every transfer's system date; the deadline is Tuesday 2026-11-24."""
SECONDS_PER_MILLION, TARGET_MB, GROWTH = 120.0, 256.0, 10.0
SANDBOX_TARGET_MB_PER_MILLION = 4096.0
"""The sandbox holds a million transfers in "a few GB": at most 4 GB."""
RF, SI = "7536050RF", "7536050SI"
RESULT = "SETTLE-BENCH-RESULT "


def amounts() -> list[str]:
    """997 amounts from 5.00 to 15.00 with every kind of cents, cycled over the transfers."""
    return [str(Decimal(500 + (k * 7919) % 1001) / 100) for k in range(997)]


def total_due(transfers: int) -> Decimal:
    cycle = [Decimal(a) for a in amounts()]
    return sum((cycle[n % len(cycle)] for n in range(transfers)), Decimal(0))


async def prepare(base: str, url: str, transfers: int, customers: int) -> dict[str, Any]:
    """Seed the sandbox, create the transfers, set the clock to noon on their deadline, fill account ids."""
    due = total_due(transfers)
    async with admin() as http:
        seed = {
            "customers": customers,
            "rf_balance": str(due + 1000),
            "if_account_limit": None,
            "if_correspondent_limit": str(due * 2),
            "if_execute_delay_seconds": 0,
            "settlement_delay_seconds": 0,
            "now": CREATED,
            "freeze": True,
        }
        started = time.perf_counter()
        accounts = (await call(http, "POST", base + "/sandbox/reset", seed))["accounts"]
        body = {"events": transfers, "transfers": transfers, "amounts": amounts()}
        await call(http, "POST", base + "/sandbox/synthetic", body)
        first = await call(http, "GET", base + "/v1/instant_funding", None)
        deadline = first[0]["deadline"]
        await call(http, "POST", base + "/sandbox/clock", {"set": f"{deadline}T12:00:00-05:00"})
        seeded = time.perf_counter() - started
        rf_before = await _cash(http, base, RF)
    client = redis.Redis.from_url(url)
    client.flushdb()
    customer_ids = {a["account_number"]: a["id"] for a in accounts if a["account_number"].startswith("81")}
    client.hset(keys.ACCOUNT_IDS, mapping=customer_ids)  # what the listener records for every account it sees
    client.close()
    return {"deadline": deadline, "due": due, "rf_before": rf_before, "seeded": seeded}


async def _cash(http: aiohttp.ClientSession, base: str, account_no: str) -> Decimal:
    entries = (await call(http, "GET", f"{base}/sandbox/ledger?account_no={account_no}"))["entries"]
    cash = [e for e in entries if e["balance"] == "cash"]
    return Decimal(cash[-1]["after"]) if cash else Decimal(0)


def run_job(base: str, url: str, deadline: str, due: Decimal) -> dict[str, Any]:
    caps = str(due + 1000)  # production guardrails, the daily cap raised to the day's sum
    env = settlekeeper_env(base, url, SETTLEKEEPER_MAX_DAILY_AMOUNT=caps)
    out = measured("bench.settle_day", "--job-child", deadline, env=env, check=False)
    for line in out.stdout.splitlines():
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT) :]))
    raise SystemExit(f"the settle job failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def job_child(deadline: str) -> None:
    """Run one settle job for ``deadline`` (the noon phase) and print its time, report and peak RSS."""
    started_wall = time.time()
    from config.logging import configure_logging
    from jobs.runtime import run_job as run
    from jobs.settle import settle

    settings = load_settings()
    configure_logging(settings, sys.stderr)
    connection = redis.Redis.from_url(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    imported = time.time()
    report = run(lambda ctx: settle(ctx, date.fromisoformat(deadline), phase="settle"), connection)
    finished = time.time()
    summary = {k: v for k, v in report.items() if k != "left"} | {"left": len(report.get("left", []))}
    result = {
        "started": imported,
        "seconds": finished - imported,
        "startup": imported - started_wall,
        "peak_mb": peak_rss_mb(os.getpid()),
        "report": summary,
    }
    print(RESULT + json.dumps(result, default=str), flush=True)


def stages(url: str, started: float, finished: float) -> list[tuple[str, float]]:
    """Durations between the audit trail's milestones (wall-clock ``at`` of each entry)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    rows = cast(list[tuple[str, dict[str, str]]], client.xrange(keys.AUDIT))
    audit = [(datetime.fromisoformat(f["at"]).timestamp(), f) for _, f in rows]
    client.close()
    out: list[tuple[str, float]] = []
    mark = started

    def step(name: str, at: float) -> None:
        nonlocal mark
        out.append((name, at - mark))
        mark = at

    batches = 0
    for at, entry in audit:
        event = entry["event"]
        if event == "plan":
            step("list + plan (resume, list unsettled, SI/RF balances)", at)
        elif event == "fund_executed":
            step("fund journal RF → SI (post + follow)", at)
        elif event == "settle_planned":
            batches += 1
            step(f"settlement {batches}: intent (transfer ids to Redis)", at)
        elif event == "settle_sent":
            facts = json.loads(entry["facts"])
            step(f"settlement {batches}: transmitter info for {facts.get('transfers')} transfers", at)
        elif event == "settle_in_progress" and out and out[-1][0].startswith(f"settlement {batches}: trans"):
            step(f"settlement {batches}: POST (sandbox validates, answers PENDING)", at)
        elif event == "settle_completed":
            step(f"settlement {batches}: follow to COMPLETED (poll wait + sandbox processing)", at)
    step("closing (late-interest figures, re-list: nothing left)", finished)
    return out


async def verify(base: str, prep: dict[str, Any], transfers: int) -> tuple[list[str], list[dict[str, Any]]]:
    problems: list[str] = []
    async with admin() as http:
        limits = await call(http, "GET", base + "/v1/instant_funding/limits")
        settlements = (await call(http, "GET", base + "/v1/instant_funding/settlements"))["settlements"]
        journals = await call(http, "GET", base + "/v1/journals")
        rf_after = await _cash(http, base, RF)
    if Decimal(limits["amount_in_use"]) != 0:
        problems.append(f"amount in use {limits['amount_in_use']}: not every transfer is COMPLETED")
    if [s["status"] for s in settlements] != ["COMPLETED"] * len(settlements):
        problems.append(f"settlement statuses {[s['status'] for s in settlements]}")
    expected = -(-transfers // 50_000)
    if len(settlements) != expected:
        problems.append(f"{len(settlements)} settlements, expected {expected}")
    if sum(Decimal(s["total_amount"]) for s in settlements) != prep["due"]:
        problems.append("settlement totals differ from the sum due")
    # SI is swept to zero after each settlement (docs/broker-api.md "Settlements"), so each settlement has its own RF
    # → SI journal
    if len(journals) != expected or sum(Decimal(j["net_amount"]) for j in journals) != prep["due"]:
        amounts = [j["net_amount"] for j in journals]
        problems.append(f"journals {amounts}: expected {expected}, summing to {prep['due']}")
    if prep["rf_before"] - rf_after != prep["due"]:
        problems.append(f"RF debited by {prep['rf_before'] - rf_after}, expected {prep['due']}")
    return problems, settlements


async def baseline_child(count: int) -> None:
    """The naive refresh: one GET /v1/instant_funding/{id} per transfer, ids read from stdin."""
    from broker.client import BrokerClient

    ids = sys.stdin.read().split()[:count]
    async with BrokerClient(load_settings()) as broker:
        started = time.perf_counter()
        for transfer_id in ids:
            await broker.get_transfer(transfer_id)
        seconds = time.perf_counter() - started
    print(RESULT + json.dumps({"count": len(ids), "seconds": seconds}), flush=True)


async def sample_ids(base: str, deadline: str, sample: int) -> list[str]:
    ids: list[str] = []
    async with admin() as http:
        while len(ids) < sample:
            params = f"deadline={deadline}&limit=100" + (f"&offset={len(ids)}" if ids else "")  # minimum 1
            page = await call(http, "GET", f"{base}/v1/instant_funding?{params}")
            ids += [row["id"] for row in page]
            if len(page) < 100:
                break
    return ids


def run_baseline(base: str, ids: list[str], sample: int) -> dict[str, float]:
    env = bench_env(SETTLEKEEPER_BROKER_URL=base, SETTLEKEEPER_LOG_LEVEL="WARNING")
    out = measured("bench.settle_day", "--baseline-child", str(sample), env=env, stdin="\n".join(ids))
    line = next(x for x in out.stdout.splitlines() if x.startswith(RESULT))
    return dict(json.loads(line[len(RESULT) :]))


@dataclass(frozen=True)
class Sizes:
    transfers: int
    customers: int
    baseline_sample: int


async def run_day(base: str, sandbox_pid: int, url: str, transfers: int, customers: int) -> dict[str, Any]:
    """Seed, settle once, verify; prints the job's stages (where its time goes)."""
    prep = await prepare(base, url, transfers, customers)
    job = run_job(base, url, prep["deadline"], prep["due"])
    steps = stages(url, job["started"], job["started"] + job["seconds"])
    problems, settlements = await verify(base, prep, transfers)
    report = job["report"]
    print(
        f"settle day, {transfers:,} transfers of {customers:,} customers (seeded in {prep['seeded']:.1f} s): "
        f"{job['seconds']:.2f} s, peak {job['peak_mb']:.0f} MB, outcome {report['outcome']}, "
        f"{report['settled']:,} settled in {len(settlements)} settlements; "
        + ("verified" if not problems else "WRONG: " + "; ".join(problems)),
        flush=True,
    )
    for name, seconds in steps:
        print(f"  {seconds:7.2f} s  {name}", flush=True)
    ok = not problems and report["outcome"] == "done"
    return {**job, "deadline": prep["deadline"], "ok": ok, "sandbox_mb": peak_rss_mb(sandbox_pid)}


async def measure(base: str, sandbox_pid: int, url: str, sizes: Sizes) -> list[Figure]:
    """The day at a tenth of the size, then at full size, then the naive refresh on a sample."""
    small = await run_day(base, sandbox_pid, url, sizes.transfers // 10, max(sizes.customers // 10, 1))
    big = await run_day(base, sandbox_pid, url, sizes.transfers, sizes.customers)
    ids = await sample_ids(base, big["deadline"], sizes.baseline_sample)
    naive = run_baseline(base, ids, sizes.baseline_sample)
    naive_seconds = naive["seconds"] / naive["count"] * sizes.transfers
    n, target = sizes.transfers, SECONDS_PER_MILLION * sizes.transfers / 1_000_000
    growth = big["seconds"] / small["seconds"]
    sandbox_target = SANDBOX_TARGET_MB_PER_MILLION * max(n / 1_000_000, 0.25)
    return [
        Figure(
            f"settle day: {n:,} transfers of {sizes.customers:,} customers planned, funded, settled"
            + ("" if big["ok"] else " (outcome WRONG)"),
            big["seconds"],
            "s",
            f"< {target:g} s",
            big["ok"] and big["seconds"] < target,
            f"one GET per transfer: {naive_seconds:.0f} s",
            big["seconds"] / naive_seconds,
        ),
        Figure(
            f"settle job peak RSS, {n:,} transfers",
            big["peak_mb"],
            "MB",
            f"< {TARGET_MB:.0f} MB",
            big["peak_mb"] < TARGET_MB,
            f"{n // 10:,} transfers: {small['peak_mb']:.0f} MB",
            big["peak_mb"] / small["peak_mb"],
        ),
        Figure(
            f"settle growth: time({n:,}) / time({n // 10:,})",
            growth,
            "×",
            f"≤ {GROWTH:.0f}",
            small["ok"] and growth <= GROWTH,
            f"time({n // 10:,}) = {small['seconds']:.2f} s",
        ),
        Figure(
            f"sandbox peak RSS holding {n:,} settled transfers",
            big["sandbox_mb"],
            "MB",
            f"< {sandbox_target:,.0f} MB",
            big["sandbox_mb"] < sandbox_target,
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1] == "--job-child":
        job_child(sys.argv[2])
    elif sys.argv[1] == "--baseline-child":
        asyncio.run(baseline_child(int(sys.argv[2])))
