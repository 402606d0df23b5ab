"""The cover job journals RF → customer for the debit an 8 PM cancellation left, before the T+2 margin call."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from funding.calendar import TradingCalendar, at_et
from funding.models import InstantFunding
from funding.money import quantize
from funding.records import Action
from jobs.registry import COVER_QUEUE, actions_for, enqueue_action, enqueue_covers, enqueue_phase, queue
from jobs.runtime import idempotency_key
from store import keys
from store.audit import Intent, IntentStatus, Ledger
from store.guardrails import Guardrails, Verdict
from store.transfers import TransferStore, journal_for_key
from tests.support.cover import (
    ACCOUNT,
    BIG_JNLC,
    Configure,
    cancel_at_8pm,
    debit_of_400,
    fetch,
    fund_and_spend,
    journals_to,
    run_cover,
    trade,
)
from tests.support.jobs import RunWorker
from tests.support.listener import ListenerFactory, eventually
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.transfers import OBSERVED, TODAY

MARGIN_RATE = Decimal("0.0850")
"""Settings.margin_rate's default, restated: the expectation is computed from the inputs, not the code."""


def stream(connection: redis.Redis, key: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in connection.xrange(key)]


def intent(connection: redis.Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in connection.hgetall(keys.intent(key)).items()}


async def sandbox_account(sandbox: Sandbox, account: str) -> dict[str, Any]:
    rows = (await sandbox.ok("GET", "/sandbox/accounts"))["accounts"]
    return dict(next(row for row in rows if row["account_number"] == account))


