"""One alert model, and the state machine that makes every alert go out once per state.

An alert has a kind (its runbook section), a severity, a deterministic dedup key, a summary and facts.
:func:`raise_alert` and :func:`resolve_alert` move the alert's state in Redis atomically (one Lua step):
only a real change is recorded, as a state of the current incident (``trigger`` opens incident ``seq``,
``escalate-<severity>`` raises its severity, ``resolve`` closes it) with the payload to send
(``keys.alert_state``), and handed to the alert queue as a delivery job with a deterministic id per
state, so replays, restarts and job retries never send the same key and state twice, and an escalation
is a state of its own. Delivery (Slack, PagerDuty) is :mod:`jobs.alerts`; nothing is sent from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aioredis

from funding import keys


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


KINDS: dict[str, str] = {
    "digest": "09:30 digest: what is due today, SI/RF balances, projected shortfall",
    "shortfall_projected": "11:30: SI + RF cannot pay what is due today, or auto-settle is not on",
    "unsettled_at_1230": "12:30: transfers due today are still unsettled",
    "late_interest": "13:00: transfers missed the 1 PM cutoff and booked interest",
    "cancellations": "20:00: transfers were canceled and left debit balances",
    "rf_short": "the settle job could not fund every transfer from RF",
    "settlement_failed": "a settlement FAILED (twice: re-plan exhausted)",
    "settlement_refused": "Alpaca refused a settlement request",
    "journal_pending": "a journal settlekeeper sent is still pending (JNLC limits)",
    "journal_rejected": "a journal settlekeeper sent was rejected or canceled",
    "journal_refused": "Alpaca refused a journal request",
    "guardrail": "a money movement was refused by a guardrail (mode, cap)",
    "kill_switch": "the kill switch stopped a money movement",
    "debit_remains": "an account is still in debit after its cover",
    "if_limit": "instant funding limit usage at 80 % (warning) or 95 % (critical)",
    "jit_limit": "JIT daily net limit usage at 80 % (warning) or 95 % (critical); buying halts at 100 %",
    "jit_report_missing": "a JIT report was not available after 11:30 PM ET",
    "jit_report_mismatch": "JIT detail rows do not add up to the net summary",
    "if_report_mismatch": "Alpaca's instant funding report differs from settlekeeper's store",
    "job_failed": "a settlekeeper job failed for good (retries exhausted)",
    "broker_auth": "the Broker API refuses settlekeeper's credentials (HTTP 401/403): nothing is read or settled",
    "dead_letters": "stream events could not be read and were dead-lettered (the stream moved past them)",
}
"""Every alert kind, with the one-line meaning its runbook section starts with (docs/runbook.md)."""

RECORD_TTL_SECONDS = 35 * 86400
"""A recorded state (and its sent markers) outlives every copy of its delivery job: RQ keeps a failed job,
which an operator may requeue, for 30 days (``jobs.queues.FAILURE_TTL_SECONDS``)."""

_MOVE = """
-- KEYS: alert hash, alerts stream, delivery outbox
-- ARGV: action, severity rank, payload json, now, dedup key, severity, state record prefix, record ttl,
--       then (field, value)... for the stream entry
-- A change is recorded as a state: 'trigger' (a new incident), 'escalate-<severity>' (the open incident
-- at a higher severity) or 'resolve'. Its payload is kept in <prefix><seq>:<state> for the delivery job,
-- and the outbox entry ("<dedup>|<seq>|<state>") stays until a delivery job for it is enqueued.
local state = redis.call('HGET', KEYS[1], 'state')
local rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local name = ARGV[1]
local record
if ARGV[1] == 'resolve' then
  if state ~= 'triggered' then return {0, '', ''} end
  redis.call('HSET', KEYS[1], 'state', 'resolved', 'resolved_at', ARGV[4])
  record = {'payload', redis.call('HGET', KEYS[1], 'payload'), 'resolution', ARGV[3]}
else
  if state == 'triggered' then
    if tonumber(ARGV[2]) <= rank then return {0, '', ''} end
    name = 'escalate-' .. ARGV[6]
  else
    redis.call('HINCRBY', KEYS[1], 'seq', 1)
  end
  redis.call('HSET', KEYS[1], 'state', 'triggered', 'rank', ARGV[2], 'payload', ARGV[3], 'triggered_at', ARGV[4])
  record = {'payload', ARGV[3]}
