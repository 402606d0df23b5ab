"""The sandbox's SSE streams over real HTTP: welcome, heartbeats, cursors, live push, payloads, limits, auth."""

from __future__ import annotations

import json
import re
import secrets
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import aiohttp
import pytest
from ulid import ULID

from sandbox.event_log import MonotonicUlids, crockford
from tests.support.sandbox import MONDAY_10AM, Sandbox
from tests.support.sse import ACTIVITIES, HEARTBEAT, JOURNALS, NTA, SSE, WELCOME, open_stream

MONDAY = "2026-11-23"
CUSTOMERS = [f"81000000{i:02d}" for i in range(1, 11)]
V2_AND_V1 = [(ACTIVITIES, "since_id", "event_id"), (NTA, "since_ulid", "event_ulid")]


async def executed_transfers(sandbox: Sandbox, count: int, amount: str = "10") -> list[str]:
    """Create ``count`` IF transfers (one per customer) and let them execute: one MEM activity each."""
    ids = [str((await sandbox.create_transfer(CUSTOMERS[i % 10], amount))["id"]) for i in range(count)]
    await sandbox.advance(1)
    return ids


async def history(sandbox: Sandbox, path: str, params: dict[str, str]) -> SSE:
    """Everything a connection sends before it falls silent (its first heartbeat) or ends."""
    async with open_stream(sandbox, path, params) as stream:
        assert stream.resp.status == 200, await stream.resp.text()
        return await stream.read_until(lambda s: HEARTBEAT in s.lines)


async def journal_rf_to_si(sandbox: Sandbox, amount: str) -> dict[str, object]:
    body = {
        "entry_type": "JNLC",
        "from_account": await sandbox.account_id("7536050RF"),
        "to_account": await sandbox.account_id("7536050SI"),
        "amount": amount,
        "description": "prefund SI",
    }
    return dict(await sandbox.ok("POST", "/v1/journals", body))


@pytest.mark.parametrize("path", [ACTIVITIES, JOURNALS, NTA])
async def test_connection_starts_with_welcome_then_heartbeats(sandbox: Sandbox, path: str) -> None:
    """Every stream greets with the welcome comment, then sends :heartbeat after the heartbeat interval."""
    async with open_stream(sandbox, path) as stream:
        assert stream.resp.status == 200
        assert stream.resp.headers["Content-Type"].startswith("text/event-stream")
        await stream.read_until(lambda s: len(s.lines) >= 1)
        assert stream.lines == [WELCOME]
        welcomed = time.monotonic()
        await stream.read_until(lambda s: HEARTBEAT in s.lines)
        assert time.monotonic() - welcomed >= 0.15, "the heartbeat (0.2 s in tests) follows silence"
    assert stream.lines == [WELCOME, HEARTBEAT]


@pytest.mark.parametrize(("path", "cursor", "id_field"), V2_AND_V1)
async def test_cursor_replay_is_inclusive_and_in_order(sandbox: Sandbox, path: str, cursor: str, id_field: str) -> None:
    """since_id / since_ulid re-sends the cursor event first, then every later event in emission order."""
    await executed_transfers(sandbox, 4)
    ids = (await history(sandbox, path, {"since": MONDAY})).ids(id_field)
    assert len(ids) == 4
    assert ids == sorted(ids)
    replayed = await history(sandbox, path, {cursor: ids[1]})
    assert replayed.lines[0] == WELCOME
    assert replayed.ids(id_field) == ids[1:]


