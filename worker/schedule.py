"""The business day's phases, enqueued once each at their US/Eastern times, with start-up catch-up.

A phase that was missed while nothing ran is still enqueued if it still makes sense: a settle phase
until 8 PM ET on the deadline (after 1 PM it only limits interest, and the job says so), the sweep
until the margin-call time of the next trading day, the report phases (IF reports 20:10, JIT reports
23:35) until 12:00 ET of the next trading day, the steps of the alert ladder (09:30 digest to 20:00
cancellations, :mod:`jobs.ladder`) as :data:`LADDER_CATCH_UP` says. Each phase has a deterministic job id
(``phase-<name>-<date>``) and a once-only marker, so restarts and standbys never enqueue it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time as time_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import redis
import structlog
from rq.job import Job, JobStatus

from config.settings import Settings
from funding.alerts import Alert, Severity
from funding.calendar import CYCLE_CUTOFF, SETTLEMENT_CUTOFF, TradingCalendar, at_et, to_et
from funding.outcomes import RETRIED_BY_THE_GUARD, SettleOutcome
from jobs.registry import (
    DELIVER_JOB,
    PHASE_JOBS,
    enqueue_alert_deliveries,
    enqueue_once,
    enqueue_phase,
    failed_job_ids,
    job_function,
)
from jobs.reports import useful_until
from store import keys
from store.alert_state import move_sync
from store.codec import text, text_map, texts

log = structlog.get_logger(__name__)

MARGIN_CALL_TIME = time(9, 0)
"""A debit not covered by then is a margin call (T+2); the sweep is pointless afterwards."""
MARKER_SECONDS = 8 * 86400
FORECAST_UNTIL = time(18, 0)
LADDER_CATCH_UP = {
    "ladder_digest": time(12, 0),
    "ladder_warning": SETTLEMENT_CUTOFF,
    "ladder_page": CYCLE_CUTOFF,
    "ladder_late": CYCLE_CUTOFF,
    "ladder_forecast": FORECAST_UNTIL,
    "ladder_statement": time(23, 59),
}
"""Until when (ET, on the deadline) a missed step of the alert ladder still makes sense: the digest until
noon (the settle phase and the warning say the rest), the warning until the 1 PM cutoff, the page and the
late notice until the 8 PM cancellation, the forecast until 18:00 (a wire sent later in the day is not
credited sooner). The cancellations step stays due until the margin call (09:00 ET)
of the next trading day, like the sweep."""
LADDER_MIN_WINDOW = timedelta(minutes=5)
"""A step configured at or after its catch-up end is still due this long after its time."""


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


def due_report_phases(now: datetime, settings: Settings, calendar: TradingCalendar) -> list[tuple[str, date]]:
    """(report phase, system date) pairs due at ``now``: from their time on a trading day until
    12:00 ET of the next trading day (:func:`jobs.reports.useful_until`), so weekends and holidays carry
    the last trading day's reports over."""
    local = to_et(now)
    times = {
        "if_reports": time.fromisoformat(settings.phase_if_reports),
        "jit_reports": time.fromisoformat(settings.phase_jit_reports),
    }
    latest = local.date() if calendar.is_trading_day(local.date()) else calendar.previous_trading_day(local.date())
    due: list[tuple[str, date]] = []
    for day in (calendar.previous_trading_day(latest), latest):
        for name, at in times.items():
            if at_et(day, at) <= local < useful_until(day, calendar):
                due.append((name, day))
    return due


def ladder_times(settings: Settings) -> dict[str, time]:
    return {
        name: time.fromisoformat(value)
        for name, value in (
            ("ladder_digest", settings.ladder_digest),
            ("ladder_warning", settings.ladder_warning),
            ("ladder_page", settings.ladder_page),
            ("ladder_late", settings.ladder_late),
            ("ladder_forecast", settings.ladder_forecast),
            ("ladder_statement", settings.ladder_statement),
            ("ladder_cancellations", settings.ladder_cancellations),
        )
    }


