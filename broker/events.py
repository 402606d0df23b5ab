"""What each event on Alpaca's streams names (docs/broker-api.md "Events are hints").

An event is a hint, never the truth: the only thing taken from it is the id of the transfer to read over
REST (or, on the journal stream, the journal, its status and the key it was created under). Everything that
does not parse, names an unknown type or status, carries a non-decimal amount or an id of the wrong shape
becomes a :class:`~funding.records.DeadLetter` and causes no action (:func:`parse`); what is merely looser than
Alpaca's document (a null, a missing ``status_from``, details of another shape) is read and tagged
(:func:`oddities`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from funding import ids
from funding.errors import MalformedDataError
from funding.models import ActivityEvent, JournalStatusEvent, NTAEvent
from funding.money import is_plain_amount, loads_exact, parse_money
from funding.records import DeadLetter


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
JOURNAL_ENTRY_TYPES = frozenset({"JNLC", "JNLS"})
"""Journal entry types Alpaca documents (``JournalEntryType``); a journal event of another is dead-lettered: its
type labels the events metric, which must not grow a series per value a payload makes up."""
IF_TYPES = frozenset({"MEM", "CSD", "INT"})
"""Activity types that can name an instant-funding transfer (memopost, settlement deposit, late interest)."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)", re.ASCII)
"""The date-times the fast path reads itself; ``datetime.fromisoformat`` also takes ISO forms the model refuses
(``20261123T150001Z``, ``2026-W48-1T15:00Z``), which go the model's way."""
_TRANSFER_IN_TEXT = re.compile(r"transfer_id: ([0-9a-fA-F-]{36})")
"""A transfer id named in an activity's description (checked as a UUID like any other)."""


@dataclass(slots=True)
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
    """Reduce one ``data:`` payload; malformed input yields a Parsed carrying a dead letter.

    The hot path: a trade or any other activity that cannot name a transfer, decoded by ``orjson`` and checked
    field by field (:func:`_plain_activity`). Everything else (IF types, journals, NTA, anything unusual, and
    whatever ``orjson`` refuses or reads as a float) is decoded again exactly (numbers as ``Decimal``) and
    read by the models, which stay the source of truth.
    """
    if stream is Stream.ACTIVITIES:
        try:
            quick = orjson.loads(data)
        except orjson.JSONDecodeError:
            quick = None
        if type(quick) is dict and (event_id := quick.get("event_id")).__class__ is str and ids.is_ulid(event_id):
            fast = _plain_activity(quick)
            if fast is not None:
                plain = _plain(stream, event_id, fast, data)
                plain.oddities = oddities(stream, quick)
                return plain
    return _exact(stream, data)


def _exact(stream: Stream, data: str) -> Parsed:
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
            if journal.entry_type not in JOURNAL_ENTRY_TYPES:
                return _dead(stream, event_id, "unknown_type", f"journal entry type {journal.entry_type[:40]!r}", data)
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
        elif (fast := _plain_activity(payload)) is not None:  # exact numbers the quick decode read as floats
            return _plain(stream, event_id, fast, data)
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


def _plain(stream: Stream, event_id: str, fast: tuple[str, str, datetime], data: str) -> Parsed:
    """A well-formed activity that cannot name a transfer: its kind, or the dead letter of an unknown one."""
    kind, status, at = fast
    return _classified(stream, event_id, kind, status, at, data) or Parsed(event_id, kind, at=at)


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
    if kind in IF_TYPES or not _is_uuid(account) or not isinstance(payload.get("details", {}), dict):
        return None
    description = payload.get("description")
    if not (description is None or isinstance(description, str)) or _RFC3339.fullmatch(at) is None:
        return None
    amount = payload.get("net_amount")
    if amount is not None and not is_plain_amount(amount):
        try:  # any other spelling the model may take (an int, an exponent, a Decimal): the full check
            parse_money(amount)
        except MalformedDataError:
            return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    return (kind, status, moment) if moment.tzinfo is not None else None


@functools.lru_cache(maxsize=2**16)
def _is_uuid(value: str) -> bool:
    """Whether an account id is a UUID (remembered: a stream names the same accounts over and over)."""
    return _UUID.fullmatch(value) is not None


def _dead(stream: Stream, event_id: str, reason: str, detail: str, raw: str) -> Parsed:
    return Parsed(event_id, "invalid", dead=DeadLetter(stream.value, reason, detail, raw))
