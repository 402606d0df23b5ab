"""The US banking calendar: the days wires and ACH move, and when an incoming wire is booked.

Instant-funding deadlines follow the *trading* calendar (:mod:`funding.calendar`) even when banks are closed
(Columbus Day, Veterans Day): on such a day settlement is still due by 1 PM ET, but no wire arrives, so the
partner settles from RF, which must be funded the banking day before (docs/broker-api.md "Banking days").
Alpaca serves the banking calendar as ``GET /v2/calendar/BMO``; :class:`BankingCalendar` holds the days it
listed, and answers from the Federal Reserve's holidays for any day outside them (the local fallback).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cached_property

import holidays

from funding.calendar import at_et, first_day, to_et

WIRE_WINDOW = (time(8, 0), time(8, 30))
"""Incoming Fed wires are booked between 08:00 and 08:30 ET of a banking day (Alpaca's "Daily Processes")."""


@dataclass(frozen=True)
class BankingCalendar:
    """Banking days: Alpaca's list where it has one (``listed`` from ``first`` to ``last``), else weekdays
    that are not Federal Reserve holidays."""

    listed: frozenset[date] = frozenset()
    first: date | None = None
    last: date | None = None
    source: str = "local"
    """Where the days come from: ``alpaca`` (``GET /v2/calendar/BMO``) or ``local`` (the Fed's holidays)."""

    @classmethod
    def from_days(cls, days: Iterable[date], first: date, last: date) -> BankingCalendar:
        """The calendar Alpaca answered: ``days`` are the banking days from ``first`` to ``last``."""
        return cls(frozenset(days), first, last, "alpaca")

    @cached_property
    def _fed(self) -> holidays.HolidayBase:
        return holidays.financial_holidays("XFED")

    def _listed_covers(self, day: date) -> bool:
        return self.first is not None and self.last is not None and self.first <= day <= self.last

    def is_banking_day(self, day: date) -> bool:
        if self._listed_covers(day):
            return day in self.listed
        return day.weekday() < 5 and day not in self._fed

    def holiday_name(self, day: date) -> str | None:
        """Why banks are closed on a weekday (the Fed's name for it), or None when they are open."""
        if day.weekday() >= 5 or self.is_banking_day(day):
            return None
        name = self._fed.get(day)
        return str(name) if name else "bank holiday"

    def next_banking_day(self, day: date) -> date:
        """The first banking day strictly after ``day``."""
        return first_day(day, 1, self.is_banking_day)

    def previous_banking_day(self, day: date) -> date:
        """The last banking day strictly before ``day``."""
        return first_day(day, -1, self.is_banking_day)

    def wire_booked_at(self, sent_at: datetime) -> datetime:
        """The earliest instant a wire sent at ``sent_at`` can be booked: inside the 08:00–08:30 ET window of a
        banking day, this one's if it is not over yet."""
        local = to_et(sent_at)
        day = local.date()
        opens, closes = WIRE_WINDOW
        if self.is_banking_day(day) and local.time() < closes:
            return max(local, at_et(day, opens))
        return at_et(self.next_banking_day(day), opens)
