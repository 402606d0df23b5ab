"""Sandbox admin endpoints (sandbox/admin.py) not covered elsewhere: disconnecting the open streams."""

from __future__ import annotations

from tests.support.sandbox import Sandbox
from tests.support.sse import ACTIVITIES, JOURNALS, open_stream


async def test_disconnect_ends_open_streams_cleanly_and_the_next_connection_takes_an_armed_fault(
    sandbox: Sandbox,
) -> None:
    """POST /sandbox/streams/disconnect ends every open stream (clean EOF); a fault armed since applies on reconnect."""
    async with open_stream(sandbox, ACTIVITIES) as activities, open_stream(sandbox, JOURNALS) as journals:
        await activities.read_until(lambda s: bool(s.comments))
        await sandbox.ok(
            "POST", "/sandbox/faults", {"kind": "http_error", "status": 503, "path": ACTIVITIES, "times": 1}
        )
        result = await sandbox.ok("POST", "/sandbox/streams/disconnect")
        assert result == {"disconnected": 2, "still_open": 0}
        await activities.read_to_end()
        await journals.read_to_end()
        assert activities.partial == ""
        assert journals.partial == ""
    status, _ = await sandbox.call("GET", ACTIVITIES)
    assert status == 503
    async with open_stream(sandbox, ACTIVITIES) as again:  # the fault is spent; streams are served again
        await again.read_until(lambda s: bool(s.comments))
