"""A first end-to-end check of the sandbox over HTTP."""

from __future__ import annotations

from tests.support.sandbox import Sandbox


async def test_transfer_executes_and_adds_buying_power(sandbox: Sandbox) -> None:
    """An IF transfer is PENDING at creation and EXECUTED a second later, adding cash and memoposts."""
    transfer = await sandbox.create_transfer("8100000001", "20")
    assert transfer["status"] == "PENDING"
    assert transfer["amount"] == "20.00"
    await sandbox.advance(1)
    got = await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}")
    assert got["status"] == "EXECUTED"
    account = await sandbox.trade_account("8100000001")
    assert (account["cash"], account["memoposts"], account["buying_power"], account["equity"]) == (
        "20.00",
        "20.00",
        "20.00",
        "0.00",
    )
