"""settlekeeper commands as real processes: their JSON log lines collected, killed as Kubernetes would.

Each process is started in a session (a process group) of its own, so :meth:`Proc.kill_group` SIGKILLs it
with every child it forked (an RQ worker's scheduler and work horse), as a container kill does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """One ``python -m cli.main <command>`` process and the log lines it wrote."""

    command: list[str]
    proc: asyncio.subprocess.Process
    logs: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                entry = json.loads(line)
            except ValueError:
                self.other.append(line)
                continue
            if isinstance(entry, dict):
                self.logs.append(entry)
            else:
                self.other.append(line)

    def events(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, name: str, within: float = 20.0, **fields: Any) -> dict[str, Any]:
        """The first log line ``name`` with ``fields``, waiting at most ``within`` seconds for it."""
        deadline = time.monotonic() + within
        while not (found := self.events(name, **fields)):
            if time.monotonic() > deadline:
                tail = [e.get("event") for e in self.logs[-15:]]
                raise AssertionError(f"no {name} {fields} within {within} s; logged {tail}, other {self.other[-5:]}")
            await asyncio.sleep(0.02)
        return found[0]

    def kill_group(self) -> None:
        """SIGKILL the process and everything it forked, as a container kill does (no handler, no clean-up
        runs). Its group, and every descendant: an RQ work horse starts a session of its own."""
        tree = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def ended(self, within: float = 15.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self.pump is not None:
            await asyncio.wait_for(self.pump, within)
        return code


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (read from /proc: children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def environment(redis_url: str, broker_url: str, **settings: str) -> dict[str, str]:
    """A clean environment: PATH and HOME, settlekeeper's settings for this test, JSON logs."""
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    env |= {
        "SETTLEKEEPER_REDIS_URL": redis_url,
        "SETTLEKEEPER_BROKER_URL": broker_url,
        "SETTLEKEEPER_LOG_FORMAT": "json",
    }
    env.update({f"SETTLEKEEPER_{name.upper()}": value for name, value in settings.items()})
    return env


Spawn = Callable[..., Awaitable[Proc]]
