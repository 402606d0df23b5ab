"""The Redis store's atomic steps against a real Redis (store/transfers.py, store/keys.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis

from funding.errors import LeaseLostError, MalformedDataError
from funding.models import InstantFunding
from funding.records import DeadLetter
from jobs.registry import actions_for
from store import keys
from store.scripts import lua
from store.transfers import TransferStore
from tests.support.transfers import ACCOUNT, OBSERVED, TODAY, TOMORROW, make_transfer


@pytest.fixture
async def store(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[TransferStore]:
    """A TransferStore on the flushed test Redis."""
    client = aioredis.Redis.from_url(session_redis_url)
    yield TransferStore(client)
    await client.aclose()


async def record(store: TransferStore, transfer: InstantFunding, *, today: date = TODAY, token: str = "") -> str:
    """Record as the resolver does: with the actions the rule decides for the change (jobs/registry.py)."""
    actions = actions_for(transfer, today)
    outcome = await store.record(transfer, source="test", observed_at=OBSERVED, actions=actions, token=token)
    return outcome.result


def records(r: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in r.xrange(keys.RECORDS)]


def key_names(r: redis.Redis) -> set[str]:
    return {k.decode() for k in r.keys("*")}


async def test_record_indexes_an_unsettled_transfer(store: TransferStore, redis_client: redis.Redis) -> None:
    """A new EXECUTED transfer fills its hash, the due set, due cents, unsettled, the account index and one record."""
    t = make_transfer(amount="12.34")
    assert await record(store, t) == "recorded"
    stored = await store.transfer(str(t.id))
    assert (stored["status"], stored["amount"], stored["deadline"]) == ("EXECUTED", "12.34", TOMORROW.isoformat())
    assert stored["account_no"] == ACCOUNT
    assert await store.unsettled_due(TOMORROW) == {str(t.id)}
    assert redis_client.get(keys.due_cents(TOMORROW)) == b"1234"
    assert await store.unsettled_ids() == {str(t.id)}
    assert await store.account_transfers(ACCOUNT) == {str(t.id)}
    assert [(e["transfer_id"], e["from"], e["to"]) for e in records(redis_client)] == [(str(t.id), "", "EXECUTED")]


async def test_amount_due_is_exact_cents(store: TransferStore) -> None:
    """0.10 + 0.20 due on one day is exactly 0.30: amounts are summed as integer cents, never floats."""
    for amount in ("0.10", "0.20"):
        await record(store, make_transfer(amount=amount))
    assert await store.amount_due(TOMORROW) == Decimal("0.10") + Decimal("0.20")
    assert str(await store.amount_due(TOMORROW)) == "0.30"


async def test_same_status_again_is_a_duplicate(store: TransferStore, redis_client: redis.Redis) -> None:
    """Recording the same (id, status) twice changes nothing the second time and appends no record."""
    t = make_transfer()
    await record(store, t)
    assert await record(store, t) == "duplicate"
    assert len(records(redis_client)) == 1
    assert await store.amount_due(TOMORROW) == t.remaining_payable


async def test_new_interest_in_same_status_updates_without_record_or_action(
    store: TransferStore, redis_client: redis.Redis
) -> None:
    """Same status with a new total_interest updates the hash and amount due, but adds no record and no action."""
    t = make_transfer(deadline=TODAY, amount="100.00")
    await record(store, t)
    redis_client.delete(keys.replan_pending(TODAY))  # a re-plan would be allowed now, if an action were due
    late = make_transfer(deadline=TODAY, amount="100.00", interest="0.04", transfer_id=str(t.id))
    assert await record(store, late) == "updated"
    assert (await store.transfer(str(t.id)))["total_interest"] == "0.04"
    assert await store.amount_due(TODAY) == Decimal("100.04")
    assert len(records(redis_client)) == 1
    assert len(await store.outbox()) == 1  # only the first record's re-plan


async def test_backwards_move_is_ignored(store: TransferStore, redis_client: redis.Redis) -> None:
    """A COMPLETED transfer read again as EXECUTED (a stale read) stays COMPLETED and is not re-indexed."""
    t = make_transfer("COMPLETED")
    await record(store, t)
    stale = make_transfer("EXECUTED", transfer_id=str(t.id))
    outcome = await store.record(stale, source="test", observed_at=OBSERVED, actions=actions_for(stale, TODAY))
    assert (outcome.result, outcome.previous_status) == ("duplicate", "COMPLETED")
    assert (await store.transfer(str(t.id)))["status"] == "COMPLETED"
    assert await store.unsettled_ids() == set()
    assert await store.unsettled_due(TOMORROW) == set()
    assert len(records(redis_client)) == 1


async def test_completion_unindexes_and_sets_retention(store: TransferStore, redis_client: redis.Redis) -> None:
    """EXECUTED → COMPLETED leaves due/unsettled, subtracts from due cents, and the hashes expire after retention."""
    kept, settled = make_transfer(amount="5.00"), make_transfer(amount="7.50")
    for t in (kept, settled):
        await record(store, t)
    assert await record(store, make_transfer("COMPLETED", amount="7.50", transfer_id=str(settled.id))) == "recorded"
    assert await store.unsettled_due(TOMORROW) == {str(kept.id)}
    assert await store.unsettled_ids() == {str(kept.id)}
    assert await store.amount_due(TOMORROW) == kept.remaining_payable
    ttl = redis_client.ttl(keys.transfer(str(settled.id)))
    assert store.retention_seconds - 5 < ttl <= store.retention_seconds
    assert redis_client.ttl(keys.transfer(str(kept.id))) == -1
    assert [e["to"] for e in records(redis_client)] == ["EXECUTED", "EXECUTED", "COMPLETED"]


async def test_statuses_kept_in_a_set_of_their_own_are_folded_into_the_hash(
    store: TransferStore, redis_client: redis.Redis
) -> None:
    """A transfer recorded before its statuses moved into its hash (a set of them beside it): seen again in one of
    them it is a duplicate (no record, no action); a new status folds the set into the hash and deletes it."""
    t = make_transfer()
    assert await record(store, t) == "recorded"
    redis_client.hdel(keys.transfer(str(t.id)), "statuses")  # as the store wrote it before 2026-12-03
    redis_client.sadd(keys.transfer_statuses(str(t.id)), "PENDING", "EXECUTED")
    assert await record(store, t) == "duplicate"
    assert len(records(redis_client)) == 1
    assert await record(store, make_transfer("COMPLETED", transfer_id=str(t.id))) == "recorded"
    assert not redis_client.exists(keys.transfer_statuses(str(t.id)))
    statuses = (await store.transfer(str(t.id)))["statuses"].split()
    assert sorted(statuses) == ["COMPLETED", "EXECUTED", "PENDING"]
    assert await record(store, make_transfer("EXECUTED", transfer_id=str(t.id))) == "duplicate"


async def test_cancel_enqueues_one_cover_per_account_and_deadline(store: TransferStore) -> None:
    """CANCELED puts exactly one cover action in the outbox per (account, deadline), however often it is seen."""
    first, second = make_transfer(), make_transfer()
    other_account = make_transfer(account_no="8100000002")
    for t in (first, second, other_account):
        await record(store, t)
        await record(store, make_transfer("CANCELED", account_no=t.account_no, transfer_id=str(t.id)))
    await record(store, make_transfer("CANCELED", transfer_id=str(first.id)))
    covers = [(a.job_id, a.kind, a.account_no, a.deadline) for a in await store.outbox()]
    assert covers == [
        (f"cover-{acct}-{TOMORROW}", "cover", acct, TOMORROW.isoformat()) for acct in (ACCOUNT, "8100000002")
    ]


async def test_change_due_today_replans_coalesced(store: TransferStore, redis_client: redis.Redis) -> None:
    """A change of a transfer due today queues a re-plan; more changes coalesce until the job clears the flag."""
    a, b = make_transfer("PENDING", deadline=TODAY), make_transfer("PENDING", deadline=TODAY)
    await record(store, a)
    await record(store, b)
    await record(store, make_transfer("EXECUTED", deadline=TODAY, transfer_id=str(a.id)))
    assert [x.job_id for x in await store.outbox()] == [f"replan-{TODAY}-1"]
    redis_client.delete(keys.replan_pending(TODAY))  # what the re-plan job does when it starts
    await record(store, make_transfer("EXECUTED", deadline=TODAY, transfer_id=str(b.id)))
    actions = await store.outbox()
    assert [(x.job_id, x.kind, x.deadline) for x in actions] == [
        (f"replan-{TODAY}-{n}", "replan", TODAY.isoformat()) for n in (1, 2)
    ]
    await store.done(actions[0])
    assert [x.job_id for x in await store.outbox()] == [f"replan-{TODAY}-2"]


async def test_transfer_due_later_does_not_replan(store: TransferStore) -> None:
    """A change of a transfer due on another day than ``today`` decides no action."""
    await record(store, make_transfer("EXECUTED", deadline=TOMORROW))
    assert await store.outbox() == []


async def test_fenced_writes_refused_for_a_stale_token(store: TransferStore, redis_client: redis.Redis) -> None:
    """With the leader key held by another token, record() and ingest() raise LeaseLostError and write nothing."""
    redis_client.set(keys.LEADER, "other-token")
    with pytest.raises(LeaseLostError):
        await record(store, make_transfer(deadline=TODAY), token="my-token")
    dead = [DeadLetter("activities", "not_json", "x", "x")]
    with pytest.raises(LeaseLostError):
        await store.ingest("activities", "01CURSOR", ["t1"], dead, [("j1", "executed", "")], token="my-token", now=1.0)
    assert key_names(redis_client) == {keys.LEADER}
    assert await record(store, make_transfer(), token="other-token") == "recorded"


async def test_ingest_writes_hints_dead_letters_journals_and_cursor(
    store: TransferStore, redis_client: redis.Redis
) -> None:
    """ingest() adds hints with unique scores, dead letters, journal statuses, and moves the cursor and its time."""
    dead = DeadLetter("activities", "not_json", "data is not JSON", "{oops")
    await store.ingest("activities", "01A", ["t1", "t2"], [dead], [("j1", "queued", "k1")], now=1000.5)
    await store.ingest(
        "activities", "01B", ["t3", "t1"], [], [("j1", "executed", "k1"), ("j2", "queued", "")], now=1001.0
    )
    hints = await store.pending_hints(10)
    assert [h for h, _ in hints] == ["t2", "t3", "t1"]  # t1 was named again: newest score
    assert len({s for _, s in hints}) == len(hints)
    entries = redis_client.xrange(keys.DEAD_LETTERS)
    assert [json.loads(f[b"entry"]) for _, f in entries] == [
        {"stream": dead.stream, "reason": dead.reason, "detail": dead.detail, "raw": dead.raw}
    ]
    assert await store.journal_status("j1") == "executed"
    assert await store.journal_for_key("k1") == ("j1", "executed")  # how an event finds its intent
    assert 0 < redis_client.ttl(keys.journal_key("k1")) <= 14 * 86400
    assert redis_client.hget(keys.journal("j1"), "at") == repr(1001.0).encode()
    assert await store.cursor("activities") == "01B"
    assert redis_client.get(keys.cursor_at("activities")) == repr(1001.0).encode()
    assert await store.cursor("journals") is None


async def test_ingest_keeps_a_replayed_dead_letter_once(store: TransferStore, redis_client: redis.Redis) -> None:
    """The same bad event ingested again (a replay) is not added twice; ingest() returns only what it kept."""
    bad = DeadLetter("activities", "not_json", "data is not JSON", "{oops")
    other = DeadLetter("activities", "not_json", "data is not JSON", "{oops!")
    assert await store.ingest("activities", None, [], [bad, bad], now=1.0) == [bad]
    assert await store.ingest("activities", None, [], [other, bad], now=2.0) == [other]
    assert [json.loads(f[b"entry"])["raw"] for _, f in redis_client.xrange(keys.DEAD_LETTERS)] == ["{oops", "{oops!"]


async def test_ingest_without_cursor_keeps_the_old_one(store: TransferStore, redis_client: redis.Redis) -> None:
    """A batch without a cursor (nothing complete yet) leaves the stored cursor and its time alone."""
    await store.ingest("nta", "01A", [], [], now=5.0)
    await store.ingest("nta", None, ["t1"], [], now=6.0)
    assert await store.cursor("nta") == "01A"
    assert redis_client.get(keys.cursor_at("nta")) == repr(5.0).encode()
    assert await store.hint_count() == 1


async def test_release_hint_keeps_a_hint_named_again(store: TransferStore) -> None:
    """A hint re-added after it was read (new score) survives release with the old score; the new score drops it."""
    await store.ingest("activities", "01A", ["t1"], [], now=1.0)
    [(_, first_score)] = await store.pending_hints(10)
    await store.ingest("activities", "01B", ["t1"], [], now=2.0)
    [(_, second_score)] = await store.pending_hints(10)
    assert second_score != first_score
    await store.release_hint("t1", first_score)
    assert await store.pending_hints(10) == [("t1", second_score)]
    await store.release_hint("t1", second_score)
    assert await store.hint_count() == 0


async def test_account_transfers_prunes_expired(store: TransferStore, redis_client: redis.Redis) -> None:
    """Ids whose transfer hash expired are dropped from the account index when it is read."""
    alive, gone = make_transfer(), make_transfer()
    for t in (alive, gone):
        await record(store, t)
    redis_client.delete(keys.transfer(str(gone.id)))  # as retention expiry would
    assert await store.account_transfers(ACCOUNT) == {str(alive.id)}
    assert redis_client.smembers(keys.account_transfers(ACCOUNT)) == {str(alive.id).encode()}


async def test_system_date_index_lists_every_status_and_skips_expired(
    store: TransferStore, redis_client: redis.Redis
) -> None:
    """Transfers are indexed by system date whatever their status; an expired hash is left out of the read."""
    executed, canceled, gone = make_transfer(), make_transfer("CANCELED"), make_transfer()
    other_day = make_transfer(deadline=TOMORROW + timedelta(days=7))
    for t in (executed, canceled, gone, other_day):
        await record(store, t)
    redis_client.delete(keys.transfer(str(gone.id)))  # as retention expiry would
    found = await store.system_date_transfers(executed.system_date)
    assert {tid: row["status"] for tid, row in found.items()} == {
        str(executed.id): "EXECUTED",
        str(canceled.id): "CANCELED",
    }
    assert 0 < redis_client.ttl(keys.system_date_transfers(executed.system_date)) <= store.retention_seconds


async def test_unknown_status_is_refused(store: TransferStore, redis_client: redis.Redis) -> None:
    """A transfer in a status settlekeeper does not know is refused (the tree's MalformedDataError) before
    anything is written."""
    with pytest.raises(MalformedDataError, match="SUSPENDED"):
        await record(store, make_transfer("SUSPENDED"))
    assert key_names(redis_client) == set()


async def test_scripts_write_only_keys_named_in_keys_module(store: TransferStore, redis_client: redis.Redis) -> None:
    """Every key the Lua scripts build from the prefix is exactly what store/keys.py returns for it."""
    t = make_transfer("PENDING", deadline=TODAY)
    await record(store, t)
    per_transfer = {
        keys.transfer(str(t.id)),
        keys.account_transfers(ACCOUNT),
        keys.system_date_transfers(t.system_date),
    }
    per_day = {keys.due_cents(TODAY), keys.replan_pending(TODAY), keys.replan_seq(TODAY)}
    replan = {keys.action(f"replan-{TODAY}-1"), keys.RECORDS, keys.OUTBOX}
    assert key_names(redis_client) == per_transfer | per_day | replan | {keys.due(TODAY), keys.UNSETTLED}
    await record(store, make_transfer("CANCELED", deadline=TODAY, transfer_id=str(t.id)))
    cover = keys.action(f"cover-{ACCOUNT}-{TODAY}")
    assert key_names(redis_client) == per_transfer | per_day | replan | {cover}  # empty sets vanish
    redis_client.flushdb()
    letter = DeadLetter("journals", "r", "d", "x")
    await store.ingest(
        "journals", "01A", ["t1"], [letter], [("j1", "queued", "k1")], hint_dates={"t1": TODAY.isoformat()}, now=1
    )
    assert key_names(redis_client) == {
        keys.HINT_DATES,
        keys.dead_letter_seen(letter.identity),
        keys.journal("j1"),
        keys.journal_key("k1"),
        keys.cursor("journals"),
        keys.cursor_at("journals"),
        keys.HINTS,
        keys.HINT_SEQ,
        keys.DEAD_LETTERS,
    }


def test_lua_key_literals_are_the_ones_tested() -> None:
    """The Lua scripts build keys from exactly the literals the test above exercises (none added unnoticed);
    the re-plan's coalescing keys are built in Python now (keys.py, passed in by jobs/registry.py)."""
    literals = set(re.findall(r"(?:\bp|KEYS\[7\]) \.\. '([a-z_:]+)'", lua("record") + lua("ingest")))
    prefix = len(keys.PREFIX)
    exercised = {
        keys.due("x")[prefix:-1],
        keys.due_cents("x")[prefix:-1],
        keys.account_transfers("x")[prefix : -len("x:transfers")],
        keys.system_date_transfers("x")[prefix : -len("x:transfers")],
        keys.action("x")[prefix:-1],
        keys.journal("x")[prefix:-1],
        keys.journal_key("x")[prefix:-1],
        keys.dead_letter_seen("x")[prefix:-1],
        keys.UNSETTLED[prefix:],
        keys.HINT_DATES[prefix:],
        keys.ACCOUNT_IDS[prefix:],
        keys.SETTLED_BY[prefix:],
    }
    assert literals == exercised


async def test_a_stale_snapshot_with_less_interest_changes_nothing(store: TransferStore) -> None:
    """Interest only grows: a heal snapshot read before 1 PM cannot undo interest recorded after it."""
    booked = make_transfer("EXECUTED", amount="1000.00", interest="0.35")
    assert await record(store, make_transfer("EXECUTED", amount="1000.00", transfer_id=str(booked.id))) == "recorded"
    assert await record(store, booked) == "updated"
    stale = make_transfer("EXECUTED", amount="1000.00", transfer_id=str(booked.id))
    assert await record(store, stale) == "duplicate"
    stored = await store.transfer(str(booked.id))
    assert (stored["total_interest"], stored["remaining_payable"]) == ("0.35", "1000.35")
    assert await store.amount_due(TOMORROW) == Decimal("1000.35")


async def test_completed_transfer_says_who_settled_it(store: TransferStore, redis_client: redis.Redis) -> None:
    """A COMPLETED transfer is settled by settlekeeper when a settle intent named it, else by the partner."""
    ours, theirs = make_transfer("EXECUTED"), make_transfer("EXECUTED")
    redis_client.hset(keys.ACCOUNT_IDS, ACCOUNT, "0b7f6d2e-0000-4000-8000-000000000001")
    redis_client.hset(keys.SETTLED_BY, str(ours.id), "settle-2026-11-24-1")
    for transfer in (ours, theirs):
        await record(store, transfer)
        await record(store, make_transfer("COMPLETED", transfer_id=str(transfer.id)))
    stored_ours, stored_theirs = await store.transfer(str(ours.id)), await store.transfer(str(theirs.id))
    assert (stored_ours["settled_by"], stored_ours["settle_intent"]) == ("settlekeeper", "settle-2026-11-24-1")
    assert stored_theirs["settled_by"] == "partner"
    assert "settle_intent" not in stored_theirs
    assert stored_ours["account_id"] == "0b7f6d2e-0000-4000-8000-000000000001"
