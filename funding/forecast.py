"""RF prefunding forecast: what the next deadlines will ask of RF, and the one wire that keeps them paid (pure).

Deadlines follow the trading calendar; wires are credited only on banking days, in the 08:00–08:30 ET window
(:mod:`funding.banking`), so a deadline on a bank holiday (Columbus Day, Veterans Day) can only be paid from what RF
held the banking day before. For each of the next deadlines the forecast adds up:

- **due already**: the unsettled transfers the store holds for it (their remaining payable);
- **still expected** before its cut (8 PM ET of its system date): for each of the last weeks, the transfers of the
  same weekday's system date created in the same time before that day's cut (a history shorter than a week: the
  trading days before, whatever their weekday). The planning figure is a high quantile of those samples (nearest
  rank: with four weeks and 0.9, the largest), the median is reported too;
- **minus the partner's own share**: what the partner settled itself on past deadlines, as a share of what was
  due, at a low quantile (in doubt the forecast plans as if the partner paid less).

Against it: SI's cash (the first deadline only: a completed settlement sweeps SI's excess to FW) and RF's, each
deadline consuming what it needs in order. A deadline RF cannot pay has a shortfall. The recommendation is one wire
into RF, credited on ``wire_by``: the last banking day whose window still comes before the first short deadline's
1 PM cutoff (the deadline itself on a banking day, the banking day before a bank holiday). It covers every deadline
whose last window that is (``covers_through``). Not sending it costs a day of late interest on the transfers left
unpaid (fed upper bound + 8 %, per transfer as Alpaca books it; smallest paid first, as the settle job does), and
the margin interest on the debits they would leave if canceled with their buying power spent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from funding.banking import WIRE_WINDOW, BankingCalendar
from funding.calendar import CYCLE_CUTOFF, SETTLEMENT_CUTOFF, TradingCalendar, at_et, to_et
from funding.money import CENT, ZERO, late_interest, margin_interest

PLANNING_QUANTILE = Decimal("0.9")
HISTORY_WEEKS = 4


@dataclass(frozen=True)
class PastTransfer:
    """A transfer of the store's history (kept 35 days)."""

    created_at: datetime
    amount: Decimal
    system_date: date
    settled_by: str = ""
    """``partner``, ``settlekeeper``, or empty (canceled, or not settled yet)."""


@dataclass(frozen=True)
class Outlook:
    """What the forecast starts from, read at ``now``."""

    now: datetime
    due: Mapping[date, Sequence[Decimal]]
    """Remaining payable of each unsettled transfer, by deadline."""
    history: Sequence[PastTransfer]
    history_since: date
    """The first system date the history holds in full (earlier weeks are not samples)."""
    si_cash: Decimal
    rf_cash: Decimal


@dataclass(frozen=True)
class Assumptions:
    fed_upper_bound: Decimal
    margin_rate: Decimal
    quantile: Decimal = PLANNING_QUANTILE
    weeks: int = HISTORY_WEEKS


@dataclass(frozen=True)
class Cost:
    """What leaving ``transfers_left`` unpaid at the cutoff costs."""

    late_interest: Decimal = ZERO
    margin_interest: Decimal = ZERO
    transfers_left: int = 0

    @property
    def total(self) -> Decimal:
        return self.late_interest + self.margin_interest

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.late_interest + other.late_interest,
            self.margin_interest + other.margin_interest,
            self.transfers_left + other.transfers_left,
        )


@dataclass(frozen=True)
class DeadlineOutlook:
    deadline: date
    banking_day: bool
    credit_day: date
    """The last banking day whose wire window comes before this deadline's cutoff."""
    due_known: Decimal
    expected: Decimal
    expected_median: Decimal
    samples: int
    """Weeks of history the expectation rests on (0: none, nothing is expected)."""
    partner_share: Decimal
    projected_due: Decimal
    """What settlekeeper will have to pay (planning figure): known + expected, less the partner's share."""
    projected_due_median: Decimal
    rf_projected: Decimal
    """RF after this deadline, if nothing is wired."""
    shortfall: Decimal
    cost: Cost = field(default_factory=Cost)


@dataclass(frozen=True)
class Recommendation:
    amount: Decimal
    wire_by: date
    covers_through: date
    first_short: date
    cost_if_not: Cost


@dataclass(frozen=True)
class Forecast:
    now: datetime
    deadlines: list[DeadlineOutlook]
    recommendation: Recommendation | None
    unreachable: list[date]
    """Short deadlines no wire sent now can reach (their window is over): only RF and SI as they are can pay."""


def quantile(values: Sequence[Decimal], q: Decimal) -> Decimal:
    """Nearest-rank quantile (the smallest value with at least ``q`` of them at or below it); 0 for none."""
    if not values:
        return ZERO
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _cents_up(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_CEILING)


class _History:
    def __init__(self, outlook: Outlook, trading: TradingCalendar) -> None:
        self.by_day: dict[date, list[PastTransfer]] = defaultdict(list)
        for row in outlook.history:
            self.by_day[row.system_date].append(row)
        self.since = outlook.history_since
        self.trading = trading

    def window(self, system_date: date) -> tuple[datetime, datetime]:
        """When the transfers of ``system_date`` are created: from 8 PM ET of the trading day before to 8 PM."""
        return at_et(self.trading.previous_trading_day(system_date), CYCLE_CUTOFF), at_et(system_date, CYCLE_CUTOFF)

    def samples(self, system_date: date, now: datetime, weeks: int) -> list[list[Decimal]]:
        """Per past week: the amounts of the same weekday's transfers created as long before its cut as is left now."""
        start, cut = self.window(system_date)
        left = cut - max(now, start)
        if left <= timedelta(0):
            return []
        days = [system_date - timedelta(days=7 * week) for week in range(1, weeks + 1)]
        days = [day for day in days if day >= self.since and self.trading.is_trading_day(day)]
        if not days:  # a history shorter than a week: the trading days before, whatever their weekday
            day = self.trading.previous_trading_day(system_date)
            while day >= self.since and len(days) < weeks:
                days.append(day)
                day = self.trading.previous_trading_day(day)
        return [
            sorted(t.amount for t in self.by_day.get(day, []) if t.created_at >= self.window(day)[1] - left)
            for day in days
        ]

    def partner_shares(self, before: date) -> list[Decimal]:
        """The partner's share of what was due, per past system date whose deadline is before ``before``."""
        shares = []
        for day, rows in self.by_day.items():
            total = sum((t.amount for t in rows), ZERO)
            if day >= self.since and self.trading.next_trading_day(day) < before and total > 0:
                shares.append(sum((t.amount for t in rows if t.settled_by == "partner"), ZERO) / total)
        return shares


