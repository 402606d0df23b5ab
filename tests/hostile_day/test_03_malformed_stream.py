"""Hostile day, item 3: a malformed event can neither corrupt nor stall a stream.

The cursor only advances to a valid id, in order: an ``event_id`` that is not a ULID, or a ULID dated far in
the future, is dead-lettered and never becomes ``sk:cursor:<stream>`` (a cursor stored before ids were checked
is not resumed from). A line over 2 MiB, sent again on every connection, is dead-lettered once and the stream
reads on past it on the same connection. Both show in a metric and raise the ``dead_letters`` alert.
"""

from __future__ import annotations

import json

from sandbox.event_log import StreamName
from sandbox.http import RUNTIME
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, RunningListener, activity, dead_letters, eventually, sample
from tests.support.sandbox import Sandbox
from tests.support.scenario import arm, customer, until_connected

NOT_A_ULID = "zzzzzzzzzzzzzzzzzzzzzzzzzz"
FAR_FUTURE_ULID = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
"""A valid ULID dated in the year 10889: as a cursor it would make every later event look like a replay."""


def last_event_id(sandbox: Sandbox) -> str:
    return sandbox.app[RUNTIME].engine.emit.logs[StreamName.ACTIVITIES].events[-1].event_id


async def new_transfer(sandbox: Sandbox, store: TransferStore, n: int) -> str:
    """A transfer executed and recorded; returns the id of the stream's last event."""
    transfer_id = str((await sandbox.create_transfer(customer(n), "100.00"))["id"])
    await sandbox.advance(1)

    async def recorded_and_cursor_at_the_end() -> bool:
        cursor = await store.cursor("activities")
        return (await store.transfer(transfer_id)).get("status") == "EXECUTED" and cursor == last_event_id(sandbox)

    await eventually(recorded_and_cursor_at_the_end)
    return last_event_id(sandbox)


async def alert_state(store: TransferStore, sandbox: Sandbox) -> str:
    day = "2026-11-23"
    raw = await store.redis.hget(keys.alert(f"dead-letters-activities-{day}"), "state")
    return raw.decode() if raw else ""


async def assert_ready(running: RunningListener) -> None:
    ready, detail = await running.listener.health.ready()
    assert ready, detail


async def test_item_3_an_event_id_that_is_no_ulid_or_far_ahead_never_becomes_the_cursor(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """``zzzz…`` and a year-10889 ULID are dead-lettered; the cursor stays on the real events, which keep being
    recorded; a corrupt cursor left in Redis is not resumed from; metric and alert show it."""
    await store.redis.set(keys.cursor("activities"), NOT_A_ULID)  # what the defect left behind
    account = await sandbox.account_id(customer(1))
    bad = [json.dumps(activity(account, event_id=NOT_A_ULID)), json.dumps(activity(account, event_id=FAR_FUTURE_ULID))]
    for data in bad:
        await arm(sandbox, kind="inject", n=1, data=data, stream="activities", times=1)
    running = await start_listener(sandbox)
    await new_transfer(sandbox, store, 1)  # the first connection: injected before its first event
    await until_connected(running)
    await new_transfer(sandbox, store, 2)

    letters = {letter["raw"]: letter["reason"] for letter in await dead_letters(store)}
    assert letters == {bad[0]: "invalid_id", bad[1]: "future_id"}
    assert await store.cursor("activities") == last_event_id(sandbox)
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason="invalid_id") == 1
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason="future_id") == 1
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason="invalid_cursor")
    assert await alert_state(store, sandbox) == "triggered"
    await assert_ready(running)
    await running.halt()


async def test_item_3_an_over_long_line_sent_on_every_connection_is_dead_lettered_once_and_read_past(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """A 2.5 MiB line before the second event of every connection: dead-lettered once (with its length and
    hash), the events after it are recorded on the same connection, a reconnect meets it again without a
    second dead letter or a reconnect loop, /readyz stays true."""
    await new_transfer_before_listening(sandbox)
    start = '{"event_id": "01KAQ0000000000000000000J1", "blob": "'
    huge = start + "x" * (5 * 2**19)
    # before the second event of every connection (no "times": until cleared)
    await arm(sandbox, kind="inject", n=2, data=start, pad_bytes=5 * 2**19, stream="activities")
    running = await start_listener(sandbox)
    await until_connected(running)
    await new_transfer(sandbox, store, 2)
    [letter] = await dead_letters(store)
    assert (letter["reason"], letter["raw"][:60]) == ("oversized", f"data: {huge}"[:60])  # the raw SSE line
    assert f"({len(huge) + len('data: ')} bytes, sha256 " in letter["raw"]
    assert sample(running, "settlekeeper_stream_reconnects_total", stream="activities", reason="closed") == 0

    await sandbox.ok("POST", "/sandbox/streams/disconnect")  # the replay from the cursor meets the line again
    await until_connected(running)
    await new_transfer(sandbox, store, 3)
    assert len(await dead_letters(store)) == 1
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason="oversized") == 1
    assert await alert_state(store, sandbox) == "triggered"
    await assert_ready(running)
    await running.halt()


async def new_transfer_before_listening(sandbox: Sandbox) -> None:
    """Two events on the stream before the listener connects (the line is injected before the second)."""
    await sandbox.create_transfer(customer(1), "100.00")
    await sandbox.advance(1)
