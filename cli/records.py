"""The on-call commands that read the record: ``audit`` (money movements and decisions, with Alpaca's ids),
``intents`` (those not final) and ``alerts`` (open ones; ``alerts resolve KEY --reason``)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from cli.control import operator
from cli.output import OK, PROBLEM, Out, age
from cli.status import open_alerts
from config.settings import ALERT_SINKS
from funding.alerts import Alert, Severity
from jobs.registry import enqueue_alert_deliveries
from jobs.runtime import JobContext
from store import keys
from store.alert_state import resolve_alert
from store.audit import IntentStatus
from store.codec import text, text_map

FINAL = {IntentStatus.DONE, IntentStatus.FAILED, IntentStatus.DRY_RUN, IntentStatus.REFUSED}


async def audit(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    """The audit trail as a timeline, oldest first, filtered by deadline, account and time."""
    since = args.since.isoformat() if args.since else ""
    rows = []
    for entry_id, raw in await ctx.redis.xrange(keys.AUDIT, min="-", max="+") or []:
        row = text_map(raw or {})
        facts = json.loads(row.get("facts") or "{}")
        blob = f"{row.get('key', '')} {json.dumps(facts)}"
        if args.deadline and str(args.deadline) not in blob:
            continue
        if args.account and args.account not in blob:
            continue
        if since and row.get("at", "") < since:
            continue
        alpaca = facts.get("journal_id") or facts.get("settlement_id") or ""
        rows.append({"id": text(entry_id or ""), **row, "facts": facts, "alpaca_id": alpaca})
    if out.json:
        out.data(rows)
        return OK
    span = f" from {rows[0]['at'][:10]} to {rows[-1]['at'][:10]} (times UTC)" if rows else ""
    out.line(f"{len(rows)} audit entries{span}")
    out.table(
        ["time", "event", "key", "amount", "alpaca id"],
        [[r["at"][11:19], r["event"], r["key"], r["amount"] or "-", r["alpaca_id"][:8] or "-"] for r in rows],
    )
    return OK


async def intents(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    """Intents not final (planned or sent): what a run left in flight and the next one resumes."""
    found = []
    async for key in ctx.redis.scan_iter(match=keys.intent("*"), count=500):
        intent = await ctx.ledger.intent(text(key).removeprefix(keys.intent("")))
        if intent is not None and intent.status not in FINAL:
            found.append(intent)
    found.sort(key=lambda i: i.key)
    if out.json:
        out.data([i.to_hash() for i in found])
    else:
        out.line(f"{len(found)} intents not final" + (": the next run of their deadline resumes them" if found else ""))
        out.table(
            ["key", "status", "amount", "alpaca id", "alpaca status"],
            [[i.key, i.status, i.amount, i.broker_id[:8] or "-", i.broker_status or "-"] for i in found],
        )
    return PROBLEM if found else OK


async def alerts(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    if args.action == "resolve":
        return await _resolve(ctx, args, out)
    found = await open_alerts(ctx.redis)
    for alert in found:
        alert["delivered"] = await _delivered(ctx, alert["dedup_key"], alert["severity"])
    if out.json:
        out.data(found)
        return OK
    out.line(f"{len(found)} open alerts")
    wall = datetime.now(UTC)
    out.table(
        ["severity", "kind", "age", "delivered", "key"],
        [[a["severity"], a["kind"], age(a["since"], wall), a["delivered"] or "-", a["dedup_key"]] for a in found],
    )
    for alert in found:
        out.line(f"  {alert['dedup_key']}: {alert['summary'][:200]}")
    return OK


async def _delivered(ctx: JobContext, dedup_key: str, severity: str) -> str:
    """Where the alert's trigger went, per sink: ``sent 200``, ``refused 400``, ``not yet``, ``not routed``
    (its severity does not go there) or ``unconfigured``."""
    seq = int(text_map(await ctx.redis.hgetall(keys.alert(dedup_key))).get("seq", "1"))
    settings, found = ctx.settings, []
    for sink in ALERT_SINKS:
        marker = await ctx.redis.get(keys.alert_sent(dedup_key, seq, "trigger", sink))
        if marker is not None:
            state = text(marker)
        elif (settings.slack_webhook_url if sink == "slack" else settings.pagerduty_routing_key) is None:
            state = "unconfigured"
        elif severity not in settings.routes.get(sink, frozenset()):
            state = "not routed"
        else:
            state = "not yet"
        found.append(f"{sink} {state}")
    return ", ".join(found)


async def _resolve(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    """Close an open alert by hand: resolved in Slack and PagerDuty too (the delivery jobs), and audited."""
    if not args.key:
        out.line("settlekeeper alerts resolve: which alert? give its key (settlekeeper alerts lists them)")
        return PROBLEM
    raw = text_map(await ctx.redis.hgetall(keys.alert(args.key)))
    if raw.get("state") != "triggered":
        out.line(f"{args.key}: not an open alert ({raw.get('state') or 'unknown'})")
        return PROBLEM
    kind = str(json.loads(raw.get("payload", "{}")).get("kind", ""))
    by = args.by or operator()
    summary = f"resolved by hand by {by}: {args.reason}"
    moved = await resolve_alert(ctx.redis, Alert(kind, Severity.INFO, args.key, summary))
    enqueue_alert_deliveries(ctx.rq)
    await ctx.ledger.note("alert_resolved_by_hand", "alert", args.key, reason=args.reason, by=by, alert_kind=kind)
    result: dict[str, Any] = {"dedup_key": args.key, "kind": kind, "resolved": moved is not None, "by": by}
    if out.json:
        out.data(result)
    else:
        out.line(f"{args.key}: resolved ({kind}); Slack and PagerDuty are told by the alert queue", "green")
    return OK


def since_arg(text: str) -> datetime:
    """``--since``: an RFC 3339 instant, or a date (its start, UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date or an RFC 3339 date-time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
