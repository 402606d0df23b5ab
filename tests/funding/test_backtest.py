"""The forecast's backtest on constructed months: a steady one it gets exactly, a growing one it under-plans."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

from funding.backtest import backtest
from funding.banking import BankingCalendar
from funding.calendar import TradingCalendar, at_et
from funding.forecast import Assumptions, PastTransfer

TRADING, BANKING = TradingCalendar(), BankingCalendar()
ASSUME = Assumptions(fed_upper_bound=Decimal("0.045"), margin_rate=Decimal("0.085"))


def month(first: date, last: date, growth: Decimal = Decimal(0)) -> list[PastTransfer]:
    """Ten transfers a trading day, 09:00 to 18:00 ET, of 100.00 more each weekday; ``growth`` more each day."""
    rows = []
    for n, day in enumerate(TRADING.trading_days(first, last)):
        for hour in range(9, 19):
            amount = Decimal(100 * (day.weekday() + 1)) + growth * n
            rows.append(PastTransfer(at_et(day, time(hour)), amount, day))
    return rows


def test_a_steady_month_is_forecast_exactly_and_every_deadline_is_covered() -> None:
    """Each weekday the same: from the second week on the planning figure is what came, to the cent."""
    result = backtest(
        month(date(2026, 10, 1), date(2026, 11, 6)), date(2026, 10, 12), date(2026, 11, 6), TRADING, BANKING, ASSUME
    )
    assert result.scored
    assert all(d.planned == d.actual for d in result.scored)
    assert (result.error(), result.bias()) == (0, 0)
    assert result.covered() == (len(result.scored), len(result.scored))
    assert result.covered([date(2026, 10, 12)]) == (1, 1)  # Columbus Day: Friday's transfers, forecast Thursday


def test_a_growing_month_is_under_planned_and_the_backtest_says_by_how_much() -> None:
    """Amounts rising every day: last weeks' samples fall short, so the error and a negative bias show it."""
    result = backtest(
        month(date(2026, 10, 1), date(2026, 11, 6), growth=Decimal(20)),
        date(2026, 10, 19),
        date(2026, 11, 6),
        TRADING,
        BANKING,
        ASSUME,
    )
    hit, n = result.covered()
    assert n > 10
    assert hit == 0
    assert result.bias() < 0
    assert result.error() > Decimal("0.05")
    assert "forecast backtest" in result.lines([date(2026, 11, 2)])[1]
