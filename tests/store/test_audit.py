"""Intents and the audit trail (store/audit.py): an intent reads back as written, every save is one more
audit entry and nothing earlier changes, transfers are remembered with their intent."""

from __future__ import annotations

import json
from decimal import Decimal

import redis
import redis.asyncio as aioredis

from store import keys
from store.audit import INTENT_TTL_SECONDS, Intent, IntentStatus, Ledger


def settle_intent(**changes: object) -> Intent:
    values: dict[str, object] = {
        "key": "settle-2026-11-24-1",
        "kind": "settle",
        "deadline": "2026-11-24",
        "why": "2 transfers due 2026-11-24",
        "amount": Decimal("1234.50"),
        "idempotency_key": "0b6d2c55-9f1e-5d35-a1f4-2f8f8f0a8d11",
    }
    values.update(changes)
    return Intent(**values)  # type: ignore[arg-type]


def audit_entries(client: redis.Redis) -> list[dict[str, str]]:
    return [
        {name.decode(): value.decode() for name, value in fields.items()}
        for _, fields in client.xrange(keys.AUDIT)  # type: ignore[union-attr]
    ]


async def test_an_intent_reads_back_exactly_as_saved(async_redis: aioredis.Redis, redis_client: redis.Redis) -> None:
    """Every field comes back, the amount as the same Decimal, the status as the enum, extras by name; the
    intent and its deadline's index keep for INTENT_TTL_SECONDS."""
    ledger = Ledger(async_redis)
    written = settle_intent(
        status=IntentStatus.SENT, broker_id="j-1", broker_status="queued", account_no="8100000001", extra={"n": "2"}
    )
    await ledger.save(written, "settle_sent")
    read = await ledger.intent(written.key)
    assert read == written
    assert read is not None
    assert read.amount == Decimal("1234.50")
    assert str(read.amount) == "1234.50"
    assert read.status is IntentStatus.SENT
    for key in (keys.intent(written.key), keys.intents_of(written.deadline)):
        assert INTENT_TTL_SECONDS - 5 < redis_client.ttl(key) <= INTENT_TTL_SECONDS
    assert await ledger.intent("settle-2026-11-24-2") is None


async def test_each_save_appends_one_audit_entry_and_never_rewrites_one(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """Planned, sent, done: three entries in order with their facts; the intent holds only the latest status."""
    ledger = Ledger(async_redis)
    intent = settle_intent()
    await ledger.save(intent, "settle_planned")
    first = audit_entries(redis_client)
    intent.status = IntentStatus.SENT
    await ledger.save(intent, "settle_sent", body={"amount": "1234.50"})
    intent.status, intent.broker_id = IntentStatus.DONE, "j-1"
    await ledger.save(intent, "settle_executed", journal_id="j-1")
    entries = audit_entries(redis_client)
    assert entries[:1] == first
    assert [(e["event"], e["kind"], e["key"], e["amount"]) for e in entries] == [
        (event, "settle", intent.key, "1234.50") for event in ("settle_planned", "settle_sent", "settle_executed")
    ]
    assert [json.loads(e["facts"]) for e in entries] == [{}, {"body": {"amount": "1234.50"}}, {"journal_id": "j-1"}]
    saved = await ledger.intent(intent.key)
    assert saved is not None
    assert (saved.status, saved.broker_id) == (IntentStatus.DONE, "j-1")


async def test_a_note_audits_a_decision_without_an_intent(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """note() appends an entry (empty amount when there is none, Decimal facts as text) and writes no intent."""
    ledger = Ledger(async_redis)
    await ledger.note("nothing_due", "settle", "2026-11-24")
    await ledger.note("shortfall", "settle", "2026-11-24", Decimal("10.00"), short=Decimal("2.50"), rf="RF1")
    entries = audit_entries(redis_client)
    assert [(e["event"], e["amount"], json.loads(e["facts"])) for e in entries] == [
        ("nothing_due", "", {}),
        ("shortfall", "10.00", {"rf": "RF1", "short": "2.50"}),
    ]
    assert all(e["at"].endswith("+00:00") for e in entries)
    assert redis_client.keys(f"{keys.PREFIX}intent*") == []


async def test_transfers_are_remembered_with_their_intent_beyond_one_chunk(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """25,001 transfer ids (three chunks of the pipeline) are all in the intent's set and map back to it."""
    ledger = Ledger(async_redis)
    transfer_ids = [f"t-{n}" for n in range(25_001)]
    await ledger.remember_transfers("settle-2026-11-24-1", transfer_ids)
    assert await ledger.intent_transfers("settle-2026-11-24-1") == set(transfer_ids)
    assert redis_client.hlen(keys.SETTLED_BY) == len(transfer_ids)
    assert redis_client.hget(keys.SETTLED_BY, "t-25000") == b"settle-2026-11-24-1"
    assert await ledger.intent_transfers("settle-2026-11-24-2") == set()


async def test_intents_of_a_deadline_come_sorted_by_key_and_skip_expired_ones(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """intents_for() returns the deadline's intents in key order; one whose hash has expired is left out."""
    ledger = Ledger(async_redis)
    for key in ("settle-2026-11-24-2", "fund-2026-11-24-1", "settle-2026-11-24-1"):
        await ledger.save(settle_intent(key=key), "planned")
    await ledger.save(settle_intent(key="settle-2026-11-25-1", deadline="2026-11-25"), "planned")
    redis_client.delete(keys.intent("settle-2026-11-24-2"))
    assert [i.key for i in await ledger.intents_for("2026-11-24")] == ["fund-2026-11-24-1", "settle-2026-11-24-1"]
    assert await ledger.intents_for("2026-11-26") == []
