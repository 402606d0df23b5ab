"""The ``settlekeeper`` command (cli/main.py) as an operator runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.cli import LISTENING, clean_env, finish, read_until, start


@pytest.fixture
async def sandbox_process() -> AsyncIterator[asyncio.subprocess.Process]:
    """``settlekeeper sandbox --port 0`` running; killed at the end if a test left it alive."""
    proc = await start("sandbox", "--port", "0", env=clean_env(SETTLEKEEPER_LOG_FORMAT="json"))
    yield proc
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_sandbox_serves_the_printed_example_and_stops_on_sigterm(
    sandbox_process: asyncio.subprocess.Process,
) -> None:
    """`settlekeeper sandbox --port 0` prints its URL, answers the printed curl with 10 accounts, exits 0 on SIGTERM."""
    assert sandbox_process.stdout is not None
    listening, _ = await read_until(sandbox_process.stdout, LISTENING)
    base, port = listening.group(1), int(listening.group(2))
    assert port > 0
    example, _ = await read_until(sandbox_process.stdout, re.compile(r"^\s*(curl -s -u \S+ \S+/v1/accounts)\s*$"))
    argv = shlex.split(example.group(1))
    user, _, password = argv[argv.index("-u") + 1].partition(":")
    url = argv[-1]
    assert (url, password) == (f"{base}/v1/accounts", "$S")  # the secret itself is never printed
    headers = {"Authorization": aiohttp.encode_basic_auth(user, "sandbox-secret")}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        accounts = await resp.json()
    customers = [a for a in accounts if re.fullmatch(r"81\d{8}", a["account_number"])]
    assert len(customers) == 10
    assert {a["account_number"] for a in accounts} >= {"7536050SI", "7536050RF", "7536050FW", "7536050DP"}
    sandbox_process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await sandbox_process.wait() == 0


async def test_bad_setting_exits_2_naming_the_variable() -> None:
    """SETTLEKEEPER_HTTP_PORT=abc stops start-up with exit code 2 and a stderr line naming the variable."""
    proc = await start("sandbox", "--port", "0", env=clean_env(SETTLEKEEPER_HTTP_PORT="abc"))
    stdout, stderr = await finish(proc)
    assert proc.returncode == 2
    assert "SETTLEKEEPER_HTTP_PORT" in stderr.decode()
    assert "listening" not in stdout.decode()
