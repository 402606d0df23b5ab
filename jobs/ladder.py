"""The alert ladder of a deadline day: seven checks at US/Eastern times, each reading the Broker API.

=========================  ===================  ========  ===================================================
step (default time, ET)    alert kind           severity  raised when
=========================  ===================  ========  ===================================================
``digest`` 09:30           digest               info      every deadline day: what is due, SI/RF, shortfall
``warning`` 11:30          shortfall_projected  warning   something is due and SI + RF cannot pay it, or
                                                          auto-settle (``settle``, ``fund`` modes) is not on
``page`` 12:30             unsettled_at_1230    critical  anything due today is still unsettled
``late`` 13:00             late_interest        warning   transfers due today missed the cutoff (interest)
``forecast`` 15:00         fund_rf              warning   today is the last afternoon to wire RF what the
                                                          forecast says the coming deadlines lack (critical
                                                          when the short deadline is tomorrow)
``cancellations`` 20:00    cancellations        critical  transfers were canceled and an account they
                                                          touched is in debit (warning when none is)
``statement`` 20:15        statement            info      every deadline day: the day's totals after the
                                                          cancellations, and the forecast's line
=========================  ===================  ========  ===================================================

Each alert's dedup key is ``ladder-<kind>-<deadline>``. A step also resolves the day's alerts, up to
its own, whose condition has cleared: the first four once nothing due is unsettled (settled, or canceled
at 8 PM), the warning also once SI + RF cover what is due with auto-settle on, the cancellations once no
account is in debit. The settle job resolves the first four when a run leaves nothing unsettled
(:func:`settled`), the cover job the cancellations when no debit remains (:func:`clear_cancellations`). The
digest carries the RF prefunding forecast's line (:mod:`jobs.forecast`) and resolves the day before's
``fund_rf`` and ``statement``: that afternoon and evening are over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog

from funding.banking import BankingCalendar
from funding.calendar import SETTLEMENT_CUTOFF, at_et, to_et
from funding.models import IFStatus, InstantFunding
from funding.money import ZERO, display, wire
from jobs import forecast, statement
from jobs.banking_days import banking_calendar
from jobs.runtime import JobContext, run_job
from store.alert_state import is_triggered
from store.audit import IntentStatus

log = structlog.get_logger(__name__)

STEPS = {
    "digest": "digest",
    "warning": "shortfall_projected",
    "page": "unsettled_at_1230",
    "late": "late_interest",
    "forecast": "fund_rf",
    "cancellations": "cancellations",
    "statement": "statement",
}
"""Ladder step → the alert kind it raises, in the order of the day (phases ``ladder_<step>``)."""
MORNING_KINDS = ("digest", "shortfall_projected", "unsettled_at_1230", "late_interest")
"""The alerts that are over once nothing due on the deadline is unsettled."""
LISTED = 20
"""At most this many accounts are named in an alert (the counts and totals cover all of them)."""


def run_phase(phase: str, deadline: str) -> dict[str, Any]:
    """RQ entry: ladder phase ``ladder_<step>`` for ``deadline`` (enqueued by the listener's scheduler)."""
    return run_job(lambda ctx: run_step(ctx, phase.removeprefix("ladder_"), date.fromisoformat(deadline)))


def dedup_key(kind: str, deadline: date) -> str:
    return f"ladder-{kind}-{deadline}"


@dataclass(frozen=True)
class Due:
    """What is due on a deadline and what can pay it, as the Broker API says at ``now``."""

    deadline: date
    now: datetime
    unsettled: int
    """Transfers due on the deadline still ``PENDING`` or ``EXECUTED``."""
    amount: Decimal
    """Their remaining payable (interest included)."""
    interest: Decimal
    """The late interest booked on them."""
    si_cash: Decimal
    rf_cash: Decimal
    rf_available: Decimal
    """RF's transferable cash, capped by what the daily limit still allows (what the settle job may use)."""
    settle_mode: str
    fund_mode: str
    kill_switch: str | None = None
    """The kill switch's reason while it is set: nothing is settled until it is cleared."""
    bank_holiday: str | None = None
    """Why US banks are closed on the deadline (it still trades): no wire or ACH arrives, only RF can pay."""
    banking: BankingCalendar | None = None
    """The banking calendar read for this step (the forecast uses it too: one read, one count)."""

    @property
    def shortfall(self) -> Decimal:
        """What SI and RF (within the daily cap) cannot pay, whatever the kill switch says."""
        return max(self.amount - max(self.si_cash, ZERO) - self.rf_available, ZERO)

    @property
    def auto_settle(self) -> bool:
        return self.settle_mode == "on" and self.fund_mode == "on" and self.kill_switch is None

    @property
    def at_risk(self) -> bool:
        """Something is due that settlekeeper cannot or will not pay by itself."""
        return self.unsettled > 0 and (self.shortfall > 0 or not self.auto_settle)

    @property
    def minutes_to_cutoff(self) -> int:
        """Minutes to 1 PM ET on the deadline (negative after it)."""
        return round((at_et(self.deadline, SETTLEMENT_CUTOFF) - self.now).total_seconds() / 60)

    def facts(self) -> dict[str, str]:
        return {
            "deadline": self.deadline.isoformat(),
            "due_transfers": str(self.unsettled),
            "due_amount": wire(self.amount),
            "si_cash": wire(self.si_cash),
            "rf_cash": wire(self.rf_cash),
            "rf_available": wire(self.rf_available),
            "shortfall": wire(self.shortfall),
            "settle_mode": self.settle_mode,
            "fund_mode": self.fund_mode,
            "kill_switch": self.kill_switch or "off",
            "minutes_to_cutoff": str(self.minutes_to_cutoff),
            "banking_day": "no" if self.bank_holiday else "yes",
            **({"bank_holiday": self.bank_holiday} if self.bank_holiday else {}),
        }

    @property
    def bank_note(self) -> str:
        if self.bank_holiday is None:
            return ""
        return f"; banks are closed today ({self.bank_holiday}): no wire or ACH can arrive, only RF can pay"


@dataclass(frozen=True)
class Finding:
    """What a step raises; ``cleared`` when its own condition is already over (resolved at once)."""

    severity: str
    summary: str
    facts: dict[str, str] = field(default_factory=dict)
    cleared: bool = False


async def read_due(ctx: JobContext, deadline: date) -> Due:
    settings = ctx.settings
    unsettled = [
        t
        for status in (IFStatus.EXECUTED, IFStatus.PENDING)
        for t in await ctx.broker.list_transfers(status=status, deadline=deadline)
        if t.source_account_no == settings.si_account_no
    ]
    si = await ctx.broker.trade_account(await ctx.account_id(settings.si_account_no))
    rf = await ctx.broker.trade_account(await ctx.account_id(settings.rf_account_no))
    now = await ctx.now()
    banking = await banking_calendar(ctx, to_et(now).date())
    return Due(
        deadline=deadline,
        now=now,
        unsettled=len(unsettled),
        amount=sum((t.remaining_payable for t in unsettled), ZERO),
        interest=sum((t.total_interest for t in unsettled), ZERO),
        si_cash=si.cash,
        rf_cash=rf.cash,
        rf_available=min(rf.cash_transferable, await ctx.guard.cap_budget(deadline)),
        settle_mode=settings.mode("settle"),
        fund_mode=settings.mode("fund"),
        kill_switch=await ctx.guard.kill_switch(),
        bank_holiday=banking.holiday_name(deadline),
        banking=banking,
    )


async def run_step(ctx: JobContext, step: str, deadline: date) -> dict[str, Any]:
    """Run one ladder step for ``deadline``: raise its alert if its condition holds, resolve what cleared."""
    kind = STEPS[step]
    with structlog.contextvars.bound_contextvars(deadline=deadline.isoformat(), step=step):
        due = await read_due(ctx, deadline)
        finding = await CHECKS[step](ctx, due)
        if finding is not None:
            await ctx.alert(kind, finding.severity, finding.summary, dedup_key(kind, deadline), **finding.facts)
        cleared = _cleared(step, due, finding)
        for done in cleared:
            await ctx.resolve(done, dedup_key(done, deadline), _RESOLUTIONS[done].format(deadline=deadline))
        report = {
            "step": step,
            "deadline": deadline.isoformat(),
            "alert": finding.severity if finding is not None else None,
            "cleared": cleared,
            **(finding.facts if finding is not None else due.facts()),
        }
        log.info("ladder_step", kind=kind, alert=report["alert"], cleared=cleared)
        return report


def _cleared(step: str, due: Due, finding: Finding | None) -> list[str]:
    """The alert kinds of the steps up to ``step`` whose condition is over."""
    upto = list(STEPS.values())[: list(STEPS).index(step) + 1]
    over = set(MORNING_KINDS) if not due.unsettled else ({"shortfall_projected"} if not due.at_risk else set())
    if finding is not None and finding.cleared:
        over.add(STEPS[step])
    return [kind for kind in upto if kind in over]


_RESOLUTIONS = {
    "digest": "nothing due {deadline} is unsettled any more",
    "shortfall_projected": "what is due {deadline} is paid, or SI + RF cover it with auto-settle on",
    "unsettled_at_1230": "nothing due {deadline} is unsettled any more (settled, or canceled at 8 PM ET)",
    "late_interest": "nothing due {deadline} is unsettled any more (settled, or canceled at 8 PM ET)",
    "fund_rf": "the forecast no longer asks for a wire today",
    "cancellations": "no account is in debit after the cancellations of {deadline}",
}


# ---------------------------------------------------------------------------------------------- the steps


async def _digest(ctx: JobContext, due: Due) -> Finding:
    ahead = await forecast.kept(ctx, due.banking)
    line = forecast.line(ahead[0]) if ahead else "forecast: unavailable (the log says why: forecast_failed)"
    previous = ctx.calendar.previous_trading_day(due.deadline)
    for kind in ("fund_rf", "statement"):  # the afternoon and the evening before are over
        await ctx.resolve(kind, dedup_key(kind, previous), f"superseded by the digest of {due.deadline}; {line}")
    summary = (
        f"{due.deadline}: {_n(due.unsettled, 'transfer')} ({display(due.amount)}) due by 1 PM ET; "
        f"SI {display(due.si_cash)}, RF {display(due.rf_cash)}; projected shortfall {display(due.shortfall)}"
        f"{due.bank_note}{_kill_note(due)}; {line}"
    )
    return Finding("info", summary, {**due.facts(), "forecast": line})


async def _fund_rf(ctx: JobContext, due: Due) -> Finding | None:
    """Today is the last afternoon to send the wire the forecast recommends (:func:`jobs.forecast.fund_rf_today`)."""
    ahead = await forecast.kept(ctx, due.banking)
    tomorrow = ctx.calendar.next_trading_day(due.deadline)
    found = forecast.fund_rf_today(*ahead, due.deadline, tomorrow) if ahead else None
    if found is None and ahead is not None:  # wired meanwhile, or no longer needed: over if it was raised
        await ctx.resolve("fund_rf", dedup_key("fund_rf", due.deadline), _RESOLUTIONS["fund_rf"])
    return None if found is None else Finding(*found)


async def _statement(ctx: JobContext, due: Due) -> Finding:
    """The end-of-day statement (:mod:`jobs.statement`): the day's totals, after the 8 PM cancellations."""
    found = await day_statement(ctx, due.deadline)
    return Finding("info", found.summary(), found.facts())


async def day_statement(ctx: JobContext, deadline: date) -> statement.Statement:
    """The statement of ``deadline``, with the debits its cancellations leave now (also ``settlekeeper statement``)."""
    return await statement.gather(ctx, deadline, await debits_left(ctx, await _canceled(ctx, deadline)))


def _kill_note(due: Due) -> str:
    return "" if due.kill_switch is None else f"; the kill switch is on ({due.kill_switch}): nothing will be settled"


async def _warning(ctx: JobContext, due: Due) -> Finding | None:
    if not due.at_risk:
        return None
    why = []
    if due.kill_switch is not None:
        why.append(f"the kill switch is on ({due.kill_switch}): nothing is settled until it is cleared")
    if due.shortfall > 0:
        why.append(f"SI + RF are {display(due.shortfall)} short of the {display(due.amount)} due")
        if due.bank_holiday:
            why.append(f"banks are closed today ({due.bank_holiday}): no wire can arrive before the cutoff")
    elif due.kill_switch is not None:
        why.append(f"SI + RF would cover the {display(due.amount)} due")
    if due.settle_mode != "on" or due.fund_mode != "on":
        why.append(f"auto-settle is not on (settle {due.settle_mode}, fund {due.fund_mode})")
    summary = (
        f"{due.deadline}: {'; '.join(why)}: {_n(due.unsettled, 'transfer')} may miss the 1 PM ET cutoff "
        f"in {due.minutes_to_cutoff} minutes"
    )
    return Finding("warning", summary, due.facts())


async def _page(ctx: JobContext, due: Due) -> Finding | None:
    if not due.unsettled:
        return None
    summary = (
        f"{due.deadline}: {_n(due.unsettled, 'transfer')} ({display(due.amount)}) still unsettled "
        f"{due.minutes_to_cutoff} minutes before the 1 PM ET cutoff{_kill_note(due)}"
    )
    return Finding("critical", summary, due.facts())


async def _late(ctx: JobContext, due: Due) -> Finding | None:
    """Transfers still unsettled after the cutoff, or settled after it: the interest Alpaca booked on them."""
    settled_late = [
        t
        for t in await ctx.broker.list_transfers(status=IFStatus.COMPLETED, deadline=due.deadline)
        if t.total_interest > 0 and t.source_account_no == ctx.settings.si_account_no
    ]
    if not due.unsettled and not settled_late:
        return None
    interest = due.interest + sum((t.total_interest for t in settled_late), ZERO)
    summary = (
        f"{due.deadline}: {_n(due.unsettled + len(settled_late), 'transfer')} missed the 1 PM ET cutoff, "
        f"{display(interest)} of late interest booked"
        + (
            f"; {due.unsettled} ({display(due.amount)}) are canceled at 8 PM ET unless settled"
            if due.unsettled
            else "; all settled since"
        )
    )
    facts = {
        **due.facts(),
        "late_transfers": str(due.unsettled + len(settled_late)),
        "settled_late": str(len(settled_late)),
        "interest_booked": wire(interest),
    }
    return Finding("warning", summary, facts)


async def _cancellations(ctx: JobContext, due: Due) -> Finding | None:
    """The transfers canceled at 8 PM, the accounts they left in debit, and what the cover job did."""
    canceled = await _canceled(ctx, due.deadline)
    if not canceled:
        return None
    debits = await debits_left(ctx, canceled)
    covers = {
        intent.account_no: intent
        for intent in await ctx.ledger.intents_for(due.deadline.isoformat())
        if intent.kind == "cover"
    }
    outcome = {no: _cover_outcome(covers[no].status if no in covers else None) for no in debits}
    tally: dict[str, int] = {}
    for intent in covers.values():
        word = _cover_outcome(intent.status)
        tally[word] = tally.get(word, 0) + 1
    amount = sum((t.amount for t in canceled), ZERO)
    interest = sum((t.total_interest for t in canceled), ZERO)
    debit_total = -sum(debits.values(), ZERO)
    listed = ", ".join(f"{no} {display(cash)} (cover {outcome[no]})" for no, cash in list(debits.items())[:LISTED])
    more = f" and {len(debits) - LISTED} more" if len(debits) > LISTED else ""
    covered = ", ".join(f"{n} {word}" for word, n in sorted(tally.items())) or "none yet"
    in_debit = "no debit"
    if debits:
        in_debit = f"{_n(len(debits), 'account')} in debit ({display(debit_total)}): {listed}{more}"
    summary = (
        f"{due.deadline}: {_n(len(canceled), 'transfer')} canceled at 8 PM ET ({display(amount)}, "
        f"{display(interest)} of late interest owed); {in_debit}; covers: {covered}"
    )
    facts = {
        "deadline": due.deadline.isoformat(),
        "canceled_transfers": str(len(canceled)),
        "canceled_amount": wire(amount),
        "interest_owed": wire(interest),
        "debit_accounts": str(len(debits)),
        "debit_total": wire(debit_total),
        "debits": listed + more,
        "covers": covered,
        "still_unsettled": str(due.unsettled),
    }
    return Finding("critical" if debits else "warning", summary, facts, cleared=not debits)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _cover_outcome(status: IntentStatus | None) -> str:
    return {
        None: "not started",
        IntentStatus.PLANNED: "pending",
        IntentStatus.SENT: "pending",
        IntentStatus.DONE: "done",
    }.get(status, status or "")


CHECKS: dict[str, Callable[[JobContext, Due], Awaitable[Finding | None]]] = {
    "digest": _digest,
    "warning": _warning,
    "page": _page,
    "late": _late,
    "forecast": _fund_rf,
    "cancellations": _cancellations,
    "statement": _statement,
}


# ------------------------------------------------------------------------------- called by other jobs


async def settled(ctx: JobContext, deadline: date) -> None:
    """A settle run left nothing due on ``deadline`` unsettled: the morning's alerts are over."""
    for kind in MORNING_KINDS:
        await ctx.resolve(kind, dedup_key(kind, deadline), _RESOLUTIONS[kind].format(deadline=deadline))


async def clear_cancellations(ctx: JobContext, deadline: date) -> None:
    """Resolve the 20:00 alert of ``deadline`` once no account its cancellations touched is in debit."""
    key = dedup_key("cancellations", deadline)
    if not await is_triggered(ctx.redis, key):
        return  # nothing to clear: no reads
    if not await debits_left(ctx, await _canceled(ctx, deadline), first=True):
        await ctx.resolve("cancellations", key, _RESOLUTIONS["cancellations"].format(deadline=deadline))


async def _canceled(ctx: JobContext, deadline: date) -> list[InstantFunding]:
    rows = await ctx.broker.list_transfers(status=IFStatus.CANCELED, deadline=deadline)
    return [t for t in rows if t.source_account_no == ctx.settings.si_account_no]


ACCOUNT_READS = 16
"""Accounts read at the same time when every account of a day's cancellations is looked at (an 8 PM storm
touches thousands: one at a time, the 20:00 alert took 16 s of a worker for 5,000)."""


async def debits_left(ctx: JobContext, canceled: list[InstantFunding], *, first: bool = False) -> dict[str, Decimal]:
    """Account → cash of the accounts of ``canceled`` transfers that are in debit now, in account order (only
    the first one found when ``first``: enough to know a debit remains, read one at a time)."""
    accounts = sorted({t.account_no for t in canceled})

    async def cash_of(account_no: str) -> Decimal:
        return (await ctx.broker.trade_account(await ctx.account_id(account_no))).cash

    if first:
        for account_no in accounts:
            if (cash := await cash_of(account_no)) < 0:
                return {account_no: cash}
        return {}
    limit = asyncio.Semaphore(ACCOUNT_READS)

    async def read(account_no: str) -> Decimal:
        async with limit:
            return await cash_of(account_no)

    balances = await asyncio.gather(*(read(a) for a in accounts))
    return {a: c for a, c in zip(accounts, balances, strict=True) if c < 0}
