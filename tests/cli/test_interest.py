"""``settlekeeper interest``: the month's late interest per transfer, as booked and recomputed, for the invoice."""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_UP, Decimal

from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.sandbox import Sandbox
from tests.support.settle import create_transfers, et

RATE = Decimal("0.0450") + Decimal("0.08")
"""The sandbox's fed upper bound plus 8 %, restated: expectations come from the inputs, not the code."""


def one_day(amount: str) -> str:
    return str((Decimal(amount) * RATE / 360).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


async def test_the_months_late_interest_per_transfer_matches_what_alpaca_booked(
    sandbox: Sandbox, session_redis_url: str
) -> None:
    """Two transfers miss Tuesday's cutoff: one row each (amount, 1 day, rate, interest), the total, and a CSV."""
    created = await create_transfers(sandbox, ["1000.00", "300.00"])
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 13, 5))  # 1 PM passed: a day of interest is booked on each
    env = cli_env(sandbox, session_redis_url)

    code, out, _ = await settlekeeper("interest", "--month", "2026-11", "--json", env=env)
    found = json.loads(out)
    rows = sorted(found["late_interest"], key=lambda r: Decimal(r["amount"]))
    assert code == 0
    assert [(r["amount"], r["days"], r["interest"], r["matches"]) for r in rows] == [
        ("300.00", 1, one_day("300.00"), True),
        ("1000.00", 1, one_day("1000.00"), True),
    ]
    assert found["total"] == str(Decimal(one_day("300.00")) + Decimal(one_day("1000.00")))
    code, out, _ = await settlekeeper("interest", "--month", "2026-11", env=env)
    assert out.splitlines()[0] == f"2026-11: 2 late interest charges, {found['total']} in all (rate {RATE} / 360 a day)"
    code, out, _ = await settlekeeper("interest", "--month", "2026-11", "--csv", env=env)
    table = list(csv.DictReader(io.StringIO(out)))
    assert {row["transfer_id"] for row in table} == {row["id"] for row in created}
    code, out, _ = await settlekeeper("interest", "--month", "2026-10", "--json", env=env)
    assert (json.loads(out)["late_interest"], json.loads(out)["total"]) == ([], "0.00")
