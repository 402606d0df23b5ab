"""Bank holidays that trade (Columbus Day, Veterans Day 2026): deadlines stand, no wire arrives, RF pays, and the
morning digest says so; the banking calendar comes from Alpaca (once a day) or, failing that, the Fed's list."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal

import pytest
import redis

from funding.calendar import ET, at_et
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import SandboxFactory
from tests.support.settle import (
    SI,
    alerts,
    create_transfers,
    et,
    journals,
    run_settle,
    run_step,
    settlements,
    total,
    transfers,
)

JobEnv = Callable[..., None]
DAYS = [
    pytest.param(date(2026, 10, 9), date(2026, 10, 12), "Columbus Day", id="columbus-day"),
    pytest.param(date(2026, 11, 10), date(2026, 11, 11), "Veterans Day", id="veterans-day"),
]


@pytest.mark.parametrize(("created_on", "holiday", "name"), DAYS)
async def test_transfers_due_on_a_bank_holiday_are_settled_from_rf_before_the_cutoff(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    created_on: date,
    holiday: date,
    name: str,
) -> None:
    """The digest says banks are closed and no wire can arrive; the partner's wire lands the next banking day;
    the settle run pays everything from RF before 1 PM ET; Alpaca's banking calendar is read once."""
    sandbox = await make_sandbox(at_et(created_on, time(10, 0)), settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["120.00", "80.50", "42.42"])
    day = created[0]["deadline"]
    assert day == holiday.isoformat()  # the deadline follows the trading calendar
    due = total(row["amount"] for row in created)

    await sandbox.set_clock(et(day, 9, 30))
    await run_step(redis_client, run_worker, "digest", day)
    [digest] = alerts(redis_client, "digest")
    assert f"banks are closed today ({name}): no wire or ACH can arrive" in digest["summary"]
    assert (digest["banking_day"], digest["bank_holiday"], digest["due_amount"]) == ("no", name, f"{due:.2f}")

    await sandbox.set_clock(et(day, 10))
    wire = await sandbox.ok("POST", "/sandbox/wires", {"account_no": SI, "amount": f"{due:.2f}"})
    next_banking_day = datetime.fromisoformat(wire["wire_credited_at"])
    assert next_banking_day.date() > holiday
    assert next_banking_day.astimezone(ET).time() == time(8, 0)

    await sandbox.set_clock(et(day, 12))
    report = await run_settle(redis_client, run_worker, day)
    assert (report["outcome"], report["settled"]) == ("done", 3)
    assert {row["status"] for row in await transfers(sandbox, created)} == {"COMPLETED"}
    [settlement] = await settlements(sandbox)
    assert datetime.fromisoformat(settlement["completed_at"]) < et(day, 13)
    [fund] = await journals(sandbox)
    assert Decimal(fund["net_amount"]) == due  # all of it from RF: the wire has not landed

    await run_step(redis_client, run_worker, "warning", day)
    sent = await sandbox.ok("GET", "/sandbox/requests")
    assert [r["path"] for r in sent["requests"]].count("/v2/calendar/BMO") == 1  # cached for the day
    assert redis_client.exists(keys.banking_days(day))

    await sandbox.set_clock(next_banking_day)
    assert await sandbox.cash(SI) == due  # the wire, a banking day later


async def test_when_alpaca_cannot_serve_the_banking_calendar_the_feds_holidays_stand_in(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """GET /v2/calendar/BMO refused: the digest still knows Columbus Day from the local list, counted as a fallback."""
    sandbox = await make_sandbox(at_et(date(2026, 10, 9), time(10, 0)))
    job_env(sandbox)
    created = await create_transfers(sandbox, ["10.00"])
    day = created[0]["deadline"]
    fault = {"kind": "http_error", "status": 404, "path": "/v2/calendar/BMO", "times": 10}
    await sandbox.ok("POST", "/sandbox/faults", fault)
    await sandbox.set_clock(et(day, 9, 30))

    await run_step(redis_client, run_worker, "digest", day)

    [digest] = alerts(redis_client, "digest")
    assert "banks are closed today (Columbus Day)" in digest["summary"]
    assert redis_client.hget(keys.metrics("banking_calendar"), "local") == b"1"
    assert not redis_client.exists(keys.banking_days(day))  # nothing cached: the next job asks Alpaca again
