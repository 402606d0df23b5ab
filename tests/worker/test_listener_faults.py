"""The listener against the sandbox with each stream fault injected: the store converges on the REST truth.

Each test arms a fault, starts the listener, plays the scenario of :mod:`tests.worker.scenario`, waits
for convergence and checks that nothing was recorded or enqueued twice. The REST heal poller (which runs
at start and after every reconnect) is switched off here, so the streams alone must carry every change,
and every event the sandbox emitted must have reached the listener at least once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

import worker.stream_reader
from broker.events import Parsed, Stream, parse
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, RunningListener, eventually
from tests.support.sandbox import Sandbox
from tests.support.scenario import arm, converged, emitted_ids, records, run_scenario, until_connected
from worker.resolver import Resolver

ACTIVITIES_PATH = "/v2beta1/events/activities"


def sample(running: RunningListener, name: str, **labels: str) -> float:
    """A metric's current value in the listener's registry (0 when the series does not exist yet)."""
    return running.listener.metrics.registry.get_sample_value(name, labels) or 0.0


def reconnects(running: RunningListener, reason: str) -> float:
    return sample(running, "settlekeeper_stream_reconnects_total", stream="activities", reason=reason)


FaultedRun = Callable[..., Awaitable[RunningListener]]


@pytest.fixture
def faulted_run(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore, monkeypatch: pytest.MonkeyPatch
) -> FaultedRun:
    """Arm a fault on the activities stream, start the listener (heal off), play both phases, wait for convergence.

    The heal poller still runs at start and after each reconnect but reads nothing, and every event id
    the listener parses is noted, so that the end state proves the streams alone lost nothing.
    """
    received: dict[str, set[str]] = {"activities": set(), "journals": set()}

    async def no_heal(_: Resolver) -> int:
        return 0

    def noting(stream: Stream, data: str) -> Parsed:
        parsed = parse(stream, data)
        received[stream.value].add(parsed.event_id)
        return parsed

    monkeypatch.setattr(Resolver, "heal", no_heal)
    monkeypatch.setattr(worker.stream_reader, "parse", noting)

    async def run(fault: dict[str, Any], *, rearm: bool = False) -> RunningListener:
        spec = {**fault, "stream": "activities"} if fault["kind"] != "http_error" else fault
        await arm(sandbox, **spec)
        running = await start_listener(sandbox)
        await until_connected(running)
        await run_scenario(sandbox, between=spec if rearm else None)
        await converged(sandbox, store)

        async def every_event_received() -> bool:
            return all(emitted_ids(sandbox, name) <= received[name] for name in received)

        await eventually(every_event_received, within=3.0)
        assert {r["source"] for r in await records(store)} == {"stream"}, "with the heal off, only streams record"
        assert sample(running, "settlekeeper_actions_enqueued_total", kind="cover", result="duplicate") == 0
        return running

    return run


async def test_drop_every_third_event_reconnects_and_loses_nothing(faulted_run: FaultedRun) -> None:
    """drop_every n=3 on every connection: each clean close reconnects from the cursor and the store converges."""
    running = await faulted_run({"kind": "drop_every", "n": 3})
    assert reconnects(running, "closed") >= 10
    assert sample(running, "settlekeeper_stream_replayed_events_total", stream="activities") >= 10
    await running.halt()


async def test_dropped_comment_rewinds_to_the_cursor(faulted_run: FaultedRun) -> None:
    """Every connection drops what follows its first two events and says so; rewinding to the cursor loses nothing."""
    running = await faulted_run({"kind": "dropped_comment", "n": 2, "count": 100})
    rewinds = sample(running, "settlekeeper_stream_rewinds_total", stream="activities")
    assert rewinds >= 10
    assert sample(running, "settlekeeper_stream_comments_total", stream="activities", kind="dropped") == rewinds
    assert reconnects(running, "rewind") == rewinds
    await running.halt()


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"kind": "duplicate", "n": 2}, id="duplicate"),
        pytest.param({"kind": "reorder", "window": 3}, id="reorder"),
    ],
)
async def test_duplicates_and_reordering_on_one_connection(faulted_run: FaultedRun, fault: dict[str, Any]) -> None:
    """Duplicated or reordered events within an account never record or enqueue anything twice."""
    running = await faulted_run(fault)
    assert sample(running, "settlekeeper_stream_replayed_events_total", stream="activities") >= 2
    assert reconnects(running, "closed") == 0, "one connection throughout"
    await running.halt()


async def test_event_cut_mid_line_is_discarded_and_replayed(faulted_run: FaultedRun, store: TransferStore) -> None:
    """truncate: half an event then a cut; the half line is never parsed or dead-lettered, the event is replayed."""
    running = await faulted_run({"kind": "truncate", "n": 2, "times": 2}, rearm=True)
    assert reconnects(running, "closed") >= 1
    assert await store.redis.xlen(keys.DEAD_LETTERS) == 0
    assert sample(running, "settlekeeper_stream_events_total", stream="activities", type="invalid") == 0
    await running.halt()


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "ServerError"), (502, "ServerError"), (503, "ServerError"), (429, "RateLimitedError")]
)
async def test_stream_connect_refused_then_recovers(faulted_run: FaultedRun, status: int, reason: str) -> None:
    """HTTP 5xx or 429 on the first three connects: the listener backs off, connects, and converges."""
    running = await faulted_run({"kind": "http_error", "status": status, "path": ACTIVITIES_PATH, "times": 3})
    assert reconnects(running, reason) == 3
    assert sample(running, "settlekeeper_stream_connected", stream="activities") == 1
    await running.halt()


async def test_silent_stream_trips_the_read_watchdog(faulted_run: FaultedRun) -> None:
    """A connection silent after its welcome (no heartbeat) is abandoned after 3 heartbeats and re-opened."""
    with capture_logs() as logs:
        running = await faulted_run({"kind": "silence", "delay_seconds": 0, "times": 1})
    broke = [e["detail"] for e in logs if e["event"] == "stream_closed" and e.get("stream") == "activities"]
    assert len(broke) == 1
    assert re.fullmatch(r"event stream broke: \w*TimeoutError", broke[0]), broke
    assert reconnects(running, "closed") == 1
    await running.halt()
