"""Rows of a transfer listing read without pydantic's validation where they have the usual shape.

A settle run reads every transfer due on its deadline, a million on a large partner's day, and validating each
row through :class:`~funding.models.InstantFunding` costs more than the HTTP it came in. A row whose fields are
exactly the document's, each of the plain form Alpaca writes (a UUID, account numbers, decimal strings, ISO
dates, an RFC 3339 instant with its offset, a known status, no interest or fee entries), is checked here field
by field and built from the checked values (``model_construct``); any other row goes through the model, which
stays the judge of everything unusual. ``tests/fuzz/test_client_answers.py`` holds both to the same answer.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Any
from uuid import UUID

from funding import ids
from funding.errors import MalformedDataError
from funding.models import IFStatus, InstantFunding, amount_of_text, shared_day
from funding.money import is_plain_amount

FIELDS = frozenset(
    {
        "id",
        "account_no",
        "source_account_no",
        "amount",
        "status",
        "system_date",
        "deadline",
        "created_at",
        "remaining_payable",
        "total_interest",
        "interests",
        "fees",
    }
)
_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", re.ASCII)
"""RFC 3339 with its offset, which ``datetime.fromisoformat`` and pydantic read alike."""
_STATUSES = {status.value: status for status in IFStatus}


def plain_transfer(row: Any) -> InstantFunding | None:
    """``row`` as the model it is, when it has the plain shape above; None when the model must read it."""
    if type(row) is not dict or not row.keys() <= FIELDS or len(row.keys() - {"interests", "fees"}) != 10:
        return None
    if row.get("interests", []) != [] or row.get("fees", []) != []:
        return None
    texts = [row[name] for name in ("id", "account_no", "source_account_no", "status", "created_at")]
    amounts = [row[name] for name in ("amount", "remaining_payable", "total_interest")]
    days = [row["system_date"], row["deadline"]]
    if not all(type(value) is str for value in (*texts, *amounts, *days)):
        return None
    transfer_id, account_no, source, status, created = texts
    if not (ids.is_uuid(transfer_id) and ids.is_account_number(account_no) and ids.is_account_number(source)):
        return None
    if status not in _STATUSES or not _INSTANT.fullmatch(created) or not all(map(is_plain_amount, amounts)):
        return None
    try:
        system_date, deadline = (shared_day(ids.iso_date(day, "date")) for day in days)
        created_at = datetime.fromisoformat(created)
    except (MalformedDataError, ValueError):  # not a calendar date or time (2026-02-30)
        return None
    return InstantFunding.model_construct(
        {"interests", "fees"} & row.keys() | FIELDS - {"interests", "fees"},
        id=UUID(transfer_id),
        account_no=sys.intern(account_no),
        source_account_no=sys.intern(source),
        amount=amount_of_text(amounts[0]),
        status=_STATUSES[status],
        system_date=system_date,
        deadline=deadline,
        created_at=created_at,
        remaining_payable=amount_of_text(amounts[1]),
        total_interest=amount_of_text(amounts[2]),
        interests=[],
        fees=[],
    )
