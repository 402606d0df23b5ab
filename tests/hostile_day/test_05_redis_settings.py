"""Hostile day, item 5: Redis settings and Redis failures are reported clearly, never with a password.

A malformed ``SETTLEKEEPER_REDIS_URL`` stops ``listen`` and ``work`` at start-up with one line naming the
variable (exit 2, no traceback, nothing of the URL repeated). An unreachable Redis or a wrong password makes
neither exit: both log where they tried (host, port, db) and why, the listener's ``/readyz`` and
``settlekeeper_redis_up`` show it, and both carry on once Redis answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.processes import ROOT, Proc, Spawn, environment
from tests.support.redis_server import RedisServer, free_port
from tests.support.sandbox import Sandbox

PASSWORD = "n0t-in-any-log"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("notaurl", "the scheme must be redis, rediss, unix, redis+sentinel or rediss+sentinel"),
        (f"redis://:{PASSWORD}@cache/notadb", "the database (the path after the host) must be a number"),
        (f"redis://:{PASSWORD}@cache:99999/0", "the port is not a number from 1 to 65535"),
        (f"http://:{PASSWORD}@cache:6379/0", "the scheme must be redis, rediss, unix, redis+sentinel or"),
        ("redis:///0", "no host"),
        (f"redis+sentinel://:{PASSWORD}@s1:26379,s2:26379", "the path must be /<master name>[/db]"),
        (f"redis+sentinel://:{PASSWORD}@s1:99999/main/0", "a sentinel port is not a number from 1 to 65535"),
    ],
)
@pytest.mark.parametrize("command", ["listen", "work"])
async def test_item_5_a_malformed_redis_url_stops_start_up_naming_the_variable(
    command: str, url: str, why: str, tmp_path: Path
) -> None:
    """One line on stderr naming SETTLEKEEPER_REDIS_URL and what is wrong, exit status 2, no traceback, and
    the URL (with its password) not repeated."""
    env = environment(url, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", command, cwd=ROOT, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = (out + err).decode()
    assert proc.returncode == 2, text
    assert err.decode().count("\n") == 1, text
    assert "SETTLEKEEPER_REDIS_URL" in text
    assert why in text
    assert "Traceback" not in text
    assert PASSWORD not in text


async def readyz(proc: Proc) -> dict[str, object]:
    port = (await proc.wait_for("listener_started"))["http_port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        body = json.loads(await resp.text())
        return {"status": resp.status, **body}


async def redis_up(proc: Proc) -> float:
    port = (await proc.wait_for("listener_started"))["http_port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("settlekeeper_redis_up ")))


def no_password(*procs: Proc) -> None:
    for proc in procs:
        assert PASSWORD not in json.dumps(proc.logs) + "\n".join(proc.other)
        assert not [line for line in proc.other if "Traceback" in line]


async def test_item_5_an_unreachable_redis_is_named_waited_for_and_recovered_from(
    sandbox: Sandbox, processes: Spawn, tmp_path: Path
) -> None:
    """Nothing listens on the Redis port: ``work`` and ``listen`` keep running and log host, port and db; the
    listener is not ready and its redis_up gauge is 0. Redis starts: both go on by themselves."""
    server = RedisServer(tmp_path, password=PASSWORD, port=free_port())
    env = environment(server.url, sandbox.base_url, http_port="0")
    worker = await processes(["work"], env)
    listener = await processes(["listen"], env)
    where = f"redis://127.0.0.1:{server.port}/0"
    failure = await worker.wait_for("redis_unavailable")
    assert (failure["redis"], failure["level"]) == (where, "error")
    assert "Connection refused" in failure["error"] or "connecting" in failure["error"]
    lease = await listener.wait_for("lease_acquire_failed")
    assert lease["redis"] == where
    assert "ConnectionError" in lease["error"]
    assert (await readyz(listener))["status"] == 503
    assert await redis_up(listener) == 0
    assert worker.proc.returncode is None
    assert listener.proc.returncode is None

    await asyncio.to_thread(server.start)
    try:
        await worker.wait_for("redis_available", within=15)
        await listener.wait_for("lease_acquired", within=15)
        assert await redis_up(listener) == 1
        no_password(worker, listener)
    finally:
        await asyncio.to_thread(server.stop)


async def test_item_5_a_wrong_redis_password_is_named_without_the_password(
    sandbox: Sandbox, processes: Spawn, tmp_path: Path
) -> None:
    """Redis refuses the password: both processes say so, with where, and keep trying; the password appears
    nowhere in their output."""
    server = RedisServer(tmp_path, password="the-right-one", port=free_port())
    await asyncio.to_thread(server.start)
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        env = environment(url, sandbox.base_url, http_port="0")
        worker = await processes(["work"], env)
        listener = await processes(["listen"], env)
        failure = await worker.wait_for("redis_unavailable")
        assert "invalid username-password pair" in failure["error"] or "AuthenticationError" in failure["error"]
        lease = await listener.wait_for("lease_acquire_failed")
        assert lease["redis"] == f"redis://127.0.0.1:{server.port}/0"
        assert (await readyz(listener))["redis"] is False
        await worker.wait_for("redis_unavailable", attempt=2)
        assert worker.proc.returncode is None
        assert listener.proc.returncode is None
        no_password(worker, listener)
    finally:
        await asyncio.to_thread(server.stop)
