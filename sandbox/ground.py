"""What the sandbox's desks (journals, JIT) are given to work with: the books, the event emitter, the seed,
the calendar, the time, and the one engine rule they trigger. The engine provides it; the desks never import
the engine (so neither knows the other's insides, and there is no import circle)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from funding.calendar import TradingCalendar
from sandbox.books import Books
from sandbox.emitter import Emitter
from sandbox.state import SeedConfig


class Ground(Protocol):
    seed: SeedConfig
    books: Books
    emit: Emitter
    calendar: TradingCalendar
    now: datetime
    """The sandbox time the current rule or request acts at."""

    @property
    def system_date(self) -> date:
        """The system date of the open settlement cycle."""
        ...

    def settle_date(self) -> date:
        """The date money booked now settles."""
        ...

    def retry_awaiting(self) -> None:
        """Funds arrived: settlements waiting for additional funds are processed again."""
        ...
