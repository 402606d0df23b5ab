"""How a settle run or a cover run ended: the words the jobs report, audit and count, as enums.

A settle run's ``dry_run`` (nothing moved because a mode is dry-run) and an intent's ``dry-run``
(:class:`store.audit.IntentStatus`) are different things with different spellings; the enums keep them apart.
"""

from __future__ import annotations

from enum import StrEnum


class SettleOutcome(StrEnum):
    DONE = "done"
    """Everything it planned is settled (transfers RF could not cover are in ``left``)."""
    NOTHING_DUE = "nothing_due"
    NOT_YET = "not_yet"
    """A re-plan before the deadline's first settle phase: the partner may still settle by hand; the phase plans."""
    REPLAN = "replan"
    """A round found the amounts changed (a settlement FAILED once): plan again, within the same run."""
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    """A guardrail or Alpaca refused: a person must act (alerted)."""
    FAILED = "failed"
    """A settlement FAILED twice: paged."""
    IN_PROGRESS = "in_progress"
    """A journal or settlement is still in progress: a later run resumes it."""
    KILLED = "killed"
    TOO_LATE = "too_late"
    """After 8 PM ET: the transfers are canceled."""
    BUSY = "busy"
    """Another run of the deadline holds its lock."""
    SUPERSEDED = "superseded"
    """The run's lock lapsed and it stopped before its next money call."""
    ERROR = "error"
    """It raised (a transient error): RQ retries it, and the listener's guard looks again."""


SETTLE_SUCCESS = frozenset({SettleOutcome.DONE, SettleOutcome.NOTHING_DUE, SettleOutcome.DRY_RUN})
"""Outcomes that count as a successful settle run (the metric and the alert rule on it)."""
RETRIED_BY_THE_GUARD = frozenset({SettleOutcome.IN_PROGRESS, SettleOutcome.ERROR, SettleOutcome.SUPERSEDED})
"""Outcomes after which running again may succeed: the listener's guard does, a minute later."""


class CoverOutcome(StrEnum):
    COVERED = "covered"
    NO_DEBIT = "no_debit"
    NOT_IF_DEBIT = "not_if_debit"
    """The debit was not caused by the day's IF cancellations (covered only with cover-only-if-debits off)."""
    PENDING = "pending"
    """The journal waits for approval (JNLC limits): alerted; the sweep looks again."""
    STILL_IN_DEBIT = "still_in_debit"
    FAILED = "failed"
    KILLED = "killed"
    DRY_RUN = "dry-run"
    """As the intent's status: the cover's outcome is its intent's when a guardrail held it back."""
    REFUSED = "refused"


IN_DEBIT = frozenset(
    {
        CoverOutcome.PENDING,
        CoverOutcome.STILL_IN_DEBIT,
        CoverOutcome.FAILED,
        CoverOutcome.DRY_RUN,
        CoverOutcome.REFUSED,
        CoverOutcome.KILLED,
        CoverOutcome.NOT_IF_DEBIT,
    }
)
"""Cover outcomes that leave the account in debit (the accounts-in-debit gauge)."""
