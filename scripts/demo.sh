#!/usr/bin/env bash
# The product's main job, with no configuration: for now the Broker API sandbox, seeded.
# Extra arguments go to `settlekeeper sandbox` (e.g. --port 0 --speed 60).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/settlekeeper sandbox "$@"
