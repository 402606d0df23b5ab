"""Settle job: fund SI from RF and settle what is due on a deadline, once, before 1 PM ET.

One run, for deadline D:
1. reconcile: record what Alpaca holds under settlekeeper's name that Redis lost (:mod:`jobs.reconcile`), then
   resume every open intent of D (ask the Broker API what happened; never re-post blindly);
2. read the unsettled transfers due on D from the Broker API (the truth: fresh ``remaining_payable``),
   skipping those already in one of our settlements;
3. plan: what SI needs, topped up from RF; when RF is short, the priority policy of
   :mod:`funding.planning`, and what is left is reported;
4. journal RF → SI for exactly the top-up (``Idempotency-Key``), and wait until it is executed;
5. settle in batches of at most 50,000 transfers, one at a time, each carrying its intent key in
   ``additional_info``, following each to ``COMPLETED`` or ``FAILED``; a failure because interest
   accrued or funds were short re-plans once with fresh amounts. Alpaca sweeps SI to zero when a
   settlement completes, so step 4 is done per batch: each batch's journal is exactly what SI lacks for it.
A run that waits too long returns ``in_progress``; the next phase or re-plan resumes from the intents.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time as wall
from collections.abc import Sequence
from datetime import date, time
from decimal import Decimal
from typing import Any

import redis
import structlog
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, LockNotOwnedError
from rq import get_current_job

from funding.calendar import CYCLE_CUTOFF, SETTLEMENT_CUTOFF, at_et
from funding.dues import Dues
from funding.errors import KillSwitchOn, RunLockLost, Waiting
from funding.models import IFStatus, InstantFunding, SettlementStatus
from funding.money import ZERO, display, late_interest, wire
from funding.outcomes import SettleOutcome
from funding.planning import Payable, Plan, chunks, costs, owed
from jobs import ladder
from jobs.job_metrics import settle_finished
from jobs.reconcile import reconcile
from jobs.runtime import JobContext, held_back, resume_journal, run_job, send_journal
from jobs.settle_plan import left_of, read_plan, unsettled
from jobs.settlements import dry_run_batch, find_settlement, follow_settlement, post_settlement, settle_batch
from store import keys
from store.audit import Intent, IntentStatus
from store.codec import text

log = structlog.get_logger(__name__)

MAX_FAILED_ROUNDS = 2
"""The first failure re-plans with fresh amounts; a second one stops and pages a human."""
RUN_RECORD_TTL_SECONDS = 8 * 86400
"""``sk:settle_run:<deadline>`` outlives its deadline by a week (status and audits read it afterwards)."""


def replan(deadline: str) -> dict[str, Any]:
    """RQ entry: a transfer due ``deadline`` changed (enqueued by the listener, coalesced)."""
    return run_job(lambda ctx: settle(ctx, date.fromisoformat(deadline), phase="replan"))


def run_phase(phase: str, deadline: str) -> dict[str, Any]:
    """RQ entry: a scheduled phase (``settle``, ``settle_retry``, ``late_check``) for ``deadline``."""
    return run_job(lambda ctx: settle(ctx, date.fromisoformat(deadline), phase=phase))


async def settle(ctx: JobContext, deadline: date, *, phase: str) -> dict[str, Any]:
    """One settle run for ``deadline``; returns its report (also written to the audit trail).

    The run holds the deadline's lock for as long as its process lives: a heartbeat task renews it every
    third of ``SETTLEKEEPER_SETTLE_HEARTBEAT_SECONDS``, so a run that dies frees it within that long and the
    listener's guard (``worker/schedule.py``) starts another. ``sk:settle_run:<deadline>`` says what the last
    run is doing: started and not ended while it runs (or when it died), then its outcome.
    """
    bound = structlog.contextvars.bound_contextvars(deadline=deadline.isoformat(), phase=phase)
    with bound:
        await ctx.redis.delete(keys.replan_pending(deadline))  # later changes may trigger a new re-plan
        ttl = ctx.settings.settle_heartbeat_seconds
        lock = ctx.redis.lock(keys.plan_lock(deadline), timeout=ttl)
        if not await lock.acquire(blocking=False):
            await ctx.ledger.note("busy", "settle", f"settle-{deadline}", phase=phase)
            return {"deadline": str(deadline), "outcome": SettleOutcome.BUSY}
        heartbeat = asyncio.create_task(_keep_alive(lock, ttl / 3), name="settle-heartbeat")
        report: dict[str, Any] = {"deadline": str(deadline), "phase": phase, "outcome": SettleOutcome.ERROR, "left": []}
        try:
            ctx.lock = lock
            await _run_started(ctx, deadline, phase)
            report = await _settle_locked(ctx, deadline, phase)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            ctx.lock = None
            with contextlib.suppress(redis.RedisError):  # Redis gone: the guard sees "died", after the TTL
                await _run_ended(ctx, deadline, report)
            with contextlib.suppress(LockError, redis.RedisError):
                await lock.release()
        await settle_finished(ctx.redis, phase, report["outcome"])
        log.info(
            "settle_run",
            **{k: v for k, v in report.items() if k != "left"},
            left=len(report.get("left", [])),
        )
        return report


async def _keep_alive(lock: Lock, every: float) -> None:
    """Renew the run's lock until cancelled; a lock found taken over stops the renewals (and the run's next
    money call, see :meth:`JobContext.before_call`)."""
    while True:
        await asyncio.sleep(every)
        try:
            await lock.reacquire()
        except LockNotOwnedError:
            log.error("settle_heartbeat_lost", why="the run's lock expired and may be held by another run")
            return
        except redis.RedisError as exc:  # a Redis blip: keep trying while the TTL lasts
            log.warning("settle_heartbeat_failed", error=f"{type(exc).__name__}: {exc}"[:200])


async def _run_started(ctx: JobContext, deadline: date, phase: str) -> None:
    job = get_current_job()
    started: dict[Any, Any] = {
        "job_id": job.id if job is not None else "direct",
        "phase": phase,
        "started_at": (await ctx.now()).isoformat(),
        "ended_unix": "",
        "outcome": "",
        "left": "",
    }
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.settle_run(deadline), mapping=started)
        pipe.expire(keys.settle_run(deadline), RUN_RECORD_TTL_SECONDS)
        await pipe.execute()


async def _run_ended(ctx: JobContext, deadline: date, report: dict[str, Any]) -> None:
    ended: dict[Any, Any] = {
        "ended_unix": repr(wall.time()),
        "outcome": str(report["outcome"]),
        "left": str(len(report.get("left", []))),
    }
    await ctx.redis.hset(keys.settle_run(deadline), mapping=ended)


async def _settle_locked(ctx: JobContext, deadline: date, phase: str) -> dict[str, Any]:
    now = await ctx.now()
    report: dict[str, Any] = {"deadline": str(deadline), "phase": phase, "settled": 0, "left": []}
    if now >= at_et(deadline, CYCLE_CUTOFF):
        await ctx.ledger.note("too_late", "settle", f"settle-{deadline}", why="transfers are canceled at 8 PM ET")
        return {**report, "outcome": SettleOutcome.TOO_LATE}
    first_phase = at_et(deadline, time.fromisoformat(ctx.settings.phase_settle))
    if phase == "replan" and now < first_phase:
        # Until its first settle phase the deadline is the partner's to settle by hand (one settlement in
        # progress per correspondent: an early one of ours would refuse theirs); the phase plans what is left.
        await ctx.ledger.note("not_yet", "settle", f"settle-{deadline}", why=f"before the {first_phase:%H:%M} phase")
        return {**report, "outcome": SettleOutcome.NOT_YET}
    # first, what Alpaca holds under our name that Redis lost (the evening's covers of the day before included)
    await reconcile(
        ctx, ctx.calendar.previous_trading_day(deadline), frozenset({("fund", deadline), ("settle", deadline)})
    )
    late = now >= at_et(deadline, SETTLEMENT_CUTOFF)
    if late:
        await ctx.ledger.note(
            "late",
            "settle",
            f"settle-{deadline}",
            why="after 1 PM ET: interest is booked; settling now only "
            "prevents the 8 PM cancellation and the debit balances it would cause",
        )
    report["late"] = late
    try:
        for _ in range(MAX_FAILED_ROUNDS + 1):
            outcome = await _resume(ctx, deadline) or await _round(ctx, deadline, report)
            if outcome is not SettleOutcome.REPLAN:
                report["outcome"] = outcome
                break
        else:
            report["outcome"] = SettleOutcome.FAILED
    except Waiting as waiting:
        report["outcome"] = SettleOutcome.IN_PROGRESS
        report["waiting_for"] = str(waiting)
    except KillSwitchOn as kill:
        report["outcome"] = SettleOutcome.KILLED
        count, amount = len(report["left"]), sum((Decimal(t["amount"]) for t in report["left"]), ZERO)
        await ctx.alert(
            "kill_switch",
            "warning",
            f"settlement of {deadline} stopped by the kill switch ({kill}): {count} transfer"
            f"{'' if count == 1 else 's'} ({display(amount)}) due by 1 PM ET unsettled; clearing the switch "
            "starts a settle run",
            f"kill-{deadline}",
            unsettled=count,
            unsettled_amount=wire(amount),
        )
    except RunLockLost as lost:
        report["outcome"] = SettleOutcome.SUPERSEDED
        report["why"] = str(lost)
    if report.get("outcome") in (SettleOutcome.DONE, SettleOutcome.NOTHING_DUE) and not report["left"]:
        await ladder.settled(ctx, deadline)  # nothing due is left unsettled: the ladder's alerts are over
    await ctx.ledger.note("report", "settle", f"settle-{deadline}", **{k: v for k, v in report.items()})
    return report


async def _round(ctx: JobContext, deadline: date, report: dict[str, Any]) -> SettleOutcome:
    """Plan, fund and settle once; returns ``done``, ``nothing_due``, ``replan``, ``dry_run``, ``refused``
    or ``failed``. A kill switch met on the way leaves every transfer not settled yet in the report."""
    await _wait_for_other_settlements(ctx)  # first: what they settle meanwhile is no longer due
    due = await unsettled(ctx, deadline)
    if not due:
        await ctx.ledger.note("nothing_due", "settle", f"settle-{deadline}")
        return SettleOutcome.DONE if report["settled"] else SettleOutcome.NOTHING_DUE
    plan: Plan | None = None
    settled_before = report["settled"]
    try:
        await ctx.before_call()  # killed, not "RF short": the kill switch zeroes the fund budget
        plan = await _plan(ctx, deadline, due, report)
        if not plan.selected:
            return SettleOutcome.REFUSED
        outcome = await _fund_and_settle(ctx, deadline, plan, report)
    except KillSwitchOn as kill:  # batches settle in order: what this round settled is the plan's first ones
        done = {str(t.id) for t in plan.selected[: report["settled"] - settled_before]} if plan else set()
        report["left"] = left_of((t, f"kill switch is on: {kill}") for t in due if str(t.id) not in done)
        raise
    if outcome is not None:
        return outcome
    if not plan.left and await unsettled(ctx, deadline):
        return SettleOutcome.REPLAN
    return SettleOutcome.DONE


async def _plan(ctx: JobContext, deadline: date, due: Dues, report: dict[str, Any]) -> Plan:
    """What to settle from SI + RF; when RF is short, who goes first, what is left (reported, alerted)."""
    plan, _ = await read_plan(ctx, deadline, due)
    si_cash = plan.si_cash
    if plan.left:
        report["left"] = left_of(plan.left)
        short = sum((t.remaining_payable for t, _ in plan.left), Decimal(0))
        await ctx.alert(
            "rf_short",
            "critical",
            f"RF cannot cover {deadline}: {len(plan.left)} transfers ({display(short)}) left unsettled",
            f"rf-short-{deadline}",
            left=len(plan.left),
        )
    await ctx.ledger.note(
        "plan",
        "settle",
        f"settle-{deadline}",
        plan.need,
        selected=len(plan.selected),
        left=len(plan.left),
        si_cash=str(si_cash),
        top_up=str(plan.top_up),
    )
    return plan


async def _fund_and_settle(ctx: JobContext, deadline: date, plan: Plan, report: dict[str, Any]) -> SettleOutcome | None:
    """Each batch of the plan (made when reached): top SI up from RF by what it lacks, then settle it; None when
    every batch settled, else how the round ends."""
    settings = ctx.settings
    batches = chunks(plan.selected)
    si_cash = plan.si_cash  # read for the plan: the first batch needs no second read
    for n, batch in enumerate(batches):
        if n:  # a completed settlement leaves SI at zero, its excess swept to FW (docs/broker-api.md
            # "Settlements"): each later batch is funded against SI as it is now
            si_cash = (await ctx.broker.trade_account(await ctx.account_id(settings.si_account_no))).cash
        top_up = max(owed(batch) - si_cash, ZERO)
        if top_up > 0:
            funded = await _fund(ctx, deadline, top_up)
            if funded is not IntentStatus.DONE:
                if funded is IntentStatus.DRY_RUN:  # audit what the settlements would have been, move nothing
                    for rest in itertools.chain([batch], batches):
                        await dry_run_batch(ctx, deadline, rest, "SI would be funded by the dry-run journal")
                return SettleOutcome.DRY_RUN if funded == IntentStatus.DRY_RUN else SettleOutcome.REFUSED
        status = await settle_batch(ctx, deadline, batch)
        if status is SettlementStatus.COMPLETED:
            report["settled"] += len(batch)
            await _costs(ctx, deadline, batch, late=report["late"])
            continue
        if status is SettlementStatus.FAILED:
            return await _settlement_failed(ctx, deadline)
        return SettleOutcome.DRY_RUN if settings.mode("settle") == "dry-run" else SettleOutcome.REFUSED
    return None


async def _settlement_failed(ctx: JobContext, deadline: date) -> SettleOutcome:
    """Count a FAILED settlement of ``deadline`` (seen now or on a resume): ``replan``, or ``failed`` and page."""
    failures = await ctx.redis.hincrby(keys.plan(deadline), "failed_rounds", 1)
    if failures < MAX_FAILED_ROUNDS:
        return SettleOutcome.REPLAN
    await ctx.alert(
        "settlement_failed", "critical", f"settlement of {deadline} failed twice", f"settle-failed-{deadline}"
    )
    return SettleOutcome.FAILED


async def _costs(ctx: JobContext, deadline: date, settled: Sequence[Payable], *, late: bool) -> None:
    """What settling ``settled`` avoided (a day of late interest each, none when ``late``) and what they incurred:
    added to the deadline's figures (decimal strings, never floats), and per transfer, ``<avoided>|<incurred>``."""
    fed = ctx.settings.fed_upper_bound
    summary = costs([] if late else settled, settled, fed)
    names = ("late_interest_avoided", "late_interest_incurred")
    current = [
        Decimal(text(v)) if v is not None else Decimal(0) for v in await ctx.redis.hmget(keys.costs(deadline), names)
    ]
    totals = (current[0] + summary.late_interest_avoided, current[1] + summary.late_interest_incurred)
    async with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.costs(deadline), mapping={names[0]: str(totals[0]), names[1]: str(totals[1])})
        each = {str(t.id): f"{ZERO if late else late_interest(t.amount, fed)}|{t.total_interest}" for t in settled}
        pipe.hset(keys.transfer_costs(deadline), mapping=each)  # type: ignore[arg-type]
        pipe.expire(keys.transfer_costs(deadline), 400 * 86400)
        await pipe.execute()


