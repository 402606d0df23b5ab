"""Builds the stream payloads (Alpaca's event shapes) and appends them to the event logs."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
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


class Emitter:
    """Owns the three event logs of the sandbox."""

    def __init__(self) -> None:
        ulids = MonotonicUlids()
        self.logs = {name: EventLog(name, ulids) for name in StreamName}
        self._nta_seq = 0

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
        description: str,
        details: dict[str, Any],
        qty: Decimal | None = None,
        price: Decimal | None = None,
        symbol: str | None = None,
        previous_id: str | None = None,
    ) -> str:
        """Append an ActivityEventV2 (and its NTA twin for non-trade types); returns the ``ref_id``."""
        ref_id = str(uuid.uuid4())
        payload: dict[str, Any] = {
            "account_id": account.id,
            "at": iso(at),
            "activity_type": activity_type,
            "activity_subtype": None,
            "executed_at": iso(at),
            "status": status,
            "settle_date": settle_date.isoformat(),
            "currency": "USD",
            "ref_id": ref_id,
            "previous_id": previous_id,
            "net_amount": wire(net_amount),
            "qty": wire(qty) if qty is not None else None,
            "price": wire(price) if price is not None else None,
            "symbol": symbol,
            "description": description,
            "details": {"system_date": system_date.isoformat(), **details},
        }
        self.logs[StreamName.ACTIVITIES].append(at, account.id, payload, "event_id")
        if activity_type in NON_TRADE_TYPES:
            self._nta_seq += 1
            nta: dict[str, Any] = {
                "account_id": account.id,
                "at": iso(at),
                "id": ref_id,
                "event_id": self._nta_seq,
                "system_date": system_date.isoformat(),
                "settle_date": settle_date.isoformat(),
                "net_amount": net_amount,
                "qty": qty if qty is not None else Decimal(0),
                "per_share_amount": None,
                "entry_type": activity_type,
                "symbol": symbol or "",
                "description": description,
                "status": status,
                "group_id": None,
            }
            self.logs[StreamName.NTA].append(at, account.id, nta, "event_ulid")
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
