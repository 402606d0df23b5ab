"""Job metrics: counted in Redis by the jobs (whatever process runs them), served by the worker's main process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.registry import FailedJobRegistry
from structlog.testing import capture_logs

from funding.alerts import Alert, Severity
from funding.calendar import ET, at_et
from funding.records import Action
from jobs import job_metrics as metrics
from jobs.job_metrics import JobsCollector
from jobs.registry import (
    ALERT_QUEUE,
    COVER_QUEUE,
    SETTLE_QUEUE,
    enqueue_action,
    enqueue_alert_deliveries,
    enqueue_phase,
    queue,
)
from jobs.runtime import run_job
from store import keys
from store.alert_state import move_sync
from tests.support.cover import ACCOUNT, Configure, debit_of_400, journals_to, run_cover
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.settle import et

ROOT = Path(__file__).resolve().parents[2]
QUEUES = (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(collector: JobsCollector) -> Samples:
    """Every sample the collector exposes, as Prometheus would parse it: (name, labels) → value."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_settle_run_counts_its_movements_its_duration_and_its_success(
    make_sandbox: SandboxFactory, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A noon settle run: one fund journal executed and one settlement completed, with their dollars, one job run."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    created = [await sandbox.create_transfer(f"810000000{n}", a) for n, a in ((1, "100.00"), (2, "250.50"))]
    await sandbox.advance(1)
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    assert enqueue_phase(redis_client, "settle", deadline)
    before = datetime.now(ET).timestamp()
    assert await run_worker()
    samples = scrape(JobsCollector(redis_client, QUEUES, now=lambda: et(deadline, 12, 30)))
    movements = "settlekeeper_money_movements_total"
    assert value(samples, movements, kind="fund", outcome="executed") == 1
    assert value(samples, movements, kind="settle", outcome="completed") == 1
    assert value(samples, "settlekeeper_money_movement_dollars_total", kind="settle", outcome="completed") == 350.5
    assert value(samples, "settlekeeper_money_movement_dollars_total", kind="fund", outcome="executed") == 350.5
    assert value(samples, "settlekeeper_settle_runs_total", phase="settle", outcome="done") == 1
    last = value(samples, "settlekeeper_settle_last_success_timestamp_seconds")
    assert last is not None
    assert before <= last <= datetime.now(ET).timestamp()
    job = {"job": "settle.run_phase", "outcome": "succeeded"}
    assert value(samples, "settlekeeper_job_duration_seconds_count", **job) == 1
    assert value(samples, "settlekeeper_job_duration_seconds_bucket", **job, le="+Inf") == 1
    assert 0 < (value(samples, "settlekeeper_job_duration_seconds_sum", **job) or 0) < 60
    avoided = value(samples, "settlekeeper_late_interest_avoided_dollars", deadline=deadline)
    assert avoided == float(Decimal(redis_client.hget(keys.costs(deadline), "late_interest_avoided").decode()))
    assert avoided > 0


