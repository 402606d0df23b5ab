"""``settlekeeper status``: what is due and what can pay it, whether the system is paused, the listener, the
queues, the guardrails and the open alerts; exit 1 when something needs a human before the next cutoff."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from rq.queue import Queue
from rq.registry import FailedJobRegistry

from funding.calendar import CYCLE_CUTOFF, SETTLEMENT_CUTOFF, at_et, to_et
from funding.errors import SettlekeeperError
from funding.models import IFStatus, TradeAccount
from funding.money import ZERO, wire
from jobs.forecast import latest as latest_forecast
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, queue
from jobs.runtime import JobContext
from store import keys
from store.codec import text, text_map
from store.guardrails import kill_switch_state

UNSETTLED = (IFStatus.PENDING, IFStatus.EXECUTED)
LATE_MINUTES = 30
"""Unsettled this close to 1 PM ET (the 12:30 page) needs a human: the scheduled settle runs are behind."""


@dataclass
class Deadline:
    deadline: date
    due_count: int
    due_amount: Decimal
    settled_count: int
    unsettled_count: int
    unsettled_amount: Decimal
    interest: Decimal
    minutes_to_cutoff: int
    """Minutes to 1 PM ET of the deadline (negative after it)."""
    minutes_to_cancel: int
    """Minutes to 8 PM ET of the deadline, when Alpaca cancels what is unsettled."""


@dataclass
class Status:
    now: datetime
    paused: bool
    kill_switch: dict[str, str] | None
    modes: dict[str, str]
    deadlines: list[Deadline]
    cash: dict[str, Decimal | None]
    rf_available: Decimal | None
    shortfall: Decimal
    limits: dict[str, dict[str, Decimal] | None]
    listener: dict[str, Any]
    queues: dict[str, dict[str, int]]
    dead_letters: int
    alerts: list[dict[str, str]]
    forecast: dict[str, Any] | None = None
    """The last RF prefunding forecast kept (``sk:forecast``: 09:30 and 15:00 ET), as ``forecast --json`` says it."""
    problems: list[str] = field(default_factory=list)
    """Why a human is needed before the next cutoff (empty: nothing)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def gather(ctx: JobContext) -> Status:
    """Read everything ``status`` shows: the Broker API for what is due and the balances, Redis for the rest."""
    now = await ctx.now()
    settings = ctx.settings
    kill = await kill_switch_state(ctx.redis)
    deadlines = [await _deadline(ctx, day, now) for day in await _open_deadlines(ctx, now)]
    firm = {"SI": settings.si_account_no, "RF": settings.rf_account_no, "FW": settings.fw_account_no}
    accounts = {name: await _trade_account(ctx, number) for name, number in firm.items()}
    cash = {name: None if account is None else account.cash for name, account in accounts.items()}
    first = next((d for d in deadlines if d.unsettled_count), None)
    rf, rf_available = accounts["RF"], None
    if rf is not None:
        budget = await ctx.guard.cap_budget(first.deadline) if first else rf.cash_transferable
        rf_available = min(rf.cash_transferable, budget)
    owed = first.unsettled_amount if first else ZERO
    shortfall = max(owed - max(cash["SI"] or ZERO, ZERO) - (rf_available or ZERO), ZERO)
    status = Status(
        now=now,
        paused=kill is not None,
        kill_switch=kill,
        modes={action: settings.mode(action) for action in ("settle", "fund", "cover")},
        deadlines=deadlines,
        cash=cash,
        rf_available=rf_available,
        shortfall=shortfall,
        limits=await _limits(ctx),
        listener=await _listener(ctx.redis),
        queues=_queues(ctx),
        dead_letters=int(await ctx.redis.xlen(keys.DEAD_LETTERS)),
        alerts=await open_alerts(ctx.redis),
        forecast=await latest_forecast(ctx.redis),
    )
    status.problems = _problems(status, first)
    return status


async def _open_deadlines(ctx: JobContext, now: datetime) -> list[date]:
    """Today's deadline (when it trades), the next one (today's transfers), and any other the store still
    holds unsettled transfers for."""
    today = to_et(now).date()
    days = {ctx.calendar.trading_day_on_or_after(today)}
    days.add(ctx.calendar.deadline_for(ctx.calendar.current_system_date(now)))
    async for key in ctx.redis.scan_iter(match=keys.due("*"), count=500):
        day = text(key).removeprefix(keys.due(""))
        if await ctx.redis.scard(key):
            days.add(date.fromisoformat(day))
    return sorted(days)


async def _deadline(ctx: JobContext, day: date, now: datetime) -> Deadline:
    rows = [
        t for t in await ctx.broker.list_transfers(deadline=day) if t.source_account_no == ctx.settings.si_account_no
    ]
    due = [t for t in rows if t.status not in (IFStatus.CANCELED, IFStatus.FAILED)]
    open_ = [t for t in rows if t.status in UNSETTLED]
    return Deadline(
        deadline=day,
        due_count=len(due),
        due_amount=_sum(t.amount for t in due),
        settled_count=sum(1 for t in rows if t.status is IFStatus.COMPLETED),
        unsettled_count=len(open_),
        unsettled_amount=_sum(t.remaining_payable for t in open_),
        interest=_sum(t.total_interest for t in rows),
        minutes_to_cutoff=_minutes(at_et(day, SETTLEMENT_CUTOFF), now),
        minutes_to_cancel=_minutes(at_et(day, CYCLE_CUTOFF), now),
    )