def due_ladder_steps(now: datetime, settings: Settings, calendar: TradingCalendar) -> list[tuple[str, date]]:
    """(ladder phase, deadline) pairs due at ``now``: each trading day is a deadline, each step is due from
    its time until :data:`LADDER_CATCH_UP` says it no longer makes sense."""
    local = to_et(now)
    today = local.date()
    times = ladder_times(settings)
    due: list[tuple[str, date]] = []
    if calendar.is_trading_day(today):
        for name, until in LADDER_CATCH_UP.items():
            start = at_et(today, times[name])
            if start <= local < max(at_et(today, until), start + LADDER_MIN_WINDOW):
                due.append((name, today))
        if local >= at_et(today, times["ladder_cancellations"]):
            due.append(("ladder_cancellations", today))
    previous = calendar.previous_trading_day(today)
    margin_call = at_et(calendar.next_trading_day(previous), MARGIN_CALL_TIME)
    if at_et(previous, times["ladder_cancellations"]) <= local < margin_call:
        due.append(("ladder_cancellations", previous))
    return due


GUARD_RETRY_SECONDS = 60.0
"""A settle run that ended waiting (a journal or settlement in progress), superseded or on an error is run
again by the guard this long (wall clock) after it ended, not in a loop."""
PENDING_JOB_STATES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
"""An RQ job in one of these states will run once a worker takes it: no other run is needed meanwhile."""


@dataclass(frozen=True)
class LastRun:
    """What ``sk:settle_run:<deadline>`` says of the deadline's last settle run."""

    started_at: datetime | None
    ended_unix: float | None
    """None while the run is alive, or when it died without ending."""
    outcome: str

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> LastRun | None:
        if not raw.get("started_at"):
            return None
        ended = raw.get("ended_unix") or ""
        return cls(
            datetime.fromisoformat(raw["started_at"]),
            float(ended) if ended else None,
            raw.get("outcome", ""),
        )


