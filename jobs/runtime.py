"""What every money job runs with, and how it moves money by journal.

RQ calls plain functions; each builds a :class:`JobContext` (settings, Redis, the Broker API, the clock,
intents, guardrails) inside ``asyncio.run`` (:func:`run_job`), so the event loop, the HTTP session and the
Redis pool are created and closed by that one job (no leaks across runs, whatever the worker class).

A journal (RF → SI for a settlement, RF → customer for a cover) is sent by :func:`send_journal`: once per
intent, with the same ``Idempotency-Key`` and body on every try (Alpaca returns the first journal), checked
against the guardrails first (:func:`held_back`) and followed to a final status (:func:`follow_journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
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

from broker.client import BrokerClient
from config.settings import Settings, load_settings
from funding.alerts import Alert, Severity
from funding.calendar import TradingCalendar, to_et
from funding.errors import CREDENTIALS_HINT, AuthenticationError, ConfigError, PermanentError, RunLockLost, Waiting
from funding.models import JournalStatus
from funding.money import display, wire
from jobs import failpoints
from jobs.job_metrics import count_movement, observe_job
from jobs.registry import enqueue_alert_deliveries
from store.accounts import AccountIds
from store.alert_state import move_sync, raise_alert, resolve_alert
from store.audit import Intent, IntentStatus, Ledger
from store.clients import async_client
from store.guardrails import Guardrails, Verdict
from store.transfers import journal_for_key

log = structlog.get_logger(__name__)
T = TypeVar("T")


FIRST_LOOK_SECONDS = 0.1
"""A journal or settlement in progress is first looked at again after this long (then twice as long each time,
up to the poll interval)."""


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
    accounts: AccountIds
    lock: Lock | None = None
    """The settle run's lock (its heartbeat renews it); a money call is only made while it is still ours."""

    def idempotency_key(self, intent_key: str) -> str:
        """The ``Idempotency-Key`` of this deployment's intent (:func:`idempotency_key`, scoped by its SI)."""
        return idempotency_key(self.settings.si_account_no, intent_key)

    async def pause(self, looks: int | None = None) -> float:
        """Wait before looking again at something in progress: one poll interval, or, for the ``looks``-th look at
        a journal or settlement, :data:`FIRST_LOOK_SECONDS` doubled each time up to it (one done at once is not
        waited for a whole interval). Returns the seconds waited."""
        poll = self.settings.poll_seconds
        seconds = poll if looks is None else min(poll, FIRST_LOOK_SECONDS * 2**looks)
        await asyncio.sleep(seconds)
        return seconds

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
        """Account number → UUID, through the one cache (:class:`store.accounts.AccountIds`)."""
        return await self.accounts.of(account_no)

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


@contextlib.asynccontextmanager
async def job_context(settings: Settings, connection: redis.Redis) -> AsyncIterator[JobContext]:
    """The context of one job: its own asyncio Redis client, built by the one factory from the settings' URL
    (TLS, ACL users and every option of the URL kept), and its own Broker API session; both closed after."""
    if settings.redis_url is None:  # `settlekeeper work` exports its URL; a plain `rq worker` must set it
        raise ConfigError("SETTLEKEEPER_REDIS_URL is not set: a job cannot know which Redis it runs against")
    client = async_client(settings.redis_url.get_secret_value())
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
                accounts=AccountIds(client, broker.find_account),
            )
    finally:
        await client.aclose()


def run_job(
    work: Callable[[JobContext], Awaitable[T]], connection: redis.Redis | None = None, *, metric_name: str = ""
) -> T:
    """Run ``work`` in a fresh event loop with a fresh context; the RQ entry point of every job.

    Its duration and outcome go to the job duration histogram (in Redis: see :mod:`jobs.job_metrics`),
    labelled ``metric_name`` or, by default, the job's function without ``jobs.`` (``cover.cover_account``)."""
    settings = load_settings()
    job = get_current_job()
    if connection is None:
        if job is None:
            raise ConfigError("a job runs in an RQ worker, or is given a Redis connection to run with")
        connection = job.connection
    name = metric_name or (job.func_name.removeprefix("jobs.") if job is not None and job.func_name else "direct")

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


# ---------------------------------------------------------------------------------------------- journals

IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0e1b8a-7c1c-4f0e-9d43-2d6f0c2b9e11")


