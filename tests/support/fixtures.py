"""Every shared fixture (registered for the whole suite by tests/conftest.py): a real Redis, the sandbox, jobs,
the listener, processes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web

from config.settings import Settings, load_settings
from sandbox.app import create_app
from sandbox.clock_control import SandboxClock
from sandbox.state import SeedConfig
from store.clients import async_client, connect, redis_url
from store.transfers import TransferStore
from tests.support.jobs import JOB_ENV, RunWorker, burst
from tests.support.listener import ListenerFactory, RunningListener, listener_settings
from tests.support.processes import ROOT, Proc, Spawn
from tests.support.redis_server import ManagedRedisServer, RedisServer, redis_server
from tests.support.sandbox import MONDAY_10AM, Sandbox, SandboxFactory
from tests.support.tools import require
from worker.listener import Listener


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


@pytest.fixture
def job_env(sandbox: Sandbox, session_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the jobs' settings at ``sandbox`` and the test Redis; call it again with overrides (name=value,
    SETTLEKEEPER_ added)."""

    def configure(target: Sandbox = sandbox, **overrides: Any) -> None:
        monkeypatch.setenv("SETTLEKEEPER_BROKER_URL", target.base_url)
        monkeypatch.setenv("SETTLEKEEPER_REDIS_URL", session_redis_url)
        for name, value in JOB_ENV.items():
            monkeypatch.setenv(name, value)
        for name, value in overrides.items():
            monkeypatch.setenv(f"SETTLEKEEPER_{name.upper()}", str(value))

    configure()
    return configure


@pytest.fixture
def run_worker(session_redis_url: str, redis_client: redis.Redis) -> RunWorker:
    """Run a real RQ worker in burst mode (in a thread, so the in-process sandbox keeps serving)."""

    async def run() -> bool:
        return await burst(session_redis_url)

    return run


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
async def async_redis(session_redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on the flushed test Redis (built as every process builds one)."""
    client = async_client(session_redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(async_redis: aioredis.Redis) -> TransferStore:
    """A TransferStore on the flushed test Redis."""
    return TransferStore(async_redis)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with a password and AOF everysec, restartable, for this test alone."""
    with redis_server(tmp_path) as running:
        yield running


@pytest.fixture
def managed_server(tmp_path: Path) -> Iterator[ManagedRedisServer]:
    """A Redis as a managed service runs one (TLS only, an ACL user, the default user off), for this test."""
    require({"redis-server": "redis-server", "openssl": "openssl"})
    with redis_server(tmp_path, ManagedRedisServer) as running:
        assert isinstance(running, ManagedRedisServer)
        yield running


@pytest.fixture
async def processes() -> AsyncIterator[Spawn]:
    """Factory: start ``settlekeeper <args>`` with an environment; every process is killed at the end."""
    started: list[Proc] = []

    async def start(args: list[str], env: dict[str, str]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        handle = Proc(args, proc)
        handle.pump = asyncio.create_task(handle._pump())
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.kill_group()
    for handle in started:
        await handle.ended()
