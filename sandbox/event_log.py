"""The sandbox's event logs: one append-only log per SSE stream, with ULID ids in emission order."""

from __future__ import annotations

import asyncio
import secrets
from bisect import bisect_left
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

    def next(self, at: datetime) -> str:
        ms = max(int(at.timestamp() * 1000), self._last_ms)
        if ms == self._last_ms:
            self._last_random += 1
        else:
            self._last_random = secrets.randbits(79)  # leaves room for increments
            self._prefix = crockford(ms, 10)
        self._last_ms = ms
        return self._prefix + crockford(self._last_random, 16)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
"""Every 10-bit value as its two base32 characters."""


def crockford(value: int, chars: int) -> str:
    """``value`` in ``chars`` (an even number) Crockford base32 characters, as a ULID writes its 48-bit time
    (10 characters) and its 80 random bits (16): what ``str(ULID.from_int(...))`` prints, three times faster
    (a settlement of 50,000 transfers emits 200,000 events)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(5 * chars - 10, -1, -10)])


class StoredEvent:
    """One event as the stream sends it: the id, the account it concerns, and its JSON text.

    The text is rendered when the event is first sent, not when it is appended: a settlement of 50,000
    transfers appends 200,000 events, most of which a test or benchmark never reads. Nothing changes a
    payload after it is appended.
    """

    __slots__ = ("_data", "_payload", "account_id", "at", "event_id")

    def __init__(self, event_id: str, account_id: str, at: datetime, payload: dict[str, Any]) -> None:
        self.event_id = event_id
        self.account_id = account_id
        self.at = at
        self._payload: dict[str, Any] | None = payload
        self._data: str | None = None

    @property
    def data(self) -> str:
        if self._data is None:
            self._data = dumps_decimal_numbers(self._payload)
            self._payload = None
        return self._data

    @property
    def payload(self) -> dict[str, Any]:
        """The event as an object (parsed again, exactly, once its text was rendered)."""
        if self._payload is not None:
            return self._payload
        parsed: dict[str, Any] = loads_exact(self._data or "{}")
        return parsed


class EventLog:
    """Append-only events of one stream, readable from any cursor, with live wake-ups."""

    def __init__(self, name: StreamName, ulids: MonotonicUlids) -> None:
        self.name = name
        self._ulids = ulids
        self.events: list[StoredEvent] = []
        self._ids: list[str] = []
        self._changed: asyncio.Event | None = None

    def append(self, at: datetime, account_id: str, payload: dict[str, Any], id_field: str) -> str:
        """Stamp ``payload`` with a new ULID in ``id_field`` and append it; returns the id."""
        event_id = self._ulids.next(at)
        payload[id_field] = event_id
        self.events.append(StoredEvent(event_id, account_id, at, payload))
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
