"""The Redis store of instant-funding transfers, and its atomic steps (Lua, in ``store/lua/``).

Two steps touch the store, each one Lua script, so a crash at any instant leaves either all or none
of a step visible:

- :meth:`TransferStore.ingest` (``ingest.lua``) — a batch of stream events: the transfer ids they name
  become *hints* (to be read over REST), malformed events go to the dead-letter stream (once each, however
  often a reconnect replays them), and the stream's cursor advances to the last event of the batch. Fenced
  by the listener's lease token.
- :meth:`TransferStore.record` (``record.lua``) — a transfer as the Broker API returned it: de-duplicated by
  (transfer id, status), never moved backwards, indexed, appended to the records stream, and, when it is a
  change, the actions the caller decided for it (``jobs/registry.py`` :func:`actions_for`) put in the
  outbox, once per action id, ever. Which job a change causes is Python's decision; Lua only makes the
  step atomic.

Amounts are decimal strings in hashes and integer cents in counters; Lua never does money arithmetic
on floats (it only passes cent strings to INCRBY).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import redis.asyncio as aioredis

from funding.errors import LeaseLostError, MalformedDataError
from funding.models import InstantFunding
from funding.money import CENT, ZERO
from funding.records import Action, DeadLetter, PlannedAction, RecordOutcome, RecordResult
from store import keys
from store.codec import text, text_map, texts
from store.scripts import lua

DEFAULT_RETENTION_SECONDS = 35 * 86400
"""Settled and canceled transfers are kept 35 days: a month of history for reports and reconciliation."""
ACTION_MEMORY_SECONDS = 60 * 86400
"""An action id is remembered 60 days, far beyond any replay, so it is never enqueued twice."""
DEAD_LETTER_MEMORY_SECONDS = 7 * 86400
"""A dead letter's identity is remembered a week, far beyond any replay, so a replay never adds it again."""
RECORDS_MAXLEN = 1_000_000
"""The records stream is trimmed (approximately) to its last million entries."""

