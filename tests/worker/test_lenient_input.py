"""Where Alpaca is looser than its document, the listener records what it can, counts the oddity, and neither
crashes nor moves money: an undocumented status on a transfer event, nulls, a missing status_from, details of
another shape, and a stream moved from /v2beta1 to /v2 by a redirect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from broker.stream import redirect_path
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, RunningListener, activity, dead_letters, eventually, sample
from tests.support.sandbox import Sandbox
from tests.support.scenario import arm, customer, until_connected
from tests.worker.test_listener_input import assert_no_action, executed_transfer

ODDITIES = "settlekeeper_stream_oddities_total"


async def injected(sandbox: Sandbox, start_listener: ListenerFactory, event: dict[str, Any]) -> RunningListener:
    """A listener whose activities stream first sends ``event``, then the sandbox's own."""
    await arm(sandbox, kind="inject", n=1, data=json.dumps(event), stream="activities", times=1)
    running = await start_listener(sandbox)
    await until_connected(running)
    return running


async def test_a_settled_status_on_a_transfer_event_is_dead_lettered_and_the_transfer_read_over_rest(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """MEM with status SETTLED: dead-lettered and counted; the transfer it names is recorded from REST (EXECUTED)."""
    transfer_id = str((await sandbox.create_transfer(customer(1), "100.00"))["id"])
    await sandbox.advance(1)
    account = await sandbox.account_id(customer(1))
    event = activity(account, status="SETTLED", details={"transfer_id": transfer_id})
    running = await injected(sandbox, start_listener, event)

    async def recorded() -> bool:
        return (await store.transfer(transfer_id)).get("status") == "EXECUTED"

    await eventually(recorded, within=3.0)
    assert [(d["reason"], d["raw"]) for d in await dead_letters(store)] == [("unknown_status", json.dumps(event))]
    assert sample(running, "settlekeeper_stream_malformed_events_total", stream="activities", reason="unknown_status")
    await assert_no_action(store)
    assert not running.task.done()
    await running.halt()


@pytest.mark.parametrize(
    ("changes", "oddity"),
    [
        pytest.param({"activity_type": "CSD", "details": ["settlement", 7]}, "undocumented_details", id="csd-details"),
        pytest.param({"activity_type": "JNLC", "details": {}, "description": "null"}, "null_description", id="null"),
    ],
)
async def test_looser_events_are_read_counted_and_logged_once(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore, changes: dict[str, Any], oddity: str
) -> None:
    """Details of another shape or a null description: no dead letter, the cursor moves past it, counted once."""
    event = activity(await sandbox.account_id(customer(1)), **changes)
    event.update({name: None for name, value in changes.items() if value == "null"})  # activity() drops a None
    with capture_logs() as logs:
        running = await injected(sandbox, start_listener, event)
        await executed_transfer(sandbox, store, 2)  # the stream sends the injected event before this one's
    assert await dead_letters(store) == []
    assert sample(running, ODDITIES, stream="activities", oddity=oddity) == 1
    assert [e["oddity"] for e in logs if e["event"] == "stream_oddity"] == [oddity]
    await assert_no_action(store)
    await running.halt()


async def test_a_journal_stream_moved_by_a_308_is_followed_logged_once_and_read(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """Configured at /v2beta1/events/journals/status, the reader follows the 308 to /v2, says so once, and records
    the journal statuses it then reads (first events have no status_from: counted, read)."""
    rf, si = await sandbox.account_id("7536050RF"), await sandbox.account_id("7536050SI")
    body = {"from_account": rf, "to_account": si, "entry_type": "JNLC", "amount": "10.00"}
    journal = await sandbox.ok("POST", "/v1/journals", body)
    with capture_logs() as logs:
        running = await start_listener(
            sandbox, streams="journals", stream_path_journals="/v2beta1/events/journals/status"
        )
        await until_connected(running)

        async def recorded() -> bool:
            return await store.journal_status(journal["id"]) == "executed"

        await eventually(recorded, within=3.0)
    redirects = [e for e in logs if e["event"] == "stream_redirected"]
    assert [(e["path"], e["to"]) for e in redirects] == [
        ("/v2beta1/events/journals/status", "/v2/events/journals/status")
    ]
    assert sample(running, ODDITIES, stream="journals", oddity="redirected") == 1
    assert sample(running, ODDITIES, stream="journals", oddity="status_from_missing") >= 1
    assert await store.redis.exists(keys.journal(journal["id"]))
    await running.halt()


@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("/v2/events/journals/status", "/v2/events/journals/status"),
        ("https://broker-api.alpaca.markets/v2/events/journals/status", "/v2/events/journals/status"),
        ("https://evil.example/v2/events/journals/status", None),  # another host: never with our credentials
        ("http://broker-api.alpaca.markets/v2/events/journals/status", None),  # a downgrade
        ("/v1/journals", None),  # not an events path: a stream never chooses another endpoint
        ("/v2/events/journals/status?since_id=0", "/v2/events/journals/status"),  # the reader sends its own cursor
    ],
)
def test_only_a_same_origin_events_path_is_followed(location: str, followed: str | None) -> None:
    """A redirect is followed only to an events path on the same scheme, host and port."""
    assert redirect_path("https://broker-api.alpaca.markets", location) == followed
