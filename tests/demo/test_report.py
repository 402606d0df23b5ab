"""The demo's report (demo/report.py): alerts marked open or resolved from their sk:alerts entries."""

from __future__ import annotations

from datetime import datetime

from demo.report import Facts, _alerts
from funding.calendar import ET

NOW = datetime(2026, 11, 24, 20, 30, tzinfo=ET)


def entry(action: str, kind: str, severity: str, summary: str) -> dict[str, str]:
    dedup = f"ladder-{kind}-2026-11-24"
    return {"action": action, "seq": "1", "kind": kind, "severity": severity, "dedup_key": dedup, "summary": summary}


def test_a_resolved_alert_is_reported_resolved_and_not_left_for_a_human() -> None:
    """A trigger followed by a resolve shows the resolution; only the alert still open is left for a human."""
    facts = Facts(
        numbers={},
        accounts={},
        transfers=[],
        settlements=[],
        journals=[],
        intents=[],
        audit=[],
        alerts=[
            entry("trigger", "unsettled_at_1230", "critical", "4 transfers still unsettled"),
            entry("trigger", "cancellations", "critical", "4 transfers canceled; 1 account in debit"),
            entry("resolve", "unsettled_at_1230", "info", "nothing due 2026-11-24 is unsettled any more"),
        ],
        costs={},
        settled_by={},
    )
    lines, left = _alerts(facts, NOW)
    assert [line.split()[:2] for line in lines[::2]] == [
        ["critical", "unsettled_at_1230"],
        ["critical", "cancellations"],
    ]
    assert lines[1].strip() == "→ resolved: nothing due 2026-11-24 is unsettled any more"
    assert lines[3].strip() == "→ open"
    assert "(raised" not in lines[0]  # a resolve is not a second raise
    assert left == ["  ! cancellations: 4 transfers canceled; 1 account in debit"]
