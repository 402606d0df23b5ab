"""Report jobs: Alpaca's nightly reports, checked, stored, and turned into what the partner must do.

``jit_reports(system_date)`` (phase 23:35 ET): reads the JIT ``detail`` and ``net_summary`` CSVs, checks
that the detail adds up to the net summary per settlement bucket (:mod:`funding.jit_reports`), stores
the check in ``sk:jit:<date>`` and audits each settlement instruction ("pay Alpaca 1,234.56 by
2026-11-24 13:00 ET", "Alpaca wires you … on the morning of …"). A report not there yet raises
``jit_report_missing`` and the job looks again every :data:`JIT_RECHECK_SECONDS` until
:func:`useful_until`; the run that finds it resolves the alert. Sums that disagree raise
``jit_report_mismatch`` with the per-bucket differences.

``if_reports(system_date)`` (phase 20:10 ET, once the 8 PM cycle closed): reads the instant funding
``summary`` and ``detail`` reports of that system date and reconciles them with the store: every
transfer in the report is stored with the same amount, status and interest; every stored transfer of
that date that is neither CANCELED nor FAILED is in the report (Alpaca's report, like the sandbox's,
leaves those two out); per source account ``total_amount_owed`` = Σ amounts and
``total_interest_penalty`` = Σ ``total_interest`` of those transfers. A status or interest difference is
re-read over REST first: a transfer that moved between the report and the store read is not a
difference. Any difference raises ``if_report_mismatch``; the result is stored in
``sk:if_report:<date>``.

Both jobs only read from the Broker API; they run on the alert queue, so they never wait behind a
settle run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import redis
import structlog
from rq.exceptions import DuplicateJobError

from funding.calendar import TradingCalendar, at_et
from funding.errors import ClientError, MalformedDataError
from funding.jit_reports import JitCheck, JitReportError, check, parse_detail, parse_net_summary
from funding.models import IFReport
from funding.money import ZERO
from jobs.registry import ALERT_QUEUE, FAILURE_TTL_SECONDS, RESULT_TTL_SECONDS, RETRY, queue
from jobs.runtime import JobContext, run_job
from store import keys
from store.transfers import TransferStore

log = structlog.get_logger(__name__)

REPORTS_USEFUL_UNTIL = time(12, 0)
"""A report phase is caught up, and a missing JIT report looked for again, until 12:00 ET on the next
trading day: the IF settle phase starts then, and the T+1 JIT payment is due at 1 PM."""
JIT_RECHECK_SECONDS = 900
"""A JIT report missing at 23:35 is looked for again every 15 minutes (Alpaca publishes "within the hour
after 11:30 PM ET")."""
MAX_JIT_RECHECKS = 60
"""A bound on the re-checks whatever the business clock does (a frozen sandbox clock never ends the window)."""
REPORT_TTL_SECONDS = 400 * 86400
"""Checks are kept as long as intents: a year and a month, for audits of Alpaca's invoices."""
MAX_REREADS = 100
"""At most this many transfers are re-read over REST to rule out a move between report and store read;
beyond that the store is plainly behind and the differences stand."""
LEFT_OUT = frozenset({"CANCELED", "FAILED"})
"""Statuses the IF report neither lists nor totals (``sandbox/api.py`` ``reports``)."""


def jit_reports(system_date: str, attempt: int = 0) -> dict[str, Any]:
    """RQ entry (23:35 ET): check the JIT reports of ``system_date`` and say who pays whom."""
    return run_job(lambda ctx: check_jit(ctx, date.fromisoformat(system_date), attempt))


def if_reports(system_date: str) -> dict[str, Any]:
    """RQ entry (20:10 ET): reconcile the instant funding reports of ``system_date`` with the store."""
    return run_job(lambda ctx: reconcile_if(ctx, date.fromisoformat(system_date)))


def useful_until(system_date: date, calendar: TradingCalendar) -> datetime:
    """Until when a report phase of ``system_date`` still makes sense (12:00 ET the next trading day)."""
    return at_et(calendar.next_trading_day(system_date), REPORTS_USEFUL_UNTIL)


async def _store(ctx: JobContext, key: str, fields: Mapping[str, Any]) -> None:
    """Replace the stored result ``key`` with ``fields`` in one transaction."""
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={name: _as_field(value) for name, value in fields.items()})
        pipe.expire(key, REPORT_TTL_SECONDS)
        await pipe.execute()


