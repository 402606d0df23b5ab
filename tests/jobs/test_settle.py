"""Settle job scenarios over the sandbox: auto-settle, partner settled first, RF short, failures, pending journal."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import redis

from funding.models import Settlement
from funding.money import late_interest
from jobs.settle import settle
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import (
    FW,
    RF,
    SI,
    alerts,
    audit,
    audit_events,
    create_transfers,
    et,
    intent_transfers,
    intents,
    journal_into_si,
    journals,
    reconciled,
    run_settle,
    settle_context,
    settlements,
    total,
    transfers,
)

JobEnv = Callable[..., None]


async def test_auto_settle_funds_si_with_exactly_what_it_lacks_and_settles_everything(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """One RF → SI journal of Σ remaining_payable − SI cash, one settlement, all COMPLETED, a full audit trail."""
    si_opening = Decimal("25.50")
    sandbox = await make_sandbox(settlement_delay_seconds=0, si_balance=str(si_opening))
    job_env(sandbox)
    amounts = ["100.00", "250.50", "75.25", "0.01"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    before = await reconciled(sandbox)

    report = await run_settle(redis_client, run_worker, deadline)

    assert report["outcome"] == "done"
    assert (report["settled"], report["late"], report["left"]) == (len(amounts), False, [])
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    [journal] = await journals(sandbox)
    assert await journal_into_si(sandbox, journal)
    assert Decimal(journal["net_amount"]) == total(amounts) - si_opening
    [settlement] = await settlements(sandbox)
    assert settlement["status"] == "COMPLETED"
    assert Decimal(settlement["total_amount"]) == total(amounts)
    after = await reconciled(sandbox)
    assert after[SI]["cash"] == 0
    assert after[FW]["cash"] == before[FW]["cash"]  # SI held exactly what was due: nothing to sweep
    assert before[RF]["cash"] - after[RF]["cash"] == total(amounts) - si_opening
    trail = [e for e in audit_events(redis_client) if e != "settle_in_progress"]
    assert trail == [
        "plan",
        "fund_planned",
        "fund_sent",
        "fund_accepted",
        "fund_executed",
        "settle_planned",
        "settle_sent",
        "settle_completed",
        "report",
    ]
    stored = intents(redis_client, deadline)
    fund, settle = stored[f"fund-{deadline}-1"], stored[f"settle-{deadline}-2"]
    assert (fund["status"], fund["broker_id"], Decimal(fund["amount"])) == (
        "done",
        journal["id"],
        total(amounts) - si_opening,
    )
    assert (settle["status"], settle["broker_id"], settle["broker_status"]) == ("done", settlement["id"], "COMPLETED")
    assert intent_transfers(redis_client, f"settle-{deadline}-2") == {t["id"] for t in created}
    assert settlement["additional_info"] == f"settlekeeper intent settle-{deadline}-2"


async def test_si_holding_more_than_due_needs_no_journal_and_the_excess_is_swept_to_fw(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """SI already covers everything: no RF → SI journal; the settlement sweeps SI's excess to FW."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["300.00", "45.67"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    wired = Decimal("500.00")
    await sandbox.wire(SI, str(wired))
    await sandbox.set_clock(et(deadline, 12))
    before = await reconciled(sandbox)

    report = await run_settle(redis_client, run_worker, deadline)

    assert (report["outcome"], report["settled"]) == ("done", len(amounts))
    assert await journals(sandbox) == []
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED"]
    after = await reconciled(sandbox)
    assert after[SI]["cash"] == 0
    assert after[FW]["cash"] - before[FW]["cash"] == wired - total(amounts)
    assert after[RF]["cash"] == before[RF]["cash"]
    assert "fund_planned" not in audit_events(redis_client)


