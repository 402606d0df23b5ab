"""Alpaca's event streams: one SSE connection, read safely, and what each event names.

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

and maps connect failures onto the error tree with the status and ``X-RateLimit-Reset`` captured by
an aiohttp trace hook, closing the failed response the library would leave holding a connection.

**The events.** An event is a hint, never the truth (docs/broker-api.md "Events are hints"): the only thing
taken from it is the id of the transfer to read over REST. Everything that does not parse, names an unknown
type or status, carries a non-decimal amount or an id of the wrong shape becomes a
:class:`~funding.records.DeadLetter` and causes no action (:func:`parse`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_sse_client.client import EventSource
from pydantic import ValidationError

from funding import ids
from funding.errors import (
    AuthenticationError,
    ClientError,
    MalformedDataError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from funding.models import ActivityEvent, JournalStatusEvent, NTAEvent
from funding.money import loads_exact, parse_money
from funding.records import DeadLetter


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
        return RateLimitedError(f"{where} → HTTP 429", reset_at=float(reset) if reset.isdigit() else None)
    if status >= 500:
        return ServerError(f"{where} → HTTP {status}", status=status)
    if status in (401, 403):
        return AuthenticationError(where, status=status)
    if status >= 400:
        return ClientError(f"{where} → HTTP {status}", status=status)
    return TransportError(f"{where}: {type(exc).__name__}: {exc}")


# -------------------------------------------------------------------------------------------- the events


class Stream(StrEnum):
    ACTIVITIES = "activities"
    JOURNALS = "journals"
    NTA = "nta"


@dataclass(frozen=True)
class StreamSpec:
    """Where a stream lives and how it resumes."""

    name: Stream
    path: str
    cursor_param: str
    id_field: str


SPECS = {
    Stream.ACTIVITIES: StreamSpec(Stream.ACTIVITIES, "/v2beta1/events/activities", "since_id", "event_id"),
    Stream.JOURNALS: StreamSpec(Stream.JOURNALS, "/v2/events/journals/status", "since_id", "event_id"),
    Stream.NTA: StreamSpec(Stream.NTA, "/v1/events/nta", "since_ulid", "event_ulid"),
}

KNOWN_ACTIVITY_TYPES = frozenset(
    {
        "TRD",
        "FILL",
        "ACATC",
        "ACATS",
        "CFEE",
        "CIL",
        "CSD",
        "CSW",
        "DIV",
        "DIVCGL",
        "DIVCGS",
        "DIVFEE",
        "DIVFT",
        "DIVNRA",
        "DIVROC",
        "DIVTW",
        "DIVTXEX",
        "FEE",
        "INT",
        "INTNRA",
        "INTTW",
        "JNL",
        "JNLC",
        "JNLS",
        "MA",
        "MEM",
        "NC",
        "OPASN",
        "OPCA",
        "OPEXP",
        "OPXRC",
        "PTC",
        "PTR",
        "REORG",
        "SC",
        "SSO",
        "SSP",
        "SPLIT",
        "SPIN",
        "WH",
        "VOF",
    }
)
"""Activity types Alpaca documents; anything else is dead-lettered (and counted), never acted on."""
KNOWN_ACTIVITY_STATUSES = frozenset({"executed", "canceled", "correct", "pending"})
IF_TYPES = frozenset({"MEM", "CSD", "INT"})
"""Activity types that can name an instant-funding transfer (memopost, settlement deposit, late interest)."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRANSFER_IN_TEXT = re.compile(r"transfer_id: ([0-9a-fA-F-]{36})")
"""A transfer id named in an activity's description (checked as a UUID like any other)."""


@dataclass(frozen=True)
class Parsed:
    """One stream event reduced to what the pipeline needs."""

    event_id: str
    kind: str
    transfer_id: str | None = None
    journal: tuple[str, str, str] | None = None
    """(journal id, new status, idempotency key or "") for journal status events."""
    dead: DeadLetter | None = None
    at: datetime | None = None
    """When the event was emitted (for the lag metric)."""
    system_date: str | None = None
    """The named transfer's system date, when the event says it (lets the resolver list a whole day)."""
    oddities: tuple[str, ...] = ()
    """How the event was looser than Alpaca's document and still read (counted, never acted on)."""


def oddities(stream: Stream, payload: dict[str, Any]) -> tuple[str, ...]:
    """What in an event is looser than the document but readable: a journal event without ``status_from``,
    a ``null`` description or symbol, ``details`` that are not an object."""
    found = []
    if stream is Stream.JOURNALS and not payload.get("status_from"):
        found.append("status_from_missing")
    if "description" in payload and payload["description"] is None:
        found.append("null_description")
    if "symbol" in payload and payload["symbol"] is None and stream is Stream.NTA:
        found.append("null_symbol")
    if "details" in payload and not isinstance(payload["details"], dict):
        found.append("undocumented_details")
    return tuple(found)


