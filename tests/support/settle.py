"""Helpers for the settle scenarios: run the job, read the sandbox's books and settlekeeper's audit trail."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from config.settings import load_settings
from funding.calendar import ET
from funding.records import Action
from jobs.registry import enqueue_action, enqueue_phase
from jobs.runtime import JobContext, job_context
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox

SI, RF, FW = "7536050SI", "7536050RF", "7536050FW"


def et(day: str, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """``hour:minute:second`` US/Eastern on ``day`` (an ISO date)."""
    return datetime.combine(date.fromisoformat(day), time(hour, minute, second), tzinfo=ET)


def total(amounts: Iterable[str | Decimal]) -> Decimal:
    return sum((Decimal(a) for a in amounts), Decimal(0))


async def run_settle(redis_client: redis.Redis, run_worker: RunWorker, day: str, job: str = "settle") -> dict[str, Any]:
    """One settle run for ``day`` through a real RQ worker; ``job`` is a phase name or ``replan-<n>``.

    Returns the job's report; the job must have finished (not failed).
    """
    if job.startswith("replan-"):
        job_id = f"replan-{day}-{job.removeprefix('replan-')}"
        assert enqueue_action(redis_client, Action("0-1", job_id, "replan", "", day))
    else:
        job_id = f"phase-{job.replace('_', '-')}-{day}"
        assert enqueue_phase(redis_client, job, day)
    assert await run_worker()
    done = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer)
    assert done.get_status() == JobStatus.FINISHED, done.latest_result()
    report = done.return_value()
    assert isinstance(report, dict)
    return report


@contextlib.asynccontextmanager
async def settle_context(redis_client: redis.Redis) -> AsyncIterator[JobContext]:
    """A job context as ``run_job`` builds it (settings from the environment ``job_env`` prepared)."""
    async with job_context(load_settings(), redis_client) as ctx:
        yield ctx


async def create_transfers(sandbox: Sandbox, amounts: list[str], first: int = 1) -> list[dict[str, Any]]:
    """One transfer per customer account (8100000001, ...), then one sandbox second so they execute."""
    created = [await sandbox.create_transfer(f"81{first + n:08d}", amount) for n, amount in enumerate(amounts)]
    await sandbox.advance(1)
    return created


async def transfers(sandbox: Sandbox, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transfers as the sandbox holds them now."""
    return [await sandbox.ok("GET", f"/v1/instant_funding/{row['id']}") for row in rows]


async def journals(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(await sandbox.ok("GET", "/v1/journals"))


async def settlements(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list((await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"])


async def reconciled(sandbox: Sandbox) -> dict[str, dict[str, Decimal]]:
    """Assert that the ledger explains every balance; return ``{account_no: {"cash": .., "memoposts": ..}}``."""
    entries = (await sandbox.ok("GET", "/sandbox/ledger"))["entries"]
    sums: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        sums[entry["account_no"], entry["balance"]] += Decimal(entry["delta"])
        assert sums[entry["account_no"], entry["balance"]] == Decimal(entry["after"]), entry
    balances = {
        row["account_number"]: {"cash": Decimal(row["cash"]), "memoposts": Decimal(row["memoposts"])}
        for row in (await sandbox.ok("GET", "/sandbox/accounts"))["accounts"]
    }
    assert {account_no for account_no, _ in sums} <= set(balances)
    for account_no, balance in balances.items():
        assert sums[account_no, "cash"] == balance["cash"], account_no
        assert sums[account_no, "memoposts"] == balance["memoposts"], account_no
    return balances


async def ledger_length(sandbox: Sandbox) -> int:
    return len((await sandbox.ok("GET", "/sandbox/ledger"))["entries"])


async def journal_into_si(sandbox: Sandbox, journal: dict[str, Any]) -> bool:
    """True when ``journal`` goes RF → SI."""
    return bool(
        journal["from_account"] == await sandbox.account_id(RF)
        and journal["to_account"] == await sandbox.account_id(SI)
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream(redis_client: redis.Redis, key: str) -> list[dict[str, str]]:
    """Every entry of a Redis stream, oldest first, decoded."""
    return [{_text(k): _text(v) for k, v in (fields or {}).items()} for _, fields in redis_client.xrange(key) or []]


def hash_of(redis_client: redis.Redis, key: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in redis_client.hgetall(key).items()}


def audit(redis_client: redis.Redis) -> list[dict[str, str]]:
    """The audit trail ``sk:audit``, oldest first."""
    return stream(redis_client, keys.AUDIT)


def audit_events(redis_client: redis.Redis) -> list[str]:
    return [row["event"] for row in audit(redis_client)]


def alerts(redis_client: redis.Redis, kind: str | None = None) -> list[dict[str, str]]:
    """Alerts raised on ``sk:alerts`` (of one kind when given)."""
    return [row for row in stream(redis_client, keys.ALERTS) if kind is None or row["kind"] == kind]


def intents(redis_client: redis.Redis, deadline: str) -> dict[str, dict[str, str]]:
    """Every intent of ``deadline``, by key."""
    found = {}
    for key in sorted(_text(k) for k in redis_client.smembers(keys.intents_of(deadline))):
        found[key] = hash_of(redis_client, keys.intent(key))
    return found


def intent_transfers(redis_client: redis.Redis, key: str) -> set[str]:
    return {_text(m) for m in redis_client.smembers(keys.intent_transfers(key))}


async def run_step(redis_client: redis.Redis, run_worker: RunWorker, step: str, day: str) -> dict[str, Any]:
    """Enqueue the scheduler's phase ``ladder_<step>`` for ``day`` and run it through a real RQ worker."""
    assert enqueue_phase(redis_client, f"ladder_{step}", day)
    assert await run_worker()
    job = Job.fetch(f"phase-ladder-{step}-{day}", connection=redis_client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    report = job.return_value()
    assert isinstance(report, dict)
    return report
