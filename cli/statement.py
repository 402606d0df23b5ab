"""``settlekeeper statement [--day D] [--json]``: the end-of-day statement of a deadline (the 20:15 ET message)."""

from __future__ import annotations

import argparse

from cli.output import OK, Out
from funding.calendar import to_et
from funding.models import IFStatus
from jobs.ladder import debits_left
from jobs.runtime import JobContext
from jobs.statement import gather


async def statement(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    today = to_et(await ctx.now()).date()
    day = args.day or (today if ctx.calendar.is_trading_day(today) else ctx.calendar.previous_trading_day(today))
    canceled = [
        t
        for t in await ctx.broker.list_transfers(status=IFStatus.CANCELED, deadline=day)
        if t.source_account_no == ctx.settings.si_account_no
    ]
    found = await gather(ctx, day, await debits_left(ctx, canceled))
    if out.json:
        out.data({"summary": found.summary(), **found.facts()})
    else:
        out.line(found.summary())
    return OK
