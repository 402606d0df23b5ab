"""The limits monitor (worker/limits.py): IF and JIT limit usage as gauges and alerts, plus the business gauges."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time

import pytest
import redis
import redis.asyncio as aioredis

from broker.client import BrokerClient
from funding.calendar import TradingCalendar, at_et
from funding.models import InstantFunding
from jobs.registry import ALERT_QUEUE, queue
from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, eventually, listener_settings
from tests.support.sandbox import MONDAY_10AM, Sandbox, SandboxFactory
from tests.support.settle import alerts, hash_of
from worker.limits import LimitsMonitor
from worker.listener_metrics import ListenerMetrics

MONDAY, TUESDAY, WEDNESDAY, FRIDAY = (date(2026, 11, d) for d in (23, 24, 25, 27))
SMALL_LIMITS = {"if_correspondent_limit": "1000", "if_account_limit": None, "jit_daily_net_limit": "1000"}
"""Limits small enough that a few transfers or trades cross 80 % and 95 %."""


@dataclass
class Monitor:
    """A limits monitor on a sandbox, with a clock the test moves and its own metrics registry."""

    monitor: LimitsMonitor
    metrics: ListenerMetrics
    clock: list[datetime]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(f"settlekeeper_{name}", labels)


MonitorFactory = Callable[[Sandbox], Awaitable[Monitor]]


@pytest.fixture
async def monitor_for(
    session_redis_url: str, redis_client: redis.Redis, store: TransferStore
) -> AsyncIterator[MonitorFactory]:
    """Factory: a monitor polling ``sandbox``; its clock starts at Monday 10:00 ET (the sandbox's)."""
    async with contextlib.AsyncExitStack() as stack:
        client = aioredis.Redis.from_url(session_redis_url)
        stack.push_async_callback(client.aclose)

        async def build(sandbox: Sandbox) -> Monitor:
            settings = listener_settings(sandbox)
            broker = await stack.enter_async_context(BrokerClient(settings))
            metrics = ListenerMetrics()
            clock = [MONDAY_10AM]
            monitor = LimitsMonitor(
                settings, broker, client, redis_client, store, metrics, lambda: clock[0], TradingCalendar()
            )
            return Monitor(monitor, metrics, clock)

        yield build


def alert_state(redis_client: redis.Redis, dedup_key: str) -> tuple[str, str]:
    """(state, severity rank) of an alert hash; ("", "") when it was never raised."""
    found = hash_of(redis_client, keys.alert(dedup_key))
    return found.get("state", ""), found.get("rank", "")


async def trade(sandbox: Sandbox, account: str, side: str, qty: str, price: str, symbol: str = "AAPL") -> None:
    body = {"account_no": account, "symbol": symbol, "side": side, "qty": qty, "price": price}
    await sandbox.ok("POST", "/sandbox/trades", body)


async def test_if_limit_warns_at_80_escalates_at_95_and_resolves_when_cancellations_free_it(
    make_sandbox: SandboxFactory, monitor_for: MonitorFactory, redis_client: redis.Redis
) -> None:
    """800 of 1,000 in use: warning; 950: critical; a canceled transfer brings it to 450: resolved."""
    sandbox = await make_sandbox(**SMALL_LIMITS)
    handle = await monitor_for(sandbox)
    key = f"if-limit-{MONDAY}"
    first = await sandbox.create_transfer("8100000001", "500.00")
    await sandbox.create_transfer("8100000002", "300.00")
    await handle.monitor.poll()
    assert handle.sample("if_limit_usage_ratio") == pytest.approx(0.8)
    assert (handle.sample("if_limit_amount_in_use_dollars"), handle.sample("if_limit_amount_limit_dollars")) == (
        800.0,
        1000.0,
    )
    assert alert_state(redis_client, key) == ("triggered", "1")
    [warning] = alerts(redis_client, "if_limit")
    assert (warning["severity"], warning["in_use"], warning["limit"], warning["system_date"]) == (
        "warning",
        "800.00",
        "1000.00",
        MONDAY.isoformat(),
    )
    assert "instant funding limit 80% used: 800.00 of 1,000.00" in warning["summary"]

    await sandbox.create_transfer("8100000003", "150.00")
    await handle.monitor.poll()
    await handle.monitor.poll()  # unchanged usage: no new state
    assert handle.sample("if_limit_usage_ratio") == pytest.approx(0.95)
    assert alert_state(redis_client, key) == ("triggered", "2")

    await sandbox.ok("DELETE", f"/v1/instant_funding/{first['id']}")
    await handle.monitor.poll()
    assert handle.sample("if_limit_usage_ratio") == pytest.approx(0.45)
    assert alert_state(redis_client, key)[0] == "resolved"
    assert [(a["action"], a["severity"]) for a in alerts(redis_client, "if_limit")] == [
        ("trigger", "warning"),
        ("trigger", "critical"),
        ("resolve", "info"),
    ]
    assert redis_client.scard(keys.ALERT_OUTBOX) == 0
    assert len(queue(ALERT_QUEUE, redis_client).job_ids) == 3  # one delivery per state: warning, escalation, resolve
    assert handle.sample("limits_polls_total") == 4.0


async def test_jit_limit_warns_escalates_and_resolves_when_sells_bring_the_net_down(
    make_sandbox: SandboxFactory, monitor_for: MonitorFactory, redis_client: redis.Redis
) -> None:
    """Net buys of 800 of a 1,000 daily net limit: warning; 960: critical; selling 260 back: resolved."""
    sandbox = await make_sandbox(customer_cash="2000", **SMALL_LIMITS)
    handle = await monitor_for(sandbox)
    key = f"jit-limit-{MONDAY}"
    await trade(sandbox, "8100000001", "buy", "8", "100.00")
    await handle.monitor.poll()
    assert handle.sample("jit_limit_usage_ratio") == pytest.approx(0.8)
    assert alert_state(redis_client, key) == ("triggered", "1")

    await trade(sandbox, "8100000002", "buy", "1", "160.00", symbol="MSFT")
    await handle.monitor.poll()
    assert (handle.sample("jit_limit_in_use_dollars"), handle.sample("jit_limit_daily_net_limit_dollars")) == (
        960.0,
        1000.0,
    )
    assert alert_state(redis_client, key) == ("triggered", "2")
    [_, critical] = alerts(redis_client, "jit_limit")
    assert "buys halt at 100 %" in critical["summary"]

    await trade(sandbox, "8100000001", "sell", "2", "130.00")
    await handle.monitor.poll()
    assert handle.sample("jit_limit_usage_ratio") == pytest.approx(0.7)
    assert alert_state(redis_client, key)[0] == "resolved"
    assert alert_state(redis_client, f"if-limit-{MONDAY}") == ("", "")  # the IF limit was never near


async def test_a_new_system_date_closes_the_previous_incident_and_opens_its_own(
    make_sandbox: SandboxFactory, monitor_for: MonitorFactory, redis_client: redis.Redis
) -> None:
    """Usage still at 90 % after 8 PM: Monday's incident is resolved and Tuesday's is triggered."""
    sandbox = await make_sandbox(**SMALL_LIMITS)
    handle = await monitor_for(sandbox)
    await sandbox.create_transfer("8100000001", "900.00")
    await handle.monitor.poll()
    handle.clock[0] = at_et(MONDAY, time(20, 30))  # transfers created now belong to Tuesday
    await handle.monitor.poll()
    assert alert_state(redis_client, f"if-limit-{MONDAY}")[0] == "resolved"
    assert alert_state(redis_client, f"if-limit-{TUESDAY}") == ("triggered", "1")


async def test_business_gauges_show_firm_cash_what_is_due_and_the_time_to_the_cutoff(
    make_sandbox: SandboxFactory,
    monitor_for: MonitorFactory,
    store: TransferStore,
) -> None:
    """SI/RF/FW cash, the store's due amount and count for today's and the next deadline, seconds to 1 PM ET."""
    sandbox = await make_sandbox(rf_balance="1234.56", si_balance="10.00", fw_balance="7.25")
    handle = await monitor_for(sandbox)
    created = [await sandbox.create_transfer(f"810000000{n}", amount) for n, amount in ((1, "100.00"), (2, "25.50"))]
    for row in created:
        transfer = InstantFunding.model_validate(row)
        await store.record(transfer, source="test", observed_at=MONDAY_10AM)
    await handle.monitor.poll()
    firm = {account: handle.sample("firm_cash_dollars", account=account) for account in ("SI", "RF", "FW")}
    assert firm == {"SI": 10.0, "RF": 1234.56, "FW": 7.25}
    assert handle.sample("due_amount_dollars", deadline=TUESDAY.isoformat()) == 125.5
    assert handle.sample("due_transfers", deadline=TUESDAY.isoformat()) == 2.0
    assert handle.sample("due_transfers", deadline=MONDAY.isoformat()) == 0.0
    assert handle.sample("time_to_cutoff_seconds") == 3 * 3600  # Monday 10:00 → 13:00

    handle.clock[0] = at_et(TUESDAY, time(21, 0))  # Tuesday's cycle is over; Thanksgiving is closed
    await handle.monitor.poll()
    assert handle.sample("due_transfers", deadline=TUESDAY.isoformat()) is None  # old deadlines leave the scrape
    assert handle.sample("due_transfers", deadline=MONDAY.isoformat()) is None
    assert handle.sample("due_transfers", deadline=WEDNESDAY.isoformat()) == 0.0
    assert handle.sample("due_transfers", deadline=FRIDAY.isoformat()) == 0.0
    assert handle.sample("time_to_cutoff_seconds") == 16 * 3600  # to Wednesday 13:00


async def test_a_partner_without_jit_still_gets_the_if_limit_and_the_firm_cash(
    make_sandbox: SandboxFactory, monitor_for: MonitorFactory, redis_client: redis.Redis
) -> None:
    """A 404 from the JIT limits endpoint fails only that part of the poll: counted, the rest is read."""
    sandbox = await make_sandbox(**SMALL_LIMITS)
    handle = await monitor_for(sandbox)
    await sandbox.ok("POST", "/sandbox/faults", {"kind": "http_error", "status": 404, "path": "/v1/transfers/jit"})
    await sandbox.create_transfer("8100000001", "850.00")
    assert await handle.monitor.poll() == ["jit_limit"]
    assert handle.sample("limits_poll_errors_total", part="jit_limit") == 1.0
    assert handle.sample("jit_limit_usage_ratio") == 0.0  # never read: the gauge keeps its initial value
    assert handle.sample("if_limit_usage_ratio") == pytest.approx(0.85)
    assert handle.sample("firm_cash_dollars", account="RF") == 250000.0
    assert alert_state(redis_client, f"if-limit-{MONDAY}") == ("triggered", "1")


async def test_the_leading_listener_polls_and_survives_failing_reads(
    make_sandbox: SandboxFactory, start_listener: ListenerFactory, redis_client: redis.Redis
) -> None:
    """The leader's monitor sets the gauges and raises the alert; failing reads are counted, never fatal."""
    sandbox = await make_sandbox(**SMALL_LIMITS)
    await sandbox.create_transfer("8100000001", "960.00")
    running = await start_listener(sandbox, limits_poll_seconds=0.1)
    registry = running.listener.metrics.registry

    async def polled() -> bool:
        return registry.get_sample_value("settlekeeper_if_limit_usage_ratio") == pytest.approx(0.96)

    await eventually(polled)
    assert alert_state(redis_client, f"if-limit-{MONDAY}") == ("triggered", "2")
    await sandbox.ok(
        "POST", "/sandbox/faults", {"kind": "http_error", "status": 404, "path": "/v1/instant_funding/lim"}
    )

    async def failed() -> bool:
        errors = registry.get_sample_value("settlekeeper_limits_poll_errors_total", {"part": "if_limit"})
        return (errors or 0) >= 2

    await eventually(failed)
    assert registry.get_sample_value("settlekeeper_listener_leader") == 1.0
