"""The ``settlekeeper`` command (cli/main.py) as an operator runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = ROOT / ".venv" / "bin" / "settlekeeper"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
OUTPUT_WAIT = 20.0
"""Upper bound on waiting for the subprocess to print (start-up imports can be slow on a busy CI box)."""


def command() -> list[str]:
    """The installed console script, or the module when the venv has no script."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SETTLEKEEPER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLEKEEPER_")}
    env.update(extra)
    return env


@pytest.fixture
async def sandbox_process() -> AsyncIterator[asyncio.subprocess.Process]:
    """``settlekeeper sandbox --port 0`` running; killed at the end if a test left it alive."""
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "sandbox",
        "--port",
        "0",
        cwd=ROOT,
        env=clean_env(SETTLEKEEPER_LOG_FORMAT="json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    yield proc
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def read_until(stream: asyncio.StreamReader, pattern: re.Pattern[str]) -> tuple[re.Match[str], list[str]]:
    """Read lines until one matches ``pattern`` (bounded by OUTPUT_WAIT); return the match and the lines read."""
    seen: list[str] = []
    async with asyncio.timeout(OUTPUT_WAIT):
        while raw := await stream.readline():
            line = raw.decode()
            seen.append(line)
            if match := pattern.search(line):
                return match, seen
    raise AssertionError(f"{pattern.pattern!r} never printed; got {seen!r}")


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
    proc = await asyncio.create_subprocess_exec(
        *command(),
        "sandbox",
        "--port",
        "0",
        cwd=ROOT,
        env=clean_env(SETTLEKEEPER_HTTP_PORT="abc"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(OUTPUT_WAIT):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    assert "SETTLEKEEPER_HTTP_PORT" in stderr.decode()
    assert "listening" not in stdout.decode()
