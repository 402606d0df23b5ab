"""The report ``settlekeeper demo`` ends with: every settlement, journal and cover, the interest avoided and
incurred, and what is left for a human, read from the sandbox (the truth) and settlekeeper's Redis keys
(intents ``sk:intent:*``, costs ``sk:costs:<date>``, the audit trail and the alerts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from config.settings import Settings
from demo.feed import Counts, SandboxClient, day_label, money, settled_by, short
from funding.backtest import replay
from funding.calendar import SETTLEMENT_CUTOFF, at_et, to_et
from funding.forecast import Assumptions
from store import keys
from store.audit import Intent, Ledger

ZERO = Decimal(0)
UNSETTLED = ("PENDING", "EXECUTED")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Fixed-width columns, two spaces apart; the ``right`` columns (indexes) are right-aligned."""
    body = [list(r) for r in rows]
    if not body:
        return ["  (none)"]
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *body, strict=True)]
    aligned = set(right)

    def line(cells: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                str(c).rjust(w) if i in aligned else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )

    return [line(headers), *(line(r) for r in body)]


def stamp(value: str | None) -> str:
    return to_et(datetime.fromisoformat(value)).strftime("%a %m-%d %H:%M") if value else ""


@dataclass
class Facts:
    """Everything the report reads, once."""

    numbers: dict[str, str]
    accounts: dict[str, dict[str, Any]]
    transfers: list[dict[str, Any]]
    settlements: list[dict[str, Any]]
    journals: list[dict[str, Any]]
    intents: list[Intent]
    audit: list[dict[str, Any]]
    alerts: list[dict[str, str]]
    costs: dict[str, dict[str, str]]
    settled_by: dict[str, str]


async def gather(sandbox: SandboxClient, client: aioredis.Redis) -> Facts:
    rows = await sandbox.call("GET", "/v1/accounts")
    transfers = await sandbox.transfers()
    ledger = Ledger(client)
    days = sorted({_text(k).removeprefix(keys.intents_of("")) async for k in client.scan_iter(keys.intents_of("*"))})
    intents = [intent for day in days for intent in await ledger.intents_for(day)]
    audit = []
    trail: Any = await client.xrange(keys.AUDIT)
    for _, raw in trail:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        audit.append({**fields, "facts": json.loads(fields.get("facts") or "{}")})
    raised: Any = await client.xrange(keys.ALERTS)
    alerts = [{_text(k): _text(v) for k, v in raw.items()} for _, raw in raised]
    dates = sorted({t["deadline"] for t in transfers} | set(days))
    costs = {d: {_text(k): _text(v) for k, v in (await client.hgetall(keys.costs(d))).items()} for d in dates}
    settled = {}
    for t in transfers:
        if t["status"] == "COMPLETED":
            settled[t["id"]] = _text(await client.hget(keys.transfer(t["id"]), "settled_by") or "?")
    return Facts(
        numbers={str(r["id"]): str(r["account_number"]) for r in rows},
        accounts={a["account_number"]: a for a in await sandbox.accounts()},
        transfers=transfers,
        settlements=await sandbox.settlements(),
        journals=await sandbox.journals(),
        intents=intents,
        audit=audit,
        alerts=alerts,
        costs=costs,
        settled_by=settled,
    )


def forecast_backtest(facts: Facts, settings: Settings) -> list[str]:
    """The RF prefunding forecast replayed over the week (:mod:`funding.backtest`; with one week of history its
    samples are the trading days before, not the same weekday)."""
    deadlines = sorted({date.fromisoformat(t["deadline"]) for t in facts.transfers})
    rf_short = {
        date.fromisoformat(a["dedup_key"].removeprefix("rf-short-")) for a in facts.alerts if a["kind"] == "rf_short"
    }
    assumptions = Assumptions(settings.fed_upper_bound, settings.margin_rate)
    return replay(facts.transfers, settings.si_account_no, deadlines, assumptions, rf_short)


def render(facts: Facts, now: datetime, title: str, counts: Counts, backtest: Sequence[str] = ()) -> list[str]:
    out = ["", f"══ Report: {title}, at {to_et(now):%a %Y-%m-%d %H:%M} ET ".ljust(100, "═"), ""]
    out += _transfers(facts)
    out += ["", f"Settlements ({len(facts.settlements)})", *_settlements(facts, counts)]
    out += ["", f"Journals ({len(facts.journals)})", *_journals(facts)]
    covers = [i for i in facts.intents if i.kind == "cover"]
    out += ["", f"Covers ({len(covers)})", *_covers(facts, covers)]
    out += ["", "Interest", *_interest(facts)]
    alerts, open_items = _alerts(facts, now)
    raised = len({a["dedup_key"] for a in facts.alerts})
    out += ["", f"Alerts raised ({raised})", *alerts]
    out += ["", "Left for a human", *(open_items or ["  nothing: every transfer due is settled or covered"])]
    if backtest:
        out += ["", "Forecast backtest", *(f"  {line}" for line in backtest)]
    return [*out, ""]


