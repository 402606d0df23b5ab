"""The resolver's hand-off of actions to RQ: once each, with the latency from the deciding record."""

from __future__ import annotations

import time
from datetime import timedelta

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from broker.client import BrokerClient
from config.settings import Settings
from jobs.registry import COVER_QUEUE, SETTLE_QUEUE, actions_for, queue
from store import keys
from store.transfers import TransferStore
from tests.support.listener import listener_settings
from tests.support.sandbox import Sandbox
from tests.support.scenario import records
from tests.support.transfers import ACCOUNT, OBSERVED, TODAY, make_transfer
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


async def test_cover_actions_found_together_go_out_as_one_job_per_deadline(
    settings: Settings, store: TransferStore, redis_client: redis.Redis
) -> None:
    """Covers of one deadline found together in the outbox become one batched job, each action counted once;
    another deadline's cover and a replan go out as jobs of their own."""
    metrics = ListenerMetrics()
    later = TODAY + timedelta(days=7)
    changed = [make_transfer("CANCELED", deadline=TODAY, account_no=f"81000000{n:02d}") for n in range(1, 4)]
    changed += [make_transfer("CANCELED", deadline=later), make_transfer("EXECUTED", deadline=TODAY)]
    for transfer in changed:
        await store.record(transfer, source="test", observed_at=OBSERVED, actions=actions_for(transfer, TODAY))
    assert await resolver(settings, store, redis_client, metrics).dispatch() == 5
    cover_jobs = sorted(queue(COVER_QUEUE, redis_client).job_ids)
    assert len(cover_jobs) == 2
    assert cover_jobs[0] == f"cover-{ACCOUNT}-{later}"
    assert cover_jobs[1].startswith(f"covers-{TODAY}-")
    batched = Job.fetch(cover_jobs[1], connection=redis_client, serializer=JSONSerializer)
    assert batched.kwargs == {"accounts": ["8100000001", "8100000002", "8100000003"], "deadline": TODAY.isoformat()}
    assert queue(SETTLE_QUEUE, redis_client).job_ids == [f"replan-{TODAY}-1"]
    sample = metrics.registry.get_sample_value
    assert sample("settlekeeper_actions_enqueued_total", {"kind": "cover", "result": "enqueued"}) == 4
    assert await store.outbox() == []


async def test_a_heal_writes_only_what_changed_since_it_was_recorded(
    sandbox: Sandbox, store: TransferStore, redis_client: redis.Redis
) -> None:
    """A heal over transfers recorded as they still are writes nothing (counted as duplicates, no record step); one
    whose status moved since is recorded."""
    settings = listener_settings(sandbox)
    metrics = ListenerMetrics()
    for account in ("8100000001", "8100000002", "8100000003"):
        await sandbox.create_transfer(account, "10.00")
    await sandbox.advance(1)  # executed
    async with BrokerClient(settings) as broker:
        heal = Resolver(broker, store, redis_client, metrics, concurrency=2, token=lambda: "", now=lambda: OBSERVED)
        assert await heal.heal() == 3
        first = await records(store)
        assert len(first) == 3
        scripts_before = evalsha_calls(redis_client)
        assert await heal.heal() == 3
        assert evalsha_calls(redis_client) == scripts_before  # not even a record step ran
        assert await records(store) == first
        sample = metrics.registry.get_sample_value
        assert sample("settlekeeper_transfer_records_total", {"source": "poller", "outcome": "duplicate"}) == 3
        moved = (await sandbox.ok("GET", "/v1/instant_funding"))[0]
        await sandbox.ok("DELETE", f"/v1/instant_funding/{moved['id']}")  # canceled by the partner
        assert await heal.heal() == 3
        assert [(r["transfer_id"], r["to"]) for r in await records(store)][3:] == [(moved["id"], "CANCELED")]


def evalsha_calls(client: redis.Redis) -> int:
    """How many Lua scripts the server has run (the record step is one)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
    return int(stats["calls"])
