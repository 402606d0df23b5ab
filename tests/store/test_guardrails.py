"""Guardrails on money movements: modes, caps, the atomic daily reservation and the kill switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from config.settings import load_settings
from funding.errors import KillSwitchOn
from store import keys
from store.guardrails import Guardrails

DAY = date(2026, 11, 24)
ACTIONS = ("settle", "fund", "cover")


@pytest.fixture
async def client(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the flushed test Redis."""
    connection = aioredis.Redis.from_url(session_redis_url)
    yield connection
    await connection.aclose()


def guard(client: aioredis.Redis, **overrides: Any) -> Guardrails:
    return Guardrails(load_settings({}, **overrides), client)


def moved_cents(redis_client: redis.Redis, day: date = DAY) -> int:
    return int(redis_client.get(keys.moved_today(day)) or 0)


@pytest.mark.parametrize(
    ("broker_url", "mode"),
    [
        ("http://127.0.0.1:8765", "on"),
        ("http://sandbox.internal:8080/", "on"),
        ("https://broker-api.alpaca.markets", "dry-run"),
        ("https://broker-api.sandbox.alpaca.markets", "dry-run"),
    ],
)
def test_default_mode_depends_on_the_broker(broker_url: str, mode: str) -> None:
    """Unset modes are on against a local sandbox and dry-run against any Alpaca host, for every action."""
    settings = load_settings({}, broker_url=broker_url)
    assert [settings.mode(action) for action in ACTIONS] == [mode] * 3


def test_each_action_has_its_own_mode() -> None:
    """SETTLEKEEPER_{SETTLE,FUND,COVER}_MODE set one action each; the others keep their default."""
    settings = load_settings(
        {"SETTLEKEEPER_COVER_MODE": "off", "SETTLEKEEPER_FUND_MODE": "dry-run"},
        broker_url="https://broker-api.alpaca.markets",
    )
    assert (settings.mode("settle"), settings.mode("fund"), settings.mode("cover")) == ("dry-run", "dry-run", "off")
    assert load_settings({}, broker_url="https://broker-api.alpaca.markets", settle_mode="on").mode("settle") == "on"


@pytest.mark.parametrize("action", ACTIONS)
async def test_off_refuses_and_dry_run_allows_without_reserving(
    client: aioredis.Redis, redis_client: redis.Redis, action: str
) -> None:
    """Off refuses with the reason; dry-run allows as a dry run and reserves nothing against the daily cap."""
    off = await guard(client, **{f"{action}_mode": "off"}).check(action, Decimal("10.00"), day=DAY)
    assert (off.allowed, off.dry_run, off.reason) == (False, False, f"{action} mode is off")
    dry = await guard(client, **{f"{action}_mode": "dry-run"}).check(action, Decimal("10.00"), day=DAY)
    assert (dry.allowed, dry.dry_run) == (True, True)
    assert moved_cents(redis_client) == 0


@pytest.mark.parametrize(
    ("action", "cap_setting"),
    [("settle", "max_settlement_amount"), ("fund", "max_daily_amount"), ("cover", "max_cover_per_account")],
)
async def test_amount_over_the_cap_is_refused(client: aioredis.Redis, action: str, cap_setting: str) -> None:
    """An amount equal to its cap passes, a cent more is refused with the cap in the reason (in dry-run too)."""
    for mode in ("on", "dry-run"):
        guardrails = guard(client, **{cap_setting: "100.00", f"{action}_mode": mode})
        assert (await guardrails.check(action, Decimal("100.00"), day=DAY)).allowed
        over = await guardrails.check(action, Decimal("100.01"), day=DAY)
        assert not over.allowed
        assert "exceeds the cap of 100.00" in over.reason


