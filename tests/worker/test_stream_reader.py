"""One stream's reader on its own (worker/stream_reader.py), against the sandbox's activities stream.

The cursor only moves forward, to a valid id: an older id read after newer ones is a replay, an id dated up
to an hour ahead of the broker's clock may be a cursor and one further ahead is dead-lettered; a reader
resumes from the stored cursor and stops with what it read committed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from ulid import ULID

from broker.events import Stream
from funding import ids
from sandbox.event_log import StreamName
from sandbox.http import RUNTIME
from store.transfers import TransferStore
from tests.support.listener import INJECTED_ID, activity, dead_letters, eventually, listener_settings
from tests.support.sandbox import MONDAY_10AM, Sandbox
from tests.support.scenario import arm, customer
from worker.listener_metrics import ListenerMetrics
from worker.stream_reader import MAX_EVENT_ID_AHEAD_SECONDS, StreamReader


def event_ids(sandbox: Sandbox) -> list[str]:
    return [event.event_id for event in sandbox.app[RUNTIME].engine.emit.logs[StreamName.ACTIVITIES].events]


def ulid_at(moment: datetime) -> str:
    """A ULID dated ``moment`` (random part 0)."""
    return str(ULID.from_int(int(moment.timestamp() * 1000) << 80))


async def two_transfers(sandbox: Sandbox) -> None:
    """Events on the activities stream before the reader connects."""
    for n in (1, 2):
        await sandbox.create_transfer(customer(n), "100.00")
    await sandbox.advance(1)


@asynccontextmanager
async def reading(
    sandbox: Sandbox, store: TransferStore, now: Callable[[], datetime] = lambda: MONDAY_10AM
) -> AsyncIterator[tuple[StreamReader, ListenerMetrics]]:
    """A reader of the activities stream running (unfenced) until the block ends; then stopped and awaited."""
    metrics = ListenerMetrics()
    reader = StreamReader(
        Stream.ACTIVITIES,
        listener_settings(sandbox),
        store,
        metrics,
        token=lambda: "",
        on_connect=lambda: None,
        on_hints=lambda: None,
        now=now,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        yield reader, metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def read_count(metrics: ListenerMetrics) -> float:
    """Events the reader received on the activities stream, of every type."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "settlekeeper_stream_events"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["stream"] == "activities"
    )


def replayed(metrics: ListenerMetrics) -> float:
    value = metrics.registry.get_sample_value("settlekeeper_stream_replayed_events_total", {"stream": "activities"})
    return value or 0.0


async def condition(check: Callable[[], bool], within: float = 5.0) -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds, within=within)


async def cursor_reaches(store: TransferStore, wanted: str) -> None:
    async def at_wanted() -> bool:
        return await store.cursor("activities") == wanted

    await eventually(at_wanted, within=5.0)


async def test_an_older_id_read_after_newer_ones_is_a_replay_and_never_moves_the_cursor_back(
    sandbox: Sandbox, store: TransferStore
) -> None:
    """An id sorting before the events already read is counted as replayed; the cursor stays on the newest."""
    await two_transfers(sandbox)
    account = await sandbox.account_id(customer(1))
    assert event_ids(sandbox)[0] > INJECTED_ID
    await arm(sandbox, kind="inject", n=2, data=json.dumps(activity(account)), stream="activities", times=1)
    async with reading(sandbox, store) as (_, metrics):
        await cursor_reaches(store, event_ids(sandbox)[-1])
        await condition(lambda: read_count(metrics) == len(event_ids(sandbox)) + 1)
    assert replayed(metrics) == 1
    assert await store.cursor("activities") == event_ids(sandbox)[-1]
    assert await dead_letters(store) == []


async def test_an_id_within_the_hour_ahead_is_a_cursor_and_one_beyond_it_a_dead_letter(
    sandbox: Sandbox, store: TransferStore
) -> None:
    """Against the broker's clock: an id dated 59 minutes ahead becomes the cursor, one 61 minutes ahead is
    dead-lettered as ``future_id`` and never becomes it."""
    await two_transfers(sandbox)
    clock = MONDAY_10AM + timedelta(seconds=1)
    near, far = (ulid_at(clock + timedelta(seconds=MAX_EVENT_ID_AHEAD_SECONDS + s)) for s in (-60, 60))
    account = await sandbox.account_id(customer(1))
    for event_id in (near, far):
        data = json.dumps(activity(account, event_id=event_id))
        await arm(sandbox, kind="inject", n=1, data=data, stream="activities", times=1)
    async with reading(sandbox, store, now=lambda: clock):
        await cursor_reaches(store, near)

        async def far_dead_lettered() -> bool:
            return [letter["reason"] for letter in await dead_letters(store)] == ["future_id"]

        await eventually(far_dead_lettered, within=5.0)
    [letter] = await dead_letters(store)
    assert json.loads(letter["raw"])["event_id"] == far
    assert ids.ulid_order(far) > ids.ulid_order(near) > ids.ulid_order(event_ids(sandbox)[-1])
    assert await store.cursor("activities") == near


async def test_the_reader_resumes_from_the_stored_cursor_and_reads_only_what_follows(
    sandbox: Sandbox, store: TransferStore
) -> None:
    """With a cursor stored at the first event, the stream is asked ``since_id=<cursor>``: the cursor event
    comes again (``since_id`` is inclusive) and counts as a replay, then only the later events are read."""
    await two_transfers(sandbox)
    first, *later = event_ids(sandbox)
    await store.ingest("activities", first, [], [], now=1.0)
    await sandbox.ok("DELETE", "/sandbox/requests")
    async with reading(sandbox, store) as (_, metrics):
        await cursor_reaches(store, later[-1])
    requests = (await sandbox.ok("GET", "/sandbox/requests"))["requests"]
    [query] = [row["query"] for row in requests if row["path"] == "/v2beta1/events/activities"]
    assert query == f"since_id={first}"
    assert read_count(metrics) == 1 + len(later)
    assert replayed(metrics) == 1


async def test_a_stopped_reader_has_committed_everything_it_read(sandbox: Sandbox, store: TransferStore) -> None:
    """Stopping right after the events arrive: every transfer they named is a pending hint, the cursor is the
    last one (nothing read is dropped on the way out)."""
    await two_transfers(sandbox)
    async with reading(sandbox, store) as (_, metrics):
        await condition(lambda: read_count(metrics) == len(event_ids(sandbox)))
    assert await store.cursor("activities") == event_ids(sandbox)[-1]
    assert await store.hint_count() == 2
