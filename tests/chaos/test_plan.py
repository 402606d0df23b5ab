"""chaos/plan.py: a run's plan is its seed's, and it holds every disruption the issue asks for."""

from __future__ import annotations

from collections import Counter
from datetime import date, time

from chaos.plan import FAULT_KINDS, KILL_KINDS, REDIS_KINDS, TERM_KINDS, build
from funding.calendar import TradingCalendar, to_et

CALENDAR = TradingCalendar()


def test_the_same_seed_plans_the_same_run_and_another_seed_another() -> None:
    """Transfers and disruptions are drawn from the seed alone."""
    first = build(date(2026, 11, 24), 3, 7, CALENDAR, kills_per_day=15)
    again = build(date(2026, 11, 24), 3, 7, CALENDAR, kills_per_day=15)
    other = build(date(2026, 11, 24), 3, 8, CALENDAR, kills_per_day=15)
    assert first.transfers() == again.transfers()
    assert first.disruptions() == again.disruptions()
    assert first.transfers() != other.transfers()


def test_the_short_run_plays_a_market_holiday_an_rf_short_day_and_every_disruption_kind() -> None:
    """Tue, Wed (the partner settles some), Thanksgiving (closed), Fri (RF-short); hundreds of transfers a trading
    day, some after 8 PM; every fault kind, both Redis kinds and each termination at least once."""
    plan = build(date(2026, 11, 24), 3, 3, CALENDAR, kills_per_day=15)
    assert [(d.day.isoformat(), d.trading, d.partner_settles, d.rf_short) for d in plan.days] == [
        ("2026-11-24", True, False, False),
        ("2026-11-25", True, True, False),
        ("2026-11-26", False, False, False),
        ("2026-11-27", True, False, True),
    ]
    assert all(150 <= len(d.transfers) <= 250 for d in plan.days if d.trading)
    assert any(to_et(t.at).time() >= time(20, 0) for t in plan.transfers())
    kinds = Counter(d.kind for d in plan.disruptions())
    assert set(FAULT_KINDS) | set(REDIS_KINDS) | set(TERM_KINDS) | set(KILL_KINDS) <= set(kinds)
    assert sum(kinds[k] for k in KILL_KINDS) == 45


def test_the_long_run_crosses_a_bank_only_holiday_a_weekend_and_rf_short_days() -> None:
    """20 trading days from Mon 2026-11-02: Veterans Day (banks closed, NYSE open), weekends, Thanksgiving;
    RF-short days and partner settlements among them."""
    plan = build(date(2026, 11, 2), 20, 3, CALENDAR, kills_per_day=15)
    veterans = next(d for d in plan.days if d.day == date(2026, 11, 11))
    assert (veterans.trading, veterans.banking) == (True, False)
    assert any(d.day.weekday() == 5 for d in plan.days)
    assert any(not d.trading and d.day.weekday() < 5 for d in plan.days)
    assert sum(d.rf_short for d in plan.days) >= 5
    assert sum(d.partner_settles for d in plan.days) >= 5


def test_no_clock_jump_or_pause_lands_where_it_would_make_a_cutoff_unreachable() -> None:
    """Jumps (up to 40 minutes) and pauses (up to 20) start outside 10:15-13:30 and before 18:30."""
    plan = build(date(2026, 11, 2), 20, 11, CALENDAR, kills_per_day=15)
    for disruption in plan.disruptions():
        if disruption.kind in ("clock_jump", "pause"):
            moment = to_et(disruption.at).time()
            assert moment <= time(18, 30)
            assert not time(10, 15) <= moment <= time(13, 30)
