"""The demo's scripted week (demo/week.py): the story falls on the right days, the clock's speed profile."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from demo.feed import DemoError
from demo.week import (
    CUTOFF_SPEED_CAP,
    NIGHT_FACTOR,
    THANKSGIVING_WEEK,
    Approve,
    DayStarts,
    Fund,
    PartnerSettles,
    Treasury,
    WireIn,
    build_week,
)
from funding.calendar import ET, TradingCalendar

CALENDAR = TradingCalendar()


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=ET)


def test_thanksgiving_week_plays_monday_to_friday_with_no_deadline_on_the_holiday() -> None:
    """Default week: RF short and covers on Tue, the partner's own settlement on Wed, Thu closed, ends Fri 20:30."""
    week = build_week(THANKSGIVING_WEEK, CALENDAR)
    assert (week.start, week.end) == (at(23, 7, 30), at(27, 20, 30))
    assert week.deadline_days == {date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27)}
    kinds = {(s.at.date(), type(s.action)) for s in week.steps}
    assert (date(2026, 11, 23), Treasury) in kinds
    assert (date(2026, 11, 24), WireIn) in kinds
    assert (date(2026, 11, 24), Approve) in kinds
    assert (date(2026, 11, 25), PartnerSettles) in kinds
    assert (date(2026, 11, 26), DayStarts) in kinds
    assert (date(2026, 11, 26), Fund) in kinds
    after_eight = [s for s in week.steps if isinstance(s.action, Fund) and s.at.time() >= time(20)]
    assert after_eight, "some transfers are made after 8 PM and count for the next trading day"
    assert [s.at for s in week.steps] == sorted(s.at for s in week.steps)


def test_one_day_ends_after_the_first_deadlines_sweep() -> None:
    """--days 1: Monday's transfers and their Tuesday deadline, up to 20:30 (after the 20:05 sweep), nothing later."""
    week = build_week(THANKSGIVING_WEEK, CALENDAR, days=1)
    assert week.end == at(24, 20, 30)
    assert all(s.at < week.end for s in week.steps)
    assert not any(isinstance(s.action, (Approve, PartnerSettles)) for s in week.steps)


def test_a_week_with_fewer_than_three_trading_days_is_refused() -> None:
    """Christmas week 2026 has four trading days and plays; a made-up week of two is refused with the reason."""
    assert build_week(date(2026, 12, 21), CALENDAR).end == at(24, 20, 30).replace(month=12)
    closed = TradingCalendar(extra_closures=frozenset({date(2026, 11, 24), date(2026, 11, 25)}))
    with pytest.raises(DemoError, match="at least 3"):
        build_week(THANKSGIVING_WEEK, closed)


def test_the_clock_slows_around_a_deadlines_cutoffs_and_races_through_nights_and_holidays() -> None:
    """Day speed in business hours; capped around 12:00 and 20:00 on deadlines only; ×8 at night and on the holiday."""
    week = build_week(THANKSGIVING_WEEK, CALENDAR)
    base = 6000.0
    assert week.speed_at(at(23, 12, 5), base) == base  # Monday is no deadline
    assert week.speed_at(at(24, 12, 5), base) == CUTOFF_SPEED_CAP
    assert week.speed_at(at(24, 20, 5), 1200.0) == 300.0
    assert week.speed_at(at(24, 15), base) == base
    assert week.speed_at(at(24, 23), base) == base * NIGHT_FACTOR
    assert week.speed_at(at(26, 12, 5), base) == base * NIGHT_FACTOR
    assert week.next_speed_change(at(24, 11)) == at(24, 11, 59)
    assert week.next_speed_change(at(24, 22)) == at(25, 0)
