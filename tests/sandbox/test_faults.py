"""Fault injection (docs/sandbox.md "Faults") over real HTTP: what POST /sandbox/faults arms, the API and the streams
obey."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.sse import ACTIVITIES, HEARTBEAT, JOURNALS, NTA, SSE, WELCOME, open_stream

MONDAY = "2026-11-23"
INTERNAL_ERROR = ": internal server error"


async def arm(sandbox: Sandbox, **fault: Any) -> None:
    await sandbox.ok("POST", "/sandbox/faults", fault)


async def mem_events(sandbox: Sandbox, accounts: list[str]) -> list[str]:
    """One executed IF transfer per entry of ``accounts``; returns the event ids of their MEM activities."""
    for account_no in accounts:
        await sandbox.create_transfer(account_no, "10")
    await sandbox.advance(1)
    async with open_stream(sandbox, ACTIVITIES, {"since": MONDAY}) as stream:
        await stream.read_events(len(accounts))
    ids = stream.ids()
    assert len(ids) == len(accounts)
    return ids


async def armed(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The faults currently armed (posting an empty list arms nothing and lists them)."""
    return list((await sandbox.ok("POST", "/sandbox/faults", {"faults": []}))["faults"])


async def until_quiet(sandbox: Sandbox, path: str, params: dict[str, str]) -> SSE:
    """Everything a connection sends before its first heartbeat (or its end)."""
    async with open_stream(sandbox, path, params) as stream:
        return await stream.read_until(lambda s: HEARTBEAT in s.lines)


async def rf_to_si_journal(sandbox: Sandbox) -> None:
    """A $5 RF → SI journal: two journal-status events and two JNLC activities."""
    rf, si = await sandbox.account_id("7536050RF"), await sandbox.account_id("7536050SI")
    body = {"entry_type": "JNLC", "from_account": rf, "to_account": si, "amount": "5"}
    await sandbox.ok("POST", "/v1/journals", body)


async def five_events(sandbox: Sandbox) -> list[str]:
    return await mem_events(sandbox, [f"810000000{i}" for i in range(1, 6)])


async def connect_and_read(sandbox: Sandbox, path: str, params: dict[str, str], *, events: int) -> SSE:
    """Read ``events`` data lines, or until the stream ends."""
    async with open_stream(sandbox, path, params) as stream:
        assert stream.resp.status == 200
        return await stream.read_events(events)


async def test_an_http_fault_with_a_method_leaves_the_other_methods_alone(sandbox: Sandbox) -> None:
    """A 503 armed for POST /v1/journals lets GET /v1/journals through and answers the next POST."""
    await arm(sandbox, kind="http_error", status=503, path="/v1/journals", method="POST", times=1)
    assert (await sandbox.call("GET", "/v1/journals"))[0] == 200
    rf, si = await sandbox.account_id("7536050RF"), await sandbox.account_id("7536050SI")
    body = {"entry_type": "JNLC", "from_account": rf, "to_account": si, "amount": "5"}
    assert (await sandbox.call("POST", "/v1/journals", body))[0] == 503
    assert (await sandbox.call("POST", "/v1/journals", body))[0] == 200


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_http_error_answers_the_status_for_times_requests(sandbox: Sandbox, status: int) -> None:
    """An http_error fault answers `status` on its path prefix for `times` requests, then requests succeed."""
    await arm(sandbox, kind="http_error", status=status, path="/v1/instant_funding", times=2)
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 200
    for _ in range(2):
        got, body = await sandbox.call("GET", "/v1/instant_funding/limits")
        assert got == status
        assert body["code"] // 100000 == status
        assert str(status) in body["message"]
    assert (await sandbox.call("GET", "/v1/instant_funding/limits"))[0] == 200


