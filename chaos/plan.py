"""What a chaos run plays, decided before it starts from its seed: traffic, treasury and disruptions per day.

Everything random is drawn here from one ``random.Random(seed)``, so a run is replayed by its seed: the same
transfers at the same sandbox times, the same kills, restarts, faults and clock jumps. What the processes
do in between is not deterministic (real processes, real time); the invariants must hold either way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from funding.banking import BankingCalendar
from funding.calendar import TradingCalendar, at_et

CUSTOMERS = 120
"""Customer accounts the traffic is spread over."""
KILL_KINDS = ("leader", "standby", "worker")
TERM_KINDS = ("leader_term", "standby_term", "worker_term")
REDIS_KINDS = ("redis_restart", "redis_lose_last_second")
FAULT_KINDS = (
    "drop_every",
    "dropped_comment",
    "duplicate",
    "reorder",
    "truncate",
    "silence",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "slow",
)
"""Every sandbox fault kind the harness arms (http_error split by status)."""
OTHER_KINDS = ("clock_jump", "pause")
SETTLE_WINDOW = (time(11, 55), time(13, 5))
"""Around the first settle phase and the 1 PM cutoff: no clock jump lands here."""
COVER_WINDOW = (time(19, 55), time(20, 15))


@dataclass(frozen=True)
class Transfer:
    at: datetime
    account: str
    amount: Decimal


@dataclass(frozen=True)
class Trade:
    at: datetime
    account: str
    amount: Decimal
    """What the customer spends (a buy of that much)."""


@dataclass(frozen=True)
class Disruption:
    at: datetime
    kind: str
    detail: int = 0
    """A fault's parameter, or a clock jump's minutes."""


@dataclass
class Day:
    day: date
    trading: bool
    banking: bool
    transfers: list[Transfer] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    rf_short: bool = False
    """The partner's treasury drains RF in the morning: the deadline cannot be paid in full from RF."""
    partner_settles: bool = False
    """At 10:00 the partner settles a few of the day's due transfers itself."""
    disruptions: list[Disruption] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    seed: int
    days: list[Day]

    @property
    def start(self) -> datetime:
        return at_et(self.days[0].day, time(7, 0))

    @property
    def end(self) -> datetime:
        return at_et(self.days[-1].day + timedelta(days=1), time(1, 0))

    def disruptions(self) -> list[Disruption]:
        return sorted((d for day in self.days for d in day.disruptions), key=lambda d: d.at)

    def transfers(self) -> list[Transfer]:
        return sorted((t for day in self.days for t in day.transfers), key=lambda t: t.at)


def customer(n: int) -> str:
    return f"81{n:08d}"


def build(first: date, trading_days: int, seed: int, calendar: TradingCalendar, *, kills_per_day: int) -> Plan:
    """Calendar days from ``first`` until ``trading_days`` trading days were played (weekends and holidays in
    between are played too: transfers still arrive, nothing is due)."""
    rng = random.Random(seed)
    banks = BankingCalendar()
    days: list[Day] = []
    day, played = first, 0
    while played < trading_days:
        trading = calendar.is_trading_day(day)
        plan = Day(day, trading, banks.is_banking_day(day))
        _traffic(plan, rng)
        if trading:
            played += 1
            plan.rf_short = played % 3 == 0
            plan.partner_settles = played % 2 == 0
            _disruptions(plan, rng, kills_per_day, last=played == trading_days)
        days.append(plan)
        day += timedelta(days=1)
    _guarantee_every_kind(days, rng)
    return Plan(seed, days)


def _traffic(plan: Day, rng: random.Random) -> None:
    """Hundreds of IF transfers on a trading day (tens on other days), a few after 8 PM; some customers spend."""
    count = rng.randint(150, 250) if plan.trading else rng.randint(10, 30)
    for _ in range(count):
        late = rng.random() < 0.05
        minute = rng.randint(20 * 60 + 1, 23 * 60 + 30) if late else rng.randint(7 * 60 + 30, 19 * 60 + 50)
        at = at_et(plan.day, time(minute // 60, minute % 60, rng.randint(0, 59)))
        amount = Decimal(rng.randint(1_000, 40_000)) / 100
        plan.transfers.append(Transfer(at, customer(rng.randint(1, CUSTOMERS)), amount))
    for transfer in rng.sample(plan.transfers, k=len(plan.transfers) // 4):
        spend = (transfer.amount * Decimal(rng.randint(60, 100)) / 100).quantize(Decimal("0.01"))
        plan.trades.append(Trade(transfer.at + timedelta(minutes=5), transfer.account, spend))


def _disruptions(plan: Day, rng: random.Random, kills: int, *, last: bool) -> None:
    """Kills and terminations at random moments of the day, denser around the cutoffs; Redis restarts, faults,
    a clock jump and a pause. The last day ends at 21:00, so nothing is planned after it."""
    end = 20 * 60 + 40 if last else 23 * 60

    def moment(near_cutoff: bool) -> datetime:
        if near_cutoff and rng.random() < 0.7:
            lo, hi = (12 * 60, 12 * 60 + 40) if rng.random() < 0.7 else (20 * 60, 20 * 60 + 10)
        else:
            lo, hi = 8 * 60, end
        minute = rng.randint(lo, hi)
        return at_et(plan.day, time(minute // 60, minute % 60, rng.randint(0, 59)))

    for n in range(kills):  # in turn: each process kind gets a third of the kills
        plan.disruptions.append(Disruption(moment(True), KILL_KINDS[n % len(KILL_KINDS)]))
    for _ in range(max(1, kills // 3)):
        plan.disruptions.append(Disruption(moment(True), rng.choice(TERM_KINDS)))
    plan.disruptions.append(Disruption(moment(True), rng.choice(REDIS_KINDS)))
    for kind in rng.sample(FAULT_KINDS, k=4):
        plan.disruptions.append(Disruption(moment(False), kind, rng.randint(2, 20)))
    plan.disruptions.append(Disruption(_outside_windows(plan.day, rng), "clock_jump", rng.randint(5, 40)))
    plan.disruptions.append(Disruption(_outside_windows(plan.day, rng), "pause", rng.randint(5, 20)))


def _outside_windows(day: date, rng: random.Random) -> datetime:
    """A moment of the business day whose jump (up to 40 minutes) or pause (up to 20) ends clear of the settle
    window and of the 19:30 RF refill: a cutoff passed while nothing may run would be the harness' doing."""
    while True:
        minute = rng.randint(8 * 60, 18 * 60 + 30)
        moment = time(minute // 60, minute % 60)
        if not (time(10, 15) <= moment <= time(13, 30)):  # a 40-minute jump from 10:15 still ends before 11:00
            return at_et(day, moment)


def _guarantee_every_kind(days: list[Day], rng: random.Random) -> None:
    """Every fault kind, both Redis restart kinds and each termination kind at least once in the run."""
    trading = [d for d in days if d.trading]
    seen = {d.kind for day in trading for d in day.disruptions}
    for kind in (*FAULT_KINDS, *REDIS_KINDS, *TERM_KINDS):
        if kind not in seen:
            day = rng.choice(trading)
            minute = rng.randint(8 * 60, 19 * 60)
            at = at_et(day.day, time(minute // 60, minute % 60))
            day.disruptions.append(Disruption(at, kind, rng.randint(2, 20)))
