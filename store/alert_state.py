"""Alert state in Redis: every alert goes out once per state (``store/lua/alert_move.lua``).

:func:`raise_alert` and :func:`resolve_alert` move an alert's state atomically (one Lua step): only a real
change is recorded, as a state of the current incident (``trigger`` opens incident ``seq``,
``escalate-<severity>`` raises its severity, ``resolve`` closes it) with the payload to send
(``keys.alert_state``), and handed to the alert queue as a delivery job with a deterministic id per
state, so replays, restarts and job retries never send the same key and state twice, and an escalation
is a state of its own. Nothing is sent from here: delivery is :mod:`jobs.alert_delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis

from funding.alerts import Alert
from store import keys
from store.codec import text
from store.scripts import lua

_MOVE = lua("alert_move")
RECORD_TTL_SECONDS = 35 * 86400
"""A recorded state (and its sent markers) outlives every copy of its delivery job: RQ keeps a failed job,
which an operator may requeue, for 30 days (``jobs.registry.FAILURE_TTL_SECONDS``)."""


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
    return Transition(alert, action, int(result[1]), text(result[2]))


async def _move(client: aioredis.Redis, alert: Alert, action: str) -> Transition | None:
    return _transition(alert, action, await client.eval(_MOVE, 3, *_script_args(alert, action)))


def move_sync(client: redis.Redis, alert: Alert, action: str) -> Transition | None:
    """The same state change from synchronous code (the listener's limit monitor runs it in a thread)."""
    return _transition(alert, action, client.eval(_MOVE, 3, *_script_args(alert, action)))


async def is_triggered(client: aioredis.Redis, dedup_key: str) -> bool:
    """True while the alert ``dedup_key`` is open (triggered and not resolved since)."""
    state = await client.hget(keys.alert(dedup_key), "state")
    return state is not None and text(state) == "triggered"