def _transfers(facts: Facts) -> list[str]:
    def total(rows: list[dict[str, Any]]) -> str:
        return money(sum((Decimal(t["amount"]) for t in rows), ZERO))

    done = [t for t in facts.transfers if t["status"] == "COMPLETED"]
    ours = [t for t in done if facts.settled_by.get(t["id"]) == "settlekeeper"]
    theirs = [t for t in done if facts.settled_by.get(t["id"]) != "settlekeeper"]
    canceled = [t for t in facts.transfers if t["status"] == "CANCELED"]
    open_ = [t for t in facts.transfers if t["status"] in UNSETTLED]
    return [
        f"IF transfers: {len(facts.transfers)} ({total(facts.transfers)})",
        f"  settled by settlekeeper  {len(ours):>3}  {total(ours):>12}",
        f"  settled by the partner   {len(theirs):>3}  {total(theirs):>12}",
        f"  canceled at 8 PM         {len(canceled):>3}  {total(canceled):>12}",
        f"  not settled yet          {len(open_):>3}  {total(open_):>12}",
    ]


def _settlements(facts: Facts, counts: Counts) -> list[str]:
    for entry in facts.audit:
        if entry["event"] == "settle_sent":
            counts.by_intent[entry["key"]] = int(entry["facts"].get("transfers", 0))
    rows = []
    for s in sorted(facts.settlements, key=lambda s: str(s["created_at"])):
        count = counts.of(s)
        status = s["status"] + (f" ({s['reason']})" if s.get("reason") else "")
        rows.append(
            [
                short(s["id"]),
                settled_by(s),
                stamp(s["created_at"]),
                stamp(s.get("completed_at") or ""),
                str(count) if count is not None else "?",
                money(s["total_amount"]),
                money(s.get("interest_amount") or 0),
                status,
            ]
        )
    columns = ["id", "by", "created", "completed", "transfers", "amount", "interest", "status"]
    return table(columns, rows, right=(4, 5, 6))


def _journals(facts: Facts) -> list[str]:
    by_journal = {i.broker_id: i for i in facts.intents if i.broker_id and i.kind in ("fund", "cover")}
    rows = []
    for j in sorted(facts.journals, key=lambda j: str(j["created_at"])):
        intent = by_journal.get(j["id"])
        if intent is not None and intent.kind == "fund":
            why = f"settlekeeper: top up SI for the transfers due {day_label(intent.deadline)}"
        elif intent is not None:
            why = f"settlekeeper: cover {intent.account_no}'s debit after the {day_label(intent.deadline)} cancellation"
        else:
            why = str(j.get("description") or "")
        source, target = facts.numbers.get(j["from_account"], "?"), facts.numbers.get(j["to_account"], "?")
        rows.append(
            [short(j["id"]), stamp(j["created_at"]), f"{source} → {target}", money(j["net_amount"]), j["status"], why]
        )
    return table(["id", "created", "from → to", "amount", "status", "why"], rows, right=(3,))


def _covers(facts: Facts, covers: list[Intent]) -> list[str]:
    debit = {e["key"]: e["facts"].get("debit") for e in facts.audit if e["event"] == "cover_planned"}
    status = {j["id"]: j["status"] for j in facts.journals}
    rows = []
    for intent in covers:
        margin = facts.costs.get(intent.deadline, {}).get(f"margin_interest:{intent.account_no}", "0")
        journal = status.get(intent.broker_id, intent.status)
        cash = facts.accounts.get(intent.account_no, {}).get("cash", "?")
        rows.append(
            [
                intent.account_no,
                day_label(intent.deadline),
                money(debit.get(intent.key) or intent.amount),
                money(intent.amount),
                journal,
                money(cash) if cash != "?" else cash,
                money(margin),
            ]
        )
    headers = ["account", "canceled", "debit", "journal", "journal status", "cash now", "margin interest est."]
    return table(headers, rows, right=(2, 3, 5, 6))


