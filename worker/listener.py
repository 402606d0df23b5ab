"""``settlekeeper listen``: the leader-elected asyncio process that turns streams into transfer records.

While it holds the lease it runs, as one group of tasks: a reader per stream, the resolver (hints →
REST → records → RQ), the heal poller, the phase scheduler, the limits monitor, the lease keeper and,
against the sandbox, the clock follower.
If any of them fails or the lease is lost, the whole group stops and the listener goes back to standby.
On SIGTERM it stops reading, commits the records in hand (with their cursor), releases the lease and
returns within :data:`SHUTDOWN_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import datetime
from typing import Any

import redis
import structlog
from aiohttp import web

from broker.client import BrokerClient
from broker.events import Stream
from config.settings import Settings
from funding.calendar import TradingCalendar
from funding.clock import FixedClock, WallClock
from funding.errors import AuthenticationError, LeaseLostError, RetryableError
from store.clients import async_client, describe, sync_client
from store.lease import Lease
from store.transfers import TransferStore
from worker.credentials import Credentials
from worker.health import Health, health_app, publish_state
from worker.limits import LimitsMonitor
from worker.listener_metrics import ListenerMetrics
from worker.resolver import Resolver
from worker.schedule import Scheduler
from worker.stream_reader import StreamReader

log = structlog.get_logger(__name__)

SHUTDOWN_SECONDS = 8.0
"""Kubernetes waits 30 s by default; we promise 10 s, and keep 2 s of margin."""
CLOCK_REFRESH_SECONDS = 1.0


class Listener:
    def __init__(self, settings: Settings, redis_url: str, metrics: ListenerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ListenerMetrics()
        self.redis = async_client(redis_url)
        self.rq = sync_client(redis_url)
        self.store = TransferStore(self.redis, retention_seconds=settings.retention_days * 86400)
        self.lease = Lease(self.redis, settings.lease_ttl_seconds)
        self.health = Health(self.redis, self.lease)
        self.redis_where = describe(redis_url)
        self.credentials = Credentials(settings, self.redis, self.rq, self.metrics, self.health)
        self._clock: WallClock | FixedClock = WallClock()
        self.readers: list[StreamReader] = []

    def now(self) -> datetime:
        return self._clock.now()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve health and metrics, and lead or stand by, until ``stop``."""
        runner = web.AppRunner(health_app(self.health, self.metrics), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "0.0.0.0", self.settings.http_port)  # noqa: S104 - probes and scrapes
        await site.start()
        self.health.http_port = runner.addresses[0][1] if runner.addresses else self.settings.http_port
        log.info("listener_started", http_port=self.health.http_port, streams=self.settings.stream_names)
        try:
            async with BrokerClient(self.settings, on_retry=self._broker_retry) as broker:
                while not stop.is_set():
                    pause = self.lease.renew_every  # a standby polls; a failed term cools down
                    if await self._try_acquire():
                        try:
                            await self._lead(broker, stop)
                        except AuthenticationError as exc:
                            pause = await self.credentials.refused(exc)
                        except RetryableError as exc:  # the term's first Broker API call failed
                            self.metrics.rest_errors.labels(type(exc).__name__).inc()
                            log.warning("broker_unavailable", error=str(exc), retry_in=pause)
                    else:
                        self.metrics.leader.set(0)
                        self.health.role = "standby"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=pause)
        finally:
            await self.lease.release()
            self.metrics.leader.set(0)
            await runner.cleanup()
            await self.redis.aclose()
            self.rq.close()
            log.info("listener_stopped")

    async def _try_acquire(self) -> bool:
        try:
            ok = await self.lease.acquire()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.health.redis_ok = False
            self.metrics.redis_up.set(0)
            log.warning("lease_acquire_failed", redis=self.redis_where, error=f"{type(exc).__name__}: {exc}"[:300])
            return False
        self.health.redis_ok = True
        self.metrics.redis_up.set(1)
        return ok

    def _broker_retry(self, kind: str, where: str, wait: float) -> None:
        self.metrics.rest_errors.labels(kind).inc()

    async def _lead(self, broker: BrokerClient, stop: asyncio.Event) -> None:
        """One term as leader: every task runs until one fails, the lease is lost, or ``stop``. Raises
        :class:`AuthenticationError` (after the term ended) when the Broker API refused the credentials."""
        try:  # the first call proves the credentials (and gives the broker's clock) before anything starts
            now = await broker.clock()
        except BaseException:
            await self.lease.release()
            raise
        await self.credentials.accepted()
        log.info("lease_acquired", holder=self.lease.token[:8])
        self.metrics.leader.set(1)
        self.health.role = "leader"
        if self.settings.follows_broker_clock:
            self._clock = FixedClock(now)
        lost, halt = asyncio.Event(), asyncio.Event()  # halt stops this term's tasks (on stop or on loss)
        tasks, resolver = self._term_tasks(broker, halt)
        keeper = asyncio.create_task(self.lease.keep(lost), name="lease")
        watch = [asyncio.create_task(stop.wait()), keeper]
        done, _ = await asyncio.wait([*tasks, *watch], return_when=asyncio.FIRST_COMPLETED)
        halt.set()
        self.metrics.leader.set(0)  # not reading any more, even while the drain below waits on a hung Redis
        self.health.role = "standby"
        resolver.wake.set()  # an idle resolver waits on its wake-up, not on halt: stop it at once
        for task in watch:
            task.cancel()
        await asyncio.gather(*watch, return_exceptions=True)
        refused = self._failures([t for t in done if t in tasks])
        started = time.monotonic()
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS - 1)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.metrics.leader.set(0)
        self.health.role = "standby"
        self.health.readers = []
        self.metrics.clear_due()  # a standby exports no figures of a deadline it no longer follows
        log.info(
            "leadership_ended",
            why="stop" if stop.is_set() else "lost" if lost.is_set() else "task_failed",
            drain_seconds=round(time.monotonic() - started, 3),
        )
        if not stop.is_set():
            await self.lease.release()
        if refused is not None:
            raise refused

    def _term_tasks(self, broker: BrokerClient, halt: asyncio.Event) -> tuple[list[asyncio.Task[Any]], Resolver]:
        """The term's tasks: a reader per stream, the resolver and heal poller, the scheduler, the limits
        monitor and, against the sandbox, the clock follower."""
        heal_trigger = asyncio.Event()
        resolver = Resolver(
            broker,
            self.store,
            self.rq,
            self.metrics,
            concurrency=self.settings.resolver_concurrency,
            token=lambda: self.lease.fence,
            now=self.now,
        )
        self.readers = [
            StreamReader(
                Stream(name),
                self.settings,
                self.store,
                self.metrics,
                token=lambda: self.lease.fence,
                on_connect=heal_trigger.set,
                on_hints=resolver.wake.set,
                now=self.now,
                sync_clock=lambda: self._sync_clock(broker),
            )
            for name in self.settings.stream_names
        ]
        self.health.readers = self.readers
        heal = resolver.heal_loop(halt, heal_trigger, self.settings.heal_interval_seconds)
        scheduler = Scheduler(self.settings, self.rq, self.now, TradingCalendar())
        limits = LimitsMonitor(
            self.settings, broker, self.redis, self.rq, self.store, self.metrics, self.now, TradingCalendar()
        )
        tasks: list[asyncio.Task[Any]] = [
            *(asyncio.create_task(reader.run(halt), name=f"stream-{reader.name}") for reader in self.readers),
            asyncio.create_task(resolver.run(halt), name="resolver"),
            asyncio.create_task(heal, name="heal"),
            asyncio.create_task(scheduler.run(halt), name="schedule"),
            asyncio.create_task(limits.run(halt), name="limits"),
        ]
        tasks.append(asyncio.create_task(self._publish_state(halt), name="state"))
        if isinstance(self._clock, FixedClock):
            tasks.append(asyncio.create_task(self._follow_clock(broker, self._clock, halt), name="clock"))
        return tasks, resolver

    async def _publish_state(self, halt: asyncio.Event) -> None:
        """While leading, report who leads and each stream's state for ``settlekeeper status`` (best effort)."""
        holder, since = f"{socket.gethostname()}:{os.getpid()}", time.time()
        every = self.lease.renew_every
        while not halt.is_set():
            try:
                await publish_state(self.health, holder, since, ttl=3 * every)
            except redis.RedisError as exc:
                log.warning("listener_state_not_published", error=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=every)

    @staticmethod
    def _failures(ended: list[asyncio.Task[Any]]) -> AuthenticationError | None:
        """Log why the tasks that ended the term failed; the credentials' refusal is handled by the caller."""
        refused = None
        for task in ended:
            if task.cancelled() or (error := task.exception()) is None:
                continue
            if isinstance(error, AuthenticationError):
                refused = error
            elif isinstance(error, LeaseLostError):
                log.warning("lease_lost_on_write", task=task.get_name())
            else:
                log.error("listener_task_failed", task=task.get_name(), error=repr(error))
        return refused

    async def _sync_clock(self, broker: BrokerClient) -> None:
        """Read the broker's clock now (when following it), instead of at the next refresh."""
        if isinstance(self._clock, FixedClock):
            self._clock.set(await broker.clock())

    async def _follow_clock(self, broker: BrokerClient, clock: FixedClock, halt: asyncio.Event) -> None:
        while not halt.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=CLOCK_REFRESH_SECONDS)
            try:
                clock.set(await broker.clock())
            except RetryableError as exc:
                log.warning("clock_refresh_failed", error=str(exc))


__all__ = ["LeaseLostError", "Listener"]
