"""The forecast in the alert ladder over the sandbox: 15:00 "fund RF today", the digest's line, the statement."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal

import redis

from funding.calendar import TradingCalendar, at_et
from store import keys
from tests.support.cover import BIG_JNLC, fetch, run_cover, trade
from tests.support.forecast import day_of_traffic, record_all, total_of
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import RF, SI, alerts, create_transfers, et, run_settle, run_step

JobEnv = Callable[..., None]
TRADING = TradingCalendar()


async def week_then(
    make_sandbox: SandboxFactory, job_env: JobEnv, url: str, first: date, today: date, rf: Decimal
) -> Sandbox:
    """Traffic every trading day from ``first`` (the store's first day, taken as partial) to ``today`` 15:00."""
    sandbox = await make_sandbox(at_et(first, time(7, 0)), settlement_delay_seconds=0, rf_balance=str(rf))
    job_env(sandbox)
    for day in TRADING.trading_days(first, today - date.resolution):
        await day_of_traffic(sandbox, day)
    await day_of_traffic(sandbox, today, range(9, 15))
    await sandbox.set_clock(at_et(today, time(15, 0)))
    await record_all(sandbox, url)
    return sandbox


async def test_the_afternoon_before_veterans_day_warns_to_fund_rf_and_the_next_digest_resolves_it(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    session_redis_url: str,
) -> None:
    """Monday 2026-11-09 15:00: Wednesday's deadline (a bank holiday) is short, its wire must be credited Tuesday, so
    today is the last afternoon: a warning (Wednesday is not tomorrow). Tuesday's digest carries the line and
    resolves it; the forecast kept in Redis feeds the gauges."""
    monday, tuesday = date(2026, 11, 9), date(2026, 11, 10)
    rf = total_of(monday) + total_of(tuesday) / 2
    await week_then(make_sandbox, job_env, session_redis_url, date(2026, 10, 30), monday, rf)

    report = await run_step(redis_client, run_worker, "forecast", monday.isoformat())

    assert report["alert"] == "warning"
    [raised] = alerts(redis_client, "fund_rf")
    assert (raised["severity"], raised["wire_by"], raised["covers_through"], raised["first_short"]) == (
        "warning",
        "2026-11-10",
        "2026-11-11",
        "2026-11-11",
    )
    shortfall = total_of(tuesday) - (rf - total_of(monday))
    assert Decimal(raised["amount"]) == shortfall.quantize(Decimal("0.01"))
    assert raised["summary"].startswith("2026-11-09: fund RF today: wire ")
    kept = json.loads(redis_client.get(keys.FORECAST) or "{}")
    assert kept["recommendation"]["wire_by"] == "2026-11-10"

    await run_step(redis_client, run_worker, "digest", tuesday.isoformat())

    assert [row["action"] for row in alerts(redis_client, "fund_rf")] == ["trigger", "resolve"]
    [digest] = alerts(redis_client, "digest")
    assert digest["forecast"].startswith("forecast: wire ")


async def test_a_shortfall_due_tomorrow_pages_and_enough_rf_stays_quiet(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    session_redis_url: str,
) -> None:
    """Monday 2026-11-16 15:00 with RF short for Tuesday's deadline (a banking day): critical. Once the wire is
    credited, the step run again resolves it."""
    monday = date(2026, 11, 16)
    rf = total_of(monday) / 2  # Monday's own deadline (Friday's transfers) is past its cutoff at 15:00
    sandbox = await week_then(make_sandbox, job_env, session_redis_url, date(2026, 11, 5), monday, rf)
    report = await run_step(redis_client, run_worker, "forecast", monday.isoformat())
    assert report["alert"] == "critical"
    [raised] = alerts(redis_client, "fund_rf")
    assert (raised["wire_by"], raised["first_short"]) == ("2026-11-17", "2026-11-17")
    assert Decimal(raised["amount"]) == (total_of(monday) - rf).quantize(Decimal("0.01"))
    await sandbox.wire(RF, raised["amount"])
    fetch(redis_client, f"phase-ladder-forecast-{monday}").delete()  # the phase once more, as by hand
    quiet = await run_step(redis_client, run_worker, "forecast", monday.isoformat())
    assert quiet["alert"] is None
    assert [row["action"] for row in alerts(redis_client, "fund_rf")] == ["trigger", "resolve"]


async def test_the_end_of_day_statement_tallies_the_day(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
) -> None:
    """One transfer settled by settlekeeper, one by the partner, one canceled (RF short) whose spent buying power
    left a debit that was covered: the 20:15 statement says so, with the interest booked and RF and SI."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, rf_balance="100.00", **BIG_JNLC)
    job_env(sandbox)
    ours, partners, lapsed = await create_transfers(sandbox, ["80.00", "30.00", "500.00"])
    deadline = ours["deadline"]
    await trade(sandbox, "buy", qty="1", price="400.00", account=lapsed["account_no"])
    await sandbox.wire(SI, "30.00")
    await sandbox.set_clock(et(deadline, 10))
    await sandbox.ok(
        "POST", "/v1/instant_funding/settlements", {"transfers": [{"instant_transfer_id": partners["id"]}]}
    )
    await sandbox.set_clock(et(deadline, 12))
    await run_settle(redis_client, run_worker, deadline)
    await sandbox.set_clock(et(deadline, 20, 1))
    await sandbox.wire(RF, "1000.00")
    assert (await run_cover(redis_client, run_worker, lapsed["account_no"], deadline))["outcome"] == "covered"
    await sandbox.set_clock(et(deadline, 20, 15))

    await run_step(redis_client, run_worker, "statement", deadline)

    [sent] = alerts(redis_client, "statement")
    interest = (await sandbox.ok("GET", f"/v1/instant_funding/{lapsed['id']}"))["total_interest"]
    assert {k: sent[k] for k in ("due", "settled_by_settlekeeper", "settled_by_partner", "canceled", "still_open")} == {
        "due": "3",
        "settled_by_settlekeeper": "1",
        "settled_by_partner": "1",
        "canceled": "1",
        "still_open": "0",
    }
    assert (sent["canceled_amount"], sent["interest_booked"], sent["debits_covered"], sent["debits_open"]) == (
        "500.00",
        interest,
        "1",
        "0",
    )
    assert Decimal(sent["interest_booked"]) > 0
    assert sent["debits_covered_amount"] == "400.00"
    assert sent["rf_close"] == f"{Decimal('1100.00') - Decimal('80.00') - Decimal('400.00'):.2f}"
    assert sent["forecast"].startswith("forecast: ")
