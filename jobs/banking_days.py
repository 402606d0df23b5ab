"""Which days US banks are open, for the jobs: Alpaca's ``GET /v2/calendar/BMO``, read once a day and cached
(store/banking_days.py); when Alpaca cannot be read, the Federal Reserve's holidays (funding/banking.py), with
a warning and a count (``settlekeeper_banking_calendar_reads_total{source="local"}``)."""

from __future__ import annotations

from datetime import date, timedelta

import structlog

from funding.banking import BankingCalendar
from funding.errors import SettlekeeperError
from jobs.job_metrics import count_banking_read
from jobs.runtime import JobContext
from store import banking_days

log = structlog.get_logger(__name__)

BANKING_MARKET = "BMO"
"""Alpaca's market code of the US banking calendar."""
LOOK_BACK, LOOK_AHEAD = timedelta(days=10), timedelta(days=120)
"""The span read on each day: a deadline's previous banking day, and a season of forecasts ahead."""


async def banking_calendar(ctx: JobContext, today: date) -> BankingCalendar:
    """The banking calendar as Alpaca serves it today, or the local one if it cannot be read."""
    known = await banking_days.cached(ctx.redis, today)
    if known is not None:
        return known
    first, last = today - LOOK_BACK, today + LOOK_AHEAD
    try:
        days = await ctx.broker.market_days(BANKING_MARKET, first, last)
    except SettlekeeperError as exc:
        log.warning(
            "banking_calendar_fallback",
            error=str(exc),
            hint="GET /v2/calendar/BMO failed: using the Federal Reserve's holidays; the next job asks again",
        )
        await count_banking_read(ctx.redis, "local")
        return BankingCalendar()
    await banking_days.remember(ctx.redis, today, days, first, last)
    await count_banking_read(ctx.redis, "alpaca")
    return BankingCalendar.from_days(days, first, last)
