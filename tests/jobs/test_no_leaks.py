"""Jobs leak no event loops, sessions, sockets or threads across thousands of runs in one long-lived worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from funding.records import Action
from jobs.registry import COVER_QUEUE, enqueue_action, queue
from tests.support.jobs import ThreadWorker
from tests.support.sandbox import Sandbox

ACCOUNT = "8100000001"
FIRST_DAY = date(2026, 1, 1)
WINDOW = 100
"""Resources are compared between the first and the last this many jobs."""
MAX_FD_GROWTH = 4
MAX_THREAD_GROWTH = 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class SamplingWorker(ThreadWorker):
    """A burst worker that records open file descriptors and live threads after every job."""

    samples: list[tuple[int, int]]

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            return bool(super().perform_job(job, queue))
        finally:
            self.samples.append((open_fds(), threading.active_count()))


async def run_many_covers(
    count: int, sandbox: Sandbox, job_env: Callable[..., None], session_redis_url: str, redis_client: redis.Redis
) -> list[tuple[int, int]]:
    """Enqueue ``count`` cover jobs for an account without debit and run them all in one worker."""
    job_env(sandbox, log_level="ERROR")
    job_ids = []
    for n in range(count):
        day = (FIRST_DAY + timedelta(days=n)).isoformat()
        action = Action(f"{n}-0", f"cover-{ACCOUNT}-{day}", "cover", ACCOUNT, day)
        assert enqueue_action(redis_client, action)
        job_ids.append(action.job_id)
    connection = redis.Redis.from_url(session_redis_url)
    try:
        worker = SamplingWorker([queue(COVER_QUEUE, connection)], connection=connection, serializer=JSONSerializer)
        worker.samples = []
        assert await asyncio.to_thread(worker.work, burst=True, logging_level="WARNING")
    finally:
        connection.close()
    for job_id in (job_ids[0], job_ids[-1]):
        result: dict[str, Any] = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer).return_value()
        assert result["outcome"] == "no_debit"
    gc.collect()  # a leaked session or loop would now warn (and fail the test: filterwarnings = error)
    return worker.samples


def assert_no_growth(samples: list[tuple[int, int]], count: int) -> None:
    assert len(samples) == count
    first, last = samples[:WINDOW], samples[-WINDOW:]
    fds_first, fds_last = max(s[0] for s in first), max(s[0] for s in last)
    threads_first, threads_last = max(s[1] for s in first), max(s[1] for s in last)
    assert fds_last - fds_first <= MAX_FD_GROWTH, (fds_first, fds_last)
    assert threads_last - threads_first <= MAX_THREAD_GROWTH, (threads_first, threads_last)


def assert_nothing_unclosed(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]


@pytest.mark.slow  # ~14 s alone, ~19 s inside the full suite: near the 20 s limit for the default run
async def test_thousand_cover_jobs_leak_nothing(
    sandbox: Sandbox,
    job_env: Callable[..., None],
    session_redis_url: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 cover jobs in one worker: fds and threads of the last 100 are those of the first 100; nothing unclosed."""
    caplog.set_level(logging.WARNING)
    samples = await run_many_covers(1_000, sandbox, job_env, session_redis_url, redis_client)
    assert_no_growth(samples, 1_000)
    assert_nothing_unclosed(caplog)


async def test_two_hundred_cover_jobs_leak_nothing(
    sandbox: Sandbox,
    job_env: Callable[..., None],
    session_redis_url: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """200 cover jobs in one worker (the default run's variant): no fd or thread growth, nothing unclosed."""
    caplog.set_level(logging.WARNING)
    samples = await run_many_covers(200, sandbox, job_env, session_redis_url, redis_client)
    assert_no_growth(samples, 200)
    assert_nothing_unclosed(caplog)
