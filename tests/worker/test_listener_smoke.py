"""The listener records transfers from the streams into Redis."""

from __future__ import annotations

from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, eventually
from tests.support.sandbox import Sandbox


async def test_executed_transfers_reach_the_store(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """Transfers executed in the sandbox are stored as EXECUTED with their deadline index and due amount."""
    created = [await sandbox.create_transfer(f"810000000{n}", f"{n}0.00") for n in (1, 2, 3)]
    await sandbox.advance(1)
    running = await start_listener(sandbox)

    async def all_executed() -> bool:
        stored = [await store.transfer(t["id"]) for t in created]
        return all(s.get("status") == "EXECUTED" for s in stored)

    await eventually(all_executed)
    deadline = created[0]["deadline"]
    assert await store.unsettled_due(deadline) == {t["id"] for t in created}
    assert str(await store.amount_due(deadline)) == "60.00"
    await running.halt()
