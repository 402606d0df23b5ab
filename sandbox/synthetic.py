"""Large synthetic streams for benchmarks: real executed transfers plus a flood of trade activities."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from funding.money import ZERO
from sandbox.engine import Engine, bulk
from sandbox.event_log import StreamName
from sandbox.state import SandboxError


@bulk()
def fill(
    engine: Engine,
    events: int,
    transfers: int,
    amounts: Sequence[Decimal] = (Decimal("10.00"),),
    *,
    render: bool = False,
    spend: bool = False,
) -> dict[str, object]:
    """Create ``transfers`` IF transfers (one MEM event each) and pad the activities stream to ``events``.

    Transfer ``n`` goes to customer ``n mod customers`` for ``amounts[n mod len(amounts)]``. Needs a seed
    without per-account limits, a correspondent limit large enough, and ``if_execute_delay_seconds`` 0 so
    each transfer executes (and emits) at once. ``spend``: each customer buys for the transfer's amount (its
    trade events count among ``events``); ``render``: every new event's text is made now.
    """
    if engine.seed.if_execute_delay_seconds != 0 or engine.seed.if_account_limit is not None:
        raise SandboxError(422, "synthetic streams need if_execute_delay_seconds 0 and if_account_limit null")
    customers = [a for a in engine.books.by_no.values() if not a.is_firm]
    if not customers or not 0 <= transfers <= events or not amounts:
        raise SandboxError(422, "need customers, amounts, and 0 <= transfers <= events")
    log = engine.emit.logs[StreamName.ACTIVITIES]
    start = len(log)
    si = engine.books.firm_account_number("SI")
    for n in range(transfers):
        account, amount = customers[n % len(customers)], amounts[n % len(amounts)]
        engine.create_transfer(account.number, si, amount, None, "")
        if spend:  # one share at the transfer's amount: its cancellation leaves the customer in debit
            engine.jit.trade(account, "AAPL", "buy", Decimal(1), amount, ZERO)
    system_date = engine.system_date
    for n in range(events - transfers):
        account = customers[n % len(customers)]
        engine.emit.activity(
            engine.now,
            account,
            "TRD",
            status="executed",
            net_amount=ZERO,
            qty=Decimal(1),
            symbol="AAPL",
            settle_date=system_date,
            system_date=system_date,
            description="synthetic fill",
            details={"order_id": f"synthetic-{n}"},
        )
    if render:
        for event in log.events[start:]:
            _ = event.data
    return {
        "count": len(log) - start,
        "first_event_id": log.events[start].event_id if len(log) > start else None,
        "last_event_id": log.events[-1].event_id if len(log) > start else None,
    }
