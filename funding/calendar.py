"""The NYSE trading calendar in US/Eastern (with DST), and the business times of instant funding.

Alpaca's ``system_date`` and ``deadline`` fields are the truth for every transfer (docs/broker-api.md "Business dates
and the timeline");
the sandbox computes them with :meth:`TradingCalendar.system_date_for` and
:meth:`TradingCalendar.deadline_for`, and the worker uses this calendar only to schedule its own phases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays

ET = ZoneInfo("America/New_York")
"""US/Eastern with daylight saving time: every business time in this system is in this zone."""

CYCLE_CUTOFF = time(20, 0)
"""Transfers created at or after 8 PM ET belong to the next trading day; 8 PM is also cancellation time."""
SETTLEMENT_CUTOFF = time(13, 0)
"""Settlement is due by 1 PM ET on the deadline; unsettled transfers book a day of interest then."""
MARKET_OPEN = time(9, 30)
MARKET_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)
SESSION_OPEN = time(4, 0)
SESSION_CLOSE = time(20, 0)

_FIRST_YEAR, _LAST_YEAR = 1970, 2029
"""The span Alpaca's /v1/calendar covers."""


def to_et(moment: datetime) -> datetime:
    """``moment`` (timezone-aware) expressed in US/Eastern."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no business meaning here; pass an aware datetime")
    return moment.astimezone(ET)


def first_day(day: date, step: int, wanted: Callable[[date], bool]) -> date:
    """The first day after (``step`` 1) or before (-1) ``day`` that is ``wanted``."""
    candidate = day + timedelta(days=step)
    while not wanted(candidate):
        candidate += timedelta(days=step)
    return candidate


def at_et(day: date, clock_time: time) -> datetime:
    """The aware datetime of ``clock_time`` US/Eastern on ``day`` (DST resolved by zoneinfo)."""
    return datetime.combine(day, clock_time, tzinfo=ET)


@dataclass(frozen=True)
class TradingSession:
    """One trading day as Alpaca's calendar reports it."""

    day: date
    open: time
    close: time
    session_open: time
    session_close: time
    settlement_date: date


@dataclass(frozen=True)
class TradingCalendar:
    """NYSE full-day closures and early closes, plus configured ad-hoc closures."""

    extra_closures: frozenset[date] = field(default_factory=frozenset)

    @cached_property
    def _closed(self) -> holidays.HolidayBase:
        return holidays.financial_holidays("NYSE")

    @cached_property
    def _half_days(self) -> holidays.HolidayBase:
        return holidays.financial_holidays("NYSE", categories=("half_day",))

    def is_trading_day(self, day: date) -> bool:
        """True on a weekday that is not an NYSE holiday or a configured closure."""
        return day.weekday() < 5 and day not in self._closed and day not in self.extra_closures

    def holiday_name(self, day: date) -> str | None:
        """The NYSE holiday's name on ``day``, if any."""
        name = self._closed.get(day)
        return str(name) if name else None

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after ``day``."""
        return first_day(day, 1, self.is_trading_day)

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before ``day``."""
        return first_day(day, -1, self.is_trading_day)

    def trading_day_on_or_after(self, day: date) -> date:
        """``day`` itself when it trades, otherwise the next trading day."""
        return day if self.is_trading_day(day) else self.next_trading_day(day)

    def trading_days(self, start: date, end: date) -> Iterator[date]:
        """Trading days from ``start`` to ``end``, both inclusive."""
        day = start
        while day <= end:
            if self.is_trading_day(day):
                yield day
            day += timedelta(days=1)

    def system_date_for(self, created_at: datetime) -> date:
        """The business date a transfer created at ``created_at`` counts as created on.

        At or after 8 PM ET, or on a non-trading day, it belongs to the next trading day.
        """
        local = to_et(created_at)
        day = local.date()
        if local.time() >= CYCLE_CUTOFF:
            return self.next_trading_day(day)
        return self.trading_day_on_or_after(day)

    def deadline_for(self, system_date: date) -> date:
        """Settlement is due on the next trading day after ``system_date`` (T+1)."""
        return self.next_trading_day(system_date)

    def interest_days(self, day: date) -> int:
        """Calendar days of interest a balance open on trading day ``day`` accrues (3 from a Friday)."""
        return (self.next_trading_day(day) - day).days

    def current_system_date(self, now: datetime) -> date:
        """The system date of a transfer created at ``now`` (the open settlement cycle)."""
        return self.system_date_for(now)

    def session(self, day: date) -> TradingSession:
        """Open and close times of a trading day (early close on NYSE half days)."""
        if not self.is_trading_day(day):
            raise ValueError(f"{day} is not a trading day")
        close = EARLY_CLOSE if day in self._half_days else MARKET_CLOSE
        return TradingSession(
            day=day,
            open=MARKET_OPEN,
            close=close,
            session_open=SESSION_OPEN,
            session_close=SESSION_CLOSE,
            settlement_date=self.next_trading_day(day),
        )

    def sessions(self, start: date, end: date) -> list[TradingSession]:
        """Every trading session between ``start`` and ``end`` (inclusive), clipped to 1970–2029."""
        start = max(start, date(_FIRST_YEAR, 1, 1))
        end = min(end, date(_LAST_YEAR, 12, 31))
        return [self.session(day) for day in self.trading_days(start, end)]

    def is_open(self, moment: datetime) -> bool:
        """True while the regular market session is open at ``moment``."""
        local = to_et(moment)
        if not self.is_trading_day(local.date()):
            return False
        session = self.session(local.date())
        return session.open <= local.time() < session.close

    def next_open(self, moment: datetime) -> datetime:
        """The next regular-session open strictly after ``moment``."""
        local = to_et(moment)
        day = local.date()
        if self.is_trading_day(day) and local.time() < MARKET_OPEN:
            return at_et(day, MARKET_OPEN)
        return at_et(self.next_trading_day(day), MARKET_OPEN)

    def previous_close(self, moment: datetime) -> datetime:
        """The last regular-session close strictly before ``moment``."""
        local = to_et(moment)
        day = local.date()
        if self.is_trading_day(day) and local.time() >= self.session(day).close:
            return at_et(day, self.session(day).close)
        earlier = self.previous_trading_day(day)
        return at_et(earlier, self.session(earlier).close)

    def next_close(self, moment: datetime) -> datetime:
        """The next regular-session close at or after ``moment``."""
        local = to_et(moment)
        day = local.date()
        if self.is_trading_day(day) and local.time() < self.session(day).close:
            return at_et(day, self.session(day).close)
        following = self.next_trading_day(day)
        return at_et(following, self.session(following).close)
