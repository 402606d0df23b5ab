"""The Redis store of instant-funding transfers, and its atomic steps (Lua).

Two steps touch the store, each one Lua script, so a crash at any instant leaves either all or none
of a step visible:

- :meth:`TransferStore.ingest` — a batch of stream events: the transfer ids they name become *hints*
  (to be read over REST), malformed events go to the dead-letter stream (once each, however often a
  reconnect replays them), and the stream's cursor advances to the last event of the batch. Fenced by
  the listener's lease token.
- :meth:`TransferStore.record` — a transfer as the Broker API returned it: de-duplicated by
  (transfer id, status), never moved backwards, indexed, appended to the records stream, and, when an
  action may be due, an action is put in the outbox (once per action id, ever).

Amounts are decimal strings in hashes and integer cents in counters; Lua never does money arithmetic
on floats (it only passes cent strings to INCRBY).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import redis.asyncio as aioredis

from funding import keys
from funding.models import InstantFunding
from funding.money import CENT, ZERO

DEFAULT_RETENTION_SECONDS = 35 * 86400
"""Settled and canceled transfers are kept 35 days: a month of history for reports and reconciliation."""
ACTION_MEMORY_SECONDS = 60 * 86400
"""An action id is remembered 60 days, far beyond any replay, so it is never enqueued twice."""
DEAD_LETTER_MEMORY_SECONDS = 7 * 86400
"""A dead letter's identity is remembered a week, far beyond any replay, so a replay never adds it again."""
RECORDS_MAXLEN = 1_000_000
"""The records stream is trimmed (approximately) to its last million entries."""

_RANK = {"PENDING": 0, "EXECUTED": 1, "COMPLETED": 2, "CANCELED": 2, "FAILED": 2}

_INGEST = """
-- KEYS: cursor, cursor_at, hints, hint_seq, deadletters, leader, key prefix
-- ARGV: token, cursor id, now (unix s), n_hints, hint ids..., n_dead, memory (s),
--       (dead-letter identity, json)..., n_journals, (journal id, status)...,
--       n_dates, (transfer id, system date)...
-- Returns -1 if the lease is lost, else the positions (1-based) of the dead letters kept.
if ARGV[1] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[1] then
  return -1
end
local n = tonumber(ARGV[4])
local i = 5
if n > 0 then
  local seq = redis.call('INCRBY', KEYS[4], n) - n
  for j = 1, n do
    redis.call('ZADD', KEYS[3], seq + j, ARGV[i])
    i = i + 1
  end
end
local d = tonumber(ARGV[i])
local memory = ARGV[i + 1]
i = i + 2
local kept = {}
for j = 1, d do
  if redis.call('SET', KEYS[7] .. 'deadletter_seen:' .. ARGV[i], '1', 'NX', 'EX', memory) then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', 'entry', ARGV[i + 1])
    table.insert(kept, j)
  end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
for j = 1, m do
  redis.call('HSET', KEYS[7] .. 'journal:' .. ARGV[i], 'status', ARGV[i + 1], 'at', ARGV[3])
  i = i + 2
end
local h = tonumber(ARGV[i])
i = i + 1
for j = 1, h do
  redis.call('HSET', KEYS[7] .. 'hint_dates', ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3])
end
return kept
"""

