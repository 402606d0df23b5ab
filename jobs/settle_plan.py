"""What a settle run would do, read and not done: the plan (what SI + RF can pay, who goes first when RF is
short, in what batches) and the transfers still to pay; shared by the run and ``settlekeeper settle --dry-run``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from funding.dues import Dues
from funding.models import IFStatus
from funding.money import ZERO, wire
from funding.planning import Payable, Plan, chunks, debit_risk, make_plan, owed
from jobs.runtime import JobContext
from store.audit import IntentStatus


async def read_plan(ctx: JobContext, deadline: date, due: Sequence[Payable]) -> tuple[Plan, Decimal]:
    """What SI + RF can settle of ``due`` now (when RF is short, who goes first), and RF's available cash:
    reads only, so ``settlekeeper settle --dry-run`` shows the very plan a run would make."""
    settings = ctx.settings
    si_cash = (await ctx.broker.trade_account(await ctx.account_id(settings.si_account_no))).cash
    rf = await ctx.broker.trade_account(await ctx.account_id(settings.rf_account_no))
    rf_available = min(rf.cash_transferable, await ctx.guard.fund_budget(deadline))
    plan = make_plan(deadline, due, si_cash=si_cash, rf_available=rf_available)
    if plan.left:  # short: who goes first depends on the debit their cancellation would leave
        cash = {}
        for account_no in {t.account_no for t in due}:
            cash[account_no] = (await ctx.broker.trade_account(await ctx.account_id(account_no))).cash
        plan = make_plan(deadline, due, si_cash=si_cash, rf_available=rf_available, at_risk=debit_risk(due, cash))
    return plan, rf_available


async def preview(ctx: JobContext, deadline: date) -> dict[str, Any]:
    """The plan a settle run would follow now, moving nothing: batches, the RF → SI journal of the first one,
    what would be left and why."""
    due = await unsettled(ctx, deadline)
    plan, rf_available = await read_plan(ctx, deadline, due)
    batches = [(len(batch), owed(batch)) for batch in chunks(plan.selected)]  # a batch at a time
    first = batches[0][1] if batches else ZERO
    return {
        "deadline": str(deadline),
        "due_transfers": len(due),
        "due_amount": wire(owed(due)),
        "si_cash": wire(plan.si_cash),
        "rf_available": wire(rf_available),
        "fund": wire(max(first - plan.si_cash, ZERO)),
        "batches": [{"transfers": n, "amount": wire(amount)} for n, amount in batches],
        "left": left_of(plan.left),
        "modes": {action: ctx.settings.mode(action) for action in ("settle", "fund")},
        "kill_switch": await ctx.guard.kill_switch(),
    }


def left_of(transfers: Iterable[tuple[Payable, str]]) -> list[dict[str, str]]:
    """The report's ``left``: each transfer left unsettled, with why."""
    return [
        {"transfer_id": str(t.id), "account_no": t.account_no, "amount": wire(t.remaining_payable), "why": why}
        for t, why in transfers
    ]


async def unsettled(ctx: JobContext, deadline: date) -> Dues:
    """Transfers due on ``deadline`` that still need paying, minus those in a settlement of ours in flight: read a
    page at a time into columns (:class:`~funding.dues.Dues`), no page kept."""
    busy: set[str] = set()
    for intent in await ctx.ledger.intents_for(deadline.isoformat()):
        if intent.kind == "settle" and intent.status in (IntentStatus.PLANNED, IntentStatus.SENT):
            busy |= await ctx.ledger.intent_transfers(intent.key)
    due = Dues()
    si = ctx.settings.si_account_no
    for status in (IFStatus.EXECUTED, IFStatus.PENDING):
        async for page in ctx.broker.listed_pages(status=status, deadline=deadline):
            for t in page:
                if t.source_account_no == si and (not busy or t.id not in busy):
                    due.add(t)
    return due
