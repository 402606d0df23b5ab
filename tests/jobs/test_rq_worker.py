"""``settlekeeper work``'s RQ worker (jobs/rq_worker.py): a killed worker's name is taken over, Redis is waited
for (saying where, never the password), and a burst serves settlekeeper's queues in priority order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis
from rq import Worker
from rq.serializers import JSONSerializer
from structlog.testing import capture_logs

from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue
from jobs.rq_worker import (
    JOB_MODULES,
    MAINTENANCE_SECONDS,
    QUEUES,
    build_worker,
    serve,
    take_over_name,
    wait_for_redis,
)
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]

NAME = "settlekeeper-work-0"
RAN: list[str] = []
"""What :func:`record` was called with, in order (the worker runs jobs in this process)."""


def record(what: str) -> str:
    """A job that notes it ran."""
    RAN.append(what)
    return what


def killed_worker(connection: redis.Redis) -> Worker:
    """A worker registered under NAME that died without registering its death (SIGKILL of its pod)."""
    worker = Worker([queue(SETTLE_QUEUE, connection)], connection=connection, name=NAME, serializer=JSONSerializer)
    worker.register_birth()
    return worker


def test_a_killed_workers_name_is_taken_over(redis_client: redis.Redis) -> None:
    """Its registration is marked dead and the new worker registers under the same name at once (RQ alone
    refuses until the old key expires)."""
    old = killed_worker(redis_client)
    with capture_logs() as logs:
        worker = build_worker(redis_client, "simple", NAME)
    assert redis_client.hexists(old.key, "death")
    assert [e["name"] for e in logs if e["event"] == "worker_name_taken_over"] == [NAME]
    worker.register_birth()
    assert redis_client.hget(worker.key, "birth") is not None
    assert (worker.maintenance_interval, [q.name for q in worker.queues]) == (
        MAINTENANCE_SECONDS,
        list(QUEUES),
    )


def test_a_name_that_is_free_or_cleanly_released_is_left_alone(redis_client: redis.Redis) -> None:
    """No registration, or one that registered its death: nothing is taken over."""
    fresh = build_worker(redis_client, "simple", NAME)
    assert not take_over_name(fresh)
    old = killed_worker(redis_client)
    old.register_death()
    assert not take_over_name(build_worker(redis_client, "simple", NAME))


def test_waiting_for_redis_names_where_without_the_password_until_stopped(
    redis_client: redis.Redis, session_redis_url: str
) -> None:
    """Against a port nobody listens on: each failure is logged with host, port and db, never the password,
    and the wait ends False when stopped; against the test Redis it ends True at once."""
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/2"
    checks = iter([False, True])  # one try (its client retries with backoff first)
    with capture_logs() as logs:
        assert not wait_for_redis(url, lambda: next(checks), every=0.01)
    failures = [e for e in logs if e["event"] == "redis_unavailable"]
    assert [(e["redis"], e["attempt"]) for e in failures] == [(f"redis://{url.split('@')[1]}", n) for n in (1,)]
    assert "s3cret-pw" not in repr(logs)
    assert wait_for_redis(session_redis_url, lambda: False)


def test_a_burst_serves_the_settle_queue_before_cover_and_alerts(
    redis_client: redis.Redis, session_redis_url: str
) -> None:
    """Jobs queued alert first, then cover, then settle run settle, cover, alert; serve() says a job ran, and
    with nothing queued it says none did."""
    RAN.clear()
    for name in (ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE):
        queue(name, redis_client).enqueue(record, name)
    url = session_redis_url
    assert serve(url, worker_class="simple", name=NAME, burst=True, logging_level="WARNING")
    assert RAN == [SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE]
    assert not serve(url, worker_class="simple", name=NAME, burst=True, logging_level="WARNING")


def test_the_worker_imports_every_job_module_and_the_holiday_tables_before_it_forks() -> None:
    """After preload() a forked job finds the job modules and holidays' country tables already imported."""
    code = (
        "import json, sys\n"
        "from jobs.rq_worker import JOB_MODULES, preload\n"
        "names = (*JOB_MODULES, 'holidays.countries')\n"
        "before = [m for m in names if m in sys.modules]\n"
        "preload()\n"
        "print(json.dumps([before, [m for m in names if m in sys.modules]]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    before, after = json.loads(run.stdout)
    assert "holidays.countries" not in before
    assert "jobs.cover" not in before
    assert sorted(after) == sorted((*JOB_MODULES, "holidays.countries"))
