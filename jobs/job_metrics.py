"""Job metrics: the jobs count into Redis, the worker's main process serves them to Prometheus.

RQ runs every job in a forked process, and every worker pod has its own, so prometheus_client's
multiprocess mode would leave files (and series) per job run. Instead a job adds integers to one Redis
hash per metric family (``sk:metrics:<family>``: fields are label values joined by ``|``; HINCRBY of
counts, cents and milliseconds, never floats), and :class:`JobsCollector` turns those hashes into metrics
at scrape time, together with RQ's queue sizes and the business figures the jobs own (interest avoided
and incurred per deadline, accounts left in debit, the last successful settle run).
``settlekeeper work`` serves it on ``SETTLEKEEPER_JOBS_METRICS_PORT`` from its main process.

The values are cluster-wide: every worker serves the same totals, so scrape one, or aggregate with
``max``. They count what jobs saw (a journal still pending is counted by every run that leaves it
pending; a job killed mid-way counts nothing): the audit trail ``sk:audit`` is the record, these are
for dashboards and alerts. Counting never changes a job's course: a Redis error while counting is
logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from funding.calendar import TradingCalendar, at_et, to_et
from funding.money import CENT
from funding.outcomes import IN_DEBIT, SETTLE_SUCCESS
from store import keys
from store.audit import Intent

log = structlog.get_logger(__name__)

NAMESPACE = "settlekeeper"
JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds, from a job with nothing to do to RQ's job timeout. Stored by bucket index: after changing
them, ``DEL sk:metrics:job_duration`` (the counters restart, which Prometheus handles as a reset)."""
RECENT_DEADLINES = 5
"""Per-deadline gauges cover the current trading day and the four before it (bounded label values)."""
SETTLE_EXPECTED_BY = dt.time(12, 45)
"""By then (US/Eastern) the 12:00 and 12:30 settle phases of a trading day have run."""
RECONCILE_ZEROS = {"fund|recovered": "0", "settle|recovered": "0", "cover|recovered": "0", "all|failed": "0"}
"""Reconciliation series served from the start, so that an alert rule sees the first recovery as an increase."""
COVER_OUTCOMES_TTL_SECONDS = 14 * 86400
"""A deadline's cover outcomes are kept two weeks: longer than the per-deadline gauges look back."""


def _field(*labels: str) -> str:
    return "|".join(label.replace("|", "/") for label in labels)


def _cents(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_value())


# ---------------------------------------------------------------------------------------------- recording


def observe_job(connection: redis.Redis, job: str, outcome: str, seconds: float) -> None:
    """One job run (``succeeded`` or ``failed``) in the duration histogram; called by ``run_job``."""
    slot = str(bisect_left(JOB_DURATION_BUCKETS, seconds))  # first bucket whose bound >= seconds; len = +Inf
    try:
        with connection.pipeline(transaction=True) as pipe:
            pipe.hincrby(keys.metrics("job_duration"), _field(job, outcome, slot), 1)
            pipe.hincrby(keys.metrics("job_duration"), _field(job, outcome, "sum_ms"), round(seconds * 1000))
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics_write_failed", family="job_duration", error=str(exc))


async def count_movement(client: aioredis.Redis, intent: Intent, outcome: str) -> None:
    """One money movement of ``intent.kind`` (fund, settle, cover) reaching ``outcome``: executed, completed,
    failed, pending, dry-run or refused."""
    await _incr(client, "money_movements", (_field(intent.kind, outcome, "count"), 1))
    await _incr(client, "money_movements", (_field(intent.kind, outcome, "cents"), _cents(intent.amount)))


async def count_reconcile(client: aioredis.Redis, kind: str, outcome: str) -> None:
    """A reconciliation (:mod:`jobs.reconcile`) ``recovered`` a movement of ``kind`` the audit trail did not name,
    or ``failed`` to read Alpaca (kind ``all``)."""
    await _incr(client, "reconcile", (_field(kind, outcome), 1))


async def count_alert(client: aioredis.Redis, kind: str, sink: str, outcome: str) -> None:
    """One alert delivery of ``kind`` to ``sink`` (slack, pagerduty) and its outcome (sent, refused, …)."""
    await _incr(client, "alerts", (_field(kind, sink, outcome), 1))


async def count_banking_read(client: aioredis.Redis, source: str) -> None:
    """The banking calendar was read from ``source``: ``alpaca`` (``GET /v2/calendar/BMO``) or ``local``."""
    await _incr(client, "banking_calendar", (_field(source), 1))


