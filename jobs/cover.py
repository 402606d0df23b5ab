"""Cover job: after an 8 PM cancellation, journal RF → customer for exactly the debit it left.

Enqueued by the listener for each canceled transfer's (account, deadline) (job ``cover-<account>-<date>``;
the covers an 8 PM storm leaves in the outbox go out together, ``covers-<date>-<digest>``, :func:`cover_accounts`),
and run for every such account by the 20:05 sweep; both share the intent ``cover-<account>-<date>``
and its ``Idempotency-Key``, so the debit is journaled once whoever gets there first;
JNLC limits may leave it ``pending`` (alert, and the sweep looks again); afterwards the account's cash
must no longer be negative. By default only the part of a debit that IF cancellations of that day
caused is covered (``SETTLEKEEPER_COVER_ONLY_IF_DEBITS``). A cover run and a sweep end by resolving the
alert ladder's 20:00 ``cancellations`` alert once no account those cancellations touched is in debit
(:func:`jobs.ladder.clear_cancellations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import structlog

from funding.errors import KillSwitchOn, Waiting
from funding.models import IFStatus
from funding.money import ZERO, display, margin_interest, wire
from funding.outcomes import CoverOutcome
from jobs import ladder
from jobs.job_metrics import cover_finished
from jobs.reconcile import reconcile
from jobs.registry import COVER_QUEUE, queue
from jobs.runtime import JobContext, held_back, resume_journal, run_job, send_journal
from store import keys
from store.audit import Intent, IntentStatus
from store.transfers import TransferStore

log = structlog.get_logger(__name__)


def cover_account(account_no: str, deadline: str) -> dict[str, Any]:
    """RQ entry: cover ``account_no``'s debit left by transfers canceled on ``deadline``."""
    return run_job(lambda ctx: cover_and_clear(ctx, account_no, date.fromisoformat(deadline)))


def cover_accounts(accounts: list[str], deadline: str) -> dict[str, Any]:
    """RQ entry: cover several accounts of one deadline (the listener batches an 8 PM storm's cover actions)."""
    return run_job(lambda ctx: cover_many(ctx, accounts, date.fromisoformat(deadline)))


COVERS_AT_ONCE = 16
"""Accounts a batched cover job works on at the same time (each waits on the Broker API most of the time)."""