def idempotency_key(scope: str, intent_key: str) -> str:
    """A 36-character key (Alpaca is moving to a 36-character maximum) derived from the intent and the deployment
    it belongs to (``scope``: its SI account). Alpaca keeps keys per correspondent, so two settlekeepers of one
    correspondent (one per SI account) must never derive the same key for their own ``fund-<day>-1``."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{scope}/{intent_key}"))


async def held_back(
    ctx: JobContext, intent: Intent, verdict: Verdict, what: str, severity: str = "warning", **facts: str
) -> bool:
    """True when the guardrails stop ``intent`` (dry-run or refused): audited, counted, a refusal alerted."""
    if verdict.allowed and not verdict.dry_run:
        return False
    intent.status = IntentStatus.DRY_RUN if verdict.dry_run else IntentStatus.REFUSED
    intent.detail = verdict.reason
    await ctx.ledger.save(intent, f"{intent.kind}_{intent.status}", reason=verdict.reason, **facts)
    await count_movement(ctx.redis, intent, intent.status)
    if not verdict.allowed:
        alert_facts = {"account_no": intent.account_no} if intent.account_no else {}
        await ctx.alert(
            "guardrail", severity, f"{what} refused: {verdict.reason}", f"guard-{intent.key}", **alert_facts
        )
    return True


async def send_journal(ctx: JobContext, intent: Intent, source_no: str, target_no: str) -> bool:
    """POST the intent's journal (same key and body on every try, so at most one exists) and wait."""
    body = {
        "from_account": await ctx.account_id(source_no),
        "to_account": await ctx.account_id(target_no),
        "entry_type": "JNLC",
        "amount": wire(intent.amount),
        "description": f"settlekeeper {intent.key}: {intent.why}",
    }
    await ctx.before_call()
    intent.status = IntentStatus.SENT
    await ctx.ledger.save(intent, f"{intent.kind}_sent", body=body)
    failpoints.reach(ctx.settings, "journal.before_call")
    try:
        journal = await ctx.broker.create_journal(body, intent.idempotency_key)
    except PermanentError as exc:
        intent.status, intent.detail = IntentStatus.FAILED, str(exc)[:500]
        await ctx.ledger.save(intent, f"{intent.kind}_failed", error=str(exc)[:500])
        await count_movement(ctx.redis, intent, "failed")
        await ctx.guard.release(intent.amount, day=date.fromisoformat(intent.deadline))
        await ctx.alert("journal_refused", "critical", f"journal {intent.key} refused: {exc}", f"journal-{intent.key}")
        return False
    failpoints.reach(ctx.settings, "journal.after_call")
    intent.broker_id, intent.broker_status = str(journal.id), journal.status.value
    await ctx.ledger.save(intent, f"{intent.kind}_accepted", journal_id=str(journal.id), status=journal.status.value)
    failpoints.reach(ctx.settings, "journal.after_outcome")
    return await follow_journal(ctx, intent)


async def adopt_journal(ctx: JobContext, intent: Intent) -> bool:
    """An intent sent without an answer (a crash, a timeout): when the journal status stream already named the
    journal created under its ``Idempotency-Key`` (its events can come before the create answer), take that
    journal's id instead of sending again. True when adopted."""
    found = await journal_for_key(ctx.redis, intent.idempotency_key)
    if found is None:
        return False
    intent.broker_id, intent.broker_status = found
    await ctx.ledger.save(intent, f"{intent.kind}_found_by_key", journal_id=found[0], status=found[1])
    return True


async def resume_journal(ctx: JobContext, intent: Intent, source_no: str, target_no: str) -> bool:
    """Carry on with a journal an earlier run started: follow it if its id is known (or the stream named it),
    else send it again under the same key and body (Alpaca returns the first one)."""
    if intent.broker_id or await adopt_journal(ctx, intent):
        return await follow_journal(ctx, intent)
    return await send_journal(ctx, intent, source_no, target_no)


async def follow_journal(ctx: JobContext, intent: Intent) -> bool:
    waited, looks = 0.0, 0
    while True:
        journal = await ctx.broker.get_journal(intent.broker_id)
        status = journal.status
        if status in (JournalStatus.EXECUTED, JournalStatus.ACTIVITY_CREATED):
            intent.status, intent.broker_status = IntentStatus.DONE, status.value
            await ctx.ledger.save(intent, f"{intent.kind}_executed", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "executed")
            return True
        if status in (JournalStatus.REJECTED, JournalStatus.CANCELED, JournalStatus.REFUSED, JournalStatus.DELETED):
            intent.status, intent.broker_status = IntentStatus.FAILED, status.value
            await ctx.ledger.save(intent, f"{intent.kind}_{status.value}", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "failed")
            await ctx.alert(
                "journal_rejected", "critical", f"journal {intent.key} is {status.value}", f"journal-{intent.key}"
            )
            return False
        if waited >= ctx.settings.journal_wait_seconds:
            intent.broker_status = status.value
            await ctx.ledger.save(intent, f"{intent.kind}_still_{status.value}", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "pending")
            await ctx.alert(
                "journal_pending",
                "warning",
                f"journal {intent.key} of {display(intent.amount)} is still {status.value}",
                f"journal-pending-{intent.key}",
                journal_id=intent.broker_id,
            )
            raise Waiting(f"journal {intent.broker_id} is {status.value}")
        waited += await ctx.pause(looks)
        looks += 1
