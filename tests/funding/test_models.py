"""Wire models tolerate what Alpaca may add and refuse floats (funding/models.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from funding.errors import MalformedDataError
from funding.models import (
    ActivityEvent,
    IFStatus,
    InstantFunding,
    Interest,
    Journal,
    JournalStatus,
    JournalStatusEvent,
    NTAEvent,
    Settlement,
    SettlementStatus,
)
from funding.money import loads_exact


def transfer_body(**changes: Any) -> dict[str, Any]:
    """The IF guide's example transfer  with ``changes`` applied."""
    body: dict[str, Any] = {
        "account_no": "8100000001",
        "amount": "20",
        "created_at": "2024-11-11T08:20:10.726356556-05:00",
        "deadline": "2024-11-13",
        "fees": [],
        "id": "fcc6d9fc-ce36-484a-bd86-a27b98c2d1ab",
        "interests": [],
        "remaining_payable": "20",
        "source_account_no": "7536050SI",
        "status": "PENDING",
        "system_date": "2024-11-12",
        "total_interest": "0",
    }
    body.update(changes)
    return body


def nta_json(net_amount: str) -> str:
    """An NTA event  whose net_amount is the raw JSON number text given."""
    return (
        '{"account_id": "8e00606a-1111-4222-8333-444455556666", "at": "2024-11-26T15:25:17.803914Z",'
        ' "description": "", "entry_type": "JNLC", "event_ulid": "01JDMH7BKCCB4XY5F11HN63NZX",'
        f' "id": "afb78fa2-1111-4222-8333-444455556666", "net_amount": {net_amount}, "qty": 0,'
        ' "settle_date": "2024-11-26", "status": "executed", "symbol": "", "system_date": "2024-11-26"}'
    )


def test_example_transfer_parses_with_decimal_amounts() -> None:
    """The guide's example parses; amounts are exact Decimals and dates are dates."""
    transfer = InstantFunding.model_validate(transfer_body(amount="20.10"))
    assert transfer.amount == Decimal("20.10")
    assert isinstance(transfer.remaining_payable, Decimal)
    assert transfer.status is IFStatus.PENDING
    assert transfer.system_date.isoformat() == "2024-11-12"
    assert transfer.created_at.utcoffset() is not None


def test_unknown_fields_are_kept() -> None:
    """Fields Alpaca adds later survive parsing and are readable from model_extra."""
    transfer = InstantFunding.model_validate(transfer_body(funding_source="card", new_block={"x": 1}))
    assert transfer.model_extra == {"funding_source": "card", "new_block": {"x": 1}}
    assert transfer.model_dump()["funding_source"] == "card"


@pytest.mark.parametrize(
    ("model", "enum_field", "body"),
    [
        (InstantFunding, "status", transfer_body(status="REVERSED")),
        (
            Settlement,
            "status",
            {
                "id": "53d63f11-1111-4222-8333-444455556666",
                "status": "PARTIALLY_SETTLED",
                "total_amount": "100",
                "created_at": "2024-05-24T08:56:01.440771581-04:00",
                "updated_at": "2024-05-24T08:56:01.440771581-04:00",
            },
        ),
        (
            JournalStatusEvent,
            "status_to",
            {
                "at": "2021-05-07T10:28:23.163857Z",
                "entry_type": "JNLC",
                "event_id": "01F535Y1FVY8WZHE763HCNS8SZ",
                "journal_id": "2f144d2a-1111-4222-8333-444455556666",
                "status_from": "queued",
                "status_to": "held_for_review",
            },
        ),
    ],
)
def test_unknown_enum_value_is_kept_and_flagged(model: type[Any], enum_field: str, body: dict[str, Any]) -> None:
    """An unknown enum value parses, reports .known False, and keeps the raw value."""
    raw = body[enum_field]
    value = getattr(model.model_validate(body), enum_field)
    assert value.known is False
    assert value.value == raw
    assert value == raw
    assert str(value) == raw


def test_known_enum_values_are_known() -> None:
    """Documented values are real members with .known True and their status helpers."""
    assert IFStatus("COMPLETED").known
    assert IFStatus.COMPLETED.final
    assert not IFStatus.EXECUTED.final
    assert SettlementStatus.AWAITING_ADDITIONAL_FUNDS.in_progress
    assert not SettlementStatus.FAILED.in_progress
    assert JournalStatus("activity_created") is JournalStatus.ACTIVITY_CREATED
    assert not IFStatus("NEW_STATUS").final


@pytest.mark.parametrize("field", ["amount", "remaining_payable", "total_interest"])
def test_float_amount_is_refused(field: str) -> None:
    """An amount that arrives as a float (JSON parsed with json.loads) is refused, not rounded."""
    body = json.loads(json.dumps(transfer_body(**{field: 20.1})))
    with pytest.raises((ValidationError, MalformedDataError), match="float"):
        InstantFunding.model_validate(body)


