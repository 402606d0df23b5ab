"""``bench/run`` still runs end to end (tiny sizes: this checks that it works and reports, not how fast anything is)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import clean_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_bench_run_prints_every_figure_and_its_summary_line() -> None:
    """Every group runs, each figure has a row with a verdict, and the last line counts them."""
    done = subprocess.run(
        [str(ROOT / "bench" / "run"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and line.endswith(("| met |", "| missed |"))
    ]
    names = " ".join(rows)
    for figure in (
        "raw reader's ceiling",
        "naive consumer",
        "backlog",
        "p99",
        "storm",
        "settle day",
        "peak RSS",
        "growth",
        "Redis memory",
    ):
        assert figure in names, done.stdout[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"bench: (\d+) figures, (\d+) met, (\d+) missed", last)
    assert match is not None, last
    assert int(match[1]) == len(rows) == int(match[2]) + int(match[3])
