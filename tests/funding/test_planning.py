"""Settle planning (pure): priority when RF is short, the exact top-up, settlement-sized chunks, and costs."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from funding.calendar import ET
from funding.models import InstantFunding
from funding.planning import MAX_TRANSFERS_PER_SETTLEMENT, chunks, costs, debit_risk, make_plan

DEADLINE = date(2026, 11, 24)
CREATED = datetime(2026, 11, 23, 9, 0, tzinfo=ET)
FED = Decimal("0.0450")


def transfer(
    amount: str, *, account: str = "8100000001", interest: str = "0", minute: int = 0, name: str = ""
) -> InstantFunding:
    """An EXECUTED transfer due DEADLINE; remaining payable = amount + interest; created ``minute`` after 09:00."""
    return InstantFunding.model_validate(
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, name or f"{account}-{amount}-{minute}")),
            "account_no": account,
            "source_account_no": "7536050SI",
            "amount": amount,
            "status": "EXECUTED",
            "system_date": "2026-11-23",
            "deadline": DEADLINE.isoformat(),
            "created_at": (CREATED + timedelta(minutes=minute)).isoformat(),
            "remaining_payable": str(Decimal(amount) + Decimal(interest)),
            "total_interest": interest,
        }
    )


def amounts(transfers: list[InstantFunding]) -> list[str]:
    return [str(t.remaining_payable) for t in transfers]


def test_everything_is_selected_when_the_budget_covers_it() -> None:
    """SI plus RF enough: every transfer, in the given order, nothing left."""
    due = [transfer("30.00", minute=2), transfer("10.00", minute=1)]
    plan = make_plan(DEADLINE, due, si_cash=Decimal("15.00"), rf_available=Decimal("25.00"))
    assert (plan.selected, plan.left) == (due, [])
    assert (plan.need, plan.top_up) == (Decimal("40.00"), Decimal("25.00"))


@pytest.mark.parametrize(
    ("si_cash", "top_up"),
    [("0", "140.25"), ("40.25", "100.00"), ("140.25", "0.00"), ("500.00", "0.00"), ("-20.00", "160.25")],
)
def test_top_up_is_exactly_what_si_lacks(si_cash: str, top_up: str) -> None:
    """The RF → SI journal is need − SI cash (interest included), never negative, never rounded up."""
    due = [transfer("100.00", interest="0.25"), transfer("40.00", account="8100000002")]
    plan = make_plan(DEADLINE, due, si_cash=Decimal(si_cash), rf_available=Decimal("1000"))
    assert plan.need == Decimal("140.25")
    assert plan.top_up == Decimal(top_up)


def test_short_rf_settles_debit_risk_first_then_smallest() -> None:
    """With money for some: transfers whose cancellation leaves a debit go first, then the smallest."""
    risky_big = transfer("60.00", account="A", name="risky-big")
    safe_small = transfer("5.00", account="B", name="safe-small")
    safe_mid = transfer("20.00", account="C", name="safe-mid")
    risky_small = transfer("30.00", account="D", name="risky-small")
    due = [safe_mid, risky_big, safe_small, risky_small]
    at_risk = {str(risky_big.id), str(risky_small.id)}
    plan = make_plan(DEADLINE, due, si_cash=Decimal(0), rf_available=Decimal("95.00"), at_risk=at_risk)
    assert plan.selected == [risky_small, risky_big, safe_small]
    assert [t for t, _ in plan.left] == [safe_mid]
    assert "RF short" in plan.left[0][1]
    assert plan.need == Decimal("95.00")
    tight = make_plan(DEADLINE, due, si_cash=Decimal(0), rf_available=Decimal("26.00"), at_risk=at_risk)
    assert tight.selected == [safe_small, safe_mid]  # no risky one fits: the money still saves two others


def test_without_risk_the_smallest_go_first_and_ties_by_creation_time() -> None:
    """Smallest remaining payable first; equal ones are taken oldest first until the budget is spent."""
    late = transfer("10.00", account="A", minute=30)
    early = transfer("10.00", account="B", minute=5)
    middle = transfer("10.00", account="C", minute=10)
    small_enough = transfer("4.00", account="D", minute=50)
    big = transfer("50.00", account="E", minute=0)
    plan = make_plan(DEADLINE, [late, big, middle, early, small_enough], si_cash=Decimal(0), rf_available=Decimal(25))
    assert plan.selected == [small_enough, early, middle]
    assert [t for t, _ in plan.left] == [late, big]


def test_interest_counts_in_the_priority_and_the_need() -> None:
    """Remaining payable (amount + interest booked) decides the order and what fits, not the amount."""
    cheap_amount = transfer("10.00", account="A", interest="2.00")
    dearer_amount = transfer("11.00", account="B")
    plan = make_plan(DEADLINE, [cheap_amount, dearer_amount], si_cash=Decimal(0), rf_available=Decimal("11.50"))
    assert plan.selected == [dearer_amount]
    assert plan.top_up == Decimal("11.00")


def test_negative_si_and_rf_add_nothing_to_the_budget() -> None:
    """A negative SI balance or RF availability never lets a plan select more than zero of either."""
    due = [transfer("10.00")]
    plan = make_plan(DEADLINE, due, si_cash=Decimal("-50.00"), rf_available=Decimal("-10.00"))
    assert plan.selected == []
    assert [t for t, _ in plan.left] == due


def test_debit_risk_sums_every_transfer_of_an_account() -> None:
    """An account is at risk when its cash minus everything due would be negative; all its transfers count."""
    a1, a2 = transfer("30.00", account="A", minute=1), transfer("30.00", account="A", minute=2)
    b = transfer("50.00", account="B")
    c = transfer("50.00", account="C")
    cash = {"A": Decimal("59.99"), "B": Decimal("50.00"), "C": Decimal("49.99")}
    assert debit_risk([a1, a2, b, c], cash) == {str(a1.id), str(a2.id), str(c.id)}
    assert debit_risk([b], {}) == {str(b.id)}  # unknown cash counts as none


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (50_000, [50_000]), (50_001, [50_000, 1]), (120_000, [50_000, 50_000, 20_000])],
)
def test_chunks_hold_at_most_50000_transfers(count: int, sizes: list[int]) -> None:
    """Settlement batches keep the order and never exceed Alpaca's 50,000 transfers per settlement."""
    one = transfer("1.00")
    batches = list(chunks([one] * count))
    assert MAX_TRANSFERS_PER_SETTLEMENT == 50_000
    assert [len(b) for b in batches] == sizes


