"""The other half of the contract: every request settlekeeper sends in a day (listener, heal poller, limits
monitor, ladder, cover, settle, reports) is one the document describes, with documented parameters and values
and a body its request schema accepts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time
from typing import Any

import pytest
import redis

from funding.calendar import at_et
from tests.support.contract import operation_path, request_errors
from tests.support.cover import ACCOUNT, cancel_at_8pm, fund_and_spend, run_cover
from tests.support.jobs import RunWorker
from tests.support.listener import ListenerFactory
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.scenario import until_connected
from tests.support.settle import create_transfers, et, run_settle, run_step

BIG_JNLC = {"jnlc_transaction_limit": "1000000", "jnlc_daily_limit": "10000000"}


async def a_day_of_work(
    sandbox: Sandbox, job_env: Callable[..., None], run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Monday's transfer lapses Tuesday (every ladder step, the 8 PM cancellation, the cover, the reports);
    Wednesday's are settled Friday from RF."""
    job_env(sandbox)
    tuesday = await fund_and_spend(sandbox)
    for step, (hour, minute) in {"digest": (9, 30), "warning": (11, 30), "page": (12, 30), "late": (13, 0)}.items():
        await sandbox.set_clock(et(tuesday, hour, minute))
        await run_step(redis_client, run_worker, step, tuesday)
    await cancel_at_8pm(sandbox, tuesday)
    await run_step(redis_client, run_worker, "cancellations", tuesday)
    await run_cover(redis_client, run_worker, ACCOUNT, tuesday)
    await sandbox.set_clock(at_et(date.fromisoformat(tuesday), time(23, 40)))
    await run_settle(redis_client, run_worker, tuesday, "sweep")
    await sandbox.set_clock(at_et(date(2026, 11, 25), time(10, 0)))
    created = await create_transfers(sandbox, ["120.00", "80.50"], first=2)
    friday = created[0]["deadline"]
    await sandbox.set_clock(et(friday, 12))
    assert (await run_settle(redis_client, run_worker, friday))["outcome"] == "done"


async def test_every_request_of_a_day_is_one_the_document_describes(
    make_sandbox: SandboxFactory,
    job_env: Callable[..., None],
    run_worker: RunWorker,
    redis_client: redis.Redis,
    start_listener: ListenerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Paths, query parameters (name, type, format, enum, minimum) and JSON bodies all fit Alpaca's document."""
    monkeypatch.setattr("jobs.settlements.LIST_IDENTITIES_FROM", 1)  # the settlements read identities by listing
    monkeypatch.setattr("jobs.settlements.ACCOUNTS_PER_LISTED_PAGE", 1)
    monkeypatch.setattr("broker.paging.ACCOUNTS_PAGE", 3)  # and page on, with ``created_after``
    monkeypatch.setattr("sandbox.api.MAX_ACCOUNTS", 3)
    sandbox = await make_sandbox(settlement_delay_seconds=0, **BIG_JNLC)
    running = await start_listener(sandbox, streams="activities,journals,nta", limits_poll_seconds=0.2)
    await until_connected(running)
    await a_day_of_work(sandbox, job_env, run_worker, redis_client)
    await running.halt()

    sent: list[dict[str, Any]] = (await sandbox.ok("GET", "/sandbox/requests"))["requests"]
    problems = [p for r in sent for p in request_errors(r["method"], r["path"], r["query"], r["body"])]
    operations = sorted({f"{r['method']} {operation_path(r['path'])}" for r in sent})
    print(f"\n{len(sent)} requests checked against the document, {len(operations)} operations: {operations}")
    assert not problems, "\n".join(sorted(set(problems)))
    assert {"POST /v1/journals", "POST /v1/instant_funding/settlements", "GET /v2/calendar/{market}"} <= set(operations)
    assert any(r["path"] == "/v1/accounts" and "created_after=" in r["query"] for r in sent)


def test_the_request_check_catches_what_the_client_used_to_send() -> None:
    """offset=0 (the old first page), a date for a date-time ``since``, an unknown parameter, a bad body: caught."""
    assert request_errors("GET", "/v1/instant_funding", "limit=100&offset=0", "")
    assert request_errors("GET", "/v2/events/journals/status", "since=2026-11-20", "")
    assert request_errors("GET", "/v1/instant_funding", "colour=blue", "")
    assert request_errors("POST", "/v1/journals", "", '{"entry_type": "JNLC"}')
    assert request_errors("GET", "/v1/instant_funding", "limit=100&offset=100", "") == []
