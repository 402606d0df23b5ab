"""The sandbox clock: frozen, set, advanced, or running at a speed factor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class ClockState:
    now: datetime
    frozen: bool
    speed: float


class SandboxClock:
    """Sandbox time = an anchor plus real elapsed time × speed, unless frozen.

    ``real`` is the monotonic source of real seconds (injectable so tests never sleep).
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        frozen: bool = False,
        speed: float = 1.0,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        self._real = real
        self._anchor = start or datetime.now(UTC)
        self._real_anchor = real()
        self._frozen = frozen
        self._speed = speed

    def now(self) -> datetime:
        if self._frozen:
            return self._anchor
        return self._anchor + timedelta(seconds=(self._real() - self._real_anchor) * self._speed)

    def state(self) -> ClockState:
        return ClockState(self.now(), self._frozen, self._speed)

    def _rebase(self, moment: datetime) -> None:
        self._anchor = moment
        self._real_anchor = self._real()

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (timezone-aware)."""
        if moment.tzinfo is None:
            raise ValueError("clock time must carry a timezone offset")
        self._rebase(moment.astimezone(UTC))

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` of sandbox time."""
        if seconds < 0:
            raise ValueError("advance_seconds must not be negative")
        self._rebase(self.now() + timedelta(seconds=seconds))

    def freeze(self, frozen: bool = True) -> None:
        self._rebase(self.now())
        self._frozen = frozen

    def set_speed(self, speed: float) -> None:
        """Run (unfrozen) at ``speed`` sandbox seconds per real second."""
        if not speed > 0:
            raise ValueError("speed must be positive")
        self._rebase(self.now())
        self._speed = speed
        self._frozen = False
