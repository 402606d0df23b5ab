"""Crash tests: a real worker is killed at every step boundary of a money job, and the job runs again.

The worker is ``settlekeeper work --burst --worker-class simple`` in a subprocess, with
``SETTLEKEEPER_FAILPOINT`` naming the step where :mod:`jobs.failpoints` kills it (``os._exit(137)``, as
a SIGKILL would: no ``finally``, the RQ job left in the started registry, the settle lock left held).
The job is then run again without the failpoint: by the next phase (``settle_retry`` at 12:30, the 20:05
sweep), followed by RQ's retry of the abandoned job, which must then move nothing; or by that retry alone.
Afterwards every intent is ``done`` and matches exactly one journal or settlement at the Broker API, no
journal or settlement exists without an intent, and the sandbox ledger reconciles to the cent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from funding.calendar import ET
from funding.records import Action
from jobs.failpoints import FAILPOINTS, KILLED_EXIT_STATUS
from jobs.registry import COVER_QUEUE, JOB_TIMEOUT_SECONDS, SETTLE_QUEUE, enqueue_action, enqueue_phase, queue
from jobs.settlements import INTENT_TAG
from store import keys
from tests.support.jobs import JOB_ENV
from tests.support.sandbox import Sandbox, SandboxFactory

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "cli.main", "work", "--burst", "--worker-class", "simple"]
EXIT_WAIT_SECONDS = 30.0
"""Bound on one burst worker's run (they take about a second)."""

SETTLE_AMOUNTS = {"8100000001": "100.00", "8100000002": "250.50", "8100000003": "75.25"}
"""Transfers due on the deadline: settled in one batch, funded by one RF → SI journal of their sum."""
COVER_SPENT = {"8100000001": ("3", "20.00"), "8100000002": ("7", "6.50"), "8100000003": ("1", "12.25")}
"""(qty, price) each customer buys with a 100.00 transfer's buying power: the debit its cancellation leaves."""
JOURNAL_FAILPOINTS = [name for name in FAILPOINTS if name.startswith("journal.")]

LEFT_BY_SETTLE = {
    "journal.before_call": (0, 0, [("fund", "sent", False)]),
    "journal.after_call": (1, 0, [("fund", "sent", False)]),
    "journal.after_outcome": (1, 0, [("fund", "sent", True)]),
    "settlement.before_call": (1, 0, [("fund", "done", True), ("settle", "sent", False)]),
    "settlement.after_call": (1, 1, [("fund", "done", True), ("settle", "sent", False)]),
    "settlement.before_outcome": (1, 1, [("fund", "done", True), ("settle", "sent", True)]),
    "settlement.after_outcome": (1, 1, [("fund", "done", True), ("settle", "done", True)]),
}
"""What a settle run killed at each failpoint leaves: (journals at Alpaca, settlements at Alpaca, intents as
(kind, status, Alpaca id recorded)). ``settlement.before_outcome`` has the id: the POST answers ``PENDING``
and the follow loop saves it before the poll that sees ``COMPLETED``."""
LEFT_BY_COVER = {
    "journal.before_call": (0, 0, [("cover", "sent", False)]),
    "journal.after_call": (1, 0, [("cover", "sent", False)]),
    "journal.after_outcome": (1, 0, [("cover", "sent", True)]),
}
"""The same for the first cover job of the night (the other two never started)."""
RERUN_OUTCOME = {name: "done" if name.startswith("journal.") else "nothing_due" for name in FAILPOINTS}
"""What the settle re-run reports: after a settlement crash its resume finishes that settlement and its own
round then finds nothing due (the report counts only what its round settled)."""


@dataclass(frozen=True)
class WorkerExit:
    status: int
    output: str

    @property
    def failpoints(self) -> list[str]:
        """The failpoints the worker reported reaching (from its JSON log lines)."""
        reached = []
        for line in self.output.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "failpoint_reached":
                reached.append(str(entry["failpoint"]))
        return reached


