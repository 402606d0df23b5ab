"""Alpaca's event streams: one SSE connection, read safely.

**The connection.** ``aiohttp-sse-client`` 0.2.x (its defects: docs/broker-api.md "The SSE library")
drops comment lines, reconnects by itself once with stale parameters, glues a half-received event onto the
next connection, and hides the status and headers of a failed connect. Here each :func:`open_stream` call
builds a fresh ``EventSource`` on a session we own, wraps the response's line iterator so that

- comment lines (``:heartbeat``, ``: ... dropped N messages``, ``: internal server error``) reach
  ``on_comment``;
- the end of the body raises :class:`StreamClosed` instead of letting the library reconnect;
- an unterminated last line (an event cut mid-line) is counted and discarded, never parsed;
- a broken read (cut connection, the ``sock_read`` watchdog) raises :class:`StreamClosed` too, and bytes
  that are not UTF-8 become U+FFFD instead of crashing the library's strict decode;
- a line longer than :data:`MAX_LINE_BYTES` is skipped to its end and reported to ``on_oversized``
  (the reader dead-letters it) while the connection goes on: a reconnect would read it again, forever;
- ``retry:`` lines never reach the library: it alone would use them (it never reconnects here), and a value past
  ``timedelta``'s range (``retry: 99999999999999999999``) raises ``OverflowError`` out of its parser;

and maps connect failures onto the error tree with the status and ``X-RateLimit-Reset`` captured by
an aiohttp trace hook, closing the failed response the library would leave holding a connection.

**Redirects** are never followed by aiohttp: a 301/302/307/308 raises :class:`Redirected`, and the reader
follows it only to an events path of the same origin (:func:`redirect_path`). What the events name:
:mod:`broker.events`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_sse_client.client import EventSource

from funding import ids
from funding.errors import (
    AuthenticationError,
    ClientError,
    RateLimitedError,
    ServerError,
    TransportError,
)


class Redirected(TransportError):
    """The stream answered 301/302/307/308: ``location`` is where it says it moved (followed only if safe)."""

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


REDIRECTS = frozenset({301, 302, 307, 308})


def redirect_path(base_url: str, location: str) -> str | None:
    """The path a redirect leads to, when it is safe to follow with the credentials: the same scheme, host and
    port as ``base_url`` and an events path (data from a response never chooses where an authenticated request
    goes); its query is dropped (the reader sends its own cursor). None otherwise."""
    target = urlsplit(urljoin(base_url + "/", location))
    base = urlsplit(base_url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return None
    return target.path if ids.STREAM_PATH.fullmatch(target.path) else None


class StreamClosed(TransportError):
    """The server ended the response (cleanly or not); the caller reconnects from its cursor."""


@dataclass
class ConnectInfo:
    """Status and headers of the last connect attempt, captured by the session's trace hook.

    One per session, and one connection at a time on it (the reader's connect loop is sequential).
    """

    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    response: aiohttp.ClientResponse | None = field(default=None, repr=False, compare=False)
    """The last response itself: on a refused connect the library neither reads nor closes it."""


def stream_session(heartbeat_seconds: float, info: ConnectInfo) -> aiohttp.ClientSession:
    """A session for streams: no total timeout, and a read watchdog of 3 heartbeats."""
    trace = aiohttp.TraceConfig()

    async def on_end(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        info.status = params.response.status
        info.headers = dict(params.response.headers)
        info.response = params.response

    trace.on_request_end.append(on_end)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3 * heartbeat_seconds)
    return aiohttp.ClientSession(timeout=timeout, trace_configs=[trace], read_bufsize=2**20)


MAX_LINE_BYTES = 2 * 2**20
"""An event line longer than this is skipped and dead-lettered (Alpaca's events are a few hundred bytes)."""


OVERSIZED_HEAD_BYTES = 2000
"""How much of an over-long line is kept in its dead letter (enough to see what it was)."""


@dataclass
class Oversized:
    """An event line longer than :data:`MAX_LINE_BYTES`, skipped: its start, its length, its hash."""

    head: bytes
    length: int = 0
    digest: Any = field(default_factory=hashlib.sha256, repr=False)

    def add(self, part: bytes) -> None:
        self.length += len(part)
        self.digest.update(part)

    @property
    def sha256(self) -> str:
        return str(self.digest.hexdigest())


OnOversized = Callable[[Oversized], Awaitable[None]]


class _Lines:
    """The response's line iterator, with comments surfaced and every end of the stream made explicit.

    The library runs ``async for`` over it once per event, so it keeps no state between lines. A line
    longer than :data:`MAX_LINE_BYTES` is skipped up to its end, reported in order to ``on_oversized``,
    and reading goes on: the connection is not dropped (reconnecting would meet the same line again).
    """

    def __init__(
        self, content: aiohttp.StreamReader, on_comment: Callable[[str], None], on_oversized: OnOversized
    ) -> None:
        self._content = content
        self._on_comment = on_comment
        self._on_oversized = on_oversized
        self._ready: deque[bytes | Oversized] = deque()
        self._partial = b""
        self._skipping: Oversized | None = None
        self.truncated = 0

    def __aiter__(self) -> _Lines:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._content, name)  # aiohttp reads exception() etc. on release

    async def __anext__(self) -> bytes:
        while True:
            while not self._ready:
                await self._fill()
            raw = self._ready.popleft()
            if isinstance(raw, Oversized):
                await self._on_oversized(raw)
                continue
            if raw[:1] == b":":
                self._on_comment(raw[1:].decode("utf-8", "replace").strip())
                continue
            if raw[:6] == b"retry:":  # only the library's own reconnect reads it, and it is never used
                continue
            if not raw.isascii():  # the library decodes strictly; one bad byte would escape as an error
                raw = raw.decode("utf-8", "replace").encode()
            return raw

    async def _fill(self) -> None:
        """Read whatever arrived and split it into lines (one C-level split instead of a readline each)."""
        try:
            chunk = await self._content.readany()
        except (aiohttp.ClientError, TimeoutError, HttpProcessingError) as exc:
            # cut, or the watchdog; from None: aiohttp's error holds the request (its Authorization header)
            raise StreamClosed(f"event stream broke: {type(exc).__name__}") from None
        if not chunk:
            if self._partial or self._skipping is not None:
                self.truncated += 1
                raise StreamClosed("the server closed the event stream in the middle of a line")
            raise StreamClosed("the server closed the event stream")
        if self._skipping is not None:  # inside an over-long line: drop bytes until its end
            end = chunk.find(b"\n")
            self._skipping.add(chunk if end < 0 else chunk[:end])
            if end < 0:
                return
            self._ready.append(self._skipping)
            self._skipping, chunk = None, chunk[end + 1 :]
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if len(line) > MAX_LINE_BYTES:  # whole, but too long all the same
                self._ready.append(oversized := Oversized(line[:OVERSIZED_HEAD_BYTES]))
                oversized.add(line)
            else:
                self._ready.append(line[:-1] if line[-1:] == b"\r" else line)
        if len(self._partial) > MAX_LINE_BYTES:
            self._skipping = Oversized(self._partial[:OVERSIZED_HEAD_BYTES])
            self._skipping.add(self._partial)
            self._partial = b""


@dataclass
class Message:
    """One dispatched SSE message."""

    data: str
    event: str | None = None


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    info: ConnectInfo,
    url: str,
    *,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    on_comment: Callable[[str], None],
    on_oversized: OnOversized,
) -> AsyncIterator[AsyncIterator[Message]]:
    """Connect once; yield an iterator of messages that ends by raising :class:`StreamClosed`."""
    source = EventSource(
        url,
        session=session,
        max_connect_retry=0,
        params=dict(params),
        headers=dict(headers),
        allow_redirects=False,  # a redirect is the reader's to judge (redirect_path), not aiohttp's to follow
    )
    info.status, info.headers, info.response = 0, {}, None
    try:
        await source.connect(retry=0)
    except (ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
        await source.close()
        if info.response is not None:
            info.response.close()  # refused (4xx/5xx, not 200, not text/event-stream): free the connection
        raise _connect_error(url, info, exc) from None  # the same: the cause holds the Authorization header
    response, info.response = info.response, None  # the one the library now reads from
    assert response is not None
    response.content = _Lines(response.content, on_comment, on_oversized)

    async def messages() -> AsyncIterator[Message]:
        async for event in source:  # ends by raising StreamClosed from _Lines, never by reconnecting
            yield Message(data=event.data, event=event.type)

    try:
        yield messages()
    finally:
        await source.close()


def _connect_error(url: str, info: ConnectInfo, exc: BaseException) -> Exception:
    status = info.status
    where = f"GET {url.split('?')[0]}"
    if status in REDIRECTS:
        return Redirected(f"{where} → HTTP {status}", location=info.headers.get("Location", "")[:2000])
    if status == 429:
        reset = info.headers.get("X-RateLimit-Reset", "")
        known = reset.isascii() and reset.isdigit()  # isdigit alone takes "²", which float() refuses
        return RateLimitedError(f"{where} → HTTP 429", reset_at=float(reset) if known else None)
    if status >= 500:
        return ServerError(f"{where} → HTTP {status}", status=status)
    if status in (401, 403):
        return AuthenticationError(where, status=status)
    if status >= 400:
        return ClientError(f"{where} → HTTP {status}", status=status)
    return TransportError(f"{where}: {type(exc).__name__}: {exc}")
