"""What the harness does at a moment of the plan: the partner's and the customers' traffic, the treasury, and
each disruption (a kill, a termination, a Redis restart, a sandbox fault, a clock jump, a pause)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from chaos.cluster import Fleet, Process, Redis
from chaos.plan import Disruption, Trade, Transfer
from demo.feed import DemoError, SandboxClient
from store.guardrails import clear_kill_switch, set_kill_switch

FIRM = "7536050"
SI, RF, FW = f"{FIRM}SI", f"{FIRM}RF", f"{FIRM}FW"
STREAM_FAULTS: dict[str, dict[str, Any]] = {
    "drop_every": {"kind": "drop_every"},
    "dropped_comment": {"kind": "dropped_comment", "count": 3},
    "duplicate": {"kind": "duplicate"},
    "reorder": {"kind": "reorder", "window": 4},
    "truncate": {"kind": "truncate"},
    "silence": {"kind": "silence", "delay_seconds": 2},
}
HTTP_FAULTS: dict[str, dict[str, Any]] = {
    "http_429": {"kind": "http_error", "status": 429, "reset_in_seconds": 1},
    "http_500": {"kind": "http_error", "status": 500},
    "http_502": {"kind": "http_error", "status": 502},
    "http_503": {"kind": "http_error", "status": 503},
    "slow": {"kind": "slow", "delay_seconds": 1.5},
}

SETTLEKEEPERS_PATHS = (
    "/v1/journals/",
    "/v1/instant_funding/settlements/",
    "/v1/instant_funding/limits",
    "/v1/accounts/",
    "/v1/clock",
    "/v2/calendar/",
)
"""Where HTTP faults are armed: paths settlekeeper calls and the harness does not (a fault the harness' own
treasury or transfer call met would skip that act, not test settlekeeper)."""


@dataclass
class Pause:
    start: datetime
    end: datetime | None = None


@dataclass
class Record:
    """What the harness did, for the table and for the invariants that need the harness' own acts."""

    transfers: int = 0
    refused_transfers: int = 0
    trades: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    redis_restarts: int = 0
    redis_bytes_lost: int = 0
    clock_jumps: int = 0
    pauses: list[Pause] = field(default_factory=list)
    partner_settlements: set[str] = field(default_factory=set)
    harness_errors: Counter[str] = field(default_factory=Counter)
    """The harness' own calls that failed (a sandbox answer it did not expect, or none within 30 s)."""
    partner_journals: set[str] = field(default_factory=set)
    rf_short_deadlines: set[date] = field(default_factory=set)
    last_deadline: date = date.min
    """The run's last deadline: what is due later was not played to its cutoff."""


