"""Test-only fault injection: die at a named step of a money job, as a SIGKILLed worker would.

``SETTLEKEEPER_FAILPOINT=<name>`` makes the job that reaches :func:`reach` with that name log
``failpoint_reached``, flush its logs, and ``os._exit(137)``: no ``finally``, no RQ bookkeeping, no
lock release, exactly what a SIGKILL or an OOM kill leaves behind. The crash tests
(``tests/jobs/test_crash.py``) kill a real worker at each of :data:`FAILPOINTS` and re-run the job.
Unset (the default) it costs one string comparison.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from config.settings import Settings

log = structlog.get_logger(__name__)

KILLED_EXIT_STATUS = 137
"""128 + SIGKILL: what a shell or Kubernetes reports for a process killed with signal 9."""

FAILPOINTS = (
    "journal.before_call",
    "journal.after_call",
    "journal.after_outcome",
    "settlement.before_call",
    "settlement.after_call",
    "settlement.before_outcome",
    "settlement.after_outcome",
)
"""Every step boundary around a money call: before and after the call, before and after its outcome is saved."""
ALERT_FAILPOINTS = ("alert.after_slack", "alert.after_pagerduty")
"""The alert delivery job's: after a sink's outcome is marked, before the next sink
(``tests/jobs/test_alert_delivery.py``)."""


def reach(settings: Settings, name: str) -> None:
    """Kill the process here if ``settings.failpoint`` names this step; otherwise do nothing."""
    if settings.failpoint != name:
        return
    if settings.live_broker:  # never against Alpaca's own hosts, whatever the environment says
        log.error("failpoint_ignored", failpoint=name, why="SETTLEKEEPER_FAILPOINT is test-only")
        return
    log.warning("failpoint_reached", failpoint=name)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(KILLED_EXIT_STATUS)
