"""The invariants a chaos run must keep, checked from the sandbox's own books (journals, settlements, transfers,
accounts), never from settlekeeper's records; two read settlekeeper's side on purpose: the audit trail must
name every movement the books show, and what reached Slack and PagerDuty (the harness' capture servers)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from rq.registry import FailedJobRegistry

from chaos.actions import Record
from demo.feed import SandboxClient
from jobs.rq_worker import QUEUES
from store import keys
from store.clients import async_client, sync_client
from store.codec import text, text_map

NAMES = (
    "no journal or settlement duplicated for one intent",
    "every transfer due when RF sufficed COMPLETED before 1 PM ET",
    "every debit covered before its T+2 margin call",
    "no money moved while paused",
    "every money movement has an audit record with Alpaca's id",
    "every RF-short day raised its alert",
    "every resolved condition resolved its alert",
    "nothing left in a failed registry unexplained",
    "no secret in a log, a metrics page, Redis, the audit or a payload",
)


@dataclass
class Verdict:
    violations: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in NAMES})

    def add(self, name: str, what: str) -> None:
        self.violations[name].append(what)

    @property
    def total(self) -> int:
        return sum(len(found) for found in self.violations.values())


@dataclass(frozen=True)
class Books:
    """The sandbox's state at the end of the run."""

    journals: list[dict[str, Any]]
    settlements: list[dict[str, Any]]
    transfers: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    ids: dict[str, str]
    """Account UUID → account number."""

    @classmethod
    async def read(cls, api: SandboxClient) -> Books:
        journals = await api.call("GET", "/v1/journals")
        settlements = (await api.call("GET", "/v1/instant_funding/settlements"))["settlements"]
        accounts = (await api.call("GET", "/sandbox/accounts"))["accounts"]
        return cls(
            journals, settlements, await api.transfers(), accounts, {a["id"]: a["account_number"] for a in accounts}
        )

    def settlekeepers_journals(self, record: Record) -> list[dict[str, Any]]:
        return [j for j in self.journals if str(j["description"]).startswith("settlekeeper ")]

    def settlekeepers_settlements(self, record: Record) -> list[dict[str, Any]]:
        return [s for s in self.settlements if str(s["id"]) not in record.partner_settlements]


async def check(books: Books, record: Record, url: str, events: list[dict[str, Any]]) -> Verdict:
    """Every invariant over the books; ``events`` are the PagerDuty events the harness captured."""
    verdict = Verdict()
    client = async_client(url)
    _no_duplicates(books, record, verdict)
    _settled_before_cutoff(books, record, verdict)
    _debits_covered(books, verdict)
    _nothing_moved_while_paused(books, record, verdict)
    try:
        await _audited(books, record, client, verdict)
    finally:
        await client.aclose()
    _alerts(record, events, verdict)
    await _failed_jobs(url, events, verdict)
    return verdict


def _intent_of(journal: dict[str, Any]) -> str:
    return str(journal["description"]).removeprefix("settlekeeper ").split(":", 1)[0]


def _no_duplicates(books: Books, record: Record, verdict: Verdict) -> None:
    """One booked journal per intent key; one settlement per intent tag that did not fail; no transfer in two
    completed settlements; never a partner-settled transfer settled again."""
    booked = Counter(_intent_of(j) for j in books.settlekeepers_journals(record) if j["status"] != "rejected")
    for intent, count in booked.items():
        if count > 1:
            verdict.add(NAMES[0], f"intent {intent}: {count} journals")
    tags = Counter(s.get("additional_info") for s in books.settlekeepers_settlements(record) if s["status"] != "FAILED")
    for tag, count in tags.items():
        if count > 1:
            verdict.add(NAMES[0], f"{tag}: {count} settlements")


