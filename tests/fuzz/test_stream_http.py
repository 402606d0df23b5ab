"""Fuzz broker/stream.py ``open_stream`` over real HTTP: arbitrary event streams, and arbitrary answers to the connect.

A loopback server writes exactly the scripted bytes (tests/fuzz/rawhttp.py). Properties:

- any event stream, however chunked, yields exactly the complete events it holds (their data as the library joins
  it, their event name), whatever junk sits between them (comments, ``id``/``retry``/unknown fields of any bytes,
  lines past the limit, which are reported), and ends with ``StreamClosed``;
- any answer to the connect either opens a stream or raises the error the status says, from the error tree, and
  the refused response holds no connection afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from unittest.mock import patch

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import stream
from broker.stream import (
    REDIRECTS,
    ConnectInfo,
    Message,
    OnOversized,
    Oversized,
    Redirected,
    StreamClosed,
    open_stream,
    stream_session,
)
from funding.errors import (
    AuthenticationError,
    ClientError,
    RateLimitedError,
    ServerError,
    SettlekeeperError,
    TransportError,
)
from tests.fuzz.mutate import Draw
from tests.fuzz.profiles import examples
from tests.fuzz.rawhttp import RawServer, raw_server, response

LIMIT = 256
"""The line limit here: above every event line the scripts write (30 characters of data), below their long junk."""
HTTP = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Examples cross a socket (no deadline); the server fixture is shared by the examples, each scripting its answer."""
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
JUNK_VALUES = st.one_of(
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.sampled_from([b"99999999999999999999", b"-5", b"1_000", b"\xd9\xa3", b"\xff", b"", b"\x00"]),
)
"""What junk fields carry: bytes of any kind on one line, retry values past timedelta's range."""
JUNK_FIELDS = (b"id: ", b"retry: ", b"retry:", b": ", b":", b"foo: ", b"foo")


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with raw_server("/v2beta1/events/activities") as raw:
        yield raw


@dataclass
class Script:
    """A stream as the server writes it, and what the reader must make of it."""

    body: bytes = b""
    events: list[Message] = field(default_factory=list)
    oversized: int = 0


def payload_text() -> st.SearchStrategy[str]:
    """Data values as the reader hands them through unchanged: one line, no leading space."""
    return st.text(max_size=30).map(lambda t: t.replace("\n", "").replace("\r", "").lstrip(" ")) | st.just('{"n": 1}')


@st.composite
def event_streams(draw: st.DrawFn) -> Script:
    """Events with junk between and inside them; the last one maybe left without its blank line or cut mid-line."""
    script = Script()
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.none() | st.sampled_from(["status", "message", "x y", "é"]))
        lines: list[bytes] = [] if name is None else [b"event: " + name.encode()]
        data = draw(st.lists(payload_text(), max_size=3))
        lines += [b"data: " + text.encode() for text in data]
        for _ in range(draw(st.integers(0, 3))):  # junk, in any place among the fields
            junk = draw(st.sampled_from([b"id: ", b"retry: ", b"retry:", b": ", b":", b"foo: ", b"foo"])) + draw(
                JUNK_VALUES
            )
            if draw(st.integers(0, 4)) == 0:
                junk, script.oversized = b": " + b"x" * (LIMIT + 1), script.oversized + 1
            lines.insert(draw(st.integers(0, len(lines))), junk)
        script.body += b"".join(line + draw(st.sampled_from([b"\n", b"\r\n"])) for line in lines) + b"\n"
        if data:
            script.events.append(Message("\n".join(data), name))
    if draw(st.booleans()):  # a last event never finished: never yielded
        script.body += b'data: {"cut": ' + draw(st.sampled_from([b"1}\n", b"1"]))
    return script


def cut(draw: Draw, body: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=6))))
    bounds = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds) if body[a:b]]


@settings(HTTP, max_examples=examples(150))
@given(st.data())
async def test_any_event_stream_yields_exactly_its_complete_events(server: RawServer, data: st.DataObject) -> None:
    """Complete events arrive with their data and name; junk is ignored, long lines reported, then StreamClosed."""
    script = data.draw(event_streams())
    server.answer([SSE_HEAD, *cut(data.draw, script.body)])
    reported: list[Oversized] = []

    async def on_oversized(line: Oversized) -> None:
        reported.append(line)

    with patch.object(stream, "MAX_LINE_BYTES", LIMIT):
        got = await read_all(server, on_oversized)
    assert got == script.events
    assert len(reported) == script.oversized


FIELD_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
"""What RFC 9110 allows in a header value (VCHAR, space, tab, obs-text); anything else makes the answer invalid HTTP."""


def header_values() -> st.SearchStrategy[bytes]:
    """Header values of any allowed bytes: digits of other scripts (``²``, ``٣``), Latin-1, huge numbers."""
    special = st.sampled_from(["²", "٣٤", "9" * 400, "-1", "1713902400", "/v2/events/x", "//evil/x"]).map(str.encode)
    return st.one_of(special, special, st.lists(st.sampled_from(FIELD_BYTES), max_size=12).map(bytes).map(bytes.strip))


