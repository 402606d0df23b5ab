"""Reconciliation: the journals and settlements Alpaca holds under settlekeeper's name that its audit trail misses.

Redis can lose its last second of writes (an AOF ``everysec`` restart, a failover to a replica that lagged). A
journal or settlement Alpaca made may then have no intent and no audit entry here, and a deadline's sequence may
count from an older number, so that the next intent would take a key Alpaca already holds (the same
``Idempotency-Key`` with another body is refused). :func:`reconcile` reads what Alpaca holds since a day: the
journals out of RF (``description`` ``settlekeeper <key>: …``) and the settlements (``additional_info``
``settlekeeper intent <key>``, from this deployment's SI). For each whose id the trail does not name it appends
``journal_recovered`` or ``settlement_recovered`` with Alpaca's id and stores the intent at Alpaca's status (a
movement still in progress is left open: the run's resume follows it by its id), counts money that left RF against
the daily cap, and moves the deadline's sequence past the key's number.

Every settle run starts with it (since the previous trading day: the last evening's covers too), and every 20:05
sweep starts and ends with it. ``sk:accounted:<deadline>`` holds the ids that need no look: named by an audit
entry (written in the entry's transaction), or another deployment's (a second SI account sharing RF), so an id is
looked at once. A failure to read Alpaca is logged and counted, never stops the run it is part of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import structlog

from funding.calendar import to_et
from funding.errors import SettlekeeperError
from funding.models import IFStatus, Journal, JournalStatus, Settlement, SettlementStatus
from funding.money import ZERO
from jobs.job_metrics import count_reconcile
from jobs.runtime import JobContext
from jobs.settlements import INTENT_TAG, is_ours
from store.audit import Intent, IntentStatus

log = structlog.get_logger(__name__)

_DAY = r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
_SEQ = r"([1-9][0-9]{0,8})"
FUND_KEY = re.compile(rf"fund-{_DAY}-{_SEQ}")
SETTLE_KEY = re.compile(rf"settle-{_DAY}-{_SEQ}")
COVER_KEY = re.compile(rf"cover-([0-9A-Za-z]{{1,32}})-{_DAY}")
JOURNAL_TEXT = re.compile(r"settlekeeper ([0-9A-Za-z-]{1,80}): (.{0,300})", re.DOTALL)
ATTEMPT = re.compile(r"\(attempt ([2-9]|[1-9][0-9]{1,3})\)$")
"""A cover retried after Alpaca refused its first journal says so at the end of its reason (its key differs)."""

_JOURNAL_DONE = (JournalStatus.EXECUTED, JournalStatus.ACTIVITY_CREATED)
_JOURNAL_FAILED = (JournalStatus.REJECTED, JournalStatus.CANCELED, JournalStatus.REFUSED, JournalStatus.DELETED)


@dataclass(frozen=True)
class Found:
    """One movement Alpaca holds under a key settlekeeper could have made."""

    kind: str
    key: str
    deadline: date
    seq: int
    """The key's number (fund and settle keys), else 0."""
    broker_id: str
    status: IntentStatus
    """Alpaca's status as an intent's: done, failed, or sent (in progress: the resume follows it)."""
    broker_status: str
    amount: Decimal
    why: str
    account_no: str = ""
    attempt: int = 1
    target: str = ""
    """The account id a journal paid into."""


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def journal_found(journal: Journal) -> Found | None:
    """The intent a journal's description names (``settlekeeper <key>: <why>``), or None when it names none."""
    text = JOURNAL_TEXT.fullmatch(journal.description or "")
    if text is None:
        return None
    key, why = text.groups()
    fund, cover = FUND_KEY.fullmatch(key), COVER_KEY.fullmatch(key)
    day = _day(fund[1]) if fund else (_day(cover[2]) if cover else None)
    if day is None:
        return None
    attempt = ATTEMPT.search(why) if cover else None
    status = journal.status
    return Found(
        "fund" if fund else "cover",
        key,
        day,
        int(fund[2]) if fund else 0,
        str(journal.id),
        IntentStatus.DONE
        if status in _JOURNAL_DONE
        else (IntentStatus.FAILED if status in _JOURNAL_FAILED else IntentStatus.SENT),
        status.value,
        abs(journal.net_amount or ZERO),
        why,
        account_no=cover[1] if cover else "",
        attempt=int(attempt[1]) if attempt else 1,
        target=str(journal.to_account),
    )


def settlement_found(settlement: Settlement) -> Found | None:
    """The settle intent a settlement's ``additional_info`` names, or None."""
    key = (settlement.additional_info or "").removeprefix(INTENT_TAG)
    match = SETTLE_KEY.fullmatch(key) if settlement.additional_info != key else None
    day = _day(match[1]) if match else None
    if match is None or day is None:
        return None
    status = settlement.status
    return Found(
        "settle",
        key,
        day,
        int(match[2]),
        str(settlement.id),
        IntentStatus.DONE
        if status is SettlementStatus.COMPLETED
        else (IntentStatus.FAILED if status is SettlementStatus.FAILED else IntentStatus.SENT),
        status.value,
        settlement.total_amount,
        "a settlement of transfers due",
    )


Resumed = frozenset[tuple[str, date]]
"""(kind, deadline) pairs whose open intents the caller resumes next (they audit their own movements)."""


