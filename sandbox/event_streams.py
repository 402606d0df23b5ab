"""SSE event streams (docs/broker-api.md "Events are hints", "Streams and cursors"): replay from a cursor, then live
push, with faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from aiohttp import web

from funding.calendar import ET
from sandbox.api import parse_instant
from sandbox.event_log import StoredEvent, StreamName
from sandbox.faults import Fault
from sandbox.http import RATE_HEADERS, RUNTIME, engine
from sandbox.state import SandboxError

MAX_CONNECTIONS = 25
"""Alpaca's cap on concurrent SSE connections per partner (Broker FAQ)."""
WELCOME = b": welcome to the Alpaca events\n\n"
HEARTBEAT = b":heartbeat\n\n"
INTERNAL_ERROR = b": internal server error\n\n"


@dataclass
class Window:
    """Which events a connection asked for."""

    start: int
    until_id: str | None
    until: datetime | None


def _bound(value: str, name: str, *, end: bool) -> datetime:
    """``since``/``until``: RFC 3339, or a date meaning the start (or end) of that day in ET."""
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise SandboxError(400, f"{name} must be a date or an RFC 3339 date-time") from None
        start = datetime.combine(day, time(0), tzinfo=ET)
        return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
    return parse_instant(value, name)


def _window(request: web.Request, events: list[StoredEvent], index_of: Callable[[str], int], v1: bool) -> Window:
    q = request.query
    id_param, until_param = ("since_ulid", "until_ulid") if v1 else ("since_id", "until_id")
    if v1 and ("since_id" in q or "until_id" in q):
        raise SandboxError(400, "integer since_id/until_id are deprecated here; use since_ulid/until_ulid")
    since_id, until_id = q.get(id_param), q.get(until_param)
    since, until = q.get("since"), q.get("until")
    if since_id is not None and since is not None:
        raise SandboxError(400, f"since and {id_param} are mutually exclusive")
    if until is not None and since is None:
        raise SandboxError(400, "since is required when until is given")
    if until_id is not None and since_id is None:
        raise SandboxError(400, f"{id_param} is required when {until_param} is given")
    if until is not None and until_id is not None:
        raise SandboxError(400, f"until and {until_param} are mutually exclusive")
    if since_id is not None:
        start = index_of(since_id)
    elif since is not None:
        since_at = _bound(since, "since", end=False)
        start = next((i for i, e in enumerate(events) if e.at >= since_at), len(events))
    else:
        start = len(events)
    return Window(start, until_id, _bound(until, "until", end=True) if until else None)


def _reorder(batch: list[StoredEvent], window: int) -> list[StoredEvent]:
    """Reverse each run of up to ``window`` consecutive events of one account."""
    out: list[StoredEvent] = []
    run: list[StoredEvent] = []
    for event in batch:
        if run and (event.account_id != run[0].account_id or len(run) == window):
            out.extend(reversed(run))
            run = []
        run.append(event)
    out.extend(reversed(run))
    return out


def handler(name: StreamName) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    v1 = name is StreamName.NTA

    async def stream(request: web.Request) -> web.StreamResponse:
        rt = request.app[RUNTIME]
        eng = engine(request)
        log = eng.emit.logs[name]
        window = _window(request, log.events, log.index_of, v1)
        if rt_streams(request.app) >= MAX_CONNECTIONS:
            raise SandboxError(429, "Too many requests: at most 25 concurrent SSE connections")
        taken = rt.faults.take_stream(name)
        faults: dict[str, Fault] = {f.kind: f for f in taken if f.kind != "inject"}
        injections = [f for f in taken if f.kind == "inject"]
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                **request.get(RATE_HEADERS, {}),
            }
        )
        await response.prepare(request)
        request.app[OPEN_STREAMS].add(response)
        try:
            await response.write(WELCOME)
            if (silence := faults.get("silence")) is not None:
                await _silent(request, silence.delay_seconds)
                if silence.delay_seconds == 0:
                    return response
            await _pump(
                request,
                response,
                log_name=name,
                window=window,
                faults=faults,
                injections=injections,
                v1=v1,
                eng_id=id(eng),
            )
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            request.app[OPEN_STREAMS].discard(response)
        return response

    return stream


