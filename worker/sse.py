"""One SSE connection through aiohttp-sse-client, with the library's defects wrapped.

``aiohttp-sse-client`` 0.2.x (``../shared/reference/libraries.md`` §1) drops comment lines, reconnects by
itself once with stale parameters, glues a half-received event onto the next connection, and hides
the status and headers of a failed connect. Here each :func:`open_stream` call builds a fresh
``EventSource`` on a session we own, wraps the response's line iterator so that

- comment lines (``:heartbeat``, ``: ... dropped N messages``, ``: internal server error``) reach
  ``on_comment``;
- the end of the body raises :class:`StreamClosed` instead of letting the library reconnect;
- an unterminated last line (an event cut mid-line) is counted and discarded, never parsed;

and maps connect failures onto the error tree with the status and ``X-RateLimit-Reset`` captured by
an aiohttp trace hook.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp_sse_client.client import EventSource

from funding.errors import ClientError, RateLimitedError, ServerError, TransportError


class StreamClosed(TransportError):
    """The server ended the response (cleanly or not); the caller reconnects from its cursor."""


@dataclass
class ConnectInfo:
    """Status and headers of the last connect attempt, captured by the session's trace hook."""

    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)


def stream_session(heartbeat_seconds: float, info: ConnectInfo) -> aiohttp.ClientSession:
    """A session for streams: no total timeout, and a read watchdog of 3 heartbeats."""
    trace = aiohttp.TraceConfig()

    async def on_end(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        info.status = params.response.status
        info.headers = dict(params.response.headers)

    trace.on_request_end.append(on_end)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3 * heartbeat_seconds)
    return aiohttp.ClientSession(timeout=timeout, trace_configs=[trace], read_bufsize=2**20)


class _Lines:
    """The response's line iterator, with comments surfaced and the end of stream made explicit."""

    def __init__(self, content: aiohttp.StreamReader, on_comment: Callable[[str], None]) -> None:
        self._content = content
        self._on_comment = on_comment
        self.truncated = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._content, name)  # aiohttp reads exception() etc. on release

    async def _lines(self) -> AsyncIterator[bytes]:
        async for raw in self._content:
            if not raw.endswith(b"\n"):
                self.truncated += 1
                break
            if raw.startswith(b":"):
                self._on_comment(raw[1:].decode("utf-8", "replace").strip())
                continue
            yield raw
        raise StreamClosed("the server closed the event stream")


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
) -> AsyncIterator[AsyncIterator[Message]]:
    """Connect once; yield an iterator of messages that ends by raising :class:`StreamClosed`."""
    source = EventSource(
        url,
        session=session,
        max_connect_retry=0,
        params=dict(params),
        headers=dict(headers),
    )
    info.status, info.headers = 0, {}
    try:
        await source.connect(retry=0)
    except (ConnectionError, aiohttp.ClientError, TimeoutError) as exc:
        await source.close()
        raise _connect_error(url, info, exc) from None
    response = source._response  # the library keeps it private; pinned to aiohttp-sse-client <0.3
    lines = _Lines(response.content, on_comment)
    response.content = lines

    async def messages() -> AsyncIterator[Message]:
        try:
            async for event in source:
                yield Message(data=event.data, event=event.type)
        except (aiohttp.ClientError, TimeoutError) as exc:  # cut mid-body, or the sock_read watchdog
            raise StreamClosed(f"event stream broke: {type(exc).__name__}") from None

    try:
        yield messages()
    finally:
        await source.close()


def _connect_error(url: str, info: ConnectInfo, exc: BaseException) -> Exception:
    status = info.status
    where = f"GET {url.split('?')[0]}"
    if status == 429:
        reset = info.headers.get("X-RateLimit-Reset", "")
        return RateLimitedError(f"{where} → HTTP 429", reset_at=float(reset) if reset.isdigit() else None)
    if status >= 500:
        return ServerError(f"{where} → HTTP {status}", status=status)
    if status >= 400:
        return ClientError(f"{where} → HTTP {status}", status=status)
    return TransportError(f"{where}: {type(exc).__name__}: {exc}")