async def _wait_for_other_settlements(ctx: JobContext) -> None:
    """Only one settlement of the correspondent may be in progress, whatever its source account (docs/broker-api.md
    "Settlements"): wait for another one to finish."""
    waited = 0.0
    while True:
        busy = await ctx.broker.list_settlements(["PENDING", "AWAITING_ADDITIONAL_FUNDS"])
        if not busy:
            return
        if waited >= ctx.settings.settlement_wait_seconds:
            raise Waiting(f"settlement {busy[0].id} of another party is still {busy[0].status.value}")
        await ctx.pause()
        waited += ctx.settings.poll_seconds


async def _fund(ctx: JobContext, deadline: date, amount: Decimal) -> IntentStatus:
    """Journal RF → SI for exactly ``amount``: the intent's status: done once executed, dry-run or refused when
    a guardrail held it back, failed when Alpaca refused or rejected it."""
    seq = await ctx.redis.hincrby(keys.plan(deadline), "seq", 1)
    key = f"fund-{deadline}-{seq}"
    intent = Intent(key, "fund", deadline.isoformat(), "SI lacks what is due", amount, ctx.idempotency_key(key))
    verdict = await ctx.guard.check("fund", amount, day=deadline)
    if await held_back(ctx, intent, verdict, f"RF → SI journal of {display(amount)}"):
        return intent.status
    await ctx.ledger.save(intent, "fund_planned")
    await send_journal(ctx, intent, ctx.settings.rf_account_no, ctx.settings.si_account_no)
    return intent.status


