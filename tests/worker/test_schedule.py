"""The business day's phases: due at their ET times, enqueued once each, caught up at start-up (worker/schedule.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from config.settings import Settings, load_settings
from funding.calendar import TradingCalendar, at_et
from funding.errors import ConfigError
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, enqueue_phase, queue
from store import keys
from tests.support.jobs import JOB_ENV, ThreadWorker
from tests.support.listener import eventually
from tests.support.sandbox import SandboxFactory
from worker import schedule
from worker.schedule import Scheduler, due_phases

DEADLINE = date(2026, 11, 24)
"""Tuesday of Thanksgiving week; the next trading day is Wednesday 11-25, then Friday 11-27."""
NEXT_DAY = date(2026, 11, 25)
CALENDAR = TradingCalendar()
SETTINGS = load_settings({})


def et(day: date, hour: int, minute: int = 0) -> datetime:
    return at_et(day, time(hour, minute))


def due(now: datetime, settings: Settings = SETTINGS) -> list[tuple[str, date]]:
    return due_phases(now, settings, CALENDAR)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (et(DEADLINE, 11, 59), []),
        (et(DEADLINE, 12, 0), [("settle", DEADLINE)]),
        (et(DEADLINE, 12, 29), [("settle", DEADLINE)]),
        (et(DEADLINE, 12, 30), [("settle", DEADLINE), ("settle_retry", DEADLINE)]),
        (et(DEADLINE, 13, 5), [("settle", DEADLINE), ("settle_retry", DEADLINE), ("late_check", DEADLINE)]),
        (et(DEADLINE, 18, 59), [("settle", DEADLINE), ("settle_retry", DEADLINE), ("late_check", DEADLINE)]),
        (
            et(DEADLINE, 19, 59),
            [("settle", DEADLINE), ("settle_retry", DEADLINE), ("late_check", DEADLINE), ("final_check", DEADLINE)],
        ),
        (et(DEADLINE, 20, 0), []),
        (et(DEADLINE, 20, 5), [("sweep", DEADLINE)]),
        (et(DEADLINE, 23, 59), [("sweep", DEADLINE)]),
        (et(NEXT_DAY, 0, 0), [("sweep", DEADLINE)]),
        (et(NEXT_DAY, 8, 59), [("sweep", DEADLINE)]),
        (et(NEXT_DAY, 9, 0), []),
    ],
    ids=lambda v: v.strftime("%a-%H%M") if isinstance(v, datetime) else None,
)
def test_phases_due_through_a_trading_day(now: datetime, expected: list[tuple[str, date]]) -> None:
    """Settle phases from their times until 8 PM, the sweep from 20:05 until 09:00 of the next trading day."""
    assert due(now) == expected


@pytest.mark.parametrize("hour", [0, 8, 12, 13, 20, 23])
def test_thanksgiving_has_no_phases_of_its_own(hour: int) -> None:
    """On Thanksgiving (2026-11-26) no phase is due for that date; only Wednesday's sweep is still catching up."""
    thanksgiving = date(2026, 11, 26)
    assert CALENDAR.holiday_name(thanksgiving) is not None
    assert due(et(thanksgiving, hour, 30)) == [("sweep", NEXT_DAY)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (et(date(2026, 11, 21), 12, 0), [("sweep", date(2026, 11, 20))]),
        (et(date(2026, 11, 22), 20, 5), [("sweep", date(2026, 11, 20))]),
        (et(date(2026, 11, 23), 8, 59), [("sweep", date(2026, 11, 20))]),
        (et(date(2026, 11, 23), 9, 0), []),
    ],
    ids=["saturday-noon", "sunday-2005", "monday-0859", "monday-0900"],
)
def test_fridays_sweep_is_due_over_the_weekend_until_monday_0900(
    now: datetime, expected: list[tuple[str, date]]
) -> None:
    """A weekend has no phases; Friday's sweep stays due until Monday's margin-call time."""
    assert due(now) == expected


