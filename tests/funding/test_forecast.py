"""The RF prefunding forecast on constructed histories: bank holidays, Thanksgiving, a quiet month, the partner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from funding.banking import BankingCalendar
from funding.calendar import TradingCalendar, at_et
from funding.forecast import (
    Assumptions,
    Forecast,
    Outlook,
    PastTransfer,
    forecast,
    last_afternoon,
    quantile,
)
from funding.money import late_interest, margin_interest

TRADING, BANKING = TradingCalendar(), BankingCalendar()
FED, MARGIN = Decimal("0.0450"), Decimal("0.0850")
ASSUME = Assumptions(fed_upper_bound=FED, margin_rate=MARGIN)
THOUSAND = Decimal("1000.00")


def traffic(
    first: date, last: date, per_day: Mapping[int, int] | None = None, hours: Iterable[int] = range(9, 19)
) -> list[PastTransfer]:
    """Transfers of 1,000.00 on each trading day from ``first`` to ``last``: one an hour from 09:00 to 18:00 ET,
    or ``per_day[weekday]`` an hour on that weekday."""
    rows = []
    for day in TRADING.trading_days(first, last):
        for hour in hours:
            for n in range((per_day or {}).get(day.weekday(), 1)):
                rows.append(PastTransfer(at_et(day, time(hour, n)), THOUSAND, day))
    return rows


def run(
    now: datetime,
    history: list[PastTransfer],
    *,
    rf: str,
    si: str = "0.00",
    due: Mapping[date, list[Decimal]] | None = None,
    since: date,
) -> Forecast:
    outlook = Outlook(now, due or {}, history, since, Decimal(si), Decimal(rf))
    return forecast(outlook, ASSUME, TRADING, BANKING)


def due_of(history: list[PastTransfer], system_date: date, before: datetime) -> list[Decimal]:
    """What the store holds unsettled for ``system_date``'s deadline at ``before``: the transfers created so far."""
    return [t.amount for t in history if t.system_date == system_date and t.created_at < before]


def test_the_friday_before_columbus_day_wires_by_that_friday_enough_for_mondays_deadline() -> None:
    """Monday 2026-10-12 trades but banks are closed: its transfers (Friday's) can only be paid from RF, so the wire
    must be credited Friday, and it covers Monday's shortfall after Friday's deadline has used RF."""
    now = at_et(date(2026, 10, 9), time(7, 0))
    history = traffic(date(2026, 9, 8), date(2026, 10, 9))
    past = [t for t in history if t.created_at < now]
    due = {date(2026, 10, 9): due_of(history, date(2026, 10, 8), now)}

    result = run(now, past, rf="15000.00", due=due, since=date(2026, 9, 8))

    by_day = {o.deadline: o for o in result.deadlines}
    friday, monday, tuesday = by_day[date(2026, 10, 9)], by_day[date(2026, 10, 12)], by_day[date(2026, 10, 13)]
    assert (friday.due_known, friday.expected, friday.shortfall) == (10 * THOUSAND, 0, 0)
    assert (monday.banking_day, monday.credit_day, monday.expected, monday.samples) == (
        False,
        date(2026, 10, 9),
        10 * THOUSAND,
        4,
    )
    assert (monday.shortfall, monday.rf_projected, tuesday.shortfall) == (5 * THOUSAND, 0, 10 * THOUSAND)
    rec = result.recommendation
    assert rec is not None
    assert (rec.amount, rec.wire_by, rec.covers_through, rec.first_short) == (
        5 * THOUSAND,
        date(2026, 10, 9),
        date(2026, 10, 12),
        date(2026, 10, 12),
    )
    assert rec.cost_if_not.transfers_left == 5
    assert rec.cost_if_not.late_interest == 5 * late_interest(THOUSAND, FED)
    assert rec.cost_if_not.margin_interest == 5 * margin_interest(THOUSAND, MARGIN, 1)  # Tuesday's debit, one day
    assert last_afternoon(rec, BANKING) == date(2026, 10, 8)
    assert result.unreachable == []


