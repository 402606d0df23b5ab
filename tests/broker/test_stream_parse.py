"""Stream events reduced to hints, journal statuses or dead letters (broker/stream.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from broker.events import Stream, parse
from funding.models import NTAEvent
from funding.money import dumps_decimal_numbers, loads_exact

TRANSFER_ID = "fcc6d9fc-ce36-484a-bd86-a27b98c2d1ab"
ACCOUNT_ID = "8e00606a-0000-4000-8000-000000000009"
JOURNAL_ID = "2f144d2a-0000-4000-8000-00000000000c"
AT = "2026-11-23T15:00:01.5Z"
AT_PARSED = datetime(2026, 11, 23, 15, 0, 1, 500000, tzinfo=UTC)


def activity(**fields: Any) -> dict[str, Any]:
    """An ActivityEventV2 payload (a MEM memopost naming TRANSFER_ID unless overridden)."""
    payload: dict[str, Any] = {
        "event_id": "01JCBX2Q9F8ZC3M7T4V5W6X7Y8",
        "account_id": ACCOUNT_ID,
        "at": AT,
        "activity_type": "MEM",
        "status": "executed",
        "net_amount": "20.00",
        "description": "type: instant_funding_memopost",
        "details": {"system_date": "2026-11-23", "transfer_id": TRANSFER_ID},
    }
    payload.update(fields)
    return payload


def nta(**fields: Any) -> dict[str, Any]:
    """A v1 NonTradeActivityEvent payload (``net_amount`` a JSON number, transfer named in the description)."""
    payload: dict[str, Any] = {
        "event_ulid": "01JDMH7BKCCB4XY5F11HN63NZX",
        "account_id": ACCOUNT_ID,
        "at": AT,
        "entry_type": "MEM",
        "net_amount": Decimal("20.00"),
        "description": f"type: instant_funding_memopost, transfer_id: {TRANSFER_ID}",
        "system_date": "2026-11-23",
        "status": "executed",
    }
    payload.update(fields)
    return payload


def journal(**fields: Any) -> dict[str, Any]:
    """A JournalStatusEventV2 payload."""
    payload: dict[str, Any] = {
        "event_id": "01F535Y1FVY8WZHE763HCNS8SZ",
        "at": AT,
        "entry_type": "JNLC",
        "journal_id": JOURNAL_ID,
        "status_from": "queued",
        "status_to": "executed",
    }
    payload.update(fields)
    return payload


def without(payload: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != field}


def data(payload: Any) -> str:
    return dumps_decimal_numbers(payload)


@pytest.mark.parametrize(
    ("stream", "payload", "kind", "transfer_id"),
    [
        pytest.param(Stream.ACTIVITIES, activity(), "MEM", TRANSFER_ID, id="mem-details"),
        pytest.param(Stream.ACTIVITIES, activity(activity_type="CSD"), "CSD", TRANSFER_ID, id="csd-details"),
        pytest.param(Stream.ACTIVITIES, activity(activity_type="INT"), "INT", TRANSFER_ID, id="int-details"),
        pytest.param(
            Stream.ACTIVITIES,
            activity(details={}, description=f"type: instant_funding_memopost, transfer_id: {TRANSFER_ID}"),
            "MEM",
            TRANSFER_ID,
            id="mem-description",
        ),
        pytest.param(Stream.ACTIVITIES, activity(activity_type="CSD", details={}), "CSD", None, id="csd-wire"),
        pytest.param(Stream.ACTIVITIES, activity(activity_type="TRD"), "TRD", None, id="trd"),
        pytest.param(Stream.ACTIVITIES, activity(activity_type="JNLC", status="canceled"), "JNLC", None, id="jnlc"),
        pytest.param(Stream.NTA, nta(), "MEM", TRANSFER_ID, id="nta-mem-description"),
        pytest.param(Stream.NTA, without(nta(), "status"), "MEM", TRANSFER_ID, id="nta-no-status"),
        pytest.param(Stream.NTA, nta(entry_type="JNLC", description=""), "JNLC", None, id="nta-jnlc"),
    ],
)
def test_valid_events_name_their_transfer(
    stream: Stream, payload: dict[str, Any], kind: str, transfer_id: str | None
) -> None:
    """A valid event yields its id, its type and, for IF types, the transfer it names; never a dead letter."""
    parsed = parse(stream, data(payload))
    assert parsed.dead is None
    id_field = "event_ulid" if stream is Stream.NTA else "event_id"
    assert (parsed.event_id, parsed.kind, parsed.transfer_id) == (payload[id_field], kind, transfer_id)
    assert parsed.journal is None
    assert parsed.at == AT_PARSED


def test_transfer_id_from_details_wins_over_description() -> None:
    """When details and description both name a transfer, details.transfer_id is the hint."""
    other = "0b2c4d6e-0000-4000-8000-0000000000ff"
    parsed = parse(Stream.ACTIVITIES, data(activity(description=f"transfer_id: {other}")))
    assert parsed.transfer_id == TRANSFER_ID


@pytest.mark.parametrize("status", ["queued", "pending", "executed", "rejected", "canceled"])
def test_journal_status_event_yields_journal_and_status(status: str) -> None:
    """A journal status event yields (journal id, new status, no key) and no transfer hint."""
    payload = journal(status_to=status)
    parsed = parse(Stream.JOURNALS, data(payload))
    assert parsed.dead is None
    assert (parsed.event_id, parsed.kind) == (payload["event_id"], payload["entry_type"])
    assert parsed.journal == (JOURNAL_ID, status, "")
    assert parsed.transfer_id is None
    assert parsed.at == AT_PARSED


@pytest.mark.parametrize(
    ("key", "kept"),
    [("5f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "5f0c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"), ("../../x", ""), (None, "")],
)
def test_journal_event_carries_its_idempotency_key_when_it_is_a_uuid(key: str | None, kept: str) -> None:
    """The event's idempotency key (how it finds its intent) is kept only when it is a UUID; the rest stands."""
    parsed = parse(Stream.JOURNALS, data(journal(idempotency_key=key)))
    assert (parsed.dead, parsed.journal) == (None, (JOURNAL_ID, "executed", kept))


