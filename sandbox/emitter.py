"""Builds the stream payloads (Alpaca's event shapes) and appends them to the event logs."""

from __future__ import annotations

import functools
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from string import Template
from typing import Any

from funding.money import wire
from sandbox.event_log import EventLog, MonotonicUlids, StreamName
from sandbox.state import Account, Journal

NON_TRADE_TYPES = frozenset({"MEM", "CSD", "JNLC", "INT", "FEE", "CSW", "DIV"})
"""Activity types the v1 NTA stream also carries (MEM included: v1 partners follow IF on it too)."""


@functools.lru_cache(maxsize=16)
def iso(moment: datetime) -> str:
    """An instant in UTC with a ``Z``, as Alpaca's stream examples print ``at``.

    Cached: a settlement of 50,000 transfers prints the same instant 300,000 times.
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)
"""The version (4) and variant (RFC 4122) bits of a random UUID."""


class Emitter:
    """Owns the three event logs of the sandbox."""

    def __init__(self) -> None:
        ulids = MonotonicUlids()
        self.logs = {name: EventLog(name, ulids) for name in StreamName}
        self._nta_seq = 0
        self._random = random.Random(secrets.randbits(64))  # its own: a test seeding random never repeats ids
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _ref_id(self) -> str:
        """A random (version 4) UUID, written out directly: :func:`uuid.uuid4` makes a system call and an object
        for each (an activity needs one; a settlement of 50,000 transfers, 100,000)."""
        h = f"{self._random.getrandbits(128) & _V4_CLEAR | _V4_SET:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def activity(
        self,
        at: datetime,
        account: Account,
        activity_type: str,
        *,
        status: str,
        net_amount: Decimal,
        settle_date: date,
        system_date: date,
        description: str | Template,
        details: dict[str, Any],
        qty: Decimal | None = None,
        price: Decimal | None = None,
        symbol: str | None = None,
        previous_id: str | None = None,
    ) -> str:
        """Append an ActivityEventV2 (and its NTA twin for non-trade types); returns the ``ref_id``.

        Each payload is built when it is first read (rendered or listed), from these arguments: a settlement of
        50,000 transfers appends 200,000 events, most of which a test or benchmark never reads. A ``Template``
        description is written from ``details`` then (``$transfer_id``), so that the events of a million transfers
        do not each keep a string of their own; ``details`` is kept as its values, beside keys shared by every
        event of its shape."""
        ref_id = self._ref_id()
        keys = tuple(details)
        activity = _Activity(
            at,
            account.id,
            activity_type,
            status,
            net_amount,
            settle_date,
            system_date,
            description,
            self._keys.setdefault(keys, keys),
            tuple(details.values()),
            qty,
            price,
            symbol,
            previous_id,
            ref_id,
        )
        self.logs[StreamName.ACTIVITIES].append(at, account.id, activity, "event_id")
        if activity_type in NON_TRADE_TYPES:
            self._nta_seq += 1
            self.logs[StreamName.NTA].append(at, account.id, _NtaTwin(activity, self._nta_seq), "event_ulid")
        return ref_id

    def journal_status(self, at: datetime, journal: Journal, status_from: str, status_to: str) -> None:
        """Append a JournalStatusEventV2 for a status transition of ``journal``."""
        payload: dict[str, Any] = {
            "at": iso(at),
            "entry_type": journal.entry_type,
            "journal_id": journal.id,
            "status_from": status_from,
            "status_to": status_to,
            "description": journal.description,
            "idempotency_key": journal.idempotency_key,
            "idempotency_key_type": "batch" if journal.batch else "single",
        }
        if journal.error_message:
            payload["batch_error_message"] = journal.error_message
        self.logs[StreamName.JOURNALS].append(at, journal.to_account, payload, "event_id")


@dataclass(slots=True)
class _Activity:
    """What an activity event says, kept until its payload is first read (then built by calling it); its NTA
    twin reads the same record. Never changed once appended (not frozen: that costs 1.6 µs more to build one, and
    a settlement of 50,000 transfers builds 100,000)."""

    at: datetime
    account_id: str
    activity_type: str
    status: str
    net_amount: Decimal
    settle_date: date
    system_date: date
    description: str | Template
    detail_keys: tuple[str, ...]
    detail_values: tuple[Any, ...]
    qty: Decimal | None
    price: Decimal | None
    symbol: str | None
    previous_id: str | None
    ref_id: str

    @property
    def details(self) -> dict[str, Any]:
        return dict(zip(self.detail_keys, self.detail_values, strict=True))

    def text(self, details: dict[str, Any]) -> str:
        """The description, written out (a template from ``details``, this event's)."""
        if isinstance(self.description, str):
            return self.description
        return self.description.substitute(details)

    def __call__(self) -> dict[str, Any]:
        details = self.details
        return {
            "account_id": self.account_id,
            "at": iso(self.at),
            "activity_type": self.activity_type,
            "activity_subtype": None,
            "executed_at": iso(self.at),
            "status": self.status,
            "settle_date": self.settle_date.isoformat(),
            "currency": "USD",
            "ref_id": self.ref_id,
            "previous_id": self.previous_id,
            "net_amount": wire(self.net_amount),
            "qty": wire(self.qty) if self.qty is not None else None,
            "price": wire(self.price) if self.price is not None else None,
            "symbol": self.symbol,
            "description": self.text(details),
            "details": {"system_date": self.system_date.isoformat(), **details},
        }


@dataclass(slots=True)
class _NtaTwin:
    """The v1 NTA event of a non-trade activity (its own sequence number), built when first read."""

    activity: _Activity
    seq: int

    def __call__(self) -> dict[str, Any]:
        a = self.activity
        return {
            "account_id": a.account_id,
            "at": iso(a.at),
            "id": a.ref_id,
            "event_id": self.seq,
            "system_date": a.system_date.isoformat(),
            "settle_date": a.settle_date.isoformat(),
            "net_amount": a.net_amount,
            "qty": a.qty if a.qty is not None else Decimal(0),
            "per_share_amount": None,
            "entry_type": a.activity_type,
            "symbol": a.symbol or "",
            "description": a.text(a.details),
            "status": a.status,
            "group_id": None,
        }
