"""Rows of a transfer listing read without pydantic's validation where they have the usual shape.

A settle run reads every transfer due on its deadline, a million on a large partner's day, and validating each
row through :class:`~funding.models.InstantFunding` costs more than the HTTP it came in. A row whose fields are
exactly the document's, each of the plain form Alpaca writes (a UUID, account numbers, decimal strings, ISO
dates, an RFC 3339 instant with its offset, a known status, no interest or fee entries), is checked here field
by field and built from the checked values (``model_construct``); any other row goes through the model, which
stays the judge of everything unusual. ``tests/fuzz/test_client_answers.py`` holds both to the same answer.
"""

from __future__ import annotations

import functools
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from funding import ids
from funding.dues import Listed
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


class _Checked(NamedTuple):
    transfer_id: str
    account_no: str
    source_account_no: str
    status: IFStatus
    system_date: date
    deadline: date
    created_at: datetime
    amount: Decimal
    remaining_payable: Decimal
    total_interest: Decimal


@functools.lru_cache(maxsize=4096)
def _day(text: str) -> date:
    """An ISO date of a row (a listing names a few): MalformedDataError if it is not one."""
    return shared_day(ids.iso_date(text, "date"))


def _checked(row: Any) -> _Checked | None:
    """The values of ``row`` when it has the plain shape above, each checked; None when the model must read it."""
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
        system_date, deadline = _day(days[0]), _day(days[1])
        created_at = datetime.fromisoformat(created)
    except (MalformedDataError, ValueError):  # not a calendar date or time (2026-02-30)
        return None
    amount, remaining, interest = map(amount_of_text, amounts)
    return _Checked(
        transfer_id.lower(),
        sys.intern(account_no),
        sys.intern(source),
        _STATUSES[status],
        system_date,
        deadline,
        created_at,
        amount,
        remaining,
        interest,
    )


def plain_transfer(row: Any) -> InstantFunding | None:
    """``row`` as the model it is, when it has the plain shape above; None when the model must read it."""
    checked = _checked(row)
    if checked is None:
        return None
    return InstantFunding.model_construct(
        {"interests", "fees"} & row.keys() | FIELDS - {"interests", "fees"},
        id=UUID(checked.transfer_id),
        account_no=checked.account_no,
        source_account_no=checked.source_account_no,
        amount=checked.amount,
        status=checked.status,
        system_date=checked.system_date,
        deadline=checked.deadline,
        created_at=checked.created_at,
        remaining_payable=checked.remaining_payable,
        total_interest=checked.total_interest,
        interests=[],
        fees=[],
    )


def plain_listed(row: Any) -> Listed | None:
    """``row`` as a settle run keeps it (:class:`~funding.dues.Listed`), when it has the plain shape above: the
    same checks as :func:`plain_transfer`, without building the model. None when the model must read it."""
    checked = _checked(row)
    if checked is None:
        return None
    return Listed(
        checked.transfer_id,
        checked.account_no,
        checked.source_account_no,
        checked.amount,
        checked.remaining_payable,
        checked.total_interest,
        checked.created_at,
    )