async def test_event_ids_keep_increasing_after_the_clock_is_set_back(sandbox: Sandbox) -> None:
    """ULID event ids sort in emission order even for events emitted after the clock was set back an hour."""
    before = await executed_transfers(sandbox, 2)
    await sandbox.set_clock(MONDAY_10AM - timedelta(hours=1))
    after = await executed_transfers(sandbox, 2)
    events = (await history(sandbox, ACTIVITIES, {"since": MONDAY_10AM.date().isoformat()})).events
    assert [e["details"]["transfer_id"] for e in events] == before + after
    stamps = [datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in events]
    assert stamps[2] == stamps[1] - timedelta(hours=1), "the later events carry the earlier clock time"
    ids = [str(e["event_id"]) for e in events]
    assert all(a < b for a, b in pairwise(ids)), ids
    assert [ULID.from_str(i).milliseconds for i in ids] == sorted(ULID.from_str(i).milliseconds for i in ids)


@pytest.mark.parametrize("path", [ACTIVITIES, NTA])
async def test_without_cursor_only_live_events_arrive(sandbox: Sandbox, path: str) -> None:
    """A connection without cursor sends no history, then pushes events created while it is open."""
    await executed_transfers(sandbox, 2)
    async with open_stream(sandbox, path) as stream:
        await stream.read_until(lambda s: WELCOME in s.lines)
        transfer = await sandbox.create_transfer("8100000003", "25")
        await sandbox.advance(1)
        await stream.read_events(1)
        await stream.read_for(0.05)
    assert [e["description"] for e in stream.events] == [
        f"type: instant_funding_memopost, transfer_id: {transfer['id']}"
    ]


@pytest.mark.parametrize("last", [1, 3])
async def test_until_id_ends_the_stream_after_that_event(sandbox: Sandbox, last: int) -> None:
    """until_id sends events up to and including that id, then ends the response (HTTP 200, clean close)."""
    await executed_transfers(sandbox, 4)
    ids = (await history(sandbox, ACTIVITIES, {"since": MONDAY})).ids()
    async with open_stream(sandbox, ACTIVITIES, {"since_id": ids[0], "until_id": ids[last]}) as stream:
        assert stream.resp.status == 200
        await stream.read_to_end()
    assert stream.ids() == ids[: last + 1]
    assert stream.error is None
    assert stream.partial == ""


async def test_until_ends_the_stream_at_that_instant(sandbox: Sandbox) -> None:
    """since/until date-times replay the events between them, and the stream ends once past until."""
    first = await executed_transfers(sandbox, 1)  # executes 10:00:01
    await executed_transfers(sandbox, 1)  # executes 10:00:02
    params = {"since": "2026-11-23T10:00:00-05:00", "until": "2026-11-23T15:00:01.500Z"}
    async with open_stream(sandbox, ACTIVITIES, params) as stream:
        assert stream.resp.status == 200
        await stream.read_to_end()
    assert [e["details"]["transfer_id"] for e in stream.events] == first


async def test_since_and_until_dates_select_whole_days(sandbox: Sandbox) -> None:
    """Date-only since/until mean whole ET days: Monday's events replay and the stream ends; Tuesday's start later."""
    monday = await executed_transfers(sandbox, 2)
    await sandbox.set_clock(MONDAY_10AM + timedelta(days=1))
    tuesday = await executed_transfers(sandbox, 1)
    async with open_stream(sandbox, ACTIVITIES, {"since": MONDAY, "until": MONDAY}) as stream:
        await stream.read_to_end()
    assert [e["details"]["transfer_id"] for e in stream.events] == monday
    later = await history(sandbox, ACTIVITIES, {"since": "2026-11-24"})
    assert [e["details"]["transfer_id"] for e in later.events] == tuesday


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (ACTIVITIES, {"since": MONDAY, "since_id": "01JDMH7BKCCB4XY5F11HN63NZX"}),
        (ACTIVITIES, {"until": MONDAY}),
        (ACTIVITIES, {"until_id": "01JDMH7BKCCB4XY5F11HN63NZX"}),
        (JOURNALS, {"since": MONDAY, "since_id": "01JDMH7BKCCB4XY5F11HN63NZX"}),
        (NTA, {"since": MONDAY, "since_ulid": "01JDMH7BKCCB4XY5F11HN63NZX"}),
        (NTA, {"until_ulid": "01JDMH7BKCCB4XY5F11HN63NZX"}),
        (NTA, {"since_id": "12"}),
        (ACTIVITIES, {"since": "yesterday"}),
    ],
)
async def test_invalid_parameter_combinations_are_400(sandbox: Sandbox, path: str, params: dict[str, str]) -> None:
    """Mutually exclusive or missing cursor parameters (and v1 integer ids) are refused with 400."""
    status, body = await sandbox.call("GET", path, params=params)
    assert status == 400
    assert body["code"] // 100000 == 400
    assert body["message"]


