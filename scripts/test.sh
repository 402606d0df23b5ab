#!/usr/bin/env bash
# The whole test suite: lint, types, the import contracts (pyproject.toml [tool.importlinter]), then pytest
# against an embedded Redis and the sandbox over HTTP.
# Extra arguments go to pytest (e.g. scripts/test.sh -m slow, or -k journals).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/pytest "$@"