def _interest(facts: Facts) -> list[str]:
    avoided = sum((Decimal(c.get("late_interest_avoided", "0")) for c in facts.costs.values()), ZERO)
    recorded = sum((Decimal(c.get("late_interest_incurred", "0")) for c in facts.costs.values()), ZERO)
    margin = sum(
        (Decimal(v) for c in facts.costs.values() for k, v in c.items() if k.startswith("margin_interest:")), ZERO
    )
    booked = [t for t in facts.transfers if Decimal(t["total_interest"]) > 0]
    incurred = sum((Decimal(t["total_interest"]) for t in booked), ZERO)
    days = ", ".join(sorted({day_label(t["deadline"]) for t in booked})) or "no day"
    return [
        f"  late interest avoided      {money(avoided):>10}  a day at fed upper bound + 8 % on what settlekeeper "
        "settled before 1 PM",
        f"  late interest incurred     {money(incurred):>10}  booked by Alpaca at 1 PM on {len(booked)} transfers "
        f"({days})" + (f"; {money(recorded)} of it on transfers settlekeeper then settled late" if recorded else ""),
        f"  margin interest estimated  {money(margin):>10}  on the debits left by cancellations, until covered",
    ]


def _alerts(facts: Facts, now: datetime) -> tuple[list[str], list[str]]:
    """The alerts raised, each marked open or resolved, and the open items a human must look at."""
    journals = {j["id"]: j for j in facts.journals}
    groups: dict[str, list[dict[str, str]]] = {}
    for alert in facts.alerts:
        groups.setdefault(alert["dedup_key"], []).append(alert)
    lines: list[str] = []
    left: list[str] = []
    for dedup, changes in groups.items():
        raised = [a for a in changes if a.get("action") != "resolve"]
        if not raised:
            continue
        first = raised[0]
        state = "open" if changes[-1].get("action") != "resolve" else f"resolved: {changes[-1]['summary']}"
        journal = journals.get(first.get("journal_id", ""))
        if journal is not None and journal["status"] != "pending":
            state = f"resolved: journal {short(journal['id'])} is {journal['status']}"
        account = facts.accounts.get(first.get("account_no", ""))
        if first["kind"] == "debit_remains" and account is not None and Decimal(account["cash"]) >= 0:
            state = "resolved: the account is no longer in debit"
        times = f" (raised {len(raised)}×)" if len(raised) > 1 else ""
        lines.append(f"  {first['severity']:<8} {first['kind']:<16} {first['summary']}{times}")
        lines.append(f"  {'':<8} {'':<16} → {state}")
        if state != "open":
            continue
        if first["kind"] == "rf_short":
            deadline = dedup.removeprefix("rf-short-")
            lapsed = [t for t in facts.transfers if t["deadline"] == deadline and t["status"] == "CANCELED"]
            interest = sum((Decimal(t["total_interest"]) for t in lapsed), ZERO)
            rf_now = money(facts.accounts.get(_rf(facts), {}).get("cash", 0))
            left.append(
                f"  ! RF was short on {day_label(deadline)}: {len(lapsed)} transfers lapsed at 8 PM with "
                f"{money(interest)} of late interest to pay; fund RF for each day's total (RF now {rf_now})"
            )
        elif journal is None:
            left.append(f"  ! {first['kind']}: {first['summary']}")
    for j in facts.journals:
        if j["status"] == "pending":
            target = facts.numbers.get(j["to_account"], "?")
            left.append(
                f"  ! journal {short(j['id'])} RF → {target} {money(j['net_amount'])} is pending Alpaca's approval "
                f"(JNLC limit): ask Alpaca to approve it (sandbox: POST /sandbox/journals/{j['id']}/approve)"
            )
    for number, account in sorted(facts.accounts.items()):
        if account.get("firm") or Decimal(account["cash"]) >= 0:
            continue
        flags = [f"margin call {account['margin_call_on']}"] if account.get("margin_call_on") else []
        flags += [f"liquidated {account['liquidated_on']}"] if account.get("liquidated_on") else []
        left.append(
            f"  ! {number} is in debit: cash {money(account['cash'])}"
            + (f" ({', '.join(flags)})" if flags else ": margin call at 09:00 on the next trading day unless covered")
        )
    today = to_et(now).date()
    late = [
        t
        for t in facts.transfers
        if t["status"] in UNSETTLED and now >= at_et(date.fromisoformat(t["deadline"]), SETTLEMENT_CUTOFF)
    ]
    if late:
        left.append(f"  ! {len(late)} transfers are past their 1 PM deadline and still unsettled")
    upcoming: dict[str, list[dict[str, Any]]] = {}
    for t in facts.transfers:
        if t["status"] in UNSETTLED and t not in late:
            upcoming.setdefault(t["deadline"], []).append(t)
    for deadline, rows in sorted(upcoming.items()):
        total = sum((Decimal(t["amount"]) for t in rows), ZERO)
        when = "today" if date.fromisoformat(deadline) == today else day_label(deadline)
        left.append(
            f"  · not late: {len(rows)} transfers ({money(total)}) due {when} 1 PM; settlekeeper settles them at 12:00"
        )
    return lines or ["  (none)"], left


def _rf(facts: Facts) -> str:
    return next((n for n in facts.accounts if n.endswith("RF")), "")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