def _sum(amounts: Any) -> Decimal:
    return sum(amounts, ZERO)


def _minutes(at: datetime, now: datetime) -> int:
    return round((at - now).total_seconds() / 60)


async def _trade_account(ctx: JobContext, account_no: str) -> TradeAccount | None:
    """A firm account's balances, or None when it cannot be read (status shows "unreadable")."""
    try:
        return await ctx.broker.trade_account(await ctx.account_id(account_no))
    except SettlekeeperError:
        return None


async def _limits(ctx: JobContext) -> dict[str, dict[str, Decimal] | None]:
    found: dict[str, dict[str, Decimal] | None] = {"instant_funding": None, "jit": None}
    try:
        limit = await ctx.broker.if_limits()
        found["instant_funding"] = {"in_use": limit.amount_in_use, "limit": limit.amount_limit}
    except SettlekeeperError:
        pass
    try:
        jit = await ctx.broker.jit_limits()
        found["jit"] = {"in_use": jit.in_use_limit, "limit": jit.daily_net_limit}
    except SettlekeeperError:
        pass
    return found


async def _listener(client: aioredis.Redis) -> dict[str, Any]:
    """The leader's own report (``sk:listener``, refreshed every lease renewal), and each stream's cursor age
    (wall-clock seconds, whatever the business clock says)."""
    state = text_map(await client.hgetall(keys.LISTENER_STATE))
    streams: dict[str, Any] = json.loads(state.get("streams", "{}"))
    wall = time.time()
    for name, stream in streams.items():
        moved = await client.get(keys.cursor_at(name))
        stream["cursor_age_seconds"] = round(wall - float(moved)) if moved is not None else None
        stream["last_event_age_seconds"] = round(wall - stream.pop("last_alive")) if stream.get("last_alive") else None
    return {"leader": state.get("holder"), "updated_at": state.get("updated_at"), "streams": streams}


def _queues(ctx: JobContext) -> dict[str, dict[str, int]]:
    found = {}
    for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE):
        q: Queue = queue(name, ctx.rq)
        found[name] = {"queued": q.count, "failed": FailedJobRegistry(queue=q).count}
    return found


async def open_alerts(client: aioredis.Redis) -> list[dict[str, str]]:
    """Every triggered alert: its key, kind, severity, summary and since when."""
    found = []
    async for key in client.scan_iter(match=keys.alert("*"), count=500):
        raw = text_map(await client.hgetall(key))
        if raw.get("state") != "triggered":
            continue
        payload = json.loads(raw.get("payload", "{}"))
        found.append(
            {
                "dedup_key": text(key).removeprefix(keys.alert("")),
                "kind": str(payload.get("kind", "")),
                "severity": str(payload.get("severity", "")),
                "summary": str(payload.get("summary", "")),
                "since": raw.get("triggered_at", ""),
            }
        )
    return sorted(found, key=lambda a: a["since"])


def _problems(status: Status, first: Deadline | None) -> list[str]:
    """What a human must look at before the next cutoff."""
    found = []
    if first is not None:
        left = f"{first.unsettled_count} transfers still unsettled"
        if 0 <= first.minutes_to_cutoff <= LATE_MINUTES:
            found.append(f"{left} {first.minutes_to_cutoff} minutes before the 1 PM ET cutoff")
        elif first.minutes_to_cutoff < 0 <= first.minutes_to_cancel:
            found.append(f"{left} after the 1 PM ET cutoff: Alpaca cancels them at 8 PM ET unless settled")
        if status.paused:
            owed = f"{first.unsettled_count} transfers ({wire(first.unsettled_amount)}) due {first.deadline}"
            found.append(f"paused: {owed} wait for `settlekeeper resume`")
        if status.shortfall > 0:
            found.append(f"SI + RF are {wire(status.shortfall)} short of what is due {first.deadline}")
        if status.modes["settle"] != "on" or status.modes["fund"] != "on":
            found.append(f"auto-settle is off (settle {status.modes['settle']}, fund {status.modes['fund']})")
    if not status.listener["leader"]:
        found.append("no listener is leading: no event is read and no phase is scheduled")
    for name, stream in status.listener["streams"].items():
        if not stream.get("connected"):
            found.append(f"the {name} stream is not connected")
    failed = sum(q["failed"] for q in status.queues.values())
    if failed:
        found.append(f"{failed} failed jobs")
    critical = [a for a in status.alerts if a["severity"] == "critical"]
    if critical:
        found.append(f"{len(critical)} critical alert{'s' if len(critical) > 1 else ''} open")
    return found
