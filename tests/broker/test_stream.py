"""broker/stream.py wraps each aiohttp-sse-client 0.2.1 defect (docs/broker-api.md "The SSE library"), over real HTTP.

Servers are the sandbox, or a scripted aiohttp app when exact bytes matter (``retry:``/``id:`` fields,
a line cut at a clean end, a wrong content type, a redirect, a 204, an oversized line).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp_sse_client.client import EventSource
from multidict import CIMultiDict

from broker.stream import (
    MAX_LINE_BYTES,
    ConnectInfo,
    Message,
    Oversized,
    Redirected,
    StreamClosed,
    _Lines,
    open_stream,
    stream_session,
)
from config.settings import Settings, load_settings
from funding.errors import AuthenticationError, ClientError, RateLimitedError, ServerError, TransportError
from tests.support.sandbox import Sandbox
from tests.support.sse import ACTIVITIES, replay

MONDAY = "2026-11-23"
WELCOME = "welcome to the Alpaca events"
Http = tuple[aiohttp.ClientSession, ConnectInfo]
E = TypeVar("E", bound=Exception)
Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def settings() -> Settings:
    """The sandbox heartbeats every 0.1 s here, a third of the 0.3 s read watchdog of ``http``."""
    return load_settings({}, sandbox_heartbeat_seconds=0.1)


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    """A stream session for a 0.1 s heartbeat (read watchdog 0.3 s) and its connect info."""
    async with stream_session(0.1, info := ConnectInfo()) as session:
        yield session, info


@dataclass
class Scripted:
    """A server answering its i-th request with ``responders[i]``; it records each query and header set."""

    url: str
    responders: list[Responder]
    queries: list[dict[str, str]] = field(default_factory=list)
    headers: list[CIMultiDict[str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        self.headers.append(request.headers.copy())
        return await self.responders[len(self.queries) - 1](request)


ScriptFactory = Callable[..., Awaitable[Scripted]]


@pytest.fixture
async def script() -> AsyncIterator[ScriptFactory]:
    """Factory: serve ``responders`` on 127.0.0.1, one per request, in order."""
    runners: list[web.AppRunner] = []

    async def start(*responders: Responder) -> Scripted:
        scripted = Scripted("", list(responders))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", scripted.handle)
        runners.append(runner := web.AppRunner(app, handle_signals=False, access_log=None))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        scripted.url = f"http://127.0.0.1:{runner.addresses[0][1]}/stream"
        return scripted

    yield start
    for runner in runners:
        await runner.cleanup()


def sse(*chunks: bytes) -> Responder:
    """An event stream: write ``chunks`` one by one, then end the body cleanly."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    return respond


def reply(status: int, content_type: str = "text/plain", *, hold: bool = False, **headers: str) -> Responder:
    """A plain response (``Location`` etc. in ``headers``); ``hold`` keeps its body open until the client leaves."""

    async def respond(request: web.Request) -> web.StreamResponse:
        body = None if status == 204 else b"not an event stream"
        if not hold:
            return web.Response(status=status, body=body, content_type=content_type, headers=headers)
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type, **headers})
        await response.prepare(request)
        await response.write(b"not an event stream")
        while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return response

    return respond


def connect(
    http: Http,
    url: str,
    on_comment: Callable[[str], None] = lambda _: None,
    oversized: list[Oversized] | None = None,
    **kw: dict[str, str],
) -> AbstractAsyncContextManager[AsyncIterator[list[Message]]]:
    """open_stream on the test session; ``params`` and ``headers`` default to empty; over-long lines are
    appended to ``oversized`` (and must not occur when it is None)."""

    async def on_oversized(line: Oversized) -> None:
        assert oversized is not None, f"unexpected over-long line of {line.length} bytes"
        oversized.append(line)

    return open_stream(
        *http,
        url,
        params=kw.get("params", {}),
        headers=kw.get("headers", {}),
        on_comment=on_comment,
        on_oversized=on_oversized,
    )


async def drain(messages: AsyncIterator[list[Message]], into: list[Message], within: float = 1.0) -> None:
    """Append messages to ``into`` until the iteration raises; TimeoutError if it has not after ``within`` s."""
    async with asyncio.timeout(within):
        async for batch in messages:
            into.extend(batch)


