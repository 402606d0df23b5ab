"""Alpaca's event streams: one SSE connection, read safely.

**The connection.** ``aiohttp-sse-client`` 0.2.x (its defects: docs/broker-api.md "The SSE library")
drops comment lines, reconnects by itself once with stale parameters, glues a half-received event onto the
next connection, and hides the status and headers of a failed connect; it also dispatches every line with an
await of its own, in pure Python. So each :func:`open_stream` call builds a fresh ``EventSource`` on
a session we own to connect (its request, headers and content-type check), and reads the body itself
(:class:`_Lines`):

- messages are framed off each chunk as it arrives (``data``/``event`` fields, a blank line dispatches) and
  handed over a list per read;
- comment lines (``:heartbeat``, ``: ... dropped N messages``, ``: internal server error``) reach
  ``on_comment``, in order with the messages;
- the end of the body raises :class:`StreamClosed` instead of letting the library reconnect;
- an unterminated last line (an event cut mid-line) is counted and discarded, never parsed;
- a broken read (cut connection, the ``sock_read`` watchdog) raises :class:`StreamClosed` too, and bytes
  that are not UTF-8 become U+FFFD;
- a line longer than :data:`MAX_LINE_BYTES` is skipped to its end and reported to ``on_oversized``
  (the reader dead-letters it) while the connection goes on: a reconnect would read it again, forever;
- ``retry:`` and ``id:`` lines are ignored: the reader's backoff and cursor decide (the library would
  reconnect with them, and a ``retry: 99999999999999999999`` raises ``OverflowError`` out of its parser);

and maps connect failures onto the error tree with the status and ``X-RateLimit-Reset`` captured by
an aiohttp trace hook, closing the failed response the library would leave holding a connection.

**Redirects** are never followed by aiohttp: a 301/302/307/308 raises :class:`Redirected`, and the reader
follows it only to an events path of the same origin (:func:`redirect_path`). What the events name:
:mod:`broker.events`.
"""

from __future__ import annotations

import contextlib
import hashlib
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


@dataclass(slots=True)
class Message:
    """One dispatched SSE message."""

    data: str
    event: str | None = None


class _Lines:
    """The response's lines framed into SSE messages, with comments surfaced and every end of the stream explicit.

    :meth:`messages` splits each chunk ``readany`` returns at once (one C-level split, no per-line await) and
    yields the messages it completes as one list; a comment or an over-long line is handed to its callback in
    stream order (the messages before it are yielded first, so a callback that raises, as a dropped-messages
    comment does, loses none of them). A line longer than :data:`MAX_LINE_BYTES` is skipped up to its end and
    reading goes on: the connection is not dropped (reconnecting would meet the same line again).
    """

    def __init__(
        self, content: aiohttp.StreamReader, on_comment: Callable[[str], None], on_oversized: OnOversized
    ) -> None:
        self._content = content
        self._on_comment = on_comment
        self._on_oversized = on_oversized
        self._partial = b""
        self._skipping: Oversized | None = None
        self.truncated = 0

    async def messages(self) -> AsyncIterator[list[Message]]:
        """The stream's messages, a list per read; ends by raising :class:`StreamClosed`.

        The fields are the SSE standard's: ``data`` lines joined by newlines, ``event`` the type, a blank line
        dispatches; ``id`` (the cursor is each event's own id, in its data), ``retry`` (the reader's backoff
        decides) and unknown fields are read and ignored. Bytes that are not UTF-8 become U+FFFD.
        """
        data: list[str] = []
        event = ""
        while True:
            out: list[Message] = []
            for raw in await self._fill():
                if not isinstance(raw, bytes):  # an over-long line, skipped
                    if out:
                        yield out
                        out = []
                    await self._on_oversized(raw)
                elif not raw:  # a blank line dispatches
                    if data:
                        out.append(Message(data[0] if len(data) == 1 else "\n".join(data), event or None))
                        data = []
                    event = ""
                elif raw[:6] == b"data: ":
                    data.append(raw[6:].decode("utf-8", "replace"))
                elif raw[:1] == b":":
                    if out:
                        yield out
                        out = []
                    self._on_comment(raw[1:].decode("utf-8", "replace").strip())
                else:
                    name, _, value = raw.decode("utf-8", "replace").partition(":")
                    value = value[1:] if value[:1] == " " else value
                    if name == "data":
                        data.append(value)
                    elif name == "event":
                        event = value
            if out:
                yield out

    async def _fill(self) -> list[bytes | Oversized]:
        """Read whatever arrived and split it into whole lines (``\\r\\n`` as ``\\n``), the over-long ones as
        :class:`Oversized`; the rest of a line waits for the next read."""
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
        ready: list[bytes | Oversized] = []
        if self._skipping is not None:  # inside an over-long line: drop bytes until its end
            end = chunk.find(b"\n")
            self._skipping.add(chunk if end < 0 else chunk[:end])
            if end < 0:
                return ready
            ready.append(self._skipping)
            self._skipping, chunk = None, chunk[end + 1 :]
        whole = self._partial + chunk
        lines: list[bytes] = whole.split(b"\n")
        self._partial = lines.pop()
        if b"\r" in whole or len(whole) > MAX_LINE_BYTES:
            for line in lines:
                if len(line) > MAX_LINE_BYTES:  # whole, but too long all the same
                    ready.append(oversized := Oversized(line[:OVERSIZED_HEAD_BYTES]))
                    oversized.add(line)
                else:
                    ready.append(line[:-1] if line[-1:] == b"\r" else line)
        else:  # the common case: no line to look at one by one
            ready += lines
        if len(self._partial) > MAX_LINE_BYTES:
            self._skipping = Oversized(self._partial[:OVERSIZED_HEAD_BYTES])
            self._skipping.add(self._partial)
            self._partial = b""
        return ready


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
) -> AsyncIterator[AsyncIterator[list[Message]]]:
    """Connect once; yield an iterator of message lists (one per read) that ends by raising :class:`StreamClosed`."""
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
    try:
        yield _Lines(response.content, on_comment, on_oversized).messages()
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
