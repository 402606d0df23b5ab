"""What every money job runs with: settings, Redis, the Broker API, the clock, intents, guardrails.

RQ calls plain functions; each builds a :class:`JobContext` inside ``asyncio.run`` so the event loop,
the HTTP session and the Redis pool are created and closed by that one job (no leaks across runs,
whatever the worker class).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
import structlog
from redis import Redis as SyncRedis
from redis.asyncio.lock import Lock
from rq import get_current_job

from config.settings import Settings, load_settings
from funding import keys
from funding.alerts import Alert, Severity, move_sync, raise_alert, resolve_alert
from funding.audit import Ledger
from funding.broker import BrokerClient
from funding.calendar import TradingCalendar, to_et
from funding.errors import CREDENTIALS_HINT, AuthenticationError, PermanentError
from funding.guardrails import Guardrails
from funding.redis_factory import resilient_kwargs
from jobs.metrics import observe_job
from jobs.queues import enqueue_alert_deliveries

log = structlog.get_logger(__name__)
T = TypeVar("T")


class RunLockLost(Exception):
    """Control flow, not an error: a settle run's lock lapsed, so the run stops before its next money call
    and leaves the deadline to whichever run holds the lock now."""


@dataclass
class JobContext:
    settings: Settings
    redis: aioredis.Redis
    broker: BrokerClient
    ledger: Ledger
    guard: Guardrails
    calendar: TradingCalendar
    rq: SyncRedis
    """The RQ job's own (synchronous) connection, for enqueueing."""
    lock: Lock | None = None
    """The settle run's lock (its heartbeat renews it); a money call is only made while it is still ours."""

    async def pause(self) -> None:
        """Wait one poll interval before looking again at something in progress."""
        await asyncio.sleep(self.settings.poll_seconds)

    async def before_call(self) -> None:
        """Immediately before every money call: the kill switch (:class:`KillSwitchOn`), and, in a settle run,
        that its lock is still ours (:class:`RunLockLost`: it lapsed, and another run may have started)."""
        await self.guard.before_call()
        if self.lock is not None and not await self.lock.owned():
            raise RunLockLost("the settle run's lock lapsed (its heartbeat stopped); another run may hold it")

    async def now(self) -> datetime:
        """The business clock: the Broker API's clock against the sandbox, wall time against Alpaca."""
        if self.settings.follows_broker_clock:
            return await self.broker.clock()
        return datetime.now(UTC)

    async def today(self) -> date:
        return to_et(await self.now()).date()

    async def account_id(self, account_no: str) -> str:
        """Account number → UUID (A7), cached in ``sk:account_ids``."""
        cached = await self.redis.hget(keys.ACCOUNT_IDS, account_no)
        if cached is not None:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        account = await self.broker.find_account(account_no)
        await self.redis.hset(keys.ACCOUNT_IDS, account_no, str(account.id))
        return str(account.id)

    async def alert(self, kind: str, severity: str, summary: str, dedup_key: str, **facts: Any) -> None:
        """Raise an alert for on-call: recorded once per state, then delivered by the alert queue."""
        alert = Alert(kind, Severity(severity), dedup_key, summary, {k: str(v) for k, v in facts.items()})
        if await raise_alert(self.redis, alert) is not None:
            log.warning("alert_raised", kind=kind, severity=severity, summary=summary, dedup_key=dedup_key)
            await asyncio.to_thread(enqueue_alert_deliveries, self.rq)

    async def resolve(self, kind: str, dedup_key: str, summary: str) -> None:
        """Resolve an alert whose condition cleared (nothing is sent if it was not triggered)."""
        if await resolve_alert(self.redis, Alert(kind, Severity.INFO, dedup_key, summary)) is not None:
            log.info("alert_resolved", kind=kind, dedup_key=dedup_key)
            await asyncio.to_thread(enqueue_alert_deliveries, self.rq)


def _async_redis(connection: redis.Redis) -> aioredis.Redis:
    """An asyncio client to the same Redis as the RQ job's connection."""
    source = connection.connection_pool.connection_kwargs
    kwargs: dict[str, Any] = {k: source[k] for k in ("db", "username", "password", "socket_timeout") if k in source}
    kwargs |= resilient_kwargs(asynchronous=True)
    if "path" in source:
        return aioredis.Redis(unix_socket_path=source["path"], **kwargs)
    return aioredis.Redis(host=source.get("host", "localhost"), port=source.get("port", 6379), **kwargs)


@contextlib.asynccontextmanager
async def job_context(settings: Settings, connection: redis.Redis) -> AsyncIterator[JobContext]:
    client = _async_redis(connection)
    try:
        async with BrokerClient(settings) as broker:
            yield JobContext(
                settings=settings,
                redis=client,
                broker=broker,
                ledger=Ledger(client),
                guard=Guardrails(settings, client),
                calendar=TradingCalendar(),
                rq=connection,
            )
    finally:
        await client.aclose()


def run_job(work: Callable[[JobContext], Awaitable[T]], connection: redis.Redis | None = None) -> T:
    """Run ``work`` in a fresh event loop with a fresh context; the RQ entry point of every job.

    Its duration and outcome go to the job duration histogram (in Redis: see :mod:`jobs.metrics`)."""
    settings = load_settings()
    job = get_current_job()
    if connection is None:
        if job is None:
            raise RuntimeError("run_job needs an RQ job or an explicit Redis connection")
        connection = job.connection
    name = job.func_name.removeprefix("jobs.") if job is not None and job.func_name else "direct"

    async def main() -> T:
        async with job_context(settings, connection) as ctx:
            return await work(ctx)

    started, outcome = time.monotonic(), "failed"
    try:
        result = asyncio.run(main())
        outcome = "succeeded"
        return result
    except PermanentError as exc:
        if job is not None:  # the same call cannot succeed later: RQ must not retry it (its failure pages)
            job.retries_left = 0
        log.error("job_failed_permanently", job=name, error=f"{type(exc).__name__}: {exc}"[:500])
        if isinstance(exc, AuthenticationError):
            refused = Alert(
                "broker_auth",
                Severity.CRITICAL,
                "broker-auth",
                f"the Broker API refuses settlekeeper's credentials (a {name} job failed): {CREDENTIALS_HINT}",
                {"status": str(exc.status), "broker_url": settings.broker_url},
            )
            if move_sync(connection, refused, "trigger") is not None:
                enqueue_alert_deliveries(connection)
        raise
    finally:
        observe_job(connection, name, outcome, time.monotonic() - started)
