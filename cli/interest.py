"""``settlekeeper interest --month YYYY-MM``: the late interest Alpaca will invoice for a month, per transfer
(amount, days, rate, interest as booked and as recomputed), and the margin interest estimated on debits, so the
partner can reconcile Alpaca's monthly invoice."""

from __future__ import annotations

import argparse
import csv
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from cli.output import OK, PROBLEM, Out
from funding.money import LATE_INTEREST_SPREAD, ZERO, late_interest, wire
from jobs.runtime import JobContext
from store import keys
from store.codec import text_map


def month_arg(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month as YYYY-MM, got {text!r}") from None


def _days_of(month: date) -> list[date]:
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return [month + timedelta(days=n) for n in range((following - month).days)]


async def interest(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    month, settings = args.month, ctx.settings
    rate = settings.fed_upper_bound + LATE_INTEREST_SPREAD
    rows: list[dict[str, Any]] = []
    margin: list[dict[str, str]] = []
    for day in _days_of(month):
        if not ctx.calendar.is_trading_day(day):
            continue
        for transfer in await ctx.broker.list_transfers(deadline=day):
            for entry in transfer.interests:
                if entry.date.replace(day=1) != month:
                    continue
                days = ctx.calendar.interest_days(entry.date)
                expected = late_interest(transfer.amount, settings.fed_upper_bound, days)
                rows.append(
                    {
                        "transfer_id": str(transfer.id),
                        "account_no": transfer.account_no,
                        "deadline": transfer.deadline.isoformat(),
                        "date": entry.date.isoformat(),
                        "amount": wire(transfer.amount),
                        "days": days,
                        "rate": str(rate),
                        "interest": wire(entry.amount),
                        "recomputed": wire(expected),
                        "matches": entry.amount == expected,
                    }
                )
        costs = text_map(await ctx.redis.hgetall(keys.costs(day)))
        for name, value in sorted(costs.items()):
            if name.startswith("margin_interest:"):
                margin.append({"deadline": day.isoformat(), "account_no": name.split(":", 1)[1], "estimate": value})
    total = sum((Decimal(r["interest"]) for r in rows), ZERO)
    found = {"month": month.strftime("%Y-%m"), "late_interest": rows, "total": wire(total), "margin_interest": margin}
    if args.csv:
        writer = csv.DictWriter(out.stream, fieldnames=list(rows[0]) if rows else ["transfer_id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif out.json:
        out.data(found)
    else:
        out.line(f"{month:%Y-%m}: {len(rows)} late interest charges, {wire(total)} in all (rate {rate} / 360 a day)")
        out.table(
            ["transfer", "account", "date", "amount", "days", "interest", "check"],
            [
                [r["transfer_id"][:8], r["account_no"], r["date"], r["amount"], r["days"], r["interest"],
                 "ok" if r["matches"] else f"expected {r['recomputed']}"]
                for r in rows
            ],
        )  # fmt: skip
        if margin:
            out.line(f"margin interest estimated on debits: {len(margin)} accounts")
            out.table(
                ["deadline", "account", "estimate"], [[m["deadline"], m["account_no"], m["estimate"]] for m in margin]
            )
    return OK if all(r["matches"] for r in rows) else PROBLEM
