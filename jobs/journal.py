"""Journals the money jobs send (RF → SI, RF → customer): sent once per intent, followed to a final status."""

from __future__ import annotations

import uuid
from datetime import date

from funding.audit import Intent, IntentStatus
from funding.errors import PermanentError
from funding.guardrails import Verdict
from funding.models import JournalStatus
from funding.money import display, wire
from jobs import failpoints
from jobs.metrics import count_movement
from jobs.runtime import JobContext

IDEMPOTENCY_NAMESPACE = uuid.UUID("5b0e1b8a-7c1c-4f0e-9d43-2d6f0c2b9e11")


def idempotency_key(intent_key: str) -> str:
    """A 36-character key derived from the intent (Alpaca is moving to a 36-character maximum)."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, intent_key))


async def held_back(
    ctx: JobContext, intent: Intent, verdict: Verdict, what: str, severity: str = "warning", **facts: str
) -> bool:
    """True when the guardrails stop ``intent`` (dry-run or refused): audited, counted, a refusal alerted."""
    if verdict.allowed and not verdict.dry_run:
        return False
    intent.status = IntentStatus.DRY_RUN if verdict.dry_run else IntentStatus.REFUSED
    intent.detail = verdict.reason
    await ctx.ledger.save(intent, f"{intent.kind}_{intent.status}", reason=verdict.reason, **facts)
    await count_movement(ctx.redis, intent, intent.status)
    if not verdict.allowed:
        alert_facts = {"account_no": intent.account_no} if intent.account_no else {}
        await ctx.alert(
            "guardrail", severity, f"{what} refused: {verdict.reason}", f"guard-{intent.key}", **alert_facts
        )
    return True


class Waiting(Exception):
    """A journal or settlement has not reached a final status within the wait; resume later."""


async def send_journal(ctx: JobContext, intent: Intent, source_no: str, target_no: str) -> bool:
    """POST the intent's journal (same key and body on every try, so at most one exists) and wait."""
    body = {
        "from_account": await ctx.account_id(source_no),
        "to_account": await ctx.account_id(target_no),
        "entry_type": "JNLC",
        "amount": wire(intent.amount),
        "description": f"settlekeeper {intent.key}: {intent.why}",
    }
    await ctx.before_call()
    intent.status = IntentStatus.SENT
    await ctx.ledger.save(intent, f"{intent.kind}_sent", body=body)
    failpoints.reach(ctx.settings, "journal.before_call")
    try:
        journal = await ctx.broker.create_journal(body, intent.idempotency_key)
    except PermanentError as exc:
        intent.status, intent.detail = IntentStatus.FAILED, str(exc)[:500]
        await ctx.ledger.save(intent, f"{intent.kind}_failed", error=str(exc)[:500])
        await count_movement(ctx.redis, intent, "failed")
        await ctx.guard.release(intent.amount, day=date.fromisoformat(intent.deadline))
        await ctx.alert("journal_refused", "critical", f"journal {intent.key} refused: {exc}", f"journal-{intent.key}")
        return False
    failpoints.reach(ctx.settings, "journal.after_call")
    intent.broker_id, intent.broker_status = str(journal.id), journal.status.value
    await ctx.ledger.save(intent, f"{intent.kind}_accepted", journal_id=str(journal.id), status=journal.status.value)
    failpoints.reach(ctx.settings, "journal.after_outcome")
    return await follow_journal(ctx, intent)


async def follow_journal(ctx: JobContext, intent: Intent) -> bool:
    waited = 0.0
    while True:
        journal = await ctx.broker.get_journal(intent.broker_id)
        status = journal.status
        if status in (JournalStatus.EXECUTED, JournalStatus.ACTIVITY_CREATED):
            intent.status, intent.broker_status = IntentStatus.DONE, status.value
            await ctx.ledger.save(intent, f"{intent.kind}_executed", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "executed")
            return True
        if status in (JournalStatus.REJECTED, JournalStatus.CANCELED, JournalStatus.REFUSED, JournalStatus.DELETED):
            intent.status, intent.broker_status = IntentStatus.FAILED, status.value
            await ctx.ledger.save(intent, f"{intent.kind}_{status.value}", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "failed")
            await ctx.alert(
                "journal_rejected", "critical", f"journal {intent.key} is {status.value}", f"journal-{intent.key}"
            )
            return False
        if waited >= ctx.settings.journal_wait_seconds:
            intent.broker_status = status.value
            await ctx.ledger.save(intent, f"{intent.kind}_still_{status.value}", journal_id=intent.broker_id)
            await count_movement(ctx.redis, intent, "pending")
            await ctx.alert(
                "journal_pending",
                "warning",
                f"journal {intent.key} of {display(intent.amount)} is still {status.value}",
                f"journal-pending-{intent.key}",
                journal_id=intent.broker_id,
            )
            raise Waiting(f"journal {intent.broker_id} is {status.value}")
        await ctx.pause()
        waited += ctx.settings.poll_seconds