def test_the_day_before_veterans_day_wires_by_tuesday_for_wednesdays_heavier_deadline() -> None:
    """Wednesday 2026-11-11 is a bank holiday: Tuesday's (three times heavier) transfers due then need RF funded on
    Tuesday; forecast Monday 15:00, with Monday's transfers partly created, Tuesday's deadline consuming RF first."""
    now = at_et(date(2026, 11, 9), time(15, 0))
    history = traffic(date(2026, 10, 12), date(2026, 11, 10), per_day={1: 3})
    past = [t for t in history if t.created_at < now]
    due = {date(2026, 11, 10): due_of(history, date(2026, 11, 9), now)}

    result = run(now, past, rf="20000.00", due=due, since=date(2026, 10, 12))

    by_day = {o.deadline: o for o in result.deadlines}
    tuesday, wednesday = by_day[date(2026, 11, 10)], by_day[date(2026, 11, 11)]
    assert (tuesday.due_known, tuesday.expected, tuesday.projected_due) == (6 * THOUSAND, 4 * THOUSAND, 10 * THOUSAND)
    assert (wednesday.banking_day, wednesday.credit_day, wednesday.projected_due) == (
        False,
        date(2026, 11, 10),
        30 * THOUSAND,
    )
    rec = result.recommendation
    assert rec is not None
    assert (rec.amount, rec.wire_by, rec.covers_through) == (20 * THOUSAND, date(2026, 11, 10), date(2026, 11, 11))
    assert rec.cost_if_not.transfers_left == 20
    assert last_afternoon(rec, BANKING) == date(2026, 11, 9)  # today: the 15:00 warning's day


def test_on_the_morning_before_veterans_day_the_wire_is_still_for_that_morning() -> None:
    """Tuesday 2026-11-10 07:00, the day before the holiday: Tuesday's window (08:00–08:30 ET) is still ahead, so
    the wire is credited today and covers Wednesday; Tuesday's own deadline (Monday's transfers) is paid first."""
    now = at_et(date(2026, 11, 10), time(7, 0))
    history = traffic(date(2026, 10, 12), date(2026, 11, 10), per_day={1: 3})
    past = [t for t in history if t.created_at < now]
    due = {date(2026, 11, 10): due_of(history, date(2026, 11, 9), now)}

    result = run(now, past, rf="20000.00", due=due, since=date(2026, 10, 12))

    rec = result.recommendation
    assert rec is not None
    assert (rec.amount, rec.wire_by, rec.covers_through, rec.first_short) == (
        20 * THOUSAND,
        date(2026, 11, 10),
        date(2026, 11, 11),
        date(2026, 11, 11),
    )
    assert result.unreachable == []


def test_thanksgiving_week_skips_thursday_and_a_wire_sent_wednesday_lands_friday() -> None:
    """Thursday 2026-11-26 is no deadline; banks are closed too, so Wednesday's wire is credited Friday morning,
    in time for Friday's deadline (Wednesday's transfers, created until 8 PM ET Wednesday)."""
    now = at_et(date(2026, 11, 25), time(10, 0))
    history = traffic(date(2026, 10, 26), date(2026, 11, 25))
    past = [t for t in history if t.created_at < now]
    due = {
        date(2026, 11, 25): due_of(history, date(2026, 11, 24), now),
        date(2026, 11, 27): due_of(history, date(2026, 11, 25), now),
    }

    result = run(now, past, rf="12000.00", due=due, since=date(2026, 10, 26))

    assert [o.deadline for o in result.deadlines] == [
        date(2026, 11, 25),
        date(2026, 11, 27),
        date(2026, 11, 30),
        date(2026, 12, 1),
        date(2026, 12, 2),
    ]
    friday = result.deadlines[1]
    assert (friday.due_known, friday.expected, friday.shortfall) == (THOUSAND, 9 * THOUSAND, 8 * THOUSAND)
    rec = result.recommendation
    assert rec is not None
    assert (rec.amount, rec.wire_by, rec.covers_through) == (8 * THOUSAND, date(2026, 11, 27), date(2026, 11, 27))
    assert last_afternoon(rec, BANKING) == date(2026, 11, 25)


