"""The alert ladder of a deadline day (jobs/ladder.py): each step fires at its time, and resolves when it clears."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from funding.records import Action
from jobs.registry import enqueue_action
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import RF, alerts, create_transfers, et, hash_of, run_settle, run_step, total, transfers

JobEnv = Callable[..., None]
BIG_JNLC = {"jnlc_transaction_limit": "1000000", "jnlc_daily_limit": "10000000"}
"""JNLC limits high enough that a cover journal executes at once."""
LATE_RATE = Decimal("0.0450") + Decimal("0.08")
"""The sandbox's default fed upper bound plus 8 %: one day of late interest is amount × this / 360."""


async def run_cover(redis_client: redis.Redis, run_worker: RunWorker, account: str, day: str) -> dict[str, Any]:
    """The listener's cover action for (account, day), run to the end."""
    job_id = f"cover-{account}-{day}"
    assert enqueue_action(redis_client, Action("0-0", job_id, "cover", account, day))
    assert await run_worker()
    report = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer).return_value()
    assert isinstance(report, dict)
    return report


def state(redis_client: redis.Redis, kind: str, day: str) -> str:
    """The state of the ladder alert ``kind`` of ``day`` (``triggered``, ``resolved``, or "" if never raised)."""
    return hash_of(redis_client, keys.alert(f"ladder-{kind}-{day}")).get("state", "")


def actions(redis_client: redis.Redis, kind: str) -> list[tuple[str, str]]:
    """(action, severity) of every ``sk:alerts`` entry of ``kind``, oldest first."""
    return [(row["action"], row["severity"]) for row in alerts(redis_client, kind)]


def interest(amount: str) -> Decimal:
    return (Decimal(amount) * LATE_RATE / 360).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def buy(sandbox: Sandbox, account: str, price: str) -> None:
    """The customer spends ``price`` of the buying power the transfer gave."""
    body = {"account_no": account, "symbol": "AAPL", "side": "buy", "qty": "1", "price": price}
    await sandbox.ok("POST", "/sandbox/trades", body)


