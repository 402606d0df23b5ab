"""Intents and the audit trail: what settlekeeper meant to do, and everything it decided and did.

Before any money call a job writes an *intent* (what, why, amount, idempotency key); after it, the
outcome with Alpaca's ids. A job that runs again reads the intent and asks the Broker API what
happened before acting (never re-posting blindly). Every decision and movement is also appended to
the audit stream ``sk:audit``, which nothing ever rewrites or trims.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from store import keys
from store.codec import text, text_map

INTENT_TTL_SECONDS = 400 * 86400
"""Intents outlive RQ's TTLs by far: a year and a month, for audits of monthly interest invoices."""


_RAISE_SEQ = """
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1])
end
"""


class IntentStatus(StrEnum):
    PLANNED = "planned"
    """Written, money call not yet sent."""
    SENT = "sent"
    """The call went out; its outcome is not known yet (a crash here means: ask Alpaca)."""
    DONE = "done"
    FAILED = "failed"
    DRY_RUN = "dry-run"
    REFUSED = "refused"
    """A guardrail said no."""


@dataclass
class Intent:
    key: str
    kind: str
    """``fund``, ``settle`` or ``cover``."""
    deadline: str
    why: str
    amount: Decimal
    idempotency_key: str
    status: IntentStatus = IntentStatus.PLANNED
    broker_id: str = ""
    broker_status: str = ""
    detail: str = ""
    account_no: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_hash(self) -> dict[Any, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "deadline": self.deadline,
            "why": self.why,
            "amount": str(self.amount),
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "broker_id": self.broker_id,
            "broker_status": self.broker_status,
            "detail": self.detail,
            "account_no": self.account_no,
            **{f"x_{k}": v for k, v in self.extra.items()},
        }

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Intent:
        return cls(
            key=raw["key"],
            kind=raw["kind"],
            deadline=raw["deadline"],
            why=raw["why"],
            amount=Decimal(raw["amount"]),
            idempotency_key=raw["idempotency_key"],
            status=IntentStatus(raw["status"]),
            broker_id=raw.get("broker_id", ""),
            broker_status=raw.get("broker_status", ""),
            detail=raw.get("detail", ""),
            account_no=raw.get("account_no", ""),
            extra={k[2:]: v for k, v in raw.items() if k.startswith("x_")},
        )


class Ledger:
    """Intents (one hash each) and the append-only audit stream."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._raise_seq = client.register_script(_RAISE_SEQ)

    async def intent(self, key: str) -> Intent | None:
        raw = await self.redis.hgetall(keys.intent(key))
        if not raw:
            return None
        return Intent.from_hash(text_map(raw))

    async def save(self, intent: Intent, event: str, **facts: Any) -> None:
        """Store the intent's current state and audit the change, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.intent(intent.key), mapping=intent.to_hash())
            pipe.expire(keys.intent(intent.key), INTENT_TTL_SECONDS)
            pipe.sadd(keys.intents_of(intent.deadline), intent.key)
            pipe.expire(keys.intents_of(intent.deadline), INTENT_TTL_SECONDS)
            pipe.xadd(keys.AUDIT, _audit_fields(event, intent.kind, intent.key, intent.amount, facts))
            if intent.broker_id:  # the entry names Alpaca's id (the intent's state is in its facts' context)
                pipe.sadd(keys.accounted(intent.deadline), intent.broker_id)
                pipe.expire(keys.accounted(intent.deadline), INTENT_TTL_SECONDS)
            await pipe.execute()

    async def remember_transfers(self, intent_key: str, transfer_ids: Iterable[str]) -> None:
        """Mark transfers as included in a settle intent (before the POST), for settled_by and resumes."""
        ids = list(transfer_ids)
        async with self.redis.pipeline(transaction=True) as pipe:
            for start in range(0, len(ids), 10_000):
                chunk = ids[start : start + 10_000]
                pipe.sadd(keys.intent_transfers(intent_key), *chunk)
                pipe.hset(keys.SETTLED_BY, mapping={transfer_id: intent_key for transfer_id in chunk})
            pipe.expire(keys.intent_transfers(intent_key), INTENT_TTL_SECONDS)
            await pipe.execute()

    async def intent_transfers(self, intent_key: str) -> set[str]:
        return {text(m) for m in await self.redis.smembers(keys.intent_transfers(intent_key))}

    async def intents_for(self, deadline: str) -> list[Intent]:
        found = []
        for key in sorted(text(k) for k in await self.redis.smembers(keys.intents_of(deadline))):
            intent = await self.intent(key)
            if intent is not None:
                found.append(intent)
        return found

    async def accounted_for(self, deadline: str, broker_id: str) -> bool:
        """True when ``broker_id`` (a journal or settlement of ``deadline``) needs no reconciliation."""
        return bool(await self.redis.sismember(keys.accounted(deadline), broker_id))

    async def account_for(self, deadline: str, broker_id: str) -> None:
        """Mark ``broker_id`` as needing no reconciliation (another deployment's, or named by an older entry)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(keys.accounted(deadline), broker_id)
            pipe.expire(keys.accounted(deadline), INTENT_TTL_SECONDS)
            await pipe.execute()

    async def raise_seq(self, deadline: str, seq: int) -> None:
        """Make the deadline's intent sequence (``sk:plan:<deadline>`` ``seq``) at least ``seq``, so that the
        next intent never takes a key Alpaca already holds."""
        await self._raise_seq(keys=[keys.plan(deadline)], args=[seq])

    async def note(self, event: str, kind: str, key: str, amount: Decimal | None = None, **facts: Any) -> None:
        """Audit a decision that has no intent of its own (nothing due, a plan, a shortfall, a refusal)."""
        await self.redis.xadd(keys.AUDIT, _audit_fields(event, kind, key, amount, facts))


def _audit_fields(event: str, kind: str, key: str, amount: Decimal | None, facts: Mapping[str, Any]) -> dict[Any, Any]:
    return {
        "at": datetime.now(UTC).isoformat(),
        "event": event,
        "kind": kind,
        "key": key,
        "amount": "" if amount is None else str(amount),
        "facts": json.dumps(facts, default=str, sort_keys=True),
    }
