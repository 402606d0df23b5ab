"""Alert state (store/alert_state.py): each real change of an alert is recorded once, as a state of its
incident, with the payload its delivery job sends; repeats and lower severities record nothing."""

from __future__ import annotations

import asyncio
import json

import redis
import redis.asyncio as aioredis

from funding.alerts import Alert, Severity
from store import keys
from store.alert_state import RECORD_TTL_SECONDS, Transition, is_triggered, move_sync, raise_alert, resolve_alert

DEDUP = "journal-settle-2026-11-24-1"


def alert(severity: Severity = Severity.WARNING, summary: str = "journal is still queued") -> Alert:
    return Alert("journal_pending", severity, DEDUP, summary, {"journal_id": "j-1"})


def outbox(client: redis.Redis) -> set[str]:
    return {member.decode() for member in client.smembers(keys.ALERT_OUTBOX)}  # type: ignore[union-attr]


async def test_a_trigger_is_recorded_once_with_its_payload(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """The first raise opens incident 1 (state ``trigger``, payload kept for RECORD_TTL_SECONDS, outbox entry,
    alerts-stream entry); raising it again at the same severity records nothing."""
    raised = alert()
    assert await raise_alert(async_redis, raised) == Transition(raised, "trigger", 1, "trigger")
    assert await raise_alert(async_redis, alert(summary="still queued, 5 min later")) is None
    record = keys.alert_state(DEDUP, 1, "trigger")
    assert Alert.from_json(redis_client.hget(record, "payload")) == raised  # type: ignore[arg-type]
    assert RECORD_TTL_SECONDS - 5 < redis_client.ttl(record) <= RECORD_TTL_SECONDS
    assert outbox(redis_client) == {f"{DEDUP}|1|trigger"}
    [(_, entry)] = redis_client.xrange(keys.ALERTS)  # type: ignore[misc]
    assert (entry[b"action"], entry[b"seq"], entry[b"kind"], entry[b"journal_id"]) == (
        b"trigger",
        b"1",
        b"journal_pending",
        b"j-1",
    )
    assert await is_triggered(async_redis, DEDUP)


async def test_only_a_higher_severity_escalates_the_open_incident(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """Warning, then critical: ``escalate-critical`` of incident 1; a warning or info after it records nothing."""
    await raise_alert(async_redis, alert())
    critical = alert(Severity.CRITICAL, "journal still queued at 12:55")
    assert await raise_alert(async_redis, critical) == Transition(critical, "trigger", 1, "escalate-critical")
    assert await raise_alert(async_redis, alert()) is None
    assert await raise_alert(async_redis, alert(Severity.INFO)) is None
    assert outbox(redis_client) == {f"{DEDUP}|1|trigger", f"{DEDUP}|1|escalate-critical"}
    payload = redis_client.hget(keys.alert_state(DEDUP, 1, "escalate-critical"), "payload")
    assert json.loads(payload)["severity"] == "critical"  # type: ignore[arg-type]


async def test_a_resolve_closes_the_incident_and_the_next_trigger_opens_another(
    async_redis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """Resolving an alert that is not triggered records nothing; after a trigger it closes incident 1 (its
    record keeps the payload raised and the resolution), and a new trigger is incident 2."""
    assert await resolve_alert(async_redis, alert(Severity.INFO, "journal executed")) is None
    raised = alert()
    await raise_alert(async_redis, raised)
    resolution = alert(Severity.INFO, "journal executed")
    assert await resolve_alert(async_redis, resolution) == Transition(resolution, "resolve", 1, "resolve")
    assert await resolve_alert(async_redis, resolution) is None
    assert not await is_triggered(async_redis, DEDUP)
    record = redis_client.hgetall(keys.alert_state(DEDUP, 1, "resolve"))
    assert Alert.from_json(record[b"payload"]) == raised
    assert Alert.from_json(record[b"resolution"]) == resolution
    assert await raise_alert(async_redis, raised) == Transition(raised, "trigger", 2, "trigger")
    assert outbox(redis_client) == {f"{DEDUP}|1|trigger", f"{DEDUP}|1|resolve", f"{DEDUP}|2|trigger"}


async def test_concurrent_raises_record_one_change(async_redis: aioredis.Redis, redis_client: redis.Redis) -> None:
    """Twenty jobs raising the same alert at once, from asyncio and from threads: exactly one transition."""

    async def from_a_thread() -> Transition | None:
        return await asyncio.to_thread(move_sync, redis_client, alert(), "trigger")

    results = await asyncio.gather(
        *(raise_alert(async_redis, alert()) for _ in range(10)), *(from_a_thread() for _ in range(10))
    )
    assert [r for r in results if r is not None] == [Transition(alert(), "trigger", 1, "trigger")]
    assert redis_client.xlen(keys.ALERTS) == 1
