"""Fuzz broker/events.py ``parse``: every stream's payloads, real-looking, from the document, mutated, or garbage.

Properties: ``parse`` never raises; what it reads has a ULID, an aware ``at``, a kind from a bounded vocabulary and
ids of their shape; what it cannot read is a dead letter the store can write; a payload known to be bad (a bad
value in a field that matters, a required field gone, not an object, not JSON) is never read as valid; a payload
as Alpaca sends it is always read, and names its transfer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import events
from broker.events import (
    IF_TYPES,
    JOURNAL_ENTRY_TYPES,
    KNOWN_ACTIVITY_STATUSES,
    KNOWN_ACTIVITY_TYPES,
    Parsed,
    Stream,
    parse,
)
from funding import ids
from funding.models import JournalStatus
from tests.fuzz import openapi
from tests.fuzz.mutate import is_bad, mutate
from tests.fuzz.wild import (
    BAD_DATES,
    BAD_IDS,
    BAD_INSTANTS,
    BAD_ULIDS,
    RAW_NUMBERS,
    UNKNOWN_WORDS,
    Raw,
    bad_money,
    days,
    encode,
    instants,
    money,
    not_text,
    ulids,
    uuids,
)

KINDS = KNOWN_ACTIVITY_TYPES | JOURNAL_ENTRY_TYPES | {"invalid"}
"""What ``Parsed.kind`` may be: it labels a metric, so never a value of Alpaca's choosing outside the documented."""
REASONS = {
    "not_json",
    "not_object",
    "missing_id",
    "invalid_id",
    "invalid",
    "missing_field",
    "unknown_type",
    "unknown_status",
}
ODDITIES = {"status_from_missing", "null_description", "null_symbol", "undocumented_details"}
NTA_TYPES = ("MEM", "CSD", "JNLC", "INT", "FEE", "CSW", "DIV")
"""The activity types the sandbox's NTA stream carries."""
PATHS = {Stream.ACTIVITIES: "/v2beta1/events/activities", Stream.JOURNALS: "/v2/events/journals/status"}
PATHS[Stream.NTA] = "/v1/events/nta"
REQUIRED = {
    Stream.ACTIVITIES: frozenset({"event_id", "account_id", "at", "activity_type", "status"}),
    Stream.JOURNALS: frozenset({"event_id", "at", "entry_type", "journal_id", "status_to"}),
    Stream.NTA: frozenset({"event_ulid", "account_id", "at", "entry_type", "net_amount", "system_date"}),
}
"""The fields without which an event of the stream cannot be read."""


