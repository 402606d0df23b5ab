"""The leader lease: one listener reads; the others stand by and take over within the TTL.

``SET sk:leader <token> NX PX ttl`` takes it; a compare-and-expire script renews it every third of the
TTL; a compare-and-delete releases it on shutdown so a standby takes over at once. A leader that cannot
renew for a whole TTL (dead Redis, partition) considers itself deposed and stops reading; every write
it makes is also fenced by the token inside the store's scripts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from asyncio import wait_for

import redis
import redis.asyncio as aioredis
import structlog

from store import keys

log = structlog.get_logger(__name__)

RENEW_GRACE_SECONDS = 0.05
"""A renewal sent at (or just past) the end of the lease still gets one round trip to prove it is ours."""

_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    def __init__(self, client: aioredis.Redis, ttl_seconds: float) -> None:
        self.redis = client
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = uuid.uuid4().hex
        self.held = False
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def renew_every(self) -> float:
        return self.ttl_ms / 3000

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        self.held = bool(await self.redis.set(keys.LEADER, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew until the lease is lost (someone else holds it, or no renewal for a whole TTL)."""
        last_ok = time.monotonic()
        while self.held:
            await asyncio.sleep(self.renew_every)
            sent = time.monotonic()
            try:  # a hung Redis (partition) is waited on only until the lease would have expired
                renewal = self._renew(keys=[keys.LEADER], args=[self.token, self.ttl_ms])
                renewed = bool(await wait_for(renewal, max(last_ok + self.ttl_ms / 1000 - sent, RENEW_GRACE_SECONDS)))
            except (redis.ConnectionError, redis.TimeoutError, TimeoutError) as exc:
                if time.monotonic() - last_ok < self.ttl_ms / 1000:
                    log.warning("lease_renew_failed", error=type(exc).__name__)
                    continue
                renewed = False
            if not renewed:
                self.held = False
                log.error("lease_lost", holder=self.token[:8])
                lost.set()
                return
            last_ok = sent  # the lease runs from when the renewal was sent, at the latest

    async def release(self) -> None:
        """Give the lease up (only if still ours)."""
        if self.held:
            self.held = False
            try:
                await self._release(keys=[keys.LEADER], args=[self.token])
            except (redis.ConnectionError, redis.TimeoutError):
                log.warning("lease_release_failed")

    @property
    def fence(self) -> str:
        """The token writes are fenced with (``"lost"`` once the lease is lost, which the store refuses;
        never ``''``, which the store's scripts treat as unfenced)."""
        return self.token if self.held else "lost"
