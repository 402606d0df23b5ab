"""Settle job scenarios over the sandbox: dry-run, kill switch, holidays and DST, a late run, concurrent runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import redis

from funding.calendar import ET
from funding.models import Journal
from funding.money import late_interest
from jobs.settle import settle
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import SandboxFactory
from tests.support.settle import (
    SI,
    alerts,
    audit,
    create_transfers,
    et,
    hash_of,
    intents,
    journals,
    ledger_length,
    reconciled,
    run_settle,
    settle_context,
    settlements,
    total,
    transfers,
)

JobEnv = Callable[..., None]


async def test_dry_run_moves_nothing_but_audits_and_records_what_it_would_have_done(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """settle and fund in dry-run: the sandbox ledger does not move; intents say dry-run with the amounts."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox, settle_mode="dry-run", fund_mode="dry-run")
    amounts = ["333.33", "66.67"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    before, entries = await reconciled(sandbox), await ledger_length(sandbox)

    report = await run_settle(redis_client, run_worker, deadline)

    assert report["outcome"] == "dry_run"
    assert await ledger_length(sandbox) == entries
    assert await reconciled(sandbox) == before
    assert (await journals(sandbox), await settlements(sandbox)) == ([], [])
    assert {t["status"] for t in await transfers(sandbox, created)} == {"EXECUTED"}
    recorded = intents(redis_client, deadline)
    assert {k: (v["kind"], v["status"], Decimal(v["amount"]), v["broker_id"]) for k, v in recorded.items()} == {
        f"fund-{deadline}-1": ("fund", "dry-run", total(amounts), ""),
        f"settle-{deadline}-2": ("settle", "dry-run", total(amounts), ""),
    }
    events = [row["event"] for row in audit(redis_client)]
    assert events == ["plan", "fund_dry-run", "settle_dry-run", "report"]
    assert redis_client.get(keys.moved_today(deadline)) is None  # a dry run reserves nothing of the daily cap


async def test_kill_switch_set_between_journal_and_settlement_stops_the_settlement_until_removed(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """sk:kill set while the RF → SI journal is pending: no settlement, outcome killed; removed, the rerun settles."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, jnlc_limits_apply_to_firm=True)
    job_env(sandbox)
    amounts = ["150.00", "9.99"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    first = await run_settle(redis_client, run_worker, deadline)
    [journal] = await journals(sandbox)
    assert (first["outcome"], journal["status"]) == ("in_progress", "pending")
    redis_client.set(keys.KILL_SWITCH, "treasury investigating a mismatch")
    await sandbox.ok("POST", f"/sandbox/journals/{journal['id']}/approve")

    killed = await run_settle(redis_client, run_worker, deadline, "settle_retry")

    assert killed["outcome"] == "killed"
    assert await settlements(sandbox) == []
    [alert] = alerts(redis_client, "kill_switch")
    assert "treasury investigating a mismatch" in alert["summary"]
    assert alerts(redis_client, "guardrail") == []
    assert (await reconciled(sandbox))[SI]["cash"] == total(amounts)  # the journal went through; nothing else

    redis_client.delete(keys.KILL_SWITCH)
    resumed = await run_settle(redis_client, run_worker, deadline, "late_check")

    assert (resumed["outcome"], resumed["settled"]) == ("done", len(amounts))
    assert [j["id"] for j in await journals(sandbox)] == [journal["id"]]
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED"]
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_kill_switch_set_while_the_journal_executes_stops_before_the_settlement_in_the_same_run(
    make_sandbox: SandboxFactory, job_env: JobEnv, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sk:kill set right after the RF → SI journal is accepted: the same run posts no settlement and says killed."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["75.00", "25.00"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))

    async with settle_context(redis_client) as ctx:
        create_journal = ctx.broker.create_journal

        async def operator_pulls_the_switch(body: Mapping[str, Any], idempotency_key: str) -> Journal:
            journal = await create_journal(body, idempotency_key)
            redis_client.set(keys.KILL_SWITCH, "operator saw a wrong amount")
            return journal

        monkeypatch.setattr(ctx.broker, "create_journal", operator_pulls_the_switch)
        report = await settle(ctx, date.fromisoformat(deadline), phase="settle")

    assert report["outcome"] == "killed"
    assert [j["status"] for j in await journals(sandbox)] == ["executed"]
    assert await settlements(sandbox) == []
    assert [a["kind"] for a in alerts(redis_client)] == ["kill_switch"]
    assert not any(i["kind"] == "settle" for i in intents(redis_client, deadline).values())
    assert (await reconciled(sandbox))[SI]["cash"] == total(amounts)


async def test_kill_switch_on_before_the_run_is_reported_as_killed_not_as_rf_short(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """With sk:kill set the plan must not blame RF: outcome killed, every unsettled transfer listed as left
    because of the switch, one kill_switch alert counting them, nothing moves."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["10.00"])
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    redis_client.set(keys.KILL_SWITCH, "drill")
    entries = await ledger_length(sandbox)

    report = await run_settle(redis_client, run_worker, deadline)

    assert report["outcome"] == "killed"
    assert report["left"] == [
        {
            "transfer_id": created[0]["id"],
            "account_no": "8100000001",
            "amount": "10.00",
            "why": "kill switch is on: drill",
        }
    ]
    [alert] = alerts(redis_client)
    assert (alert["kind"], alert["unsettled"], alert["unsettled_amount"]) == ("kill_switch", "1", "10.00")
    assert "1 transfer (10.00) due by 1 PM ET unsettled" in alert["summary"]
    assert (await journals(sandbox), await settlements(sandbox)) == ([], [])
    assert await ledger_length(sandbox) == entries
    await reconciled(sandbox)


async def test_transfers_before_thanksgiving_are_due_the_friday_after_and_nothing_is_due_on_the_holiday(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Created Wed 2026-11-25 before 8 PM ET: deadline Fri 11-27; the 11-26 run finds nothing, the 11-27 run settles."""
    sandbox = await make_sandbox(start_at=datetime(2026, 11, 25, 19, 59, tzinfo=ET), settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["420.00", "0.42"]
    created = await create_transfers(sandbox, amounts)
    assert {(t["system_date"], t["deadline"]) for t in created} == {("2026-11-25", "2026-11-27")}
    await sandbox.set_clock(et("2026-11-26", 13, 30))  # Thanksgiving: no 1 PM interest either

    holiday = await run_settle(redis_client, run_worker, "2026-11-26")

    assert holiday["outcome"] == "nothing_due"
    assert {t["total_interest"] for t in await transfers(sandbox, created)} == {"0.00"}
    await sandbox.set_clock(et("2026-11-27", 12))

    report = await run_settle(redis_client, run_worker, "2026-11-27")

    assert (report["outcome"], report["settled"], report["late"]) == ("done", len(amounts), False)
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(amounts)
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED"]
    assert {(t["status"], t["total_interest"]) for t in await transfers(sandbox, created)} == {("COMPLETED", "0.00")}
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_deadline_after_the_dst_change_settles_before_1_pm_eastern_standard_time(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Created Fri 2026-10-30 (EDT), due Mon 11-02 (EST): 12:30 ET is 17:30Z, on time; completed before 18:00Z."""
    sandbox = await make_sandbox(start_at=datetime(2026, 10, 30, 10, tzinfo=ET), settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["700.00", "1.23"]
    created = await create_transfers(sandbox, amounts)
    assert {t["deadline"] for t in created} == {"2026-11-02"}
    assert et("2026-11-02", 12) == datetime(2026, 11, 2, 17, tzinfo=UTC)  # UTC−5 after the Nov 1 change
    await sandbox.set_clock(datetime(2026, 11, 2, 17, 30, tzinfo=UTC))  # would be 13:30 with October's offset

    report = await run_settle(redis_client, run_worker, "2026-11-02")

    assert (report["outcome"], report["settled"], report["late"]) == ("done", len(amounts), False)
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(amounts)
    [settlement] = await settlements(sandbox)
    assert settlement["status"] == "COMPLETED"
    assert datetime.fromisoformat(settlement["completed_at"]) < datetime(2026, 11, 2, 18, tzinfo=UTC)
    await sandbox.set_clock(datetime(2026, 11, 2, 18, 30, tzinfo=UTC))  # past 1 PM EST: settled, so no interest
    assert {(t["status"], t["total_interest"]) for t in await transfers(sandbox, created)} == {("COMPLETED", "0.00")}
    [row] = [r for r in audit(redis_client) if r["event"] == "report"]
    assert json.loads(row["facts"])["late"] is False
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_late_run_at_1_30_pm_says_late_explains_why_and_still_settles_amount_plus_interest(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """At 13:30 ET: late=True, the audit note says settling now only prevents cancellation, amount + interest paid."""
    fed_upper_bound = Decimal("0.0450")
    sandbox = await make_sandbox(settlement_delay_seconds=0, fed_upper_bound=str(fed_upper_bound))
    job_env(sandbox)
    amounts = ["999.99", "480.00"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    interest = total(late_interest(Decimal(a), fed_upper_bound) for a in amounts)
    await sandbox.set_clock(et(deadline, 13, 30))

    report = await run_settle(redis_client, run_worker, deadline, "late_check")

    assert (report["outcome"], report["settled"], report["late"]) == ("done", len(amounts), True)
    [note] = [r for r in audit(redis_client) if r["event"] == "late"]
    why = json.loads(note["facts"])["why"]
    assert "interest is booked" in why
    assert "prevents the 8 PM cancellation" in why
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(amounts) + interest
    [settlement] = await settlements(sandbox)
    assert (settlement["status"], Decimal(settlement["interest_amount"])) == ("COMPLETED", interest)
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    costs = {k: Decimal(v) for k, v in hash_of(redis_client, keys.costs(deadline)).items()}
    assert costs == {"late_interest_avoided": 0, "late_interest_incurred": interest}
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_two_concurrent_runs_for_one_deadline_make_one_journal_and_one_settlement(
    make_sandbox: SandboxFactory, job_env: JobEnv, redis_client: redis.Redis
) -> None:
    """The phase and a re-plan start together: the lock makes one of them busy; one journal, one settlement."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["512.00", "64.00", "8.00"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))

    async with settle_context(redis_client) as phase_ctx, settle_context(redis_client) as replan_ctx:
        reports = await asyncio.gather(
            settle(phase_ctx, date.fromisoformat(deadline), phase="settle"),
            settle(replan_ctx, date.fromisoformat(deadline), phase="replan"),
        )

    assert sorted(r["outcome"] for r in reports) == ["busy", "done"]
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(amounts)
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED"]
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    assert [r["event"] for r in audit(redis_client)].count("busy") == 1
    assert (await reconciled(sandbox))[SI]["cash"] == 0
