"""The RF prefunding forecast at work (the projection itself is :mod:`funding.forecast`, pure).

:func:`compute` reads what the forecast starts from: what is due per deadline (the Broker API: fresh remaining
payable), the transfers of the last five weeks (the store: created, amount, who settled them), SI's and RF's cash
and the banking calendar. :func:`remember` keeps the latest result in ``sk:forecast`` (JSON) for the jobs' gauges
and ``settlekeeper status``. The alert ladder runs it at 09:30 (the digest's line) and 15:00 ET (``fund_rf``:
:mod:`jobs.ladder`); ``settlekeeper forecast`` prints it.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
import structlog

from funding.banking import BankingCalendar
from funding.calendar import to_et
from funding.errors import SettlekeeperError
from funding.forecast import (
    HISTORY_WEEKS,
    Assumptions,
    Cost,
    Forecast,
    Outlook,
    PastTransfer,
    forecast,
    last_afternoon,
    send_before,
)
from funding.models import IFStatus
from funding.money import display, wire
from jobs.banking_days import banking_calendar
from jobs.runtime import JobContext
from store import keys
from store.codec import text

log = structlog.get_logger(__name__)

HISTORY_DAYS = 7 * (HISTORY_WEEKS + 1)
"""Days of system dates read from the store (it keeps transfers 35 days)."""
FIELDS = ("amount", "created_at", "source_account_no", "settled_by")
CHUNK = 5_000
FORECAST_TTL_SECONDS = 7 * 86400


async def compute(
    ctx: JobContext, days: int = 5, banking: BankingCalendar | None = None
) -> tuple[Forecast, BankingCalendar]:
    """The forecast of the next ``days`` deadlines, as of the business clock (``banking``: the calendar the caller
    read already)."""
    settings = ctx.settings
    now = await ctx.now()
    today = to_et(now).date()
    banking = banking or await banking_calendar(ctx, today)
    si = await ctx.broker.trade_account(await ctx.account_id(settings.si_account_no))
    rf = await ctx.broker.trade_account(await ctx.account_id(settings.rf_account_no))
    history, since = await read_history(ctx, today)
    due: dict[date, list[Decimal]] = {}
    deadline = today if ctx.calendar.is_trading_day(today) else ctx.calendar.next_trading_day(today)
    for _ in range(days + 1):
        due[deadline] = [
            t.remaining_payable
            for status in (IFStatus.EXECUTED, IFStatus.PENDING)
            for t in await ctx.broker.list_transfers(status=status, deadline=deadline)
            if t.source_account_no == settings.si_account_no
        ]
        deadline = ctx.calendar.next_trading_day(deadline)
    outlook = Outlook(now, due, history, since, si.cash, rf.cash_transferable)
    assumptions = Assumptions(settings.fed_upper_bound, settings.margin_rate)
    return forecast(outlook, assumptions, ctx.calendar, banking, days), banking


async def read_history(ctx: JobContext, today: date) -> tuple[list[PastTransfer], date]:
    """This SI's transfers of the system dates of the last five weeks, and the first of them the store holds in full
    (the day after the first one it holds at all, unless that one is the oldest looked at: a store started mid-day
    holds part of its first day)."""
    first = today - timedelta(days=HISTORY_DAYS)
    rows: list[PastTransfer] = []
    held: list[date] = []
    day = first
    while day <= today:
        ids = [text(i) for i in await ctx.redis.smembers(keys.system_date_transfers(day))]
        if ids:
            held.append(day)
        for start in range(0, len(ids), CHUNK):
            async with ctx.redis.pipeline(transaction=False) as pipe:
                for transfer_id in ids[start : start + CHUNK]:
                    pipe.hmget(keys.transfer(transfer_id), FIELDS)
                for values in await pipe.execute():
                    row = _past(day, values, ctx.settings.si_account_no)
                    if row is not None:
                        rows.append(row)
        day += timedelta(days=1)
    since = today if not held else (held[0] if held[0] == first else held[0] + timedelta(days=1))
    return rows, since


def _past(day: date, values: list[Any], si_account_no: str) -> PastTransfer | None:
    amount, created_at, source, settled_by = (text(v) if v is not None else "" for v in values)
    if not amount or not created_at or source != si_account_no:
        return None  # expired since the set was read, or another SI's
    return PastTransfer(datetime.fromisoformat(created_at), Decimal(amount), day, settled_by)


# ------------------------------------------------------------------------------------------------ output


def _cost(cost: Cost) -> dict[str, Any]:
    return {
        "late_interest": wire(cost.late_interest),
        "margin_interest": wire(cost.margin_interest),
        "total": wire(cost.total),
        "transfers_left": cost.transfers_left,
    }


def to_json(found: Forecast, banking: BankingCalendar) -> dict[str, Any]:
    """The forecast as ``settlekeeper forecast --json`` prints it (amounts as decimal strings)."""
    rec = found.recommendation
    return {
        "computed_at": found.now.isoformat(),
        "deadlines": [
            {
                "deadline": o.deadline.isoformat(),
                "banking_day": o.banking_day,
                "credit_day": o.credit_day.isoformat(),
                "projected_due": wire(o.projected_due),
                "projected_due_median": wire(o.projected_due_median),
                "due_known": wire(o.due_known),
                "expected": wire(o.expected),
                "expected_median": wire(o.expected_median),
                "history_weeks": o.samples,
                "partner_share": str(o.partner_share),
                "rf_projected": wire(o.rf_projected),
                "shortfall": wire(o.shortfall),
                "cost_if_short": _cost(o.cost),
            }
            for o in found.deadlines
        ],
        "recommendation": None
        if rec is None
        else {
            "amount": wire(rec.amount),
            "wire_by": rec.wire_by.isoformat(),
            "covers_through": rec.covers_through.isoformat(),
            "first_short": rec.first_short.isoformat(),
            "send_before": send_before(rec).isoformat(),
            "last_afternoon": last_afternoon(rec, banking).isoformat(),
            "cost_if_not": _cost(rec.cost_if_not),
        },
        "unreachable": [d.isoformat() for d in found.unreachable],
    }


def line(found: Forecast) -> str:
    """One line for the digest, ``status`` and the end-of-day statement."""
    rec = found.recommendation
    last = found.deadlines[-1].deadline if found.deadlines else None
    unreachable = (
        f"; no wire can reach {', '.join(d.isoformat() for d in found.unreachable)} any more: RF is short then"
        if found.unreachable
        else ""
    )
    if rec is None:
        return f"forecast: RF covers every deadline through {last}{unreachable}"
    return (
        f"forecast: wire {display(rec.amount)} into RF to be credited by {rec.wire_by} (08:00–08:30 ET), covering "
        f"through {rec.covers_through}; not sending it costs {display(rec.cost_if_not.total)} "
        f"({display(rec.cost_if_not.late_interest)} late interest, {display(rec.cost_if_not.margin_interest)} "
        f"margin interest if the buying power is spent){unreachable}"
    )


async def remember(ctx: JobContext, found: Forecast, banking: BankingCalendar) -> None:
    """Keep the latest forecast for the gauges and ``status``."""
    await ctx.redis.set(keys.FORECAST, json.dumps(to_json(found, banking)), ex=FORECAST_TTL_SECONDS)


async def latest(client: aioredis.Redis) -> dict[str, Any] | None:
    """The last forecast kept (``sk:forecast``), as ``settlekeeper forecast --json`` prints it; None before any."""
    raw = await client.get(keys.FORECAST)
    return None if raw is None else dict(json.loads(text(raw)))


async def kept(ctx: JobContext, banking: BankingCalendar | None = None) -> tuple[Forecast, BankingCalendar] | None:
    """The forecast, kept for the gauges and ``status``; None (logged) when it cannot be read: never a reason for
    the job asking for it to fail."""
    try:
        found, banking = await compute(ctx, banking=banking)
    except SettlekeeperError as exc:
        log.warning("forecast_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return None
    await remember(ctx, found, banking)
    return found, banking


def fund_rf_today(
    found: Forecast, banking: BankingCalendar, today: date, tomorrow: date
) -> tuple[str, str, dict[str, str]] | None:
    """(severity, summary, facts) of the 15:00 ``fund_rf`` alert when today is the last afternoon to send the
    recommended wire (credited in ``wire_by``'s morning window): critical when the deadline it is for is
    ``tomorrow``; None otherwise."""
    rec = found.recommendation
    if rec is None or last_afternoon(rec, banking) != today:
        return None
    facts = {
        "amount": wire(rec.amount),
        "wire_by": rec.wire_by.isoformat(),
        "covers_through": rec.covers_through.isoformat(),
        "first_short": rec.first_short.isoformat(),
        "cost_if_not": wire(rec.cost_if_not.total),
        "late_interest_if_not": wire(rec.cost_if_not.late_interest),
        "margin_interest_if_not": wire(rec.cost_if_not.margin_interest),
    }
    summary = f"{today}: fund RF today: {line(found).removeprefix('forecast: ')}"
    return ("critical" if rec.first_short == tomorrow else "warning"), summary, facts
