"""The NYSE calendar in US/Eastern (funding/calendar.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from funding.calendar import ET, TradingCalendar, at_et, to_et

CAL = TradingCalendar()

NYSE_2026_CLOSURES = {
    date(2026, 1, 1): "New Year",
    date(2026, 1, 19): "Martin Luther King",
    date(2026, 2, 16): "Washington",
    date(2026, 4, 3): "Good Friday",
    date(2026, 5, 25): "Memorial",
    date(2026, 6, 19): "Juneteenth",
    date(2026, 7, 3): "Independence",
    date(2026, 9, 7): "Labor",
    date(2026, 11, 26): "Thanksgiving",
    date(2026, 12, 25): "Christmas",
}


@pytest.mark.parametrize(("day", "name"), sorted(NYSE_2026_CLOSURES.items()))
def test_nyse_2026_holidays_are_closed(day: date, name: str) -> None:
    """Every 2026 NYSE full-day holiday (incl. Good Friday and 2026-07-03 observed) is not a trading day."""
    assert day.weekday() < 5
    assert not CAL.is_trading_day(day)
    assert name.lower() in (CAL.holiday_name(day) or "").lower()


def test_2026_has_exactly_ten_weekday_closures() -> None:
    """No other 2026 weekday is closed: trading days = weekdays − the 10 holidays."""
    start, end = date(2026, 1, 1), date(2026, 12, 31)
    weekdays = sum(1 for n in range((end - start).days + 1) if (start + timedelta(days=n)).weekday() < 5)
    assert len(list(CAL.trading_days(start, end))) == weekdays - len(NYSE_2026_CLOSURES)


@pytest.mark.parametrize("day", [date(2026, 11, 21), date(2026, 11, 22)])
def test_weekends_are_closed(day: date) -> None:
    """Saturdays and Sundays never trade and carry no holiday name."""
    assert not CAL.is_trading_day(day)
    assert CAL.holiday_name(day) is None


@pytest.mark.parametrize("day", [date(2026, 11, 27), date(2026, 12, 24)])
def test_half_days_close_at_1pm(day: date) -> None:
    """The day after Thanksgiving and Christmas Eve 2026 close at 13:00 ET."""
    session = CAL.session(day)
    assert (session.open, session.close) == (time(9, 30), time(13, 0))
    assert CAL.is_open(at_et(day, time(12, 59)))
    assert not CAL.is_open(at_et(day, time(13, 0)))


def test_regular_day_closes_at_4pm_and_settles_next_trading_day() -> None:
    """A normal session is 09:30–16:00, session 04:00–20:00, settlement on the next trading day."""
    session = CAL.session(date(2026, 11, 25))
    assert (session.open, session.close) == (time(9, 30), time(16, 0))
    assert (session.session_open, session.session_close) == (time(4, 0), time(20, 0))
    assert session.settlement_date == date(2026, 11, 27)


def test_session_of_a_holiday_is_refused() -> None:
    """Asking for the session of a closed day is a ValueError."""
    with pytest.raises(ValueError, match="not a trading day"):
        CAL.session(date(2026, 11, 26))


@pytest.mark.parametrize(
    ("day", "following", "preceding"),
    [
        (date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 24)),
        (date(2026, 11, 27), date(2026, 11, 30), date(2026, 11, 25)),
        (date(2026, 4, 2), date(2026, 4, 6), date(2026, 4, 1)),
        (date(2026, 7, 2), date(2026, 7, 6), date(2026, 7, 1)),
        (date(2026, 12, 24), date(2026, 12, 28), date(2026, 12, 23)),
        (date(2026, 6, 18), date(2026, 6, 22), date(2026, 6, 17)),
    ],
)
def test_next_and_previous_trading_day(day: date, following: date, preceding: date) -> None:
    """next/previous_trading_day skip weekends and holidays, strictly after/before the day."""
    assert CAL.next_trading_day(day) == following
    assert CAL.previous_trading_day(day) == preceding
    assert CAL.previous_trading_day(following) == day


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at_et(date(2026, 11, 23), time(19, 59, 59)), date(2026, 11, 23)),
        (at_et(date(2026, 11, 23), time(20, 0)), date(2026, 11, 24)),
        (at_et(date(2026, 11, 23), time(0, 0)), date(2026, 11, 23)),
        (at_et(date(2026, 11, 25), time(20, 0)), date(2026, 11, 27)),
        (at_et(date(2026, 11, 26), time(10, 0)), date(2026, 11, 27)),
        (at_et(date(2026, 11, 28), time(10, 0)), date(2026, 11, 30)),
        (at_et(date(2026, 11, 27), time(20, 0)), date(2026, 11, 30)),
        (at_et(date(2026, 4, 3), time(9, 0)), date(2026, 4, 6)),
    ],
)
def test_system_date_for(moment: datetime, expected: date) -> None:
    """At/after 8 PM ET, or on a weekend/holiday, a transfer belongs to the next trading day."""
    assert CAL.system_date_for(moment) == expected
    assert CAL.current_system_date(moment) == expected
    assert CAL.deadline_for(expected) == CAL.next_trading_day(expected)


def test_system_date_for_uses_et_not_utc() -> None:
    """01:00 UTC on Tuesday is 20:00 ET Monday (winter): it counts as Tuesday; 00:59 UTC is still Monday."""
    assert CAL.system_date_for(datetime(2026, 11, 24, 1, 0, tzinfo=UTC)) == date(2026, 11, 24)
    assert CAL.system_date_for(datetime(2026, 11, 24, 0, 59, tzinfo=UTC)) == date(2026, 11, 23)


def test_system_date_cutoff_follows_dst() -> None:
    """In summer 8 PM ET is 00:00 UTC; in winter it is 01:00 UTC."""
    summer = datetime(2026, 7, 8, 0, 0, tzinfo=UTC)  # Tue 7 Jul 20:00 EDT
    winter = datetime(2026, 3, 6, 0, 30, tzinfo=UTC)  # Thu 5 Mar 19:30 EST
    assert CAL.system_date_for(summer) == date(2026, 7, 8)
    assert CAL.system_date_for(summer - timedelta(seconds=1)) == date(2026, 7, 7)
    assert CAL.system_date_for(winter) == date(2026, 3, 5)


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime has no business meaning and raises ValueError."""
    with pytest.raises(ValueError, match="naive"):
        CAL.system_date_for(datetime(2026, 11, 23, 12, 0))  # noqa: DTZ001 - the point of the test