async def settle_finished(client: aioredis.Redis, phase: str, outcome: str) -> None:
    """A settle run ended: count it, and remember when one last succeeded (wall time, as Prometheus')."""
    await _incr(client, "settle", (_field("runs", phase, outcome), 1))
    if outcome in SETTLE_SUCCESS:
        try:
            await client.hset(keys.metrics("settle"), "last_success_ms", str(round(time.time() * 1000)))
        except redis.RedisError as exc:
            log.warning("metrics_write_failed", family="settle", error=str(exc))


async def cover_finished(client: aioredis.Redis, deadline: date, account_no: str, outcome: str) -> None:
    """A cover run ended: its outcome is the account's state for ``deadline`` (in debit or not)."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.cover_outcomes(deadline), account_no, outcome)
            pipe.expire(keys.cover_outcomes(deadline), COVER_OUTCOMES_TTL_SECONDS)
            await pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics_write_failed", family="cover_outcomes", error=str(exc))


async def _incr(client: aioredis.Redis, family: str, field_amount: tuple[str, int]) -> None:
    try:
        await client.hincrby(keys.metrics(family), *field_amount)
    except redis.RedisError as exc:
        log.warning("metrics_write_failed", family=family, error=str(exc))


# ---------------------------------------------------------------------------------------------- exposing


class JobsCollector:
    """Reads the job metric hashes, RQ's queue sizes and the recent deadlines' figures at every scrape."""

    def __init__(
        self,
        client: redis.Redis,
        queues: Sequence[str],
        *,
        now: Callable[[], datetime] | None = None,
        calendar: TradingCalendar | None = None,
    ) -> None:
        self.redis = client
        self.queues = list(queues)
        self._now = now or (lambda: datetime.now(UTC))
        self.calendar = calendar or TradingCalendar()

    def collect(self) -> Iterator[Metric]:
        now = self._now()
        today = to_et(now).date()
        current = today if self.calendar.is_trading_day(today) else self.calendar.previous_trading_day(today)
        deadlines = [current]
        while len(deadlines) < RECENT_DEADLINES:
            deadlines.append(self.calendar.previous_trading_day(deadlines[-1]))
        up = GaugeMetricFamily(
            f"{NAMESPACE}_jobs_redis_up", "1 when this scrape read the jobs' metrics from Redis, else 0."
        )
        try:
            snapshot = self._read(deadlines)
        except redis.RedisError as exc:
            log.warning("metrics_read_failed", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _job_durations(snapshot["job_duration"])
        yield from _movements(snapshot["money_movements"])
        yield _counter(
            "alert_deliveries",
            "Alert deliveries, by alert kind, sink and outcome (sent, refused, retry, not_routed, …).",
            ["kind", "sink", "outcome"],
            snapshot["alerts"],
        )
        yield from _settle(snapshot["settle"])
        yield _counter(
            "banking_calendar_reads",
            "Banking calendars a job read: from Alpaca (GET /v2/calendar/BMO, once a day) or local (Alpaca could "
            "not be read: the Federal Reserve's holidays).",
            ["source"],
            snapshot["banking_calendar"],
        )
        yield _counter(
            "reconciliations",
            "Reconciliations of Alpaca's journals and settlements with the audit trail: movements recovered (Alpaca "
            "held them, Redis had lost their record), by kind, and passes that failed to read Alpaca (kind all).",
            ["kind", "outcome"],
            {**RECONCILE_ZEROS, **snapshot["reconcile"]},
        )
        yield from self._queues(snapshot["queues"])
        yield from self._calendar(today, current)
        yield from _per_deadline(deadlines, snapshot["costs"], snapshot["covers"])
        unsettled = GaugeMetricFamily(
            f"{NAMESPACE}_unsettled_transfers",
            "Transfers the store holds as PENDING or EXECUTED, every deadline (the heal poller re-reads them).",
        )
        unsettled.add_metric([], snapshot["unsettled"])
        yield unsettled
        yield from _forecast(snapshot["forecast"])

    def _read(self, deadlines: list[date]) -> dict[str, Any]:
        families = ("job_duration", "money_movements", "alerts", "settle", "banking_calendar", "reconcile")
        with self.redis.pipeline(transaction=False) as pipe:
            for family in families:
                pipe.hgetall(keys.metrics(family))
            for name in self.queues:
                pipe.llen(Queue.redis_queue_namespace_prefix + name)
                pipe.zcard(StartedJobRegistry.key_template.format(name))
                pipe.zcard(ScheduledJobRegistry.key_template.format(name))
                pipe.zcard(FailedJobRegistry.key_template.format(name))
                pipe.scard(WORKERS_BY_QUEUE_KEY % name)
            for deadline in deadlines:
                pipe.hgetall(keys.costs(deadline))
                pipe.hgetall(keys.cover_outcomes(deadline))
            pipe.scard(keys.UNSETTLED)
            pipe.get(keys.FORECAST)
            *results, unsettled, ahead = pipe.execute()
        snapshot: dict[str, Any] = {f: _decoded(r) for f, r in zip(families, results, strict=False)}
        rest = results[len(families) :]
        per_queue, rest = rest[: 5 * len(self.queues)], rest[5 * len(self.queues) :]
        snapshot["queues"] = {
            name: [int(v) for v in per_queue[5 * i : 5 * i + 5]] for i, name in enumerate(self.queues)
        }
        snapshot["costs"] = [_decoded(r) for r in rest[0::2]]
        snapshot["covers"] = [_decoded(r) for r in rest[1::2]]
        snapshot["unsettled"] = int(unsettled)
        snapshot["forecast"] = ahead
        return snapshot

    def _queues(self, sizes: dict[str, list[int]]) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            f"{NAMESPACE}_queue_jobs",
            "RQ jobs of a settlekeeper queue, by state: queued (waiting for a worker), started, scheduled "
            "(retries waiting for their interval), failed (retries exhausted, kept 30 days).",
            labels=["queue", "state"],
        )
        workers = GaugeMetricFamily(f"{NAMESPACE}_queue_workers", "RQ workers registered on a queue.", labels=["queue"])
        for name, (queued, started, scheduled, failed, registered) in sizes.items():
            for state, value in (
                ("queued", queued),
                ("started", started),
                ("scheduled", scheduled),
                ("failed", failed),
            ):
                jobs.add_metric([name, state], value)
            workers.add_metric([name], registered)
        yield jobs
        yield workers

    def _calendar(self, today: date, current: date) -> Iterator[Metric]:
        trading = GaugeMetricFamily(
            f"{NAMESPACE}_trading_day", "1 when today (US/Eastern) is an NYSE trading day, else 0."
        )
        trading.add_metric([], 1 if self.calendar.is_trading_day(today) else 0)
        yield trading
        expected = GaugeMetricFamily(
            f"{NAMESPACE}_settle_expected_timestamp_seconds",
            "Unix time by which the current trading day's settle phases have run (12:45 ET of today, or of "
            "the last trading day).",
        )
        expected.add_metric([], at_et(current, SETTLE_EXPECTED_BY).timestamp())
        yield expected


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _counter(name: str, documentation: str, labels: list[str], raw: dict[str, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=labels)
    for field, value in sorted(raw.items()):
        values = field.split("|")
        if len(values) == len(labels):
            family.add_metric(values, int(value))
    return family


def _forecast(raw: bytes | None) -> Iterator[Metric]:
    """The last RF prefunding forecast (``sk:forecast``, written at 09:30 and 15:00 ET): per coming deadline."""
    per_deadline = {
        "shortfall": "Projected RF shortfall of a coming deadline, in dollars (the last forecast).",
        "projected_due": "What settlekeeper is projected to pay on a coming deadline (planning figure), in dollars.",
        "rf_projected": "RF projected after a coming deadline if nothing is wired, in dollars.",
    }
    families = {
        name: GaugeMetricFamily(f"{NAMESPACE}_forecast_{name}_dollars", text, labels=["deadline"])
        for name, text in per_deadline.items()
    }
    wire_family = GaugeMetricFamily(
        f"{NAMESPACE}_forecast_wire_dollars", "The wire into RF the last forecast recommends, in dollars (0: none)."
    )
    computed = GaugeMetricFamily(
        f"{NAMESPACE}_forecast_computed_timestamp_seconds", "When the last RF prefunding forecast was made."
    )
    try:
        found = json.loads(raw) if raw else None
    except ValueError:
        found = None
    if isinstance(found, dict):
        for row in found.get("deadlines", []):
            for name, family in families.items():
                family.add_metric([row["deadline"]], float(row[name]))
        rec = found.get("recommendation")
        wire_family.add_metric([], float(rec["amount"]) if rec else 0.0)
        computed.add_metric([], datetime.fromisoformat(found["computed_at"]).timestamp())
    yield from families.values()
    yield wire_family
    yield computed


def _job_durations(raw: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        f"{NAMESPACE}_job_duration_seconds",
        "Duration of settlekeeper's RQ jobs, by job and outcome (succeeded, or failed: raised, RQ retries).",
        labels=["job", "outcome"],
    )
    series: dict[tuple[str, str], list[int]] = {}
    sums: dict[tuple[str, str], int] = {}
    for field, value in raw.items():
        job, outcome, slot = field.rsplit("|", 2)
        counts = series.setdefault((job, outcome), [0] * (len(JOB_DURATION_BUCKETS) + 1))
        if slot == "sum_ms":
            sums[(job, outcome)] = int(value)
        else:
            counts[min(int(slot), len(JOB_DURATION_BUCKETS))] += int(value)
    for labels, counts in sorted(series.items()):
        cumulative = list(itertools.accumulate(counts))
        buckets = [(str(float(bound)), c) for bound, c in zip(JOB_DURATION_BUCKETS, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        family.add_metric(list(labels), buckets, sum_value=sums.get(labels, 0) / 1000)
    return family


def _movements(raw: dict[str, str]) -> Iterator[Metric]:
    labels = ["kind", "outcome"]
    count = CounterMetricFamily(
        f"{NAMESPACE}_money_movements",
        "Money movements (RF → SI journals: fund, settlements: settle, RF → customer journals: cover), by "
        "outcome: executed, completed, failed, pending (still pending when a run stopped waiting), dry-run, "
        "refused (a guardrail).",
        labels=labels,
    )
    dollars = CounterMetricFamily(
        f"{NAMESPACE}_money_movement_dollars",
        "Amount of those money movements in US dollars, by kind and outcome.",
        labels=labels,
    )
    for field, value in sorted(raw.items()):
        kind, outcome, unit = field.rsplit("|", 2)
        if unit == "count":
            count.add_metric([kind, outcome], int(value))
        elif unit == "cents":
            dollars.add_metric([kind, outcome], int(value) / 100)
    yield count
    yield dollars


def _settle(raw: dict[str, str]) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        f"{NAMESPACE}_settle_runs",
        "Settle runs, by phase (settle, settle_retry, late_check, final_check, replan) and outcome.",
        labels=["phase", "outcome"],
    )
    for field, value in sorted(raw.items()):
        if field.startswith("runs|"):
            _, phase, outcome = field.split("|", 2)
            runs.add_metric([phase, outcome], int(value))
    yield runs
    last = GaugeMetricFamily(
        f"{NAMESPACE}_settle_last_success_timestamp_seconds",
        "Unix time a settle run last ended done, nothing_due or dry_run.",
    )
    if "last_success_ms" in raw:
        last.add_metric([], int(raw["last_success_ms"]) / 1000)
    yield last


def _per_deadline(deadlines: list[date], costs: list[dict[str, str]], covers: list[dict[str, str]]) -> Iterator[Metric]:
    avoided = GaugeMetricFamily(
        f"{NAMESPACE}_late_interest_avoided_dollars",
        "Late interest settlekeeper avoided by settling before 1 PM ET, by deadline (recent trading days).",
        labels=["deadline"],
    )
    incurred = GaugeMetricFamily(
        f"{NAMESPACE}_late_interest_incurred_dollars",
        "Late interest booked by Alpaca on transfers settlekeeper settled after 1 PM ET, by deadline.",
        labels=["deadline"],
    )
    margin = GaugeMetricFamily(
        f"{NAMESPACE}_margin_interest_estimated_dollars",
        "Estimated margin interest on the debits the deadline's cancellations left, by deadline.",
        labels=["deadline"],
    )
    in_debit = GaugeMetricFamily(
        f"{NAMESPACE}_accounts_in_debit",
        "Accounts whose last cover run for the deadline left their cash negative (pending, refused, …).",
        labels=["deadline"],
    )
    for deadline, cost, cover in zip(deadlines, costs, covers, strict=True):
        label = [deadline.isoformat()]
        avoided.add_metric(label, float(_decimal(cost.get("late_interest_avoided"))))
        incurred.add_metric(label, float(_decimal(cost.get("late_interest_incurred"))))
        estimates = (_decimal(v) for k, v in cost.items() if k.startswith("margin_interest:"))
        margin.add_metric(label, float(sum(estimates, Decimal(0))))
        in_debit.add_metric(label, sum(1 for outcome in cover.values() if outcome in IN_DEBIT))
    yield from (avoided, incurred, margin, in_debit)


def _decimal(text: str | None) -> Decimal:
    try:
        return Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - Prometheus scrapes the pod from another pod


def serve_metrics(client: redis.Redis, queues: Sequence[str], port: int, addr: str = ALL_INTERFACES) -> WSGIServer:
    """Serve the jobs' metrics on ``port`` (0: any free port, see ``server_port``) from a daemon thread.

    A forked job closes its copy of the listening socket: a job still running when its worker is killed would
    otherwise keep the port, and the restarted worker could not serve its metrics (seen in the chaos run)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(client, queues))
    server, _ = start_http_server(port, addr=addr, registry=registry)
    os.register_at_fork(after_in_child=server.socket.close)
    return server
