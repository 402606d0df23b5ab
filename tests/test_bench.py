"""Both benchmarks still run end to end (tiny sizes: this checks that they work, not how fast anything is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import clean_env

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "listener_bench.py": (["--events", "3000", "--transfers", "50", "--baseline-events", "500"], "ratio    :"),
    "settle_bench.py": (
        ["--transfers", "300", "--customers", "30", "--baseline-sample", "50"],
        "outcome    : verified",
    ),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_and_prints_its_figures(script: str) -> None:
    """The script exits 0 and prints its comparison against the baseline measured in the same run."""
    args, expected = RUNS[script]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout, done.stdout[-3000:]
