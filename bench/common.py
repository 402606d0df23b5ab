"""What both benchmarks share: the sandbox process, its credentials, CPU pinning, and peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

AUTH = aiohttp.encode_basic_auth("sandbox-key", "sandbox-secret")
ROOT = Path(__file__).resolve().parents[1]
SANDBOX_CPU = 1
"""The sandbox runs on CPU 1; the process being measured on CPU 0."""


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


def start_sandbox(customers: int) -> tuple[subprocess.Popen[str], str]:
    """``settlekeeper sandbox`` on a free port, pinned to :data:`SANDBOX_CPU`; returns it and its base URL."""
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "cli.main", "sandbox", "--port", "0", "--customers", str(customers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(SANDBOX_CPU),
        env={**os.environ, "SETTLEKEEPER_LOG_LEVEL": "WARNING"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split("listening on ", 1)[1].strip()