async def run_worker_process(sandbox: Sandbox, redis_url: str, failpoint: str = "") -> WorkerExit:
    """Run a real burst worker in a subprocess (the in-process sandbox keeps serving) and wait for its exit."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SETTLEKEEPER_REDIS_URL": redis_url,
        "SETTLEKEEPER_BROKER_URL": sandbox.base_url,
        "SETTLEKEEPER_LOG_FORMAT": "json",
        **JOB_ENV,
        # the settle lock lasts 4x this: long enough that the dead run's lock is seen still held
        "SETTLEKEEPER_SETTLEMENT_WAIT_SECONDS": "5",
        "SETTLEKEEPER_FAILPOINT": failpoint,
    }
    proc = await asyncio.create_subprocess_exec(
        *WORKER, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), EXIT_WAIT_SECONDS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return WorkerExit(proc.returncode, output.decode(errors="replace"))


async def kill_at(sandbox: Sandbox, redis_url: str, failpoint: str) -> None:
    """Run the queued jobs with ``failpoint`` set; the worker must die there, and only there."""
    died = await run_worker_process(sandbox, redis_url, failpoint)
    assert (died.status, died.failpoints) == (KILLED_EXIT_STATUS, [failpoint]), died.output[-3000:]


async def run_clean(sandbox: Sandbox, redis_url: str) -> None:
    """Run the queued jobs without a failpoint; the worker must finish normally."""
    done = await run_worker_process(sandbox, redis_url)
    assert (done.status, done.failpoints) == (0, []), done.output[-3000:]


async def assert_left_behind(
    sandbox: Sandbox, connection: redis.Redis, left: tuple[int, int, list[tuple[str, str, bool]]]
) -> None:
    """The dead run left exactly these journals, settlements and intents (so the re-run has work to do)."""
    journals = await sandbox.ok("GET", "/v1/journals")
    settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
    found = sorted((i["kind"], i["status"], bool(i["broker_id"])) for i in intents(connection).values())
    assert (len(journals), len(settlements), found) == left


def fetch(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


def outcome(connection: redis.Redis, job_id: str) -> str:
    """The ``outcome`` a finished job reported."""
    job = fetch(connection, job_id)
    assert job.get_status() == JobStatus.FINISHED
    report = job.return_value()
    assert isinstance(report, dict)
    return str(report["outcome"])


def abandoned(connection: redis.Redis, queue_name: str) -> list[str]:
    """Ids of the jobs a dead worker left in the queue's started registry."""
    registry = StartedJobRegistry(queue_name, connection=connection, serializer=JSONSerializer)
    return registry.get_job_ids(cleanup=False)


def requeue_abandoned(connection: redis.Redis, queue_name: str, job_id: str) -> None:
    """What RQ does once the dead job's timeout has passed: clean the started registry, which schedules a
    retry (``Retry(max=3)``); the retry is then queued at once instead of after its 10 s interval."""
    registry = StartedJobRegistry(queue_name, connection=connection, serializer=JSONSerializer)
    registry.cleanup(timestamp=time.time() + 2 * JOB_TIMEOUT_SECONDS + 3600)
    assert fetch(connection, job_id).get_status() == JobStatus.SCHEDULED
    queue(queue_name, connection).scheduled_job_registry.requeue(job_id)
    assert fetch(connection, job_id).get_status() == JobStatus.QUEUED


def assert_ran_after(connection: redis.Redis, later_id: str, earlier_id: str) -> None:
    """Job ``later_id`` started once job ``earlier_id`` had ended (so the earlier one did the recovery)."""
    later, earlier = fetch(connection, later_id), fetch(connection, earlier_id)
    assert later.started_at is not None
    assert earlier.ended_at is not None
    assert later.started_at >= earlier.ended_at


def release_dead_settle_lock(connection: redis.Redis, deadline: str) -> None:
    """The killed run never released the settle lock; by the next phase its TTL has run out."""
    lock = keys.plan_lock(deadline)
    assert connection.pttl(lock) > 0, "the killed run should still hold the settle lock"
    connection.delete(lock)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def intents(connection: redis.Redis) -> dict[str, dict[str, str]]:
    """Every intent hash in Redis, by key."""
    found = {}
    for name in connection.scan_iter(match=keys.intent("*")):
        if connection.type(name) != b"hash":
            continue  # sk:intent:<key>:transfers sets
        raw = connection.hgetall(name)
        entry = {text(k): text(v) for k, v in raw.items()}
        found[entry["key"]] = entry
    return found