def forecast(
    outlook: Outlook,
    assumptions: Assumptions,
    trading: TradingCalendar,
    banking: BankingCalendar,
    days: int = 5,
) -> Forecast:
    """The next ``days`` deadlines (today's while its cutoff is ahead), their projection and the wire to send."""
    now = outlook.now
    history = _History(outlook, trading)
    today = to_et(now).date()
    first = today if trading.is_trading_day(today) and now < at_et(today, SETTLEMENT_CUTOFF) else None
    deadlines = [first] if first else []
    while len(deadlines) < days:
        deadlines.append(trading.next_trading_day(deadlines[-1] if deadlines else today))
    shares = history.partner_shares(today)
    share_low = quantile(shares, 1 - assumptions.quantile)
    share_median = quantile(shares, Decimal("0.5"))
    si, rf = max(outlook.si_cash, ZERO), max(outlook.rf_cash, ZERO)
    out = []
    for deadline in deadlines:
        known = [max(a, ZERO) for a in outlook.due.get(deadline, ())]
        samples = history.samples(trading.previous_trading_day(deadline), now, assumptions.weeks)
        totals = [sum(s, ZERO) for s in samples]
        expected, expected_median = quantile(totals, assumptions.quantile), quantile(totals, Decimal("0.5"))
        profile = samples[totals.index(expected)] if samples else []
        due_known = sum(known, ZERO)
        need = _cents_up((due_known + expected) * (1 - share_low))
        need_median = _cents_up((due_known + expected_median) * (1 - share_median))
        from_rf = max(need - si, ZERO)
        shortfall = max(from_rf - rf, ZERO)
        budget = si + rf + (due_known + expected - need)  # what SI, RF and the partner's share pay
        cost = _cost(known + profile, budget, assumptions, trading, deadline) if shortfall else Cost()
        rf, si = max(rf - from_rf, ZERO), ZERO
        out.append(
            DeadlineOutlook(
                deadline=deadline,
                banking_day=banking.is_banking_day(deadline),
                credit_day=credit_day(deadline, banking),
                due_known=due_known,
                expected=expected,
                expected_median=expected_median,
                samples=len(samples),
                partner_share=share_low,
                projected_due=need,
                projected_due_median=need_median,
                rf_projected=rf,
                shortfall=shortfall,
                cost=cost,
            )
        )
    recommendation, unreachable = recommend(out, now, banking)
    return Forecast(now, out, recommendation, unreachable)


def credit_day(deadline: date, banking: BankingCalendar) -> date:
    """The last banking day whose wire window (08:00–08:30 ET) comes before ``deadline``'s 1 PM cutoff."""
    return deadline if banking.is_banking_day(deadline) else banking.previous_banking_day(deadline)


def _cost(
    amounts: Sequence[Decimal], budget: Decimal, assumptions: Assumptions, trading: TradingCalendar, deadline: date
) -> Cost:
    """Pay the smallest first while ``budget`` lasts (the settle job's order when none is in debit yet); the rest
    books a day of late interest each, and leaves a debit of its amount if the buying power was spent."""
    days = trading.interest_days(trading.next_trading_day(deadline))
    paid, cost = ZERO, Cost()
    for amount in sorted(amounts):
        if paid + amount <= budget:
            paid += amount
            continue
        cost += Cost(
            late_interest(amount, assumptions.fed_upper_bound),
            margin_interest(amount, assumptions.margin_rate, days),
            1,
        )
    return cost


def recommend(
    outlooks: Sequence[DeadlineOutlook], now: datetime, banking: BankingCalendar
) -> tuple[Recommendation | None, list[date]]:
    """The wire for the first short deadline a wire sent now can still reach, and the short ones it cannot."""
    reachable_from = banking.wire_booked_at(now).date()
    unreachable = [o.deadline for o in outlooks if o.shortfall > 0 and o.credit_day < reachable_from]
    short = [o for o in outlooks if o.shortfall > 0 and o.credit_day >= reachable_from]
    if not short:
        return None, unreachable
    wire_by = short[0].credit_day
    group = [o for o in outlooks if o.credit_day == wire_by and o.deadline >= short[0].deadline]
    cost = Cost()
    for o in group:
        cost += o.cost
    amount = sum((o.shortfall for o in group), ZERO)
    return Recommendation(amount, wire_by, group[-1].deadline, short[0].deadline, cost), unreachable


def last_afternoon(recommendation: Recommendation, banking: BankingCalendar) -> date:
    """The banking day whose afternoon is the last to send the wire: credited in ``wire_by``'s morning window."""
    return banking.previous_banking_day(recommendation.wire_by)


def send_before(recommendation: Recommendation) -> datetime:
    """The very last moment: a wire sent before ``wire_by``'s window closes is credited that morning."""
    return at_et(recommendation.wire_by, WIRE_WINDOW[1])
