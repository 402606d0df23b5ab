"""``settlekeeper chaos``: trading days with processes killed, Redis restarted and Alpaca failing; every invariant
holds. The short run is part of the suite; the long one (20 trading days) is ``-m slow``."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT, clean_env

SHORT_SEED = 4
LAST_LINE = re.compile(r"^chaos: (\d+) days, (\d+) kills, (\d+) Redis restarts, (\d+) violations$")


async def chaos(tmp_path: Path, *args: str, within: float) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "chaos",
        "--log-dir",
        str(tmp_path / "logs"),
        *args,
        cwd=ROOT,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines()


def table(lines: list[str]) -> dict[str, str]:
    """The run's table rows: name → value."""
    rows = {}
    for line in lines:
        if line.startswith("  ") and "  " in line.strip():
            name, _, value = line.strip().partition("  ")
            rows[name.strip()] = value.strip()
    return rows


def count(rows: dict[str, str], *names: str) -> int:
    return sum(int(rows[name].split()[0]) for name in names)


@pytest.mark.timeout(330)
async def test_the_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    """Three trading days and Thanksgiving: at least 10 kills of the listeners and of the workers, 2 Redis
    restarts (one losing its last second), every sandbox fault kind; exit 0 with 0 violations of each invariant."""
    code, lines = await chaos(tmp_path, "--seed", str(SHORT_SEED), within=300)
    rows = table(lines)
    assert code == 0, "\n".join(lines[-40:])
    match = LAST_LINE.match(lines[-1])
    assert match is not None, lines[-1]
    assert (int(match[1]), int(match[4])) == (4, 0)
    listener_kinds = ("leader", "standby", "listener")
    assert count(rows, *(f"kills: {k}" for k in listener_kinds)) >= 10
    assert count(rows, *(f"kills: {k}_term" for k in listener_kinds)) >= 1
    assert count(rows, "kills: worker") >= 10
    assert count(rows, "kills: worker_term") >= 1
    assert int(rows["Redis restarts"].split()[0]) >= 2
    assert not rows["Redis restarts"].split("(")[1].startswith("0 losing")
    faults = {name for name, value in rows.items() if name.startswith("fault: ")}
    assert len(faults) == 11
    assert all(int(rows[name]) >= 1 for name in faults)
    assert rows["RF-short deadlines"] == "2026-11-27"
    invariants = [line for line in lines if line.strip().endswith(" 0") and "violations" not in line]
    assert len(invariants) >= 9


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_the_long_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    """Twenty trading days from 2026-11-02 (Veterans Day, weekends, Thanksgiving): at least 100 kills and 10 Redis
    restarts, 3 or more of them losing the last second; 0 violations."""
    code, lines = await chaos(tmp_path, "--days", "20", within=3500)
    rows = table(lines)
    print("\n".join(lines))
    assert code == 0, "\n".join(lines[-40:])
    match = LAST_LINE.match(lines[-1])
    assert match is not None, lines[-1]
    assert int(match[2]) >= 100
    assert int(match[3]) >= 10
    assert int(rows["Redis restarts"].split("(")[1].split()[0]) >= 3
    assert int(match[4]) == 0
