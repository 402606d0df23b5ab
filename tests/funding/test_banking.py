"""The US banking calendar: the Fed's holidays as the local fallback, Alpaca's list where it has one."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from funding.banking import BankingCalendar
from funding.calendar import ET, TradingCalendar


def test_the_days_banks_close_but_the_market_trades_in_2026() -> None:
    """Over 2026 the only weekdays banks close while NYSE trades are Columbus Day and Veterans Day."""
    banks, nyse = BankingCalendar(), TradingCalendar()
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    closed_banks_only = [d for d in days if d.weekday() < 5 and not banks.is_banking_day(d) and nyse.is_trading_day(d)]
    assert closed_banks_only == [date(2026, 10, 12), date(2026, 11, 11)]
    assert [banks.holiday_name(d) for d in closed_banks_only] == ["Columbus Day", "Veterans Day"]


def test_a_saturday_holiday_is_not_moved_to_friday_for_banks() -> None:
    """Independence Day 2026 is a Saturday: the Fed stays open on Friday July 3 (NYSE closes)."""
    assert BankingCalendar().is_banking_day(date(2026, 7, 3))
    assert not TradingCalendar().is_trading_day(date(2026, 7, 3))


def test_alpacas_list_wins_inside_its_span_and_the_fed_list_outside() -> None:
    """A day Alpaca omits is closed even if the Fed list has it open; outside the span the Fed list answers."""
    listed = BankingCalendar.from_days([date(2026, 12, 1)], date(2026, 12, 1), date(2026, 12, 2))
    assert (listed.is_banking_day(date(2026, 12, 1)), listed.is_banking_day(date(2026, 12, 2))) == (True, False)
    assert listed.holiday_name(date(2026, 12, 2)) == "bank holiday"
    assert listed.is_banking_day(date(2026, 12, 3))
    assert (listed.source, BankingCalendar().source) == ("alpaca", "local")


@pytest.mark.parametrize(
    ("sent", "booked"),
    [
        (datetime(2026, 11, 10, 16, 0, tzinfo=ET), datetime(2026, 11, 12, 8, 0, tzinfo=ET)),  # over Veterans Day
        (datetime(2026, 11, 13, 8, 29, tzinfo=ET), datetime(2026, 11, 13, 8, 29, tzinfo=ET)),  # in the window
        (datetime(2026, 11, 13, 8, 30, tzinfo=ET), datetime(2026, 11, 16, 8, 0, tzinfo=ET)),  # just missed: Monday
        (datetime(2026, 11, 14, 9, 0, tzinfo=ET), datetime(2026, 11, 16, 8, 0, tzinfo=ET)),  # a Saturday
    ],
)
def test_a_wire_is_booked_in_the_next_window_of_a_banking_day(sent: datetime, booked: datetime) -> None:
    """08:00–08:30 ET of a banking day: at once inside it, else the next one (past it, or banks closed)."""
    assert BankingCalendar().wire_booked_at(sent) == booked
    assert booked.astimezone(ET).time() < time(8, 30)
