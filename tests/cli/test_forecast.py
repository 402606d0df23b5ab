"""``settlekeeper forecast`` over the sandbox: a week of traffic, then the Friday before Columbus Day (2026-10-12)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest
import redis

from funding.calendar import TradingCalendar, at_et
from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.forecast import HOURS, day_of_traffic, record_all, total_of
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import RF, run_settle

JobEnv = Callable[..., None]
TRADING = TradingCalendar()
FIRST, FRIDAY, MONDAY = date(2026, 10, 1), date(2026, 10, 9), date(2026, 10, 12)


async def forecast_on_friday_morning(
    make_sandbox: SandboxFactory, job_env: JobEnv, session_redis_url: str, rf: Decimal
) -> tuple[Sandbox, dict[str, Any], dict[str, str]]:
    sandbox = await make_sandbox(at_et(FIRST, time(7, 0)), settlement_delay_seconds=0, rf_balance=str(rf))
    job_env(sandbox)
    for day in TRADING.trading_days(FIRST, date(2026, 10, 8)):
        await day_of_traffic(sandbox, day)
    await sandbox.set_clock(at_et(FRIDAY, time(7, 0)))
    await record_all(sandbox, session_redis_url)
    env = cli_env(sandbox, session_redis_url)
    code, out, err = await settlekeeper("forecast", "--json", env=env)
    assert code == 1, err  # a wire is recommended
    return sandbox, json.loads(out), env


@pytest.mark.parametrize("wired", [True, False], ids=["wired", "not-wired"])
async def test_the_friday_before_columbus_day_asks_for_the_wire_that_lets_monday_settle_on_time(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    session_redis_url: str,
    wired: bool,
) -> None:
    """RF holds Friday's due and a third of Monday's. Friday 07:00 the forecast asks for Monday's shortfall by
    Friday (Monday banks are closed). Wired: Monday's transfers all settle before 1 PM. Not wired: Monday is
    RF-short, and the interest the sandbox books at 1 PM is the forecast's cost figure to the cent."""
    thursday = date(2026, 10, 8)
    rf = total_of(thursday) + total_of(FRIDAY) / 3
    sandbox, found, _ = await forecast_on_friday_morning(make_sandbox, job_env, session_redis_url, rf)
    by_day = {row["deadline"]: row for row in found["deadlines"]}
    assert by_day["2026-10-12"]["banking_day"] is False
    assert Decimal(by_day["2026-10-12"]["projected_due"]) == total_of(FRIDAY)
    shortfall = total_of(FRIDAY) - (rf - total_of(thursday))
    rec = found["recommendation"]
    assert (rec["wire_by"], rec["covers_through"], Decimal(rec["amount"])) == (
        "2026-10-09",
        "2026-10-12",
        shortfall.quantize(Decimal("0.01")),
    )
    if wired:
        await sandbox.wire(RF, rec["amount"])
    await day_of_traffic(sandbox, FRIDAY, range(9, 12))  # the transfers due Monday, before Friday's settle phase
    await sandbox.set_clock(at_et(FRIDAY, time(12, 0)))
    friday_run = await run_settle(redis_client, run_worker, FRIDAY.isoformat())
    assert (friday_run["outcome"], friday_run["settled"]) == ("done", len(HOURS))
    await day_of_traffic(sandbox, FRIDAY, range(12, 19))
    await sandbox.set_clock(at_et(MONDAY, time(12, 0)))
    monday_run = await run_settle(redis_client, run_worker, MONDAY.isoformat())
    await sandbox.set_clock(at_et(MONDAY, time(13, 5)))
    due_monday = [t for t in await sandbox.ok("GET", "/v1/instant_funding?limit=100") if t["deadline"] == "2026-10-12"]
    assert len(due_monday) == len(HOURS)
    booked = sum((Decimal(t["total_interest"]) for t in due_monday), Decimal(0))
    if wired:
        assert monday_run["outcome"] == "done"
        assert {t["status"] for t in due_monday} == {"COMPLETED"}
        assert booked == 0
    else:
        assert monday_run["left"]
        assert booked == Decimal(rec["cost_if_not"]["late_interest"])
        assert booked > 0