def one_of(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


UNKNOWN = one_of(*UNKNOWN_WORDS) | not_text()
BAD_INSTANT = one_of(*BAD_INSTANTS, None, [], {})
"""(Numbers are left out: a JSON number is a unix time to pydantic, as good as a date-time.)"""
BAD_ID = one_of(*BAD_IDS) | not_text()
BAD_EVENT_ID = one_of(*BAD_ULIDS, *BAD_IDS) | not_text()
BAD = {
    Stream.ACTIVITIES: {
        "event_id": BAD_EVENT_ID,
        "account_id": BAD_ID,
        "at": BAD_INSTANT,
        "activity_type": UNKNOWN,
        "status": UNKNOWN,
        "net_amount": bad_money(),
    },
    Stream.JOURNALS: {
        "event_id": BAD_EVENT_ID,
        "at": BAD_INSTANT,
        "entry_type": UNKNOWN,
        "journal_id": BAD_ID,
        "status_to": UNKNOWN,
    },
    Stream.NTA: {
        "event_ulid": BAD_EVENT_ID,
        "account_id": BAD_ID,
        "at": BAD_INSTANT,
        "entry_type": UNKNOWN,
        "net_amount": bad_money(),
        "system_date": one_of(*BAD_DATES, None, [], "x"),
        "status": one_of(*UNKNOWN_WORDS, 5, []),
    },
}
"""Per stream, values known to be wrong for a field that matters (each must make a dead letter)."""


@st.composite
def activity(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """An ActivityEventV2 as the sandbox emits it, and the transfer it names (IF types only)."""
    kind = draw(one_of(*sorted(IF_TYPES)) | one_of(*sorted(KNOWN_ACTIVITY_TYPES)))
    transfer = draw(uuids()) if kind in IF_TYPES else None
    in_details, in_text = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    details: dict[str, Any] = {"system_date": draw(days()).isoformat()}
    if transfer and in_details:
        details["transfer_id"] = transfer
    text = f"type: instant_funding_memopost, transfer_id: {transfer}" if transfer and in_text else "ok"
    if kind in ("CSD", "INT") and draw(st.booleans()):  # a wire deposit or interest that names no transfer
        transfer, details, text = None, {"system_date": details["system_date"]}, "wire"
    payload = {
        "event_id": draw(ulids()),
        "account_id": draw(uuids()),
        "at": draw(instants()),
        "activity_type": kind,
        "activity_subtype": None,
        "status": draw(one_of(*sorted(KNOWN_ACTIVITY_STATUSES))),
        "settle_date": draw(days()).isoformat(),
        "currency": "USD",
        "net_amount": draw(money()),
        "qty": draw(st.none() | money()),
        "symbol": draw(st.none() | st.just("AAPL")),
        "description": text,
        "details": details,
    }
    return payload, transfer


@st.composite
def nta(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A v1 NonTradeActivityEvent (``net_amount`` a JSON number); a MEM names its transfer in the description."""
    kind = draw(one_of(*NTA_TYPES))
    transfer = draw(uuids()) if kind == "MEM" else None
    payload: dict[str, Any] = {
        "event_ulid": draw(ulids()),
        "account_id": draw(uuids()),
        "at": draw(instants()),
        "entry_type": kind,
        "net_amount": Decimal(draw(money())),
        "description": f"type: instant_funding_memopost, transfer_id: {transfer}" if transfer else draw(st.none()),
        "system_date": draw(days()).isoformat(),
        "symbol": "",
        "qty": Decimal(0),
    }
    if draw(st.booleans()):
        payload["status"] = draw(one_of(*sorted(KNOWN_ACTIVITY_STATUSES)))
    return payload, transfer


@st.composite
def journal(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A JournalStatusEventV2 (a first event may carry an empty or null ``status_from``)."""
    statuses = [status.value for status in JournalStatus]
    payload: dict[str, Any] = {
        "event_id": draw(ulids()),
        "at": draw(instants()),
        "entry_type": draw(one_of(*sorted(JOURNAL_ENTRY_TYPES))),
        "journal_id": draw(uuids()),
        "status_from": draw(one_of(*statuses, "", None)),
        "status_to": draw(one_of(*statuses)),
        "description": "Journal of cash between accounts",
        "idempotency_key": draw(st.none() | uuids()),
        "idempotency_key_type": "single",
    }
    return payload, None


@dataclass(frozen=True)
class Case:
    """One data line; ``known_bad``: it must be dead-lettered; ``pristine``: as the sandbox sends it, it must be read
    and name ``transfer``."""

    data: str
    known_bad: bool = False
    pristine: bool = False
    transfer: str | None = None


REAL = {Stream.ACTIVITIES: activity(), Stream.JOURNALS: journal(), Stream.NTA: nta()}


@st.composite
def events_of(draw: st.DrawFn, stream: Stream) -> Case:
    """A real-looking event mutated or not, one the document allows, or garbage text."""
    source = draw(st.sampled_from(["real", "real", "real", "document", "garbage"]))
    if source == "garbage":
        text = draw(
            st.text(max_size=60)
            | st.binary(max_size=60).map(lambda b: b.decode("utf-8", "replace"))  # as the stream decodes bytes
            | one_of(*(raw.text for raw in RAW_NUMBERS), "", "{", "[]", '"x"', "null", "{}" * 3)
        )
        return Case(text, known_bad=True)
    if source == "document":
        return Case(encode(draw(openapi.answers("GET", PATHS[stream]))))
    payload, transfer = draw(REAL[stream])
    changed, mutations = mutate(draw, payload, bad=BAD[stream], required=REQUIRED[stream])
    text = encode(changed)
    if draw(st.integers(0, 9)) == 0:  # cut, as an event torn by a broken line would be
        return Case(text[: draw(st.integers(0, max(len(text) - 1, 0)))], known_bad=True)
    return Case(text, known_bad=is_bad(mutations, changed, REQUIRED[stream]), pristine=not mutations, transfer=transfer)


def check_dead(stream: Stream, data: str, parsed: Parsed) -> None:
    """A dead letter: reason known, the raw data kept, writable as the store and the logs write it."""
    dead = parsed.dead
    assert dead is not None
    assert parsed.kind == "invalid"
    assert dead.reason in REASONS
    assert (dead.stream, dead.raw) == (stream.value, data)
    assert dead.detail
    dead.detail.encode()  # logged; a lone surrogate would not encode
    assert json.loads(dead.to_json())["reason"] == dead.reason
    assert len(dead.identity) == 32
    assert parsed.journal is None
    assert parsed.transfer_id is None or dead.reason == "unknown_status"


def check(stream: Stream, data: str, parsed: Parsed) -> None:
    """What every Parsed must be, dead or not."""
    assert isinstance(parsed, Parsed)
    if parsed.dead is not None:
        check_dead(stream, data, parsed)
    else:
        assert ids.is_ulid(parsed.event_id)
        assert parsed.kind in KINDS
    assert parsed.event_id == "" or ids.is_ulid(parsed.event_id)
    assert parsed.at is None or parsed.at.utcoffset() is not None, f"naive at {parsed.at}"
    assert parsed.transfer_id is None or parsed.transfer_id == ids.uuid(parsed.transfer_id, "transfer_id")
    if parsed.journal is not None:
        journal_id, status, key = parsed.journal
        assert journal_id == ids.uuid(journal_id, "journal_id")
        assert JournalStatus(status).known
        assert key == "" or ids.is_uuid(key)
    if parsed.system_date is not None:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", parsed.system_date)
        date.fromisoformat(parsed.system_date)
    assert set(parsed.oddities) <= ODDITIES


def run(stream: Stream, case: Case) -> Parsed:
    parsed = parse(stream, case.data)
    check(stream, case.data, parsed)
    if case.known_bad:
        assert parsed.dead is not None, f"a bad event was read as valid: {parsed}"
    if case.pristine:  # an event as the sandbox sends it: read, naming its transfer
        assert (parsed.dead, parsed.transfer_id) == (None, case.transfer)
    return parsed


@given(events_of(Stream.ACTIVITIES))
def test_activities_events_parse_to_a_hint_or_a_dead_letter(case: Case) -> None:
    """Any activities payload yields a well-formed hint or a dead letter, and a bad one always a dead letter; the
    quick decode (orjson) reads it exactly as the exact one does, and the fast path as the model."""
    parsed = run(Stream.ACTIVITIES, case)
    assert parsed == events._exact(Stream.ACTIVITIES, case.data), "the quick decode and the exact one disagree"
    with patch.object(events, "_plain_activity", lambda payload: None):  # the model's path, never the fast one
        slow = parse(Stream.ACTIVITIES, case.data)
    assert (slow.dead is None, slow.kind, slow.at, slow.transfer_id) == (
        parsed.dead is None,
        parsed.kind,
        parsed.at,
        parsed.transfer_id,
    ), "the fast path for plain activities and the model disagree"


@given(events_of(Stream.JOURNALS))
def test_journal_events_parse_to_a_status_or_a_dead_letter(case: Case) -> None:
    """Any journal status payload yields (journal, known status, key) or a dead letter; a bad one a dead letter."""
    run(Stream.JOURNALS, case)


@given(events_of(Stream.NTA))
def test_nta_events_parse_to_a_hint_or_a_dead_letter(case: Case) -> None:
    """Any NTA payload yields a well-formed hint or a dead letter, and a bad one always a dead letter."""
    run(Stream.NTA, case)


@pytest.mark.parametrize("stream", list(Stream))
@pytest.mark.parametrize("raw", [r.text for r in RAW_NUMBERS])
def test_raw_number_tokens_anywhere_are_read_or_dead_lettered(stream: Stream, raw: str) -> None:
    """Each raw token (NaN, huge exponents, 5000 digits, deep nesting) as the amount of a real event: no exception."""
    payload = {"event_id": "01JCBX2Q9F8ZC3M7T4V5W6X7Y8", "event_ulid": "01JCBX2Q9F8ZC3M7T4V5W6X7Y8"}
    data = encode({**payload, "net_amount": Raw(raw)})
    check(stream, data, parse(stream, data))


# ---------------------------------------------------------------------- defects the targets found, pinned

ZERO_ULID = "00000000000000000000000000"
ACCOUNT = "f728b4fa-4248-5e3a-0a5d-2f346baa9455"
TRANSFER = "e3e70682-c209-4cac-629f-6fbed82c07cd"
CSD = (
    f'{{"event_id":"{ZERO_ULID}","account_id":"{ACCOUNT}","at":"%s","activity_type":"CSD","status":"canceled",'
    f'"net_amount":%s,"description":"ok","details":{{"system_date":"2000-01-01","transfer_id":"{TRANSFER}"}}}}'
)
"""The CSD activity of the falsifying examples, with its ``at`` and its (JSON) ``net_amount`` left open."""


def dead_reason(stream: Stream, data: str) -> str:
    parsed = parse(stream, data)
    check(stream, data, parsed)
    assert parsed.dead is not None, parsed
    return parsed.dead.reason


@pytest.mark.parametrize("stream", list(Stream))
def test_regression_a_number_past_decimals_range_is_dead_lettered_not_raised(stream: Stream) -> None:
    """``10E999999999999999999`` made loads_exact raise decimal.InvalidOperation out of parse; now: not_json."""
    assert dead_reason(stream, "10E999999999999999999") == "not_json"
    assert dead_reason(stream, CSD % ("2000-01-01T00:00:00Z", "-1E+9999999999999999999")) == "not_json"


def test_regression_a_naive_at_is_dead_lettered() -> None:
    """A CSD with ``"at": "2026-11-23T15:00:01"`` (no offset) was read, and its naive ``at`` would raise TypeError
    against the aware clock in the lag metric; now every event model wants an offset."""
    assert dead_reason(Stream.ACTIVITIES, CSD % ("2026-11-23T15:00:01", '"0.00"')) == "invalid"
    journal = f'{{"event_id":"{ZERO_ULID}","at":"2026-11-23T15:00:01","entry_type":"JNLC","journal_id":"{TRANSFER}"'
    assert dead_reason(Stream.JOURNALS, journal + ',"status_to":"queued"}') == "invalid"


@pytest.mark.parametrize("amount", ['"1E+30"', "-1E+999999999999999999", '"-1E+400"', "1" + "0" * 20])
def test_regression_an_amount_past_cents_range_is_dead_lettered(amount: str) -> None:
    """``"net_amount": "1E+30"`` was read as a finite Decimal that wire() cannot write in cents (quantize raises
    InvalidOperation); parse_money now refuses amounts of 1E+20 and more."""
    assert dead_reason(Stream.ACTIVITIES, CSD % ("2000-01-01T00:00:00Z", amount)) == "invalid"
    nta = (
        f'{{"event_ulid":"{ZERO_ULID}","account_id":"{ACCOUNT}","at":"2000-01-01T00:00:00Z","entry_type":"MEM",'
        f'"net_amount":{amount},"description":"transfer_id: {TRANSFER}","system_date":"2000-01-01"}}'
    )
    assert dead_reason(Stream.NTA, nta) == "invalid"


@pytest.mark.parametrize(
    ("at", "description"),
    [("2000-01-01T00:00:00Z", "[]"), ("2026-W48-1T15:00:00Z", '"ok"'), ("20261123T150001Z", "null")],
)
def test_regression_the_fast_path_refuses_what_the_model_refuses(at: str, description: str) -> None:
    """An ACATC with ``"description": []``, or an ``at`` in an ISO form outside RFC 3339, passed the fast path for
    plain activities though ActivityEvent refuses it; now both dead-letter it."""
    data = (
        f'{{"event_id":"{ZERO_ULID}","account_id":"{ACCOUNT}","at":"{at}","activity_type":"ACATC",'
        f'"status":"canceled","net_amount":"0.00","description":{description},"details":{{}}}}'
    )
    assert dead_reason(Stream.ACTIVITIES, data) == "invalid"


def test_regression_an_unknown_journal_entry_type_is_dead_lettered() -> None:
    """A journal event of ``"entry_type": "SETTLED"`` was read, its made-up type becoming a label of the events
    metric; now an entry type outside JNLC/JNLS is dead-lettered as unknown_type, like an activity type."""
    data = (
        f'{{"event_id":"{ZERO_ULID}","at":"2000-01-01T00:00:00Z","entry_type":"SETTLED","journal_id":"{TRANSFER}",'
        '"status_from":"queued","status_to":"queued","idempotency_key":null}'
    )
    assert dead_reason(Stream.JOURNALS, data) == "unknown_type"
