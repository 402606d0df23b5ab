"""Bad stream input is dead-lettered once and changes nothing; the listener's /healthz, /readyz and /metrics.

Malformed events are put on the wire by the sandbox's ``inject`` fault (before the first event of a
connection); a valid event after each one proves the listener kept going.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from jobs.registry import COVER_QUEUE, SETTLE_QUEUE
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, RunningListener, activity, dead_letters, eventually, sample
from tests.support.sandbox import Sandbox
from tests.support.scenario import arm, customer, until_connected

ACTIVITIES_PATH = "/v2beta1/events/activities"


Payload = Callable[[str], str]
BAD_INPUT: list[Any] = [
    pytest.param(lambda _: "{not json", "not_json", id="not-json"),
    pytest.param(lambda a: json.dumps([activity(a)]), "not_object", id="not-an-object"),
    pytest.param(lambda a: json.dumps(activity(a, event_id=None)), "missing_id", id="missing-event-id"),
    pytest.param(lambda a: json.dumps(activity(a, details={})), "missing_field", id="mem-without-transfer-id"),
    pytest.param(lambda a: json.dumps(activity(a, account_id=None)), "invalid", id="missing-account-id"),
    pytest.param(lambda a: json.dumps(activity(a, activity_type="XYZ")), "unknown_type", id="unknown-type"),
    pytest.param(
        lambda a: json.dumps(activity(a, activity_type="FEE", status="exploded")), "unknown_status", id="unknown-status"
    ),
    pytest.param(lambda a: json.dumps(activity(a, net_amount="12,50")), "invalid", id="amount-not-decimal"),
    pytest.param(lambda a: json.dumps(activity(a, net_amount="NaN")), "invalid", id="amount-not-finite"),
]


async def executed_transfer(sandbox: Sandbox, store: TransferStore, n: int) -> None:
    """A valid transfer on customer ``n``, executed in the sandbox and recorded by the listener."""
    transfer_id = str((await sandbox.create_transfer(customer(n), "100.00"))["id"])
    await sandbox.advance(1)

    async def recorded() -> bool:
        return (await store.transfer(transfer_id)).get("status") == "EXECUTED"

    await eventually(recorded, within=3.0)


async def assert_no_action(store: TransferStore) -> None:
    assert await store.redis.xlen(keys.OUTBOX) == 0
    for queue_name in (COVER_QUEUE, SETTLE_QUEUE):
        assert await store.redis.llen(f"rq:queue:{queue_name}") == 0


@pytest.mark.parametrize(("payload", "reason"), BAD_INPUT)
async def test_bad_event_is_dead_lettered_counted_and_logged_once(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore, payload: Payload, reason: str
) -> None:
    """A malformed event goes to sk:deadletter with its reason, is counted and logged once, and acts on nothing."""
    data = payload(await sandbox.account_id(customer(1)))
    await arm(sandbox, kind="inject", n=1, data=data, stream="activities", times=1)
    with capture_logs() as logs:
        running = await start_listener(sandbox)
        await until_connected(running)
        await executed_transfer(sandbox, store, 1)
    assert [(d["stream"], d["reason"], d["raw"]) for d in await dead_letters(store)] == [("activities", reason, data)]
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason=reason) == 1
    assert [e["reason"] for e in logs if e["event"] == "event_dead_lettered"] == [reason]
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
    await assert_no_action(store)
    assert not running.task.done()
    await running.halt()


async def test_event_naming_an_unknown_transfer_and_account_is_dead_lettered(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """A MEM event for a transfer (and account) the Broker API does not know is dead-lettered after the REST read."""
    event = activity(str(uuid.uuid4()))
    transfer_id = event["details"]["transfer_id"]
    await arm(sandbox, kind="inject", n=1, data=json.dumps(event), stream="activities", times=1)
    with capture_logs() as logs:
        running = await start_listener(sandbox)
        await until_connected(running)
        await executed_transfer(sandbox, store, 1)

        async def dead_lettered() -> bool:
            return bool(await dead_letters(store))

        await eventually(dead_lettered, within=3.0)
    assert [(d["stream"], d["reason"], d["raw"]) for d in await dead_letters(store)] == [
        ("rest", "unknown_transfer", transfer_id)
    ]
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="rest", reason="unknown_transfer") == 1
    assert [e["transfer_id"] for e in logs if e["event"] == "transfer_dead_lettered"] == [transfer_id]
    assert await store.transfer(transfer_id) == {}
    assert await store.hint_count() == 0, "the hint is released, not retried forever"
    await assert_no_action(store)
    await running.halt()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(lambda _: "{not json", "not_json", id="without-id"),
        pytest.param(lambda a: json.dumps(activity(a, activity_type="XYZ")), "unknown_type", id="with-id"),
    ],
)
async def test_bad_event_replayed_after_a_reconnect_is_kept_once(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore, payload: Payload, reason: str
) -> None:
    """The same bad event on two connections (a reconnect replays it) is dead-lettered, counted and logged once."""
    data = payload(await sandbox.account_id(customer(1)))
    faults = [
        {"kind": "inject", "n": 1, "data": data, "stream": "activities", "times": 2},
        {"kind": "drop_every", "n": 1, "stream": "activities", "times": 1},
    ]
    await sandbox.ok("POST", "/sandbox/faults", {"faults": faults})
    with capture_logs() as logs:
        running = await start_listener(sandbox)
        await until_connected(running)
        await executed_transfer(sandbox, store, 1)

        async def replayed() -> bool:
            return sample(running, "settlekeeper_stream_replayed_events_total", stream="activities") >= 1

        await eventually(replayed, within=3.0)
        await executed_transfer(sandbox, store, 2)  # committed after the replay: the replayed batch is done
    assert (await sandbox.ok("POST", "/sandbox/faults", {"faults": []}))["faults"] == [], "both connections injected"
    assert [d["raw"] for d in await dead_letters(store)] == [data]
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason=reason) == 1
    assert [e["reason"] for e in logs if e["event"] == "event_dead_lettered"] == [reason]
    await running.halt()


# ---------------------------------------------------------------------- endpoints


async def probe(sandbox: Sandbox, running: RunningListener, path: str) -> tuple[int, str]:
    """GET one of the listener's endpoints; (status, body text)."""

    async def listening() -> bool:
        return running.listener.health.http_port != 0

    await eventually(listening, within=3.0)
    async with sandbox.http.get(f"http://127.0.0.1:{running.listener.health.http_port}{path}") as resp:
        return resp.status, await resp.text()


