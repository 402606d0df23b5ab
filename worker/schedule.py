"""The business day's phases, enqueued once each at their US/Eastern times, with start-up catch-up.

A phase that was missed while nothing ran is still enqueued if it still makes sense: a settle phase
until 8 PM ET on the deadline (after 1 PM it only limits interest, and the job says so), the sweep
until the margin-call time of the next trading day. Each phase has a deterministic job id
(``phase-<name>-<date>``) and a once-only marker, so restarts and standbys never enqueue it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date, datetime, time

import redis
import structlog

from config.settings import Settings
from funding import keys
from funding.calendar import CYCLE_CUTOFF, TradingCalendar, at_et, to_et
from jobs.queues import enqueue_phase

log = structlog.get_logger(__name__)

MARGIN_CALL_TIME = time(9, 0)
"""A debit not covered by then is a margin call (T+2); the sweep is pointless afterwards."""
MARKER_SECONDS = 8 * 86400


def phase_times(settings: Settings) -> dict[str, time]:
    return {
        name: time.fromisoformat(value)
        for name, value in (
            ("settle", settings.phase_settle),
            ("settle_retry", settings.phase_settle_retry),
            ("late_check", settings.phase_late_check),
            ("final_check", settings.phase_final_check),
            ("sweep", settings.phase_sweep),
        )
    }


def due_phases(now: datetime, settings: Settings, calendar: TradingCalendar) -> list[tuple[str, date]]:
    """(phase, business day) pairs whose time has come and that still make sense at ``now``."""
    local = to_et(now)
    today = local.date()
    times = phase_times(settings)
    due: list[tuple[str, date]] = []
    if calendar.is_trading_day(today):
        for name, at in times.items():
            if local < at_et(today, at):
                continue
            if name != "sweep" and local >= at_et(today, CYCLE_CUTOFF):
                continue  # the transfers are canceled: nothing left to settle for today
            due.append((name, today))
    previous = calendar.previous_trading_day(today)
    next_call = at_et(calendar.next_trading_day(previous), MARGIN_CALL_TIME)
    if at_et(previous, times["sweep"]) <= local < next_call:
        due.append(("sweep", previous))
    return due


class Scheduler:
    def __init__(
        self, settings: Settings, rq_connection: redis.Redis, now: Callable[[], datetime], calendar: TradingCalendar
    ) -> None:
        self.settings = settings
        self.rq = rq_connection
        self.now = now
        self.calendar = calendar

    async def tick(self) -> list[str]:
        """Enqueue every due phase not enqueued before; returns the job ids enqueued now."""
        enqueued = []
        for phase, day in due_phases(self.now(), self.settings, self.calendar):
            job_id = f"phase-{phase.replace('_', '-')}-{day}"
            if await asyncio.to_thread(self.rq.exists, keys.action(job_id)):
                continue
            if await asyncio.to_thread(enqueue_phase, self.rq, phase, day.isoformat()):
                enqueued.append(job_id)
                log.info("phase_enqueued", phase=phase, day=day.isoformat(), job_id=job_id)
            # marked only once RQ has the job (the unique job id covers a crash in between): a failed
            # enqueue is retried by the next tick instead of being lost behind its marker
            await asyncio.to_thread(self.rq.set, keys.action(job_id), "1", ex=MARKER_SECONDS)
        return enqueued

    async def run(self, halt: asyncio.Event, every: float = 1.0) -> None:
        """Tick now (start-up catch-up) and then every ``every`` seconds until ``halt``."""
        while not halt.is_set():
            try:
                await self.tick()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("schedule_tick_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=every)
