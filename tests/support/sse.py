"""Reading the sandbox's SSE streams in tests: every raw line, comments included, always time-bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp

from tests.support.sandbox import Sandbox

ACTIVITIES = "/v2beta1/events/activities"
JOURNALS = "/v2/events/journals/status"
NTA = "/v1/events/nta"
WELCOME = ": welcome to the Alpaca events"
HEARTBEAT = ":heartbeat"


class SSE:
    """One open stream: the lines read so far, whether the server ended it, and how."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.lines: list[str] = []
        """Complete non-blank lines, without their newline."""
        self.partial = ""
        """Bytes after the last newline when the stream ended (a cut line), decoded."""
        self.ended = False
        """The server closed the stream (cleanly or not)."""
        self.error: aiohttp.ClientError | None = None
        """Set when the connection was cut mid-response (e.g. a payload error)."""
        self._buffer = b""

    @property
    def comments(self) -> list[str]:
        return [line for line in self.lines if line.startswith(":")]

    @property
    def data(self) -> list[str]:
        """The raw JSON text of each ``data:`` line."""
        return [line.removeprefix("data:").strip() for line in self.lines if line.startswith("data:")]

    @property
    def events(self) -> list[dict[str, Any]]:
        """Each ``data:`` payload parsed exactly (non-integer numbers become Decimals)."""
        return [json.loads(text, parse_float=Decimal) for text in self.data]

    def ids(self, field: str = "event_id") -> list[str]:
        return [str(event[field]) for event in self.events]

    async def _read_chunk(self) -> None:
        try:
            chunk = await self.resp.content.readany()
        except aiohttp.ClientError as exc:
            self.error, self.ended = exc, True
            chunk = b""
        if not chunk:
            self.ended = True
            self.partial = self._buffer.decode(errors="replace")
            return
        *complete, self._buffer = (self._buffer + chunk).split(b"\n")
        self.lines.extend(line.decode() for line in complete if line.strip())

    async def read_until(self, done: Callable[[SSE], bool], within: float = 1.0) -> SSE:
        """Read until ``done(self)`` holds or the stream ends; fail if neither happens ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not done(self) and not self.ended:
                    await self._read_chunk()
        except TimeoutError:
            seen = [line[:100] for line in self.lines]
            raise AssertionError(f"stream stalled after {within} s; read so far: {seen}") from None
        return self

    async def read_events(self, count: int, within: float = 1.0) -> SSE:
        """Read until at least ``count`` data lines arrived (or the stream ended)."""
        return await self.read_until(lambda s: len(s.data) >= count, within)

    async def read_to_end(self, within: float = 1.0) -> SSE:
        """Read until the server ends the stream; fail if it is still open after ``within`` seconds."""
        return await self.read_until(lambda s: False, within)

    async def read_for(self, seconds: float) -> SSE:
        """Read whatever arrives during ``seconds`` (or until the stream ends); never fails on time."""
        try:
            async with asyncio.timeout(seconds):
                while not self.ended:
                    await self._read_chunk()
        except TimeoutError:
            pass
        return self


@asynccontextmanager
async def open_stream(
    sandbox: Sandbox, path: str, params: dict[str, str] | None = None, *, session: aiohttp.ClientSession | None = None
) -> AsyncIterator[SSE]:
    """Connect to a stream (the sandbox's authenticated session by default) and yield its reader."""
    http = session or sandbox.http
    async with asyncio.timeout(2):
        resp = await http.get(sandbox.base_url + path, params=params)
    try:
        yield SSE(resp)
    finally:
        resp.close()


async def replay(
    sandbox: Sandbox, path: str, params: dict[str, str] | None = None, *, events: int, within: float = 1.0
) -> SSE:
    """Connect, read ``events`` data lines (or until the stream ends), and disconnect."""
    async with open_stream(sandbox, path, params) as stream:
        assert stream.resp.status == 200, await stream.resp.text()
        return await stream.read_events(events, within)
