"""``settlekeeper demo``: the whole system on one machine, playing an accelerated trading week.

With no configuration at all it starts, in one process tree:

- Redis: ``SETTLEKEEPER_REDIS_URL`` if set (its database must be empty), else an embedded server;
- the Broker API sandbox, in this process, seeded through ``POST /sandbox/reset`` with its clock at the
  start of the chosen week and running ``--speed`` times faster than real time;
- the listener (``settlekeeper listen``) and an RQ worker (``settlekeeper work --worker-class simple``)
  as subprocesses, pointed at the sandbox and the Redis through their environment;

then plays the week of :mod:`demo.week`, printing one line per notable event
(:mod:`demo.feed`), and ends with the report of :mod:`demo.report`. Everything it
started is stopped on exit, on Ctrl-C and on SIGTERM; the children's logs stay in ``--log-dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import redis
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from rq import Worker

from config.logging import configure_logging
from config.settings import Settings
from demo.environment import child_environment
from demo.feed import Counts, DemoError, LogLines, Progress, SandboxClient, Trail, Watcher, money
from demo.report import forecast_backtest, gather, render
from demo.week import (
    DEFAULT_SPEED,
    NIGHT_FACTOR,
    RF,
    SEED,
    SI,
    THANKSGIVING_WEEK,
    Driver,
    Week,
    build_week,
    cutoff_speed,
    describe_week,
)
from funding.calendar import TradingCalendar
from funding.errors import Stop
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue
from sandbox.app import create_app
from sandbox.clock_control import SandboxClock
from store import keys
from store.clients import redis_url

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.1
"""Real seconds between looks at the sandbox, Redis and the children while the week plays."""
START_SECONDS = 30.0
"""How long the listener and the worker may take to be ready (imports on a cold machine are slow)."""
STOP_SECONDS = 12.0
"""The listener promises to exit within 10 s of SIGTERM; after this a child is killed."""
DRAIN_SECONDS = 20.0
"""At the end, how long to wait for queued jobs to finish before reporting."""
HEARTBEAT_SECONDS = 5.0
"""The sandbox's stream heartbeat and the listener's expectation of it (the read watchdog is three)."""
CHILD_SETTINGS: dict[str, object] = {
    "http_port": 0,
    "log_format": "json",
    "log_level": "INFO",
    "clock": "broker",
    "heartbeat_seconds": HEARTBEAT_SECONDS,
    "heal_interval_seconds": 5.0,
    "phase_final_check": "20:00",
    # The week's story needs one lapse: this partner runs without the 19:00 final check (a phase at 20:00
    # never runs: settle phases stop at the 8 PM cancellation), so RF's late wire cannot rescue Tuesday.
    "backoff_base_seconds": 0.1,
    "backoff_cap_seconds": 2.0,
    "healthy_reset_seconds": 10.0,
    "poll_seconds": 0.05,
    "journal_wait_seconds": 1.0,
    "settlement_wait_seconds": 4.0,
    "si_account_no": SI,
    "rf_account_no": RF,
}
"""What the demo sets for its children: a free health port, JSON logs it can read, the sandbox's clock,
and real-time waits shortened to match a clock that runs a thousand times faster (a job that waits two
real seconds for a journal has waited forty sandbox minutes)."""


@dataclass(frozen=True)
class DemoOptions:
    week_of: date = THANKSGIVING_WEEK
    """Any day of the week to play; the demo starts on its Monday."""
    speed: float = DEFAULT_SPEED
    days: int | None = None
    """How many settlement deadlines to play (1: the first day's transfers and their deadline); None: all."""
    log_dir: Path | None = None


@dataclass
class Child:
    """A settlekeeper subprocess, its merged output copied to a log file and interpreted line by line."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    reader: asyncio.Task[None] | None = field(default=None)

    async def stop(self) -> int | None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        if self.reader is not None:
            await self.reader
        return self.process.returncode


async def spawn(
    name: str, args: list[str], env: dict[str, str], log_dir: Path, on_record: Callable[[str, dict[str, Any]], None]
) -> Child:
    """``python -m cli.main <args>`` in its own process group (Ctrl-C reaches only the demo, which stops
    its children in order)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        process_group=0,
        limit=1 << 20,
    )
    child = Child(name, process, log_dir / f"{name}.log")
    child.reader = asyncio.create_task(_copy_output(child, on_record))
    return child


async def _copy_output(child: Child, on_record: Callable[[str, dict[str, Any]], None]) -> None:
    assert child.process.stdout is not None
    with child.log_path.open("ab") as sink:
        while True:
            try:
                line = await child.process.stdout.readline()
            except ValueError:  # a line over the 1 MiB limit was dropped; keep reading
                continue
            if not line:
                return
            sink.write(line)
            sink.flush()
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                on_record(child.name, record)