async def _resume(ctx: JobContext, deadline: date) -> SettleOutcome | None:
    """Finish what an earlier run started: ask the Broker API, then continue or close each intent.

    Returns ``failed`` when a settlement it finds FAILED is one failure too many (see MAX_FAILED_ROUNDS).
    """
    for intent in await ctx.ledger.intents_for(deadline.isoformat()):
        if intent.status not in (IntentStatus.PLANNED, IntentStatus.SENT):
            continue
        await ctx.ledger.save(intent, f"{intent.kind}_resumed", status=intent.status)
        if intent.kind == "fund":
            await resume_journal(ctx, intent, ctx.settings.rf_account_no, ctx.settings.si_account_no)
        elif intent.kind == "settle":
            found = await find_settlement(ctx, intent.key)
            if found is not None:
                status = await follow_settlement(ctx, intent, found)
                if (
                    status is SettlementStatus.FAILED
                    and await _settlement_failed(ctx, deadline) is SettleOutcome.FAILED
                ):
                    return SettleOutcome.FAILED
                continue
            ids = await ctx.ledger.intent_transfers(intent.key)
            still = [
                t
                for t in await _all_due(ctx, deadline)
                if str(t.id) in ids and t.status in (IFStatus.EXECUTED, IFStatus.PENDING)
            ]
            if not still:
                intent.status, intent.detail = (
                    IntentStatus.FAILED,
                    "no settlement was created; its transfers are no longer unsettled",
                )
                await ctx.ledger.save(intent, "settle_abandoned")
                continue
            if await _one_failure_too_many(ctx, deadline, await post_settlement(ctx, intent, still)):
                return SettleOutcome.FAILED
    return None


async def _one_failure_too_many(ctx: JobContext, deadline: date, status: SettlementStatus | None) -> bool:
    """A settlement found FAILED on a resume counts as a failed round; True when it is one too many."""
    return status is SettlementStatus.FAILED and await _settlement_failed(ctx, deadline) is SettleOutcome.FAILED


async def _all_due(ctx: JobContext, deadline: date) -> list[InstantFunding]:
    return await ctx.broker.list_transfers(deadline=deadline)