RANK = {"PENDING": 0, "EXECUTED": 1, "COMPLETED": 2, "CANCELED": 2, "FAILED": 2}
"""A transfer's statuses in order (record.lua has the same table): a final one never goes back."""


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
        self._ingest = client.register_script(lua("ingest"))
        self._record = client.register_script(lua("record"))
        self._release = client.register_script(lua("release_hint"))

    async def ingest(
        self,
        stream: str,
        cursor: str | None,
        transfer_ids: list[str],
        dead_letters: list[DeadLetter],
        journals: Sequence[tuple[str, str, str]] = (),
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
        argv += [len(journals), *(part for triple in journals for part in triple)]
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
        self,
        transfer: InstantFunding,
        *,
        source: str,
        observed_at: datetime,
        actions: Sequence[PlannedAction] = (),
        token: str = "",
    ) -> RecordOutcome:
        """Store ``transfer`` as read from the Broker API; if it is a change, append ``actions`` with it."""
        status = transfer.status.value
        if status not in RANK:
            raise MalformedDataError(f"cannot record transfer {transfer.id} in unknown status {status!r}")
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
            "settlement_id": str(getattr(transfer, "settlement_id", "") or ""),
        }
        planned = [
            part for a in actions for part in (a.kind, a.job_id, a.account_no, a.deadline, a.pending_key, a.seq_key)
        ]
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
                RECORDS_MAXLEN,
                len(actions),
                *planned,
            ],
        )
        code = int(result)
        if code == -1:
            raise LeaseLostError("the leader lease is held by another listener")
        outcome = {0: RecordResult.DUPLICATE, 1: RecordResult.RECORDED, 2: RecordResult.UPDATED}[code]
        return RecordOutcome(outcome, text(previous or ""))

    # ------------------------------------------------------------------ hints

    async def pending_hints(self, limit: int) -> list[tuple[str, float]]:
        """The oldest ``limit`` hints with their scores."""
        rows = cast(list[tuple[bytes, float]], await self.redis.zrange(keys.HINTS, 0, limit - 1, withscores=True))
        return [(text(member), float(score)) for member, score in rows]

    async def release_hint(self, transfer_id: str, score: float) -> None:
        """Drop a hint unless a newer event named the transfer again since it was read."""
        await self._release(keys=[keys.HINTS, keys.HINT_DATES], args=[transfer_id, _score_text(score)])

    async def hint_dates(self, transfer_ids: Sequence[str]) -> dict[str, str]:
        """The system date an event gave for each hinted transfer, where it gave one."""
        if not transfer_ids:
            return {}
        values = await self.redis.hmget(keys.HINT_DATES, list(transfer_ids))
        return {tid: text(v) for tid, v in zip(transfer_ids, values, strict=True) if v is not None}

    async def hint_count(self) -> int:
        return int(await self.redis.zcard(keys.HINTS))

    # ------------------------------------------------------------------ outbox

    async def outbox(self, limit: int = 100) -> list[Action]:
        rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(keys.OUTBOX, count=limit))
        actions = []
        for stream_id, fields in rows:
            f = text_map(fields)
            actions.append(Action(text(stream_id), f["job_id"], f["kind"], f["account_no"], f["deadline"]))
        return actions

    async def done(self, action: Action) -> None:
        await self.redis.xdel(keys.OUTBOX, action.stream_id)

    # ------------------------------------------------------------------ reads

    async def cursor(self, stream: str) -> str | None:
        value = await self.redis.get(keys.cursor(stream))
        return text(value) if value is not None else None

    async def journal_for_key(self, idempotency_key: str) -> tuple[str, str] | None:
        """(journal id, last status) of the journal an event said was created under ``idempotency_key``."""
        return await journal_for_key(self.redis, idempotency_key)

    async def journal_status(self, journal_id: str) -> str | None:
        value = await self.redis.hget(keys.journal(journal_id), "status")
        return text(value) if value is not None else None

    async def transfer(self, transfer_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.transfer(transfer_id))
        return text_map(raw)

    async def unsettled_due(self, deadline: date) -> set[str]:
        """Ids of the unsettled transfers due on ``deadline``."""
        return texts(await self.redis.smembers(keys.due(deadline)))

    async def amount_due(self, deadline: date) -> Decimal:
        """What is still payable for ``deadline`` (remaining payable, interest included)."""
        value = await self.redis.get(keys.due_cents(deadline))
        return (Decimal(int(value)) * CENT) if value is not None else ZERO

    async def due_count(self, deadline: date) -> int:
        """How many transfers due on ``deadline`` are unsettled (without reading their ids)."""
        return int(await self.redis.scard(keys.due(deadline)))

    async def unsettled_ids(self) -> set[str]:
        return texts(await self.redis.smembers(keys.UNSETTLED))

    async def system_date_transfers(self, day: date) -> dict[str, dict[str, str]]:
        """Every retained transfer recorded with system date ``day``, by id (as :meth:`transfer` reads it)."""
        ids = sorted(texts(await self.redis.smembers(keys.system_date_transfers(day))))
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for transfer_id in chunk:
                    pipe.hgetall(keys.transfer(transfer_id))
                hashes = await pipe.execute()
            for transfer_id, raw in zip(chunk, hashes, strict=True):
                if raw:  # an expired transfer leaves its id behind until the index itself expires
                    found[transfer_id] = text_map(raw)
        return found

    async def recorded_as(self, transfer_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(status, interest in cents) each of ``transfer_ids`` is recorded with, for those the store holds."""
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(transfer_ids), 10_000):
            chunk = transfer_ids[start : start + 10_000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for transfer_id in chunk:
                    pipe.hmget(keys.transfer(transfer_id), "status", "interest_cents")
                rows = await pipe.execute()
            for transfer_id, (status, interest) in zip(chunk, rows, strict=True):
                if status is not None and interest is not None:
                    found[transfer_id] = (text(status), int(text(interest)))
        return found

    async def canceled_of(self, account_no: str, deadline: date) -> Decimal:
        """What ``account_no``'s IF transfers due ``deadline`` that this store holds as CANCELED took back (the
        amounts of Broker API reads, recorded once final; a transfer not recorded yet, or lost, is not in it)."""
        ids = sorted(texts(await self.redis.smembers(keys.account_transfers(account_no))))
        async with self.redis.pipeline(transaction=False) as pipe:
            for transfer_id in ids:
                pipe.hmget(keys.transfer(transfer_id), "status", "deadline", "amount")
            rows = await pipe.execute()
        taken = ZERO
        for status, due, amount in rows:
            if text(status) == "CANCELED" and text(due) == deadline.isoformat() and amount is not None:
                taken += Decimal(text(amount))
        return taken

    async def account_transfers(self, account_no: str) -> set[str]:
        """Ids of ``account_no``'s transfers still retained (expired ones are pruned as they are met)."""
        ids = texts(await self.redis.smembers(keys.account_transfers(account_no)))
        present = set()
        for transfer_id in ids:
            if await self.redis.exists(keys.transfer(transfer_id)):
                present.add(transfer_id)
            else:
                await self.redis.srem(keys.account_transfers(account_no), transfer_id)
        return present


def _score_text(score: float) -> str:
    return str(int(score)) if score == int(score) else repr(score)


async def journal_for_key(client: aioredis.Redis, idempotency_key: str) -> tuple[str, str] | None:
    """(journal id, last status) the journal status stream gave for ``idempotency_key``, or None."""
    raw = text_map(await client.hgetall(keys.journal_key(idempotency_key)))
    return (raw["journal_id"], raw["status"]) if "journal_id" in raw and "status" in raw else None