def _as_field(value: object) -> str:
    """A report field as Redis stores it (datetimes in ISO 8601)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


# ---------------------------------------------------------------------- JIT


async def check_jit(ctx: JobContext, day: date, attempt: int = 0) -> dict[str, Any]:
    with structlog.contextvars.bound_contextvars(system_date=day.isoformat()):
        report = await _check_jit(ctx, day, attempt)
        log.info("jit_reports_checked", **report)
        return report


async def _check_jit(ctx: JobContext, day: date, attempt: int) -> dict[str, Any]:
    now = await ctx.now()
    mismatch = f"jit_report_mismatch-{day}"
    texts: dict[str, str] = {}
    try:
        for report_type in ("detail", "net_summary"):
            texts[report_type] = await ctx.broker.jit_report(report_type, day)
        rows = parse_detail(texts["detail"])
        summary = parse_net_summary(texts["net_summary"])
    except ClientError as exc:  # 404 before Alpaca generated it; any other refusal leaves us without it too
        return await _jit_missing(ctx, day, now, attempt, report_type, str(exc))
    except MalformedDataError as exc:
        await _found(ctx, day)
        report = exc.report if isinstance(exc, JitReportError) else report_type
        await _store(
            ctx, keys.jit_report(day), {"system_date": day, "checked_at": now, "outcome": "malformed", "error": exc}
        )
        await ctx.alert(
            "jit_report_mismatch",
            "critical",
            f"JIT {report} report for {day} cannot be read: {exc}",
            mismatch,
            system_date=day,
            report=report,
            error=exc,
        )
        return {"system_date": day.isoformat(), "outcome": "malformed", "report": report, "error": str(exc)}
    await _found(ctx, day)
    result = check(day, rows, summary, ctx.calendar)
    await _store(ctx, keys.jit_report(day), _jit_fields(result, now))
    for instruction in result.instructions:
        facts = {name: value for name, value in instruction.as_dict().items() if name != "amount"}
        past_due = instruction.due_at is not None and instruction.due_at <= now
        key = f"jit-{day}-{instruction.bucket}"
        await ctx.ledger.note("jit_settlement_instruction", "jit", key, instruction.amount, **facts, past_due=past_due)
    buckets = {
        b.bucket: {"detail": str(b.detail), "summary": str(b.summary), "difference": str(b.difference)}
        for b in result.buckets
    }
    if result.matches:
        await ctx.resolve("jit_report_mismatch", mismatch, f"JIT reports for {day} agree")
    else:
        differences = {
            b.bucket: f"detail {b.detail}, net summary {b.summary}, difference {b.difference}"
            for b in result.mismatches
        }
        await ctx.alert(
            "jit_report_mismatch",
            "critical",
            f"JIT detail for {day} does not add up to the net summary: "
            + "; ".join(f"{bucket} {text}" for bucket, text in differences.items()),
            mismatch,
            system_date=day,
            **differences,
            instructions="; ".join(i.text for i in result.instructions) or "none",
        )
    return {
        "system_date": day.isoformat(),
        "outcome": "ok" if result.matches else "mismatch",
        "rows": sum(b.rows for b in result.buckets) + result.journal_rows,
        "buckets": buckets,
        "instructions": [i.as_dict() for i in result.instructions],
        "notes": list(result.notes),
    }


async def _found(ctx: JobContext, day: date) -> None:
    await ctx.resolve("jit_report_missing", f"jit_report_missing-{day}", f"JIT reports for {day} are available")


def _jit_fields(result: JitCheck, now: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "system_date": result.system_date,
        "checked_at": now,
        "outcome": "ok" if result.matches else "mismatch",
        "jit_journal_rows": result.journal_rows,
        "jit_journal_total": result.journal_total,
        "instructions": json.dumps([i.as_dict() for i in result.instructions]),
        "notes": json.dumps(list(result.notes)),
    }
    for b in result.buckets:
        fields.update({f"detail_{b.bucket}": b.detail, f"summary_{b.bucket}": b.summary})
        fields.update({f"difference_{b.bucket}": b.difference, f"rows_{b.bucket}": b.rows})
    return fields


async def _jit_missing(
    ctx: JobContext, day: date, now: datetime, attempt: int, report_type: str, error: str
) -> dict[str, Any]:
    """Alert (warning; critical once the window closed), record it, and look again later."""
    final = now >= useful_until(day, ctx.calendar) or attempt >= MAX_JIT_RECHECKS
    when = "and the window to act on it has closed" if final else f"at {now.isoformat()}"
    await ctx.alert(
        "jit_report_missing",
        "critical" if final else "warning",
        f"JIT {report_type} report for {day} is not available {when}",
        f"jit_report_missing-{day}",
        system_date=day,
        report=report_type,
        error=error[:300],
        attempt=attempt,
    )
    if not await ctx.redis.exists(keys.jit_report(day)):  # an earlier good result is never overwritten
        fields = {"system_date": day, "checked_at": now, "outcome": "missing", "missing": report_type}
        await _store(ctx, keys.jit_report(day), fields)
    recheck = "" if final else await asyncio.to_thread(_schedule_recheck, ctx.rq, day, attempt + 1)
    return {"system_date": day.isoformat(), "outcome": "missing", "report": report_type, "recheck": recheck}


def _schedule_recheck(connection: redis.Redis, day: date, attempt: int) -> str:
    """Run the JIT check of ``day`` again in :data:`JIT_RECHECK_SECONDS` (one job id per attempt)."""
    job_id = f"phase-jit-reports-{day}-recheck-{attempt}"
    rq_queue = queue(ALERT_QUEUE, connection)
    job = rq_queue.create_job(
        "jobs.reports.jit_reports",
        kwargs={"system_date": day.isoformat(), "attempt": attempt},
        job_id=job_id,
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        retry=RETRY,
    )
    with contextlib.suppress(DuplicateJobError):  # an RQ retry of this run already scheduled it
        rq_queue.schedule_job(job, datetime.now(UTC) + timedelta(seconds=JIT_RECHECK_SECONDS), unique=True)
    return job_id


# ---------------------------------------------------------------------- instant funding


@dataclass(frozen=True)
class Difference:
    """One way Alpaca's IF report and the store disagree."""

    what: str
    """``missing_in_store``, ``missing_in_report``, ``amount``, ``status``, ``interest``, ``total_amount_owed``,
    ``total_interest_penalty``, or ``summary_vs_detail`` (Alpaca's two reports disagree)."""
    subject: str
    """The transfer id, or the source account for totals."""
    report: str
    store: str

    @property
    def text(self) -> str:
        return f"{self.what} {self.subject}: report {self.report}, store {self.store}"

    @property
    def transient(self) -> bool:
        """Status and interest may move between the report and the store read; ids and amounts never do."""
        return self.what in ("status", "interest")


