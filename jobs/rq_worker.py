"""``settlekeeper work``: RQ workers on settlekeeper's queues, kept running through crashes and Redis restarts.

RQ's defaults are tuned for jobs that can wait; settlement cannot. Here:

- maintenance (registry clean-up, which turns an abandoned job into its retry, and restarting a scheduler
  that died, e.g. on a Redis restart) runs every :data:`MAINTENANCE_SECONDS`, not every 10 minutes, and the
  idle dequeue wakes every :data:`DEQUEUE_SECONDS` to do it;
- the scheduler (which runs retries with an interval) is named after the worker, so a worker restarted
  under the same name (a Kubernetes pod's container) takes its dead predecessor's scheduler locks at once
  instead of waiting for them to lapse;
- a worker started under the name of one that was killed (no death registered) takes the name over, where
  RQ would refuse to start until the dead registration expired (7 minutes);
- the process waits for Redis instead of exiting when it is unreachable, and starts RQ's loop again when
  that loop gives up on a Redis error, logging where it tried (host, port, db; never the password);
- the job modules, and the holiday tables the calendars load lazily, are imported once, before the first
  fork (:func:`preload`): a forked job would otherwise import them itself, 150-250 ms before every cover
  journal (bench/run "cancellation → cover journal").
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from rq import Queue, SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.worker.base import BaseWorker

from funding.banking import BankingCalendar
from funding.calendar import TradingCalendar
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue
from store.clients import describe, sync_client

log = structlog.get_logger(__name__)

QUEUES = (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)
"""Served in this order: a settle run never waits behind a cover or an alert delivery."""
MAINTENANCE_SECONDS = 15
"""How often a worker cleans the registries and restarts a dead scheduler (RQ's default: 600 s)."""
WORKER_TTL_SECONDS = 35
"""The worker's registration TTL; RQ's idle dequeue waits this minus 15 s, so maintenance runs on time."""
JOB_MONITORING_SECONDS = 10
"""How often a running job's heartbeat is renewed: a killed job is seen abandoned 70 s after its last one
(RQ adds 60 s), then retried. Settlement does not wait for that: the listener's guard restarts it."""
JOB_MODULES = ("jobs.settle", "jobs.cover", "jobs.ladder", "jobs.alert_delivery", "jobs.reports")
"""Every module a job of the queues runs from (jobs/registry.py names their functions), imported by the worker
before it forks: modules only, no clients (nothing is connected at import)."""
REDIS_RETRY_SECONDS = 2.0
"""While Redis is unreachable, the worker looks again this often (and logs each failure)."""


class _Settlekeeper:
    """What both worker classes share: a scheduler named after the worker."""

    name: str
    queues: list[Queue]
    connection: redis.Redis
    serializer: Any
    scheduler: Any
    """RQ's scheduler (an untyped API: a process of its own that moves due retries to their queues)."""

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own start-up of the scheduler, with a deterministic scheduler name (RQ draws a random one)."""
        self.scheduler = RQScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else "INFO",
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
            name=f"{self.name}-scheduler",
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()


class ForkingWorker(_Settlekeeper, Worker):
    """Each job in its own process (the default): a job that crashes or leaks cannot take the worker down."""


class InProcessWorker(_Settlekeeper, SimpleWorker):
    """Jobs in the worker's own process (local runs, tests)."""


WORKER_CLASSES: dict[str, type[BaseWorker]] = {"fork": ForkingWorker, "simple": InProcessWorker}


def build_worker(connection: redis.Redis, worker_class: str, name: str | None) -> BaseWorker:
    queues = [queue(queue_name, connection) for queue_name in QUEUES]
    worker = WORKER_CLASSES[worker_class](
        queues,
        connection=connection,
        serializer=JSONSerializer,
        name=name,
        maintenance_interval=MAINTENANCE_SECONDS,
        worker_ttl=WORKER_TTL_SECONDS,
        job_monitoring_interval=JOB_MONITORING_SECONDS,
    )
    if name is not None:
        take_over_name(worker)
    return worker


def take_over_name(worker: BaseWorker) -> bool:
    """A worker registered under ``worker.name`` that never registered its death was killed (its pod's
    container restarted under the same name): mark it dead so this one can start. True if there was one."""
    connection = worker.connection
    if not connection.exists(worker.key) or connection.hexists(worker.key, "death"):
        return False
    dead: Any = Worker.find_by_key(worker.key, connection=connection, serializer=JSONSerializer)
    if dead is None:
        return False
    dead.register_death()
    log.warning("worker_name_taken_over", name=worker.name, why="the worker registered under it was killed")
    return True


def preload() -> None:
    """Import what every job needs before the worker forks its first one (modules and holiday tables only)."""
    for module in JOB_MODULES:
        importlib.import_module(module)
    today = datetime.now(UTC).date()
    TradingCalendar().is_trading_day(today)  # holidays' lazy loader imports every country's module once
    BankingCalendar().is_banking_day(today)


def wait_for_redis(url: str, stopped: Callable[[], bool], *, every: float = REDIS_RETRY_SECONDS) -> bool:
    """Block until Redis answers PING (True) or ``stopped()`` (False); log each failure with where it was."""
    client = sync_client(url, socket_timeout=5)
    failures = 0
    try:
        while not stopped():
            try:
                client.ping()
            except redis.RedisError as exc:
                failures += 1
                log.error(
                    "redis_unavailable",
                    redis=describe(url),
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    attempt=failures,
                    retry_in=every,
                )
                time.sleep(every)
                continue
            if failures:
                log.info("redis_available", redis=describe(url), after_attempts=failures)
            return True
        return False
    finally:
        client.close()


def serve(
    url: str,
    *,
    worker_class: str = "fork",
    name: str | None = None,
    burst: bool = False,
    logging_level: str = "INFO",
    stopped: Callable[[], bool] = lambda: False,
) -> bool:
    """Run a worker until it is asked to stop (SIGTERM: a warm shutdown) or, in burst mode, the queues are
    empty; start it again whenever RQ's loop gives up on a Redis error. True if any job ran."""
    worked = False
    preload()
    while wait_for_redis(url, stopped):
        connection = sync_client(url, socket_timeout=None)  # RQ sets its own, longer than its BLPOP
        try:
            worker = build_worker(connection, worker_class, name)
            worked |= bool(worker.work(burst=burst, with_scheduler=True, logging_level=logging_level))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error("worker_redis_error", redis=describe(url), error=f"{type(exc).__name__}: {exc}"[:300])
            continue
        finally:
            connection.close()
        if burst or worker._shutdown_requested_date is not None:  # RQ sets it on SIGTERM / SIGINT
            return worked
        log.warning("worker_restarting", why="RQ's loop stopped without a stop request (a Redis error)")
    return worked
