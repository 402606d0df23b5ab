#!/usr/bin/env bash
# The product's main job, with no configuration: `settlekeeper demo` plays an accelerated trading week
# (embedded Redis, the Broker API sandbox, the listener and an RQ worker) and ends with a report.
# Extra arguments go to `settlekeeper demo` (e.g. --speed 3000, --days 1, --week-of 2026-12-21).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/settlekeeper demo "$@"
