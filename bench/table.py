"""The benchmark's one table: each figure with its target, the baseline measured in the same run, and the ratio."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import REDIS_SERVER


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``value`` (in ``unit``) against its target; ``ratio`` is value ÷ baseline."""

    name: str
    value: float
    unit: str
    target: str
    met: bool
    baseline: str = ""
    ratio: float | None = None


def _number(value: float, unit: str) -> str:
    if unit in ("events/s", "B", "transfers"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    return f"{value:,.2f} {unit}"


def render(figures: list[Figure], machine: str) -> str:
    """The table as Markdown (pasted as is into the README), then the machine and the summary line."""
    rows = [
        "| figure | value | target | baseline (same run) | ratio | |",
        "|---|---:|---|---|---:|---|",
    ]
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:,.2f}×"
        rows.append(
            f"| {f.name} | {_number(f.value, f.unit)} | {f.target} | {f.baseline} | {ratio} | "
            f"{'met' if f.met else 'missed'} |"
        )
    met = sum(1 for f in figures if f.met)
    rows += ["", f"machine: {machine}", f"bench: {len(figures)} figures, {met} met, {len(figures) - met} missed"]
    return "\n".join(rows)


def machine() -> str:
    """Where the figures were measured: date, CPU model and cores, memory, Python, Redis."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem_kb = next(
        (int(row.split()[1]) for row in Path("/proc/meminfo").read_text().splitlines() if row.startswith("MemTotal")),
        0,
    )
    try:
        redis_version = subprocess.run(  # noqa: S603
            [REDIS_SERVER, "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.split()[2]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        redis_version = "redis ?"
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {model}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB, "
        f"Python {platform.python_version()}, Redis {redis_version.removeprefix('v=')}"
    )