def test_phase_times_are_configurable() -> None:
    """SETTLEKEEPER_PHASE_* move the phases; the defaults then no longer apply."""
    settings = load_settings(
        {
            "SETTLEKEEPER_PHASE_SETTLE": "10:15",
            "SETTLEKEEPER_PHASE_SETTLE_RETRY": "11:00",
            "SETTLEKEEPER_PHASE_LATE_CHECK": "13:30",
            "SETTLEKEEPER_PHASE_SWEEP": "20:30",
        }
    )
    assert due(et(DEADLINE, 10, 14), settings) == []
    assert due(et(DEADLINE, 10, 15), settings) == [("settle", DEADLINE)]
    assert due(et(DEADLINE, 13, 5), settings) == [("settle", DEADLINE), ("settle_retry", DEADLINE)]
    assert [name for name, _ in due(et(DEADLINE, 13, 30), settings)] == ["settle", "settle_retry", "late_check"]
    assert due(et(DEADLINE, 20, 29), settings) == []
    assert due(et(DEADLINE, 20, 30), settings) == [("sweep", DEADLINE)]


def test_a_bad_phase_time_fails_at_start_up_naming_the_variable() -> None:
    """A phase time that is not HH:MM stops start-up with the variable's name."""
    with pytest.raises(ConfigError, match="SETTLEKEEPER_PHASE_SETTLE"):
        load_settings({"SETTLEKEEPER_PHASE_SETTLE": "25:00"})


@pytest.mark.parametrize(
    ("day", "utc_offset_hours"),
    [(date(2026, 7, 15), 4), (date(2026, 12, 15), 5)],
    ids=["summer-EDT", "winter-EST"],
)
def test_phase_times_are_et_wall_clock_in_both_seasons(day: date, utc_offset_hours: int) -> None:
    """12:00 ET is 16:00 UTC in July and 17:00 UTC in December: the settle phase follows the wall clock."""
    noon_utc = datetime(day.year, day.month, day.day, 12 + utc_offset_hours, tzinfo=UTC)
    assert due(noon_utc) == [("settle", day)]
    assert due(noon_utc - timedelta(minutes=1)) == []


def test_sweep_window_crosses_the_spring_dst_change() -> None:
    """Friday's sweep (EST) is due until 09:00 EDT Monday, 13:00 UTC, not 14:00 UTC."""
    friday, monday = date(2026, 3, 6), date(2026, 3, 9)  # clocks go forward on Sunday 2026-03-08
    assert due(datetime(2026, 3, 9, 12, 59, tzinfo=UTC)) == [("sweep", friday)]
    assert due(datetime(2026, 3, 9, 13, 0, tzinfo=UTC)) == []
    assert due(datetime(2026, 3, 7, 1, 5, tzinfo=UTC)) == [("sweep", friday)]  # 20:05 EST on Friday
    assert due(datetime(2026, 3, 7, 1, 4, tzinfo=UTC)) == []
    assert CALENDAR.next_trading_day(friday) == monday


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def job_ids(connection: redis.Redis, name: str) -> list[str]:
    return list(queue(name, connection).job_ids)


async def test_tick_enqueues_each_phase_once(redis_client: redis.Redis) -> None:
    """Each due phase is enqueued as phase-<name>-<date>; a second tick and a restarted scheduler add nothing."""
    scheduler = Scheduler(SETTINGS, redis_client, fixed(et(DEADLINE, 13, 5)), CALENDAR)
    expected = [f"phase-{name}-{DEADLINE}" for name in ("settle", "settle-retry", "late-check")]
    ladder = [f"phase-ladder-{step}-{DEADLINE}" for step in ("page", "late")]
    assert await scheduler.tick() == expected + ladder
    assert await scheduler.tick() == []
    restarted = Scheduler(SETTINGS, redis_client, fixed(et(DEADLINE, 13, 6)), CALENDAR)
    assert await restarted.tick() == []
    assert job_ids(redis_client, SETTLE_QUEUE) == expected
    job = Job.fetch(expected[1], connection=redis_client, serializer=JSONSerializer)
    assert (job.func_name, job.kwargs) == ("jobs.settle.run_phase", {"phase": "settle_retry", "deadline": "2026-11-24"})


