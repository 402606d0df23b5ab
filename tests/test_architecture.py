"""The layout keeps its promises: the runtime never loads the stand-ins, and modules and functions stay small.

The import contracts themselves (layers, forbidden imports, no circles) are checked by ``lint-imports`` in
the README's test command (``scripts/test.sh``; contracts in ``pyproject.toml``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("funding", "config", "store", "broker", "jobs", "worker", "cli")
"""Layers 1–5: what the production image runs (the sandbox and the demo stand aside)."""
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
REASONS: dict[str, str] = {}
"""A module or function allowed past the limits, with the written reason (none today)."""


def runtime_modules() -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in RUNTIME
        for path in (ROOT / package).rglob("*.py")
    )


def test_the_runtime_loads_neither_the_sandbox_nor_the_demo() -> None:
    """Importing the listener, the command and every runtime module (every job among them) leaves the sandbox
    and the demo unloaded: the production image does not need them."""
    script = (
        "import importlib, sys\n"
        f"for name in {runtime_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sandbox', 'demo', 'bench')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def sizes() -> list[tuple[str, str, int, int]]:
    """(kind, where, lines, limit) of every runtime module and function."""
    found = []
    for package in RUNTIME:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            where = str(path.relative_to(ROOT))
            found.append(("module", where, source.count("\n"), MAX_MODULE_LINES))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    assert node.end_lineno is not None
                    lines = node.end_lineno - node.lineno + 1
                    found.append(("function", f"{where}:{node.name}", lines, MAX_FUNCTION_LINES))
    return found


@pytest.mark.parametrize("kind", ["module", "function"])
def test_runtime_modules_and_functions_stay_small(kind: str) -> None:
    """No runtime module over 450 lines, no function over 80, unless REASONS says why."""
    too_big = [(where, lines) for k, where, lines, limit in sizes() if k == kind and lines > limit]
    assert [(where, lines) for where, lines in too_big if where not in REASONS] == []


def test_every_file_the_architecture_page_names_exists() -> None:
    """Each path docs/architecture.md names (``pkg/module.py``, ``store/lua/*.lua``) is a file of the repository,
    and its walk names at most 8 runtime modules."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_]+/[a-z_/]+\.(?:py|lua|md))`", page))
    assert named, "the page names no files"
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []
    walk = page.split("## One canceled transfer", 1)[1].split("The walk crosses", 1)[0]
    walked = {path for path in re.findall(r"`([a-z_]+/[a-z_]+\.py)`", walk) if path.split("/")[0] in RUNTIME}
    assert 0 < len(walked) <= 8, sorted(walked)
