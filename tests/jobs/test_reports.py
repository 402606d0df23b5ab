"""Report jobs: JIT reports checked and turned into instructions, IF reports reconciled with the store."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from funding.calendar import at_et
from jobs.registry import ALERT_QUEUE, enqueue_phase, queue
from store import keys
from tests.support.jobs import RunWorker
from tests.support.listener import ListenerFactory, eventually
from tests.support.sandbox import Sandbox, SandboxFactory

MONDAY = date(2026, 11, 23)
TUESDAY = date(2026, 11, 24)
"""Monday's T+1 settlement date (the next NYSE trading day)."""
TRADES = [
    ("8100000001", "buy", "3", "100.00", "1.00"),
    ("8100000002", "buy", "2", "50.25", "0.00"),
    ("8100000001", "sell", "1", "110.00", "0.50"),
]
"""(account, side, qty, price, commission): net buys, so the partner owes Alpaca on T+1."""
Configure = Callable[..., None]


def net_of(trades: list[tuple[str, str, str, str, str]]) -> Decimal:
    """Σ net_amt (seed 001): a buy costs qty × price + commission, a sell brings qty × price − commission."""
    total = Decimal(0)
    for _, side, qty, price, commission in trades:
        gross = Decimal(qty) * Decimal(price)
        total += -(gross + Decimal(commission)) if side == "buy" else gross - Decimal(commission)
    return total


async def trade_monday(sandbox: Sandbox) -> None:
    for account, side, qty, price, commission in TRADES:
        body = {"account_no": account, "symbol": "AAPL", "side": side, "qty": qty, "price": price}
        await sandbox.ok("POST", "/sandbox/trades", {**body, "commission": commission})


def fetch(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


async def run_phase(connection: redis.Redis, run_worker: RunWorker, phase: str, day: date) -> dict[str, Any]:
    """Enqueue the phase (a finished one is deleted first: a re-run) and run it through a real worker."""
    job_id = f"phase-{phase.replace('_', '-')}-{day}"
    with contextlib.suppress(NoSuchJobError):
        fetch(connection, job_id).delete()
    assert enqueue_phase(connection, phase, day.isoformat())
    assert await run_worker()
    job = fetch(connection, job_id)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    return dict(job.return_value())


def alert(connection: redis.Redis, dedup_key: str) -> dict[str, Any]:
    """An alert's state, severity and facts as the state machine holds them (empty if never raised)."""
    raw = {k.decode(): v.decode() for k, v in connection.hgetall(keys.alert(dedup_key)).items()}
    if not raw:
        return {}
    payload = json.loads(raw["payload"])
    return {"state": raw["state"], "severity": payload["severity"], "summary": payload["summary"], **payload["facts"]}


def stored(connection: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in connection.hgetall(key).items()}


def audit(connection: redis.Redis, event: str) -> list[dict[str, Any]]:
    entries = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in connection.xrange(keys.AUDIT)]
    return [{**e, **json.loads(e["facts"])} for e in entries if e["event"] == event]


async def jit_day(make_sandbox: SandboxFactory, job_env: Configure, at: time = time(23, 40)) -> Sandbox:
    """Monday's trades, then the clock at ``at`` ET on Monday."""
    sandbox = await make_sandbox(customer_cash="1000")
    job_env(sandbox)
    await trade_monday(sandbox)
    await sandbox.set_clock(at_et(MONDAY, at))
    return sandbox


