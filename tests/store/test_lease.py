"""The leader lease against a real Redis (store/lease.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace

import pytest
import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import store.lease
from store import keys
from store.lease import Lease

TTL = 0.3
"""Seconds; short enough that the one test waiting for Redis's own expiry stays well under a second."""


@pytest.fixture
async def aio(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the flushed test Redis."""
    client = aioredis.Redis.from_url(session_redis_url)
    yield client
    await client.aclose()


class RenewalPeriods:
    """Stands in for ``asyncio.sleep`` inside store/lease.py: each call is one renewal period, run by the test."""

    def __init__(self, on_period: Callable[[int], Awaitable[None]]) -> None:
        self.on_period = on_period
        self.delays: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await self.on_period(len(self.delays))


def drive_renewals(monkeypatch: pytest.MonkeyPatch, on_period: Callable[[int], Awaitable[None]]) -> RenewalPeriods:
    periods = RenewalPeriods(on_period)
    monkeypatch.setattr(store.lease, "asyncio", SimpleNamespace(sleep=periods.sleep))
    return periods


class Outage:
    """A client whose connections can be pointed at a closed port (Redis unreachable) and back."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        self.pool = self.client.connection_pool
        self.port = int(self.pool.connection_kwargs["port"])

    async def point_at(self, port: int) -> None:
        self.pool.connection_kwargs["port"] = port
        await self.pool.disconnect()
        self.pool.reset()  # drop the old connections: they would reconnect to their own port

    async def cut(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = int(sock.getsockname()[1])
        await self.point_at(closed)

    async def restore(self) -> None:
        await self.point_at(self.port)


@pytest.fixture
async def outage(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[Outage]:
    """An :class:`Outage` on the flushed test Redis, closed at the end."""
    handle = Outage(session_redis_url)
    yield handle
    await handle.client.aclose()


async def test_acquire_excludes_another_holder(aio: aioredis.Redis) -> None:
    """While one holder has the lease, another cannot acquire it; the key holds the first holder's token."""
    first, second = Lease(aio, TTL), Lease(aio, TTL)
    assert await first.acquire()
    assert not await second.acquire()
    assert (first.held, second.held) == (True, False)
    assert await aio.get(keys.LEADER) == first.token.encode()
    assert 0 < await aio.pttl(keys.LEADER) <= first.ttl_ms


async def test_tokens_are_unique_and_fence_follows_holding(aio: aioredis.Redis) -> None:
    """Each lease has its own token; ``fence`` is that token while held and something else otherwise."""
    first, second = Lease(aio, TTL), Lease(aio, TTL)
    assert first.token != second.token
    assert first.fence != first.token  # not yet acquired
    await first.acquire()
    await second.acquire()
    assert first.fence == first.token
    assert second.fence not in ("", first.token, second.token)


async def test_renew_keeps_the_lease(aio: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each renewal period resets the key's TTL to the full lease, so the holder keeps it."""
    lease = Lease(aio, TTL)
    await lease.acquire()
    seen: list[int] = []

    async def period(n: int) -> None:
        seen.append(await aio.pttl(keys.LEADER))
        await aio.pexpire(keys.LEADER, 100)  # almost expired; only a renewal brings it back
        if n == 4:
            lease.held = False  # stop after this renewal

    periods = drive_renewals(monkeypatch, period)
    lost = asyncio.Event()
    await lease.keep(lost)
    assert not lost.is_set()
    assert periods.delays == [lease.renew_every] * 4
    assert lease.renew_every == pytest.approx(TTL / 3)
    assert all(ttl > 100 for ttl in seen[1:]), seen
    assert 100 < await aio.pttl(keys.LEADER) <= lease.ttl_ms
    assert await aio.get(keys.LEADER) == lease.token.encode()


async def test_taken_over_lease_is_lost_on_next_renew(aio: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """When another token took the key, the next renewal sets ``lost``, drops the fence, and leaves their key."""
    lease = Lease(aio, TTL)
    await lease.acquire()

    async def period(n: int) -> None:
        if n == 2:
            await aio.set(keys.LEADER, "other")

    periods = drive_renewals(monkeypatch, period)
    lost = asyncio.Event()
    await lease.keep(lost)
    assert lost.is_set()
    assert len(periods.delays) == 2  # renewed once, lost at the second
    assert not lease.held
    assert lease.fence != lease.token
    await lease.release()
    assert await aio.get(keys.LEADER) == b"other"


async def test_release_lets_another_acquire_at_once(aio: aioredis.Redis) -> None:
    """A released lease can be taken by a standby immediately, without waiting for the TTL."""
    first, second = Lease(aio, 30), Lease(aio, 30)
    await first.acquire()
    await first.release()
    assert not first.held
    assert await second.acquire()
    assert await aio.get(keys.LEADER) == second.token.encode()


async def test_release_never_deletes_another_holders_key(aio: aioredis.Redis) -> None:
    """Releasing a lease whose key now holds another token leaves that key in place."""
    lease = Lease(aio, 30)
    await lease.acquire()
    await aio.set(keys.LEADER, "other")
    await lease.release()
    assert await aio.get(keys.LEADER) == b"other"


async def test_unrenewed_lease_expires_after_ttl(aio: aioredis.Redis) -> None:
    """Without renewal the key expires after the TTL (Redis's clock) and a standby can then acquire."""
    first, second = Lease(aio, TTL), Lease(aio, TTL)
    await first.acquire()
    assert not await second.acquire()
    await asyncio.sleep(await aio.pttl(keys.LEADER) / 1000 + 0.05)  # real wait: the TTL is Redis's own clock
    assert await second.acquire()
    assert await aio.get(keys.LEADER) == second.token.encode()


@pytest.mark.parametrize(("outage_periods", "lost_expected"), [(2, False), (None, True)])
async def test_renew_failures_lose_the_lease_only_after_a_whole_ttl(
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
    outage_periods: int | None,
    lost_expected: bool,
) -> None:
    """Redis unreachable for less than the TTL only warns; unreachable for a whole TTL, the leader deposes itself."""
    lease = Lease(outage.client, TTL)
    assert await lease.acquire()
    await outage.cut()
    step = 0.125  # fake seconds per renewal period (exact in binary); TTL 0.3 s spans 2 periods, not 3
    now = [0.0]
    monkeypatch.setattr(store.lease, "time", SimpleNamespace(monotonic=lambda: now[0]))

    async def period(n: int) -> None:
        now[0] += step
        if outage_periods is not None and n == outage_periods + 1:
            await outage.restore()
        if n == 4:
            lease.held = False  # stop, if still held, after this renewal

    periods = drive_renewals(monkeypatch, period)
    lost = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        await lease.keep(lost)
    failures = [e for e in logs if e["event"] == "lease_renew_failed"]
    assert lost.is_set() is lost_expected
    tolerated = int(TTL // step)  # failed renewals inside one TTL
    assert len(failures) == (outage_periods if outage_periods is not None else tolerated)
    assert len(periods.delays) == (4 if not lost_expected else tolerated + 1)
    assert [e["event"] for e in logs].count("lease_lost") == int(lost_expected)
