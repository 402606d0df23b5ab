"""Settle job: fund SI from RF and settle what is due (filled in by the money-jobs issue)."""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)


def replan(deadline: str) -> dict[str, str]:
    """Re-plan the settlement of transfers due on ``deadline`` after one of them changed."""
    log.info("replan_requested", deadline=deadline)
    return {"deadline": deadline, "outcome": "not_implemented"}
