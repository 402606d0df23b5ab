"""The one seam for "now": the wall clock against the live Broker API, the sandbox clock against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where business logic gets the current instant (timezone-aware, UTC or ET)."""

    def now(self) -> datetime: ...


class WallClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it was last told: the sandbox clock as last read, or a test's instant."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment

    def now(self) -> datetime:
        return self._moment

    def set(self, moment: datetime) -> None:
        self._moment = moment
