"""What both benchmarks share: sandbox credentials, CPU pinning, and a process's peak memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import aiohttp

AUTH = aiohttp.encode_basic_auth("sandbox-key", "sandbox-secret")


def pinned(cpu: int) -> Callable[[], None]:
    """A preexec_fn pinning the child to ``cpu`` (when the machine has it), so measured and measuring
    processes do not share a core."""

    def pin() -> None:
        count = os.cpu_count() or 1
        if hasattr(os, "sched_setaffinity") and count > cpu:
            os.sched_setaffinity(0, {cpu})

    return pin


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
