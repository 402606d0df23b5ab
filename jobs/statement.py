"""The end-of-day statement: after the 8 PM cancellations, the day's totals in one message.

The alert ladder's 20:15 ET step (``statement``, info: Slack) sends it; ``settlekeeper statement --day D [--json]``
prints it. Totals only, never a line per transfer, so it stays within Slack's Block Kit limits (50 blocks, 3,000
characters a section) whatever the day's size: the transfers created in the day's cycle; those due that day,
settled by settlekeeper or by the partner, canceled, or still open; the late interest booked on them and what
settling before 1 PM avoided; the debits the cancellations left, covered and still open; RF and SI at the close;
and the forecast's line for the coming deadlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from funding.models import IFStatus, InstantFunding
from funding.money import ZERO, display, wire
from jobs import forecast
from jobs.runtime import JobContext
from store import keys
from store.audit import IntentStatus
from store.codec import text


@dataclass(frozen=True)
class Tally:
    count: int = 0
    amount: Decimal = ZERO

    def add(self, amount: Decimal) -> Tally:
        return Tally(self.count + 1, self.amount + amount)

    def said(self) -> str:
        return f"{self.count} ({display(self.amount)})"


@dataclass(frozen=True)
class Statement:
    day: date
    created: Tally
    due: Tally
    by_settlekeeper: Tally
    by_partner: Tally
    canceled: Tally
    still_open: Tally
    interest_booked: Decimal
    interest_avoided: Decimal
    debits_covered: Tally
    debits_open: Tally
    rf_close: Decimal
    si_close: Decimal
    forecast: str

    def facts(self) -> dict[str, str]:
        return {
            "day": self.day.isoformat(),
            "created": str(self.created.count),
            "created_amount": wire(self.created.amount),
            "due": str(self.due.count),
            "due_amount": wire(self.due.amount),
            "settled_by_settlekeeper": str(self.by_settlekeeper.count),
            "settled_by_settlekeeper_amount": wire(self.by_settlekeeper.amount),
            "settled_by_partner": str(self.by_partner.count),
            "settled_by_partner_amount": wire(self.by_partner.amount),
            "canceled": str(self.canceled.count),
            "canceled_amount": wire(self.canceled.amount),
            "still_open": str(self.still_open.count),
            "interest_booked": wire(self.interest_booked),
            "interest_avoided": wire(self.interest_avoided),
            "debits_covered": str(self.debits_covered.count),
            "debits_covered_amount": wire(self.debits_covered.amount),
            "debits_open": str(self.debits_open.count),
            "debits_open_amount": wire(self.debits_open.amount),
            "rf_close": wire(self.rf_close),
            "si_close": wire(self.si_close),
            "forecast": self.forecast,
        }

    def summary(self) -> str:
        open_part = f", {self.still_open.said()} still open" if self.still_open.count else ""
        return (
            f"{self.day} closed: {self.created.said()} transfers created; due today {self.due.said()}: "
            f"{self.by_settlekeeper.said()} settled by settlekeeper, {self.by_partner.said()} by the partner, "
            f"{self.canceled.said()} canceled{open_part}; late interest booked {display(self.interest_booked)}, "
            f"avoided {display(self.interest_avoided)}; debits covered {self.debits_covered.said()}, open "
            f"{self.debits_open.said()}; at the close RF {display(self.rf_close)}, SI {display(self.si_close)}; "
            f"{self.forecast}"
        )


def tally_due(
    transfers: Sequence[InstantFunding], settled_by_us: set[str]
) -> tuple[Tally, Tally, Tally, Tally, Tally, Decimal]:
    """(due, by settlekeeper, by the partner, canceled, still open, interest booked) of a day's transfers."""
    due, ours, partner, canceled, still = Tally(), Tally(), Tally(), Tally(), Tally()
    interest = ZERO
    for t in transfers:
        due, interest = due.add(t.amount), interest + t.total_interest
        if t.status is IFStatus.COMPLETED:
            if str(t.id) in settled_by_us:
                ours = ours.add(t.amount)
            else:
                partner = partner.add(t.amount)
        elif t.status is IFStatus.CANCELED:
            canceled = canceled.add(t.amount)
        else:
            still = still.add(t.amount)
    return due, ours, partner, canceled, still, interest


async def gather(ctx: JobContext, day: date, debits: Mapping[str, Decimal]) -> Statement:
    """The statement of deadline ``day``; ``debits`` are the accounts its cancellations left in debit now."""
    si_no = ctx.settings.si_account_no
    due_rows = [t for t in await ctx.broker.list_transfers(deadline=day) if t.source_account_no == si_no]
    created = [t for t in await ctx.broker.list_transfers(system_date=day) if t.source_account_no == si_no]
    completed = [str(t.id) for t in due_rows if t.status is IFStatus.COMPLETED]
    marks = await ctx.redis.hmget(keys.SETTLED_BY, completed) if completed else []
    ours = {transfer_id for transfer_id, mark in zip(completed, marks, strict=True) if mark is not None}
    due, by_us, by_partner, canceled, still, interest = tally_due(due_rows, ours)
    avoided = await ctx.redis.hget(keys.costs(day), "late_interest_avoided")
    covered = Tally()
    for intent in await ctx.ledger.intents_for(day.isoformat()):
        if intent.kind == "cover" and intent.status is IntentStatus.DONE:
            covered = covered.add(intent.amount)
    open_debits = Tally(len(debits), -sum(debits.values(), ZERO))
    si = await ctx.broker.trade_account(await ctx.account_id(si_no))
    rf = await ctx.broker.trade_account(await ctx.account_id(ctx.settings.rf_account_no))
    ahead = await forecast.kept(ctx)
    line = forecast.line(ahead[0]) if ahead else "forecast: unavailable (the log says why: forecast_failed)"
    return Statement(
        day,
        Tally(len(created), sum((t.amount for t in created), ZERO)),
        due,
        by_us,
        by_partner,
        canceled,
        still,
        interest,
        Decimal(text(avoided)) if avoided is not None else ZERO,
        covered,
        open_debits,
        rf.cash,
        si.cash,
        line,
    )
