"""Running the listener in-process against a sandbox, and waiting for what it does."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from ulid import ULID

from config.settings import Settings, load_settings
from store import keys
from store.transfers import TransferStore
from tests.support.sandbox import MONDAY_10AM, Sandbox
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


INJECTED_ID = str(ULID.from_int(int(MONDAY_10AM.timestamp() * 1000) << 80))
"""A ULID sorting before every event the sandbox emits from Monday 10:00 ET on (random part 0)."""


def activity(account: str, /, **changes: Any) -> dict[str, Any]:
    """A well-formed MEM activity of ``account``; ``changes`` replace fields (None removes one)."""
    event: dict[str, Any] = {
        "event_id": INJECTED_ID,
        "account_id": account,
        "at": "2026-11-23T15:00:00Z",
        "activity_type": "MEM",
        "status": "executed",
        "net_amount": "0",
        "description": "type: instant_funding_memopost",
        "details": {"transfer_id": str(uuid.uuid4())},
    }
    event.update(changes)
    return {name: value for name, value in event.items() if value is not None}


def sample(running: RunningListener, name: str, **labels: str) -> float:
    return running.listener.metrics.registry.get_sample_value(name, labels) or 0.0


async def dead_letters(store: TransferStore) -> list[dict[str, str]]:
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], await store.redis.xrange(keys.DEAD_LETTERS))
    return [json.loads(fields[b"entry"]) for _, fields in rows]