def compare_if(
    day: date, summary: Sequence[IFReport], detail: Sequence[IFReport], stored: Mapping[str, Mapping[str, str]]
) -> list[Difference]:
    """Every difference between the reports of ``day`` and the stored transfers of ``day``."""
    differences: list[Difference] = []
    listed = {str(t.id): t for row in detail for t in row.instant_funding_transfers or ()}
    for transfer_id, t in listed.items():
        mine = stored.get(transfer_id)
        if mine is None:
            differences.append(Difference("missing_in_store", transfer_id, f"{t.amount} {t.status.value}", "absent"))
            continue
        if Decimal(mine["amount"]) != t.amount:
            differences.append(Difference("amount", transfer_id, str(t.amount), mine["amount"]))
        if mine["status"] != t.status.value:
            differences.append(Difference("status", transfer_id, t.status.value, mine["status"]))
        if Decimal(mine["total_interest"]) != t.total_interest:
            differences.append(Difference("interest", transfer_id, str(t.total_interest), mine["total_interest"]))
    owed: dict[str, Decimal] = defaultdict(lambda: ZERO)
    interest: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for transfer_id, mine in sorted(stored.items()):
        if mine["status"] in LEFT_OUT:
            continue
        owed[mine["source_account_no"]] += Decimal(mine["amount"])
        interest[mine["source_account_no"]] += Decimal(mine["total_interest"])
        if transfer_id not in listed:
            differences.append(
                Difference("missing_in_report", transfer_id, "absent", f"{mine['amount']} {mine['status']}")
            )
    reported = {row.account_no: row for row in summary if row.system_date == day}
    for account in sorted(set(reported) | set(owed)):
        row = reported.get(account)
        owed_text = str(row.total_amount_owed) if row is not None else "absent"
        if row is None or row.total_amount_owed != owed[account]:
            differences.append(Difference("total_amount_owed", account, owed_text, str(owed[account])))
        interest_text = str(row.total_interest_penalty) if row is not None else "absent"
        if row is None or row.total_interest_penalty != interest[account]:
            differences.append(Difference("total_interest_penalty", account, interest_text, str(interest[account])))
    detailed = {row.account_no: (row.total_amount_owed, row.total_interest_penalty) for row in detail}
    for account, row in reported.items():
        if detailed.get(account) != (row.total_amount_owed, row.total_interest_penalty):
            got = detailed.get(account)
            differences.append(
                Difference(
                    "summary_vs_detail",
                    account,
                    f"summary {row.total_amount_owed}/{row.total_interest_penalty}",
                    f"detail {got[0]}/{got[1]}" if got else "detail absent",
                )
            )
    return differences


