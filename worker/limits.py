"""The limits monitor: what Alpaca still lets the partner do, read on an interval, as gauges and alerts.

While the listener leads, every ``SETTLEKEEPER_LIMITS_POLL_SECONDS`` it reads
``GET /v1/instant_funding/limits`` (new IF transfers are refused once the correspondent limit is in use)
and ``GET /v1/transfers/jit/limits`` (customers' buys halt at the daily net limit, which resets at 8 PM ET),
sets their gauges, and raises ``if_limit`` / ``jit_limit`` at ``SETTLEKEEPER_LIMIT_WARNING_RATIO`` (warning)
and ``SETTLEKEEPER_LIMIT_CRITICAL_RATIO`` (critical): one incident per system date (dedup key
``if-limit-<date>`` / ``jit-limit-<date>``) that escalates, and resolves once usage is back under the warning
ratio (the previous system date's incident is resolved when a new date starts). The same poll sets what the
listener can compute cheaply: the firm accounts' cash, what is due on the open deadline and the next one
(from the store), and the time to the next 1 PM ET cutoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import redis
import redis.asyncio as aioredis
import structlog
from prometheus_client import Gauge

from broker.client import BrokerClient
from config.settings import Settings
from funding.alerts import Alert, Severity
from funding.calendar import SETTLEMENT_CUTOFF, TradingCalendar, at_et, to_et
from funding.errors import AuthenticationError, SettlekeeperError
from funding.money import display, wire
from jobs.registry import enqueue_alert_deliveries
from store.accounts import AccountIds
from store.alert_state import Transition, raise_alert, resolve_alert
from store.transfers import TransferStore
from worker.listener_metrics import ListenerMetrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Usage:
    """One limit: what is in use of it."""

    kind: str
    """The alert kind: ``if_limit`` or ``jit_limit``."""
    name: str
    consequence: str
    in_use: Decimal
    limit: Decimal

    @property
    def ratio(self) -> Decimal:
        if self.limit > 0:
            return self.in_use / self.limit
        return Decimal(1) if self.in_use > 0 else Decimal(0)

    def dedup_key(self, system_date: date) -> str:
        return f"{self.kind.replace('_', '-')}-{system_date}"


class LimitsMonitor:
    def __init__(
        self,
        settings: Settings,
        broker: BrokerClient,
        client: aioredis.Redis,
        rq_connection: redis.Redis,
        store: TransferStore,
        metrics: ListenerMetrics,
        now: Callable[[], datetime],
        calendar: TradingCalendar,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.redis = client
        self.rq = rq_connection
        self.store = store
        self.metrics = metrics
        self.now = now
        self.calendar = calendar
        self.accounts = AccountIds(client, broker.find_account)

    async def run(self, halt: asyncio.Event) -> None:
        """Poll now and then every ``SETTLEKEEPER_LIMITS_POLL_SECONDS`` until ``halt``; nothing a poll meets
        (Broker API errors, Redis unavailable) is fatal to the listener."""
        while not halt.is_set():
            try:
                await self.poll()
            except redis.RedisError as exc:
                log.warning("limits_poll_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), timeout=self.settings.limits_poll_seconds)

    async def poll(self) -> list[str]:
        """Read both limits, the firm balances and the store once; set the gauges; raise or resolve the limit
        alerts. Each Broker API read fails alone (logged, counted by part; a partner without JIT gets a 404
        there): returns the parts that failed."""
        now = self.now()
        system_date = self.calendar.current_system_date(now)
        failed: list[str] = []
        changes: list[Transition] = []
        for name, read in (("if_limit", self._if_usage), ("jit_limit", self._jit_usage)):
            try:
                usage = await read()
            except AuthenticationError:
                raise  # not one part failing: the listener stops its term and retries slowly
            except SettlekeeperError as exc:  # the tree: a body that does not fit its model included
                failed.append(self._part_failed(name, exc))
                continue
            changes += await self._alert(usage, system_date)
        if changes:
            await asyncio.to_thread(enqueue_alert_deliveries, self.rq)
        try:
            await self._firm_cash()
        except AuthenticationError:
            raise
        except SettlekeeperError as exc:
            failed.append(self._part_failed("firm_cash", exc))
        await self._due(system_date)
        self.metrics.time_to_cutoff.set((self._next_cutoff(now) - now).total_seconds())
        self.metrics.limits_polls.inc()
        return failed

    async def _if_usage(self) -> Usage:
        limits = await self.broker.if_limits()
        usage = Usage(
            "if_limit",
            "instant funding limit",
            "new IF transfers are refused at 100 %",
            limits.amount_in_use,
            limits.amount_limit,
        )
        self._gauge(usage, self.metrics.if_usage, self.metrics.if_in_use, self.metrics.if_limit)
        return usage

    async def _jit_usage(self) -> Usage:
        limits = await self.broker.jit_limits()
        usage = Usage(
            "jit_limit",
            "JIT daily net limit",
            "customers' buys halt at 100 % until the 8 PM ET reset",
            limits.in_use_limit,
            limits.daily_net_limit,
        )
        self._gauge(usage, self.metrics.jit_usage, self.metrics.jit_in_use, self.metrics.jit_limit)
        return usage

    @staticmethod
    def _gauge(usage: Usage, ratio: Gauge, in_use: Gauge, limit: Gauge) -> None:
        ratio.set(float(usage.ratio))
        in_use.set(float(usage.in_use))
        limit.set(float(usage.limit))

    def _part_failed(self, part: str, exc: Exception) -> str:
        self.metrics.limits_poll_errors.labels(part).inc()
        log.warning("limits_poll_part_failed", part=part, error=f"{type(exc).__name__}: {exc}"[:300])
        return part

    def severity(self, ratio: Decimal) -> Severity | None:
        if ratio >= self.settings.limit_critical_ratio:
            return Severity.CRITICAL
        if ratio >= self.settings.limit_warning_ratio:
            return Severity.WARNING
        return None

    async def _alert(self, usage: Usage, system_date: date) -> list[Transition]:
        """Raise (or escalate) today's alert of ``usage``, or resolve it; close the previous date's."""
        key = usage.dedup_key(system_date)
        severity = self.severity(usage.ratio)
        text = f"{usage.name} {usage.ratio:.0%} used: {display(usage.in_use)} of {display(usage.limit)}"
        if severity is None:
            back = f"{text}, back under {self.settings.limit_warning_ratio:.0%}"
            change = await resolve_alert(self.redis, Alert(usage.kind, Severity.INFO, key, back))
        else:
            facts = {
                "system_date": system_date.isoformat(),
                "in_use": wire(usage.in_use),
                "limit": wire(usage.limit),
                "usage_ratio": f"{usage.ratio:.4f}",
            }
            summary = f"{text} on {system_date}; {usage.consequence}"
            change = await raise_alert(self.redis, Alert(usage.kind, severity, key, summary, facts))
        previous = usage.dedup_key(self.calendar.previous_trading_day(system_date))
        closed = await resolve_alert(
            self.redis, Alert(usage.kind, Severity.INFO, previous, f"{usage.name}: system date {system_date} started")
        )
        changes = [c for c in (change, closed) if c is not None]
        for c in changes:
            log.info("limit_alert", kind=usage.kind, dedup_key=c.alert.dedup_key, state=c.state)
        return changes

    async def _firm_cash(self) -> None:
        s = self.settings
        for label, account_no in (("SI", s.si_account_no), ("RF", s.rf_account_no), ("FW", s.fw_account_no)):
            account = await self.broker.trade_account(await self.accounts.of(account_no))
            self.metrics.firm_cash.labels(label).set(float(account.cash))

    async def _due(self, system_date: date) -> None:
        """What is due on today's deadline (the current system date: the previous cycle's transfers) and on
        the next one (the open cycle's); the series of older deadlines are removed."""
        deadlines = {system_date, self.calendar.next_trading_day(system_date)}
        labels = {d.isoformat() for d in deadlines}
        for stale in self.metrics.due_deadlines - labels:  # kept on the metrics: they outlive this term
            self.metrics.due_amount.remove(stale)
            self.metrics.due_transfers.remove(stale)
        for deadline in deadlines:
            self.metrics.due_amount.labels(deadline.isoformat()).set(float(await self.store.amount_due(deadline)))
            self.metrics.due_transfers.labels(deadline.isoformat()).set(await self.store.due_count(deadline))
        self.metrics.due_deadlines = labels

    def _next_cutoff(self, now: datetime) -> datetime:
        """The next 1 PM ET on a trading day, at or after ``now``."""
        today = to_et(now).date()
        if self.calendar.is_trading_day(today) and now <= at_et(today, SETTLEMENT_CUTOFF):
            return at_et(today, SETTLEMENT_CUTOFF)
        return at_et(self.calendar.next_trading_day(today), SETTLEMENT_CUTOFF)
