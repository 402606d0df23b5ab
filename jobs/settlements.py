"""One settlement of a settle run: posted once per intent, followed to a final status, found again after a crash.

A settlement has no idempotency key (docs/broker-api.md "Settlements"), so it carries its intent key in
``additional_info`` (``settlekeeper intent <key>``): a run that resumes after a crash finds it by that text
(:func:`find_settlement`) instead of posting it again. Each transfer's ``transmitter_info`` is the template
of the settings, the customer's identity (read once, then cached) and any per-account override.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import date

import structlog

from funding.errors import PermanentError, Waiting
from funding.models import Account, Settlement, SettlementStatus
from funding.money import display
from funding.planning import Payable, owed
from jobs import failpoints
from jobs.job_metrics import count_movement
from jobs.runtime import JobContext, held_back
from store import keys
from store.audit import Intent, IntentStatus

log = structlog.get_logger(__name__)

INTENT_TAG = "settlekeeper intent "
"""Prefix of ``additional_info``: how a settlement is found again after a crash."""
IDENTITY_READS = 24
"""Concurrent ``GET /v1/accounts/{id}`` of customers whose identity is not cached yet (first settlement)."""
LIST_IDENTITIES_FROM = 200
"""Missing identities from which pages of ``GET /v1/accounts`` are read first (below, one read each)."""
ACCOUNTS_PER_LISTED_PAGE = 100
"""What one page of 1,000 accounts with their identities costs, in reads of one account (45 ms against 0.4 ms)."""


async def _batch_intent(ctx: JobContext, deadline: date, batch: Sequence[Payable], why: str) -> Intent:
    """The next settle intent of ``deadline`` (``settle-<deadline>-<seq>``), for what ``batch`` owes."""
    seq = await ctx.redis.hincrby(keys.plan(deadline), "seq", 1)
    key = f"settle-{deadline}-{seq}"
    return Intent(key, "settle", deadline.isoformat(), why, owed(batch), ctx.idempotency_key(key))


async def settle_batch(ctx: JobContext, deadline: date, batch: Sequence[Payable]) -> SettlementStatus | None:
    intent = await _batch_intent(ctx, deadline, batch, f"{len(batch)} transfers due {deadline}")
    await ctx.before_call()  # set while SI was being funded: killed, not a guardrail refusal
    verdict = await ctx.guard.check("settle", intent.amount, day=deadline)
    if await held_back(ctx, intent, verdict, f"settlement of {display(intent.amount)}", transfers=str(len(batch))):
        return None
    await ctx.ledger.remember_transfers(intent.key, (str(t.id) for t in batch))
    await ctx.ledger.save(intent, "settle_planned", transfers=len(batch))
    return await post_settlement(ctx, intent, batch)


async def dry_run_batch(ctx: JobContext, deadline: date, batch: Sequence[Payable], why: str) -> None:
    intent = await _batch_intent(ctx, deadline, batch, why)
    intent.status = IntentStatus.DRY_RUN
    await ctx.ledger.save(intent, "settle_dry-run", transfers=len(batch))
    await count_movement(ctx.redis, intent, IntentStatus.DRY_RUN)


async def post_settlement(ctx: JobContext, intent: Intent, batch: Sequence[Payable]) -> SettlementStatus | None:
    infos = await _transmitters(ctx, {t.account_no for t in batch})
    transfers = [{"instant_transfer_id": str(t.id), "transmitter_info": infos[t.account_no]} for t in batch]
    await ctx.before_call()
    intent.status = IntentStatus.SENT
    await ctx.ledger.save(intent, "settle_sent", transfers=len(batch))
    failpoints.reach(ctx.settings, "settlement.before_call")
    try:
        settlement = await ctx.broker.create_settlement(
            {"transfers": transfers, "additional_info": INTENT_TAG + intent.key}
        )
    except PermanentError as exc:
        intent.status, intent.detail = IntentStatus.FAILED, str(exc)[:500]
        await ctx.ledger.save(intent, "settle_refused", error=str(exc)[:500])
        await count_movement(ctx.redis, intent, "failed")
        await ctx.alert(
            "settlement_refused", "critical", f"settlement {intent.key} refused: {exc}", f"settle-refused-{intent.key}"
        )
        return SettlementStatus.FAILED
    failpoints.reach(ctx.settings, "settlement.after_call")
    return await follow_settlement(ctx, intent, settlement)


async def follow_settlement(ctx: JobContext, intent: Intent, settlement: Settlement) -> SettlementStatus:
    intent.broker_id = str(settlement.id)
    waited, looks = 0.0, 0
    while True:
        intent.broker_status = settlement.status.value
        if settlement.status in (SettlementStatus.COMPLETED, SettlementStatus.FAILED):
            intent.status = (
                IntentStatus.DONE if settlement.status is SettlementStatus.COMPLETED else IntentStatus.FAILED
            )
            intent.detail = settlement.reason or ""
            failpoints.reach(ctx.settings, "settlement.before_outcome")
            await ctx.ledger.save(
                intent,
                f"settle_{settlement.status.value.lower()}",
                settlement_id=intent.broker_id,
                reason=settlement.reason,
                total=str(settlement.total_amount),
                interest=str(settlement.interest_amount),
            )
            await count_movement(ctx.redis, intent, "completed" if intent.status == IntentStatus.DONE else "failed")
            failpoints.reach(ctx.settings, "settlement.after_outcome")
            return settlement.status
        await ctx.ledger.save(
            intent, "settle_in_progress", settlement_id=intent.broker_id, status=settlement.status.value
        )
        if waited >= ctx.settings.settlement_wait_seconds:
            raise Waiting(f"settlement {settlement.id} is {settlement.status.value}")
        waited += await ctx.pause(looks)
        looks += 1
        settlement = await ctx.broker.get_settlement(intent.broker_id)


async def find_settlement(ctx: JobContext, intent_key: str) -> Settlement | None:
    """The settlement carrying ``intent_key`` in ``additional_info``, whatever its status (docs/broker-api.md
    "Settlements")."""
    tag = INTENT_TAG + intent_key
    for settlement in await ctx.broker.list_settlements():
        if settlement.additional_info == tag and is_ours(settlement, ctx.settings.si_account_no):
            return settlement
    return None


def is_ours(settlement: Settlement, si_account_no: str) -> bool:
    """Made from this deployment's SI account: a correspondent's second settlekeeper (another SI) numbers its
    intents the same way, so ``settle-<deadline>-2`` alone does not say whose it is. A settlement whose answer
    leaves ``source_account_number`` out is taken as ours (the tag is settlekeeper's)."""
    return settlement.source_account_number in (None, si_account_no)


async def _transmitters(ctx: JobContext, account_nos: set[str]) -> dict[str, dict[str, str]]:
    """``transmitter_info`` of each account: template + the customer's identity (cached) + per-account overrides."""
    ordered = sorted(account_nos)
    cached = await ctx.redis.hmget(keys.IDENTITIES, ordered) if ordered else []
    identities = {no: json.loads(raw) for no, raw in zip(ordered, cached, strict=True) if raw is not None}
    missing = [no for no in ordered if no not in identities]
    if missing:
        identities.update(await _read_identities(ctx, missing))
    template = json.loads(ctx.settings.transmitter_template)
    overrides = json.loads(ctx.settings.transmitter_overrides)
    infos = {}
    for account_no in ordered:
        info = {**template, **identities[account_no]}
        info.update(overrides.get(account_no, {}))
        infos[account_no] = {k: str(v) for k, v in info.items() if v not in (None, "")}
    return infos


async def _read_identities(ctx: JobContext, account_nos: list[str]) -> dict[str, dict[str, str]]:
    """Name and bank account number of customers not cached yet, cached in Redis as read: from pages of
    ``GET /v1/accounts`` when many are missing (:func:`_listed_identities`), the rest (or all, for a few)
    ``GET /v1/accounts/{id}``, a few at a time."""
    identities = await _listed_identities(ctx, set(account_nos)) if len(account_nos) >= LIST_IDENTITIES_FROM else {}
    rest = [no for no in account_nos if no not in identities]
    account_ids = await ctx.accounts.cached(rest)
    pending = iter(rest)
    read: dict[str, dict[str, str]] = {}

    async def reader() -> None:
        for account_no in pending:  # shared: each account is read by one of the readers
            account = await ctx.broker.account(account_ids.get(account_no) or await ctx.account_id(account_no))
            read[account_no] = _identity(account, account_no)

    readers = [asyncio.create_task(reader()) for _ in range(min(IDENTITY_READS, len(rest)))]
    try:
        await asyncio.gather(*readers)
    finally:  # on an error, stop the others before it propagates
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    if read:
        await ctx.redis.hset(keys.IDENTITIES, mapping={no: json.dumps(i) for no, i in read.items()})
    return identities | read


async def _listed_identities(ctx: JobContext, wanted: set[str]) -> dict[str, dict[str, str]]:
    """The identities of ``wanted`` found on pages of ``GET /v1/accounts?entities=identity`` (1,000 an answer,
    oldest first), read until each is found or the pages read would have cost more than reading ``wanted`` one by
    one (:data:`ACCOUNTS_PER_LISTED_PAGE`). Every account met on the way is cached, a page at a time (a later batch
    of the same run needs them). A listing refused or malformed leaves the rest to the reads one by one."""
    found: dict[str, dict[str, str]] = {}
    budget = max(1, len(wanted) // ACCOUNTS_PER_LISTED_PAGE)
    try:
        async for page in ctx.broker.account_pages("identity"):
            listed = {account.account_number: _identity(account, account.account_number) for account in page}
            await ctx.redis.hset(keys.IDENTITIES, mapping={no: json.dumps(i) for no, i in listed.items()})
            found.update((no, identity) for no, identity in listed.items() if no in wanted)
            budget -= 1
            if len(found) == len(wanted) or budget == 0:
                break
    except PermanentError as exc:
        log.warning("identities_listing_failed", error=str(exc)[:300], found=len(found))
    return found


def _identity(account: Account, account_no: str) -> dict[str, str]:
    """What ``transmitter_info`` takes from the account of customer ``account_no``."""
    person = account.identity or {}
    return {
        "originator_full_name": " ".join(str(person.get(p, "")) for p in ("given_name", "family_name")).strip(),
        "originator_bank_account_number": account_no,
    }