async def read_to_close(messages: AsyncIterator[list[Message]]) -> list[Message]:
    """Every message until the iteration raises StreamClosed, which must happen within 1 s."""
    got: list[Message] = []
    with pytest.raises(StreamClosed):
        await drain(messages, got)
    return got


async def refused(http: Http, url: str, error: type[E], **kw: dict[str, str]) -> E:
    """The ``error`` connecting raises within 1 s; the session's pool must hold no connection afterwards."""
    with pytest.raises(error) as raised:
        async with asyncio.timeout(1), connect(http, url, **kw):
            pass
    assert http[0].connector is not None
    assert len(http[0].connector._acquired) == 0, "a refused response still holds its connection"
    return raised.value


async def arm(sandbox: Sandbox, **fault: Any) -> None:
    await sandbox.ok("POST", "/sandbox/faults", fault)


async def events(sandbox: Sandbox, count: int) -> list[str]:
    """``count`` executed transfers; returns their activities' ``data`` payloads as a raw reader sees them."""
    for n in range(1, count + 1):
        await sandbox.create_transfer(f"810000000{n}", f"{n}0.00")
    await sandbox.advance(1)
    seen = await replay(sandbox, ACTIVITIES, {"since": MONDAY}, events=count)
    assert len(seen.data) == count
    return seen.data


def auth(sandbox: Sandbox) -> dict[str, str]:
    """The sandbox's Basic credentials as a plain dict."""
    return dict(sandbox.http.headers)


async def test_comment_lines_reach_on_comment_and_data_still_arrives(script: ScriptFactory, http: Http) -> None:
    """Welcome, heartbeat, dropped-messages and internal-error comments reach on_comment stripped; data still flows."""
    server = await script(
        sse(
            b': welcome to the Alpaca events\n\ndata: {"n": 1}\n\n:heartbeat\n\n',
            b': you are reading too slowly, dropped 3 messages\n\ndata: {"n": 2}\n\n: internal server error\n\n',
        )
    )
    comments: list[str] = []
    async with connect(http, server.url, comments.append) as messages:
        assert await read_to_close(messages) == [Message('{"n": 1}'), Message('{"n": 2}')]
    assert comments == [WELCOME, "heartbeat", "you are reading too slowly, dropped 3 messages", "internal server error"]


class Enough(Exception):
    """Raised by a test's on_comment, as the stream reader raises Rewind on a dropped-messages comment."""


async def test_sandbox_dropped_comment_reaches_on_comment_which_may_end_the_read(sandbox: Sandbox, http: Http) -> None:
    """The sandbox's dropped-messages comment reaches on_comment between events; what it raises escapes as is."""
    data = await events(sandbox, 3)
    await arm(sandbox, kind="dropped_comment", n=1, count=1, times=1)
    comments: list[str] = []

    def on_comment(text: str) -> None:
        comments.append(text)
        if "dropped" in text:
            raise Enough(text)

    got: list[Message] = []
    url, params = sandbox.base_url + ACTIVITIES, {"since": MONDAY}
    async with connect(http, url, on_comment, params=params, headers=auth(sandbox)) as messages:
        with pytest.raises(Enough, match="dropped 1 messages"):
            await drain(messages, got)
    assert [m.data for m in got] == data[:1]
    assert comments == [WELCOME, "you are reading too slowly, dropped 1 messages"]


async def test_sandbox_internal_error_comment_then_stream_closed(sandbox: Sandbox, http: Http) -> None:
    """The sandbox's ': internal server error' reaches on_comment and the close after it raises StreamClosed."""
    data = await events(sandbox, 2)
    await arm(sandbox, kind="internal_error", n=1, times=1)
    comments: list[str] = []
    url, params = sandbox.base_url + ACTIVITIES, {"since": MONDAY}
    async with connect(http, url, comments.append, params=params, headers=auth(sandbox)) as messages:
        assert [m.data for m in await read_to_close(messages)] == data[:1]
    assert comments == [WELCOME, "internal server error"]