async def test_executed_transfer_emits_a_mem_activity(sandbox: Sandbox) -> None:
    """An executed IF transfer shows up as an executed MEM activity naming it in details.transfer_id."""
    [transfer_id] = await executed_transfers(sandbox, 1, "20")
    [mem] = (await history(sandbox, ACTIVITIES, {"since": MONDAY})).events
    assert ULID.from_str(mem["event_id"])
    assert (mem["activity_type"], mem["status"], mem["currency"]) == ("MEM", "executed", "USD")
    assert mem["account_id"] == await sandbox.account_id("8100000001")
    assert mem["details"]["transfer_id"] == transfer_id
    assert mem["details"]["system_date"] == MONDAY
    assert mem["qty"] == "20.00"


async def test_settlement_cancels_the_memopost_and_books_a_csd(sandbox: Sandbox) -> None:
    """A completed settlement emits MEM canceled (previous_id = the memopost) and CSD executed for each transfer."""
    [transfer_id] = await executed_transfers(sandbox, 1, "20")
    [mem] = (await history(sandbox, ACTIVITIES, {"since": MONDAY})).events
    await journal_rf_to_si(sandbox, "20")
    body = {"transfers": [{"instant_transfer_id": transfer_id}]}
    settlement = await sandbox.ok("POST", "/v1/instant_funding/settlements", body)
    await sandbox.advance(30)
    assert (await sandbox.ok("GET", f"/v1/instant_funding/settlements/{settlement['id']}"))["status"] == "COMPLETED"
    events = (await history(sandbox, ACTIVITIES, {"since_id": mem["event_id"]})).events
    assert [(e["activity_type"], e["status"]) for e in events] == [
        ("MEM", "executed"),
        ("JNLC", "executed"),
        ("JNLC", "executed"),
        ("MEM", "canceled"),
        ("CSD", "executed"),
    ]
    canceled, csd = events[3], events[4]
    assert canceled["details"]["transfer_id"] == transfer_id
    assert canceled["previous_id"] == mem["ref_id"]
    assert csd["details"] == {"system_date": MONDAY, "transfer_id": transfer_id, "settlement_id": settlement["id"]}
    assert csd["net_amount"] == "20.00"
    assert csd["account_id"] == mem["account_id"]
    assert (canceled["description"], csd["description"]) == (
        f"type: instant_funding_memopost, transfer_id: {transfer_id}",
        f"type: instant_funding_deposit, transfer_id: {transfer_id}, settlement_id: {settlement['id']}",
    )


async def test_journal_status_stream_goes_queued_then_executed(sandbox: Sandbox) -> None:
    """An RF → SI journal streams status "" → queued → executed, and a JNLC activity on each side."""
    journal = await journal_rf_to_si(sandbox, "100")
    statuses = (await history(sandbox, JOURNALS, {"since": MONDAY})).events
    assert [(e["status_from"], e["status_to"]) for e in statuses] == [("", "queued"), ("queued", "executed")]
    assert {(e["journal_id"], e["entry_type"], e["idempotency_key_type"]) for e in statuses} == {
        (journal["id"], "JNLC", "single")
    }
    assert all(ULID.from_str(e["event_id"]) for e in statuses)
    activities = (await history(sandbox, ACTIVITIES, {"since": MONDAY})).events
    assert [(e["activity_type"], e["net_amount"], e["details"]["journal_id"]) for e in activities] == [
        ("JNLC", "-100.00", journal["id"]),
        ("JNLC", "100.00", journal["id"]),
    ]


