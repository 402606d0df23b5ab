"""The week ``settlekeeper demo`` plays: who does what at which sandbox time, and how fast the clock runs.

The story is written against the week's trading days T0, T1, T2, T3 (Thanksgiving week 2026: Mon, Tue,
Wed, Fri), so any week with at least three trading days plays it:

- **T0** customers receive IF transfers through the day and some spend the buying power; the activities
  stream is cut and faulted in the afternoon; at 20:20 the partner's treasury moves RF's cash to FW,
  leaving too little for tomorrow; two transfers arrive after 8 PM (they count for T1, due T2).
- **T1** RF is short: settlekeeper settles what RF can pay, first the transfers whose cancellation would
  leave a debit, and pages. A wire lands in RF at 19:30 (this partner runs no 19:00 final check, see
  demo/run.py). At 8 PM the rest lapse, two
  customers are left in debit and the cover job journals it back; one journal is over the JNLC limit and
  waits for Alpaca's approval, which on-call obtains at 21:15.
- **T2** the partner wires into SI and settles two transfers itself at 10:00; settlekeeper settles the
  rest, never the partner's twice.
- **a holiday** NYSE is closed: no deadline; a transfer made that day counts for the next trading day.
- **T3** an ordinary deadline under stream faults (503 on connect, cut streams, internal server error on
  the journals stream); the week ends at 20:30 on the last trading day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from demo.feed import Counts, DemoError, Progress, SandboxClient, day_label, money
from funding.calendar import EARLY_CLOSE, TradingCalendar, at_et, to_et
from sandbox.state import SeedConfig

THANKSGIVING_WEEK = date(2026, 11, 23)
"""The default week: Thanksgiving 2026 (Thu 11-26 closed, Fri 11-27 closes at 1 PM)."""
DEFAULT_SPEED = 1200.0
"""Sandbox seconds per real second during the trading day: an hour in three seconds, a week in ~4 minutes."""
NIGHT_FACTOR = 8.0
"""Nights and holidays run this much faster: nothing is scheduled then but the demo's own steps."""
CUTOFF_SPEED_CAP = 600.0
"""Around 12:00 and 20:00 on a deadline the clock runs at most this fast (and a quarter of the day speed):
the listener follows the sandbox clock once a real second, so the noon settlement starts within minutes."""
CUTOFF_WINDOWS = ((time(11, 59), time(12, 45)), (time(18, 59), time(19, 10)), (time(19, 59), time(20, 10)))
BUSINESS_HOURS = (time(7, 0), time(21, 30))
START_TIME = time(7, 30)
END_TIME = time(20, 30)
"""The last day ends after the 20:05 sweep has run."""

SEED: dict[str, Any] = {
    "customers": 10,
    "rf_balance": "250000.00",
    "if_account_limit": "10000.00",
    "jnlc_transaction_limit": "5000.00",
    "jnlc_daily_limit": "10000.00",
}
"""The sandbox's seed: ten customers with no cash of their own, RF prefunded with 250,000, IF up to 10,000 per
customer, and JNLC limits a 3,200 cover passes and a 5,500 cover does not (it waits for approval)."""
FIRM = SeedConfig().firm_prefix
SI, RF, FW = f"{FIRM}SI", f"{FIRM}RF", f"{FIRM}FW"
ACTIVITIES = "/v2beta1/events/activities"


def customer(n: int) -> str:
    return f"81{n:08d}"


@dataclass(frozen=True)
class Fund:
    """IF transfers: (customer number, amount)."""

    transfers: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Buy:
    customer: int
    qty: int
    price: str
    symbol: str = "AAPL"


@dataclass(frozen=True)
class WireIn:
    account_no: str
    amount: str
    why: str


@dataclass(frozen=True)
class PartnerSettles:
    """The partner's ops wire into SI and settle these customers' transfers due ``deadline`` themselves."""

    customers: tuple[int, ...]
    deadline: date


@dataclass(frozen=True)
class Treasury:
    """The partner's treasury journals RF's cash to FW, leaving ``leave`` in RF."""

    leave: str


@dataclass(frozen=True)
class Faults:
    specs: tuple[dict[str, Any], ...]
    why: str


@dataclass(frozen=True)
class ClearFaults:
    pass


@dataclass(frozen=True)
class Approve:
    """On-call asks Alpaca to approve every pending journal (the sandbox's admin approval); with none pending
    yet (the cover job is late), on-call waits for the page until ``until``."""

    until: time = time(23, 59)