async def test_clean_end_raises_stream_closed_without_a_library_reconnect(script: ScriptFactory, http: Http) -> None:
    """A clean end of the body raises StreamClosed; the server sees one request, even after `retry: 1` (1 ms)."""
    server = await script(sse(b"retry: 1\n", b'data: {"n": 1}\n\n'), sse(b'data: {"n": 2}\n\n'))
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == [Message('{"n": 1}')]
    await asyncio.sleep(0.1)  # left alone, the library would have reconnected after 2 ms
    assert len(server.queries) == 1


async def test_sandbox_cut_event_is_never_yielded_and_a_new_stream_is_intact(sandbox: Sandbox, http: Http) -> None:
    """A truncate fault ends the stream with StreamClosed before the cut event; a new stream yields it intact."""
    data = await events(sandbox, 4)
    await arm(sandbox, kind="truncate", n=2, times=1)
    url, params = sandbox.base_url + ACTIVITIES, {"since": MONDAY}
    async with connect(http, url, params=params, headers=auth(sandbox)) as messages:
        assert [m.data for m in await read_to_close(messages)] == data[:2]
    again: list[Message] = []
    async with connect(http, url, params=params, headers=auth(sandbox)) as messages:
        with pytest.raises(TimeoutError):  # a live stream: read for 0.3 s, then stop
            await drain(messages, again, within=0.3)
    assert [m.data for m in again] == data


GLUE = (sse(b'data: {"amount": "99'), sse(b'7.00"}\n', b'data: {"ok": 1}\n\n'))
"""A first connection cut mid-line at a clean end, then a second one."""


async def test_control_the_library_alone_glues_a_cut_event(script: ScriptFactory) -> None:
    """Control: one EventSource left to reconnect by itself glues the cut event to the next connection's."""
    server = await script(*GLUE)
    async with aiohttp.ClientSession() as session:
        source = EventSource(server.url, session=session, reconnection_time=timedelta(0))
        async with source, asyncio.timeout(1):
            event = await anext(aiter(source))
    assert event.data == '{"amount": "99\n{"ok": 1}'


async def test_cut_line_at_a_clean_end_is_discarded_not_glued(script: ScriptFactory, http: Http) -> None:
    """A last line without newline is dropped with StreamClosed; the next open_stream yields only whole events."""
    server = await script(*GLUE)
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == []
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == [Message('{"ok": 1}')]


SANDBOX_ERRORS = [(429, RateLimitedError), (500, ServerError), (502, ServerError), (503, ServerError)]


@pytest.mark.parametrize(("status", "error"), [*SANDBOX_ERRORS, (404, ClientError), (401, AuthenticationError)])
async def test_sandbox_http_error_on_connect_maps_to_the_error_tree(
    sandbox: Sandbox, http: Http, status: int, error: type[Exception]
) -> None:
    """A 429/5xx/404 fault, or a 401 for missing credentials (an AuthenticationError, a ClientError naming the
    variables to check), raises the tree's error with its status; no leak."""
    if status != 401:
        await arm(sandbox, kind="http_error", status=status, path=ACTIVITIES, times=1)
    err = await refused(http, sandbox.base_url + ACTIVITIES, error, headers={} if status == 401 else auth(sandbox))
    assert type(err) is error
    if isinstance(err, RateLimitedError):
        assert err.reset_at is not None
        assert time.time() < err.reset_at <= time.time() + 61
    else:
        assert getattr(err, "status", None) == status


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimitedError), (503, ServerError), (401, ClientError), (403, ClientError)]
)
async def test_refused_response_with_an_open_body_is_closed(
    script: ScriptFactory, http: Http, status: int, error: type[Exception]
) -> None:
    """An error whose body is still streaming maps to the tree (429: exact reset) and is closed, not leaked."""
    server = await script(reply(status, "application/json", hold=True, **{"X-RateLimit-Reset": "1800000000"}))
    err = await refused(http, server.url, error)
    if isinstance(err, RateLimitedError):
        assert err.reset_at == 1800000000.0
    else:
        assert getattr(err, "status", None) == status