@pytest.mark.parametrize(
    ("day", "offset"),
    [
        (date(2026, 7, 1), "-04:00"),
        (date(2026, 1, 5), "-05:00"),
        (date(2026, 3, 9), "-04:00"),
        (date(2026, 11, 2), "-05:00"),
    ],
)
def test_at_et_offset_follows_dst(day: date, offset: str) -> None:
    """at_et gives -04:00 in summer (EDT) and -05:00 in winter (EST), switching on the DST dates."""
    moment = at_et(day, time(12, 0))
    assert moment.isoformat() == f"{day.isoformat()}T12:00:00{offset}"
    assert to_et(moment.astimezone(UTC)) == moment
    assert to_et(moment.astimezone(UTC)).tzinfo is ET


@pytest.mark.parametrize(
    ("day", "days"),
    [(date(2026, 11, 20), 3), (date(2026, 11, 23), 1), (date(2026, 11, 25), 2), (date(2026, 4, 2), 4)],
)
def test_interest_days(day: date, days: int) -> None:
    """Interest accrues calendar days to the next trading day: 3 from a Friday, more around holidays."""
    assert CAL.interest_days(day) == days


def test_extra_closures_are_honoured() -> None:
    """A configured ad-hoc closure is not a trading day and shifts next-day, system date and sessions."""
    closed = date(2026, 11, 24)
    cal = TradingCalendar(extra_closures=frozenset({closed}))
    assert CAL.is_trading_day(closed)
    assert not cal.is_trading_day(closed)
    assert cal.next_trading_day(date(2026, 11, 23)) == date(2026, 11, 25)
    assert cal.system_date_for(at_et(date(2026, 11, 23), time(20, 0))) == date(2026, 11, 25)
    assert closed not in [s.day for s in cal.sessions(date(2026, 11, 23), date(2026, 11, 25))]


def test_is_open_next_open_and_next_close() -> None:
    """The market is open 09:30–16:00 on trading days; next_open/next_close skip closed days."""
    before_open = at_et(date(2026, 11, 25), time(9, 0))
    after_close = at_et(date(2026, 11, 25), time(16, 0))
    assert not CAL.is_open(before_open)
    assert CAL.is_open(at_et(date(2026, 11, 25), time(9, 30)))
    assert not CAL.is_open(after_close)
    assert CAL.next_open(before_open) == at_et(date(2026, 11, 25), time(9, 30))
    assert CAL.next_open(after_close) == at_et(date(2026, 11, 27), time(9, 30))
    assert CAL.next_close(after_close) == at_et(date(2026, 11, 27), time(13, 0))
    assert not CAL.is_open(at_et(date(2026, 11, 26), time(11, 0)))


def test_sessions_are_clipped_to_the_calendar_span() -> None:
    """sessions() covers 1970–2029 only, like Alpaca's /v1/calendar."""
    assert CAL.sessions(date(2030, 1, 1), date(2030, 1, 31)) == []
    assert CAL.sessions(date(2029, 12, 31), date(2030, 1, 3))[-1].day == date(2029, 12, 31)
