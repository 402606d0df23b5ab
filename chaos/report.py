"""The one table a chaos run prints, and its last line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from chaos.actions import Record
from chaos.invariants import Verdict
from chaos.plan import FAULT_KINDS, Plan
from config.settings import Settings
from funding.backtest import replay
from funding.forecast import Assumptions

PROCESS_KILLS = (
    "leader",
    "standby",
    "listener",
    "worker",
    "leader_term",
    "standby_term",
    "listener_term",
    "worker_term",
)
"""``listener``: a kill meant for the leader or the standby when no listener had that role (one was starting)."""


def forecast_backtest(
    transfers: list[dict[str, Any]], plan: Plan, rf_short: Iterable[date], settings: Settings
) -> list[str]:
    """The RF prefunding forecast replayed over the days played (:mod:`funding.backtest`): its error, and the
    RF-short deadlines its wire would have prevented."""
    deadlines = [d.day for d in plan.days if d.trading]
    assumptions = Assumptions(settings.fed_upper_bound, settings.margin_rate)
    return replay(transfers, settings.si_account_no, deadlines, assumptions, rf_short)


def render(plan: Plan, record: Record, verdict: Verdict, seconds: float, notes: Iterable[str] = ()) -> Iterator[str]:
    trading = sum(1 for day in plan.days if day.trading)
    kills = sum(record.kills[kind] for kind in PROCESS_KILLS)
    rows = [
        ("days played", f"{len(plan.days)} ({trading} trading, {len(plan.days) - trading} closed)"),
        ("IF transfers", f"{record.transfers} created, {record.refused_transfers} refused; {record.trades} trades"),
        ("RF-short deadlines", ", ".join(str(d) for d in sorted(record.rf_short_deadlines)) or "none"),
        ("partner settlements", str(len(record.partner_settlements))),
        *((f"kills: {kind}", str(record.kills[kind])) for kind in PROCESS_KILLS),
        (
            "Redis restarts",
            f"{record.redis_restarts} ({record.kills['redis_lose_last_second']} losing the last "
            f"second, {record.redis_bytes_lost} AOF bytes cut)",
        ),
        *((f"fault: {kind}", str(record.faults[kind])) for kind in FAULT_KINDS),
        ("clock jumps", str(record.clock_jumps)),
        ("pauses", str(len(record.pauses))),
        ("harness calls failed", ", ".join(f"{n} {k}" for k, n in record.harness_errors.items()) or "none"),
        ("wall time", f"{seconds:.0f} s"),
    ]
    width = max(len(name) for name in (*(r[0] for r in rows), *verdict.violations))
    yield ""
    for name, value in rows:
        yield f"  {name:<{width}}  {value}"
    yield ""
    yield f"  {'invariant':<{width}}  violations"
    for name, found in verdict.violations.items():
        yield f"  {name:<{width}}  {len(found)}"
        for what in found[:5]:
            yield f"  {'':<{width}}    {what}"
        if len(found) > 5:
            yield f"  {'':<{width}}    … {len(found) - 5} more"
    yield ""
    for note in notes:
        yield f"  {note}"
    yield (
        f"chaos: {len(plan.days)} days, {kills} kills, {record.redis_restarts} Redis restarts, "
        f"{verdict.total} violations"
    )