@pytest.mark.parametrize(
    "responders",
    [
        [reply(200, "text/html", hold=True)],
        [reply(200, "application/json")],
        [reply(204)],
        [reply(202)],
    ],
    ids=["200-html", "200-json", "204", "202"],
)
async def test_not_an_event_stream_is_a_transport_error(
    script: ScriptFactory, http: Http, responders: list[Responder]
) -> None:
    """A 2xx other than 200, a wrong content type, or a redirect to one raises TransportError at once; no leak."""
    server = await script(*responders)
    await refused(http, server.url, TransportError)
    assert len(server.queries) == len(responders)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_by_aiohttp_but_reported_with_its_location(
    script: ScriptFactory, http: Http, status: int
) -> None:
    """A redirect raises Redirected (a TransportError) with its Location, after one request: the reader decides
    whether the target is safe to follow with the credentials (redirect_path), never aiohttp."""
    server = await script(reply(status, Location="/login"), reply(200, "text/html", hold=True))
    err = await refused(http, server.url, Redirected)
    assert isinstance(err, Redirected)
    assert err.location == "/login"
    assert len(server.queries) == 1


async def test_refused_connect_is_a_transport_error_without_library_retries(http: Http) -> None:
    """Nothing listening: TransportError at once (the library would retry 5 times, sleeping over a minute)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    await refused(http, f"http://127.0.0.1:{port}/stream", TransportError)


async def test_stream_session_has_no_total_timeout_and_a_three_heartbeat_read_watchdog() -> None:
    """stream_session(0.1): total=None (no 5-minute death of a healthy stream) and sock_read=0.3 (three heartbeats)."""
    async with stream_session(0.1, ConnectInfo()) as session:
        assert session.timeout.total is None
        assert session.timeout.sock_read == pytest.approx(0.3)


async def test_sandbox_silence_trips_the_read_watchdog(sandbox: Sandbox, http: Http) -> None:
    """A server silent after the welcome ends the iteration with StreamClosed after ~0.3 s instead of hanging."""
    await arm(sandbox, kind="silence", delay_seconds=0, times=1)
    comments: list[str] = []
    started = time.monotonic()
    async with connect(http, sandbox.base_url + ACTIVITIES, comments.append, headers=auth(sandbox)) as messages:
        assert await read_to_close(messages) == []
    assert 0.25 <= time.monotonic() - started < 1.0
    assert comments == [WELCOME]


async def test_sandbox_heartbeats_keep_the_stream_open_past_the_watchdog(sandbox: Sandbox, http: Http) -> None:
    """With a heartbeat every 0.1 s and no events, the stream is still open after 0.6 s (twice sock_read)."""
    comments: list[str] = []
    got: list[Message] = []
    started = time.monotonic()
    async with connect(http, sandbox.base_url + ACTIVITIES, comments.append, headers=auth(sandbox)) as messages:
        with pytest.raises(TimeoutError) as raised:
            await drain(messages, got, within=0.6)
    assert type(raised.value) is TimeoutError, "our own timeout, not aiohttp's read timeout"
    assert time.monotonic() - started >= 0.6
    assert got == []
    assert comments.count("heartbeat") >= 3


async def test_each_connection_sends_its_own_params_and_no_stale_last_event_id(
    script: ScriptFactory, http: Http
) -> None:
    """Two open_stream calls reach the server with their own params; the first's event id is not sent again."""
    server = await script(sse(b'id: 41\ndata: {"n": 1}\n\n'), sse(b'id: 42\ndata: {"n": 2}\n\n'))
    for cursor in ("a1", "b2"):
        async with connect(http, server.url, params={"since_id": cursor}) as messages:
            assert len(await read_to_close(messages)) == 1
    assert server.queries == [{"since_id": "a1"}, {"since_id": "b2"}]
    assert "Last-Event-Id" not in server.headers[1]


async def test_caller_headers_are_not_mutated_and_sent_once(script: ScriptFactory, http: Http) -> None:
    """The caller's headers dict is unchanged after a stream; the server got each once, plus the SSE Accept."""
    server = await script(sse(b'id: 9\ndata: {"n": 1}\n\n'))
    headers = {"Authorization": "Basic a2V5OnNlY3JldA==", "Last-Event-ID": "7"}
    before = dict(headers)
    async with connect(http, server.url, headers=headers) as messages:
        await read_to_close(messages)
    assert headers == before
    seen = server.headers[0]
    assert (seen.getall("Last-Event-Id"), seen.getall("Authorization")) == (["7"], [before["Authorization"]])
    assert seen["Accept"] == "text/event-stream"


