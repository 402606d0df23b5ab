"""The sandbox's event logs: one append-only log per SSE stream, with ULID ids in emission order."""

from __future__ import annotations

import asyncio
import secrets
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ulid import ULID

from funding.money import dumps_decimal_numbers


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

    def next(self, at: datetime) -> str:
        ms = max(int(at.timestamp() * 1000), self._last_ms)
        if ms == self._last_ms:
            self._last_random += 1
        else:
            self._last_random = secrets.randbits(79)  # leaves room for increments
        self._last_ms = ms
        return str(ULID.from_int((ms << 80) | self._last_random))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as the stream sends it: the id, the account it concerns, and its JSON text."""

    event_id: str
    account_id: str
    at: datetime
    data: str


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
        self.events.append(StoredEvent(event_id, account_id, at, dumps_decimal_numbers(payload)))
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