@dataclass(frozen=True)
class DayStarts:
    day: date


Action = Fund | Buy | WireIn | PartnerSettles | Treasury | Faults | ClearFaults | Approve | DayStarts


@dataclass(frozen=True)
class Step:
    at: datetime
    action: Action


@dataclass(frozen=True)
class Week:
    monday: date
    start: datetime
    end: datetime
    steps: tuple[Step, ...]
    trading_days: tuple[date, ...]
    deadline_days: frozenset[date] = field(default_factory=frozenset)
    """Trading days on which the demo's transfers fall due (T1 on): the clock slows around their cutoffs."""

    def speed_at(self, moment: datetime, base: float) -> float:
        local = to_et(moment)
        day, clock = local.date(), local.time()
        if day in self.deadline_days and any(a <= clock < b for a, b in CUTOFF_WINDOWS):
            return cutoff_speed(base)
        if day in self.trading_days and BUSINESS_HOURS[0] <= clock < BUSINESS_HOURS[1]:
            return base
        return base * NIGHT_FACTOR

    def next_speed_change(self, moment: datetime) -> datetime:
        local = to_et(moment)
        marks = [*BUSINESS_HOURS, *(t for window in CUTOFF_WINDOWS for t in window)]
        candidates = [at_et(local.date(), t) for t in marks] + [at_et(local.date() + timedelta(days=1), time(0))]
        return min(c for c in candidates if c > local)


def cutoff_speed(base: float) -> float:
    """The clock's speed around a deadline's 12:00 and 20:00."""
    return min(base, max(base / 4, 1.0), CUTOFF_SPEED_CAP)


def build_week(monday: date, calendar: TradingCalendar, days: int | None = None) -> Week:
    """The scripted week starting ``monday``; ``days`` settlement deadlines are played (all when None)."""
    weekdays = [monday + timedelta(days=n) for n in range(5)]
    trading = [d for d in weekdays if calendar.is_trading_day(d)]
    if len(trading) < 3:
        raise DemoError(f"the week of {monday} has {len(trading)} trading days; the demo needs at least 3")
    t0, t1, t2 = trading[:3]
    last = trading[min(len(trading) - 1, days if days is not None else len(trading))]
    closed = [d for d in weekdays if not calendar.is_trading_day(d) and t0 < d < last]

    def at(day: date, hh: int, mm: int) -> datetime:
        return at_et(day, time(hh, mm))

    steps = [
        Step(at(t0, 7, 30), DayStarts(t0)),
        Step(at(t0, 8, 15), Fund(((1, "2500.00"), (2, "4000.00"), (3, "1500.00")))),
        Step(at(t0, 9, 40), Fund(((4, "6000.00"), (5, "3000.00")))),
        Step(at(t0, 10, 30), Buy(4, 550, "10.00")),
        Step(at(t0, 10, 45), Buy(1, 230, "10.00", "MSFT")),
        Step(
            at(t0, 13, 55),
            Faults(
                ({"kind": "drop_every", "n": 2, "times": 2, "stream": "activities"},),
                "activities stream: Alpaca redeploys, and the next 2 connections drop every 2 events",
            ),
        ),
        Step(at(t0, 14, 0), Fund(((6, "3500.00"), (7, "2000.00")))),
        Step(
            at(t0, 15, 25),
            Faults(
                ({"kind": "dropped_comment", "n": 1, "count": 2, "times": 1, "stream": "activities"},),
                "activities stream: the server will skip 2 events and say “dropped 2 messages”",
            ),
        ),
        Step(at(t0, 15, 30), Buy(6, 320, "10.00")),
        Step(at(t0, 15, 35), Buy(7, 180, "10.00", "NVDA")),
        Step(at(t0, 16, 30), ClearFaults()),
        Step(at(t0, 20, 20), Treasury(leave="7000.00")),
        Step(at(t0, 20, 40), Fund(((8, "5000.00"), (2, "1200.00")))),
        Step(at(t1, 0, 0), DayStarts(t1)),
        Step(at(t1, 9, 30), Fund(((9, "4500.00"), (3, "3000.00"), (10, "4000.00")))),
        Step(at(t1, 11, 0), Buy(9, 400, "10.00")),
        Step(at(t1, 11, 10), Buy(8, 480, "10.00", "AMZN")),
        Step(at(t1, 19, 30), WireIn(RF, "250000.00", "treasury's wire lands in RF, too late: no final check runs")),
        Step(at(t1, 21, 15), Approve()),
        Step(at(t2, 0, 0), DayStarts(t2)),
        Step(at(t2, 10, 0), PartnerSettles((8, 9), t2)),
        Step(at(t2, 11, 0), Fund(((5, "3000.00"), (7, "2500.00")))),
        Step(at(t2, 16, 0), Buy(5, 280, "10.00")),
        Step(at(t2, 21, 0), Fund(((1, "2000.00"),))),
    ]
    for n, day in enumerate(closed):
        steps.append(Step(at(day, 0, 0), DayStarts(day)))
        if n == 0:
            steps.append(Step(at(day, 11, 0), Fund(((3, "1500.00"),))))
    for day in trading[3:]:
        steps.append(Step(at(day, 0, 0), DayStarts(day)))
    if len(trading) > 3:
        t3 = trading[3]
        faults = (
            {"kind": "http_error", "status": 503, "path": ACTIVITIES, "times": 2},
            {"kind": "drop_every", "n": 2, "times": 1, "stream": "activities"},
            {"kind": "internal_error", "n": 1, "times": 2, "stream": "journals"},
        )
        why = "streams cut; reconnecting to activities gets 503 twice, journals send “internal server error” twice"
        steps += [
            Step(at(t3, 8, 55), Faults(faults, why)),
            Step(at(t3, 9, 30), Fund(((2, "2500.00"), (9, "1000.00"), (10, "1200.00")))),
            Step(at(t3, 13, 30), ClearFaults()),
        ]
    end = at_et(last, END_TIME)
    return Week(
        monday=monday,
        start=at_et(t0, START_TIME),
        end=end,
        steps=tuple(sorted((s for s in steps if s.at < end), key=lambda s: s.at)),
        trading_days=tuple(trading),
        deadline_days=frozenset(d for d in trading if t0 < d <= last),
    )


