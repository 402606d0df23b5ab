"""``settlekeeper forecast [--days N] [--json]``: what the next deadlines will ask of RF, and the wire to send.

Read-only: the same reads as the 09:30 digest's and the 15:00 check's forecast (:mod:`jobs.forecast`). Exit 1 when
a wire is recommended or a short deadline can no longer be reached by one, 0 when RF covers every deadline.
"""

from __future__ import annotations

import argparse

from cli.output import OK, PROBLEM, Out
from funding.money import display
from jobs.forecast import compute, line, to_json
from jobs.runtime import JobContext


async def forecast(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    found, banking = await compute(ctx, days=args.days)
    problem = found.recommendation is not None or bool(found.unreachable)
    if out.json:
        out.data(to_json(found, banking))
        return PROBLEM if problem else OK
    out.line(f"RF prefunding forecast at {found.now:%Y-%m-%d %H:%M %Z} (planning figure: 0.9 quantile of 4 weeks)")
    out.table(
        ["deadline", "bank", "credit by", "due now", "expected", "projected", "median", "RF after", "shortfall"],
        [
            [
                o.deadline.isoformat(),
                "open" if o.banking_day else "CLOSED",
                o.credit_day.isoformat(),
                display(o.due_known),
                f"{display(o.expected)} ({o.samples} wk)",
                display(o.projected_due),
                display(o.projected_due_median),
                display(o.rf_projected),
                display(o.shortfall) if o.shortfall else "-",
            ]
            for o in found.deadlines
        ],
    )
    out.line(line(found), "red" if problem else "green")
    return PROBLEM if problem else OK
