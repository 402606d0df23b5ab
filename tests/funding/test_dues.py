"""The settle run's columns of transfers due (pure): exact records back, views for slices, and their size."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal

import pytest

from funding.dues import Due, Dues, Listed
from funding.planning import chunks, make_plan, owed
from tests.funding.test_planning import DEADLINE, transfer


def test_each_transfer_comes_back_exactly_as_it_was_added() -> None:
    """Id, account, amount, remaining payable, interest and creation time of each record equal the model's."""
    models = [transfer("10.00", minute=1), transfer("0.01", account="8100000002", interest="0.07", minute=2)]
    dues = Dues()
    for model in models:
        dues.add(Listed.of(model))
    assert list(dues) == [
        Due(str(m.id), m.account_no, m.amount, m.remaining_payable, m.total_interest, m.created_at) for m in models
    ]
    assert (len(dues), dues.total, dues.accounts) == (2, Decimal("10.08"), ["8100000001", "8100000002"])
    assert dues[-1] == dues[1]
    with pytest.raises(IndexError):
        dues[2]


def test_an_amount_that_is_not_whole_cents_is_kept_exact() -> None:
    """A sub-cent amount (none is on Alpaca's wire) comes back as given, not rounded to its cents."""
    dues = Dues()
    dues.add(Listed.of(transfer("12.345", interest="0.0049")))
    [due] = dues
    assert (due.amount, due.total_interest, due.remaining_payable) == (
        Decimal("12.345"),
        Decimal("0.0049"),
        Decimal("12.3499"),
    )


def test_slices_are_views_in_order_and_plans_keep_the_columns() -> None:
    """A slice reads the same records without copying; a plan that pays everything keeps the Dues itself, and its
    settlement batches are made one at a time, in order."""
    models = [transfer("1.00", minute=n) for n in range(7)]
    dues = Dues()
    for model in models:
        dues.add(Listed.of(model))
    assert [d.id for d in dues[2:5]] == [str(m.id) for m in models[2:5]]
    assert [d.id for d in dues[2:5][1:]] == [str(m.id) for m in models[3:5]]
    plan = make_plan(DEADLINE, dues, si_cash=Decimal(0), rf_available=Decimal(100))
    assert plan.selected is dues
    assert (plan.need, owed(dues[:3])) == (Decimal("7.00"), Decimal("3.00"))
    assert [[d.id for d in batch] for batch in chunks(dues, 3)] == [
        [str(m.id) for m in models[a:b]] for a, b in ((0, 3), (3, 6), (6, 7))
    ]


def test_a_hundred_thousand_transfers_take_under_a_hundred_bytes_each() -> None:
    """Held in columns, 100,000 transfers of 2,000 accounts cost under 100 bytes each (a model takes about 1 KB)."""
    models = [Listed.of(transfer("25.00", account=f"81{n % 10_000:08d}", minute=n % 600)) for n in range(2_000)]
    dues = Dues()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(100_000):
            dues.add(models[n % len(models)])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(dues) == 100_000
    assert held / 100_000 < 100, f"{held / 100_000:.0f} bytes per transfer"
