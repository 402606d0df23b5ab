"""Which Hypothesis profile runs (tests/fuzz/conftest.py registers both), and example counts of the slower targets."""

from __future__ import annotations

import os

LONG = os.environ.get("SETTLEKEEPER_FUZZ") == "long"
"""``SETTLEKEEPER_FUZZ=long`` selects the long profile."""
DEFAULT_EXAMPLES = 200
LONG_EXAMPLES = 10_000


def examples(default: int) -> int:
    """Examples for a target slower than most: ``default`` (under 200) in the default profile, so the folder stays
    under 40 s, and as many as any other target in the long one."""
    return LONG_EXAMPLES if LONG else default
