"""The job runtime and its journal path (jobs/runtime.py), against the sandbox's ``/v1/journals`` and Redis.

A journal is audited before and after its POST, followed to a final status, sent once whatever the retries;
the guardrails hold it back before anything is sent; a job runs only against the Redis it is told of, and a
permanent error is not retried by RQ.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio.lock import Lock
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from config.settings import load_settings
from funding.errors import ConfigError, KillSwitchOn, RunLockLost, Waiting
from funding.records import Action
from jobs.job_metrics import JobsCollector
from jobs.registry import enqueue_action
from jobs.runtime import JobContext, follow_journal, held_back, idempotency_key, job_context, run_job, send_journal
from store import keys
from store.audit import Intent, IntentStatus
from store.guardrails import Verdict
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox
from tests.support.scenario import customer

RF = "7536050RF"
DAY = "2026-11-24"
Context = Callable[..., Any]


@pytest.fixture
def context(sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis) -> Context:
    """A job's context against the sandbox and the flushed test Redis (short waits; settings overridable)."""

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[JobContext]:
        values: dict[str, Any] = {"poll_seconds": 0.02, "journal_wait_seconds": 0.3, **overrides}
        settings = load_settings({}, broker_url=sandbox.base_url, redis_url=session_redis_url, **values)
        async with job_context(settings, redis_client) as ctx:
            yield ctx

    return build


def cover_intent(amount: str, why: str = "debit left by the 8 PM cancellation") -> Intent:
    key = f"cover-{customer(1)}-{DAY}"
    return Intent(key, "cover", DAY, why, Decimal(amount), idempotency_key("7536050SI", key), account_no=customer(1))


def audit(client: redis.Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, facts) of every audit entry of ``key``, in order."""
    entries = client.xrange(keys.AUDIT)
    return [
        (fields[b"event"].decode(), json.loads(fields[b"facts"]))
        for _, fields in entries  # type: ignore[union-attr]
        if fields[b"key"].decode() == key
    ]


async def journals(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(await sandbox.ok("GET", "/v1/journals"))


def job_sample(client: redis.Redis, name: str, **labels: str) -> float | None:
    """One sample of the jobs' metrics, as a scrape of ``settlekeeper work`` exposes it."""
    registry = CollectorRegistry()
    registry.register(JobsCollector(client, []))
    return registry.get_sample_value(name, labels)


def alert_state(client: redis.Redis, dedup_key: str) -> str:
    state = client.hget(keys.alert(dedup_key), "state")
    return state.decode() if state else ""


async def test_a_journal_is_audited_before_and_after_its_post_and_followed_to_executed(
    sandbox: Sandbox, context: Context, redis_client: redis.Redis
) -> None:
    """RF → customer of 40.00 (under the JNLC limit): the body (account UUIDs, "40.00") is audited as sent
    before the POST, then accepted with Alpaca's id, then executed; the intent is done and names the journal."""
    intent = cover_intent("40.00")
    async with context() as ctx:
        assert await send_journal(ctx, intent, RF, customer(1))
    [journal] = await journals(sandbox)
    body = {
        "from_account": await sandbox.account_id(RF),
        "to_account": await sandbox.account_id(customer(1)),
        "entry_type": "JNLC",
        "amount": "40.00",
        "description": f"settlekeeper {intent.key}: {intent.why}",
    }
    assert (journal["from_account"], journal["to_account"], journal["status"]) == (*list(body.values())[:2], "executed")
    assert audit(redis_client, intent.key) == [
        ("cover_sent", {"body": body}),
        ("cover_accepted", {"journal_id": journal["id"], "status": "executed"}),  # booked at once
        ("cover_executed", {"journal_id": journal["id"]}),
    ]
    saved = redis_client.hgetall(keys.intent(intent.key))
    assert (saved[b"status"], saved[b"broker_id"], saved[b"broker_status"]) == (
        b"done",
        journal["id"].encode(),
        b"executed",
    )
    assert job_sample(redis_client, "settlekeeper_money_movements_total", kind="cover", outcome="executed") == 1