async def reconcile(ctx: JobContext, since: date, resumed: Resumed = frozenset()) -> int:
    """Record every movement since ``since`` that Alpaca holds and the trail does not name; how many it recorded.

    An open intent of ``resumed`` whose movement Alpaca holds is left to the resume (a crash between the call and
    its answer is not a lost write: the resume finds the movement by its key and audits it)."""
    try:
        found = await _candidates(ctx, since)
        recovered = 0
        owners = _Owners(ctx)
        for item in found:
            if await ctx.ledger.accounted_for(item.deadline.isoformat(), item.broker_id):
                continue
            if not await owners.ours(item):
                await ctx.ledger.account_for(item.deadline.isoformat(), item.broker_id)
                continue
            recovered += await _recover(ctx, item, resumed)
    except SettlekeeperError as exc:  # never a reason not to settle: the next run reconciles again
        log.warning("reconcile_failed", since=since.isoformat(), error=f"{type(exc).__name__}: {exc}"[:300])
        await count_reconcile(ctx.redis, "all", "failed")
        return 0
    if recovered:
        log.warning("reconcile_recovered", since=since.isoformat(), recovered=recovered)
    return recovered


async def _candidates(ctx: JobContext, since: date) -> list[Found]:
    rf = await ctx.account_id(ctx.settings.rf_account_no)
    journals = [journal_found(j) for j in await ctx.broker.list_journals(rf, since)]
    settlements = [
        settlement_found(s)
        for s in await ctx.broker.list_settlements()
        if is_ours(s, ctx.settings.si_account_no) and to_et(s.created_at).date() >= since
    ]
    return [item for item in (*journals, *settlements) if item is not None and item.deadline >= since]


class _Owners:
    """Whether a movement is this deployment's (a second SI account's settlekeeper may share RF and number its keys
    alike): a fund journal paid into its SI, a cover into the account its key names, a customer of a transfer from
    its SI canceled that day (read once per deadline); a settlement came from its SI (filtered before)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.customers: dict[date, set[str]] = {}

    async def ours(self, item: Found) -> bool:
        ctx = self.ctx
        if item.kind == "settle":
            return True
        if item.kind == "fund":
            return item.target == await ctx.account_id(ctx.settings.si_account_no)
        if item.deadline not in self.customers:
            canceled = await ctx.broker.list_transfers(status=IFStatus.CANCELED, deadline=item.deadline)
            self.customers[item.deadline] = {
                t.account_no for t in canceled if t.source_account_no == ctx.settings.si_account_no
            }
        return item.account_no in self.customers[item.deadline] and item.target == await ctx.account_id(item.account_no)


async def _recover(ctx: JobContext, item: Found, resumed: Resumed) -> int:
    """Record one movement the trail does not name; 1 when an audit entry was added, 0 when none was needed."""
    deadline = item.deadline.isoformat()
    if item.seq:
        await ctx.ledger.raise_seq(deadline, item.seq)
    intent = await ctx.ledger.intent(item.key)
    if intent is not None and intent.broker_id == item.broker_id:
        await ctx.ledger.account_for(deadline, item.broker_id)  # named by an entry older than the index
        return 0
    open_intent = intent is not None and intent.status in (IntentStatus.PLANNED, IntentStatus.SENT)
    if open_intent and intent is not None and not intent.broker_id and (item.kind, item.deadline) in resumed:
        return 0  # a crash between the call and its answer: the caller's resume finds it by key and audits it
    facts = {
        ("settlement_id" if item.kind == "settle" else "journal_id"): item.broker_id,
        "status": item.broker_status,
        "why": "Alpaca holds it and Redis had no record of it (a restart or failover that lost its last writes)",
    }
    event = "settlement_recovered" if item.kind == "settle" else "journal_recovered"
    if item.status is not IntentStatus.FAILED and item.kind != "settle":
        await ctx.guard.count_moved(item.amount, day=item.deadline)
    await count_reconcile(ctx.redis, item.kind, "recovered")
    if intent is None:
        intent = _intent_of(ctx, item)
    elif (open_intent and intent.broker_id) or intent.status is IntentStatus.DONE or item.status is IntentStatus.FAILED:
        # an earlier attempt's journal, or one beside the movement the intent stands for: named, the intent kept
        await ctx.ledger.note(event, item.kind, item.key, item.amount, **facts)
        await ctx.ledger.account_for(deadline, item.broker_id)
        return 1
    intent.status, intent.broker_id, intent.broker_status = item.status, item.broker_id, item.broker_status
    intent.idempotency_key = _idempotency_key(ctx, item)
    if item.kind == "cover":
        intent.extra["attempt"] = str(item.attempt)
    await ctx.ledger.save(intent, event, **facts)
    return 1


def _idempotency_key(ctx: JobContext, item: Found) -> str:
    """The key the movement was made with (a cover's later attempt has a key of its own: ``jobs.cover``)."""
    return ctx.idempotency_key(item.key if item.attempt == 1 else f"{item.key}#{item.attempt}")


def _intent_of(ctx: JobContext, item: Found) -> Intent:
    """The intent of a movement Redis forgot, as it was made."""
    deadline = item.deadline.isoformat()
    return Intent(item.key, item.kind, deadline, item.why, item.amount, "", account_no=item.account_no)