@st.composite
def connect_answers(draw: st.DrawFn) -> tuple[int | None, bytes]:
    """(status or None when the answer is no valid HTTP, the answer's bytes)."""
    if draw(st.integers(0, 9)) == 0:
        return None, draw(st.binary(max_size=40) | st.sampled_from([b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200\r\n"]))
    status = draw(st.sampled_from([200, 200, 204, 301, 302, 307, 308, 400, 401, 403, 404, 418, 429, 429, 500, 599]))
    kind = draw(st.sampled_from([b"text/event-stream", b"text/plain", b"application/json", b"text/event-stream; x=1"]))
    headers = [(b"Content-Type", kind), (b"Connection", b"close")]
    for name in (b"X-RateLimit-Reset", b"Location", b"Retry-After"):
        if draw(st.booleans()):
            headers.append((name, draw(header_values())))
    body = draw(st.sampled_from([b"", b'data: {"n": 1}\n\n', b'{"code": 1, "message": "no"}', b"\xff\xfe"]))
    return status, response(status, headers, body)


def expected_error(status: int) -> type[Exception] | None:
    """The error a refused connect with ``status`` raises (None: the stream opens)."""
    if status in REDIRECTS:
        return Redirected
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    if status in (401, 403):
        return AuthenticationError
    return ClientError if status >= 400 else TransportError


@HTTP
@given(connect_answers())
async def test_any_answer_to_the_connect_opens_or_raises_from_the_tree(
    server: RawServer, answer: tuple[int | None, bytes]
) -> None:
    """A connect answer opens a stream or raises the tree's error for its status; no connection is left held."""
    status, raw = answer
    server.answer([raw])
    async with stream_session(10, info := ConnectInfo()) as session:
        outcome = await connect_once(session, info, server.url)
        assert session.connector is not None
        assert len(session.connector._acquired) == 0, "a refused response still holds its connection"
    if outcome is None:
        assert status == 200
    elif status is not None:
        assert type(outcome) is expected_error(status) or (status == 200 and type(outcome) is TransportError)
    if isinstance(outcome, RateLimitedError):
        assert outcome.reset_at is None or outcome.reset_at >= 0


async def connect_once(session: aiohttp.ClientSession, info: ConnectInfo, url: str) -> SettlekeeperError | None:
    """Connect and read to the end: None if the stream opened, else the error (from the tree, or the test fails)."""
    try:
        async with asyncio.timeout(5):
            connect = open_stream(session, info, url, params={}, headers={}, on_comment=print, on_oversized=nothing)
            async with connect as messages:
                await drain(messages)
    except SettlekeeperError as exc:
        return exc
    return None


async def drain(messages: AsyncIterator[list[Message]]) -> list[Message]:
    """Every message until StreamClosed, which must end the iteration."""
    got: list[Message] = []
    try:
        async for batch in messages:
            got.extend(batch)
    except StreamClosed:
        return got
    raise AssertionError("the messages ended without StreamClosed")


async def nothing(_: Oversized) -> None:
    pass


# ---------------------------------------------------------------------- defects the targets found, pinned


async def read_all(server: RawServer, on_oversized: OnOversized) -> list[Message]:
    """Every message of the stream the server was scripted with (its head written first)."""
    async with stream_session(10, info := ConnectInfo()) as session:
        connect = open_stream(
            session, info, server.url, params={}, headers={}, on_comment=lambda _: None, on_oversized=on_oversized
        )
        async with asyncio.timeout(5), connect as messages:
            return await drain(messages)


async def test_regression_a_retry_past_timedeltas_range_does_not_escape(server: RawServer) -> None:
    """``retry: 99999999999999999999`` made the library's timedelta raise OverflowError out of the stream; the
    reader never lets the library reconnect, so retry lines are now dropped before it sees them."""
    server.answer([SSE_HEAD, b"retry: 99999999999999999999\n", b'data: {"n": 1}\n\n'])
    got = await read_all(server, nothing)
    assert got == [Message('{"n": 1}')]


@pytest.mark.parametrize("reset", ["²".encode(), b"\xc2\xb2\xc2\xb2"])
async def test_regression_a_rate_limit_reset_of_other_digits_is_a_rate_limit(server: RawServer, reset: bytes) -> None:
    """``X-RateLimit-Reset: ²`` passed str.isdigit, then float() raised ValueError out of open_stream; now a reset
    that is not ASCII digits is unknown (None) and the 429 is a RateLimitedError."""
    server.answer([response(429, [(b"X-RateLimit-Reset", reset), (b"Connection", b"close")], b"")])
    async with stream_session(10, info := ConnectInfo()) as session:
        connect = open_stream(session, info, server.url, params={}, headers={}, on_comment=print, on_oversized=nothing)
        with pytest.raises(RateLimitedError) as raised:
            async with connect:
                pass
    assert raised.value.reset_at is None
