"""Running the money jobs in tests: their settings and a real RQ worker in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue

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


async def burst(url: str) -> bool:
    """Run a real RQ worker on the Redis at ``url`` in burst mode (in a thread, so the in-process sandbox keeps
    serving); True when every job it took succeeded."""
    connection = redis.Redis.from_url(url)
    try:
        queues = [queue(name, connection) for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)]
        worker = ThreadWorker(queues, connection=connection, serializer=JSONSerializer)
        return bool(await asyncio.to_thread(worker.work, burst=True, logging_level="WARNING"))
    finally:
        connection.close()


def other_database(url: str, db: int) -> str:
    """The same Redis server's database ``db`` (a second deployment's own keys)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))