@dataclass
class Actor:
    api: SandboxClient
    fleet: Fleet
    redis: Redis
    rng: random.Random
    clock_now: Callable[[], datetime]
    record: Record = field(default_factory=Record)
    ids: dict[str, str] = field(default_factory=dict)
    pending_resume: datetime | None = None
    """While paused: the sandbox moment the operator resumes."""

    @property
    def paused(self) -> bool:
        return self.pending_resume is not None

    async def transfer(self, transfer: Transfer) -> None:
        body = {"account_no": transfer.account, "source_account_no": SI, "amount": str(transfer.amount)}
        try:
            await self.api.call("POST", "/v1/instant_funding", body)
        except DemoError:  # over the IF limit (403): the partner's app would show the customer an error
            self.record.refused_transfers += 1
            return
        self.record.transfers += 1

    async def trade(self, trade: Trade) -> None:
        body = {"account_no": trade.account, "symbol": "AAPL", "side": "buy", "qty": "1", "price": str(trade.amount)}
        try:
            await self.api.call("POST", "/sandbox/trades", body)
        except DemoError:  # not enough buying power left, or the JIT limit reached
            return
        self.record.trades += 1

    async def drain_rf(self, deadline: date, due: Decimal) -> None:
        """The treasury moves RF's cash to FW, leaving a tenth of what is due: the deadline is RF-short, short
        enough that transfers whose cancellation leaves a debit stay unsettled too (they are settled first)."""
        rf = await self.account(RF)
        leave = (due / 10).quantize(Decimal("0.01"))
        amount = Decimal(rf["cash"]) - Decimal(rf.get("memoposts") or 0) - leave
        if amount > 0:
            journal = await self._journal(RF, FW, amount, "partner treasury: RF to FW")
            self.record.partner_journals.add(str(journal["id"]))
        self.record.rf_short_deadlines.add(deadline)

    async def refill_rf(self, amount: Decimal) -> None:
        await self.api.call("POST", "/sandbox/wires", {"account_no": RF, "amount": str(amount), "immediate": True})

    async def partner_settles(self, deadline: date) -> None:
        """The partner wires into SI and settles a few of today's due transfers itself."""
        due = [t for t in await self.api.transfers(deadline=deadline.isoformat()) if t["status"] == "EXECUTED"]
        chosen = due[: min(5, len(due))]
        if not chosen:
            return
        total = sum((Decimal(t["remaining_payable"]) for t in chosen), Decimal(0))
        await self.api.call("POST", "/sandbox/wires", {"account_no": SI, "amount": str(total), "immediate": True})
        body = {
            "transfers": [{"instant_transfer_id": t["id"]} for t in chosen],
            "additional_info": "partner ops: settled by hand",
        }
        try:
            settlement = await self.api.call("POST", "/v1/instant_funding/settlements", body)
        except DemoError:  # settlekeeper's own settlement is in progress (one per correspondent)
            return
        self.record.partner_settlements.add(str(settlement["id"]))

    async def disrupt(self, disruption: Disruption, http: aiohttp.ClientSession, client: aioredis.Redis) -> None:
        kind = disruption.kind
        if kind in ("leader", "standby", "leader_term", "standby_term"):
            role = kind.removesuffix("_term")
            target = await self._listener(role, http)
            if target is None:  # none has that role now (one is starting): the other listener instead
                alive = [listener for listener in self.fleet.listeners if listener.alive]
                target, kind = (self.rng.choice(alive), kind.replace(role, "listener")) if alive else (None, kind)
            if target is not None:
                await (target.terminate() if kind.endswith("_term") else target.kill())
                self.record.kills[kind] += 1
        elif kind in ("worker", "worker_term"):
            worker = self.rng.choice(self.fleet.workers)
            await (worker.terminate() if kind == "worker_term" else worker.kill())
            self.record.kills[kind] += 1
        elif kind in ("redis_restart", "redis_lose_last_second") and self.paused:
            return  # a restart losing the pause itself would be the harness' doing: played after the resume
        elif kind == "redis_restart":
            await asyncio.to_thread(self.redis.restart)
            self.record.redis_restarts += 1
        elif kind == "redis_lose_last_second":
            self.record.redis_bytes_lost += await asyncio.to_thread(self.redis.crash_losing_last_second)
            self.record.redis_restarts += 1
            self.record.kills["redis_lose_last_second"] += 1
        elif kind in STREAM_FAULTS or kind in HTTP_FAULTS:
            await self._fault(kind, disruption.detail)
        elif kind == "clock_jump":
            await self.api.call("POST", "/sandbox/clock", {"advance_seconds": disruption.detail * 60})
            self.record.clock_jumps += 1

    async def pause(self, client: aioredis.Redis, at: datetime, minutes: int) -> None:
        """The operator pauses for ``minutes`` of sandbox time. The window the invariant checks starts a real
        half second later: a job that read the switch just before may still finish the call it was making."""
        await set_kill_switch(client, "chaos: the operator pauses", "chaos", at.isoformat())
        self.pending_resume = at + timedelta(minutes=minutes)
        await asyncio.sleep(0.5)
        self.record.pauses.append(Pause(self.clock_now()))

    async def resume(self, client: aioredis.Redis, now: datetime) -> None:
        self.record.pauses[-1].end = now
        self.pending_resume = None
        await clear_kill_switch(client)

    async def _fault(self, kind: str, n: int) -> None:
        if kind in STREAM_FAULTS:
            spec = {**STREAM_FAULTS[kind], "n": n, "times": 1, "stream": self.rng.choice(["activities", "journals"])}
        else:
            spec = {**HTTP_FAULTS[kind], "path": self.rng.choice(SETTLEKEEPERS_PATHS), "times": 1 + n % 4}
        await self.api.call("POST", "/sandbox/faults", spec)
        if kind in STREAM_FAULTS:
            await self.api.call("POST", "/sandbox/streams/disconnect")
        self.record.faults[kind] += 1

    async def _listener(self, role: str, http: aiohttp.ClientSession) -> Process | None:
        for listener in self.fleet.listeners:
            if await listener.role(http) == role:
                return listener
        return None

    async def account(self, number: str) -> dict[str, Any]:
        account: dict[str, Any] = await self.api.call("GET", f"/v1/trading/accounts/{await self._id(number)}/account")
        return account

    async def _id(self, number: str) -> str:
        if number not in self.ids:
            [found] = await self.api.call("GET", "/v1/accounts", query=number)
            self.ids[number] = str(found["id"])
        return self.ids[number]

    async def _journal(self, source: str, target: str, amount: Decimal, why: str) -> dict[str, Any]:
        body = {
            "entry_type": "JNLC",
            "from_account": await self._id(source),
            "to_account": await self._id(target),
            "amount": str(amount),
            "description": why,
        }
        journal: dict[str, Any] = await self.api.call("POST", "/v1/journals", body)
        return journal
