"""What the listener records and hands on: dead letters, the actions a change causes, record outcomes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class DeadLetter:
    """An event (or a REST answer) that could not be understood: kept for a person, never acted on."""

    stream: str
    reason: str
    detail: str
    raw: str

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "reason": self.reason, "detail": self.detail, "raw": self.raw[:4000]})

    @property
    def identity(self) -> str:
        """Same stream, reason and payload: the same dead letter (a replayed event arrives byte for byte)."""
        return hashlib.sha256(f"{self.stream}\0{self.reason}\0{self.raw}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PlannedAction:
    """A job a transfer's change causes, as the rule (``jobs/registry.py`` :func:`actions_for`) decided it.

    The store appends it to the outbox atomically with the record, once per ``job_id``. A coalesced action
    (``pending_key`` set) is appended only while no other of its kind is pending, its ``job_id`` then
    numbered from ``seq_key`` (``replan-<deadline>-<n>``)."""

    kind: str
    job_id: str
    account_no: str
    deadline: str
    pending_key: str = ""
    seq_key: str = ""


@dataclass(frozen=True)
class Action:
    """An action in the outbox: ``stream_id`` is its outbox entry (the Redis time of the record)."""

    stream_id: str
    job_id: str
    kind: str
    account_no: str
    deadline: str


class RecordResult(StrEnum):
    RECORDED = "recorded"
    """A new status: recorded, indexed, its actions appended."""
    UPDATED = "updated"
    """The same status with new figures (interest booked): fields updated, no record, no action."""
    DUPLICATE = "duplicate"
    """Nothing new, or an older snapshot (a transfer never moves backwards)."""


@dataclass(frozen=True)
class RecordOutcome:
    """What a record did, and the status the store held before."""

    result: RecordResult
    previous_status: str