def describe_week(week: Week, calendar: TradingCalendar) -> str:
    """``Mon 11-23 … Fri 11-27; NYSE closed Thu 11-26 (Thanksgiving Day); Fri 11-27 closes at 1 PM``."""
    days = [week.monday + timedelta(days=n) for n in range(5)]
    notes = [f"{day_label(days[0])} … {day_label(days[-1])}"]
    for day in days:
        if not calendar.is_trading_day(day):
            notes.append(f"NYSE closed {day_label(day)} ({calendar.holiday_name(day) or 'closed'})")
        elif calendar.session(day).close == EARLY_CLOSE:
            notes.append(f"{day_label(day)} closes at 1 PM")
    if len(notes) == 1:
        notes.append("no NYSE holiday this week")
    return "; ".join(notes)


class Driver:
    """Performs the script's steps against the sandbox, as the partner, its customers and its treasury would."""

    def __init__(self, sandbox: SandboxClient, progress: Progress, counts: Counts, calendar: TradingCalendar) -> None:
        self.sandbox = sandbox
        self.progress = progress
        self.counts = counts
        self.calendar = calendar
        self._ids: dict[str, str] = {}

    async def account_id(self, account_no: str) -> str:
        if not self._ids:
            rows = await self.sandbox.call("GET", "/v1/accounts")
            self._ids = {str(r["account_number"]): str(r["id"]) for r in rows}
        return self._ids[account_no]

    async def number_of(self, account_id: str) -> str:
        await self.account_id(SI)
        return next((no for no, i in self._ids.items() if i == account_id), account_id)

    async def perform(self, action: Action) -> bool:
        """Do ``action``; False when it must be tried again later (on-call waits for a journal to approve)."""
        say = self.progress.say
        match action:
            case Fund(transfers):
                created = [
                    await self.sandbox.call(
                        "POST",
                        "/v1/instant_funding",
                        {"account_no": customer(n), "source_account_no": SI, "amount": amount},
                    )
                    for n, amount in transfers
                ]
                listed = ", ".join(f"{t['account_no']} {money(t['amount'])}" for t in created)
                first = created[0]
                late = to_et(datetime.fromisoformat(first["created_at"])).time() >= time(20, 0)
                when = "after 8 PM: " if late else ""
                say(
                    "partner",
                    f"{when}IF transfers {listed} (system date {day_label(first['system_date'])}, "
                    f"due {day_label(first['deadline'])} 1 PM)",
                )
            case Buy(n, qty, price, symbol):
                body = {"account_no": customer(n), "symbol": symbol, "side": "buy", "qty": str(qty), "price": price}
                trade = await self.sandbox.call("POST", "/sandbox/trades", body)
                say("customer", f"{customer(n)} buys {qty} {symbol} for {money(-Decimal(trade['net_amt']))}")
            case WireIn(account_no, amount, why):
                await self.sandbox.call(
                    "POST", "/sandbox/wires", {"account_no": account_no, "amount": amount, "immediate": True}
                )
                say("treasury", f"{why}: {money(amount)} into {account_no}")
            case PartnerSettles(customers, deadline):
                await self._partner_settles(customers, deadline)
            case Treasury(leave):
                await self._treasury(Decimal(leave))
            case Faults(specs, why):
                say("fault", why)
                await self.sandbox.call("POST", "/sandbox/faults", {"faults": list(specs)})
                await self.sandbox.call("POST", "/sandbox/streams/disconnect")
            case ClearFaults():
                await self.sandbox.call("DELETE", "/sandbox/faults")
                say("fault", "stream faults cleared")
            case Approve(until):
                return await self._approve() or to_et(self.progress.now()).time() >= until
            case DayStarts(day):
                await self._day_starts(day)
        return True

    async def _partner_settles(self, customers: tuple[int, ...], deadline: date) -> None:
        wanted = {customer(n) for n in customers}
        due = [
            t
            for t in await self.sandbox.transfers(deadline=deadline.isoformat())
            if t["account_no"] in wanted and t["status"] in ("PENDING", "EXECUTED")
        ]
        if not due:
            raise DemoError(f"no unsettled transfers of {sorted(wanted)} are due {deadline}")
        total = sum((Decimal(t["remaining_payable"]) for t in due), Decimal(0))
        await self.sandbox.call("POST", "/sandbox/wires", {"account_no": SI, "amount": str(total), "immediate": True})
        settlement = await self.sandbox.call(
            "POST",
            "/v1/instant_funding/settlements",
            {
                "transfers": [{"instant_transfer_id": t["id"]} for t in due],
                "additional_info": f"partner ops: bulk wire for {len(due)} transfers",
            },
        )
        self.counts.by_settlement[str(settlement["id"])] = len(due)
        who = ", ".join(sorted(t["account_no"] for t in due))
        self.progress.say(
            "partner",
            f"ops wire {money(total)} into SI and settle {len(due)} transfers due today themselves ({who}): "
            f"settlement {str(settlement['id'])[:8]}",
        )

    async def _treasury(self, leave: Decimal) -> None:
        rf = await self.sandbox.call("GET", f"/v1/trading/accounts/{await self.account_id(RF)}/account")
        amount = Decimal(rf["cash"]) - Decimal(rf.get("memoposts") or 0) - leave
        if amount <= 0:
            return
        body = {
            "entry_type": "JNLC",
            "from_account": await self.account_id(RF),
            "to_account": await self.account_id(FW),
            "amount": str(amount),
            "description": "partner treasury: RF to FW for a vendor payment",
        }
        await self.sandbox.call("POST", "/v1/journals", body)
        self.progress.say(
            "treasury", f"journals {money(amount)} from RF to FW for a payment, leaving {money(leave)} in RF"
        )

    async def _approve(self) -> bool:
        pending = await self.sandbox.journals(status="pending")
        for journal in pending:
            await self.sandbox.call("POST", f"/sandbox/journals/{journal['id']}/approve")
            target = await self.number_of(str(journal["to_account"]))
            self.progress.say(
                "on-call",
                f"after the page, Alpaca approves pending journal {str(journal['id'])[:8]}: "
                f"RF → {target} {money(journal['net_amount'])}",
            )
        return bool(pending)

    async def _day_starts(self, day: date) -> None:
        header = f"── {day:%a %Y-%m-%d} "
        if not self.calendar.is_trading_day(day):
            following = self.calendar.next_trading_day(day)
            note = (
                f"NYSE closed ({self.calendar.holiday_name(day) or 'weekend'}): no settlement deadline today; "
                f"transfers made today count for {day_label(following)}"
            )
        else:
            due = [
                t
                for t in await self.sandbox.transfers(deadline=day.isoformat())
                if t["status"] in ("PENDING", "EXECUTED")
            ]
            total = sum((Decimal(t["amount"]) for t in due), Decimal(0))
            note = f"{len(due)} transfers ({money(total)}) due by 1 PM ET" if due else "nothing due today"
            if self.calendar.session(day).close == EARLY_CLOSE:
                note += "; NYSE half day (closes at 1 PM)"
        self.progress.plain(f"{header}── {note} ".ljust(100, "─"))
