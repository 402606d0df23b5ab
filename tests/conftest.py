"""Shared fixtures: a real Redis (embedded unless SETTLEKEEPER_REDIS_URL is set) and the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web

from config.settings import Settings, load_settings
from funding.calendar import ET
from sandbox.app import create_app
from sandbox.clock_control import SandboxClock
from sandbox.state import SeedConfig
from store.clients import connect, redis_url

MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=ET)
"""Default sandbox time in tests: Monday of Thanksgiving week 2026, 10:00 ET, clock frozen."""


@pytest.fixture(scope="session")
def session_redis_url() -> Iterator[str]:
    """One Redis for the session: SETTLEKEEPER_REDIS_URL if set, else an embedded server."""
    with redis_url(load_settings()) as url:
        yield url


@pytest.fixture
def redis_client(session_redis_url: str) -> Iterator[redis.Redis]:
    """A client on a flushed database."""
    client = connect(session_redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def settings() -> Settings:
    """Settings from an empty environment, with a fast sandbox heartbeat."""
    return load_settings({}, sandbox_heartbeat_seconds=0.2)


@dataclass
class Sandbox:
    """A running sandbox and an authenticated HTTP session to it."""

    base_url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Send a request; return (status, parsed JSON body or text or None)."""
        async with self.http.request(method, self.base_url + path, json=body, **kw) as resp:
            text = await resp.text()
            if not text:
                return resp.status, None
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """Send a request that must succeed (2xx); return its JSON body."""
        status, payload = await self.call(method, path, body, **kw)
        assert 200 <= status < 300, (status, payload)
        return payload

    async def set_clock(self, moment: datetime) -> None:
        await self.ok("POST", "/sandbox/clock", {"set": moment.isoformat()})

    async def advance(self, seconds: float) -> None:
        await self.ok("POST", "/sandbox/clock", {"advance_seconds": seconds})

    async def account_id(self, account_no: str) -> str:
        rows = await self.ok("GET", "/v1/accounts", params={"query": account_no})
        return str(next(r["id"] for r in rows if r["account_number"] == account_no))

    async def trade_account(self, account_no: str) -> dict[str, Any]:
        return dict(await self.ok("GET", f"/v1/trading/accounts/{await self.account_id(account_no)}/account"))

    async def cash(self, account_no: str) -> Decimal:
        return Decimal((await self.trade_account(account_no))["cash"])

    async def create_transfer(self, account_no: str, amount: str, **headers: str) -> dict[str, Any]:
        body = {"account_no": account_no, "source_account_no": "7536050SI", "amount": amount}
        return dict(await self.ok("POST", "/v1/instant_funding", body, headers=headers))


SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def make_sandbox(settings: Settings) -> AsyncIterator[SandboxFactory]:
    """Factory: start a sandbox on a free port with a frozen clock (default Monday 10:00 ET)."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(start_at: datetime = MONDAY_10AM, **seed: Any) -> Sandbox:
        clock = SandboxClock(start_at, frozen=True)
        app = create_app(settings, SeedConfig(**seed), clock=clock)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        auth = aiohttp.encode_basic_auth(
            settings.sandbox_key.get_secret_value(), settings.sandbox_secret.get_secret_value()
        )
        http = aiohttp.ClientSession(headers={"Authorization": auth})
        sessions.append(http)
        return Sandbox(f"http://127.0.0.1:{port}", http, app)

    yield start
    for http in sessions:
        await http.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    """A default sandbox: 10 customers, RF 250,000, settlement delay 30 s, frozen at Monday 10:00 ET."""
    return await make_sandbox()