async def cash_books(sandbox: Sandbox) -> dict[str, Decimal]:
    """Cash of every account; each must equal the sum of its ledger entries, to the cent (same for memoposts)."""
    accounts = (await sandbox.ok("GET", "/sandbox/accounts"))["accounts"]
    entries = (await sandbox.ok("GET", "/sandbox/ledger"))["entries"]
    for account in accounts:
        for balance in ("cash", "memoposts"):
            total = sum(
                (
                    Decimal(e["delta"])
                    for e in entries
                    if e["account_no"] == account["account_number"] and e["balance"] == balance
                ),
                Decimal(0),
            )
            assert total == Decimal(account[balance]), (account["account_number"], balance, total, account)
    return {a["account_number"]: Decimal(a["cash"]) for a in accounts}


async def ledger_seq(sandbox: Sandbox) -> int:
    entries = (await sandbox.ok("GET", "/sandbox/ledger"))["entries"]
    return int(entries[-1]["seq"]) if entries else 0


async def external_cash_since(sandbox: Sandbox, seq: int, accounts: set[str]) -> Decimal:
    """Net cash that entered the books since ``seq`` from outside them (not a journal or sweep between two
    of their accounts)."""
    entries = (await sandbox.ok("GET", "/sandbox/ledger", params={"since": str(seq)}))["entries"]
    return sum(
        (Decimal(e["delta"]) for e in entries if e["balance"] == "cash" and e["counterparty"] not in accounts),
        Decimal(0),
    )


async def assert_one_movement_per_intent(sandbox: Sandbox, connection: redis.Redis) -> dict[str, dict[str, str]]:
    """Every intent is done and names exactly one journal or settlement; nothing at Alpaca lacks an intent."""
    found = intents(connection)
    assert found
    assert {key: i["status"] for key, i in found.items()} == dict.fromkeys(found, "done")
    journals = {j["id"]: j for j in await sandbox.ok("GET", "/v1/journals")}
    settlements = {s["id"]: s for s in (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]}
    journal_intents = [i for i in found.values() if i["kind"] in ("fund", "cover")]
    settle_intents = [i for i in found.values() if i["kind"] == "settle"]
    assert len(journal_intents) + len(settle_intents) == len(found)
    assert sorted(i["broker_id"] for i in journal_intents) == sorted(journals)
    assert sorted(i["broker_id"] for i in settle_intents) == sorted(settlements)
    for intent in journal_intents:
        journal = journals[intent["broker_id"]]
        assert (journal["status"], Decimal(journal["net_amount"])) == ("executed", Decimal(intent["amount"]))
        assert journal["description"].startswith(f"settlekeeper {intent['key']}: ")
    for intent in settle_intents:
        settlement = settlements[intent["broker_id"]]
        assert (settlement["status"], settlement["additional_info"]) == ("COMPLETED", INTENT_TAG + intent["key"])
        assert Decimal(settlement["total_amount"]) + Decimal(settlement["interest_amount"]) == Decimal(intent["amount"])
    return found


@dataclass(frozen=True)
class SettleDay:
    deadline: str
    transfer_ids: list[str]
    rf_before: Decimal
    seq: int
    """Ledger position before the transfers were created."""


async def settle_day(sandbox: Sandbox) -> SettleDay:
    """Three executed transfers, and the clock at 12:00 ET on their deadline (the ``settle`` phase)."""
    seq = await ledger_seq(sandbox)
    rf_before = await sandbox.cash("7536050RF")
    created = [await sandbox.create_transfer(account, amount) for account, amount in SETTLE_AMOUNTS.items()]
    await sandbox.advance(1)
    deadline = str(created[0]["deadline"])
    await sandbox.set_clock(datetime.fromisoformat(f"{deadline}T12:00:00").replace(tzinfo=ET))
    return SettleDay(deadline, [str(t["id"]) for t in created], rf_before, seq)