@pytest.mark.parametrize("status_from", [None, "", "missing"])
def test_journal_event_without_a_previous_status_is_read(status_from: str | None) -> None:
    """status_from as null, "" or missing (a journal's first event): the event is read as any other."""
    payload = journal(status_from=status_from)
    parsed = parse(Stream.JOURNALS, data(without(payload, "status_from") if status_from == "missing" else payload))
    assert (parsed.dead, parsed.journal) == (None, (JOURNAL_ID, "executed", ""))


def test_nta_net_amount_number_is_parsed_exactly() -> None:
    """NTA's net_amount JSON number is accepted and read as the exact Decimal, digits no float can hold."""
    amount = Decimal("12345678901234567.89")
    raw = data(nta(net_amount=amount))
    assert '"net_amount":12345678901234567.89' in raw
    assert parse(Stream.NTA, raw).dead is None
    assert NTAEvent.model_validate(loads_exact(raw)).net_amount == amount
    assert Decimal(float(amount)) != amount  # the float route would have lost cents


@pytest.mark.parametrize(
    ("stream", "raw"),
    [
        pytest.param(Stream.ACTIVITIES, data(activity(status="SETTLED")), id="activities"),
        pytest.param(Stream.NTA, data(nta(status="SETTLED")), id="nta"),
    ],
)
def test_an_undocumented_status_on_a_transfer_event_is_dead_lettered_and_still_names_the_transfer(
    stream: Stream, raw: str
) -> None:
    """A SETTLED status (seen, not documented) is dead-lettered for the record, and its transfer is still read
    over REST, whose status decides (the event itself decides nothing)."""
    parsed = parse(stream, raw)
    assert parsed.dead is not None
    assert (parsed.dead.reason, parsed.transfer_id, parsed.kind) == ("unknown_status", TRANSFER_ID, "invalid")


@pytest.mark.parametrize(
    ("stream", "payload", "expected"),
    [
        pytest.param(Stream.JOURNALS, without(journal(), "status_from"), ("status_from_missing",), id="status-from"),
        pytest.param(
            Stream.NTA,
            nta(entry_type="JNLC", symbol=None, description=None),
            ("null_description", "null_symbol"),
            id="nulls",
        ),
        pytest.param(
            Stream.ACTIVITIES, activity(activity_type="CSD", details=["x"]), ("undocumented_details",), id="csd"
        ),
    ],
)
def test_looser_than_documented_input_is_read_and_tagged(
    stream: Stream, payload: dict[str, Any], expected: tuple[str, ...]
) -> None:
    """Nulls, a missing status_from and details of another shape are read (no dead letter) and tagged as oddities."""
    parsed = parse(stream, data(payload))
    assert (parsed.dead, parsed.oddities) == (None, expected)


