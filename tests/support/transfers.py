"""Transfers as the Broker API returns them, made to order."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from funding.models import InstantFunding

TODAY = date(2026, 11, 23)
TOMORROW = date(2026, 11, 24)
ACCOUNT = "8100000001"


OBSERVED = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def make_transfer(
    status: str = "EXECUTED",
    *,
    deadline: date = TOMORROW,
    amount: str = "20.00",
    interest: str = "0",
    account_no: str = ACCOUNT,
    transfer_id: str | None = None,
) -> InstantFunding:
    """An IF transfer as the Broker API returns it; remaining payable = amount + interest."""
    remaining = Decimal(0) if status == "COMPLETED" else Decimal(amount) + Decimal(interest)
    return InstantFunding.model_validate(
        {
            "id": transfer_id or str(uuid.uuid4()),
            "account_no": account_no,
            "source_account_no": "7536050SI",
            "amount": amount,
            "status": status,
            "system_date": (deadline - timedelta(days=1)).isoformat(),
            "deadline": deadline.isoformat(),
            "created_at": "2026-11-23T09:00:00-05:00",
            "remaining_payable": str(remaining),
            "total_interest": interest,
        }
    )
