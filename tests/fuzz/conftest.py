"""Hypothesis profiles for the fuzz targets of tests/fuzz/ (one module per place settlekeeper parses outside input).

- ``fuzz`` (the default): 200 examples per target (100 to 150 for the few slowest, see ``profiles.examples``),
  derandomized (the same examples on every run, so CI is reproducible), the whole folder in under 40 s on two
  cores.
- ``long``: 10,000 examples per target, random (a new search each run), no deadline, no per-test timeout.
  Select it with the environment variable ``SETTLEKEEPER_FUZZ=long``::

      SETTLEKEEPER_FUZZ=long .venv/bin/pytest -q tests/fuzz --hypothesis-show-statistics

Both keep no example database (``database=None``), and Hypothesis' other caches go to the system's temporary
directory: nothing is written into the checkout (no ``.hypothesis`` directory). A failure prints the
falsifying example; each defect the targets found is pinned by a plain regression test next to its target.
Targets whose examples cross a socket set ``deadline=None`` themselves; the pure ones keep a deadline of one
second per example, so an input that makes a parser crawl fails too.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.fuzz.profiles import DEFAULT_EXAMPLES, LONG, LONG_EXAMPLES

SLOW_INPUTS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
"""Giant lines, strings and CSVs are the point of these targets, not a mistake of the strategy."""

set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "settlekeeper-hypothesis"))
"""Hypothesis caches what it learns of the code under test (constants, Unicode tables) there, not in ./.hypothesis."""

settings.register_profile(
    "fuzz",
    max_examples=DEFAULT_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=1000,
    suppress_health_check=SLOW_INPUTS,
)
settings.register_profile(
    "long", max_examples=LONG_EXAMPLES, database=None, deadline=None, suppress_health_check=SLOW_INPUTS
)
settings.load_profile("long" if LONG else "fuzz")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long profile runs for minutes per target: lift the suite's 60 s per-test timeout for tests/fuzz."""
    if LONG:
        here = os.path.dirname(__file__)
        for item in items:
            if str(item.path).startswith(here):
                item.add_marker(pytest.mark.timeout(3600))
