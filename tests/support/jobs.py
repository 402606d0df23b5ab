"""Running the money jobs in tests: their settings and a real RQ worker in a thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

JOB_ENV = {
    "SETTLEKEEPER_POLL_SECONDS": "0.02",
    "SETTLEKEEPER_JOURNAL_WAIT_SECONDS": "0.5",
    "SETTLEKEEPER_SETTLEMENT_WAIT_SECONDS": "0.5",
    "SETTLEKEEPER_LOG_LEVEL": "WARNING",
}
"""Short waits: a job that waits longer than this returns in_progress and a later run resumes it."""


RunWorker = Callable[[], Awaitable[bool]]


class ThreadWorker(SimpleWorker):
    """RQ's SimpleWorker, runnable off the main thread: timer-based timeouts, no signal handlers."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        return None

    def subscribe(self) -> None:
        """No pubsub thread: stopping it costs up to 1 s per burst, and tests send no worker commands."""
        return None