def guard_reason(
    now: datetime,
    wall: float,
    settings: Settings,
    calendar: TradingCalendar,
    *,
    unsettled: int,
    alive: bool,
    kill_switch: bool,
    last: LastRun | None,
    waiting: bool,
) -> str | None:
    """Why a settle run of today's deadline must start now, or None.

    From the first settle phase until the 8 PM ET cancellation, while transfers due today are unsettled,
    no run is alive (its heartbeat lock is gone), the kill switch is off and no settle job already waits
    for a worker (``waiting``): ``died`` (the last run started and never ended), ``no_run`` (none started
    since the first phase), ``kill_switch_cleared`` (the last run was stopped by the switch), or the last
    run's outcome when it may succeed if run again (``RETRIED_BY_THE_GUARD``, after
    :data:`GUARD_RETRY_SECONDS`). A run that ended otherwise (done, RF short, refused, dry-run, failed and
    paged) is not repeated: the 12:30, 13:05 and 19:00 phases and the listener's re-plans do that.
    """
    local = to_et(now)
    today = local.date()
    if not calendar.is_trading_day(today):
        return None
    first = at_et(today, time.fromisoformat(settings.phase_settle))
    if not first <= local < at_et(today, CYCLE_CUTOFF):
        return None
    if not unsettled or alive or kill_switch or waiting:
        return None
    if last is None or last.started_at is None or last.started_at < first:
        return "no_run"
    if last.ended_unix is None:
        return "died"
    if last.outcome == SettleOutcome.KILLED:
        return "kill_switch_cleared"
    if last.outcome in RETRIED_BY_THE_GUARD and wall - last.ended_unix >= GUARD_RETRY_SECONDS:
        return last.outcome
    return None


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
        now = self.now()
        due = [
            *due_phases(now, self.settings, self.calendar),
            *due_report_phases(now, self.settings, self.calendar),
            *due_ladder_steps(now, self.settings, self.calendar),
        ]
        for phase, day in due:
            job_id = f"phase-{phase.replace('_', '-')}-{day}"
            if await asyncio.to_thread(self.rq.exists, keys.action(job_id)):
                continue
            if await asyncio.to_thread(enqueue_phase, self.rq, phase, day.isoformat()):
                enqueued.append(job_id)
                log.info("phase_enqueued", phase=phase, day=day.isoformat(), job_id=job_id)
            # marked only once RQ has the job (the unique job id covers a crash in between): a failed
            # enqueue is retried by the next tick instead of being lost behind its marker
            await asyncio.to_thread(self.rq.set, keys.action(job_id), "1", ex=MARKER_SECONDS)
        if (guard := await asyncio.to_thread(self.guard_settlement, now)) is not None:
            enqueued.append(guard)
        await asyncio.to_thread(self.page_failed_jobs)
        await self.flush_alerts()
        return enqueued

    def guard_settlement(self, now: datetime) -> str | None:
        """Start a settle run of today's deadline when :func:`guard_reason` says one must; returns its job id.

        Whichever process died (the worker, its job, the listener that enqueued a phase, Redis losing the
        queue), the deadline's transfers are looked after again within a heartbeat TTL plus a tick."""
        today = to_et(now).date()
        if not self.calendar.is_trading_day(today) or to_et(now).time() < time.fromisoformat(
            self.settings.phase_settle
        ):
            return None  # outside the window: no Redis reads on most ticks of the day
        with self.rq.pipeline(transaction=False) as pipe:
            pipe.scard(keys.due(today))
            pipe.exists(keys.plan_lock(today))
            pipe.exists(keys.KILL_SWITCH)
            pipe.hgetall(keys.settle_run(today))
            pipe.get(keys.settle_guard(today))
            unsettled, alive, kill, run, guard_job = pipe.execute()
        waiting = any(
            _job_pending(self.rq, job_id) for job_id in (f"phase-settle-{today}", text(guard_job) if guard_job else "")
        )
        last = LastRun.from_hash(text_map(run))
        reason = guard_reason(
            now,
            time_module.time(),
            self.settings,
            self.calendar,
            unsettled=int(unsettled),
            alive=bool(alive),
            kill_switch=bool(kill),
            last=last,
            waiting=waiting,
        )
        if reason is None:
            return None
        job_id = f"settle-guard-{today}-{self.rq.incr(keys.settle_guard_seq(today))}"
        self.rq.expire(keys.settle_guard_seq(today), MARKER_SECONDS)
        func, queue_name = PHASE_JOBS["settle"]  # the settle phase's job, run as phase "guard"
        if enqueue_once(self.rq, queue_name, func, {"phase": "guard", "deadline": today.isoformat()}, job_id):
            self.rq.set(keys.settle_guard(today), job_id, ex=MARKER_SECONDS)
            log.warning("settle_guard_started", reason=reason, deadline=today.isoformat(), job_id=job_id)
            return job_id
        return None

    def page_failed_jobs(self) -> None:
        """A job that failed for good (retries exhausted, in RQ's failed registry) pages once per job id;
        the alert resolves when the job leaves the registry (requeued or deleted by an operator)."""
        failed = failed_job_ids(self.rq)
        paged = texts(self.rq.smembers(keys.FAILED_JOBS_PAGED))
        for job_id in failed - paged:  # each tick fetches only jobs it has not seen fail before
            func = job_function(self.rq, job_id)
            if func == DELIVER_JOB:  # a page about a page that cannot be sent would only loop
                continue
            alert = Alert(
                "job_failed",
                Severity.CRITICAL,
                f"job-failed-{job_id}",
                f"job {job_id} ({func}) failed",
                {"job_id": job_id, "function": func},
            )
            move_sync(self.rq, alert, "trigger")
        for job_id in paged - failed:
            move_sync(
                self.rq,
                Alert("job_failed", Severity.INFO, f"job-failed-{job_id}", "job no longer failed"),
                "resolve",
            )
            self.rq.srem(keys.FAILED_JOBS_PAGED, job_id)
        if failed:
            self.rq.sadd(keys.FAILED_JOBS_PAGED, *failed)

    async def flush_alerts(self) -> int:
        """Hand alert state changes still in ``sk:alert_outbox`` to the alert queue: heals a crash between a
        state change and its enqueue, and delivers what the listener itself raised (unique job ids)."""
        count = await asyncio.to_thread(enqueue_alert_deliveries, self.rq)
        if count:
            log.info("alert_deliveries_enqueued", count=count)
        return count

    async def run(self, halt: asyncio.Event, every: float = 1.0) -> None:
        """Tick now (start-up catch-up) and then every ``every`` seconds until ``halt``."""
        while not halt.is_set():
            try:
                await self.tick()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("schedule_tick_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=every)


def _job_pending(connection: redis.Redis, job_id: str) -> bool:
    """True when the RQ job ``job_id`` exists and waits to run (queued, scheduled for a retry, deferred)."""
    if not job_id:
        return False
    status = connection.hget(Job.key_for(job_id), "status")
    return status is not None and text(status) in PENDING_JOB_STATES