async def test_cancellation_debit_is_covered_once_before_the_margin_call(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF → customer journal of exactly the debit, one per (account, date) across runs; no margin call at T+2."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    rf_before = await sandbox.cash("7536050RF")
    first = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    second = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    assert (first["outcome"], first["amount"], first["cash"]) == ("covered", "400.00", "0.00")
    assert (second["outcome"], second["journal_id"]) == ("covered", first["journal_id"])
    journals = await journals_to(sandbox, ACCOUNT)
    assert [(j["net_amount"], j["status"]) for j in journals] == [("400.00", "executed")]
    assert journals[0]["from_account"] == await sandbox.account_id("7536050RF")
    assert rf_before - await sandbox.cash("7536050RF") == Decimal("400.00")
    assert intent(redis_client, f"cover-{ACCOUNT}-{deadline}")["status"] == "done"
    assert await sandbox.cash(ACCOUNT) >= 0
    t2 = TradingCalendar().next_trading_day(date.fromisoformat(deadline))
    await sandbox.set_clock(at_et(t2, time(9, 0)))
    assert (await sandbox_account(sandbox, ACCOUNT))["margin_call_on"] is None


async def test_journal_carries_an_idempotency_key_per_account_and_date(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Each cover's key is derived from (account, date) and is on the wire: Alpaca answers a replay with it."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await fund_and_spend(sandbox, ACCOUNT)
    await fund_and_spend(sandbox, "8100000002")
    await cancel_at_8pm(sandbox, deadline)
    for account in (ACCOUNT, "8100000002"):
        assert (await run_cover(redis_client, run_worker, account, deadline))["outcome"] == "covered"
    saved = [intent(redis_client, f"cover-{a}-{deadline}") for a in (ACCOUNT, "8100000002")]
    assert [i["idempotency_key"] for i in saved] == [
        idempotency_key("7536050SI", f"cover-{a}-{deadline}") for a in (ACCOUNT, "8100000002")
    ]
    assert len({i["idempotency_key"] for i in saved}) == 2
    [journal] = await journals_to(sandbox, ACCOUNT)
    body = {
        "from_account": await sandbox.account_id("7536050RF"),
        "to_account": await sandbox.account_id(ACCOUNT),
        "entry_type": "JNLC",
        "amount": "400.00",
        "description": f"settlekeeper {saved[0]['key']}: {saved[0]['why']}",
    }
    headers = {"Idempotency-Key": saved[0]["idempotency_key"]}
    replayed = await sandbox.ok("POST", "/v1/journals", body, headers=headers)
    assert replayed["id"] == journal["id"]
    status, _ = await sandbox.call("POST", "/v1/journals", {**body, "amount": "400.01"}, headers=headers)
    assert status == 422
    assert len(await sandbox.ok("GET", "/v1/journals")) == 2


async def test_a_cover_refused_for_want_of_rf_retries_under_a_new_key_once_rf_is_funded(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF short: Alpaca refuses the journal, and answers its key with that refusal again; once RF is funded the
    re-run sends a new key (attempt 2, recorded in the intent) and covers."""
    sandbox = await make_sandbox(rf_balance="100.00", **BIG_JNLC)
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    first = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    refused = intent(redis_client, f"cover-{ACCOUNT}-{deadline}")
    assert (first["outcome"], refused["status"], refused["x_attempt"]) == ("failed", "failed", "1")

    await sandbox.wire("7536050RF", "1000.00")
    second = await run_cover(redis_client, run_worker, ACCOUNT, deadline)

    retried = intent(redis_client, f"cover-{ACCOUNT}-{deadline}")
    assert (second["outcome"], second["cash"], retried["x_attempt"]) == ("covered", "0.00", "2")
    assert retried["idempotency_key"] == idempotency_key("7536050SI", f"cover-{ACCOUNT}-{deadline}#2")
    assert retried["idempotency_key"] != refused["idempotency_key"]
    body = {
        "from_account": await sandbox.account_id("7536050RF"),
        "to_account": await sandbox.account_id(ACCOUNT),
        "entry_type": "JNLC",
        "amount": "400.00",
        "description": f"settlekeeper {refused['key']}: {refused['why']}",
    }
    status, replay = await sandbox.call(
        "POST", "/v1/journals", body, headers={"Idempotency-Key": refused["idempotency_key"]}
    )
    assert (status, "not available" in replay["message"]) == (403, True)  # the old key still says no


async def test_a_journal_the_stream_named_by_its_key_is_followed_not_sent_again(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    async_redis: aioredis.Redis,
    start_listener: ListenerFactory,
) -> None:
    """A cover sent without an answer (the POST got through, the run died): the journal stream's events, matched
    by Idempotency-Key, give the next run the journal id; it follows that journal and POSTs nothing."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    key = f"cover-{ACCOUNT}-{deadline}"
    sent = Intent(
        key, "cover", deadline, "debit", Decimal("400.00"), idempotency_key("7536050SI", key), account_no=ACCOUNT
    )
    sent.status = IntentStatus.SENT
    await Ledger(async_redis).save(sent, "cover_sent")
    body = {
        "from_account": await sandbox.account_id("7536050RF"),
        "to_account": await sandbox.account_id(ACCOUNT),
        "entry_type": "JNLC",
        "amount": "400.00",
        "description": "settlekeeper: the answer never came back",
    }
    journal = await sandbox.ok("POST", "/v1/journals", body, headers={"Idempotency-Key": sent.idempotency_key})
    await sandbox.ok("DELETE", "/sandbox/requests")
    running = await start_listener(sandbox)

    async def streamed() -> bool:
        return await journal_for_key(async_redis, sent.idempotency_key) == (journal["id"], "executed")

    await eventually(streamed)
    cover_queue = queue(COVER_QUEUE, redis_client)

    async def handed_over() -> bool:
        return key in cover_queue.job_ids

    await eventually(handed_over)  # the listener records the cancellation and hands its cover over itself
    await running.halt()
    assert await run_worker()
    report = dict(fetch(redis_client, key).return_value())

    assert (report["outcome"], report["journal_id"]) == ("covered", journal["id"])
    posted = [r for r in (await sandbox.ok("GET", "/sandbox/requests"))["requests"] if r["method"] == "POST"]
    assert posted == []
    events = [row["event"] for row in stream(redis_client, keys.AUDIT) if row.get("key") == key]
    assert "cover_found_by_key" in events


async def test_pending_journal_alerts_then_rerun_after_approval_reports_covered(
    sandbox: Sandbox, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Default JNLC limits ($50) leave the journal pending (alert); once approved a re-run verifies it."""
    deadline = await debit_of_400(sandbox)
    first = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    assert first["outcome"] == "pending"
    assert [a["kind"] for a in stream(redis_client, keys.ALERTS)] == ["journal_pending"]
    [journal] = await journals_to(sandbox, ACCOUNT)
    assert (journal["id"], journal["status"]) == (first["journal_id"], "pending")
    await sandbox.ok("POST", f"/sandbox/journals/{journal['id']}/approve")
    second = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    assert (second["outcome"], second["journal_id"], second["cash"]) == ("covered", journal["id"], "0.00")
    assert [j["id"] for j in await journals_to(sandbox, ACCOUNT)] == [journal["id"]]


async def test_debit_without_a_cancellation_that_day_is_left_alone(
    sandbox: Sandbox, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A debit from an earlier day's cancellation is not caused by this day's: not_if_debit, no journal."""
    deadline = await debit_of_400(sandbox)
    next_day = TradingCalendar().next_trading_day(date.fromisoformat(deadline)).isoformat()
    report = await run_cover(redis_client, run_worker, ACCOUNT, next_day)
    assert (report["outcome"], report["debit"]) == ("not_if_debit", "400.00")
    assert await journals_to(sandbox, ACCOUNT) == []
    assert "not_if_debit" in [e["event"] for e in stream(redis_client, keys.AUDIT)]


async def test_debit_larger_than_the_cancellations_is_covered_only_up_to_them(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """An older debit of 300 plus a 100 transfer canceled later: that day's cover is 100, the rest stays."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    day_one = await fund_and_spend(sandbox, ACCOUNT, amount="500.00", spend="0")
    await trade(sandbox, "buy", qty="400", price="1.00")
    await trade(sandbox, "sell", qty="400", price="0.25")  # a trading loss: no position left to liquidate
    await cancel_at_8pm(sandbox, day_one)
    assert await sandbox.cash(ACCOUNT) == Decimal("-300.00")
    day_two = await fund_and_spend(sandbox, ACCOUNT, amount="100.00", spend="0")  # at 8 PM: the next cycle
    await cancel_at_8pm(sandbox, day_two)
    assert await sandbox.cash(ACCOUNT) == Decimal("-300.00")
    report = await run_cover(redis_client, run_worker, ACCOUNT, day_two)
    assert (report["outcome"], report["amount"], report["cash"]) == ("still_in_debit", "100.00", "-200.00")
    assert [j["net_amount"] for j in await journals_to(sandbox, ACCOUNT)] == ["100.00"]
    assert "debit_remains" in [a["kind"] for a in stream(redis_client, keys.ALERTS)]


async def test_without_cover_only_if_debits_the_whole_debit_is_covered(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """SETTLEKEEPER_COVER_ONLY_IF_DEBITS=false covers a debit the day's cancellations did not cause."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox, cover_only_if_debits="false")
    deadline = await debit_of_400(sandbox)
    next_day = TradingCalendar().next_trading_day(date.fromisoformat(deadline)).isoformat()
    report = await run_cover(redis_client, run_worker, ACCOUNT, next_day)
    assert (report["outcome"], report["amount"]) == ("covered", "400.00")


@pytest.mark.parametrize(
    ("overrides", "kill", "outcome", "alert_kinds"),
    [
        ({"max_cover_per_account": "399.99"}, False, "refused", ["guardrail"]),
        ({"cover_mode": "dry-run"}, False, "dry-run", []),
        ({"cover_mode": "off"}, False, "refused", ["guardrail"]),
        ({}, True, "refused", ["guardrail"]),
    ],
    ids=["per-account-cap", "dry-run", "off", "kill-switch"],
)
async def test_guardrails_stop_the_cover_journal(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    overrides: dict[str, str],
    kill: bool,
    outcome: str,
    alert_kinds: list[str],
) -> None:
    """A cap under the debit, dry-run, off and the kill switch send no journal; the intent says why."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox, **overrides)
    if kill:
        redis_client.set(keys.KILL_SWITCH, "incident 42")
    deadline = await debit_of_400(sandbox)
    report = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    assert report["outcome"] == outcome
    assert await journals_to(sandbox, ACCOUNT) == []
    assert await sandbox.cash(ACCOUNT) == Decimal("-400.00")
    saved = intent(redis_client, f"cover-{ACCOUNT}-{deadline}")
    assert (saved["status"], saved["amount"]) == (outcome, "400.00")
    assert f"cover_{outcome}" in [e["event"] for e in stream(redis_client, keys.AUDIT)]
    assert [a["kind"] for a in stream(redis_client, keys.ALERTS)] == alert_kinds
    assert redis_client.get(keys.moved_today(deadline)) is None  # nothing reserved against the daily cap
    t2 = TradingCalendar().next_trading_day(date.fromisoformat(deadline))
    await sandbox.set_clock(at_et(t2, time(9, 0)))
    assert (await sandbox_account(sandbox, ACCOUNT))["margin_call_on"] == t2.isoformat()  # what a cover prevents


async def test_kill_switch_set_after_the_check_still_stops_the_journal(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sk:kill set between the check and the POST: no journal, "killed" + alert; cleared, a re-run covers once."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    check = Guardrails.check

    async def check_then_kill(self: Guardrails, action: str, amount: Decimal, *, day: date) -> Verdict:
        verdict = await check(self, action, amount, day=day)
        await self.redis.set(keys.KILL_SWITCH, "operator stop")
        return verdict

    monkeypatch.setattr(Guardrails, "check", check_then_kill)
    job_id = f"cover-{ACCOUNT}-{deadline}"
    assert enqueue_action(redis_client, Action("0-0", job_id, "cover", ACCOUNT, deadline))
    await run_worker()
    assert fetch(redis_client, job_id).return_value()["outcome"] == "killed"
    assert [a[1][b"kind"] for a in redis_client.xrange(keys.ALERTS)] == [b"kill_switch"]
    assert await journals_to(sandbox, ACCOUNT) == []
    monkeypatch.undo()
    job_env(sandbox)
    redis_client.delete(keys.KILL_SWITCH)
    report = await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    assert (report["outcome"], report["amount"]) == ("covered", "400.00")
    assert [j["net_amount"] for j in await journals_to(sandbox, ACCOUNT)] == ["400.00"]
    assert redis_client.get(keys.moved_today(deadline)) == b"40000"  # reserved once, not twice


@pytest.mark.parametrize(
    ("start", "days"),
    [
        (at_et(date(2026, 11, 17), time(10)), 1),  # deadline Wed 11-18, T+2 Thu 11-19 → Fri
        (at_et(date(2026, 11, 18), time(10)), 3),  # deadline Thu 11-19, T+2 Fri 11-20 → Mon
        (at_et(date(2026, 11, 23), time(10)), 2),  # deadline Tue 11-24, T+2 Wed 11-25 → Fri (Thanksgiving)
    ],
    ids=["weekday", "friday", "before-thanksgiving"],
)
async def test_margin_interest_estimate_is_stored_per_account(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    start: datetime,
    days: int,
) -> None:
    """sk:costs:<deadline> holds margin_interest:<account> = debit × rate / 360 × days open from T+2."""
    sandbox = await make_sandbox(start, **BIG_JNLC)
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    await run_cover(redis_client, run_worker, ACCOUNT, deadline)
    expected = quantize(Decimal(400) * MARGIN_RATE / 360 * days)
    stored = redis_client.hget(keys.costs(deadline), f"margin_interest:{ACCOUNT}")
    assert stored is not None
    assert Decimal(stored.decode()) == expected


async def test_sweep_covers_every_account_canceled_that_day_and_nothing_else(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """The 20:05 sweep journals to each account whose transfer due that day was canceled, and to no other."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    earlier = await fund_and_spend(sandbox, "8100000003", amount="200.00", spend="200.00")
    await sandbox.set_clock(at_et(date.fromisoformat(earlier), time(10, 0)))
    deadline = await fund_and_spend(sandbox, ACCOUNT, amount="500.00", spend="400.00")
    await fund_and_spend(sandbox, "8100000002", amount="300.00", spend="120.50")
    await fund_and_spend(sandbox, "8100000004", amount="50.00", spend="0")
    await sandbox.set_clock(at_et(date.fromisoformat(deadline), time(20, 5)))
    assert await sandbox.cash("8100000003") == Decimal("-200.00")
    assert enqueue_phase(redis_client, "sweep", deadline)
    assert await run_worker()
    report = fetch(redis_client, f"phase-sweep-{deadline}").return_value()
    assert report == {"deadline": deadline, "accounts": 3, "covered": 2, "pending": 0}
    covered = {j["to_account"]: j["net_amount"] for j in await sandbox.ok("GET", "/v1/journals")}
    assert covered == {await sandbox.account_id(ACCOUNT): "400.00", await sandbox.account_id("8100000002"): "120.50"}
    assert await sandbox.cash("8100000003") == Decimal("-200.00")


async def test_listener_turns_a_cancellation_into_one_cover_job_that_covers(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    start_listener: ListenerFactory,
    redis_client: redis.Redis,
) -> None:
    """End to end: sandbox 8 PM cancel → listener → one cover-<account>-<deadline> RQ job → cover journal."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await fund_and_spend(sandbox)
    [transfer] = await sandbox.ok("GET", "/v1/instant_funding")
    running = await start_listener(sandbox)

    async def executed() -> bool:
        return redis_client.hget(keys.transfer(transfer["id"]), "status") == b"EXECUTED"

    await eventually(executed)
    await cancel_at_8pm(sandbox, deadline)
    cover_queue = queue(COVER_QUEUE, redis_client)
    job_id = f"cover-{ACCOUNT}-{deadline}"

    async def cover_enqueued() -> bool:
        return job_id in cover_queue.job_ids

    await eventually(cover_enqueued)
    await running.halt()
    assert cover_queue.job_ids == [job_id]
    assert fetch(redis_client, job_id).kwargs == {"deadline": deadline, "account_no": ACCOUNT}
    assert await run_worker()
    assert fetch(redis_client, job_id).return_value()["outcome"] == "covered"
    assert [j["net_amount"] for j in await journals_to(sandbox, ACCOUNT)] == ["400.00"]
    assert await sandbox.cash(ACCOUNT) == Decimal("0.00")


@pytest.mark.parametrize("lost", [False, True], ids=["recorded", "one-record-lost"])
async def test_a_storm_of_cover_actions_goes_out_as_one_job_that_covers_each_account_once(
    make_sandbox: SandboxFactory,
    job_env: Configure,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    store: TransferStore,
    lost: bool,
) -> None:
    """Cover actions found together in the outbox become one batched job (handed over again: a duplicate), and
    it journals each account's own debit exactly once: from the store's records of each account's canceled
    transfers, or, where one is lost, from the day's listing."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    spent = {ACCOUNT: "400.00", "8100000002": "120.50", "8100000003": "75.25"}
    deadline = ""
    for account, spend in spent.items():
        deadline = await fund_and_spend(sandbox, account, amount="500.00", spend=spend)
    await cancel_at_8pm(sandbox, deadline)
    canceled = [InstantFunding.model_validate(row) for row in await sandbox.ok("GET", "/v1/instant_funding")]
    assert {t.status.value for t in canceled} == {"CANCELED"}
    for transfer in canceled:
        await store.record(transfer, source="test", observed_at=OBSERVED, actions=actions_for(transfer, TODAY))
    actions = await store.outbox()
    assert [a.kind for a in actions] == ["cover"] * 3
    if lost:  # a Redis restart lost one record: the store no longer explains that account's debit
        redis_client.delete(keys.transfer(canceled[-1].id))
    assert enqueue_covers(redis_client, actions)
    assert not enqueue_covers(redis_client, actions)  # the same actions again: found, not enqueued twice
    [job_id] = queue(COVER_QUEUE, redis_client).job_ids
    assert job_id.startswith(f"covers-{deadline}-")
    assert fetch(redis_client, job_id).kwargs == {"accounts": sorted(spent), "deadline": deadline}
    assert await run_worker()
    report = fetch(redis_client, job_id).return_value()
    assert report == {"deadline": deadline, "accounts": 3, "covered": 3, "listed": lost}
    for account, spend in spent.items():
        assert [(j["net_amount"], j["status"]) for j in await journals_to(sandbox, account)] == [(spend, "executed")]
        assert await sandbox.cash(account) == Decimal("0.00")
    assert len(await sandbox.ok("GET", "/v1/journals")) == 3