async def cover_many(ctx: JobContext, accounts: list[str], deadline: date) -> dict[str, Any]:
    """Cover each of ``accounts`` (:func:`cover`), :data:`COVERS_AT_ONCE` at a time, sharing one
    :class:`Cancellations` (the day's listing, if one is needed at all, is read once); then, unless more covers
    are queued (the last one does it), resolve the 20:00 alert if no debit remains. A failure of one account
    fails the job after the others ran (RQ retries it; what was covered is found done)."""
    canceled = Cancellations(ctx, deadline)
    limit = asyncio.Semaphore(COVERS_AT_ONCE)

    async def one(account_no: str) -> dict[str, Any]:
        async with limit:
            return await cover(ctx, account_no, deadline, canceled=canceled)

    results = await asyncio.gather(*(one(a) for a in accounts), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
    if not await ctx.redis.llen(queue(COVER_QUEUE, ctx.rq).key):  # more covers queued: the last one looks
        await ladder.clear_cancellations(ctx, deadline)
    outcomes = [r["outcome"] for r in results if isinstance(r, dict)]
    report = {"deadline": str(deadline), "accounts": len(accounts), "listed": canceled.listed}
    report |= {str(o): outcomes.count(o) for o in sorted(set(outcomes))}
    log.info("cover_batch_run", **report)
    return report


async def canceled_by_account(ctx: JobContext, deadline: date) -> dict[str, Decimal]:
    """What the IF transfers due ``deadline`` that were canceled took back from each account (one listing)."""
    taken: dict[str, Decimal] = {}
    for t in await ctx.broker.list_transfers(status=IFStatus.CANCELED, deadline=deadline):
        taken[t.account_no] = taken.get(t.account_no, ZERO) + t.amount
    return taken


class Cancellations:
    """What the IF transfers due one deadline that were canceled took back from each account.

    First from the account's own transfers as the store recorded them (CANCELED is final, and the amount is
    the Broker API's): when they explain the whole debit, that is the answer, with no listing. Otherwise (a
    debit with other causes, or a cancellation not recorded yet or lost with Redis) from the day's listing of
    canceled transfers, read once for every account that needs it. A cover of one account during a busy
    evening thus costs a few Redis reads, not a listing that grows with every cancellation before it.
    """

    def __init__(self, ctx: JobContext, deadline: date, listing: Mapping[str, Decimal] | None = None) -> None:
        self._ctx = ctx
        self._deadline = deadline
        self._listing = listing
        self._listing_read = asyncio.Lock()
        self.listed = False
        """Whether this job read the day's listing (the batch job's log line says so)."""

    async def taken(self, account_no: str, debit: Decimal) -> Decimal:
        """What the day's cancellations took from ``account_no``, exact wherever it matters to cover ``debit``."""
        if self._listing is None:
            own = await TransferStore(self._ctx.redis).canceled_of(account_no, self._deadline)
            if own >= debit:
                return own
        return (await self._listed()).get(account_no, ZERO)

    async def _listed(self) -> Mapping[str, Decimal]:
        async with self._listing_read:  # the first to need it lists; the others wait for the same listing
            if self._listing is None:
                self._listing = await canceled_by_account(self._ctx, self._deadline)
                self.listed = True
            return self._listing


def sweep(deadline: str) -> dict[str, Any]:
    """RQ entry (20:05 ET): cover every account whose transfers due ``deadline`` were canceled."""
    return run_job(lambda ctx: sweep_deadline(ctx, date.fromisoformat(deadline)))


async def sweep_deadline(ctx: JobContext, deadline: date) -> dict[str, Any]:
    """Cover every account of the day's cancellations, between two reconciliations (:mod:`jobs.reconcile`): the
    first gives back the intents of covers Redis lost, the last audits any cover whose record was lost meanwhile."""
    await reconcile(ctx, deadline, frozenset({("cover", deadline)}))
    listing = await canceled_by_account(ctx, deadline)
    canceled = Cancellations(ctx, deadline, listing)
    accounts = sorted(listing)
    results = [await cover(ctx, account_no, deadline, canceled=canceled) for account_no in accounts]
    await reconcile(ctx, deadline)
    report = {
        "deadline": str(deadline),
        "accounts": len(accounts),
        "covered": sum(1 for r in results if r["outcome"] is CoverOutcome.COVERED),
        "pending": sum(1 for r in results if r["outcome"] is CoverOutcome.PENDING),
    }
    await ctx.ledger.note("sweep", "cover", f"sweep-{deadline}", None, **report)
    log.info("sweep_run", **report)
    await ladder.clear_cancellations(ctx, deadline)
    return report


async def cover_and_clear(ctx: JobContext, account_no: str, deadline: date) -> dict[str, Any]:
    """Cover one account, then resolve the ladder's 20:00 cancellations alert if no debit remains."""
    report = await cover(ctx, account_no, deadline)
    await ladder.clear_cancellations(ctx, deadline)
    return report


async def cover(
    ctx: JobContext, account_no: str, deadline: date, *, canceled: Cancellations | None = None
) -> dict[str, Any]:
    """Cover one account's debit; ``canceled``, when the caller shares its :class:`Cancellations` (a batch)."""
    key = f"cover-{account_no}-{deadline}"
    with structlog.contextvars.bound_contextvars(account_no=account_no, deadline=deadline.isoformat()):
        try:
            report = await _cover(ctx, key, account_no, deadline, canceled)
        except KillSwitchOn as kill:  # set between the guardrail check and the call: nothing was sent
            await ctx.alert("kill_switch", "warning", f"cover of {account_no} stopped: {kill}", f"kill-{key}")
            report = {"account_no": account_no, "deadline": str(deadline), "outcome": CoverOutcome.KILLED}
        await cover_finished(ctx.redis, deadline, account_no, report["outcome"])
        log.info("cover_run", **report)
        return report


async def cover_amount(
    ctx: JobContext,
    account_id: str,
    account_no: str,
    deadline: date,
    canceled: Cancellations | None = None,
) -> tuple[Decimal, Decimal]:
    """(the account's cash, what a cover would journal): the debit, or with ``cover_only_if_debits`` only the
    part of it the day's IF cancellations caused (:class:`Cancellations`). Reads only (``settlekeeper cover
    --dry-run`` shows it)."""
    cash = (await ctx.broker.trade_account(account_id)).cash
    if cash >= 0:
        return cash, ZERO
    if not ctx.settings.cover_only_if_debits:
        return cash, -cash
    if canceled is None:
        canceled = Cancellations(ctx, deadline)
    return cash, min(-cash, await canceled.taken(account_no, -cash))


async def _cover(
    ctx: JobContext, key: str, account_no: str, deadline: date, canceled: Cancellations | None
) -> dict[str, Any]:
    report: dict[str, Any] = {"account_no": account_no, "deadline": str(deadline)}
    account_id = await ctx.account_id(account_no)
    intent = await ctx.ledger.intent(key)
    if intent is not None and intent.status in (IntentStatus.SENT, IntentStatus.PLANNED):
        try:  # an earlier run got this far: same key and body, so Alpaca returns the same journal
            done = await resume_journal(ctx, intent, ctx.settings.rf_account_no, account_no)
        except Waiting:
            return {**report, "outcome": CoverOutcome.PENDING, "journal_id": intent.broker_id}
        return await _verify(ctx, intent, account_id, report, done)
    if intent is not None and intent.status == IntentStatus.DONE:
        return await _verify(ctx, intent, account_id, report, True)
    attempt = retry_attempt(intent)
    cash, amount = await cover_amount(ctx, account_id, account_no, deadline, canceled)
    if cash >= 0:
        await ctx.ledger.note("no_debit", "cover", key, cash=str(cash))
        return {**report, "outcome": CoverOutcome.NO_DEBIT, "cash": wire(cash)}
    debit = -cash
    if amount <= 0:
        await ctx.ledger.note("not_if_debit", "cover", key, debit=str(debit))
        return {**report, "outcome": CoverOutcome.NOT_IF_DEBIT, "debit": wire(debit)}
    days = ctx.calendar.interest_days(ctx.calendar.next_trading_day(deadline))
    estimate = margin_interest(debit, ctx.settings.margin_rate, days)
    await ctx.redis.hset(keys.costs(deadline), f"margin_interest:{account_no}", str(estimate))
    intent = Intent(
        key,
        "cover",
        deadline.isoformat(),
        f"debit of {wire(debit)} after IF cancellation" + (f" (attempt {attempt})" if attempt > 1 else ""),
        amount,
        ctx.idempotency_key(key if attempt == 1 else f"{key}#{attempt}"),
        account_no=account_no,
        extra={"attempt": str(attempt)},
    )
    verdict = await ctx.guard.check("cover", amount, day=deadline)
    what = f"cover of {display(amount)} for {account_no}"
    if await held_back(ctx, intent, verdict, what, "critical", margin_interest=str(estimate)):
        return {**report, "outcome": intent.status, "amount": wire(amount), "reason": verdict.reason}
    await ctx.ledger.save(intent, "cover_planned", debit=str(debit), margin_interest=str(estimate))
    try:
        done = await _send_cover(ctx, intent, account_no)
    except Waiting:
        return {**report, "outcome": CoverOutcome.PENDING, "journal_id": intent.broker_id, "amount": wire(amount)}
    return await _verify(ctx, intent, account_id, report, done)


def retry_attempt(previous: Intent | None) -> int:
    """1 for a first cover of (account, day); one more than the last journal Alpaca refused or rejected, whose
    key must not be sent again (Alpaca answers a refused journal's key with the same refusal)."""
    if previous is None:
        return 1
    attempt = int(previous.extra.get("attempt", "1"))
    return attempt + 1 if previous.status == IntentStatus.FAILED else attempt


async def _send_cover(ctx: JobContext, intent: Intent, account_no: str) -> bool:
    return await send_journal(ctx, intent, ctx.settings.rf_account_no, account_no)


async def _verify(
    ctx: JobContext, intent: Intent, account_id: str, report: dict[str, Any], done: bool
) -> dict[str, Any]:
    """After the journal: the account's cash must no longer be negative (or say why it is)."""
    cash = (await ctx.broker.trade_account(account_id)).cash
    outcome = (
        CoverOutcome.COVERED if done and cash >= 0 else (CoverOutcome.STILL_IN_DEBIT if done else CoverOutcome.FAILED)
    )
    if done and cash < 0:
        await ctx.alert(
            "debit_remains",
            "critical",
            f"{intent.account_no} still has cash {display(cash)} after the cover",
            f"debit-{intent.key}",
            account_no=intent.account_no,
        )
    await ctx.ledger.note(f"cover_{outcome}", "cover", intent.key, intent.amount, cash=str(cash))
    return {
        **report,
        "outcome": outcome,
        "amount": wire(intent.amount),
        "cash": wire(cash),
        "journal_id": intent.broker_id,
    }
