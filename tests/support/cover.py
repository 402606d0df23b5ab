"""The cover scenarios tests share: a debit of 400.00 and the journals into an account."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date, time
from decimal import Decimal
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from funding.calendar import at_et
from funding.records import Action
from jobs.registry import enqueue_action
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox

ACCOUNT = "8100000001"
BIG_JNLC = {"jnlc_transaction_limit": "1000000", "jnlc_daily_limit": "10000000"}
"""JNLC limits high enough that a cover journal executes at once."""


Configure = Callable[..., None]


async def debit_of_400(sandbox: Sandbox) -> str:
    """The brief's scenario: IF 500, buy 400, canceled at 8 PM → cash −400; returns the deadline."""
    deadline = await fund_and_spend(sandbox)
    await cancel_at_8pm(sandbox, deadline)
    assert await sandbox.cash(ACCOUNT) == Decimal("-400.00")
    return deadline


async def run_cover(connection: redis.Redis, run_worker: RunWorker, account: str, deadline: str) -> dict[str, Any]:
    """Enqueue the listener's cover action (a finished one is deleted first: a re-run) and run it to the end."""
    job_id = f"cover-{account}-{deadline}"
    with contextlib.suppress(NoSuchJobError):
        fetch(connection, job_id).delete()
    assert enqueue_action(connection, Action("0-0", job_id, "cover", account, deadline))
    assert await run_worker()
    job = fetch(connection, job_id)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    return dict(job.return_value())


async def journals_to(sandbox: Sandbox, account: str) -> list[dict[str, Any]]:
    target = await sandbox.account_id(account)
    return [j for j in await sandbox.ok("GET", "/v1/journals") if j["to_account"] == target]


async def fund_and_spend(
    sandbox: Sandbox, account: str = ACCOUNT, amount: str = "500.00", spend: str = "400.00"
) -> str:
    """An executed IF transfer of ``amount`` of which the customer spends ``spend``; returns its deadline."""
    transfer = await sandbox.create_transfer(account, amount)
    await sandbox.advance(1)
    if Decimal(spend) > 0:
        await trade(sandbox, "buy", qty="1", price=spend, account=account)
    return str(transfer["deadline"])


async def cancel_at_8pm(sandbox: Sandbox, deadline: str) -> None:
    """Move the sandbox clock to 8 PM ET on ``deadline``: every unsettled transfer due then is CANCELED."""
    await sandbox.set_clock(at_et(date.fromisoformat(deadline), time(20, 0)))


def fetch(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


async def trade(sandbox: Sandbox, side: str, *, qty: str, price: str, account: str = ACCOUNT) -> None:
    body = {"account_no": account, "symbol": "AAPL", "side": side, "qty": qty, "price": price}
    await sandbox.ok("POST", "/sandbox/trades", body)
