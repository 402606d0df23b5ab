"""The benchmarks' bulk seeding: ``POST /sandbox/synthetic`` creates real transfers inside the sandbox."""

from __future__ import annotations

import pytest

from tests.support.sandbox import SandboxFactory

BULK_SEED = {"if_account_limit": None, "if_correspondent_limit": "100000", "if_execute_delay_seconds": 0}


async def test_synthetic_creates_executed_transfers_with_cycled_amounts(make_sandbox: SandboxFactory) -> None:
    """K executed transfers, customers and amounts taken in turn, padded with trade fills to N events."""
    sandbox = await make_sandbox(customers=2, **BULK_SEED)
    body = {"events": 5, "transfers": 3, "amounts": ["1.00", "2.50"]}
    made = await sandbox.ok("POST", "/sandbox/synthetic", body)
    assert made["count"] == 5
    listed = await sandbox.ok("GET", "/v1/instant_funding")
    assert sorted((t["account_no"], t["amount"], t["status"]) for t in listed) == [  # one instant: ties by id
        ("8100000001", "1.00", "EXECUTED"),
        ("8100000001", "1.00", "EXECUTED"),
        ("8100000002", "2.50", "EXECUTED"),
    ]
    limits = await sandbox.ok("GET", "/v1/instant_funding/limits")
    assert limits["amount_in_use"] == "4.50"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"transfers": 1, "events": 1, "amounts": "1.00"}, 400),
        ({"transfers": 1, "events": 1, "amounts": ["one"]}, 400),
        ({"transfers": 1, "events": 1, "amounts": ["1.005"]}, 422),
        ({"transfers": 1, "events": 1, "amounts": []}, 422),
    ],
)
async def test_synthetic_refuses_bad_amounts(
    make_sandbox: SandboxFactory, body: dict[str, object], status: int
) -> None:
    """Amounts must be a non-empty array of decimal strings with at most 2 decimals."""
    sandbox = await make_sandbox(**BULK_SEED)
    assert (await sandbox.call("POST", "/sandbox/synthetic", body))[0] == status