def _settled_before_cutoff(books: Books, record: Record, verdict: Verdict) -> None:
    """On a deadline RF could pay, every transfer due is COMPLETED and booked no interest (interest is booked at
    1 PM ET on what is still unsettled)."""
    for transfer in books.transfers:
        deadline = date.fromisoformat(transfer["deadline"])
        if deadline in record.rf_short_deadlines or deadline > record.last_deadline:
            continue
        if transfer["status"] != "COMPLETED" or Decimal(transfer["total_interest"]) > 0:
            verdict.add(
                NAMES[1],
                f"{transfer['id']} due {deadline}: {transfer['status']}, interest {transfer['total_interest']}",
            )


def _debits_covered(books: Books, verdict: Verdict) -> None:
    for account in books.accounts:
        if not account["firm"] and (account["margin_call_on"] or account["liquidated_on"]):
            verdict.add(NAMES[2], f"{account['account_number']}: margin call on {account['margin_call_on']}")


def _created(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(row["created_at"]))


def _nothing_moved_while_paused(books: Books, record: Record, verdict: Verdict) -> None:
    moved = [*books.settlekeepers_journals(record), *books.settlekeepers_settlements(record)]
    for pause in record.pauses:
        end = pause.end or datetime.max.replace(tzinfo=pause.start.tzinfo)
        for row in moved:
            if pause.start <= _created(row) <= end:
                verdict.add(NAMES[3], f"{row['id']} created {row['created_at']} during the pause from {pause.start}")


async def _audited(books: Books, record: Record, client: aioredis.Redis, verdict: Verdict) -> None:
    """Every journal and settlement settlekeeper made names its Alpaca id in an audit entry."""
    named: set[str] = set()
    last = "-"
    while True:
        page = await client.xrange(keys.AUDIT, min=last, count=5000)
        if not page:
            break
        for _, fields in page:
            facts = json.loads(text_map(fields or {}).get("facts") or "{}")
            named.update(str(facts[name]) for name in ("settlement_id", "journal_id") if facts.get(name))
        last = "(" + text(page[-1][0])
    for row in [*books.settlekeepers_journals(record), *books.settlekeepers_settlements(record)]:
        if str(row["id"]) not in named:
            verdict.add(NAMES[4], f"{row['id']} ({row.get('description') or row.get('additional_info')}) unaudited")


SELF_RESOLVING = {"unsettled_at_1230", "late_interest", "shortfall_projected", "cancellations"}
"""Alert kinds settlekeeper resolves itself when their deadline's condition clears (docs/runbook.md)."""


def _alerts(record: Record, events: list[dict[str, Any]], verdict: Verdict) -> None:
    """PagerDuty (every severity is routed there in a chaos run) received an rf_short trigger for each RF-short
    deadline, and a resolve for every self-resolving alert of a deadline before the last one."""
    kinds = {e["dedup_key"]: e["payload"]["class"] for e in events if e.get("event_action") == "trigger"}
    resolved = {e["dedup_key"] for e in events if e.get("event_action") == "resolve"}
    for deadline in sorted(record.rf_short_deadlines):
        if not any(kind == "rf_short" and key.endswith(deadline.isoformat()) for key, kind in kinds.items()):
            verdict.add(NAMES[5], f"no rf_short alert for {deadline}")
    for key, kind in sorted(kinds.items()):
        day = _deadline_of(key)
        if kind in SELF_RESOLVING and day is not None and day < record.last_deadline and key not in resolved:
            verdict.add(NAMES[6], f"{kind} {key} never resolved")


def _deadline_of(dedup_key: str) -> date | None:
    try:
        return date.fromisoformat(dedup_key[-10:])
    except ValueError:
        return None


async def _failed_jobs(url: str, events: list[dict[str, Any]], verdict: Verdict) -> None:
    """A job in a failed registry is explained when a job_failed alert for it reached PagerDuty."""
    paged = json.dumps([e for e in events if e.get("payload", {}).get("class") == "job_failed"])
    client = sync_client(url)
    try:
        for name in QUEUES:
            for job_id in await asyncio.to_thread(FailedJobRegistry(name, connection=client).get_job_ids):
                if job_id not in paged:
                    verdict.add(NAMES[7], f"{name}: {job_id} failed, no job_failed alert names it")
    finally:
        client.close()
