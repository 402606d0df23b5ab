"""The resolver's hand-off of actions to RQ: once each, with the latency from the deciding record."""

from __future__ import annotations

import time

import redis

from broker.client import BrokerClient
from config.settings import Settings
from jobs.registry import actions_for
from store import keys
from store.transfers import TransferStore
from tests.support.transfers import OBSERVED, TODAY, make_transfer
from worker.listener_metrics import ListenerMetrics
from worker.resolver import Resolver


def resolver(settings: Settings, store: TransferStore, rq: redis.Redis, metrics: ListenerMetrics) -> Resolver:
    """A resolver that only dispatches (its broker client is built but never asked in these tests)."""
    broker = BrokerClient(settings)
    return Resolver(broker, store, rq, metrics, concurrency=1, token=lambda: "", now=lambda: OBSERVED)


async def test_cover_action_is_enqueued_once_and_its_latency_observed(
    settings: Settings, store: TransferStore, redis_client: redis.Redis
) -> None:
    """A CANCELED record's cover action is enqueued, observed once in the latency histogram, never twice."""
    metrics = ListenerMetrics()
    canceled = make_transfer("CANCELED")
    await store.record(canceled, source="test", observed_at=OBSERVED, actions=actions_for(canceled, TODAY))
    assert await resolver(settings, store, redis_client, metrics).dispatch() == 1
    assert await resolver(settings, store, redis_client, metrics).dispatch() == 0
    sample = metrics.registry.get_sample_value
    assert sample("settlekeeper_action_latency_seconds_count", {"kind": "cover"}) == 1
    assert 0 <= (sample("settlekeeper_action_latency_seconds_sum", {"kind": "cover"}) or -1) < 5
    assert sample("settlekeeper_actions_enqueued_total", {"kind": "cover", "result": "enqueued"}) == 1


async def test_latency_runs_from_the_record_not_from_the_dispatch(
    settings: Settings, store: TransferStore, redis_client: redis.Redis
) -> None:
    """An action recorded 30 s ago (its outbox id is the record's Redis time) is observed as about 30 s late."""
    metrics = ListenerMetrics()
    recorded_ms = int(time.time() * 1000) - 30_000
    fields = {"job_id": "replan-2026-11-24-1", "kind": "replan", "account_no": "", "deadline": "2026-11-24"}
    redis_client.xadd(keys.OUTBOX, fields, id=f"{recorded_ms}-0")  # type: ignore[arg-type]
    assert await resolver(settings, store, redis_client, metrics).dispatch() == 1
    latency = metrics.registry.get_sample_value("settlekeeper_action_latency_seconds_sum", {"kind": "replan"})
    assert latency is not None
    assert 30 <= latency < 35
    assert (
        metrics.registry.get_sample_value(
            "settlekeeper_action_latency_seconds_bucket", {"kind": "replan", "le": "30.0"}
        )
        == 0
    )