async def test_nta_events_carry_net_amount_as_an_exact_json_number(sandbox: Sandbox) -> None:
    """v1 NTA events have event_ulid and entry_type, and net_amount is a JSON number with exact cents."""
    await journal_rf_to_si(sandbox, "100.10")
    stream = await history(sandbox, NTA, {"since": MONDAY})
    assert len(stream.data) == 2
    for raw in stream.data:
        assert re.search(r'"net_amount":-?[0-9]', raw), raw
    events = stream.events
    assert [e["net_amount"] for e in events] == [Decimal("-100.10"), Decimal("100.10")]
    assert [e["entry_type"] for e in events] == ["JNLC", "JNLC"]
    assert all(ULID.from_str(e["event_ulid"]) for e in events)
    assert json.loads(stream.data[1])["net_amount"] == pytest.approx(100.10)


async def test_twenty_sixth_concurrent_connection_is_refused(sandbox: Sandbox) -> None:
    """25 concurrent stream connections are served; the 26th gets 429 with a JSON error body."""
    async with AsyncExitStack() as stack:
        for i in range(25):
            stream = await stack.enter_async_context(open_stream(sandbox, [ACTIVITIES, JOURNALS, NTA][i % 3]))
            await stream.read_until(lambda s: WELCOME in s.lines)
        status, body = await sandbox.call("GET", NTA)
        assert status == 429
        assert body["code"] // 100000 == 429
        assert "Too many" in body["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth("sandbox-key", "wrong")},
        {"APCA-API-KEY-ID": "sandbox-key", "APCA-API-SECRET-KEY": "wrong"},
    ],
)
async def test_streams_require_credentials(sandbox: Sandbox, headers: dict[str, str]) -> None:
    """A stream (or any endpoint) without the right credentials answers 401 with a code and message."""
    async with aiohttp.ClientSession(headers=headers) as anonymous:
        for path in (ACTIVITIES, "/v1/clock"):
            async with anonymous.get(sandbox.base_url + path) as resp:
                assert resp.status == 401
                body = await resp.json()
            assert set(body) == {"code", "message"}
            assert body["code"] // 100000 == 401


async def test_apca_key_headers_open_a_stream(sandbox: Sandbox) -> None:
    """APCA-API-KEY-ID / APCA-API-SECRET-KEY headers authenticate like HTTP Basic."""
    headers = {"APCA-API-KEY-ID": "sandbox-key", "APCA-API-SECRET-KEY": "sandbox-secret"}
    async with (
        aiohttp.ClientSession(headers=headers) as apca,
        open_stream(sandbox, ACTIVITIES, session=apca) as stream,
    ):
        assert stream.resp.status == 200
        await stream.read_until(lambda s: WELCOME in s.lines)


def test_event_ids_are_the_ulids_python_ulid_writes() -> None:
    """The sandbox's own ULID encoding is python-ulid's, and ids sort in emission order within a millisecond
    and when the clock is set back."""
    for _ in range(2000):
        ms, random = secrets.randbits(48), secrets.randbits(80)
        assert crockford(ms, 10) + crockford(random, 16) == str(ULID.from_int((ms << 80) | random))
    assert crockford(0, 10) + crockford(0, 16) == str(ULID.from_int(0))
    assert crockford(2**48 - 1, 10) + crockford(2**80 - 1, 16) == str(ULID.from_int(2**128 - 1))
    ulids = MonotonicUlids()
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    ids = [ulids.next(at) for _ in range(3)] + [ulids.next(at - timedelta(hours=1)), ulids.next(at + timedelta(1))]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert ULID.from_str(ids[0]).milliseconds == int(at.timestamp() * 1000)
