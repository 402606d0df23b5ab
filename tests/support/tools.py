"""Tools some tests run (Debian packages, not Python ones): skipped without them on a developer's machine, a
failure in CI (``CI=true``), whose ``.ci/run`` installs them."""

from __future__ import annotations

import os
import shutil

import pytest


def require(packages: dict[str, str]) -> dict[str, str]:
    """The path of each tool in ``packages`` (tool → the Debian package holding it), or skip / fail naming
    what is missing."""
    found = {tool: shutil.which(tool) for tool in packages}
    missing = sorted(tool for tool, path in found.items() if path is None)
    if missing:
        needed = ", ".join(f"{tool} (Debian: {packages[tool]})" for tool in missing)
        reason = f"needs {needed}; .ci/run installs them"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(reason)
        pytest.skip(reason)
    return {tool: path for tool, path in found.items() if path is not None}