@pytest.mark.parametrize(
    ("stream", "raw", "reason", "event_id"),
    [
        pytest.param(Stream.ACTIVITIES, "{not json", "not_json", "", id="not-json"),
        pytest.param(Stream.NTA, "", "not_json", "", id="empty"),
        pytest.param(Stream.ACTIVITIES, "[" * 100_000, "not_json", "", id="nested-too-deep"),
        pytest.param(Stream.ACTIVITIES, data([activity()]), "not_object", "", id="array"),
        pytest.param(Stream.JOURNALS, '"executed"', "not_object", "", id="string"),
        pytest.param(Stream.ACTIVITIES, data(without(activity(), "event_id")), "missing_id", "", id="no-event-id"),
        pytest.param(Stream.ACTIVITIES, data(activity(event_id="")), "missing_id", "", id="empty-event-id"),
        pytest.param(Stream.ACTIVITIES, data(activity(event_id=7)), "missing_id", "", id="numeric-event-id"),
        pytest.param(Stream.NTA, data(without(nta(), "event_ulid")), "missing_id", "", id="nta-no-ulid"),
        pytest.param(Stream.JOURNALS, data(without(journal(), "event_id")), "missing_id", "", id="journal-no-id"),
        pytest.param(Stream.ACTIVITIES, data(without(activity(), "at")), "invalid", "01J", id="no-at"),
        pytest.param(Stream.ACTIVITIES, data(activity(account_id="nope")), "invalid", "01J", id="bad-uuid"),
        pytest.param(Stream.NTA, data(without(nta(), "system_date")), "invalid", "01J", id="nta-no-date"),
        pytest.param(Stream.JOURNALS, data(without(journal(), "journal_id")), "invalid", "01F", id="no-journal"),
        pytest.param(Stream.ACTIVITIES, data(activity(activity_type="XFER")), "unknown_type", "01J", id="type"),
        pytest.param(Stream.NTA, data(nta(entry_type="XFER")), "unknown_type", "01J", id="nta-type"),
        pytest.param(
            Stream.ACTIVITIES, data(activity(activity_type="TRD", status="zz")), "unknown_status", "01J", id="st"
        ),
        pytest.param(
            Stream.JOURNALS, data(journal(status_to="teleported")), "unknown_status", "01F", id="journal-status"
        ),
        pytest.param(Stream.ACTIVITIES, data(activity(net_amount="12,50")), "invalid", "01J", id="comma-amount"),
        pytest.param(Stream.NTA, data(nta(net_amount="12,50")), "invalid", "01J", id="nta-comma-amount"),
        pytest.param(Stream.ACTIVITIES, data(activity(net_amount="1.2.3")), "invalid", "01J", id="dotted-amount"),
        pytest.param(Stream.ACTIVITIES, data(activity(net_amount="NaN")), "invalid", "01J", id="nan-amount"),
        pytest.param(Stream.NTA, data(nta(net_amount=True)), "invalid", "01J", id="bool-amount"),
        pytest.param(Stream.ACTIVITIES, data(activity(details={})), "missing_field", "01J", id="mem-no-transfer"),
        pytest.param(Stream.NTA, data(nta(description="memopost")), "missing_field", "01J", id="nta-mem-no-transfer"),
    ],
)
def test_bad_input_is_dead_lettered(stream: Stream, raw: str, reason: str, event_id: str) -> None:
    """Malformed or unknown input yields a dead letter with the reason, the stream and the raw data; no hint."""
    parsed = parse(stream, raw)
    assert parsed.dead is not None
    assert (parsed.dead.reason, parsed.dead.stream, parsed.dead.raw) == (reason, stream.value, raw)
    assert parsed.dead.detail
    assert parsed.kind == "invalid"
    assert parsed.event_id.startswith(event_id)
    assert bool(parsed.event_id) == bool(event_id)
    assert parsed.transfer_id is None
    assert parsed.journal is None


def test_dead_letter_detail_names_the_field() -> None:
    """A validation failure's detail names the offending field, so a person can find it in the raw event."""
    parsed = parse(Stream.ACTIVITIES, data(activity(net_amount="12,50")))
    assert parsed.dead is not None
    assert parsed.dead.detail.startswith("net_amount:")


def test_dead_letter_json_round_trips() -> None:
    """A dead letter serializes to the JSON object the store appends (stream, reason, detail, raw)."""
    parsed = parse(Stream.JOURNALS, "[]")
    assert parsed.dead is not None
    assert json.loads(parsed.dead.to_json()) == {
        "stream": "journals",
        "reason": "not_object",
        "detail": parsed.dead.detail,
        "raw": "[]",
    }
