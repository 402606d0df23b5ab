"""Reconciliation over the sandbox: what Alpaca holds under settlekeeper's name after Redis lost its record of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import redis

from funding.models import Journal
from jobs.reconcile import journal_found
from jobs.registry import enqueue_phase
from store import keys
from tests.support.cover import ACCOUNT, BIG_JNLC, cancel_at_8pm, fetch, fund_and_spend, journals_to, run_cover
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import (
    RF,
    SI,
    audit,
    create_transfers,
    et,
    hash_of,
    intents,
    journals,
    run_settle,
    settlements,
)

JobEnv = Callable[..., None]
SI2 = "7536050SI2"


def forget(client: redis.Redis, deadline: str, intent_keys: Iterable[str]) -> None:
    """What losing the last second of writes does to these intents: the hashes, their audit entries, the ids the
    trail named, the deadline's sequence and the cents counted against the daily cap are gone."""
    gone = set(intent_keys)
    for entry_id, fields in client.xrange(keys.AUDIT):
        if fields[b"key"].decode() in gone:
            client.xdel(keys.AUDIT, entry_id)
    for key in gone:
        client.delete(keys.intent(key))
        client.srem(keys.intents_of(deadline), key)
    client.delete(keys.accounted(deadline), keys.plan(deadline), keys.moved_today(deadline))


def named_ids(client: redis.Redis) -> dict[str, str]:
    """Alpaca id → the audit event that names it."""
    named = {}
    for row in audit(client):
        facts = json.loads(row["facts"])
        for field in ("journal_id", "settlement_id"):
            if facts.get(field):
                named[facts[field]] = row["event"]
    return named