async def test_a_short_day_climbs_every_step_and_each_alert_resolves_when_its_condition_clears(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF short: digest, warning, page, late notice and cancellations fire at their times; 20:00 and covers resolve."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, rf_balance="600.00", **BIG_JNLC)
    job_env(sandbox)
    amounts = ["300.00", "500.00", "700.00", "200.00"]
    spent = {"8100000002": "400.00", "8100000003": "700.00", "8100000004": "200.00"}
    created = await create_transfers(sandbox, amounts)
    for account, price in spent.items():
        await buy(sandbox, account, price)
    day = created[0]["deadline"]

    await sandbox.set_clock(et(day, 9, 30))
    digest = await run_step(redis_client, run_worker, "digest", day)
    [raised] = alerts(redis_client, "digest")
    assert (raised["action"], raised["severity"], raised["dedup_key"]) == ("trigger", "info", f"ladder-digest-{day}")
    expected = {"due_transfers": "4", "due_amount": "1700.00", "si_cash": "0.00", "rf_cash": "600.00"}
    assert {k: raised[k] for k in expected} == expected
    assert (raised["shortfall"], raised["minutes_to_cutoff"], digest["alert"]) == ("1100.00", "210", "info")

    await sandbox.set_clock(et(day, 11, 30))
    await run_step(redis_client, run_worker, "warning", day)
    [warning] = alerts(redis_client, "shortfall_projected")
    assert (warning["severity"], warning["shortfall"], warning["minutes_to_cutoff"]) == ("warning", "1100.00", "90")
    assert "1,100.00 short of the 1,700.00 due" in warning["summary"]

    await sandbox.set_clock(et(day, 12))
    await run_settle(redis_client, run_worker, day)
    left = [t for t in await transfers(sandbox, created) if t["status"] == "EXECUTED"]
    assert 0 < len(left) < len(created)  # RF paid for some of them
    await sandbox.set_clock(et(day, 12, 30))
    page = await run_step(redis_client, run_worker, "page", day)
    [paged] = alerts(redis_client, "unsettled_at_1230")
    assert (paged["severity"], paged["due_transfers"], paged["minutes_to_cutoff"]) == ("critical", str(len(left)), "30")
    assert paged["due_amount"] == str(total(t["amount"] for t in left)) == page["due_amount"]
    assert state(redis_client, "shortfall_projected", day) == "triggered"  # RF is still short of what is left

    await sandbox.set_clock(et(day, 13))  # the sandbox books a day of interest on every unsettled transfer
    await run_step(redis_client, run_worker, "late", day)
    [late] = alerts(redis_client, "late_interest")
    booked = sum((interest(t["amount"]) for t in left), Decimal(0))
    assert booked > 0
    assert (late["severity"], late["late_transfers"], late["interest_booked"]) == (
        "warning",
        str(len(left)),
        str(booked),
    )
    assert f"{booked} of late interest booked" in late["summary"]

    await sandbox.set_clock(et(day, 20))  # the sandbox cancels what is still unsettled
    await run_step(redis_client, run_worker, "cancellations", day)
    [canceled] = alerts(redis_client, "cancellations")
    debits = {t["account_no"]: Decimal(spent[t["account_no"]]) for t in left if t["account_no"] in spent}
    assert debits, "the scenario needs a debit left by a cancellation"
    assert (canceled["severity"], canceled["canceled_transfers"]) == ("critical", str(len(left)))
    assert (canceled["debit_accounts"], canceled["debit_total"]) == (str(len(debits)), str(sum(debits.values())))
    assert canceled["interest_owed"] == str(booked)
    for account, debit in debits.items():
        assert f"{account} -{debit} (cover not started)" in canceled["debits"]
    assert canceled["covers"] == "none yet"
    for kind in ("digest", "shortfall_projected", "unsettled_at_1230", "late_interest"):
        assert (state(redis_client, kind, day), actions(redis_client, kind)[-1][0]) == ("resolved", "resolve"), kind

    await sandbox.wire(RF, "5000.00")  # the partner funds RF
    accounts = sorted(debits)
    for n, account in enumerate(accounts, 1):
        assert (await run_cover(redis_client, run_worker, account, day))["outcome"] == "covered"
        expected_state = "resolved" if n == len(accounts) else "triggered"
        assert state(redis_client, "cancellations", day) == expected_state, account
    assert actions(redis_client, "cancellations") == [("trigger", "critical"), ("resolve", "info")]
    assert "no account is in debit" in alerts(redis_client, "cancellations")[-1]["summary"]


async def test_rf_covering_everything_raises_no_warning_and_the_settle_run_resolves_the_digest(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF can pay what is due: 11:30 and 12:30 stay quiet; the 12:00 settle run that pays it all closes the digest."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["100.00", "250.00"])
    day = created[0]["deadline"]
    await sandbox.set_clock(et(day, 9, 30))
    await run_step(redis_client, run_worker, "digest", day)
    [digest] = alerts(redis_client, "digest")
    assert (digest["due_transfers"], digest["due_amount"], digest["shortfall"]) == ("2", "350.00", "0.00")
    await sandbox.set_clock(et(day, 11, 30))
    assert (await run_step(redis_client, run_worker, "warning", day))["alert"] is None
    assert state(redis_client, "digest", day) == "triggered"

    await sandbox.set_clock(et(day, 12))
    assert (await run_settle(redis_client, run_worker, day))["outcome"] == "done"
    assert state(redis_client, "digest", day) == "resolved"
    await sandbox.set_clock(et(day, 12, 30))
    assert (await run_step(redis_client, run_worker, "page", day))["alert"] is None
    assert [row["kind"] for row in alerts(redis_client) if row["kind"] != "digest"] == []
    assert actions(redis_client, "digest") == [("trigger", "info"), ("resolve", "info")]


async def test_dry_run_warns_and_pages_until_a_settle_run_leaves_nothing_unsettled(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Auto-settle in dry-run: warning at 11:30 and page at 12:30; a settle run with it on resolves both."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox, settle_mode="dry-run")
    created = await create_transfers(sandbox, ["100.00", "250.00"])
    day = created[0]["deadline"]
    await sandbox.set_clock(et(day, 11, 30))
    await run_step(redis_client, run_worker, "warning", day)
    [warning] = alerts(redis_client, "shortfall_projected")
    assert (warning["severity"], warning["shortfall"], warning["settle_mode"]) == ("warning", "0.00", "dry-run")
    assert "auto-settle is not on (settle dry-run, fund on)" in warning["summary"]

    await sandbox.set_clock(et(day, 12))
    assert (await run_settle(redis_client, run_worker, day))["outcome"] == "dry_run"
    await sandbox.set_clock(et(day, 12, 30))
    await run_step(redis_client, run_worker, "page", day)
    assert state(redis_client, "shortfall_projected", day) == "triggered"
    assert actions(redis_client, "unsettled_at_1230") == [("trigger", "critical")]

    job_env(sandbox, settle_mode="on")
    assert (await run_settle(redis_client, run_worker, day, "settle_retry"))["outcome"] == "done"
    for kind in ("shortfall_projected", "unsettled_at_1230"):
        assert state(redis_client, kind, day) == "resolved", kind
        assert actions(redis_client, kind)[-1] == ("resolve", "info")
    assert all(t["status"] == "COMPLETED" for t in await transfers(sandbox, created))


async def test_cancellations_without_a_debit_warn_and_resolve_at_once(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Nothing settled, nothing spent: the 20:00 step warns of the lapsed transfers and closes, no debit being left."""
    sandbox = await make_sandbox(rf_balance="0")
    job_env(sandbox)
    created = await create_transfers(sandbox, ["100.00", "250.00"])
    day = created[0]["deadline"]
    await sandbox.set_clock(et(day, 20))
    report = await run_step(redis_client, run_worker, "cancellations", day)
    assert (report["alert"], report["canceled_transfers"], report["debit_accounts"]) == ("warning", "2", "0")
    assert actions(redis_client, "cancellations") == [("trigger", "warning"), ("resolve", "info")]
    assert "no debit" in alerts(redis_client, "cancellations")[0]["summary"]
    assert await sandbox.cash(RF) == 0


async def test_steps_on_a_quiet_day_raise_only_the_digest(
    sandbox: Sandbox, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Nothing due: the digest says so and closes; warning, page, late notice and cancellations raise nothing."""
    day = "2026-11-24"
    await sandbox.set_clock(et(day, 9, 30))
    assert (await run_step(redis_client, run_worker, "digest", day))["due_transfers"] == "0"
    for step, hour in (("warning", 11), ("page", 12), ("late", 13), ("cancellations", 20)):
        await sandbox.set_clock(et(day, hour, 30))
        assert (await run_step(redis_client, run_worker, step, day))["alert"] is None, step
    assert [(row["kind"], row["action"]) for row in alerts(redis_client)] == [
        ("digest", "trigger"),
        ("digest", "resolve"),
    ]