async def test_a_journal_sent_again_is_the_same_journal(sandbox: Sandbox, context: Context) -> None:
    """A retry of the same intent (same key and body) is answered with the first journal: one exists."""
    async with context() as ctx:
        first, again = cover_intent("40.00"), cover_intent("40.00")
        assert await send_journal(ctx, first, RF, customer(1))
        assert await send_journal(ctx, again, RF, customer(1))
    assert first.broker_id == again.broker_id
    assert [j["id"] for j in await journals(sandbox)] == [first.broker_id]


async def test_a_refused_journal_fails_its_intent_gives_back_the_reservation_and_alerts(
    sandbox: Sandbox, context: Context, redis_client: redis.Redis
) -> None:
    """More than RF holds: Alpaca's 403 fails the intent with its message, the guardrail reservation is given
    back, the ``journal_refused`` alert is raised and nothing moved."""
    intent = cover_intent("99999999.00")
    limits = {"cover_mode": "on", "max_cover_per_account": "100000000", "max_daily_amount": "100000000"}
    async with context(**limits) as ctx:
        assert (await ctx.guard.check("cover", intent.amount, day=date.fromisoformat(DAY))).allowed
        assert not await send_journal(ctx, intent, RF, customer(1))
    saved = redis_client.hgetall(keys.intent(intent.key))
    assert saved[b"status"] == b"failed"
    assert b"not available" in saved[b"detail"]
    assert [event for event, _ in audit(redis_client, intent.key)] == ["cover_sent", "cover_failed"]
    assert int(redis_client.get(keys.moved_today(date.fromisoformat(DAY))) or 0) == 0  # type: ignore[arg-type]
    assert alert_state(redis_client, f"journal-{intent.key}") == "triggered"
    assert await journals(sandbox) == []


async def test_a_journal_still_pending_after_the_wait_is_resumed_by_a_later_run(
    sandbox: Sandbox, context: Context, redis_client: redis.Redis
) -> None:
    """60.00 is over the sandbox's 50.00 JNLC limit, so Alpaca holds it pending: after the wait the job raises
    Waiting and alerts ``journal_pending``; once Alpaca approves it, following it again finds it executed."""
    intent = cover_intent("60.00")
    async with context() as ctx:
        with pytest.raises(Waiting, match="pending"):
            await send_journal(ctx, intent, RF, customer(1))
        assert (intent.status, intent.broker_status) == (IntentStatus.SENT, "pending")
        assert alert_state(redis_client, f"journal-pending-{intent.key}") == "triggered"
        await sandbox.ok("POST", f"/sandbox/journals/{intent.broker_id}/approve")
        assert await follow_journal(ctx, intent)
    assert [event for event, _ in audit(redis_client, intent.key)] == [
        "cover_sent",
        "cover_accepted",
        "cover_still_pending",
        "cover_executed",
    ]
    assert len(await journals(sandbox)) == 1


async def test_a_rejected_journal_fails_and_alerts(
    sandbox: Sandbox, context: Context, redis_client: redis.Redis
) -> None:
    """A pending journal Alpaca rejects: the follow ends False, the intent is failed, ``journal_rejected`` raised."""
    intent = cover_intent("60.00")
    async with context() as ctx:
        with pytest.raises(Waiting):
            await send_journal(ctx, intent, RF, customer(1))
        await sandbox.ok("POST", f"/sandbox/journals/{intent.broker_id}/reject")
        assert not await follow_journal(ctx, intent)
    assert (intent.status, intent.broker_status) == (IntentStatus.FAILED, "rejected")
    assert alert_state(redis_client, f"journal-{intent.key}") == "triggered"