async def test_injected_429_carries_rate_limit_headers(sandbox: Sandbox) -> None:
    """An injected 429 still carries X-RateLimit-Limit/Remaining/Reset, Reset being a future epoch second."""
    await arm(sandbox, kind="http_error", status=429, path="/v1/clock", times=1)
    async with sandbox.http.get(sandbox.base_url + "/v1/clock") as resp:
        assert resp.status == 429
        headers = resp.headers
    assert int(headers["X-RateLimit-Reset"]) > time.time()
    assert int(headers["X-RateLimit-Limit"]) >= int(headers["X-RateLimit-Remaining"])


async def test_every_rest_response_reports_the_rate_limit(sandbox: Sandbox) -> None:
    """Every REST response has X-RateLimit-* headers, and Remaining goes down with each request."""
    remaining = []
    for path in ("/v1/clock", "/v1/instant_funding", "/v1/accounts", "/sandbox/clock", "/v1/instant_funding/nope"):
        async with sandbox.http.get(sandbox.base_url + path) as resp:
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(resp.headers), path
            remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True)
    assert len(set(remaining)) == len(remaining)


@pytest.mark.parametrize("status", [503, 429])
async def test_stream_connect_can_fail_with_http_error(sandbox: Sandbox, status: int) -> None:
    """A fault on a stream path fails the connect with that status and a JSON body; the next connect works."""
    await arm(sandbox, kind="http_error", status=status, path=ACTIVITIES, times=1)
    got, body = await sandbox.call("GET", ACTIVITIES)
    assert (got, body["code"] // 100000) == (status, status)
    async with open_stream(sandbox, ACTIVITIES) as stream:
        assert stream.resp.status == 200
        await stream.read_until(lambda s: WELCOME in s.lines)


async def test_http_fault_without_path_spares_the_admin_api(sandbox: Sandbox) -> None:
    """An http_error without path hits the Broker API but never /sandbox, so a test can always clear it."""
    await arm(sandbox, kind="http_error", status=500)
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 500
    assert (await sandbox.call("GET", "/sandbox/clock"))[0] == 200
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 500, "no times: it stays armed"


async def test_slow_delays_the_response(sandbox: Sandbox) -> None:
    """A slow fault delays the matching response by at least delay_seconds, once when times is 1."""
    await arm(sandbox, kind="slow", delay_seconds=0.3, path="/v1/clock", times=1)
    started = time.monotonic()
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 200
    assert time.monotonic() - started < 0.3


async def test_drop_every_closes_cleanly_and_resume_replays_the_last_event(sandbox: Sandbox) -> None:
    """drop_every n ends the stream cleanly after n events; reconnecting from the last id re-sends it first."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="drop_every", n=2, stream="activities", times=1)
    async with open_stream(sandbox, ACTIVITIES, {"since_id": ids[0]}) as stream:
        await stream.read_to_end()
    assert stream.ids() == ids[:2]
    assert (stream.error, stream.partial) == (None, "")
    resumed = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[1]}, events=4)
    assert resumed.ids() == ids[1:]


async def test_dropped_comment_reports_and_skips_events(sandbox: Sandbox) -> None:
    """dropped_comment: after n events the slow-reader comment appears and `count` events are missing."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="dropped_comment", n=1, count=2)
    stream = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=3)
    assert stream.lines[2] == ": you are reading too slowly, dropped 2 messages"
    assert stream.ids() == [ids[0], ids[3], ids[4]]


