"""What the benchmarks share: the sandbox and Redis processes, credentials, CPU pinning, and peak memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis

AUTH = aiohttp.encode_basic_auth("sandbox-key", "sandbox-secret")
ROOT = Path(__file__).resolve().parents[1]
SANDBOX_CPU = 1
"""The sandbox and Redis run on CPU 1; the process being measured on :data:`MEASURED_CPU`."""
MEASURED_CPU = 0
REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def pinned(cpu: int) -> Callable[[], None]:
    """A preexec_fn pinning the child to ``cpu`` (when the machine has it), so measured and measuring
    processes do not share a core."""

    def pin() -> None:
        count = os.cpu_count() or 1
        if hasattr(os, "sched_setaffinity") and count > cpu:
            os.sched_setaffinity(0, {cpu})

    return pin


def measured(
    module: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` alone on :data:`MEASURED_CPU`, its output captured (a benchmark's child)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=1200,
        check=check,
        preexec_fn=pinned(MEASURED_CPU),
    )


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_sandbox(customers: int) -> tuple[subprocess.Popen[str], str]:
    """``settlekeeper sandbox`` on a free port, pinned to :data:`SANDBOX_CPU`; returns it and its base URL."""
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "cli.main", "sandbox", "--port", "0", "--customers", str(customers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(SANDBOX_CPU),
        env=bench_env(SETTLEKEEPER_LOG_LEVEL="WARNING"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split("listening on ", 1)[1].strip()


@contextlib.contextmanager
def sandbox(customers: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The sandbox for a block; stopped when it exits."""
    proc, base = start_sandbox(customers)
    try:
        yield proc, base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # a sandbox holding millions of objects can take long to exit
            proc.kill()
            proc.wait(30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of its own (nothing on disk), pinned beside the sandbox; yields its URL."""
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        preexec_fn=pinned(SANDBOX_CPU),
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a measured process: no SETTLEKEEPER_* setting of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLEKEEPER_")}
    return env | extra


def settlekeeper_env(base: str, url: str, **extra: str) -> dict[str, str]:
    """Production settings against the sandbox and the bench's Redis, quiet logs."""
    return bench_env(
        SETTLEKEEPER_REDIS_URL=url,
        SETTLEKEEPER_BROKER_URL=base,
        SETTLEKEEPER_LOG_FORMAT="json",
        SETTLEKEEPER_LOG_LEVEL="WARNING",
        **extra,
    )


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    """One admin or API call to the sandbox; a refusal ends the benchmark with what it said."""
    async with http.request(method, url, json=body) as resp:
        if resp.status >= 300:
            raise SystemExit(f"{method} {url} → {resp.status}: {(await resp.text())[:300]}")
        return None if resp.status == 204 else await resp.json()


def admin() -> aiohttp.ClientSession:
    """A session with the sandbox's credentials."""
    return aiohttp.ClientSession(headers={"Authorization": AUTH}, timeout=aiohttp.ClientTimeout(total=600))