@pytest.mark.parametrize(
    ("verdict", "status", "alerted"),
    [
        (Verdict(True, True, "cover mode is dry-run"), IntentStatus.DRY_RUN, ""),
        (Verdict(False, False, "over the cover cap of 500.00"), IntentStatus.REFUSED, "triggered"),
    ],
    ids=["dry-run", "refused"],
)
async def test_held_back_audits_and_counts_without_sending(
    sandbox: Sandbox,
    context: Context,
    redis_client: redis.Redis,
    verdict: Verdict,
    status: IntentStatus,
    alerted: str,
) -> None:
    """A dry-run or refused verdict marks the intent, audits it with the reason and counts it; a refusal is
    alerted (``guardrail``), a dry run is not; no journal is posted. An allowed verdict holds nothing back."""
    intent = cover_intent("40.00")
    async with context() as ctx:
        assert not await held_back(ctx, intent, Verdict(True, False, ""), "cover")
        assert await held_back(ctx, intent, verdict, "cover")
    assert intent.status is status
    assert intent.detail == verdict.reason
    assert audit(redis_client, intent.key) == [(f"cover_{status}", {"reason": verdict.reason})]
    assert alert_state(redis_client, f"guard-{intent.key}") == alerted
    assert job_sample(redis_client, "settlekeeper_money_movements_total", kind="cover", outcome=status) == 1
    assert await journals(sandbox) == []


async def test_the_kill_switch_and_a_lapsed_run_lock_stop_the_call_before_anything_is_sent(
    sandbox: Sandbox, context: Context, redis_client: redis.Redis
) -> None:
    """Set after the plan: the kill switch raises KillSwitchOn naming its reason; a settle run whose lock is no
    longer its own raises RunLockLost. Neither audits a ``sent`` nor posts a journal."""
    async with context() as ctx:
        redis_client.set(keys.KILL_SWITCH, "ops: bank incident")
        with pytest.raises(KillSwitchOn, match="ops: bank incident"):
            await send_journal(ctx, cover_intent("40.00"), RF, customer(1))
        redis_client.delete(keys.KILL_SWITCH)
        ctx.lock = Lock(ctx.redis, "sk:test:settle-lock", timeout=30)  # never acquired: not ours
        with pytest.raises(RunLockLost):
            await send_journal(ctx, cover_intent("40.00"), RF, customer(1))
    assert audit(redis_client, cover_intent("40.00").key) == []
    assert await journals(sandbox) == []


def test_idempotency_keys_are_36_characters_stable_and_distinct() -> None:
    """The key is a UUID derived from the intent and its SI account: the same on every try, different for another
    intent, and for the same intent of another SI account's deployment."""
    key = idempotency_key("7536050SI", "cover-8100000001-2026-11-24")
    assert len(key) == 36
    assert key == idempotency_key("7536050SI", "cover-8100000001-2026-11-24")
    assert key != idempotency_key("7536050SI", "cover-8100000001-2026-11-25")
    assert key != idempotency_key("7536050SI2", "cover-8100000001-2026-11-24")


def test_a_job_without_a_redis_url_refuses_to_run(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> None:
    """Without SETTLEKEEPER_REDIS_URL a job cannot build its clients: a ConfigError naming the variable, and
    the run is counted as failed."""
    monkeypatch.delenv("SETTLEKEEPER_REDIS_URL", raising=False)

    async def work(ctx: JobContext) -> None:
        raise AssertionError("the work must not start")

    with pytest.raises(ConfigError, match="SETTLEKEEPER_REDIS_URL"):
        run_job(work, redis_client, metric_name="runtime.test")
    runs = job_sample(redis_client, "settlekeeper_job_duration_seconds_count", job="runtime.test", outcome="failed")
    assert runs == 1


async def test_a_permanent_error_in_a_job_is_not_retried_by_rq(
    sandbox: Sandbox, job_env: Callable[..., None], run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A cover of an account Alpaca does not know (NotFoundError) fails at once: retries_left 0, no retry
    scheduled, no journal."""
    job_id = f"cover-8199999999-{DAY}"
    assert enqueue_action(redis_client, Action("0-0", job_id, "cover", "8199999999", DAY))
    await run_worker()
    job = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer)
    assert (job.get_status(), job.retries_left) == (JobStatus.FAILED, 0)
    assert "NotFoundError" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]
    assert redis_client.zcard("rq:scheduled:settlekeeper-cover") == 0
    assert await journals(sandbox) == []