async def test_duplicate_sends_every_nth_event_twice(sandbox: Sandbox) -> None:
    """duplicate n=2: the 2nd and 4th events of the connection arrive twice, in place."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="duplicate", n=2)
    stream = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=7)
    assert stream.ids() == [ids[0], ids[1], ids[1], ids[2], ids[3], ids[3], ids[4]]


async def test_reorder_reverses_runs_of_one_account(sandbox: Sandbox) -> None:
    """reorder: consecutive events of one account come back reversed within the window; others keep place."""
    ids = await mem_events(sandbox, ["8100000001", "8100000001", "8100000001", "8100000002"])
    await arm(sandbox, kind="reorder", window=3, stream="activities")
    stream = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=4)
    assert stream.ids() == [ids[2], ids[1], ids[0], ids[3]]
    assert stream.ids() != sorted(stream.ids())


async def test_truncate_cuts_a_line_in_half(sandbox: Sandbox) -> None:
    """truncate n=1: one whole event, then part of the next line without its newline, then the cut."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="truncate", n=1)
    async with open_stream(sandbox, ACTIVITIES, {"since_id": ids[0]}) as stream:
        await stream.read_to_end()
    assert stream.ids() == ids[:1]
    assert stream.ended
    assert stream.partial.startswith("data: {"), "half a line, without its newline"
    with pytest.raises(json.JSONDecodeError):
        json.loads(stream.partial.removeprefix("data: "))


@pytest.mark.parametrize("path", [ACTIVITIES, JOURNALS])
async def test_internal_error_comment_then_close_on_v2_streams(sandbox: Sandbox, path: str) -> None:
    """internal_error n=1 on a v2 stream: one event, ": internal server error", then the stream ends."""
    await rf_to_si_journal(sandbox)
    await arm(sandbox, kind="internal_error", n=1)
    async with open_stream(sandbox, path, {"since": MONDAY}) as stream:
        await stream.read_to_end()
    assert len(stream.data) == 1
    assert stream.lines[0] == WELCOME
    assert stream.lines[1].startswith("data: {")
    assert stream.lines[2:] == [INTERNAL_ERROR]
    assert stream.error is None


async def test_inject_sends_the_raw_line_before_the_nth_event(sandbox: Sandbox) -> None:
    """inject n=2: the raw `data:` line arrives before the 2nd event of the connection, once, as given."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="inject", n=2, data="not {json", stream="activities", times=1)
    stream = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=6)
    assert stream.data[1] == "not {json", "the raw line, between the 1st and the 2nd event"
    assert [json.loads(text)["event_id"] for text in stream.data[:1] + stream.data[2:]] == ids
    again = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=5)
    assert "not {json" not in again.data, "times=1: the next connection is clean"


async def test_internal_error_does_not_apply_to_v1_nta(sandbox: Sandbox) -> None:
    """internal_error is a v2-only comment: the v1 NTA stream keeps sending every event."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="internal_error", n=1)
    stream = await until_quiet(sandbox, NTA, {"since": MONDAY})
    assert len(stream.data) == len(ids)
    assert INTERNAL_ERROR not in stream.comments
    assert not stream.ended


async def test_silence_withholds_heartbeats_for_the_delay(sandbox: Sandbox) -> None:
    """silence: after the welcome, not a byte (not even a 0.2 s heartbeat) for delay_seconds, then heartbeats."""
    await arm(sandbox, kind="silence", delay_seconds=0.6, times=1)
    async with open_stream(sandbox, ACTIVITIES) as stream:
        await stream.read_for(0.5)
        assert stream.lines == [WELCOME]
        assert not stream.ended
        await stream.read_until(lambda s: HEARTBEAT in s.lines)


async def test_times_limits_a_stream_fault_to_that_many_connections(sandbox: Sandbox) -> None:
    """A stream fault with times=1 affects one connection; the next one streams normally."""
    ids = await five_events(sandbox)
    await arm(sandbox, kind="drop_every", n=1, times=1)
    first = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=5)
    assert (first.ids(), first.ended) == (ids[:1], True)
    second = await connect_and_read(sandbox, ACTIVITIES, {"since_id": ids[0]}, events=5)
    assert (second.ids(), second.ended) == (ids, False)
    assert await armed(sandbox) == [], "a spent fault disappears"


