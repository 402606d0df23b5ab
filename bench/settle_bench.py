"""Settle benchmark: 100,000 transfers due on one day planned, funded and settled against the sandbox.

    .venv/bin/python bench/settle_bench.py [--transfers 100000] [--customers 10000] [--baseline-sample 5000]

The sandbox runs in its own process on CPU 1, seeded through its admin API (``POST /sandbox/synthetic``:
the transfers are created inside the sandbox, all executed on one system date, so all due on one
deadline), with its clock frozen at 12:00 ET on that deadline. The settle job (``jobs.settle.settle``
through ``jobs.runtime.run_job``, as the noon phase runs it) then runs alone in a child process on
CPU 0 with production settings. Account ids are in Redis as the listener records them for every account
it sees; customer identities (transmitter info) are not cached yet, so the job fetches each one.

Printed: the job's time, its stages (from the audit trail ``sk:audit``), the peak RSS of the job process
and of the sandbox, the settlements, a check of the outcome (every transfer COMPLETED, one RF → SI journal
per settlement, RF debited by exactly the sum due), and a baseline measured in the same run: one
``GET /v1/instant_funding/{id}`` per transfer (what refreshing amounts one by one costs) on a sample,
extrapolated to every transfer, with its ratios to the job's list + plan stage (which reads the same
amounts for every transfer through the list endpoint) and to the whole settle run.
Redis is the embedded server unless SETTLEKEEPER_REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import date, datetime
from decimal import Decimal
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

JOB_CPU = 0
CREATED = "2026-11-23T10:00:00-05:00"
"""Monday of Thanksgiving week: every transfer's system date; the deadline is Tuesday 2026-11-24."""
TARGET_SECONDS, TARGET_MB = 20.0, 256.0
RF, SI = "7536050RF", "7536050SI"
RESULT = "SETTLE-BENCH-RESULT "


def amounts() -> list[str]:
    """997 amounts from 5.00 to 15.00 with every kind of cents, cycled over the transfers."""
    return [str(Decimal(500 + (k * 7919) % 1001) / 100) for k in range(997)]


def total_due(transfers: int) -> Decimal:
    cycle = [Decimal(a) for a in amounts()]
    return sum((cycle[n % len(cycle)] for n in range(transfers)), Decimal(0))


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as resp:
        if resp.status >= 300:
            raise SystemExit(f"{method} {url} → {resp.status}: {(await resp.text())[:300]}")
        return await resp.json()


async def prepare(base: str, url: str, transfers: int, customers: int) -> dict[str, Any]:
    """Seed the sandbox, create the transfers, set the clock to noon on their deadline, fill account ids."""
    due = total_due(transfers)
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
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


def run_job(base: str, url: str, deadline: str, poll_seconds: float | None) -> dict[str, Any]:
    env = {
        **os.environ,
        "SETTLEKEEPER_REDIS_URL": url,
        "SETTLEKEEPER_BROKER_URL": base,
        "SETTLEKEEPER_LOG_FORMAT": "json",
        "SETTLEKEEPER_LOG_LEVEL": "WARNING",
    }
    if poll_seconds is not None:
        env["SETTLEKEEPER_POLL_SECONDS"] = str(poll_seconds)
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--job-child", deadline],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        preexec_fn=pinned(JOB_CPU),
    )
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
    audit = [(datetime.fromisoformat(f["at"]).timestamp(), f) for _, f in client.xrange(keys.AUDIT)]
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
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
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
    async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as http:
        while len(ids) < sample:
            params = f"deadline={deadline}&limit=100" + (f"&offset={len(ids)}" if ids else "")  # minimum 1
            page = await call(http, "GET", f"{base}/v1/instant_funding?{params}")
            ids += [row["id"] for row in page]
            if len(page) < 100:
                break
    return ids


def run_baseline(base: str, ids: list[str], sample: int) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, "--baseline-child", str(sample)],
        cwd=ROOT,
        input="\n".join(ids),
        env={**os.environ, "SETTLEKEEPER_BROKER_URL": base, "SETTLEKEEPER_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        preexec_fn=pinned(JOB_CPU),
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith(RESULT))
    return dict(json.loads(line[len(RESULT) :]))


async def main(args: argparse.Namespace) -> int:
    with redis_url(load_settings()) as url:
        sandbox, base = start_sandbox(args.customers)
        try:
            prep = await prepare(base, url, args.transfers, args.customers)
            sandbox_seeded_mb = peak_rss_mb(sandbox.pid)
            print(
                f"seeded: {args.transfers:,} executed transfers of {args.customers:,} customers due "
                f"{prep['deadline']} (sum {prep['due']}) in {prep['seeded']:.1f} s; clock at 12:00 ET on it"
            )
            job = run_job(base, url, prep["deadline"], args.poll_seconds)
            sandbox_mb = peak_rss_mb(sandbox.pid)
            steps = stages(url, job["started"], job["started"] + job["seconds"])
            problems, settlements = await verify(base, prep, args.transfers)
            ids = await sample_ids(base, prep["deadline"], args.baseline_sample)
            baseline = run_baseline(base, ids, args.baseline_sample)
        finally:
            sandbox.terminate()
            sandbox.wait(10)
    report = job["report"]
    print(
        f"settle job: {job['seconds']:.2f} s  (outcome {report['outcome']}, {report['settled']:,} settled, "
        f"{report['left']} left; process start-up and imports {job['startup']:.2f} s, not counted)"
    )
    for name, seconds in steps:
        print(f"  {seconds:7.2f} s  {name}")
    print(f"settlements: {len(settlements)}  " + ", ".join(f"{s['total_amount']} {s['status']}" for s in settlements))
    print(
        f"peak RSS   : {job['peak_mb']:.1f} MB (settle job process); sandbox {sandbox_mb:.1f} MB "
        f"({sandbox_seeded_mb:.1f} MB once seeded)"
    )
    per_transfer = baseline["seconds"] / baseline["count"]
    extrapolated = per_transfer * args.transfers
    print(
        f"baseline   : one GET per transfer: {baseline['count']:.0f} in {baseline['seconds']:.2f} s "
        f"({per_transfer * 1e3:.2f} ms each) → {extrapolated:.1f} s for {args.transfers:,}, only to refresh amounts"
    )
    listing = steps[0][1]
    print(
        f"ratio      : {extrapolated / listing:.1f}x  naive refresh / the job's list + plan stage ({listing:.2f} s); "
        f"{extrapolated / job['seconds']:.1f}x  naive refresh / the whole settle run"
    )
    print(
        "outcome    : "
        + (
            "verified: every transfer COMPLETED, one RF → SI journal per settlement, RF debited by exactly the sum due"
            if not problems
            else "WRONG: " + "; ".join(problems)
        )
    )
    met = job["seconds"] < TARGET_SECONDS and job["peak_mb"] < TARGET_MB
    print(f"target < {TARGET_SECONDS:.0f} s and < {TARGET_MB:.0f} MB: {'met' if met else 'NOT met'}")
    return 1 if problems or report["outcome"] != "done" else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--job-child":
        job_child(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(baseline_child(int(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    parser.add_argument(
        "--poll-seconds", type=float, default=None, help="SETTLEKEEPER_POLL_SECONDS for the job (default: 1 s)"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