@contextlib.asynccontextmanager
async def serve_sandbox(settings: Settings, clock: SandboxClock) -> AsyncIterator[str]:
    """The sandbox on a free loopback port, in this process; yields its base URL."""
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class Interrupted(Stop):
    """Ctrl-C or SIGTERM before the week could start: the demo stops (exit 130), nothing failed."""


async def run_demo(settings: Settings, options: DemoOptions, out: TextIO | None = None) -> int:
    """Play the week; returns the exit code (0 played to the end, 1 failed, 2 bad week, 130 interrupted)."""
    calendar = TradingCalendar()
    monday = options.week_of - timedelta(days=options.week_of.weekday())
    try:
        week = build_week(monday, calendar, options.days)
    except DemoError as exc:
        print(f"settlekeeper demo: {exc}", file=sys.stderr)
        return 2
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="settlekeeper-demo-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    demo_log = (log_dir / "demo.log").open("a")
    configure_logging(settings, stream=demo_log)  # the terminal is for the progress lines
    try:
        clock = SandboxClock(week.start, frozen=True)
        session = Session(settings, options, week, calendar, log_dir, stop, Progress(out or sys.stdout, clock.now))
        return await session.run(clock)
    except Interrupted:
        return 130
    except DemoError as exc:
        print(f"settlekeeper demo: {exc} (logs in {log_dir})", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        configure_logging(settings, stream=sys.stderr)
        demo_log.close()


@dataclass
class Session:
    """One run of the demo: what it was asked, and what it started."""

    settings: Settings
    options: DemoOptions
    week: Week
    calendar: TradingCalendar
    log_dir: Path
    stop: asyncio.Event
    progress: Progress
    counts: Counts = field(default_factory=Counts)
    children: list[Child] = field(default_factory=list)

    async def run(self, clock: SandboxClock) -> int:
        """Redis, then the sandbox, then the children; the week; the report; everything stopped again."""
        key, secret = self.settings.sandbox_key.get_secret_value(), self.settings.sandbox_secret.get_secret_value()
        sandbox_settings = self.settings.model_copy(update={"sandbox_heartbeat_seconds": HEARTBEAT_SECONDS})
        with redis_url(self.settings) as url:
            client = aioredis.Redis.from_url(url)
            try:
                if await client.dbsize():
                    raise DemoError("the demo needs an empty Redis database; SETTLEKEEPER_REDIS_URL's is not")
                async with (
                    serve_sandbox(sandbox_settings, clock) as base_url,
                    SandboxClient(base_url, key, secret) as api,
                ):
                    await api.call(
                        "POST", "/sandbox/reset", {**SEED, "now": self.week.start.isoformat(), "freeze": True}
                    )
                    self._header(base_url, url)
                    try:
                        await self._start_children(url, base_url, key, secret)
                        return await self._play_and_report(api, client, url, clock)
                    finally:
                        await self._stop_children()
            finally:
                await client.aclose()

    async def _start_children(self, url: str, base_url: str, key: str, secret: str) -> None:
        env = child_environment(
            self.settings,
            {**CHILD_SETTINGS, "redis_url": url, "broker_url": base_url, "broker_key": key, "broker_secret": secret},
        )
        env["PYTHONUNBUFFERED"] = "1"  # their log lines reach the demo as they are written
        logs = LogLines(self.progress)
        worker = ["work", "--worker-class", "simple", "--name", "demo"]
        for name, args in (("listener", ["listen"]), ("worker", worker)):
            self.children.append(await spawn(name, args, env, self.log_dir, logs))
        for child in self.children:
            self.progress.plain(f"  {child.name:<9} pid {child.process.pid}, log {child.log_path}")
        await _ready(self.children, logs, url, self.stop)
        self.progress.plain()

    async def _stop_children(self) -> None:
        for child in reversed(self.children):  # the worker first: the listener enqueues, the worker finishes
            code = await child.stop()
            log.info("child_stopped", child=child.name, pid=child.process.pid, exit_code=code)
            if code not in (0, -signal.SIGTERM):
                print(f"settlekeeper demo: the {child.name} exited with {code}", file=sys.stderr)

    async def _play_and_report(self, api: SandboxClient, client: aioredis.Redis, url: str, clock: SandboxClock) -> int:
        driver = Driver(api, self.progress, self.counts, self.calendar)
        trail, watcher = Trail(client, self.progress, self.counts), Watcher(api, self.progress, self.counts)
        finished = await _play(self.week, self.options.speed, api, driver, trail, watcher, self.children, self.stop)
        await api.call("POST", "/sandbox/clock", {"freeze": True})
        if finished:
            await _drain(url, trail, watcher, self.stop)
        else:
            self.progress.plain("\ninterrupted: the report below is what happened so far")
        facts = await gather(api, client)
        title = f"week of {self.week.monday:%a %Y-%m-%d}"
        title += f", {self.options.days} deadline(s)" if self.options.days else ""
        backtest = forecast_backtest(facts, self.settings)
        for line in render(facts, clock.now(), title, self.counts, backtest):
            self.progress.plain(line)
        self.progress.plain(f"logs: {self.log_dir}")
        return 0 if finished else 130

    def _header(self, base_url: str, url: str) -> None:
        where = "embedded (valkey)" if self.settings.redis_url is None else "SETTLEKEEPER_REDIS_URL"
        speed = self.options.speed
        say = self.progress.plain
        say(f"settlekeeper demo: {describe_week(self.week, self.calendar)}")
        say(
            f"  clock     {speed:g}× during the day; {cutoff_speed(speed):g}× around 12:00 and 20:00 on a deadline; "
            f"{speed * NIGHT_FACTOR:g}× at night and on holidays"
        )
        say(f"  redis     {where} at {url.split('@')[-1].split('://')[-1]}")
        say(f"  sandbox   {base_url} ({SEED['customers']} customers, RF {money(SEED['rf_balance'])})")


async def _ready(children: list[Child], logs: LogLines, url: str, stop: asyncio.Event) -> None:
    """Wait until the listener leads with every stream connected and the worker is registered."""
    deadline = time.monotonic() + START_SECONDS
    sync = redis.Redis.from_url(url)
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                _alive(children)
                if stop.is_set():
                    raise Interrupted("interrupted while starting")
                if time.monotonic() > deadline:
                    raise DemoError(f"the listener and the worker were not ready within {START_SECONDS:.0f} s")
                listener_ok = False
                if logs.http_port is not None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{logs.http_port}/readyz") as resp:
                            listener_ok = resp.status == 200
                worker_ok = bool(await asyncio.to_thread(Worker.count, connection=sync))
                if listener_ok and worker_ok:
                    return
                await asyncio.sleep(0.1)
    finally:
        sync.close()


def _alive(children: list[Child]) -> None:
    for child in children:
        if child.process.returncode is not None:
            raise DemoError(f"the {child.name} exited with code {child.process.returncode}; see {child.log_path}")


async def _play(
    week: Week,
    base_speed: float,
    api: SandboxClient,
    driver: Driver,
    trail: Trail,
    watcher: Watcher,
    children: list[Child],
    stop: asyncio.Event,
) -> bool:
    """Run the clock through the week, performing each step when its time passes; False if interrupted."""
    steps = list(week.steps)
    speed = 0.0
    while not stop.is_set():
        moment = driver.progress.now()
        while steps and steps[0].at <= moment:
            if not await driver.perform(steps[0].action):
                break  # not done yet: tried again at the next look
            steps.pop(0)
        await trail.poll()
        await watcher.poll()
        _alive(children)
        if moment >= week.end:
            return True
        wanted = week.speed_at(moment, base_speed)
        if wanted != speed:
            await api.call("POST", "/sandbox/clock", {"speed": wanted})
            speed = wanted
        marks = [week.end, week.next_speed_change(moment), *(s.at for s in steps[:1] if s.at > moment)]
        wait = min(POLL_SECONDS, max((min(marks) - moment).total_seconds() / speed, 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
    return False


async def _drain(url: str, trail: Trail, watcher: Watcher, stop: asyncio.Event) -> None:
    """Wait until every queued job has run and the audit trail is quiet, then take a last look."""
    sync = redis.Redis.from_url(url)
    deadline = time.monotonic() + DRAIN_SECONDS
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline and not stop.is_set():
            busy = await asyncio.to_thread(jobs_in_flight, sync)
            if await trail.poll() or busy:
                quiet_since = time.monotonic()
            await watcher.poll()
            if time.monotonic() - quiet_since > 1.0:
                return
            await asyncio.sleep(0.2)
    finally:
        sync.close()


def jobs_in_flight(client: redis.Redis) -> int:
    """Jobs queued, running or waiting to be retried, and listener actions not yet handed to RQ."""
    total = int(client.xlen(keys.OUTBOX) or 0)
    for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE):
        rq_queue = queue(name, client)
        total += rq_queue.count + rq_queue.started_job_registry.count + rq_queue.scheduled_job_registry.count
    return total
