"""Fixtures for money jobs: the jobs read SETTLEKEEPER_* from the environment, pointed at the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue
from tests.conftest import Sandbox

JOB_ENV = {
    "SETTLEKEEPER_POLL_SECONDS": "0.02",
    "SETTLEKEEPER_JOURNAL_WAIT_SECONDS": "0.5",
    "SETTLEKEEPER_SETTLEMENT_WAIT_SECONDS": "0.5",
    "SETTLEKEEPER_LOG_LEVEL": "WARNING",
}
"""Short waits: a job that waits longer than this returns in_progress and a later run resumes it."""


@pytest.fixture
def job_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the jobs' settings at ``sandbox``; call it again with overrides (name=value, SETTLEKEEPER_ added)."""

    def configure(target: Sandbox = sandbox, **overrides: Any) -> None:
        monkeypatch.setenv("SETTLEKEEPER_BROKER_URL", target.base_url)
        for name, value in JOB_ENV.items():
            monkeypatch.setenv(name, value)
        for name, value in overrides.items():
            monkeypatch.setenv(f"SETTLEKEEPER_{name.upper()}", str(value))

    configure()
    return configure


RunWorker = Callable[[], Awaitable[bool]]


class ThreadWorker(SimpleWorker):
    """RQ's SimpleWorker, runnable off the main thread: timer-based timeouts, no signal handlers."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        return None

    def subscribe(self) -> None:
        """No pubsub thread: stopping it costs up to 1 s per burst, and tests send no worker commands."""
        return None


@pytest.fixture
def run_worker(session_redis_url: str, redis_client: redis.Redis) -> RunWorker:
    """Run a real RQ worker in burst mode (in a thread, so the in-process sandbox keeps serving)."""

    async def run() -> bool:
        connection = redis.Redis.from_url(session_redis_url)
        try:
            queues = [queue(name, connection) for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)]
            worker = ThreadWorker(queues, connection=connection, serializer=JSONSerializer)
            return bool(await asyncio.to_thread(worker.work, burst=True, logging_level="WARNING"))
        finally:
            connection.close()

    return run