async def _silent(request: web.Request, seconds: float) -> None:
    """Hold the connection open without a byte; 0 means until the client goes away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds if seconds else None
    while deadline is None or loop.time() < deadline:
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.05)


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    *,
    log_name: StreamName,
    window: Window,
    faults: dict[str, Fault],
    injections: list[Fault],
    v1: bool,
    eng_id: int,
) -> None:
    rt = request.app[RUNTIME]
    log = rt.engine.emit.logs[log_name]
    index = window.start
    sent = 0
    dropped = faults.get("dropped_comment")
    while rt.engine is not None and id(rt.engine) == eng_id:
        rt.engine.sync()
        batch = log.events[index:]
        index = len(log.events)
        if (reorder := faults.get("reorder")) is not None:
            batch = _reorder(batch, reorder.window)
        if not faults and not injections:  # the common case: write in chunks, not one await per event
            if await _write_plain(response, batch, window):
                return
            batch = []
        skip = 0
        for event in batch:
            if window.until_id is not None and event.event_id > window.until_id:
                return
            if window.until is not None and event.at > window.until:
                return
            if skip:
                skip -= 1
                continue
            sent += 1
            line = f"data: {event.data}\n\n".encode()
            for inject in injections:
                if sent == inject.n:
                    await response.write(injected(inject.data + "x" * inject.pad_bytes))
            if (cut := faults.get("truncate")) is not None and sent == cut.n + 1:
                await response.write(line[: len(line) // 2])
                if request.transport is not None:
                    request.transport.close()
                return
            if dropped is not None and sent == dropped.n + 1:
                skip = dropped.count - 1
                await response.write(f": you are reading too slowly, dropped {dropped.count} messages\n\n".encode())
                dropped = None
                continue
            if (internal := faults.get("internal_error")) is not None and not v1 and sent == internal.n + 1:
                await response.write(INTERNAL_ERROR)
                return
            await response.write(line)
            if (dup := faults.get("duplicate")) is not None and sent % dup.n == 0:
                await response.write(line)
            if window.until_id is not None and event.event_id >= window.until_id:
                return  # the until_id event itself was the last one
            if (drop := faults.get("drop_every")) is not None and sent % drop.n == 0:
                return
        if window.until is not None and rt.clock.now() > window.until:
            return
        if len(log.events) > index:
            continue  # appended while we were writing: no need to wait
        closing = request.app[OPEN_STREAMS].closing
        if closing.is_set():
            return
        waits = {asyncio.create_task(log.waiter().wait()), asyncio.create_task(closing.wait())}
        done, pending = await asyncio.wait(waits, timeout=rt.heartbeat_seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not done:
            await response.write(HEARTBEAT)


def injected(data: str) -> bytes:
    """The ``data:`` line of an ``inject`` fault as raw bytes: a lone surrogate ``\\udcXX`` in the JSON string
    (how JSON spells a byte that is not UTF-8) becomes the byte ``XX``, so invalid UTF-8 can be sent; any
    other unencodable character is sent as U+FFFD."""
    line = f"data: {data}\n\n"
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return line.encode("utf-8", "replace")


CHUNK = 256
"""Events per socket write when no fault needs them one by one."""


async def _write_plain(response: web.StreamResponse, batch: list[StoredEvent], window: Window) -> bool:
    """Send ``batch`` in chunks; True when the window's ``until``/``until_id`` ended the stream."""
    chunk: list[str] = []
    ended = False
    for event in batch:
        if (window.until_id is not None and event.event_id > window.until_id) or (
            window.until is not None and event.at > window.until
        ):
            ended = True
            break
        chunk.append(f"data: {event.data}\n\n")
        if window.until_id is not None and event.event_id >= window.until_id:
            ended = True
            break
        if len(chunk) == CHUNK:
            await response.write("".join(chunk).encode())
            chunk = []
    if chunk:
        await response.write("".join(chunk).encode())
    return ended


class OpenStreams(set[web.StreamResponse]):
    """The SSE responses currently streaming (for the 25-connection cap and shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = asyncio.Event()
        """Set on shutdown: every stream ends at once instead of waiting for its next heartbeat."""


OPEN_STREAMS = web.AppKey("open_streams", OpenStreams)


def rt_streams(app: web.Application) -> int:
    return len(app[OPEN_STREAMS])


async def _close_streams(app: web.Application) -> None:
    streams: OpenStreams = app[OPEN_STREAMS]
    streams.closing.set()
    for response in list(streams):
        with contextlib.suppress(Exception):
            await response.write_eof()


async def moved_to_v2(request: web.Request) -> web.StreamResponse:
    """``/v2beta1/events/journals/status`` → 308 to ``/v2/...`` (the redirect Alpaca's document announces)."""
    target = request.rel_url.with_path(request.path.replace("/v2beta1/", "/v2/", 1))
    raise web.HTTPPermanentRedirect(str(target))


def add_routes(app: web.Application) -> None:
    app[OPEN_STREAMS] = OpenStreams()
    app.router.add_get("/v2beta1/events/activities", handler(StreamName.ACTIVITIES))
    app.router.add_get("/v2/events/journals/status", handler(StreamName.JOURNALS))
    app.router.add_get("/v2beta1/events/journals/status", moved_to_v2)
    app.router.add_get("/v1/events/nta", handler(StreamName.NTA))
    app.on_shutdown.append(_close_streams)