async def test_a_journal_and_settlement_redis_forgot_are_recorded_and_the_next_keys_are_new(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """RF short: a run funds and settles part; Redis then loses their intents and audit entries (a lost second).
    After RF is wired the rest, the next run records both as recovered with Alpaca's ids, restores their intents,
    counts the journal against the cap, and funds the rest under fund-3 (fund-1 again would be refused: 422)."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, rf_balance="300.00")
    job_env(sandbox)
    small, large = await create_transfers(sandbox, ["200.00", "250.00"])
    deadline = small["deadline"]
    await sandbox.set_clock(et(deadline, 11))
    first = await run_settle(redis_client, run_worker, deadline)
    assert (first["outcome"], first["settled"]) == ("done", 1)
    [journal] = await journals(sandbox)
    [settlement] = await settlements(sandbox)
    forget(redis_client, deadline, [f"fund-{deadline}-1", f"settle-{deadline}-2"])
    assert journal["id"] not in named_ids(redis_client)

    await sandbox.wire(RF, "1000.00")
    second = await run_settle(redis_client, run_worker, deadline, job="settle_retry")

    assert (second["outcome"], second["settled"]) == ("done", 1)
    named = named_ids(redis_client)
    assert (named[journal["id"]], named[settlement["id"]]) == ("journal_recovered", "settlement_recovered")
    stored = intents(redis_client, deadline)
    recovered_fund, recovered_settle = stored[f"fund-{deadline}-1"], stored[f"settle-{deadline}-2"]
    assert (recovered_fund["status"], recovered_fund["broker_id"], recovered_fund["amount"]) == (
        "done",
        journal["id"],
        "200.00",
    )
    assert (recovered_settle["status"], recovered_settle["broker_id"]) == ("done", settlement["id"])
    assert (stored[f"fund-{deadline}-3"]["status"], stored[f"settle-{deadline}-4"]["status"]) == ("done", "done")
    booked = await journals(sandbox)
    assert sorted(j["net_amount"] for j in booked) == ["200.00", "250.00"]
    assert all(j["id"] in named for j in booked)
    assert all(s["id"] in named for s in await settlements(sandbox))
    assert redis_client.get(keys.moved_today(deadline)) == b"45000"
    assert hash_of(redis_client, keys.metrics("reconcile")) == {"fund|recovered": "1", "settle|recovered": "1"}
    assert {t["status"] for t in [await sandbox.ok("GET", f"/v1/instant_funding/{large['id']}")]} == {"COMPLETED"}


async def test_nothing_lost_adds_nothing_to_the_trail(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A second run after a clean one finds every id named: no recovered entry, no metric, the trail unchanged."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    [created] = await create_transfers(sandbox, ["75.00"])
    deadline = created["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    await run_settle(redis_client, run_worker, deadline)
    events = [row["event"] for row in audit(redis_client)]

    await run_settle(redis_client, run_worker, deadline, job="settle_retry")

    assert [row["event"] for row in audit(redis_client)][: len(events)] == events
    assert not {"journal_recovered", "settlement_recovered"} & {row["event"] for row in audit(redis_client)}
    assert hash_of(redis_client, keys.metrics("reconcile")) == {}


async def test_a_cover_redis_forgot_is_recorded_by_the_sweep_and_not_journaled_again(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A cover journal whose intent and audit were lost: the sweep's first reconciliation gives the intent back
    (done, Alpaca's id), so the sweep verifies the account instead of journaling again; one journal in all."""
    sandbox = await make_sandbox(**BIG_JNLC)
    job_env(sandbox)
    deadline = await fund_and_spend(sandbox)
    await cancel_at_8pm(sandbox, deadline)
    assert (await run_cover(redis_client, run_worker, ACCOUNT, deadline))["outcome"] == "covered"
    [journal] = await journals_to(sandbox, ACCOUNT)
    key = f"cover-{ACCOUNT}-{deadline}"
    forget(redis_client, deadline, [key])

    assert enqueue_phase(redis_client, "sweep", deadline)
    assert await run_worker()

    assert fetch(redis_client, f"phase-sweep-{deadline}").return_value()["covered"] == 1
    assert await journals_to(sandbox, ACCOUNT) == [journal]
    assert named_ids(redis_client)[journal["id"]] == "journal_recovered"
    restored = hash_of(redis_client, keys.intent(key))
    assert (restored["status"], restored["broker_id"], restored["account_no"], restored["x_attempt"]) == (
        "done",
        journal["id"],
        ACCOUNT,
        "1",
    )


async def post_journal(sandbox: Sandbox, source: str, target: str, amount: str, description: str) -> dict[str, Any]:
    body = {
        "from_account": await sandbox.account_id(source),
        "to_account": await sandbox.account_id(target),
        "entry_type": "JNLC",
        "amount": amount,
        "description": description,
    }
    return dict(await sandbox.ok("POST", "/v1/journals", body))


async def test_another_deployments_movements_and_hostile_descriptions_are_not_taken_as_ours(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Out of a shared RF: a second SI's fund-1, a cover to a customer of no transfer of ours, and descriptions that
    only look like ours are never recorded as ours; a settlement tagged settle-2 from another SI is not either."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, si_accounts=2)
    job_env(sandbox)
    [created] = await create_transfers(sandbox, ["60.00"])
    deadline = created["deadline"]
    day_before = "2026-01-01"
    for target, description in (
        (SI2, f"settlekeeper fund-{deadline}-1: SI lacks what is due"),
        ("8100000007", f"settlekeeper cover-8100000007-{deadline}: debit of 5.00 after IF cancellation"),
        (SI, f"settlekeeper fund-{deadline}-0: zero is no sequence number"),
        (SI, f"settlekeeper fund-{deadline[:5]}13-45-7: no such day"),
        (SI, "settlekeeper ../../v1/journals: a path"),
        (SI, f"partner top-up for fund-{deadline}-9"),
        (SI, f"settlekeeper fund-{day_before}-1: long before"),
    ):
        await post_journal(sandbox, RF, target, "5.00", description)
    theirs = await sandbox.ok(
        "POST", "/v1/instant_funding", {"account_no": "8100000005", "source_account_no": SI2, "amount": "10.00"}
    )
    await sandbox.advance(1)
    await sandbox.wire(SI2, "10.00")
    transmitter = {"originator_full_name": "Partner", "originator_street_address": "1 Main St"}
    their_settlement = await sandbox.ok(
        "POST",
        "/v1/instant_funding/settlements",
        {
            "transfers": [{"instant_transfer_id": theirs["id"], "transmitter_info": transmitter}],
            "additional_info": f"settlekeeper intent settle-{deadline}-2",
        },
    )
    await sandbox.set_clock(et(deadline, 12))

    report = await run_settle(redis_client, run_worker, deadline)

    assert (report["outcome"], report["settled"]) == ("done", 1)
    events = {row["event"] for row in audit(redis_client)}
    assert not {"journal_recovered", "settlement_recovered"} & events
    assert hash_of(redis_client, keys.metrics("reconcile")) == {}
    stored = intents(redis_client, deadline)
    si_id = await sandbox.account_id(SI)
    [ours] = [j for j in await journals(sandbox) if j["to_account"] == si_id and j["net_amount"] != "5.00"]
    assert stored[f"fund-{deadline}-1"]["broker_id"] == ours["id"]
    assert stored[f"settle-{deadline}-2"]["broker_id"] != their_settlement["id"]
    assert their_settlement["id"] not in named_ids(redis_client)


def test_a_description_names_an_intent_only_in_settlekeepers_exact_shape() -> None:
    """fund-<day>-<n> and cover-<account>-<day> (with a retry's attempt) parse; anything else names nothing."""

    def parsed(description: str) -> tuple[str, str, int, str, int, Decimal] | None:
        journal = Journal.model_validate(
            {
                "id": "8f2d1e4a-1b2c-4d3e-9f00-0123456789ab",
                "entry_type": "JNLC",
                "from_account": "8f2d1e4a-1b2c-4d3e-9f00-0123456789ac",
                "to_account": "8f2d1e4a-1b2c-4d3e-9f00-0123456789ad",
                "net_amount": "-12.50",
                "status": "executed",
                "description": description,
            }
        )
        found = journal_found(journal)
        return (
            None if found is None else (found.kind, found.key, found.seq, found.account_no, found.attempt, found.amount)
        )

    assert parsed("settlekeeper fund-2026-11-24-3: SI lacks what is due") == (
        "fund",
        "fund-2026-11-24-3",
        3,
        "",
        1,
        Decimal("12.50"),
    )
    assert parsed("settlekeeper cover-8100000001-2026-11-24: debit of 4.00 after IF cancellation (attempt 2)") == (
        "cover",
        "cover-8100000001-2026-11-24",
        0,
        "8100000001",
        2,
        Decimal("12.50"),
    )
    for other in (
        "settlekeeper fund-2026-02-30-1: no such day",
        "settlekeeper settle-2026-11-24-2: settlements are no journals",
        "settlekeeper fund-2026-11-24-01: a leading zero",
        "settlekeeper fund-2026-11-24-3 SI lacks (no colon)",
        "Settlekeeper fund-2026-11-24-3: another case",
        "",
    ):
        assert parsed(other) is None, other


async def test_a_resume_never_adopts_another_sis_settlement_that_carries_the_same_tag(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """Our settle-2 was sent without an answer (a crash); the second SI's settlekeeper also has a settle-2, COMPLETED.
    The resume does not take theirs for ours: it posts our transfers under our intent."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, si_accounts=2, si_balance="500.00")
    job_env(sandbox)
    [created] = await create_transfers(sandbox, ["60.00"])
    deadline = created["deadline"]
    theirs = await sandbox.ok(
        "POST", "/v1/instant_funding", {"account_no": "8100000005", "source_account_no": SI2, "amount": "10.00"}
    )
    await sandbox.advance(1)
    await sandbox.wire(SI2, "10.00")
    tag = f"settlekeeper intent settle-{deadline}-2"
    transmitter = {"originator_full_name": "Partner", "originator_street_address": "1 Main St"}
    body = {
        "transfers": [{"instant_transfer_id": theirs["id"], "transmitter_info": transmitter}],
        "additional_info": tag,
    }
    their_settlement = await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
    key = f"settle-{deadline}-2"
    redis_client.hset(
        keys.intent(key),
        mapping={
            "key": key,
            "kind": "settle",
            "deadline": deadline,
            "why": "1 transfers due",
            "amount": "60.00",
            "idempotency_key": "k",
            "status": "sent",
        },
    )
    redis_client.sadd(keys.intents_of(deadline), key)
    redis_client.sadd(keys.intent_transfers(key), created["id"])
    redis_client.hset(keys.plan(deadline), "seq", 2)
    await sandbox.set_clock(et(deadline, 12))

    report = await run_settle(redis_client, run_worker, deadline)

    assert report["outcome"] == "nothing_due"  # the resume settled it: the round found nothing left
    assert (await sandbox.ok("GET", f"/v1/instant_funding/{created['id']}"))["status"] == "COMPLETED"
    resumed = hash_of(redis_client, keys.intent(key))
    assert resumed["status"] == "done"
    assert resumed["broker_id"] not in ("", their_settlement["id"])
    ours = await sandbox.ok("GET", f"/v1/instant_funding/settlements/{resumed['broker_id']}")
    assert ours["additional_info"] == tag
    assert ours["source_account_number"] == SI


async def test_alpaca_refusing_the_journal_list_is_counted_and_never_stops_the_settlement(
    make_sandbox: SandboxFactory, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """GET /v1/journals answers 422: the reconciliation is counted as failed, and the run still settles."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, si_balance="100.00")
    job_env(sandbox)
    [created] = await create_transfers(sandbox, ["40.00"])
    deadline = created["deadline"]
    await sandbox.ok(
        "POST", "/sandbox/faults", {"kind": "http_error", "status": 422, "path": "/v1/journals", "method": "GET"}
    )
    await sandbox.set_clock(et(deadline, 12))

    report = await run_settle(redis_client, run_worker, deadline)

    assert (report["outcome"], report["settled"]) == ("done", 1)
    assert hash_of(redis_client, keys.metrics("reconcile")) == {"all|failed": "1"}