async def test_settlements_do_not_count_against_the_daily_cap(
    client: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """Only money leaving RF (fund, cover) is reserved; a settlement is paid from SI."""
    guardrails = guard(client, max_daily_amount="100.00")
    assert (await guardrails.check("settle", Decimal("500.00"), day=DAY)).allowed
    assert moved_cents(redis_client) == 0
    assert (await guardrails.check("cover", Decimal("60.00"), day=DAY)).allowed
    assert (await guardrails.check("fund", Decimal("40.00"), day=DAY)).allowed
    assert moved_cents(redis_client) == 10_000
    refused = await guardrails.check("fund", Decimal("0.01"), day=DAY)
    assert (refused.allowed, refused.reason) == (False, "daily cap of 100.00 would be exceeded")


async def test_daily_cap_is_per_business_day(client: aioredis.Redis, redis_client: redis.Redis) -> None:
    """A full day leaves the next day's budget untouched; the reservation key expires within a week."""
    guardrails = guard(client, max_daily_amount="100.00")
    assert (await guardrails.check("fund", Decimal("100.00"), day=DAY)).allowed
    assert (await guardrails.check("fund", Decimal("100.00"), day=date(2026, 11, 25))).allowed
    assert 0 < redis_client.ttl(keys.moved_today(DAY)) <= 7 * 86400


async def test_concurrent_reservations_never_exceed_the_cap(session_redis_url: str, redis_client: redis.Redis) -> None:
    """4 workers × 50 concurrent reservations of 0.75 against a 50.00 cap: exactly 66 pass, 49.50 reserved."""
    workers = [aioredis.Redis.from_url(session_redis_url) for _ in range(4)]
    try:
        guards = [guard(worker, max_daily_amount="50.00") for worker in workers]
        calls = [g.check("cover" if n % 2 else "fund", Decimal("0.75"), day=DAY) for g in guards for n in range(50)]
        verdicts = await asyncio.gather(*calls)
        assert sum(v.allowed for v in verdicts) == 66
        assert moved_cents(redis_client) == 4_950
        assert await guards[0].fund_budget(DAY) == Decimal("0.50")
    finally:
        for worker in workers:
            await worker.aclose()


async def test_release_gives_the_reservation_back(client: aioredis.Redis, redis_client: redis.Redis) -> None:
    """Releasing a movement that did not happen frees its amount for the next one."""
    guardrails = guard(client, max_daily_amount="100.00")
    assert (await guardrails.check("fund", Decimal("80.00"), day=DAY)).allowed
    assert not (await guardrails.check("fund", Decimal("30.00"), day=DAY)).allowed
    await guardrails.release(Decimal("80.00"), day=DAY)
    assert moved_cents(redis_client) == 0
    assert (await guardrails.check("fund", Decimal("30.00"), day=DAY)).allowed
    assert await guardrails.fund_budget(DAY) == Decimal("70.00")


async def test_kill_switch_refuses_every_action_and_empties_the_budget(
    client: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """With sk:kill set every action is refused with the operator's reason and funding has no budget."""
    guardrails = guard(client)
    redis_client.set(keys.KILL_SWITCH, "incident 42")
    for action in ACTIONS:
        verdict = await guardrails.check(action, Decimal("1.00"), day=DAY)
        assert (verdict.allowed, verdict.reason) == (False, "kill switch is on: incident 42")
    assert await guardrails.fund_budget(DAY) == Decimal(0)
    assert moved_cents(redis_client) == 0


async def test_kill_switch_is_read_immediately_before_the_call(
    client: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """A kill switch set after the check still stops the call; clearing it lets the next call through."""
    guardrails = guard(client)
    assert (await guardrails.check("cover", Decimal("1.00"), day=DAY)).allowed
    await guardrails.before_call()
    redis_client.set(keys.KILL_SWITCH, "stop now")
    with pytest.raises(KillSwitchOn, match="stop now"):
        await guardrails.before_call()
    redis_client.delete(keys.KILL_SWITCH)
    await guardrails.before_call()


async def test_fund_budget_reports_the_full_budget_in_dry_run_and_nothing_when_off(
    client: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """fund_budget is the cap minus today's reservations; off means 0; dry-run reports what would be moved."""
    redis_client.set(keys.moved_today(DAY), 2_500)
    assert await guard(client, max_daily_amount="100.00").fund_budget(DAY) == Decimal("75.00")
    assert await guard(client, max_daily_amount="100.00", fund_mode="dry-run").fund_budget(DAY) == Decimal("75.00")
    assert await guard(client, max_daily_amount="100.00", fund_mode="off").fund_budget(DAY) == Decimal(0)
    redis_client.set(keys.moved_today(DAY), 20_000)
    assert await guard(client, max_daily_amount="100.00").fund_budget(DAY) == Decimal(0)