async def test_healthz_and_metrics_of_a_connected_leader(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """/healthz and /readyz answer 200 for a connected leader; /metrics is Prometheus text with the stream series."""
    running = await start_listener(sandbox)
    await until_connected(running)
    await executed_transfer(sandbox, store, 1)
    assert await probe(sandbox, running, "/healthz") == (200, json.dumps({"status": "alive"}))
    status, body = await probe(sandbox, running, "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "role": "leader",
        "redis": True,
        "credentials": True,
        "streams": {"activities": True, "journals": True},
    }
    status, text = await probe(sandbox, running, "/metrics")
    assert status == 200
    samples = {
        (s.name, s.labels.get("stream")): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples[("settlekeeper_stream_events_total", "activities")] >= 1
    assert samples[("settlekeeper_stream_connected", "activities")] == 1
    assert samples[("settlekeeper_listener_leader", None)] == 1
    assert samples[("settlekeeper_stream_lag_seconds", "activities")] >= 0
    assert samples[("settlekeeper_stream_cursor_advanced_timestamp_seconds", "activities")] > time.time() - 60
    await running.halt()


async def test_readyz_is_503_while_a_stream_cannot_connect(sandbox: Sandbox, start_listener: ListenerFactory) -> None:
    """A leader whose activities stream is refused (HTTP 503) is not ready; once the fault clears it is again."""
    await arm(sandbox, kind="http_error", status=503, path=ACTIVITIES_PATH, times=10_000)
    running = await start_listener(sandbox)

    async def refused() -> bool:
        status, body = await probe(sandbox, running, "/readyz")
        return status == 503 and json.loads(body)["streams"] == {"activities": False, "journals": True}

    await eventually(refused, within=3.0)
    assert json.loads((await probe(sandbox, running, "/readyz"))[1])["role"] == "leader"
    assert (await probe(sandbox, running, "/healthz"))[0] == 200, "alive, just not ready"
    await sandbox.ok("DELETE", "/sandbox/faults")
    await until_connected(running)
    assert (await probe(sandbox, running, "/readyz"))[0] == 200
    await running.halt()


async def test_standby_is_ready_and_not_leader(sandbox: Sandbox, start_listener: ListenerFactory) -> None:
    """A second listener while the first leads stands by: /readyz 200 with role standby, leader gauge 0."""
    leader = await start_listener(sandbox)
    await until_connected(leader)
    standby = await start_listener(sandbox)

    async def standing_by() -> bool:
        return standby.listener.health.role == "standby"

    await eventually(standing_by, within=3.0)
    status, body = await probe(sandbox, standby, "/readyz")
    assert (status, json.loads(body)["role"], json.loads(body)["streams"]) == (200, "standby", {})
    _, text = await probe(sandbox, standby, "/metrics")
    assert "settlekeeper_listener_leader 0.0" in text.splitlines()
    await standby.halt()
    await leader.halt()
