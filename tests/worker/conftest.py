"""Fixtures for the listener: run it in-process against a sandbox and a flushed real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from config.settings import Settings, load_settings
from store.transfers import TransferStore
from tests.conftest import Sandbox
from worker.listener import Listener


@dataclass
class RunningListener:
    """A listener task plus what tests need to steer and inspect it."""

    listener: Listener
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def halt(self, within: float = 10.0) -> None:
        """SIGTERM-equivalent: set stop and wait for a clean return."""
        self.stop.set()
        await asyncio.wait_for(self.task, within)


def listener_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    """Settings pointing at ``sandbox``: fast heartbeat watchdog, short lease, quick backoff."""
    values: dict[str, Any] = {
        "broker_url": sandbox.base_url,
        "http_port": 0,
        "heartbeat_seconds": 0.2,
        "sandbox_heartbeat_seconds": 0.2,
        "lease_ttl_seconds": 1.5,
        "backoff_base_seconds": 0.05,
        "backoff_cap_seconds": 0.2,
        "heal_interval_seconds": 3600,
        "log_format": "json",
    }
    values.update(overrides)
    return load_settings({}, **values)


ListenerFactory = Callable[..., Awaitable[RunningListener]]


@pytest.fixture
async def start_listener(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[ListenerFactory]:
    """Factory: start a listener for a sandbox (settings overridable); all are stopped at the end."""
    running: list[RunningListener] = []

    async def start(sandbox: Sandbox, **overrides: Any) -> RunningListener:
        listener = Listener(listener_settings(sandbox, **overrides), session_redis_url)
        stop = asyncio.Event()
        task = asyncio.create_task(listener.run(stop))
        handle = RunningListener(listener, task, stop)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop.set()
    for handle in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.task, 10)


@pytest.fixture
async def store(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[TransferStore]:
    """A TransferStore on the flushed test Redis."""
    client = aioredis.Redis.from_url(session_redis_url)
    yield TransferStore(client)
    await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.05) -> None:
    """Poll ``check`` until it is true (I/O-bound convergence, bounded); fail with a clear message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s: {check.__name__}")
        await asyncio.sleep(every)