async def test_lost_markers_still_never_enqueue_twice(redis_client: redis.Redis) -> None:
    """Without the once-only markers (expired, flushed), the unique job id still refuses a second copy."""
    scheduler = Scheduler(SETTINGS, redis_client, fixed(et(DEADLINE, 20, 5)), CALENDAR)
    assert await scheduler.tick() == [f"phase-sweep-{DEADLINE}", f"phase-ladder-cancellations-{DEADLINE}"]
    assert redis_client.exists(keys.action(f"phase-sweep-{DEADLINE}"))
    redis_client.delete(keys.action(f"phase-sweep-{DEADLINE}"))
    assert await scheduler.tick() == []
    assert job_ids(redis_client, COVER_QUEUE) == [f"phase-sweep-{DEADLINE}"]


async def test_one_scheduler_through_the_day_enqueues_each_phase_once(redis_client: redis.Redis) -> None:
    """Across the day the same scheduler enqueues each phase and ladder step in its turn, each exactly once."""
    now = [et(DEADLINE, 12, 0)]
    scheduler = Scheduler(SETTINGS, redis_client, lambda: now[0], CALENDAR)
    enqueued: list[str] = []
    for moment in (et(DEADLINE, 12, 0), et(DEADLINE, 12, 30), et(DEADLINE, 13, 5), et(DEADLINE, 20, 5)):
        now[0] = moment
        enqueued += await scheduler.tick()
        enqueued += await scheduler.tick()
    now[0] = et(NEXT_DAY, 8, 0)
    enqueued += await scheduler.tick()
    assert enqueued == [
        f"phase-{n}-{DEADLINE}"
        for n in (
            *("settle", "ladder-warning", "settle-retry", "ladder-page", "late-check", "ladder-late"),
            *("sweep", "ladder-cancellations", "if-reports", "jit-reports"),
        )
    ]


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (time(12, 40), ["settle", "settle-retry"]),
        (time(13, 30), ["settle", "settle-retry", "late-check"]),
    ],
    ids=["12:40", "13:30"],
)
async def test_scheduler_catches_up_at_start_up(redis_client: redis.Redis, start: time, expected: list[str]) -> None:
    """A scheduler started late enqueues at once every phase of today that is still worth running."""
    halt = asyncio.Event()
    scheduler = Scheduler(SETTINGS, redis_client, fixed(at_et(DEADLINE, start)), CALENDAR)
    task = asyncio.create_task(scheduler.run(halt, every=0.05))

    async def caught_up() -> bool:
        return len(job_ids(redis_client, SETTLE_QUEUE)) >= len(expected)

    await eventually(caught_up, within=5)
    halt.set()
    await asyncio.wait_for(task, 5)
    assert job_ids(redis_client, SETTLE_QUEUE) == [f"phase-{name}-{DEADLINE}" for name in expected]