async def assert_settled_once(sandbox: Sandbox, connection: redis.Redis, day: SettleDay) -> None:
    """One RF → SI journal of the sum due, one settlement of it, every transfer COMPLETED, books to the cent."""
    due = sum((Decimal(a) for a in SETTLE_AMOUNTS.values()), Decimal(0))
    found = await assert_one_movement_per_intent(sandbox, connection)
    assert sorted(i["kind"] for i in found.values()) == ["fund", "settle"]
    assert {Decimal(i["amount"]) for i in found.values()} == {due}
    for transfer_id in day.transfer_ids:
        transfer = await sandbox.ok("GET", f"/v1/instant_funding/{transfer_id}")
        assert (transfer["status"], transfer["remaining_payable"], transfer["total_interest"]) == (
            "COMPLETED",
            "0.00",
            "0.00",
        )
    cash = await cash_books(sandbox)
    assert day.rf_before - cash["7536050RF"] == due
    assert cash["7536050SI"] == Decimal("0.00")
    for account, amount in SETTLE_AMOUNTS.items():
        assert cash[account] == Decimal(amount)
    # Alpaca lent the customers `due` and was paid back `due`: the books' total cash is where it started
    assert await external_cash_since(sandbox, day.seq, set(cash)) == Decimal("0.00")