def test_chunks_keep_the_order() -> None:
    """Small sizes show the split keeps every transfer once, in order."""
    due = [transfer("1.00", minute=n) for n in range(7)]
    assert list(chunks(due, 3)) == [due[0:3], due[3:6], due[6:7]]


def test_costs_use_the_a4_late_interest_formula() -> None:
    """Avoided: one day of amount × (fed upper bound + 8 %) / 360 per transfer settled on time, half-up to the cent."""
    on_time = [transfer("1000.00", account="A"), transfer("333.33", account="B")]
    late = transfer("200.00", account="C", interest="0.07")
    result = costs(on_time, [*on_time, late], FED)
    expected_avoided = sum(
        (
            (t.amount * (FED + Decimal("0.08")) / Decimal(360)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            for t in on_time
        ),
        Decimal(0),
    )
    assert expected_avoided == Decimal("0.35") + Decimal("0.12")  # 0.3472… and 0.11574…
    assert result.late_interest_avoided == expected_avoided
    assert result.late_interest_incurred == Decimal("0.07")


def test_costs_of_nothing_are_zero() -> None:
    """No transfers: nothing avoided, nothing incurred."""
    result = costs([], [], FED)
    assert (result.late_interest_avoided, result.late_interest_incurred) == (Decimal(0), Decimal(0))
