"""Which transfers to settle, how much SI needs, and what being late or short costs (pure functions).

Priority when RF cannot cover everything (docs/operations.md "When RF cannot cover everything"): first the
transfers whose cancellation would leave the customer in debit (the buying power was spent: margin call on T+2,
liquidation on T+3), then the rest; within each group the smallest remaining payable first, so the
money saves as many customers as it can; ties by creation time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from funding.dues import Dues
from funding.money import ZERO, late_interest

MAX_TRANSFERS_PER_SETTLEMENT = 50_000
"""Alpaca's cap per settlement (IF settlement reference)."""


class Payable(Protocol):
    """What planning reads of a transfer due: a validated :class:`~funding.models.InstantFunding`, or the
    settle run's light :class:`~funding.dues.Due`."""

    @property
    def id(self) -> object: ...
    @property
    def account_no(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def remaining_payable(self) -> Decimal: ...
    @property
    def total_interest(self) -> Decimal: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass
class Plan:
    deadline: date
    selected: Sequence[Payable]
    """What to settle, in order (the very sequence given when all of it can be paid: never a copy of it)."""
    left: list[tuple[Payable, str]] = field(default_factory=list)
    """Transfers not settled by this plan, each with the reason."""
    si_cash: Decimal = ZERO
    need: Decimal = ZERO
    """What the selected transfers cost: remaining payable (amount plus interest booked)."""

    @property
    def top_up(self) -> Decimal:
        """The RF → SI journal this plan needs: exactly what SI lacks, never more."""
        return max(self.need - self.si_cash, ZERO)


def owed(transfers: Iterable[Payable]) -> Decimal:
    """The remaining payable of ``transfers`` (a :class:`Dues` knows its own, without a record per transfer)."""
    if isinstance(transfers, Dues):
        return transfers.total
    return sum((t.remaining_payable for t in transfers), ZERO)


def debit_risk(transfers: Iterable[Payable], cash: Mapping[str, Decimal]) -> set[str]:
    """Ids of transfers whose account would end in debit if its transfers due were canceled.

    ``cash`` is each account's current cash (memoposts included); cancellation takes every unsettled
    transfer's amount back out of it (IF FAQ).
    """
    due: dict[str, Decimal] = {}
    by_account: dict[str, list[str]] = {}
    for t in transfers:
        due[t.account_no] = due.get(t.account_no, ZERO) + t.amount
        by_account.setdefault(t.account_no, []).append(str(t.id))
    return {
        transfer_id
        for account, ids in by_account.items()
        if cash.get(account, ZERO) - due[account] < 0
        for transfer_id in ids
    }


def make_plan(
    deadline: date,
    transfers: Sequence[Payable],
    *,
    si_cash: Decimal,
    rf_available: Decimal,
    at_risk: set[str] | None = None,
) -> Plan:
    """Select what SI (topped up from RF) can pay, by the priority policy above."""
    budget = max(si_cash, ZERO) + max(rf_available, ZERO)
    total = owed(transfers)
    if total <= budget:
        return Plan(deadline, transfers, si_cash=si_cash, need=total)
    risky = at_risk or set()
    ordered = sorted(transfers, key=lambda t: (str(t.id) not in risky, t.remaining_payable, t.created_at))
    selected: list[Payable] = []
    left: list[tuple[Payable, str]] = []
    spent = ZERO
    for transfer in ordered:
        if spent + transfer.remaining_payable <= budget:
            selected.append(transfer)
            spent += transfer.remaining_payable
        else:
            left.append((transfer, f"RF short: SI {si_cash} + RF {rf_available} < {total} due"))
    return Plan(deadline, selected, left, si_cash=si_cash, need=spent)


def chunks(transfers: Sequence[Payable], size: int = MAX_TRANSFERS_PER_SETTLEMENT) -> Iterator[list[Payable]]:
    """Settlement-sized batches (at most 50,000 transfers each), each made when it is reached."""
    for start in range(0, len(transfers), size):
        yield list(transfers[start : start + size])


@dataclass(frozen=True)
class Costs:
    late_interest_avoided: Decimal
    """One day of late interest on every transfer settled before 1 PM ET."""
    late_interest_incurred: Decimal
    """Interest Alpaca booked on transfers of this deadline."""


def costs(settled_on_time: Iterable[Payable], all_due: Iterable[Payable], fed_upper_bound: Decimal) -> Costs:
    return Costs(
        late_interest_avoided=sum((late_interest(t.amount, fed_upper_bound) for t in settled_on_time), ZERO),
        late_interest_incurred=sum((t.total_interest for t in all_due), ZERO),
    )
