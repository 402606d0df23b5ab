"""``settlekeeper chaos``: trading days on the sandbox clock with everything failing, then the invariants.

One run starts Redis (AOF ``everysec``, a password), the sandbox (in this process), a Slack and a PagerDuty
stand-in, two listeners and two RQ workers as real processes, and plays :mod:`chaos.plan`'s days: the
partner's IF transfers (some after 8 PM), customers spending, the partner settling by hand, RF-short days,
while at seeded moments processes are SIGKILLed or SIGTERMed (and restarted, as Kubernetes would), Redis is
restarted (sometimes losing its last second of writes), every sandbox fault kind is armed, the clock jumps
and an operator pauses. At the end :mod:`chaos.invariants` reads the sandbox's books; the exit status is 0
only when every invariant holds. The last line: ``chaos: <days> days, <kills> kills, <restarts> Redis
restarts, <violations> violations``.
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
import sys
import tempfile
import time as clock_time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import aiohttp
import redis.asyncio as aioredis
from pydantic import SecretStr

from chaos import leaks
from chaos.actions import RF, SI, Actor
from chaos.cluster import Fleet, Process, Redis, free_port
from chaos.invariants import NAMES, Books, Verdict, check
from chaos.plan import CUSTOMERS, Day, Plan, build
from chaos.report import forecast_backtest, render
from chaos.sinks import capture
from config.settings import Settings
from demo.environment import child_environment
from demo.feed import DemoError, SandboxClient
from demo.run import jobs_in_flight, serve_sandbox
from funding.calendar import TradingCalendar, at_et, to_et
from sandbox.clock_control import SandboxClock
from store.clients import async_client, sync_client

SHORT_FIRST = date(2026, 11, 24)
"""The short run: Tue 2026-11-24 (traffic only), Wed 11-25 (a deadline the partner partly settles by hand),
Thanksgiving (a market and bank holiday), Fri 11-27 (an RF-short deadline: cancellations, debits, covers)."""
LONG_FIRST = date(2026, 11, 2)
"""The long run: from Mon 2026-11-02, over Veterans Day (bank-only holiday), weekends and Thanksgiving."""
KILLS_PER_DAY = 15
POLL_SECONDS = 0.1
REVIVE_SECONDS = 0.5
"""A killed process is started again this long after it died (Kubernetes restarts a container at once)."""
SEED: dict[str, object] = {
    "customers": CUSTOMERS,
    "rf_balance": "400000.00",
    "if_correspondent_limit": "10000000.00",
    "if_account_limit": "100000.00",
    "jnlc_transaction_limit": "1000000.00",
    "jnlc_daily_limit": "100000000.00",
}
CHILD_SETTINGS: dict[str, object] = {
    "log_format": "json",
    "log_level": "INFO",
    "clock": "broker",
    "heartbeat_seconds": 5.0,
    "heal_interval_seconds": 3.0,
    "lease_ttl_seconds": 3.0,
    "settle_heartbeat_seconds": 3.0,
    "backoff_base_seconds": 0.1,
    "backoff_cap_seconds": 1.0,
    "healthy_reset_seconds": 5.0,
    "poll_seconds": 0.05,
    "journal_wait_seconds": 1.0,
    "settlement_wait_seconds": 3.0,
    "alert_max_wait_seconds": 0.2,
    "alert_routes": '{"slack": ["info", "warning", "critical"], "pagerduty": ["info", "warning", "critical"]}',
    "settle_mode": "on",
    "fund_mode": "on",
    "cover_mode": "on",
}
"""Real-time waits shortened to match a clock running hundreds of times faster; every alert to both sinks."""


@dataclass(frozen=True)
class ChaosOptions:
    days: int = 3
    """Trading days to play (the calendar days between them are played too)."""
    seed: int | None = None
    first: date | None = None
    workers: int = 2
    log_dir: Path | None = None


def speed_at(moment: datetime, plan: Plan, calendar: TradingCalendar) -> float:
    """Slow around the noon settlement and the 8 PM cancellations of a deadline (the first day is none: what
    it creates is due the next trading day), fast elsewhere, fastest at night and on closed days."""
    local = to_et(moment)
    if not calendar.is_trading_day(local.date()):
        return 4000.0
    now = local.time()
    deadline = local.date() != plan.days[0].day
    if deadline and time(11, 58) <= now <= time(13, 2):
        return 120.0
    if deadline and time(19, 58) <= now <= time(20, 12):
        return 150.0
    if time(7, 0) <= now <= time(21, 0):
        return 2000.0
    return 4000.0


Act = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Secrets:
    """Distinctive values made for one run, so that finding one anywhere afterwards is a leak."""

    broker_key: str
    broker_secret: str
    redis_password: str
    webhook_path: str
    routing_key: str

    @classmethod
    def make(cls, redis_password: str) -> Secrets:
        def token(prefix: str) -> str:
            return f"{prefix}{secrets.token_hex(10)}"

        return cls(token("CKkey"), token("CKsecret"), redis_password, token("T0/B0/hook"), token("rk"))

    @property
    def all(self) -> list[str]:
        return [self.broker_key, self.broker_secret, self.redis_password, self.webhook_path, self.routing_key]


@dataclass(order=True)
class Step:
    at: datetime
    seq: int
    act: Act = field(compare=False)


async def run_chaos(settings: Settings, options: ChaosOptions, out: TextIO | None = None) -> int:
    say = out or sys.stdout
    calendar = TradingCalendar()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1, 2**31)
    first = options.first or (SHORT_FIRST if options.days <= 3 else LONG_FIRST)
    plan = build(first, options.days, seed, calendar, kills_per_day=KILLS_PER_DAY)
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="settlekeeper-chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"chaos: seed {seed} (replay with --seed {seed}); {plan.days[0].day} to {plan.days[-1].day}; logs {log_dir}",
        file=say,
        flush=True,
    )
    started = clock_time.monotonic()
    redis = Redis(log_dir / "redis", password=secrets.token_hex(12))
    await asyncio.to_thread(redis.start)
    try:
        verdict, actor, books = await _session(settings, plan, options, redis, log_dir, random.Random(seed))
    finally:
        redis.stop()
    notes = forecast_backtest(books.transfers, plan, actor.record.rf_short_deadlines, settings)
    for line in render(plan, actor.record, verdict, clock_time.monotonic() - started, notes):
        print(line, file=say, flush=True)
    return 0 if verdict.total == 0 else 1


async def _session(
    settings: Settings, plan: Plan, options: ChaosOptions, redis: Redis, log_dir: Path, rng: random.Random
) -> tuple[Verdict, Actor, Books]:
    made = Secrets.make(redis.password)
    key, secret = made.broker_key, made.broker_secret
    clock = SandboxClock(plan.start, frozen=True)
    sandbox_settings = settings.model_copy(
        update={"sandbox_heartbeat_seconds": 5.0, "sandbox_key": SecretStr(key), "sandbox_secret": SecretStr(secret)}
    )
    async with (
        serve_sandbox(sandbox_settings, clock) as base_url,
        SandboxClient(base_url, key, secret) as api,
        capture(made.webhook_path) as sinks,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
    ):
        await api.call("POST", "/sandbox/reset", {**SEED, "now": plan.start.isoformat(), "freeze": True})
        env = child_environment(
            settings,
            {
                **CHILD_SETTINGS,
                "redis_url": redis.url,
                "broker_url": base_url,
                "broker_key": key,
                "broker_secret": secret,
                "slack_webhook_url": sinks.slack_url,
                "pagerduty_url": sinks.pagerduty_url,
                "pagerduty_routing_key": made.routing_key,
            },
        )
        env["PYTHONUNBUFFERED"] = "1"
        listeners = [Process(f"listener-{n}", ["listen"], env, log_dir, http_port=free_port()) for n in (1, 2)]
        metrics = free_port()  # the first worker serves the jobs' metrics (cluster-wide: one is enough)
        workers = [
            Process(
                f"worker-{n}",
                ["work", "--name", f"chaos-w{n}", "--metrics-port", str(metrics if n == 1 else 0)],
                env,
                log_dir,
            )
            for n in range(1, options.workers + 1)
        ]
        fleet = Fleet(listeners, workers)
        actor = Actor(api, fleet, redis, rng, clock.now)
        actor.record.last_deadline = max(d.day for d in plan.days if d.trading)
        await fleet.start()
        try:
            await _until_leading(fleet, http)
            client = async_client(redis.url)
            try:
                await _play(plan, clock, api, actor, http, client)
                await _finish(plan, clock, api, actor, redis.url)
            finally:
                await client.aclose()
            await api.call("DELETE", "/sandbox/faults")
            books = await Books.read(api)
            verdict = await check(books, actor.record, redis.url, sinks.pagerduty)
            pages = [f"http://127.0.0.1:{p.http_port}/metrics" for p in listeners] + [f"http://127.0.0.1:{metrics}/"]
            page_hits = await leaks.in_pages(made.all, pages)
        finally:
            await fleet.stop()
        payloads = {"slack": sinks.slack, "pagerduty": sinks.pagerduty}
        for hit in await leaks.everywhere(made.all, log_dir, redis.url, page_hits, payloads):
            verdict.add(NAMES[8], hit)
    return verdict, actor, books


async def _until_leading(fleet: Fleet, http: aiohttp.ClientSession, within: float = 30.0) -> None:
    deadline = clock_time.monotonic() + within
    while clock_time.monotonic() < deadline:
        if any([await listener.role(http) == "leader" for listener in fleet.listeners]):
            return
        await asyncio.sleep(0.2)
    raise DemoError(f"no listener led within {within:.0f} s (see the listener logs)")


def _timeline(
    plan: Plan, api: SandboxClient, actor: Actor, http: aiohttp.ClientSession, client: aioredis.Redis
) -> list[Step]:
    steps: list[Step] = []

    def add(at: datetime, act: Act) -> None:
        steps.append(Step(at, len(steps), act))

    for transfer in plan.transfers():
        add(transfer.at, functools.partial(actor.transfer, transfer))
    for day in plan.days:
        for trade in day.trades:
            add(trade.at, functools.partial(actor.trade, trade))
        if day.trading:
            _treasury(day, api, actor, add)
        for d in day.disruptions:
            if d.kind == "pause":
                add(d.at, functools.partial(actor.pause, client, d.at, d.detail))
            else:
                add(d.at, functools.partial(actor.disrupt, d, http, client))
    return sorted(steps)


def _treasury(day: Day, api: SandboxClient, actor: Actor, add: Callable[[datetime, Act], None]) -> None:
    """A trading day's treasury. At 08:00 the partner tops RF up to its opening balance (what the day before
    settled is wired back, as a partner funds RF daily). On an RF-short deadline it drains RF at 09:00 and wires
    it back at 19:30 (before the 8 PM cancellations, so every debit can be covered). A partner's own settlement
    at 10:00. At 11:55 the harness reads whether SI + RF can pay what is due: a deadline they cannot pay is
    RF-short whatever the plan said (the invariants exempt it from the 1 PM one and expect its alert)."""
    drained: list[Decimal] = []
    opening = Decimal(str(SEED["rf_balance"]))

    async def due() -> Decimal:
        rows = [t for t in await api.transfers(deadline=day.day.isoformat()) if t["status"] == "EXECUTED"]
        return sum((Decimal(t["remaining_payable"]) for t in rows), Decimal(0))

    async def top_up() -> None:
        cash = Decimal((await actor.account(RF))["cash"])
        if cash < opening:
            await actor.refill_rf(opening - cash)

    async def drain() -> None:
        before = Decimal((await actor.account(RF))["cash"])
        await actor.drain_rf(day.day, await due())
        drained.append(before - Decimal((await actor.account(RF))["cash"]))

    async def refill() -> None:
        await actor.refill_rf(sum(drained, Decimal(0)) or Decimal("10000.00"))

    async def can_pay() -> None:
        firm = sum([Decimal((await actor.account(number))["cash"]) for number in (RF, SI)], Decimal(0))
        if firm < await due():
            actor.record.rf_short_deadlines.add(day.day)

    add(at_et(day.day, time(8, 0)), top_up)
    if day.rf_short:
        add(at_et(day.day, time(9, 0)), drain)
        add(at_et(day.day, time(19, 30)), refill)
    if day.partner_settles:
        add(at_et(day.day, time(10, 0)), functools.partial(actor.partner_settles, day.day))
    add(at_et(day.day, time(11, 55)), can_pay)


async def _play(
    plan: Plan,
    clock: SandboxClock,
    api: SandboxClient,
    actor: Actor,
    http: aiohttp.ClientSession,
    client: aioredis.Redis,
) -> None:
    calendar = TradingCalendar()
    steps = _timeline(plan, api, actor, http, client)
    speed = 0.0
    dead_since: dict[str, float] = {}
    while True:
        now = clock.now()
        while steps and steps[0].at <= now:
            step = steps.pop(0)
            try:
                await step.act()
            except (DemoError, aiohttp.ClientError, TimeoutError) as exc:  # the act is skipped, and counted
                actor.record.harness_errors[type(exc).__name__] += 1
        if actor.pending_resume is not None and now >= actor.pending_resume:
            await actor.resume(client, clock.now())
        await _revive(actor.fleet, dead_since)
        if now >= plan.end:
            return
        wanted = speed_at(now, plan, calendar)
        if wanted != speed:
            await api.call("POST", "/sandbox/clock", {"speed": wanted, "freeze": False})
            speed = wanted
        await asyncio.sleep(POLL_SECONDS)


async def _revive(fleet: Fleet, dead_since: dict[str, float]) -> None:
    for process in fleet.everyone:
        if process.alive:
            dead_since.pop(process.name, None)
            continue
        since = dead_since.setdefault(process.name, clock_time.monotonic())
        if clock_time.monotonic() - since >= REVIVE_SECONDS:
            await process.start()
            dead_since.pop(process.name, None)


async def _finish(plan: Plan, clock: SandboxClock, api: SandboxClient, actor: Actor, url: str) -> None:
    """Play on to 09:05 ET of the next trading day (the last deadline's margin calls), then let the jobs
    drain before the books are read."""
    calendar = TradingCalendar()
    morning = at_et(calendar.next_trading_day(actor.record.last_deadline), time(9, 5))
    await api.call("POST", "/sandbox/clock", {"freeze": True})
    await actor.fleet.revive()
    await _drain(url)  # the last covers run before the margin calls are due
    await api.call("POST", "/sandbox/clock", {"set": morning.isoformat()})  # fires the night's rules in order
    await _drain(url)


async def _drain(url: str, within: float = 30.0) -> None:
    client = sync_client(url)
    deadline = clock_time.monotonic() + within
    try:
        while clock_time.monotonic() < deadline:
            busy = await asyncio.to_thread(jobs_in_flight, client)
            if not busy:
                return
            await asyncio.sleep(0.3)
    finally:
        client.close()