def parse(stream: Stream, data: str) -> Parsed:
    """Reduce one ``data:`` payload; malformed input yields a Parsed carrying a dead letter."""
    spec = SPECS[stream]
    try:
        payload = loads_exact(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser can follow
        return _dead(stream, "", "not_json", "data is not JSON", data)
    if not isinstance(payload, dict):
        return _dead(stream, "", "not_object", "data is not a JSON object", data)
    event_id = payload.get(spec.id_field)
    if not isinstance(event_id, str) or not event_id:
        return _dead(stream, "", "missing_id", f"no {spec.id_field}", data)
    if not ids.is_ulid(event_id):  # never a cursor: the stream would resume from it
        return _dead(stream, "", "invalid_id", f"{spec.id_field} {event_id[:40]!r} is not a ULID", data)
    parsed = _reduce(stream, event_id, payload, data)
    odd = oddities(stream, payload)
    return dataclasses.replace(parsed, oddities=odd) if odd else parsed


def _reduce(stream: Stream, event_id: str, payload: dict[str, Any], data: str) -> Parsed:
    """One event with a valid id, reduced (a dead letter when it cannot be read)."""
    try:
        if stream is Stream.JOURNALS:
            journal = JournalStatusEvent.model_validate(payload)
            if not journal.status_to.known:
                return _dead(stream, event_id, "unknown_status", f"journal status {journal.status_to.value!r}", data)
            key = journal.idempotency_key if ids.is_uuid(journal.idempotency_key) else ""
            named_journal = (str(journal.journal_id), journal.status_to.value, key or "")
            return Parsed(event_id, journal.entry_type, journal=named_journal, at=journal.at)
        if stream is Stream.NTA:
            nta = NTAEvent.model_validate(payload)
            details: dict[str, Any] = {"system_date": nta.system_date.isoformat()}
            kind, status = nta.entry_type, nta.status or "executed"
            text, at = nta.description or "", nta.at
        elif (fast := _plain_activity(payload)) is not None:
            kind, status, at = fast  # a well-formed activity that cannot name a transfer: no model needed
            return _classified(stream, event_id, kind, status, at, data) or Parsed(event_id, kind, at=at)
        else:
            activity = ActivityEvent.model_validate(payload)
            kind, status, details = activity.activity_type, activity.status, activity.details
            text, at = activity.description or "", activity.at
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return _dead(stream, event_id, "invalid", f"{where}: {first['msg']}", data)
    refused = _classified(stream, event_id, kind, status, at, data)
    if refused is not None and not (kind in IF_TYPES and refused.dead is not None and refused.dead.reason == STATUS):
        return refused
    found = _hint(stream, event_id, kind, details, text, at, data)
    if refused is not None and found.dead is None:
        # an undocumented status (a SETTLED has been seen): dead-lettered for the record and counted, and the
        # transfer it names is still read over REST, whose status is the truth (nothing is decided on this one)
        return dataclasses.replace(found, kind="invalid", dead=refused.dead)
    return found


STATUS = "unknown_status"


def _hint(stream: Stream, event_id: str, kind: str, details: Any, text: str, at: datetime, data: str) -> Parsed:
    """What an activity of ``kind`` names: the transfer (from its details or description) and its system date."""
    if kind not in IF_TYPES:
        return Parsed(event_id, kind, at=at)
    named: object = details.get("transfer_id") if isinstance(details, dict) else None
    if named is None:
        match = _TRANSFER_IN_TEXT.search(text)
        named = match.group(1) if match else None
    if kind == "MEM" and not named:
        return _dead(stream, event_id, "missing_field", "MEM activity without a transfer_id", data)
    try:  # the id is read over REST and keys Redis: only a UUID may go on (never "../journals")
        transfer_id = ids.uuid(named, "transfer_id") if named else None
    except MalformedDataError as exc:
        return _dead(stream, event_id, "invalid_id", str(exc), data)
    named_day = details.get("system_date") if isinstance(details, dict) else None
    try:  # only a hint of which day to list: a bad one is dropped, the transfer is still read on its own
        system_date = ids.iso_date(named_day, "system_date").isoformat() if named_day else None
    except MalformedDataError:
        system_date = None
    return Parsed(event_id, kind, transfer_id=transfer_id, at=at, system_date=system_date)


def _classified(stream: Stream, event_id: str, kind: str, status: str, at: datetime, raw: str) -> Parsed | None:
    """A dead letter for an unknown activity type or status, else None."""
    if kind not in KNOWN_ACTIVITY_TYPES:
        return _dead(stream, event_id, "unknown_type", f"activity type {kind!r}", raw)
    if status not in KNOWN_ACTIVITY_STATUSES:
        return _dead(stream, event_id, STATUS, f"activity status {status!r}", raw)
    return None


def _plain_activity(payload: dict[str, object]) -> tuple[str, str, datetime] | None:
    """(type, status, at) of an activity that is not an IF type and has every field well formed.

    The same checks :class:`ActivityEvent` makes, done by hand because nearly every event on the
    activities stream is a trade: anything unusual returns None and takes the model's path.
    """
    kind, status, at, account = (
        payload.get("activity_type"),
        payload.get("status"),
        payload.get("at"),
        payload.get("account_id"),
    )
    if not (isinstance(kind, str) and isinstance(status, str) and isinstance(at, str) and isinstance(account, str)):
        return None
    if kind in IF_TYPES or _UUID.fullmatch(account) is None or not isinstance(payload.get("details", {}), dict):
        return None
    amount = payload.get("net_amount")
    try:
        if amount is not None:
            parse_money(amount)
        moment = datetime.fromisoformat(at)
    except (MalformedDataError, ValueError):
        return None
    return (kind, status, moment) if moment.tzinfo is not None else None


def _dead(stream: Stream, event_id: str, reason: str, detail: str, raw: str) -> Parsed:
    return Parsed(event_id, "invalid", dead=DeadLetter(stream.value, reason, detail, raw))