@pytest.mark.parametrize("failpoint", FAILPOINTS)
async def test_settle_killed_then_next_phase_moves_money_once(
    failpoint: str, make_sandbox: SandboxFactory, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """Killed at any step of the 12:00 settle, the 12:30 phase finishes it: one journal, one settlement."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    day = await settle_day(sandbox)
    job_id = f"phase-settle-{day.deadline}"
    assert enqueue_phase(redis_client, "settle", day.deadline)
    await kill_at(sandbox, session_redis_url, failpoint)
    await assert_left_behind(sandbox, redis_client, LEFT_BY_SETTLE[failpoint])
    assert abandoned(redis_client, SETTLE_QUEUE) == [job_id]
    release_dead_settle_lock(redis_client, day.deadline)
    await sandbox.set_clock(datetime.fromisoformat(f"{day.deadline}T12:30:00").replace(tzinfo=ET))
    assert enqueue_phase(redis_client, "settle_retry", day.deadline)
    requeue_abandoned(redis_client, SETTLE_QUEUE, job_id)  # production does both; the retry runs second
    await run_clean(sandbox, session_redis_url)
    assert outcome(redis_client, f"phase-settle-retry-{day.deadline}") == RERUN_OUTCOME[failpoint]
    assert outcome(redis_client, job_id) == "nothing_due"
    assert_ran_after(redis_client, job_id, f"phase-settle-retry-{day.deadline}")
    await assert_settled_once(sandbox, redis_client, day)


@pytest.mark.parametrize("failpoint", FAILPOINTS)
async def test_settle_killed_then_requeued_moves_money_once(
    failpoint: str, make_sandbox: SandboxFactory, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """Killed at any step of the 12:00 settle, RQ's retry of the abandoned job finishes it exactly once."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    day = await settle_day(sandbox)
    job_id = f"phase-settle-{day.deadline}"
    assert enqueue_phase(redis_client, "settle", day.deadline)
    await kill_at(sandbox, session_redis_url, failpoint)
    await assert_left_behind(sandbox, redis_client, LEFT_BY_SETTLE[failpoint])
    assert abandoned(redis_client, SETTLE_QUEUE) == [job_id]
    release_dead_settle_lock(redis_client, day.deadline)
    requeue_abandoned(redis_client, SETTLE_QUEUE, job_id)
    await run_clean(sandbox, session_redis_url)
    assert outcome(redis_client, job_id) == RERUN_OUTCOME[failpoint]
    assert abandoned(redis_client, SETTLE_QUEUE) == []
    await assert_settled_once(sandbox, redis_client, day)


@dataclass(frozen=True)
class CoverNight:
    deadline: str
    rf_before: Decimal
    seq: int
    debits: dict[str, Decimal]


async def cover_night(sandbox: Sandbox, connection: redis.Redis) -> CoverNight:
    """Three customers spend part of a 100.00 transfer, nothing is settled, 8 PM cancels them all: three
    debits; the listener's three cover jobs are queued."""
    seq = await ledger_seq(sandbox)
    rf_before = await sandbox.cash("7536050RF")
    created = [await sandbox.create_transfer(account, "100.00") for account in COVER_SPENT]
    await sandbox.advance(1)
    for account, (qty, price) in COVER_SPENT.items():
        trade = {"account_no": account, "symbol": "AAPL", "side": "buy", "qty": qty, "price": price}
        await sandbox.ok("POST", "/sandbox/trades", trade)
    deadline = str(created[0]["deadline"])
    await sandbox.set_clock(datetime.fromisoformat(f"{deadline}T20:05:00").replace(tzinfo=ET))
    debits = {account: Decimal(qty) * Decimal(price) for account, (qty, price) in COVER_SPENT.items()}
    for account, debit in debits.items():
        assert await sandbox.cash(account) == -debit
        action = Action("1-0", f"cover-{account}-{deadline}", "cover", account, deadline)
        assert enqueue_action(connection, action)
    return CoverNight(deadline, rf_before, seq, debits)


async def assert_covered_once(sandbox: Sandbox, connection: redis.Redis, night: CoverNight) -> None:
    """One RF → customer journal per debit, of exactly the debit; every account back to 0.00; books to the cent."""
    found = await assert_one_movement_per_intent(sandbox, connection)
    assert {i["account_no"]: Decimal(i["amount"]) for i in found.values()} == night.debits
    assert {i["kind"] for i in found.values()} == {"cover"}
    for account in night.debits:
        assert outcome(connection, f"cover-{account}-{night.deadline}") == "covered"
    cash = await cash_books(sandbox)
    spent = sum(night.debits.values(), Decimal(0))
    assert night.rf_before - cash["7536050RF"] == spent
    assert {account: cash[account] for account in night.debits} == dict.fromkeys(night.debits, Decimal("0.00"))
    assert cash["7536050SI"] == Decimal("0.00")
    # the instant funding came and went; only what the customers paid the market left the books
    assert await external_cash_since(sandbox, night.seq, set(cash)) == -spent


@pytest.mark.parametrize("failpoint", JOURNAL_FAILPOINTS)
async def test_cover_killed_then_sweep_moves_money_once(
    failpoint: str, make_sandbox: SandboxFactory, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """Killed at any step of a cover journal, the 20:05 sweep finishes it: one journal per debit."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, jnlc_transaction_limit="1000")
    night = await cover_night(sandbox, redis_client)
    job_id = f"cover-{next(iter(COVER_SPENT))}-{night.deadline}"
    await kill_at(sandbox, session_redis_url, failpoint)
    await assert_left_behind(sandbox, redis_client, LEFT_BY_COVER[failpoint])
    assert abandoned(redis_client, COVER_QUEUE) == [job_id]
    assert enqueue_phase(redis_client, "sweep", night.deadline)
    requeue_abandoned(redis_client, COVER_QUEUE, job_id)  # production does both; the retry runs after the sweep
    await run_clean(sandbox, session_redis_url)
    sweep = fetch(redis_client, f"phase-sweep-{night.deadline}")
    assert sweep.get_status() == JobStatus.FINISHED
    assert sweep.return_value() == {"deadline": night.deadline, "accounts": 3, "covered": 3, "pending": 0}
    assert_ran_after(redis_client, job_id, sweep.id)
    await assert_covered_once(sandbox, redis_client, night)


@pytest.mark.parametrize("failpoint", JOURNAL_FAILPOINTS)
async def test_cover_killed_then_requeued_moves_money_once(
    failpoint: str, make_sandbox: SandboxFactory, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """Killed at any step of a cover journal, RQ's retry of the abandoned job finishes it: one journal per debit."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, jnlc_transaction_limit="1000")
    night = await cover_night(sandbox, redis_client)
    job_id = f"cover-{next(iter(COVER_SPENT))}-{night.deadline}"
    await kill_at(sandbox, session_redis_url, failpoint)
    await assert_left_behind(sandbox, redis_client, LEFT_BY_COVER[failpoint])
    assert abandoned(redis_client, COVER_QUEUE) == [job_id]
    requeue_abandoned(redis_client, COVER_QUEUE, job_id)
    await run_clean(sandbox, session_redis_url)
    assert abandoned(redis_client, COVER_QUEUE) == []
    assert {fetch(redis_client, f"cover-{a}-{night.deadline}").get_status() for a in COVER_SPENT} == {
        JobStatus.FINISHED
    }
    await assert_covered_once(sandbox, redis_client, night)