async def test_jit_reports_stored_with_who_pays_whom(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """At 23:40 ET the reports agree; net buys → the partner pays Alpaca the net by 13:00 ET on T+1."""
    await jit_day(make_sandbox, job_env)
    owed = -net_of(TRADES)
    assert owed > 0
    report = await run_phase(redis_client, run_worker, "jit_reports", MONDAY)
    assert (report["outcome"], report["rows"]) == ("ok", len(TRADES))
    assert report["buckets"]["t1"] == {"detail": str(-owed), "summary": str(-owed), "difference": "0.00"}
    text = f"pay Alpaca {owed:,.2f} by {TUESDAY} 13:00 ET (T+1 settlement)"
    assert report["instructions"] == [
        {
            "bucket": "t1",
            "payer": "partner",
            "payee": "alpaca",
            "amount": str(owed),
            "settle_date": TUESDAY.isoformat(),
            "due_at": at_et(TUESDAY, time(13)).isoformat(),
            "text": text,
        }
    ]
    held = stored(redis_client, keys.jit_report(MONDAY))
    assert (held["outcome"], held["summary_t1"], held["detail_t1"], held["rows_t1"]) == (
        "ok",
        str(-owed),
        str(-owed),
        str(len(TRADES)),
    )
    assert [i["text"] for i in json.loads(held["instructions"])] == [text]
    [noted] = audit(redis_client, "jit_settlement_instruction")
    assert (noted["key"], Decimal(noted["amount"]), noted["text"], noted["past_due"]) == (
        f"jit-{MONDAY}-t1",
        owed,
        text,
        False,
    )
    assert alert(redis_client, f"jit_report_mismatch-{MONDAY}") == {}
    assert alert(redis_client, f"jit_report_missing-{MONDAY}") == {}


@pytest.mark.parametrize(
    ("fault", "t1_difference"),
    [
        ({"mode": "drop_row"}, lambda last_net: last_net),
        ({"mode": "alter_amount", "delta": "-2.50"}, lambda _: Decimal("2.50")),
    ],
    ids=["dropped-row", "altered-amount"],
)
async def test_mismatching_detail_raises_a_critical_alert_with_the_bucket_difference(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    fault: dict[str, str],
    t1_difference: Callable[[Decimal], Decimal],
) -> None:
    """A detail file that no longer adds up to the net summary → jit_report_mismatch naming t1's difference."""
    sandbox = await jit_day(make_sandbox, job_env)
    await sandbox.ok("POST", "/sandbox/faults", {"kind": "jit_report", "report_type": "detail", **fault})
    summary = net_of(TRADES)
    difference = t1_difference(net_of(TRADES[-1:]))
    report = await run_phase(redis_client, run_worker, "jit_reports", MONDAY)
    assert report["outcome"] == "mismatch"
    assert report["buckets"]["t1"] == {
        "detail": str(summary - difference),
        "summary": str(summary),
        "difference": str(difference),
    }
    raised = alert(redis_client, f"jit_report_mismatch-{MONDAY}")
    assert (raised["state"], raised["severity"]) == ("triggered", "critical")
    assert raised["t1"] == f"detail {summary - difference}, net summary {summary}, difference {difference}"
    assert f"t1 detail {summary - difference}" in raised["summary"]
    assert [bucket for bucket in ("t0", "t1", "t2") if bucket in raised] == ["t1"]
    assert raised["instructions"] == f"pay Alpaca {-summary:,.2f} by {TUESDAY} 13:00 ET (T+1 settlement)"
    assert stored(redis_client, keys.jit_report(MONDAY))["difference_t1"] == str(difference)
    await sandbox.ok("DELETE", "/sandbox/faults")
    assert (await run_phase(redis_client, run_worker, "jit_reports", MONDAY))["outcome"] == "ok"
    assert alert(redis_client, f"jit_report_mismatch-{MONDAY}")["state"] == "resolved"


async def take_recheck(connection: redis.Redis, job_id: str) -> None:
    """Move a scheduled re-check to the queue now, as RQ's scheduler will once its time comes."""
    registry = ScheduledJobRegistry(ALERT_QUEUE, connection=connection, serializer=JSONSerializer)
    assert job_id in registry.get_job_ids()
    job = fetch(connection, job_id)
    registry.remove(job)
    queue(ALERT_QUEUE, connection).enqueue_job(job)


@pytest.mark.parametrize("how", ["before-2330", "fault"])
async def test_missing_report_alerts_then_a_later_run_finds_it_and_resolves(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis, how: str
) -> None:
    """No report yet (23:00, or a 404 fault) → jit_report_missing warning and a re-check; found later → resolved."""
    sandbox = await jit_day(make_sandbox, job_env, at=time(23, 0) if how == "before-2330" else time(23, 40))
    if how == "fault":
        await sandbox.ok("POST", "/sandbox/faults", {"kind": "jit_report", "report_type": "net_summary", "times": 1})
    missing = "detail" if how == "before-2330" else "net_summary"
    report = await run_phase(redis_client, run_worker, "jit_reports", MONDAY)
    recheck = f"phase-jit-reports-{MONDAY}-recheck-1"
    assert report == {"system_date": MONDAY.isoformat(), "outcome": "missing", "report": missing, "recheck": recheck}
    raised = alert(redis_client, f"jit_report_missing-{MONDAY}")
    assert (raised["state"], raised["severity"], raised["report"]) == ("triggered", "warning", missing)
    assert stored(redis_client, keys.jit_report(MONDAY))["outcome"] == "missing"
    assert fetch(redis_client, recheck).kwargs == {"system_date": MONDAY.isoformat(), "attempt": 1}
    await sandbox.set_clock(at_et(MONDAY, time(23, 45)))
    await take_recheck(redis_client, recheck)
    assert await run_worker()
    found = fetch(redis_client, recheck).return_value()
    assert (found["outcome"], found["instructions"][0]["amount"]) == ("ok", str(-net_of(TRADES)))
    assert alert(redis_client, f"jit_report_missing-{MONDAY}")["state"] == "resolved"
    assert stored(redis_client, keys.jit_report(MONDAY))["outcome"] == "ok"


async def test_report_still_missing_at_noon_next_day_is_critical_and_not_rechecked(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """At 12:00 ET on T+1 the window to act has closed: the alert escalates to critical, no further re-check."""
    sandbox = await jit_day(make_sandbox, job_env, at=time(23, 40))
    await sandbox.set_clock(at_et(TUESDAY, time(12, 0)))
    await sandbox.ok("POST", "/sandbox/faults", {"kind": "jit_report", "report_type": "detail"})
    report = await run_phase(redis_client, run_worker, "jit_reports", MONDAY)
    assert (report["outcome"], report["recheck"]) == ("missing", "")
    assert alert(redis_client, f"jit_report_missing-{MONDAY}")["severity"] == "critical"
    assert ScheduledJobRegistry(ALERT_QUEUE, connection=redis_client).get_job_ids() == []


# ---------------------------------------------------------------------- instant funding

AMOUNTS = {"8100000001": "100.00", "8100000002": "250.50", "8100000003": "75.25", "8100000004": "40.00"}
"""Monday's IF transfers; the last one is canceled by the partner, so the report neither lists nor totals it."""


async def listener_filled(
    sandbox: Sandbox, start_listener: ListenerFactory, redis_client: redis.Redis
) -> list[dict[str, Any]]:
    """Monday's transfers, recorded by a running listener; the clock then at 20:10 ET, when the cycle closed.

    Returns the transfers as the sandbox holds them at 20:10 (the last one CANCELED).
    """
    running = await start_listener(sandbox)
    created = [await sandbox.create_transfer(account, amount) for account, amount in AMOUNTS.items()]
    await sandbox.advance(1)
    await sandbox.ok("DELETE", f"/v1/instant_funding/{created[-1]['id']}")

    async def recorded() -> bool:
        wanted = ["EXECUTED"] * (len(created) - 1) + ["CANCELED"]
        return [redis_client.hget(keys.transfer(t["id"]), "status") for t in created] == [s.encode() for s in wanted]

    await eventually(recorded)
    await sandbox.set_clock(at_et(MONDAY, time(20, 10)))
    job_id = f"phase-if-reports-{MONDAY}"

    async def scheduled() -> bool:
        return job_id in queue(ALERT_QUEUE, redis_client).job_ids

    await eventually(scheduled)  # the listener's scheduler enqueues the phase by itself
    await running.halt()
    return [await sandbox.ok("GET", f"/v1/instant_funding/{t['id']}") for t in created]


async def test_if_reports_agree_with_a_store_the_listener_filled(
    sandbox: Sandbox,
    job_env: Configure,
    run_worker: RunWorker,
    start_listener: ListenerFactory,
    redis_client: redis.Redis,
) -> None:
    """At 20:10 the scheduled if_reports job finds every reported transfer stored alike: no alert, result stored."""
    transfers = await listener_filled(sandbox, start_listener, redis_client)
    assert await run_worker()
    report = fetch(redis_client, f"phase-if-reports-{MONDAY}").return_value()
    counted = [t for t in transfers if t["status"] != "CANCELED"]
    owed = sum((Decimal(t["amount"]) for t in counted), Decimal(0))
    interest = sum((Decimal(t["total_interest"]) for t in counted), Decimal("0.00"))
    assert report == {
        "system_date": MONDAY.isoformat(),
        "outcome": "ok",
        "report_transfers": len(transfers) - 1,
        "store_transfers": len(transfers) - 1,
        "total_amount_owed": str(owed),
        "store_amount_owed": str(owed),
        "total_interest_penalty": str(interest),
        "store_interest": str(interest),
        "moved_since_report": 0,
        "differences": [],
    }
    held = stored(redis_client, keys.if_report(MONDAY))
    assert (held["outcome"], held["differences"], held["total_amount_owed"]) == ("ok", "[]", str(owed))
    assert alert(redis_client, f"if_report_mismatch-{MONDAY}") == {}


async def test_store_differences_raise_if_report_mismatch_naming_the_transfers(
    sandbox: Sandbox,
    job_env: Configure,
    run_worker: RunWorker,
    start_listener: ListenerFactory,
    redis_client: redis.Redis,
) -> None:
    """An altered amount and a lost transfer in the store → critical if_report_mismatch naming both; fixed, resolved."""
    transfers = await listener_filled(sandbox, start_listener, redis_client)
    altered, lost = transfers[0], transfers[1]
    redis_client.hset(keys.transfer(altered["id"]), "amount", "999.99")
    redis_client.delete(keys.transfer(lost["id"]))
    report = await run_phase(redis_client, run_worker, "if_reports", MONDAY)
    counted = [t for t in transfers if t["status"] != "CANCELED"]
    owed = sum((Decimal(t["amount"]) for t in counted), Decimal(0))
    store_owed = owed - Decimal(altered["amount"]) + Decimal("999.99") - Decimal(lost["amount"])
    assert report["outcome"] == "mismatch"
    assert report["differences"] == [
        f"amount {altered['id']}: report {altered['amount']}, store 999.99",
        f"missing_in_store {lost['id']}: report {lost['amount']} EXECUTED, store absent",
        f"total_amount_owed 7536050SI: report {owed}, store {store_owed}",
    ]
    raised = alert(redis_client, f"if_report_mismatch-{MONDAY}")
    assert (raised["state"], raised["severity"], raised["differences"]) == ("triggered", "critical", "3")
    assert altered["id"] in raised["summary"]
    assert lost["id"] in raised["first"]
    assert json.loads(stored(redis_client, keys.if_report(MONDAY))["differences"]) == report["differences"]
    redis_client.hset(keys.transfer(altered["id"]), "amount", altered["amount"])
    redis_client.hset(keys.transfer(lost["id"]), mapping={k: str(v) for k, v in lost.items() if isinstance(v, str)})
    fixed = await run_phase(redis_client, run_worker, "if_reports", MONDAY)
    assert (fixed["outcome"], fixed["differences"]) == ("ok", [])
    assert alert(redis_client, f"if_report_mismatch-{MONDAY}")["state"] == "resolved"


async def test_a_stale_status_in_the_store_is_a_warning_naming_the_transfer(
    sandbox: Sandbox,
    job_env: Configure,
    run_worker: RunWorker,
    start_listener: ListenerFactory,
    redis_client: redis.Redis,
) -> None:
    """A status Alpaca still shows otherwise on a re-read is a real difference, but only a warning: it may heal."""
    transfers = await listener_filled(sandbox, start_listener, redis_client)
    stale = transfers[1]
    redis_client.hset(keys.transfer(stale["id"]), "status", "PENDING")
    report = await run_phase(redis_client, run_worker, "if_reports", MONDAY)
    assert (report["differences"], report["moved_since_report"]) == (
        [f"status {stale['id']}: report {stale['status']}, store PENDING"],
        0,
    )
    raised = alert(redis_client, f"if_report_mismatch-{MONDAY}")
    assert (raised["severity"], raised["differences"]) == ("warning", "1")
