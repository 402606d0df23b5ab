"""The settlekeeper command as an operator runs it: a real subprocess, its output read line by line."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

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


async def start(*args: str, env: dict[str, str], new_session: bool = False) -> asyncio.subprocess.Process:
    """``settlekeeper <args>`` from the repository, its output piped."""
    return await asyncio.create_subprocess_exec(
        *command(),
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=new_session,
    )


async def finish(proc: asyncio.subprocess.Process, within: float = OUTPUT_WAIT) -> tuple[bytes, bytes]:
    """The rest of ``proc``'s (stdout, stderr) once it exits within ``within`` seconds; killed otherwise."""
    try:
        async with asyncio.timeout(within):
            return await proc.communicate()
    finally:
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