end
local seq = redis.call('HGET', KEYS[1], 'seq')
local record_key = ARGV[7] .. seq .. ':' .. name
redis.call('DEL', record_key)
redis.call('HSET', record_key, unpack(record))
redis.call('EXPIRE', record_key, ARGV[8])
local entry = {'action', ARGV[1], 'seq', seq}
for i = 9, #ARGV do table.insert(entry, ARGV[i]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', unpack(entry))
redis.call('SADD', KEYS[3], ARGV[5] .. '|' .. seq .. '|' .. name)
return {1, seq, name}
"""


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: Severity
    dedup_key: str
    summary: str
    facts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        if not self.dedup_key or len(self.dedup_key) > 255:
            raise ValueError("dedup_key must be 1 to 255 characters (PagerDuty's limit)")

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "severity": self.severity.value,
                "dedup_key": self.dedup_key,
                "summary": self.summary[:1024],
                "facts": self.facts,
            },
            sort_keys=True,
        )

    def stream_fields(self) -> list[str]:
        """kind, severity, dedup_key, summary and every fact, flattened for the ``sk:alerts`` entry."""
        pairs = {"kind": self.kind, "severity": self.severity.value, "dedup_key": self.dedup_key}
        pairs.update({"summary": self.summary[:1024], **self.facts})
        return [part for pair in pairs.items() for part in pair]

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        data = json.loads(raw)
        return cls(data["kind"], Severity(data["severity"]), data["dedup_key"], data["summary"], data["facts"])


def runbook_url(base: str, kind: str) -> str:
    """The runbook section of ``kind`` (anchors are the kind names in docs/runbook.md)."""
    return f"{base}#{kind.replace('_', '-')}"


def delivery_job_id(dedup_key: str, seq: int, action: str) -> str:
    """A deterministic RQ job id (``[A-Za-z0-9_-]``) for one state of one alert."""
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:24]
    return f"alert-{digest}-{seq}-{action}"


@dataclass(frozen=True)
class Transition:
    """A state change worth sending: ``action`` (trigger/resolve) of incident ``seq`` of ``alert``, recorded
    as ``state`` (``trigger``, ``escalate-<severity>`` or ``resolve``: what its delivery job is named by)."""

    alert: Alert
    action: str
    seq: int
    state: str


async def raise_alert(client: aioredis.Redis, alert: Alert) -> Transition | None:
    """Trigger (or escalate) ``alert``; None when it is already triggered at this severity or higher."""
    return await _move(client, alert, "trigger")


async def resolve_alert(client: aioredis.Redis, alert: Alert) -> Transition | None:
    """Resolve ``alert`` (same kind and dedup key); None when it is not triggered."""
    return await _move(client, alert, "resolve")


def _script_args(alert: Alert, action: str) -> list[Any]:
    return [
        keys.alert(alert.dedup_key),
        keys.ALERTS,
        keys.ALERT_OUTBOX,
        action,
        alert.severity.rank,
        alert.to_json(),
        datetime.now(UTC).isoformat(),
        alert.dedup_key,
        alert.severity.value,
        keys.alert_state_prefix(alert.dedup_key),
        RECORD_TTL_SECONDS,
        *alert.stream_fields(),
    ]


def _transition(alert: Alert, action: str, result: Any) -> Transition | None:
    if not int(result[0]):
        return None
    state = result[2].decode() if isinstance(result[2], bytes) else str(result[2])
    return Transition(alert, action, int(result[1]), state)


async def _move(client: aioredis.Redis, alert: Alert, action: str) -> Transition | None:
    return _transition(alert, action, await client.eval(_MOVE, 3, *_script_args(alert, action)))


def move_sync(client: redis.Redis, alert: Alert, action: str) -> Transition | None:
    """The same state change from synchronous code (the listener's limit monitor runs it in a thread)."""
    return _transition(alert, action, client.eval(_MOVE, 3, *_script_args(alert, action)))


async def is_triggered(client: aioredis.Redis, dedup_key: str) -> bool:
    """True while the alert ``dedup_key`` is open (triggered and not resolved since)."""
    state = await client.hget(keys.alert(dedup_key), "state")
    return state in (b"triggered", "triggered")