def test_a_quiet_history_recommends_no_wire() -> None:
    """Two transfers a day against an RF of 50,000: nothing is short, no wire, no cost."""
    now = at_et(date(2026, 11, 16), time(9, 0))
    history = traffic(date(2026, 10, 19), date(2026, 11, 16), hours=(10, 15))
    result = run(now, [t for t in history if t.created_at < now], rf="50000.00", since=date(2026, 10, 19))
    assert result.recommendation is None
    assert {o.shortfall for o in result.deadlines} == {0}
    assert all(o.samples == 4 for o in result.deadlines[1:])
    assert result.deadlines[-1].rf_projected == Decimal("50000.00") - 2 * THOUSAND * 4


def test_a_deadline_whose_last_window_is_over_is_unreachable_and_the_next_short_one_is_recommended() -> None:
    """Friday 10:00 before Columbus Day: Friday's window has closed, the next is Tuesday's; Monday can no longer
    be helped by a wire (listed as unreachable), and the wire is for Tuesday."""
    now = at_et(date(2026, 10, 9), time(10, 0))
    history = traffic(date(2026, 9, 8), date(2026, 10, 9))
    past = [t for t in history if t.created_at < now]
    due = {date(2026, 10, 9): due_of(history, date(2026, 10, 8), now)}
    result = run(now, past, rf="15000.00", due=due, since=date(2026, 9, 8))
    assert result.unreachable == [date(2026, 10, 12)]
    rec = result.recommendation
    assert rec is not None
    assert (rec.wire_by, rec.covers_through, rec.amount) == (date(2026, 10, 13), date(2026, 10, 13), 10 * THOUSAND)


def test_the_partner_share_is_planned_at_its_low_quantile() -> None:
    """The partner settled half of three days and a tenth of one: the planning figure assumes a tenth, the median
    a half."""
    now = at_et(date(2026, 11, 16), time(9, 0))
    history = []
    for n, day in enumerate(TRADING.trading_days(date(2026, 11, 9), date(2026, 11, 12))):
        partner = 1 if n == 0 else 5
        for i in range(10):
            history.append(PastTransfer(at_et(day, time(10, i)), THOUSAND, day, "partner" if i < partner else ""))
    due = {date(2026, 11, 16): [THOUSAND] * 10}
    result = run(now, history, rf="0.00", due=due, since=date(2026, 11, 9))
    monday = result.deadlines[0]
    assert (monday.partner_share, monday.projected_due, monday.projected_due_median) == (
        Decimal("0.1"),
        9 * THOUSAND,
        5 * THOUSAND,
    )
    assert (monday.samples, monday.expected) == (0, 0)  # its transfers' window closed on Friday 8 PM ET
    assert result.deadlines[1].samples == 1  # one Monday of history (2026-11-09) before 2026-11-16


def test_quantile_is_nearest_rank() -> None:
    """0.9 of four values is the largest, 0.5 the second; none gives zero."""
    values = [Decimal(v) for v in ("4", "1", "3", "2")]
    assert (quantile(values, Decimal("0.9")), quantile(values, Decimal("0.5")), quantile([], Decimal("0.5"))) == (
        Decimal(4),
        Decimal(2),
        Decimal(0),
    )


def test_past_transfers_are_sampled_by_the_time_left_before_the_cut() -> None:
    """At 17:30 ET on a system date with an hourly history, only what came at 18:00 is still expected."""
    day = date(2026, 11, 19)
    now = at_et(day, time(17, 30))
    history = traffic(date(2026, 10, 19), day)
    result = run(now, [t for t in history if t.created_at < now], rf="1.00", since=date(2026, 10, 19))
    tomorrow = {o.deadline: o for o in result.deadlines}[day + timedelta(days=1)]
    assert (tomorrow.expected, tomorrow.expected_median) == (THOUSAND, THOUSAND)