async def test_late_start_runs_settle_late(
    make_sandbox: SandboxFactory,
    redis_client: redis.Redis,
    session_redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started at 13:30 on a deadline with transfers: the caught-up settle job settles and reports late=True."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    transfers = [await sandbox.create_transfer(f"810000000{n}", "100.00") for n in (1, 2)]
    await sandbox.advance(1)
    deadline = date.fromisoformat(transfers[0]["deadline"])
    await sandbox.set_clock(at_et(deadline, time(13, 30)))
    monkeypatch.setenv("SETTLEKEEPER_BROKER_URL", sandbox.base_url)
    monkeypatch.setenv("SETTLEKEEPER_REDIS_URL", session_redis_url)
    for name, value in JOB_ENV.items():
        monkeypatch.setenv(name, value)
    scheduler = Scheduler(SETTINGS, redis_client, fixed(at_et(deadline, time(13, 30))), CALENDAR)
    assert len(await scheduler.tick()) == 5  # the three settle phases, the 12:30 page and the 13:00 late notice
    connection = redis.Redis.from_url(session_redis_url)
    try:
        worker = ThreadWorker([queue(SETTLE_QUEUE, connection)], connection=connection, serializer=JSONSerializer)
        assert await asyncio.to_thread(worker.work, burst=True, logging_level="WARNING")
    finally:
        connection.close()
    report = Job.fetch(f"phase-settle-{deadline}", connection=redis_client, serializer=JSONSerializer).return_value()
    assert (report["phase"], report["late"], report["outcome"]) == ("settle", True, "done")
    for transfer in transfers:
        assert (await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}"))["status"] == "COMPLETED"


async def test_a_failed_enqueue_is_retried_on_the_next_tick(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis failing during the enqueue does not lose the phase: the next tick enqueues it."""
    calls: list[str] = []

    def flaky(connection: redis.Redis, phase: str, day: str) -> bool:
        calls.append(phase)
        if len(calls) == 1:
            raise redis.ConnectionError("connection reset by peer")
        return enqueue_phase(connection, phase, day)

    monkeypatch.setattr(schedule, "enqueue_phase", flaky)
    scheduler = Scheduler(SETTINGS, redis_client, fixed(et(DEADLINE, 12, 0)), CALENDAR)
    with pytest.raises(redis.ConnectionError):
        await scheduler.tick()
    assert await scheduler.tick() == [f"phase-settle-{DEADLINE}", f"phase-ladder-warning-{DEADLINE}"]
    assert await scheduler.tick() == []
    assert job_ids(redis_client, SETTLE_QUEUE) == [f"phase-settle-{DEADLINE}"]


THANKSGIVING = date(2026, 11, 26)
FRIDAY = date(2026, 11, 27)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (et(DEADLINE, 20, 9), []),
        (et(DEADLINE, 20, 10), [("if_reports", DEADLINE)]),
        (et(DEADLINE, 23, 34), [("if_reports", DEADLINE)]),
        (et(DEADLINE, 23, 35), [("if_reports", DEADLINE), ("jit_reports", DEADLINE)]),
        (et(NEXT_DAY, 11, 59), [("if_reports", DEADLINE), ("jit_reports", DEADLINE)]),
        (et(NEXT_DAY, 12, 0), []),
        (et(NEXT_DAY, 23, 40), [("if_reports", NEXT_DAY), ("jit_reports", NEXT_DAY)]),
        (et(THANKSGIVING, 12, 0), [("if_reports", NEXT_DAY), ("jit_reports", NEXT_DAY)]),
        (et(FRIDAY, 11, 59), [("if_reports", NEXT_DAY), ("jit_reports", NEXT_DAY)]),
        (et(FRIDAY, 12, 0), []),
        (et(date(2026, 11, 21), 9, 0), [("if_reports", date(2026, 11, 20)), ("jit_reports", date(2026, 11, 20))]),
        (et(date(2026, 11, 23), 12, 0), []),
    ],
    ids=lambda v: v.strftime("%a-%d-%H%M") if isinstance(v, datetime) else None,
)
def test_report_phases_are_due_until_noon_of_the_next_trading_day(
    now: datetime, expected: list[tuple[str, date]]
) -> None:
    """IF reports from 20:10, JIT reports from 23:35, each caught up until 12:00 ET of the next trading day."""
    assert schedule.due_report_phases(now, SETTINGS, CALENDAR) == expected


def test_report_phase_times_are_configurable() -> None:
    """SETTLEKEEPER_PHASE_IF_REPORTS and _JIT_REPORTS move the report phases."""
    settings = load_settings({"SETTLEKEEPER_PHASE_IF_REPORTS": "21:00", "SETTLEKEEPER_PHASE_JIT_REPORTS": "23:50"})
    assert schedule.due_report_phases(et(DEADLINE, 20, 59), settings, CALENDAR) == []
    assert schedule.due_report_phases(et(DEADLINE, 23, 49), settings, CALENDAR) == [("if_reports", DEADLINE)]
    assert [n for n, _ in schedule.due_report_phases(et(DEADLINE, 23, 50), settings, CALENDAR)] == [
        "if_reports",
        "jit_reports",
    ]


async def test_tick_enqueues_report_phases_on_the_alert_queue_with_their_system_date(
    redis_client: redis.Redis,
) -> None:
    """At 23:40 the report jobs are enqueued once each on the alert queue, called with the system date."""
    scheduler = Scheduler(SETTINGS, redis_client, fixed(et(DEADLINE, 23, 40)), CALENDAR)
    enqueued = await scheduler.tick()
    reports = [f"phase-if-reports-{DEADLINE}", f"phase-jit-reports-{DEADLINE}"]
    assert [job_id for job_id in enqueued if "reports" in job_id] == reports
    assert await scheduler.tick() == []
    assert [j for j in job_ids(redis_client, ALERT_QUEUE) if "reports" in j] == reports
    calls = [
        (job.func_name, job.kwargs)
        for job in (Job.fetch(j, connection=redis_client, serializer=JSONSerializer) for j in reports)
    ]
    assert calls == [
        ("jobs.reports.if_reports", {"system_date": DEADLINE.isoformat()}),
        ("jobs.reports.jit_reports", {"system_date": DEADLINE.isoformat()}),
    ]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (et(DEADLINE, 9, 29), []),
        (et(DEADLINE, 9, 30), ["digest"]),
        (et(DEADLINE, 11, 30), ["digest", "warning"]),
        (et(DEADLINE, 11, 59), ["digest", "warning"]),
        (et(DEADLINE, 12, 0), ["warning"]),
        (et(DEADLINE, 12, 30), ["warning", "page"]),
        (et(DEADLINE, 12, 59), ["warning", "page"]),
        (et(DEADLINE, 13, 0), ["page", "late"]),
        (et(DEADLINE, 19, 59), ["page", "late"]),
        (et(DEADLINE, 20, 0), ["cancellations"]),
        (et(DEADLINE, 23, 59), ["cancellations"]),
        (et(NEXT_DAY, 8, 59), ["cancellations"]),
        (et(NEXT_DAY, 9, 0), []),
    ],
    ids=lambda v: v.strftime("%a-%H%M") if isinstance(v, datetime) else None,
)
def test_ladder_steps_are_due_from_their_time_while_they_still_make_sense(now: datetime, expected: list[str]) -> None:
    """Digest until 12:00, warning until 13:00, page and late notice until 20:00, cancellations until 09:00 next."""
    assert schedule.due_ladder_steps(now, SETTINGS, CALENDAR) == [(f"ladder_{step}", DEADLINE) for step in expected]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (et(THANKSGIVING, 12, 30), [("ladder_cancellations", NEXT_DAY)]),
        (et(FRIDAY, 8, 59), [("ladder_cancellations", NEXT_DAY)]),
        (et(FRIDAY, 9, 30), [("ladder_digest", FRIDAY)]),
        (et(date(2026, 11, 28), 12, 0), [("ladder_cancellations", FRIDAY)]),
        (et(date(2026, 11, 30), 8, 59), [("ladder_cancellations", FRIDAY)]),
        (et(date(2026, 11, 30), 9, 0), []),
    ],
    ids=["thanksgiving", "friday-0859", "friday-0930", "saturday", "monday-0859", "monday-0900"],
)
def test_no_ladder_on_a_closed_day_and_cancellations_carry_over_to_the_margin_call(
    now: datetime, expected: list[tuple[str, date]]
) -> None:
    """Holidays and weekends have no ladder of their own; the last trading day's 20:00 step stays due until 09:00."""
    assert schedule.due_ladder_steps(now, SETTINGS, CALENDAR) == expected


def test_ladder_times_are_configurable_and_a_late_step_keeps_a_short_window() -> None:
    """SETTLEKEEPER_LADDER_* move the steps; one set after its catch-up end is still due for five minutes."""
    settings = load_settings({"SETTLEKEEPER_LADDER_PAGE": "12:45", "SETTLEKEEPER_LADDER_DIGEST": "12:10"})
    assert schedule.due_ladder_steps(et(DEADLINE, 12, 44), settings, CALENDAR) == [("ladder_warning", DEADLINE)]
    assert ("ladder_page", DEADLINE) in schedule.due_ladder_steps(et(DEADLINE, 12, 45), settings, CALENDAR)
    assert ("ladder_digest", DEADLINE) in schedule.due_ladder_steps(et(DEADLINE, 12, 14), settings, CALENDAR)
    assert ("ladder_digest", DEADLINE) not in schedule.due_ladder_steps(et(DEADLINE, 12, 15), settings, CALENDAR)
    with pytest.raises(ConfigError, match="SETTLEKEEPER_LADDER_LATE"):
        load_settings({"SETTLEKEEPER_LADDER_LATE": "1 PM"})


async def test_tick_enqueues_ladder_steps_once_on_the_alert_queue(redis_client: redis.Redis) -> None:
    """Each ladder step is enqueued once as phase-ladder-<step>-<date> on the alert queue, for jobs.ladder."""
    now = [et(DEADLINE, 9, 30)]
    scheduler = Scheduler(SETTINGS, redis_client, lambda: now[0], CALENDAR)

    async def ladder_tick() -> list[str]:
        return [job_id for job_id in await scheduler.tick() if "ladder" in job_id]

    assert await ladder_tick() == [f"phase-ladder-digest-{DEADLINE}"]
    now[0] = et(DEADLINE, 11, 45)
    assert await ladder_tick() == [f"phase-ladder-warning-{DEADLINE}"]
    assert await scheduler.tick() == []
    ladder = [f"phase-ladder-{step}-{DEADLINE}" for step in ("digest", "warning")]
    assert [job_id for job_id in job_ids(redis_client, ALERT_QUEUE) if "ladder" in job_id] == ladder
    job = Job.fetch(ladder[1], connection=redis_client, serializer=JSONSerializer)
    assert (job.func_name, job.kwargs) == (
        "jobs.ladder.run_phase",
        {"phase": "ladder_warning", "deadline": "2026-11-24"},
    )


async def test_a_job_that_failed_for_good_pages_once_and_resolves_when_requeued(
    redis_client: redis.Redis,
) -> None:
    """A settle job in RQ's failed registry raises one job_failed page; requeueing it resolves the page."""
    from rq.registry import FailedJobRegistry

    from jobs.registry import SETTLE_QUEUE, queue

    job = queue(SETTLE_QUEUE, redis_client).enqueue(
        "jobs.settle.replan", kwargs={"deadline": "2026-11-24"}, job_id="replan-2026-11-24-1"
    )
    registry = FailedJobRegistry(queue=queue(SETTLE_QUEUE, redis_client))
    registry.add(job, ttl=60, exc_string="boom")
    scheduler = Scheduler(SETTINGS, redis_client, lambda: et(DEADLINE, 10, 0), CALENDAR)
    scheduler.page_failed_jobs()
    scheduler.page_failed_jobs()  # a second tick: the same failure is not paged again
    entries = [e for _, e in redis_client.xrange(keys.ALERTS) if e[b"kind"] == b"job_failed"]
    assert [(e[b"action"], e[b"severity"]) for e in entries] == [(b"trigger", b"critical")]
    registry.requeue(job)
    scheduler.page_failed_jobs()
    entries = [e for _, e in redis_client.xrange(keys.ALERTS) if e[b"kind"] == b"job_failed"]
    assert [e[b"action"] for e in entries] == [b"trigger", b"resolve"]


NOON = et(DEADLINE, 12, 0)
WALL = 1_000_000.0


def guard(
    now: datetime = NOON,
    *,
    unsettled: int = 3,
    alive: bool = False,
    kill_switch: bool = False,
    last: schedule.LastRun | None = None,
    waiting: bool = False,
    wall: float = WALL,
) -> str | None:
    return schedule.guard_reason(
        now,
        wall,
        SETTINGS,
        CALENDAR,
        unsettled=unsettled,
        alive=alive,
        kill_switch=kill_switch,
        last=last,
        waiting=waiting,
    )


def ran(outcome: str, *, started: datetime = NOON, ended_ago: float | None = 5.0) -> schedule.LastRun:
    return schedule.LastRun(started, None if ended_ago is None else WALL - ended_ago, outcome)


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        ("before the first settle phase", {"now": et(DEADLINE, 11, 59)}, None),
        ("at 8 PM the transfers are canceled", {"now": et(DEADLINE, 20, 0)}, None),
        ("Thanksgiving: no deadline", {"now": et(date(2026, 11, 26), 12, 5)}, None),
        ("nothing unsettled", {"unsettled": 0, "last": ran("x", ended_ago=None)}, None),
        ("a run is alive", {"alive": True, "last": ran("x", ended_ago=None)}, None),
        ("the kill switch is on", {"kill_switch": True, "last": ran("x", ended_ago=None)}, None),
        ("a settle job waits for a worker", {"waiting": True}, None),
        ("no run since the phase (its job was lost)", {}, "no_run"),
        ("only a run from before the phase", {"last": ran("done", started=et(DEADLINE, 10))}, "no_run"),
        ("the last run died", {"last": ran("", ended_ago=None)}, "died"),
        ("the switch stopped the last run and is clear now", {"last": ran("killed")}, "kill_switch_cleared"),
        ("a run waiting on a journal, just ended", {"last": ran("in_progress", ended_ago=10)}, None),
        ("a run waiting on a journal, a minute ago", {"last": ran("in_progress", ended_ago=61)}, "in_progress"),
        ("a run that raised, a minute ago", {"last": ran("error", ended_ago=61)}, "error"),
        ("done: the listener's re-plans take over", {"last": ran("done", ended_ago=3600)}, None),
        ("RF short: the 12:30 retry does", {"last": ran("done", ended_ago=3600)}, None),
        ("refused by a guardrail: a person must act", {"last": ran("refused", ended_ago=3600)}, None),
        ("after 1 PM an ended run is not repeated", {"now": et(DEADLINE, 19, 30), "last": ran("done")}, None),
        (
            "after 1 PM a crash is still healed before 8 PM (died)",
            {"now": et(DEADLINE, 19, 30), "last": ran("", ended_ago=None)},
            "died",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_settle_guard_starts_a_run_exactly_when_one_is_needed(
    case: str, kwargs: dict[str, object], expected: str | None
) -> None:
    """From the first settle phase until 8 PM ET the guard starts a run when the last one died, none started,
    the kill switch that stopped it was cleared, or it may succeed now; never while one is alive or waits."""
    assert guard(**kwargs) == expected  # type: ignore[arg-type]


async def test_the_guard_enqueues_one_run_for_a_dead_one_and_none_while_it_waits(redis_client: redis.Redis) -> None:
    """A run record that started and never ended, no lock: one guard job, then none while it is queued."""
    redis_client.sadd(keys.due(DEADLINE), "a-transfer")
    redis_client.hset(keys.settle_run(DEADLINE), mapping={"job_id": "phase-settle", "started_at": NOON.isoformat()})
    scheduler = Scheduler(SETTINGS, redis_client, lambda: NOON, CALENDAR)
    first = scheduler.guard_settlement(et(DEADLINE, 12, 1))
    assert first == f"settle-guard-{DEADLINE}-1"
    job = Job.fetch(first, connection=redis_client, serializer=JSONSerializer)
    assert (job.origin, job.kwargs) == (SETTLE_QUEUE, {"phase": "guard", "deadline": DEADLINE.isoformat()})
    assert scheduler.guard_settlement(et(DEADLINE, 12, 2)) is None, "the first one still waits for a worker"
    redis_client.set(keys.plan_lock(DEADLINE), "a live run")
    job.delete()
    assert scheduler.guard_settlement(et(DEADLINE, 12, 3)) is None, "a run is alive"
    redis_client.delete(keys.plan_lock(DEADLINE))
    assert scheduler.guard_settlement(et(DEADLINE, 12, 4)) == f"settle-guard-{DEADLINE}-2"