_RECORD = """
-- KEYS: transfer, statuses, records, outbox, leader
-- ARGV: token, json record, prefix, retention, action ttl, today, records maxlen
if ARGV[1] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[1] then
  return {-1, ''}
end
local r = cjson.decode(ARGV[2])
local p = ARGV[3]
local rank = {PENDING = 0, EXECUTED = 1, COMPLETED = 2, CANCELED = 2, FAILED = 2}
local old = redis.call('HMGET', KEYS[1], 'status', 'deadline', 'due_cents', 'interest_cents')
local old_status = old[1] or ''
local duplicate = redis.call('SISMEMBER', KEYS[2], r.status) == 1
if old_status ~= '' and rank[r.status] < rank[old_status] then
  return {0, old_status}  -- a stale read: never move backwards
end
if duplicate and tonumber(r.interest_cents) <= tonumber(old[4] or '0') then
  return {0, old_status}  -- nothing new (interest only ever grows; an older snapshot has less)
end
-- index bookkeeping: take the old due amount out, put the new one in
if old_status == 'PENDING' or old_status == 'EXECUTED' then
  redis.call('SREM', p .. 'due:' .. old[2], r.id)
  redis.call('DECRBY', p .. 'due_cents:' .. old[2], old[3])
end
local unsettled = r.status == 'PENDING' or r.status == 'EXECUTED'
if unsettled then
  redis.call('SADD', p .. 'unsettled', r.id)
  redis.call('SADD', p .. 'due:' .. r.deadline, r.id)
  redis.call('INCRBY', p .. 'due_cents:' .. r.deadline, r.due_cents)
end
redis.call('HSET', KEYS[1],
  'id', r.id, 'account_no', r.account_no, 'source_account_no', r.source_account_no,
  'amount', r.amount, 'status', r.status, 'system_date', r.system_date, 'deadline', r.deadline,
  'remaining_payable', r.remaining_payable, 'total_interest', r.total_interest,
  'interest_cents', r.interest_cents,
  'due_cents', unsettled and r.due_cents or '0', 'created_at', r.created_at,
  'updated_at', r.observed_at, 'source', r.source)
if r.settlement_id ~= '' then
  redis.call('HSET', KEYS[1], 'settlement_id', r.settlement_id)
end
local account_id = redis.call('HGET', p .. 'account_ids', r.account_no)
if account_id then
  redis.call('HSET', KEYS[1], 'account_id', account_id)
end
if r.status == 'COMPLETED' then
  local intent = redis.call('HGET', p .. 'settled_by', r.id)
  redis.call('HSET', KEYS[1], 'settled_by', intent and 'settlekeeper' or 'partner')
  if intent then
    redis.call('HSET', KEYS[1], 'settle_intent', intent)
  end
end
redis.call('SADD', p .. 'account:' .. r.account_no .. ':transfers', r.id)
if redis.call('SADD', p .. 'system_date:' .. r.system_date .. ':transfers', r.id) == 1 then
  redis.call('EXPIRE', p .. 'system_date:' .. r.system_date .. ':transfers', ARGV[4])
end
if duplicate then
  return {2, old_status}  -- same status, new interest: fields updated, no record, no action
end
redis.call('SADD', KEYS[2], r.status)
if not unsettled then
  redis.call('SREM', p .. 'unsettled', r.id)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*',
  'transfer_id', r.id, 'from', old_status, 'to', r.status, 'at', r.observed_at, 'source', r.source,
  'account_no', r.account_no, 'deadline', r.deadline)
local actions = {}
if r.status == 'CANCELED' then
  table.insert(actions, {'cover-' .. r.account_no .. '-' .. r.deadline, 'cover', r.account_no, r.deadline})
end
if r.deadline == ARGV[6] then
  if redis.call('SET', p .. 'replan_pending:' .. r.deadline, '1', 'NX', 'EX', 86400) then
    local seq = redis.call('INCR', p .. 'replan_seq:' .. r.deadline)
    table.insert(actions, {'replan-' .. r.deadline .. '-' .. seq, 'replan', '', r.deadline})
  end
end
for _, a in ipairs(actions) do
  if redis.call('SET', p .. 'action:' .. a[1], '1', 'NX', 'EX', ARGV[5]) then
    redis.call('XADD', KEYS[4], '*', 'job_id', a[1], 'kind', a[2], 'account_no', a[3], 'deadline', a[4])
  end
end
return {1, old_status}
"""

_RELEASE_HINT = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class LeaseLostError(Exception):
    """The caller's lease token no longer owns the leader key; it must stop writing at once."""