async def test_data_line_over_128_kib_is_delivered_intact(script: ScriptFactory, http: Http) -> None:
    """A 300 KiB data line (past aiohttp's default 128 KiB line limit) arrives whole, thanks to read_bufsize."""
    payload = json.dumps({"memo": "x" * 300 * 1024})
    server = await script(sse(f"data: {payload}\n\n".encode()))
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == [Message(payload)]


async def test_line_past_the_limit_is_skipped_reported_once_and_the_stream_goes_on(
    script: ScriptFactory, http: Http
) -> None:
    """A 3 MiB line (past MAX_LINE_BYTES) is never yielded: it is skipped to its end, reported once with its
    start, length and hash, and the event after it arrives on the same connection (no reconnect loop)."""
    line = b"data: " + b"x" * 3 * 2**20
    server = await script(sse(line[: 2**20], line[2**20 :] + b"\n\n", b'data: {"n": 1}\n\n'))
    oversized: list[Oversized] = []
    async with connect(http, server.url, oversized=oversized) as messages:
        assert await read_to_close(messages) == [Message('{"n": 1}')]
    assert [(o.head[:10], o.length, o.sha256) for o in oversized] == [
        (b"data: xxxx", len(line), hashlib.sha256(line).hexdigest())
    ]
    assert len(server.queries) == 1


class Chunks:
    """A response body that hands out exactly these chunks (what one ``readany`` returns each time)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


async def test_a_whole_line_past_the_limit_in_one_read_is_skipped_too() -> None:
    """An over-long line that arrives with its newline in one read is reported the same way, never yielded."""
    line = b"data: " + b"y" * (MAX_LINE_BYTES + 10)
    oversized: list[Oversized] = []

    async def report(found: Oversized) -> None:
        oversized.append(found)

    lines = _Lines(Chunks(line + b'\n\ndata: {"n": 2}\n\n'), lambda _: None, report)  # type: ignore[arg-type]
    messages = lines.messages()
    assert await anext(messages) == [Message('{"n": 2}')]
    assert [o.length for o in oversized] == [len(line)]
    with pytest.raises(StreamClosed):
        await anext(messages)


async def test_retry_and_id_fields_do_not_break_parsing(script: ScriptFactory, http: Http) -> None:
    """Bad and good retry values, id, event and unknown fields are consumed; data and the event name come through."""
    first = b"retry: soon\nretry: 3000\nid: 7\nevent: status\n"
    server = await script(sse(first, b'data: {"n": 1}\n\n', b'id:\nretry:\nfoo: bar\nfoo\ndata: {"n": 2}\n\n'))
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == [Message('{"n": 1}', event="status"), Message('{"n": 2}')]


async def test_messages_are_framed_as_the_sse_standard_says(script: ScriptFactory, http: Http) -> None:
    """Data lines join with newlines, one space after the colon is dropped (none needed), CRLF ends lines, a blank
    line without data dispatches nothing and resets the event type, and a read holding many events yields them all."""
    many = b"".join(b'data: {"m": %d}\n\n' % n for n in range(300))
    server = await script(
        sse(b"event: a\n\n", b'data: {"n":\r\ndata:  1}\r\n\r\n', b'data:{"n": 2}\nevent: b\n\n' + many)
    )
    async with connect(http, server.url) as messages:
        got = await read_to_close(messages)
    assert got[:2] == [Message('{"n":\n 1}'), Message('{"n": 2}', event="b")]
    assert [m.data for m in got[2:]] == [f'{{"m": {n}}}' for n in range(300)]


async def test_invalid_utf8_does_not_escape_as_a_decode_error(script: ScriptFactory, http: Http) -> None:
    """Bytes that are not UTF-8 arrive as U+FFFD instead of the library's strict decode raising; UTF-8 is kept."""
    server = await script(sse(b'data: {"memo": "caf\xe9"}\n\n', 'data: {"memo": "café"}\n\n'.encode()))
    async with connect(http, server.url) as messages:
        assert await read_to_close(messages) == [Message('{"memo": "caf\ufffd"}'), Message('{"memo": "café"}')]