async def reconcile_if(ctx: JobContext, day: date) -> dict[str, Any]:
    with structlog.contextvars.bound_contextvars(system_date=day.isoformat()):
        report = await _reconcile_if(ctx, day)
        log.info("if_reports_reconciled", **report)
        return report


async def _reconcile_if(ctx: JobContext, day: date) -> dict[str, Any]:
    key = f"if_report_mismatch-{day}"
    now = await ctx.now()
    try:
        summary = await ctx.broker.if_reports("summary", day)
        detail = await ctx.broker.if_reports("detail", day)
    except (ClientError, MalformedDataError) as exc:
        await ctx.alert(
            "if_report_mismatch", "critical", f"IF reports for {day} cannot be read: {exc}", key, system_date=day
        )
        await _store(ctx, keys.if_report(day), {"system_date": day, "checked_at": now, "outcome": "unreadable"})
        return {"system_date": day.isoformat(), "outcome": "unreadable", "error": str(exc)}
    stored = await TransferStore(ctx.redis).system_date_transfers(day)
    found = compare_if(day, summary, detail, stored)
    differences, moved = await _without_moves(ctx, found, stored)
    counted = [t for t in stored.values() if t["status"] not in LEFT_OUT]
    report: dict[str, Any] = {
        "system_date": day.isoformat(),
        "outcome": "mismatch" if differences else "ok",
        "report_transfers": sum(len(row.instant_funding_transfers or ()) for row in detail),
        "store_transfers": len(counted),
        "total_amount_owed": str(sum((row.total_amount_owed for row in summary), ZERO)),
        "store_amount_owed": str(sum((Decimal(t["amount"]) for t in counted), ZERO)),
        "total_interest_penalty": str(sum((row.total_interest_penalty for row in summary), ZERO)),
        "store_interest": str(sum((Decimal(t["total_interest"]) for t in counted), ZERO)),
        "moved_since_report": moved,
        "differences": [d.text for d in differences],
    }
    await _store(
        ctx,
        keys.if_report(day),
        {**report, "checked_at": now, "differences": json.dumps(report["differences"])},
    )
    if not differences:
        await ctx.resolve("if_report_mismatch", key, f"IF reports for {day} agree with the store")
        return report
    severity = "warning" if all(d.transient for d in differences) else "critical"
    await ctx.alert(
        "if_report_mismatch",
        severity,
        f"IF reports for {day} differ from the store in {len(differences)} place(s), first: {differences[0].text}",
        key,
        system_date=day,
        differences=len(differences),
        first=" | ".join(d.text for d in differences[:10]),
    )
    return report


async def _without_moves(
    ctx: JobContext, found: list[Difference], stored: Mapping[str, Mapping[str, str]]
) -> tuple[list[Difference], int]:
    """Drop status/interest differences of transfers Alpaca now shows exactly as the store does."""
    suspects = sorted({d.subject for d in found if d.transient})
    if not suspects or len(suspects) > MAX_REREADS:
        return found, 0
    moved: set[str] = set()
    for transfer_id in suspects:
        fresh = await ctx.broker.get_transfer(transfer_id)
        mine = stored[transfer_id]
        if fresh.status.value == mine["status"] and fresh.total_interest == Decimal(mine["total_interest"]):
            moved.add(transfer_id)
    return [d for d in found if not (d.transient and d.subject in moved)], len(moved)
