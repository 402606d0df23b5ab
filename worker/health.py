"""The listener's HTTP endpoints: ``/healthz`` (alive), ``/readyz`` (useful), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from store import keys
from store.lease import Lease
from worker.listener_metrics import ListenerMetrics

if TYPE_CHECKING:
    from worker.stream_reader import StreamReader


class Health:
    """What the probes look at; the listener updates it as it goes."""

    def __init__(self, client: aioredis.Redis, lease: Lease) -> None:
        self.redis = client
        self.lease = lease
        self.role = "starting"
        self.redis_ok = False
        self.credentials_ok = True
        """False once the Broker API refused the credentials, until a call is accepted again."""
        self.readers: Sequence[StreamReader] = []
        self.http_port = 0

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """Ready = Redis answers, the Broker API did not refuse the credentials, and either a leader with
        every stream connected or a healthy standby."""
        try:
            self.redis_ok = bool(await self.redis.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            self.redis_ok = False
        streams = {reader.name: reader.connected for reader in self.readers}
        if self.role == "leader":
            ok = self.redis_ok and bool(streams) and all(streams.values())
        else:
            ok = self.redis_ok and self.role == "standby"
        ok = ok and self.credentials_ok
        return ok, {"role": self.role, "redis": self.redis_ok, "credentials": self.credentials_ok, "streams": streams}


async def publish_state(health: Health, holder: str, since: float, ttl: float) -> None:
    """Write the leader's own report for ``settlekeeper status`` (``sk:listener``), expiring after ``ttl``."""
    streams = {r.name: {"connected": r.connected, "last_alive": r.last_alive or None} for r in health.readers}
    async with health.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.LISTENER_STATE,
            mapping={"holder": holder, "since": since, "updated_at": time.time(), "streams": json.dumps(streams)},
        )
        pipe.expire(keys.LISTENER_STATE, max(1, math.ceil(ttl)))
        await pipe.execute()


def health_app(health: Health, metrics: ListenerMetrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ok, detail = await health.ready()
        return web.json_response({"ready": ok, **detail}, status=200 if ok else 503)

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app