def test_nta_number_through_plain_json_is_refused() -> None:
    """NTA net_amount 10.10 parsed by json.loads is a float and the model refuses it."""
    with pytest.raises((ValidationError, MalformedDataError), match="float"):
        NTAEvent.model_validate(json.loads(nta_json("10.10")))


@pytest.mark.parametrize("number", ["10", "10.10", "-0.07", "12345678901234567.89", "1e2"])
def test_nta_number_through_loads_exact_is_exact(number: str) -> None:
    """A JSON-number net_amount read with loads_exact becomes the exact Decimal."""
    event = NTAEvent.model_validate(loads_exact(nta_json(number)))
    assert event.net_amount == Decimal(number)
    assert str(event.net_amount) == str(Decimal(number))


def test_non_decimal_amount_string_is_refused() -> None:
    """An amount string that is not a decimal is refused."""
    with pytest.raises((ValidationError, MalformedDataError)):
        InstantFunding.model_validate(transfer_body(amount="twenty"))


def test_missing_required_field_is_a_validation_error() -> None:
    """A transfer without its id fails validation and names the field."""
    body = transfer_body()
    del body["id"]
    with pytest.raises(ValidationError, match="id"):
        InstantFunding.model_validate(body)


def test_journal_example_with_nulls_parses() -> None:
    """The journal example  with null price/qty/settle_date/system_date parses."""
    journal = Journal.model_validate(
        {
            "currency": "USD",
            "description": "",
            "entry_type": "JNLC",
            "from_account": "8f8c8cee-1111-4222-8333-444455556666",
            "id": "56f106e5-1111-4222-8333-444455556666",
            "net_amount": "1000",
            "price": None,
            "qty": None,
            "settle_date": None,
            "status": "pending",
            "symbol": None,
            "system_date": None,
            "to_account": "399f85f1-1111-4222-8333-444455556666",
        }
    )
    assert journal.status is JournalStatus.PENDING
    assert journal.net_amount == Decimal("1000")
    assert journal.settle_date is None
    assert journal.model_extra == {"price": None, "qty": None, "symbol": None}


def test_activity_event_keeps_details() -> None:
    """An ActivityEventV2 MEM keeps details.transfer_id and unknown top-level fields."""
    event = ActivityEvent.model_validate(
        {
            "event_id": "01JCBX0000000000000000000A",
            "account_id": "8e00606a-1111-4222-8333-444455556666",
            "at": "2024-11-11T13:20:10.726356Z",
            "activity_type": "MEM",
            "status": "executed",
            "net_amount": "0",
            "details": {"system_date": "2024-11-12", "transfer_id": "fcc6d9fc-ce36-484a-bd86-a27b98c2d1ab"},
            "swap_rate": "1",
        }
    )
    assert event.details["transfer_id"] == "fcc6d9fc-ce36-484a-bd86-a27b98c2d1ab"
    assert event.net_amount == Decimal("0")
    assert event.model_extra == {"swap_rate": "1"}


def test_models_are_frozen() -> None:
    """Parsed wire models cannot be mutated."""
    transfer = InstantFunding.model_validate(transfer_body())
    with pytest.raises(ValidationError):
        transfer.status = IFStatus.COMPLETED  # type: ignore[misc]


def test_transfers_share_equal_values_and_stay_independent() -> None:
    """Listed transfers share immutable values (amounts, dates, account numbers, field names) to save memory;
    each still reads as parsed, and a copy with changes leaves the original untouched."""
    first = InstantFunding.model_validate(transfer_body(amount="20.10", remaining_payable="20.10"))
    second = InstantFunding.model_validate(
        transfer_body(id="0b3e8c1e-1111-4222-8333-444455556666", amount="20.10", remaining_payable="20.10")
    )
    assert first.amount is second.amount is first.remaining_payable
    assert first.deadline is second.deadline
    assert first.model_fields_set is second.model_fields_set
    assert first.model_fields_set == set(transfer_body())
    changed = first.model_copy(update={"amount": Decimal("1.00"), "note": "x"})
    assert (changed.amount, first.amount) == (Decimal("1.00"), Decimal("20.10"))
    assert first.model_fields_set == second.model_fields_set == set(transfer_body())
    assert "note" in changed.model_fields_set
    assert Decimal("20.10").as_tuple() == first.amount.as_tuple()
    assert InstantFunding.model_validate(transfer_body(amount="20.1")).amount.as_tuple() == Decimal("20.1").as_tuple()


def test_go_zero_time_reads_as_not_yet() -> None:
    """An unreconciled interest's required reconciled_at (Go's zero time) parses as None; a real one is kept."""
    base = {"id": str(UUID(int=1)), "date": "2026-11-24", "amount": "0.10", "status": "EXECUTED"}
    unset = Interest.model_validate(
        {**base, "created_at": "2026-11-24T13:00:00Z", "reconciled_at": "0001-01-01T00:00:00Z"}
    )
    done = Interest.model_validate(
        {**base, "created_at": "2026-11-24T13:00:00Z", "reconciled_at": "2026-11-25T09:00:00Z"}
    )
    assert unset.reconciled_at is None
    assert done.reconciled_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
