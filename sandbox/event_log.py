"""The sandbox's event logs: one append-only log per SSE stream, with ULID ids in emission order."""

from __future__ import annotations

import asyncio
import secrets
from bisect import bisect_left
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from funding.money import dumps_decimal_numbers, loads_exact


class StreamName(StrEnum):
    ACTIVITIES = "activities"
    JOURNALS = "journals"
    NTA = "nta"


class MonotonicUlids:
    """ULIDs that sort in emission order even when the sandbox clock jumps backwards.

    The timestamp part follows the sandbox clock but never decreases; within one millisecond the
    random part is incremented, as in the ULID spec's monotonic mode.
    """

    def __init__(self) -> None:
        self._last_ms = 0
        self._last_random = 0
        self._prefix = crockford(0, 10)
        self._high, self._high_text = -1, ""
        self._last_at: datetime | None = None
        self._at_ms = 0

    def next(self, at: datetime) -> str:
        if at is not self._last_at:  # the engine's clock reads one instant for a whole settlement: its
            self._last_at, self._at_ms = at, int(at.timestamp() * 1000)  # zone's offset is looked up once
        ms = max(self._at_ms, self._last_ms)
        if ms == self._last_ms:
            self._last_random += 1
        else:
            self._last_random = secrets.randbits(79)  # leaves room for increments
            self._prefix = crockford(ms, 10)
        self._last_ms = ms
        high = self._last_random >> 20  # an increment changes the last 4 characters only, mostly
        if high != self._high:
            self._high, self._high_text = high, crockford(high, 12)
        low = self._last_random & 0xFFFFF
        return self._prefix + self._high_text + _PAIRS[low >> 10] + _PAIRS[low & 1023]


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
"""Every 10-bit value as its two base32 characters."""


def crockford(value: int, chars: int) -> str:
    """``value`` in ``chars`` (an even number) Crockford base32 characters, as a ULID writes its 48-bit time
    (10 characters) and its 80 random bits (16): what ``str(ULID.from_int(...))`` prints, three times faster
    (a settlement of 50,000 transfers emits 200,000 events)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(5 * chars - 10, -1, -10)])


Payload = dict[str, Any] | Callable[[], dict[str, Any]]
"""An event's payload, or what builds it when it is first read."""


class StoredEvent:
    """One event as the stream sends it: the id, the account it concerns, and its JSON text.

    The payload may be given as what builds it, and the text is rendered when the event is first sent, not
    when it is appended: a settlement of 50,000 transfers appends 200,000 events, most of which a test or
    benchmark never reads. Nothing changes a payload after it is appended.
    """

    __slots__ = ("_data", "_id_field", "_payload", "account_id", "at", "event_id")

    def __init__(self, event_id: str, account_id: str, at: datetime, payload: Payload, id_field: str) -> None:
        self.event_id = event_id
        self.account_id = account_id
        self.at = at
        if isinstance(payload, dict):
            payload[id_field] = event_id
        self._payload: Payload | None = payload
        self._id_field = id_field
        self._data: str | None = None

    @property
    def data(self) -> str:
        if self._data is None:
            self._data = dumps_decimal_numbers(self.payload)
            self._payload = None
        return self._data

    @property
    def payload(self) -> dict[str, Any]:
        """The event as an object (parsed again, exactly, once its text was rendered)."""
        if self._payload is None:
            parsed: dict[str, Any] = loads_exact(self._data or "{}")
            return parsed
        if callable(self._payload):
            self._payload = {**self._payload(), self._id_field: self.event_id}
        return self._payload


class EventLog:
    """Append-only events of one stream, readable from any cursor, with live wake-ups."""

    def __init__(self, name: StreamName, ulids: MonotonicUlids) -> None:
        self.name = name
        self._ulids = ulids
        self.events: list[StoredEvent] = []
        self._ids: list[str] = []
        self._changed: asyncio.Event | None = None

    def append(self, at: datetime, account_id: str, payload: Payload, id_field: str) -> str:
        """Append ``payload``, stamped with a new ULID in ``id_field``; returns the id."""
        event_id = self._ulids.next(at)
        self.events.append(StoredEvent(event_id, account_id, at, payload, id_field))
        self._ids.append(event_id)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return event_id

    def index_of(self, event_id: str) -> int:
        """Index of the first event whose id is >= ``event_id`` (so the cursor itself is re-sent)."""
        return bisect_left(self._ids, event_id)

    def waiter(self) -> asyncio.Event:
        """An event that is set on the next append (create it inside the running loop)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def __len__(self) -> int:
        return len(self.events)
