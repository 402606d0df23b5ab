"""The alert model: kinds (each a runbook section), severities, and what one alert says.

An alert has a kind, a severity, a deterministic dedup key, a summary and facts. Its state (triggered,
escalated, resolved, once each) is kept by :mod:`store.alert_state`; it is delivered to Slack and PagerDuty
by :mod:`jobs.alert_delivery`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


KINDS: dict[str, str] = {
    "digest": "09:30 digest: what is due today, SI/RF balances, projected shortfall",
    "shortfall_projected": "11:30: SI + RF cannot pay what is due today, or auto-settle is not on",
    "unsettled_at_1230": "12:30: transfers due today are still unsettled",
    "late_interest": "13:00: transfers missed the 1 PM cutoff and booked interest",
    "cancellations": "20:00: transfers were canceled and left debit balances",
    "fund_rf": "15:00: today is the last afternoon to wire RF what the forecast says the coming deadlines lack",
    "rf_short": "the settle job could not fund every transfer from RF",
    "statement": "20:15: the end-of-day statement: the day's totals after the cancellations (nothing is wrong)",
    "settlement_failed": "a settlement FAILED (twice: re-plan exhausted)",
    "settlement_refused": "Alpaca refused a settlement request",
    "journal_pending": "a journal settlekeeper sent is still pending (JNLC limits)",
    "journal_rejected": "a journal settlekeeper sent was rejected or canceled",
    "journal_refused": "Alpaca refused a journal request",
    "guardrail": "a money movement was refused by a guardrail (mode, cap)",
    "kill_switch": "the kill switch stopped a money movement",
    "debit_remains": "an account is still in debit after its cover",
    "if_limit": "instant funding limit usage at 80 % (warning) or 95 % (critical)",
    "jit_limit": "JIT daily net limit usage at 80 % (warning) or 95 % (critical); buying halts at 100 %",
    "jit_report_missing": "a JIT report was not available after 11:30 PM ET",
    "jit_report_mismatch": "JIT detail rows do not add up to the net summary",
    "if_report_mismatch": "Alpaca's instant funding report differs from settlekeeper's store",
    "job_failed": "a settlekeeper job failed for good (retries exhausted)",
    "broker_auth": "the Broker API refuses settlekeeper's credentials (HTTP 401/403): nothing is read or settled",
    "dead_letters": "stream events could not be read and were dead-lettered (the stream moved past them)",
    "test_alert": "a test message sent by `settlekeeper doctor --send-test-alert`: nothing is wrong",
}
"""Every alert kind, with the one-line meaning its runbook section starts with (docs/runbook.md)."""


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: Severity
    dedup_key: str
    summary: str
    facts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")
        if not self.dedup_key or len(self.dedup_key) > 255:
            raise ValueError("dedup_key must be 1 to 255 characters (PagerDuty's limit)")

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "severity": self.severity.value,
                "dedup_key": self.dedup_key,
                "summary": self.summary[:1024],
                "facts": self.facts,
            },
            sort_keys=True,
        )

    def stream_fields(self) -> list[str]:
        """kind, severity, dedup_key, summary and every fact, flattened for the ``sk:alerts`` entry."""
        pairs = {"kind": self.kind, "severity": self.severity.value, "dedup_key": self.dedup_key}
        pairs.update({"summary": self.summary[:1024], **self.facts})
        return [part for pair in pairs.items() for part in pair]

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        data = json.loads(raw)
        return cls(data["kind"], Severity(data["severity"]), data["dedup_key"], data["summary"], data["facts"])


def runbook_url(base: str, kind: str) -> str:
    """The runbook section of ``kind`` (anchors are the kind names in docs/runbook.md)."""
    return f"{base}#{kind.replace('_', '-')}"


def delivery_job_id(dedup_key: str, seq: int, action: str) -> str:
    """A deterministic RQ job id (``[A-Za-z0-9_-]``) for one state of one alert."""
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:24]
    return f"alert-{digest}-{seq}-{action}"