async def test_stream_targeting_affects_only_that_stream(sandbox: Sandbox) -> None:
    """A fault with stream="journals" duplicates journal events and leaves the activities stream alone."""
    await rf_to_si_journal(sandbox)
    await arm(sandbox, kind="duplicate", n=1, stream="journals")
    activities = await until_quiet(sandbox, ACTIVITIES, {"since": MONDAY})
    journals = await until_quiet(sandbox, JOURNALS, {"since": MONDAY})
    assert len(activities.data) == len(set(activities.data)) == 2
    assert len(journals.data) == 4
    assert journals.data[0] == journals.data[1]
    assert journals.data[2] == journals.data[3]


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "meteor"},
        {"kind": "drop_every", "n": 0},
        {"kind": "http_error", "status": 200},
        {"kind": "duplicate", "stream": "trades"},
        {"kind": "reorder", "window": 1},
        {"kind": "slow", "delay_seconds": -1},
        {"kind": "slow", "times": 0},
        {"kind": "slow", "oops": True},
        {"faults": [{"kind": "slow"}, {"kind": "nope"}]},
    ],
)
async def test_invalid_fault_spec_is_400(sandbox: Sandbox, spec: dict[str, Any]) -> None:
    """A fault that does not validate is refused with 400 and nothing is armed."""
    status, body = await sandbox.call("POST", "/sandbox/faults", spec)
    assert status == 400
    assert body["message"].startswith("invalid fault")
    assert await armed(sandbox) == []


async def test_delete_clears_every_fault(sandbox: Sandbox) -> None:
    """POST lists the armed faults; DELETE /sandbox/faults disarms them all at once."""
    armed = await sandbox.ok(
        "POST",
        "/sandbox/faults",
        {"faults": [{"kind": "http_error", "status": 503, "path": "/v1/clock"}, {"kind": "silence"}]},
    )
    assert [f["kind"] for f in armed["faults"]] == ["http_error", "silence"]
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 503
    assert await sandbox.ok("DELETE", "/sandbox/faults") == {"faults": []}
    assert (await sandbox.call("GET", "/v1/clock"))[0] == 200
    async with open_stream(sandbox, ACTIVITIES) as stream:
        await stream.read_until(lambda s: HEARTBEAT in s.lines)


async def jit_report_text(sandbox: Sandbox, report_type: str) -> tuple[int, str]:
    status, body = await sandbox.call(
        "GET", "/v1/transfers/jit/reports", params={"report_type": report_type, "system_date": MONDAY}
    )
    return status, body[report_type] if status == 200 else body["message"]


async def test_jit_report_fault_hides_drops_or_alters_a_report(make_sandbox: SandboxFactory) -> None:
    """jit_report faults: a 404 for one report only, the last detail row dropped, delta added to t1, times honoured."""
    sandbox = await make_sandbox(customer_cash="1000")
    for price in ("10.00", "20.00"):
        body = {"account_no": "8100000001", "symbol": "AAPL", "side": "buy", "qty": "1", "price": price}
        await sandbox.ok("POST", "/sandbox/trades", body)
    await sandbox.set_clock(datetime.fromisoformat(f"{MONDAY}T23:31:00-05:00"))
    _, detail = await jit_report_text(sandbox, "detail")
    _, summary = await jit_report_text(sandbox, "net_summary")
    assert summary == "t0,t1,t2\n0.00,-30.00,0.00\n"
    await arm(sandbox, kind="jit_report", report_type="net_summary", times=1)
    assert await jit_report_text(sandbox, "detail") == (200, detail)
    status, message = await jit_report_text(sandbox, "net_summary")
    assert (status, message) == (404, f"injected fault: the net_summary report for {MONDAY} is not available")
    assert await jit_report_text(sandbox, "net_summary") == (200, summary)
    await arm(sandbox, kind="jit_report", report_type="detail", mode="drop_row", times=1)
    assert await jit_report_text(sandbox, "detail") == (200, "".join(detail.splitlines(keepends=True)[:-1]))
    await arm(sandbox, kind="jit_report", report_type="net_summary", mode="alter_amount", delta="-0.05", times=1)
    assert await jit_report_text(sandbox, "net_summary") == (200, "t0,t1,t2\n0.00,-30.05,0.00\n")
    assert await armed(sandbox) == []