async def partner_settles(sandbox: Sandbox, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The partner's own settlement of ``rows`` (POST /v1/instant_funding/settlements)."""
    body = {"transfers": [{"instant_transfer_id": r["id"]} for r in rows], "additional_info": "partner ops"}
    return dict(await sandbox.ok("POST", "/v1/instant_funding/settlements", body))


async def si_settlement_debits(sandbox: Sandbox) -> list[Decimal]:
    entries = (await sandbox.ok("GET", "/sandbox/ledger", params={"account_no": SI}))["entries"]
    return [Decimal(e["delta"]) for e in entries if e["reason"] == "settlement"]


async def test_partner_settlement_done_before_the_run_is_left_alone_and_its_wire_reduces_the_top_up(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """The partner settled some transfers and wired extra to SI: the job settles only the rest, topping up need − SI."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["200.00", "80.00", "150.25", "99.99"])
    partners, rest = created[:2], created[2:]
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 11))
    await sandbox.wire(SI, str(total(r["amount"] for r in partners)))
    theirs = await partner_settles(sandbox, partners)
    extra = Decimal("60.00")  # wired after the partner's settlement completed, so nothing swept it away
    await sandbox.wire(SI, str(extra))
    await sandbox.set_clock(et(deadline, 12))

    report = await run_settle(redis_client, run_worker, deadline)

    assert (report["outcome"], report["settled"]) == ("done", len(rest))
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(r["amount"] for r in rest) - extra
    assert [(s["id"], s["status"]) for s in await settlements(sandbox)] == [
        (theirs["id"], "COMPLETED"),
        (intents(redis_client, deadline)[f"settle-{deadline}-2"]["broker_id"], "COMPLETED"),
    ]
    assert intent_transfers(redis_client, f"settle-{deadline}-2") == {r["id"] for r in rest}
    assert await si_settlement_debits(sandbox) == [
        -total(r["amount"] for r in partners),
        -total(r["amount"] for r in rest),
    ]
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_a_replan_before_the_settle_phase_leaves_the_morning_to_the_partner(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """The partner settles two transfers at 10:00 (their events cause a re-plan): the re-plan moves nothing
    (outcome not_yet, audited), so the partner's next settlement is not refused; 12:00 settles the rest.
    (The chaos harness found a 10:00 re-plan settling every transfer due.)"""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["200.00", "80.00", "150.25", "99.99"])
    first, second, rest = created[:1], created[1:2], created[2:]
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 10))
    await sandbox.wire(SI, str(total(r["amount"] for r in first)))
    await partner_settles(sandbox, first)

    early = await run_settle(redis_client, run_worker, deadline, job="replan-1")

    assert (early["outcome"], early["settled"]) == ("not_yet", 0)
    assert await journals(sandbox) == []
    assert "not_yet" in audit_events(redis_client)
    await sandbox.wire(SI, str(total(r["amount"] for r in second)))  # SI's excess was swept to FW meanwhile
    await partner_settles(sandbox, second)  # one settlement in progress at a time: an early one of ours refused it
    await sandbox.set_clock(et(deadline, 12))
    report = await run_settle(redis_client, run_worker, deadline)
    assert (report["outcome"], report["settled"]) == ("done", len(rest))
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    assert len(await settlements(sandbox)) == 3


async def test_partner_settlement_still_pending_makes_the_job_wait_then_settle_the_rest(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """One settlement in progress per source: the job waits for the partner's PENDING one, then settles the rest."""
    sandbox = await make_sandbox()  # settlements are processed 30 sandbox seconds after creation
    job_env(sandbox)
    created = await create_transfers(sandbox, ["310.00", "42.42", "18.18"])
    partners, rest = created[:1], created[1:]
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    await sandbox.wire(SI, partners[0]["amount"])
    theirs = await partner_settles(sandbox, partners)

    first = await run_settle(redis_client, run_worker, deadline)

    assert first["outcome"] == "in_progress"
    assert theirs["id"] in first["waiting_for"]
    assert "PENDING" in first["waiting_for"]
    assert await journals(sandbox) == []
    assert [s["id"] for s in await settlements(sandbox)] == [theirs["id"]]

    await sandbox.advance(30)  # the partner's settlement completes
    second = await run_settle(redis_client, run_worker, deadline, "settle_retry")
    assert second["outcome"] == "in_progress"  # its own settlement is PENDING for 30 s
    await sandbox.advance(30)
    await run_settle(redis_client, run_worker, deadline, "late_check")

    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(r["amount"] for r in rest)
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED", "COMPLETED"]
    assert await si_settlement_debits(sandbox) == [-Decimal(partners[0]["amount"]), -total(r["amount"] for r in rest)]
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def test_partner_settlement_finishing_while_the_job_waits_is_not_funded_or_settled_again(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The partner's settlement awaits funds when the job starts and completes during its wait: only the rest moves."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = await create_transfers(sandbox, ["500.00", "123.45", "6.78"])
    partners, rest = created[:2], created[2:]
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    theirs = await partner_settles(sandbox, partners)  # SI is empty: it waits in AWAITING_ADDITIONAL_FUNDS
    assert [s["status"] for s in await settlements(sandbox)] == ["AWAITING_ADDITIONAL_FUNDS"]
    polls: list[list[str]] = []

    async with settle_context(redis_client) as ctx:
        list_settlements = ctx.broker.list_settlements

        async def partner_wires_while_the_job_waits(statuses: list[str] | None = None) -> list[Settlement]:
            rows = await list_settlements(statuses)
            polls.append([s.status.value for s in rows])
            if len(polls) == 1:  # the job has seen the partner's settlement in progress; now the wire lands
                amount = str(total(r["amount"] for r in partners))
                await sandbox.wire(SI, amount)
            return rows

        monkeypatch.setattr(ctx.broker, "list_settlements", partner_wires_while_the_job_waits)
        report = await settle(ctx, date.fromisoformat(deadline), phase="settle")

    assert polls[0] == ["AWAITING_ADDITIONAL_FUNDS"]
    assert (report["outcome"], report["settled"]) == ("done", len(rest))
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(r["amount"] for r in rest)
    assert [(s["id"] == theirs["id"], s["status"]) for s in await settlements(sandbox)] == [
        (True, "COMPLETED"),
        (False, "COMPLETED"),
    ]
    assert alerts(redis_client) == []
    balances = await reconciled(sandbox)
    assert (balances[SI]["cash"], balances[FW]["cash"]) == (Decimal(0), Decimal(0))  # no RF money swept away
    assert await si_settlement_debits(sandbox) == [-total(r["amount"] for r in partners), -Decimal(rest[0]["amount"])]


async def test_rf_short_settles_customers_in_debit_first_then_smallest_and_reports_the_rest(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF short: spent buying power first, then smallest first; what is left is reported and alerted as rf_short."""
    rf_balance = Decimal("400.00")
    sandbox = await make_sandbox(settlement_delay_seconds=0, rf_balance=str(rf_balance))
    job_env(sandbox)
    spent, small, large, spent_small = await create_transfers(sandbox, ["250.00", "40.00", "120.00", "30.00"])
    deadline = spent["deadline"]
    for account_no, qty, price in ((spent["account_no"], "2", "100.00"), (spent_small["account_no"], "3", "10.00")):
        trade = {"account_no": account_no, "symbol": "AAPL", "side": "buy", "qty": qty, "price": price}
        await sandbox.ok("POST", "/sandbox/trades", trade)
    await sandbox.set_clock(et(deadline, 12))

    report = await run_settle(redis_client, run_worker, deadline)

    # in debit if canceled: 30 + 250 = 280; then smallest first: + 40 = 320 fits in 400, + 120 would not
    settled, left = [spent_small, spent, small], [large]
    assert sum(Decimal(t["amount"]) for t in settled) <= rf_balance < sum(Decimal(t["amount"]) for t in settled + left)
    assert (report["outcome"], report["settled"]) == ("done", len(settled))
    assert [(row["transfer_id"], row["account_no"], row["amount"]) for row in report["left"]] == [
        (large["id"], large["account_no"], large["amount"])
    ]
    assert report["left"][0]["why"].startswith("RF short")
    by_id = {t["id"]: t["status"] for t in await transfers(sandbox, settled + left)}
    assert by_id == {**{t["id"]: "COMPLETED" for t in settled}, large["id"]: "EXECUTED"}
    [journal] = await journals(sandbox)
    assert Decimal(journal["net_amount"]) == total(t["amount"] for t in settled)
    [settlement] = await settlements(sandbox)
    assert (settlement["status"], Decimal(settlement["total_amount"])) == (
        "COMPLETED",
        total(t["amount"] for t in settled),
    )
    [alert] = alerts(redis_client)
    assert (alert["kind"], alert["severity"], alert["left"]) == ("rf_short", "critical", "1")
    assert large["amount"] in alert["summary"]
    [plan] = [row for row in audit(redis_client) if row["event"] == "plan"]
    assert json.loads(plan["facts"])["left"] == 1
    balances = await reconciled(sandbox)
    assert balances[RF]["cash"] == rf_balance - total(t["amount"] for t in settled)


async def test_interest_booked_after_creation_fails_the_settlement_and_one_replan_pays_amount_plus_interest(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Created 12:59:50, processed after 1 PM: FAILED; one re-plan with fresh amounts and a small interest top-up."""
    fed_upper_bound = Decimal("0.0525")
    sandbox = await make_sandbox(fed_upper_bound=str(fed_upper_bound))  # 30 s settlement delay
    job_env(sandbox)
    amounts = ["900.00", "640.00", "12.34"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    interest = total(late_interest(Decimal(a), fed_upper_bound) for a in amounts)
    assert interest > 0
    await sandbox.set_clock(et(deadline, 12, 59, 50))

    first = await run_settle(redis_client, run_worker, deadline)
    assert (first["outcome"], first["late"]) == ("in_progress", False)
    await sandbox.advance(30)  # 1 PM books interest, then the settlement is processed
    [failed] = await settlements(sandbox)
    assert failed["status"] == "FAILED"
    assert "interest" in failed["reason"]

    second = await run_settle(redis_client, run_worker, deadline, "settle_retry")
    assert (second["outcome"], second["late"]) == ("in_progress", True)
    await sandbox.advance(30)
    await run_settle(redis_client, run_worker, deadline, "late_check")

    assert [(t["status"], t["remaining_payable"]) for t in await transfers(sandbox, created)] == [
        ("COMPLETED", "0.00")
    ] * len(amounts)
    assert [Decimal(j["net_amount"]) for j in await journals(sandbox)] == [total(amounts), interest]
    assert [
        (s["status"], Decimal(s["total_amount"]), Decimal(s["interest_amount"])) for s in await settlements(sandbox)
    ] == [("FAILED", total(amounts), Decimal(0)), ("COMPLETED", total(amounts), interest)]
    assert audit_events(redis_client).count("settle_failed") == 1
    assert redis_client.hget(keys.plan(deadline), "failed_rounds") == b"1"
    assert alerts(redis_client, "settlement_failed") == []
    assert (await reconciled(sandbox))[SI]["cash"] == 0


async def drain_si(sandbox: Sandbox) -> Decimal:
    """Someone journals SI's whole cash away to FW (firm to firm, not limited)."""
    cash = await sandbox.cash(SI)
    body = {
        "from_account": await sandbox.account_id(SI),
        "to_account": await sandbox.account_id(FW),
        "entry_type": "JNLC",
        "amount": str(cash),
        "description": "treasury sweep by hand",
    }
    assert (await sandbox.ok("POST", "/v1/journals", body))["status"] == "executed"
    return Decimal(cash)


async def test_insufficient_funds_fails_then_replans_once_and_a_second_failure_stops_with_a_page(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """SI drained twice: the first FAILED re-plans (a second journal), the second stops with outcome failed."""
    sandbox = await make_sandbox(awaiting_funds_timeout_seconds=60)
    job_env(sandbox)
    amounts = ["400.00", "77.70"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    reports = []
    for job in ("settle", "settle_retry"):
        reports.append(await run_settle(redis_client, run_worker, deadline, job))
        assert await drain_si(sandbox) == total(amounts)
        await sandbox.advance(30 + 60)  # processed: awaiting funds; 60 s later: FAILED
        assert (await settlements(sandbox))[-1]["reason"].startswith("insufficient balance")

    last = await run_settle(redis_client, run_worker, deadline, "late_check")

    assert [r["outcome"] for r in reports] == ["in_progress", "in_progress"]
    assert last["outcome"] == "failed"
    into_si = [j for j in await journals(sandbox) if await journal_into_si(sandbox, j)]
    assert [Decimal(j["net_amount"]) for j in into_si] == [total(amounts)] * 2
    assert [s["status"] for s in await settlements(sandbox)] == ["FAILED", "FAILED"]
    assert {t["status"] for t in await transfers(sandbox, created)} == {"EXECUTED"}
    [page] = alerts(redis_client, "settlement_failed")
    assert page["severity"] == "critical"
    assert (await reconciled(sandbox))[FW]["cash"] == 2 * total(amounts)


async def test_pending_rf_journal_waits_with_an_alert_and_the_next_run_resumes_the_same_intent(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """JNLC limits hold the RF → SI journal: in_progress and journal_pending; once approved the rerun settles."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, jnlc_limits_apply_to_firm=True)
    job_env(sandbox)
    amounts = ["220.00", "35.35"]
    created = await create_transfers(sandbox, amounts)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))

    first = await run_settle(redis_client, run_worker, deadline)

    [journal] = await journals(sandbox)
    assert (journal["status"], Decimal(journal["net_amount"])) == ("pending", total(amounts))
    assert first["outcome"] == "in_progress"
    assert journal["id"] in first["waiting_for"]
    [alert] = alerts(redis_client, "journal_pending")
    assert alert["journal_id"] == journal["id"]
    assert await settlements(sandbox) == []
    await sandbox.ok("POST", f"/sandbox/journals/{journal['id']}/approve")

    second = await run_settle(redis_client, run_worker, deadline, "settle_retry")

    assert (second["outcome"], second["settled"]) == ("done", len(amounts))
    assert [(j["id"], j["status"]) for j in await journals(sandbox)] == [(journal["id"], "executed")]
    assert [s["status"] for s in await settlements(sandbox)] == ["COMPLETED"]
    assert {t["status"] for t in await transfers(sandbox, created)} == {"COMPLETED"}
    fund = intents(redis_client, deadline)[f"fund-{deadline}-1"]
    assert (fund["status"], fund["broker_id"]) == ("done", journal["id"])
    assert [k for k, v in intents(redis_client, deadline).items() if v["kind"] == "fund"] == [f"fund-{deadline}-1"]
    assert "fund_resumed" in audit_events(redis_client)
    assert (await reconciled(sandbox))[SI]["cash"] == 0
