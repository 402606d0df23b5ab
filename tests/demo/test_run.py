"""``settlekeeper demo`` end to end, as a user runs it: a real subprocess with no configuration at all.

Each run starts in a session of its own, so afterwards every process it started (embedded Redis,
listener, worker) can be looked for by session id in /proc: none may be left.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from tests.support.demo import run_demo, section, session_members, start_demo

DAY_SPEED = "10000"
"""Fast enough for the default run (about 25 s for one deadline), slow enough that the noon settlement
still completes before 1 PM (the clock is capped at 600× around the cutoffs whatever the speed)."""


async def test_one_day_settles_covers_pages_rf_short_and_leaves_nothing_running(tmp_path: Path) -> None:
    """`demo --days 1`: on an RF-short Tuesday some of Monday's transfers settle, the rest lapse, a debit is covered."""
    out, _ = await run_demo("--days", "1", "--speed", DAY_SPEED, log_dir=tmp_path, within=55)
    progress, _, report = out.partition("══ Report")
    assert re.search(
        r"Tue 11-24 12:\d\d  settle +plan for Tue 11-24: settle 3 transfers .* leave 4 \(RF short\)", progress
    )
    assert re.search(r"ALERT +critical rf_short: RF cannot cover 2026-11-24", progress)
    assert "8 PM: 4 unsettled transfers canceled" in progress
    assert "activities stream reconnected" in progress
    settlements = section(report, "Settlements")
    assert re.search(r"settlekeeper .* 3 +6,000\.00 +0\.00 +COMPLETED", settlements)
    covers = section(report, "Covers")
    assert re.search(r"8100000006 +Tue 11-24 +3,200\.00 +3,200\.00 +executed +0\.00", covers)
    assert re.search(r"8100000004 +Tue 11-24 +5,500\.00 +5,500\.00 +pending", covers)
    human = section(report, "Left for a human")
    assert "RF was short on Tue 11-24: 4 transfers lapsed" in human
    assert re.search(r"journal \w+ RF → 8100000004 5,500\.00 is pending", human)
    assert (tmp_path / "listener.log").stat().st_size > 0
    assert (tmp_path / "worker.log").stat().st_size > 0


async def test_ctrl_c_stops_everything_and_reports_what_happened_so_far(tmp_path: Path) -> None:
    """SIGINT mid-week: exit 130 after a report of the run so far, with every child process gone."""
    proc = await start_demo("--speed", DAY_SPEED, log_dir=tmp_path)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"partner   IF transfers" not in await proc.stdout.readline():
                pass
            proc.send_signal(signal.SIGINT)
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130
    assert "interrupted: the report below is what happened so far" in rest.decode()
    assert "══ Report" in rest.decode()
    assert session_members(proc.pid) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_whole_thanksgiving_week(tmp_path: Path) -> None:
    """The default week: partner settles two itself (never twice), Thursday is closed, the pending cover is approved."""
    out, _ = await run_demo("--speed", DAY_SPEED, log_dir=tmp_path, within=170)
    progress, _, report = out.partition("══ Report")
    assert "NYSE closed (Thanksgiving Day): no settlement deadline today" in progress
    assert "Alpaca approves pending journal" in progress
    assert re.search(r"Wed 11-25 \d\d:\d\d  alpaca +settlement \w+ by partner COMPLETED: 2 transfers", progress)
    settlements = section(report, "Settlements")
    assert len(re.findall(r"COMPLETED", settlements)) == 4
    assert re.search(r"partner .* 2 +9,500\.00 .*COMPLETED", settlements)
    covers = section(report, "Covers")
    assert len(re.findall(r"executed +0\.00", covers)) == 2
    human = section(report, "Left for a human")
    assert "is pending" not in human
    assert "in debit" not in human
    assert "not late: 5 transfers (8,200.00) due Mon 11-30" in human