async def test_pending_cover_leaves_the_account_in_debit_until_a_rerun_covers_it(
    sandbox: Sandbox, job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A cover journal held by JNLC limits counts as pending and in debit; approved and re-run, it is executed."""
    deadline = await debit_of_400(sandbox)
    collector = JobsCollector(redis_client, QUEUES, now=lambda: et(deadline, 21))
    assert (await run_cover(redis_client, run_worker, ACCOUNT, deadline))["outcome"] == "pending"
    samples = scrape(collector)
    assert value(samples, "settlekeeper_accounts_in_debit", deadline=deadline) == 1
    assert value(samples, "settlekeeper_money_movements_total", kind="cover", outcome="pending") == 1
    assert value(samples, "settlekeeper_money_movement_dollars_total", kind="cover", outcome="pending") == 400
    [journal] = await journals_to(sandbox, ACCOUNT)
    await sandbox.ok("POST", f"/sandbox/journals/{journal['id']}/approve")
    assert (await run_cover(redis_client, run_worker, ACCOUNT, deadline))["outcome"] == "covered"
    samples = scrape(collector)
    assert value(samples, "settlekeeper_accounts_in_debit", deadline=deadline) == 0
    assert value(samples, "settlekeeper_money_movements_total", kind="cover", outcome="executed") == 1
    assert (
        value(samples, "settlekeeper_job_duration_seconds_count", job="cover.cover_account", outcome="succeeded") == 2
    )


async def test_alert_deliveries_are_counted_by_kind_sink_and_outcome(
    job_env: Configure, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """A delivery job counts each sink's outcome under the alert's kind (no sink configured: unconfigured)."""
    alert = Alert("rf_short", Severity.CRITICAL, "rf-short-2026-11-24", "RF cannot cover 2026-11-24")
    assert move_sync(redis_client, alert, "trigger") is not None
    assert enqueue_alert_deliveries(redis_client) == 1
    assert await run_worker()
    samples = scrape(JobsCollector(redis_client, QUEUES))
    for sink in ("slack", "pagerduty"):
        labels = {"kind": "rf_short", "sink": sink, "outcome": "unconfigured"}
        assert value(samples, "settlekeeper_alert_deliveries_total", **labels) == 1
    assert value(samples, "settlekeeper_job_duration_seconds_count", job="alerts.deliver", outcome="succeeded") == 1


def test_a_job_that_raises_is_counted_as_failed_and_the_error_still_propagates(
    redis_client: redis.Redis, session_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_job records the failed run in the histogram (outside RQ: job ``direct``) and re-raises."""
    monkeypatch.setenv("SETTLEKEEPER_REDIS_URL", session_redis_url)

    async def broken(_: Any) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_job(broken, redis_client)
    samples = scrape(JobsCollector(redis_client, QUEUES))
    assert value(samples, "settlekeeper_job_duration_seconds_count", job="direct", outcome="failed") == 1
    assert value(samples, "settlekeeper_job_duration_seconds_count", job="direct", outcome="succeeded") is None


def test_durations_fall_in_cumulative_buckets(redis_client: redis.Redis) -> None:
    """Each observation counts in the first bucket at or above it and every bucket after; the sum is kept."""
    for seconds in (0.05, 0.3, 45.0, 900.0):
        metrics.observe_job(redis_client, "cover.sweep", "succeeded", seconds)
    samples = scrape(JobsCollector(redis_client, QUEUES))
    bucket = {"job": "cover.sweep", "outcome": "succeeded"}
    counts = {
        le: value(samples, "settlekeeper_job_duration_seconds_bucket", **bucket, le=le)
        for le in ("0.05", "0.5", "60.0", "600.0", "+Inf")
    }
    assert counts == {"0.05": 1, "0.5": 2, "60.0": 3, "600.0": 3, "+Inf": 4}
    assert value(samples, "settlekeeper_job_duration_seconds_sum", **bucket) == pytest.approx(945.35)


def test_many_runs_make_one_series_and_a_bounded_hash(redis_client: redis.Redis) -> None:
    """500 runs of one job: one histogram series, and a hash of at most one field per bucket plus the sum."""
    for n in range(500):
        metrics.observe_job(redis_client, "cover.cover_account", "succeeded", (n % 97) * 7.3)
    samples = scrape(JobsCollector(redis_client, QUEUES))
    series = {labels for name, labels in samples if name == "settlekeeper_job_duration_seconds_count"}
    assert series == {frozenset({("job", "cover.cover_account"), ("outcome", "succeeded")})}
    assert (
        value(samples, "settlekeeper_job_duration_seconds_count", job="cover.cover_account", outcome="succeeded") == 500
    )
    assert redis_client.hlen(keys.metrics("job_duration")) <= len(metrics.JOB_DURATION_BUCKETS) + 2


def test_queue_sizes_and_calendar_figures(redis_client: redis.Redis) -> None:
    """Queued and failed jobs per queue; on Thanksgiving no trading day, and the settle check is Wednesday's."""
    assert enqueue_action(
        redis_client, Action("0-1", "cover-8100000001-2026-11-25", "cover", "8100000001", "2026-11-25")
    )
    failed = queue(SETTLE_QUEUE, redis_client).enqueue("jobs.settle.replan", deadline="2026-11-25")
    queue(SETTLE_QUEUE, redis_client).remove(failed)
    FailedJobRegistry(SETTLE_QUEUE, connection=redis_client).add(failed, ttl=60)
    thanksgiving = datetime(2026, 11, 26, 15, 0, tzinfo=ET)
    samples = scrape(JobsCollector(redis_client, QUEUES, now=lambda: thanksgiving))
    assert value(samples, "settlekeeper_queue_jobs", queue=COVER_QUEUE, state="queued") == 1
    assert value(samples, "settlekeeper_queue_jobs", queue=SETTLE_QUEUE, state="queued") == 0
    assert value(samples, "settlekeeper_queue_jobs", queue=SETTLE_QUEUE, state="failed") == 1
    assert value(samples, "settlekeeper_trading_day") == 0
    wednesday_1245 = at_et(date(2026, 11, 25), metrics.SETTLE_EXPECTED_BY).timestamp()
    assert value(samples, "settlekeeper_settle_expected_timestamp_seconds") == wednesday_1245
    deadlines = {dict(labels)["deadline"] for name, labels in samples if name == "settlekeeper_accounts_in_debit"}
    assert deadlines == {"2026-11-25", "2026-11-24", "2026-11-23", "2026-11-20", "2026-11-19"}
    assert value(samples, "settlekeeper_jobs_redis_up") == 1


def test_unreachable_redis_is_a_zero_not_a_failed_scrape() -> None:
    """With Redis down the endpoint still answers: settlekeeper_jobs_redis_up 0 and nothing else."""
    client = redis.Redis(port=_free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    samples = scrape(JobsCollector(client, QUEUES))
    assert samples == {("settlekeeper_jobs_redis_up", frozenset()): 0}


async def test_counting_never_fails_a_job_when_redis_is_gone() -> None:
    """The recorders swallow Redis errors (logged, not raised): metrics never change a job's course."""
    port = _free_port()
    gone = aioredis.Redis(port=port, socket_connect_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0))
    sync = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    with capture_logs() as logs:
        await metrics.count_alert(gone, "rf_short", "slack", "sent")
        await metrics.settle_finished(gone, "settle", "done")
        await metrics.cover_finished(gone, date(2026, 11, 24), ACCOUNT, "covered")
        metrics.observe_job(sync, "settle.replan", "succeeded", 1.0)
    await gone.aclose()
    failed = [(e["event"], e["family"]) for e in logs if e["log_level"] == "warning"]
    assert failed == [
        ("metrics_write_failed", "alerts"),
        ("metrics_write_failed", "settle"),
        ("metrics_write_failed", "settle"),
        ("metrics_write_failed", "cover_outcomes"),
        ("metrics_write_failed", "job_duration"),
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL of this test
        return str(response.read().decode())


async def test_work_command_serves_what_its_forked_jobs_counted(
    sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """`settlekeeper work --metrics-port N` (forking worker): a job run in a child shows on the parent's /metrics."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SETTLEKEEPER_REDIS_URL": session_redis_url,
        "SETTLEKEEPER_BROKER_URL": sandbox.base_url,
        "SETTLEKEEPER_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "cli.main", "work", "--metrics-port", str(port), "--name", "metrics-test"]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    wanted = 'settlekeeper_job_duration_seconds_count{job="cover.cover_account",outcome="succeeded"} 1.0'
    try:
        assert enqueue_action(
            redis_client, Action("0-1", "cover-8100000001-2026-11-24", "cover", ACCOUNT, "2026-11-24")
        )
        text = ""
        for _ in range(200):
            try:
                text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            except OSError:
                text = ""
            if wanted in text:
                break
            await asyncio.sleep(0.05)
        assert wanted in text, text[-2000:]
        assert 'settlekeeper_queue_workers{queue="settlekeeper-cover"} 1.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, output.decode()[-2000:]
    assert b"jobs_metrics_served" in output


def test_a_forked_job_closes_its_copy_of_the_metrics_socket(redis_client: redis.Redis) -> None:
    """A job forked by the worker does not hold the metrics port: a killed worker's successor can bind it again."""
    server = metrics.serve_metrics(redis_client, ["settlekeeper-cover"], 0, addr="127.0.0.1")
    try:
        child = os.fork()
        if child == 0:  # the forked job: its copy of the listening socket must already be closed
            os._exit(0 if server.socket.fileno() == -1 else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert server.socket.fileno() != -1, "the worker itself still serves"
    finally:
        server.shutdown()
        server.server_close()
