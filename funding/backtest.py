"""Backtest of the RF prefunding forecast over days already played: how far its planning figure was from what came.

For each deadline of the period the forecast is made as it would have been at 15:00 ET of that deadline's last
afternoon (the banking day before its credit day: :func:`funding.forecast.last_afternoon`), from the transfers
created before then, and its figure for the deadline (what is due then plus what is expected, before the partner's
share) is set against what the deadline's system date brought in the end. A deadline counts as *covered* when the
planning figure was at least what came: a wire sized by the forecast would have paid it all. The RF-short deadlines
of the period (the chaos harness knows them) covered are those the forecast's wire would have prevented.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from funding.banking import BankingCalendar
from funding.calendar import TradingCalendar, at_et
from funding.forecast import Assumptions, Outlook, PastTransfer, credit_day, forecast
from funding.money import ZERO

AT = time(15, 0)


@dataclass(frozen=True)
class BacktestDay:
    deadline: date
    planned: Decimal
    median: Decimal
    actual: Decimal
    samples: int

    @property
    def covered(self) -> bool:
        return self.planned >= self.actual


@dataclass(frozen=True)
class Backtest:
    days: list[BacktestDay]

    @property
    def scored(self) -> list[BacktestDay]:
        """The days with history to go by and something due."""
        return [d for d in self.days if d.samples and d.actual > 0]

    def error(self, median: bool = False) -> Decimal:
        """Mean absolute error of the planning figure (or the median), as a share of what came."""
        days = self.scored
        if not days:
            return ZERO
        misses = [abs((d.median if median else d.planned) - d.actual) / d.actual for d in days]
        return sum(misses, ZERO) / len(days)

    def bias(self) -> Decimal:
        """Mean of (planned − actual) / actual: above 0 the forecast over-provisions."""
        days = self.scored
        return sum(((d.planned - d.actual) / d.actual for d in days), ZERO) / len(days) if days else ZERO

    def covered(self, among: Iterable[date] | None = None) -> tuple[int, int]:
        """(covered, scored) over every scored day, or over those of ``among`` (the RF-short deadlines)."""
        wanted = None if among is None else set(among)
        days = [d for d in self.scored if wanted is None or d.deadline in wanted]
        return sum(1 for d in days if d.covered), len(days)

    def lines(self, rf_short: Iterable[date] = ()) -> list[str]:
        short = sorted(set(rf_short))
        hit, n = self.covered()
        short_hit, short_n = self.covered(short)
        return [
            f"forecast backtest: {n} deadlines scored of {len(self.days)}; planning figure (0.9 quantile) off by "
            f"{self.error():.1%} on average (median {self.error(median=True):.1%}), bias {self.bias():+.1%}",
            f"forecast backtest: it covered what came on {hit} of {n} deadlines; of the {len(short)} RF-short "
            f"deadlines, {short_n} scored, its wire would have prevented {short_hit}",
        ]


def backtest(
    transfers: Sequence[PastTransfer],
    first: date,
    last: date,
    trading: TradingCalendar,
    banking: BankingCalendar,
    assumptions: Assumptions,
) -> Backtest:
    """Forecast each deadline from ``first`` to ``last`` as of its last afternoon at 15:00 ET; ``transfers`` are
    every transfer of the period (complete from the first system date they hold)."""
    since = min((t.system_date for t in transfers), default=first)
    days = []
    for deadline in trading.trading_days(first, last):
        system_date = trading.previous_trading_day(deadline)
        at = at_et(banking.previous_banking_day(credit_day(deadline, banking)), AT)
        seen = [t for t in transfers if t.created_at < at]
        known = [t.amount for t in seen if t.system_date == system_date]
        outlook = Outlook(at, {deadline: known}, seen, since, ZERO, ZERO)
        ahead = forecast(outlook, assumptions, trading, banking, days=6)
        match = [o for o in ahead.deadlines if o.deadline == deadline]
        if not match:
            continue
        found = match[0]
        actual = sum((t.amount for t in transfers if t.system_date == system_date), ZERO)
        days.append(
            BacktestDay(
                deadline,
                found.due_known + found.expected,
                found.due_known + found.expected_median,
                actual,
                found.samples,
            )
        )
    return Backtest(days)


def replay(
    rows: Iterable[Mapping[str, Any]],
    si_account_no: str,
    deadlines: Sequence[date],
    assumptions: Assumptions,
    rf_short: Iterable[date] = (),
) -> list[str]:
    """The backtest's lines for days a sandbox played (the demo week, a chaos run): ``rows`` are the Broker API's
    transfers (``created_at``, ``amount``, ``system_date``, ``source_account_no``), ``deadlines`` those played."""
    transfers = [
        PastTransfer(
            datetime.fromisoformat(r["created_at"]), Decimal(r["amount"]), date.fromisoformat(r["system_date"])
        )
        for r in rows
        if r["source_account_no"] == si_account_no
    ]
    if not transfers or not deadlines:
        return []
    found = backtest(transfers, min(deadlines), max(deadlines), TradingCalendar(), BankingCalendar(), assumptions)
    return found.lines(rf_short)