@dataclass(frozen=True)
class DeadLetter:
    stream: str
    reason: str
    detail: str
    raw: str

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "reason": self.reason, "detail": self.detail, "raw": self.raw[:4000]})

    @property
    def identity(self) -> str:
        """Same stream, reason and payload: the same dead letter (a replayed event arrives byte for byte)."""
        return hashlib.sha256(f"{self.stream}\0{self.reason}\0{self.raw}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Action:
    """An RQ job the store decided on: ``kind`` is ``cover`` or ``replan``."""

    stream_id: str
    job_id: str
    kind: str
    account_no: str
    deadline: str


@dataclass(frozen=True)
class RecordOutcome:
    """What :meth:`TransferStore.record` did: ``recorded`` (new status), ``updated``, or ``duplicate``."""

    result: str
    previous_status: str


def cents(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_value())


class TransferStore:
    """The transfers, their indexes, hints, records, dead letters and the action outbox."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self.redis = client
        self.retention_seconds = retention_seconds
        self._ingest = client.register_script(_INGEST)
        self._record = client.register_script(_RECORD)
        self._release = client.register_script(_RELEASE_HINT)

    async def ingest(
        self,
        stream: str,
        cursor: str | None,
        transfer_ids: list[str],
        dead_letters: list[DeadLetter],
        journals: Sequence[tuple[str, str]] = (),
        *,
        hint_dates: Mapping[str, str] | None = None,
        token: str = "",
        now: float,
    ) -> list[DeadLetter]:
        """Hints + dead letters + journal statuses + cursor advance: one atomic step fenced by ``token``.

        Returns the dead letters kept: those not already in the dead-letter stream (replays are dropped).
        """
        argv: list[Any] = [token, cursor or "", repr(now), len(transfer_ids), *transfer_ids]
        argv += [len(dead_letters), DEAD_LETTER_MEMORY_SECONDS]
        argv += [part for d in dead_letters for part in (d.identity, d.to_json())]
        argv += [len(journals), *(part for pair in journals for part in pair)]
        dates = hint_dates or {}
        argv += [len(dates), *(part for pair in dates.items() for part in pair)]
        result = await self._ingest(
            keys=[
                keys.cursor(stream),
                keys.cursor_at(stream),
                keys.HINTS,
                keys.HINT_SEQ,
                keys.DEAD_LETTERS,
                keys.LEADER,
                keys.PREFIX,
            ],
            args=argv,
        )
        if not isinstance(result, list):  # -1
            raise LeaseLostError("the leader lease is held by another listener")
        return [dead_letters[int(position) - 1] for position in result]

    async def record(
        self, transfer: InstantFunding, *, source: str, observed_at: datetime, today: date, token: str = ""
    ) -> RecordOutcome:
        """Store ``transfer`` as read from the Broker API; decide actions atomically with it."""
        status = transfer.status.value
        if status not in _RANK:
            raise ValueError(f"cannot record unknown status {status!r}")
        settlement_id = str(getattr(transfer, "settlement_id", "") or "")
        record = {
            "id": str(transfer.id),
            "account_no": transfer.account_no,
            "source_account_no": transfer.source_account_no,
            "amount": str(transfer.amount),
            "status": status,
            "system_date": transfer.system_date.isoformat(),
            "deadline": transfer.deadline.isoformat(),
            "remaining_payable": str(transfer.remaining_payable),
            "total_interest": str(transfer.total_interest),
            "due_cents": str(cents(transfer.remaining_payable)),
            "interest_cents": str(cents(transfer.total_interest)),
            "created_at": transfer.created_at.isoformat(),
            "observed_at": observed_at.isoformat(),
            "source": source,
            "settlement_id": settlement_id,
        }
        result, previous = await self._record(
            keys=[
                keys.transfer(record["id"]),
                keys.transfer_statuses(record["id"]),
                keys.RECORDS,
                keys.OUTBOX,
                keys.LEADER,
            ],
            args=[
                token,
                json.dumps(record),
                keys.PREFIX,
                self.retention_seconds,
                ACTION_MEMORY_SECONDS,
                today.isoformat(),
                RECORDS_MAXLEN,
            ],
        )
        code = int(result)
        if code == -1:
            raise LeaseLostError("the leader lease is held by another listener")
        previous_status = previous.decode() if isinstance(previous, bytes) else str(previous or "")
        return RecordOutcome({0: "duplicate", 1: "recorded", 2: "updated"}[code], previous_status)

    # ------------------------------------------------------------------ hints

    async def pending_hints(self, limit: int) -> list[tuple[str, float]]:
        """The oldest ``limit`` hints with their scores."""
        rows = cast(list[tuple[bytes, float]], await self.redis.zrange(keys.HINTS, 0, limit - 1, withscores=True))
        return [(_text(member), float(score)) for member, score in rows]

    async def release_hint(self, transfer_id: str, score: float) -> None:
        """Drop a hint unless a newer event named the transfer again since it was read."""
        await self._release(keys=[keys.HINTS, keys.HINT_DATES], args=[transfer_id, _score_text(score)])

    async def hint_dates(self, transfer_ids: Sequence[str]) -> dict[str, str]:
        """The system date an event gave for each hinted transfer, where it gave one."""
        if not transfer_ids:
            return {}
        values = await self.redis.hmget(keys.HINT_DATES, list(transfer_ids))
        return {tid: _text(v) for tid, v in zip(transfer_ids, values, strict=True) if v is not None}

    async def hint_count(self) -> int:
        return int(await self.redis.zcard(keys.HINTS))

    # ------------------------------------------------------------------ outbox

    async def outbox(self, limit: int = 100) -> list[Action]:
        rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(keys.OUTBOX, count=limit))
        actions = []
        for stream_id, fields in rows:
            f = {_text(k): _text(v) for k, v in fields.items()}
            actions.append(Action(_text(stream_id), f["job_id"], f["kind"], f["account_no"], f["deadline"]))
        return actions

    async def done(self, action: Action) -> None:
        await self.redis.xdel(keys.OUTBOX, action.stream_id)

    # ------------------------------------------------------------------ reads

    async def cursor(self, stream: str) -> str | None:
        value = await self.redis.get(keys.cursor(stream))
        return _text(value) if value is not None else None

    async def journal_status(self, journal_id: str) -> str | None:
        value = await self.redis.hget(keys.journal(journal_id), "status")
        return _text(value) if value is not None else None

    async def transfer(self, transfer_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.transfer(transfer_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def unsettled_due(self, deadline: date) -> set[str]:
        """Ids of the unsettled transfers due on ``deadline``."""
        return {_text(m) for m in await self.redis.smembers(keys.due(deadline))}

    async def amount_due(self, deadline: date) -> Decimal:
        """What is still payable for ``deadline`` (remaining payable, interest included)."""
        value = await self.redis.get(keys.due_cents(deadline))
        return (Decimal(int(value)) * CENT) if value is not None else ZERO

    async def due_count(self, deadline: date) -> int:
        """How many transfers due on ``deadline`` are unsettled (without reading their ids)."""
        return int(await self.redis.scard(keys.due(deadline)))

    async def unsettled_ids(self) -> set[str]:
        return {_text(m) for m in await self.redis.smembers(keys.UNSETTLED)}

    async def system_date_transfers(self, day: date) -> dict[str, dict[str, str]]:
        """Every retained transfer recorded with system date ``day``, by id (as :meth:`transfer` reads it)."""
        ids = sorted(_text(m) for m in await self.redis.smembers(keys.system_date_transfers(day)))
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for transfer_id in chunk:
                    pipe.hgetall(keys.transfer(transfer_id))
                hashes = await pipe.execute()
            for transfer_id, raw in zip(chunk, hashes, strict=True):
                if raw:  # an expired transfer leaves its id behind until the index itself expires
                    found[transfer_id] = {_text(k): _text(v) for k, v in raw.items()}
        return found

    async def account_transfers(self, account_no: str) -> set[str]:
        """Ids of ``account_no``'s transfers still retained (expired ones are pruned as they are met)."""
        ids = {_text(m) for m in await self.redis.smembers(keys.account_transfers(account_no))}
        present = set()
        for transfer_id in ids:
            if await self.redis.exists(keys.transfer(transfer_id)):
                present.add(transfer_id)
            else:
                await self.redis.srem(keys.account_transfers(account_no), transfer_id)
        return present


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score_text(score: float) -> str:
    return str(int(score)) if score == int(score) else repr(score)
