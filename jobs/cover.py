"""Cover job: after a cancellation, journal RF → customer for exactly the debit (filled in by the money-jobs issue)."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


def cover_account(account_no: str, deadline: str) -> dict[str, str]:
    """Check ``account_no`` for a debit balance left by a transfer canceled on ``deadline``."""
    log.info("cover_check_requested", account_no=account_no, deadline=deadline)
    return {"account_no": account_no, "deadline": deadline, "outcome": "not_implemented"}
