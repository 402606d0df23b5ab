"""``settlekeeper statement [--day D] [--json]``: the end-of-day statement of a deadline (the 20:15 ET message)."""

from __future__ import annotations

import argparse

from cli.output import OK, Out
from funding.calendar import to_et
from jobs.ladder import day_statement
from jobs.runtime import JobContext


async def statement(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    today = to_et(await ctx.now()).date()
    day = args.day or (today if ctx.calendar.is_trading_day(today) else ctx.calendar.previous_trading_day(today))
    found = await day_statement(ctx, day)
    if out.json:
        out.data({"summary": found.summary(), **found.facts()})
    else:
        out.line(found.summary())
    return OK
